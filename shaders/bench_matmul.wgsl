// Benchmark kernel (fptt bench's matrix-product ceiling): C[M, N] = A[M, K]·B[N, K]ᵀ with A and
// C in work, B in params, through the matrix-product template of the training kernels. Not used
// in training; it measures what the template reaches on the adapter (and tests it on odd shapes).
#import bindings
#import args
#import matmul
@group(1) @binding(0) var<storage, read> args: InputGradArgs;

// Fields reused from InputGradArgs: batch = M, cols = N, k1 = K, g1 = A, w1 = B, out = C.
const MM_A_K_FAST: bool = true;
const MM_B_K_FAST: bool = true;

fn mm_a(p: u32, row: u32, k: u32) -> f32 {
    return work[rw + args.g1 + row * args.k1 + k];
}

fn mm_b(p: u32, k: u32, col: u32) -> f32 {
    return params[rp + args.w1 + col * args.k1 + k];
}

@compute @workgroup_size(MM_INVOCATIONS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    enter_replica(wid.z);
    let blk = mm_block(wid, nwg, lid, args.batch, args.cols, 1u);
    if !blk.live {
        return;
    }
    var acc: MmAcc;
    mm_product(&acc, 0u, blk, 0u, args.k1);
    for (var r = 0u; r < MM_RM; r++) {
        for (var c = 0u; c < 4u; c++) {
            if mm_row_ok(blk, r) && mm_col_ok(blk, c) {
                work[rw + args.out + (blk.r0 + r) * args.cols + blk.c0 + c] = acc[r][c];
            }
        }
    }
}
