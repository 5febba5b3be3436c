// The gradient passed down a convolution (method §9 (9.12)), the transposed convolution, as an
// implicit matrix product through the template (shaders/shared/matmul.wgsl):
//   C[row, c] = Σ_kk A[row, kk]·B[kk, c],  row = (b, y, x) over B·h·w,  kk = (o, u, v) over out_c·k·k,
//   A[row, kk] = g[b, o, y−u+pad, x−v+pad] (0 outside the output),  B[kk, c] = W[o, c, u, v],
// then out[b, c, y, x] (+)= C[row, c] (NCHW). Every input pixel gathers from the output pixels
// that read it, so each output element is written by one invocation (no atomics).
#import bindings
#import args
#import matmul
@group(1) @binding(0) var<storage, read> args: ConvArgs;

const MM_A_K_FAST: bool = false;
const MM_B_K_FAST: bool = true;

// g[b, o, y−u+pad, x−v+pad] for input pixel `row` and tap `kk`, 0 outside the output (unsigned
// wrap-around: one comparison per axis; index clamped, value selected).
fn mm_a(p: u32, row: u32, kk: u32) -> f32 {
    let ipix = args.h * args.w;
    let b = row / ipix;
    let pix = row % ipix;
    let y = pix / args.w;
    let x = pix % args.w;
    let kq = args.k * args.k;
    let o = kk / kq;
    let tap = kk % kq;
    let i = y + args.pad - tap / args.k;
    let j = x + args.pad - tap % args.k;
    let inside = i < args.oh && j < args.ow;
    let at = select(0u, ((b * args.out_c + o) * args.oh + i) * args.ow + j, inside);
    return select(0.0, work[rw + args.g + at], inside);
}

// W[o, c, u, v] with kk = (o, u, v): within one o the taps are contiguous.
fn mm_b(p: u32, kk: u32, c: u32) -> f32 {
    let kq = args.k * args.k;
    let o = kk / kq;
    return params[rp + args.weight + (o * args.in_c + c) * kq + kk % kq];
}

@compute @workgroup_size(MM_INVOCATIONS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    enter_replica(wid.z);
    let ipix = args.h * args.w;
    let blk = mm_block(wid, nwg, lid, args.batch * ipix, args.in_c, 1u);
    if !blk.live {
        return;
    }
    var acc: MmAcc;
    mm_product(&acc, 0u, blk, 0u, args.out_c * args.k * args.k);
    for (var r = 0u; r < MM_RM; r++) {
        if !mm_row_ok(blk, r) {
            continue;
        }
        let row = blk.r0 + r;
        let b = row / ipix;
        let pix = row % ipix;
        for (var c = 0u; c < 4u; c++) {
            if !mm_col_ok(blk, c) {
                continue;
            }
            let at = rw + args.out + (b * args.in_c + blk.c0 + c) * ipix + pix;
            if args.accumulate != 0u {
                work[at] += acc[r][c];
            } else {
                work[at] = acc[r][c];
            }
        }
    }
}
