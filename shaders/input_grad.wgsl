// Gradients passed down a map (method §3): out[b, j] = add[b, j] + Σ_o G1[b, o]·W1[o, col1 + j]
// (+ the same with G2, W2). Used for ḡ_d = ḡ_u·τm + ḡ_zm·W_m[:, :N] + ḡ_za·W_a[:, :N], for
// ḡ_s_top = ḡ_z·W_o and for ḡ_x = ḡ_d·W_x. Matrix products of (sample, column) outputs through
// the template (shaders/shared/matmul.wgsl): product 0 with G1, W1, product 1 with G2, W2.
#import bindings
#import args
#import matmul
@group(1) @binding(0) var<storage, read> args: InputGradArgs;

const MM_A_K_FAST: bool = true;
const MM_B_K_FAST: bool = false;

fn mm_a(p: u32, row: u32, k: u32) -> f32 {
    if p == 0u {
        return work[rw + args.g1 + row * args.k1 + k];
    }
    return work[rw + args.g2 + row * args.k2 + k];
}

fn mm_b(p: u32, k: u32, col: u32) -> f32 {
    if p == 0u {
        return params[rp + args.w1 + k * args.ld1 + args.col1 + col];
    }
    return params[rp + args.w2 + k * args.ld2 + args.col2 + col];
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
    if args.k2 > 0u {
        mm_product(&acc, 1u, blk, 0u, args.k2);
    }
    for (var r = 0u; r < MM_RM; r++) {
        for (var c = 0u; c < 4u; c++) {
            if mm_row_ok(blk, r) && mm_col_ok(blk, c) {
                let i = (blk.r0 + r) * args.cols + blk.c0 + c;
                var v = acc[r][c];
                if args.add != NONE {
                    v = work[rw + args.add + i] + v;
                }
                work[rw + args.out + i] = v;
            }
        }
    }
}
