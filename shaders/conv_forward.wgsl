// A stride-1, zero-padded convolution (method §9 (9.1)) as an implicit matrix product through the
// template (shaders/shared/matmul.wgsl), im2col gathered on the fly (never stored):
//   C[row, o] = Σ_kk A[row, kk]·B[kk, o],  row = (b, i, j) over B·oh·ow,  kk = (c, u, v) over in_c·k·k,
//   A[row, kk] = X[b, c, i+u−pad, j+v−pad] (0 in the padding),  B[kk, o] = W[o, c, u, v],
// then out[b, o, i, j] (+)= bias[o] + C[row, o] (NCHW). X = x (+ x2): a gate convolves a sum
// (x̂ + m), read from its two terms here instead of stored by a kernel of its own.
#import bindings
#import args
#import matmul
@group(1) @binding(0) var<storage, read> args: ConvArgs;

// A's rows are output pixels, neighbours in memory along a row of the image; W's rows are
// contiguous in kk.
const MM_A_K_FAST: bool = false;
const MM_B_K_FAST: bool = true;

// X[b, c, i+u−pad, j+v−pad] for output pixel `row` and tap `kk`, 0 in the padding. Unsigned
// wrap-around makes a row or column left of the image huge, so one comparison per axis tests both
// sides; the load index is clamped in bounds and the value selected (no branch per element).
fn mm_a(p: u32, row: u32, kk: u32) -> f32 {
    let opix = args.oh * args.ow;
    let b = row / opix;
    let pix = row % opix;
    let i = pix / args.ow;
    let j = pix % args.ow;
    let kq = args.k * args.k;
    let c = kk / kq;
    let tap = kk % kq;
    let y = i + tap / args.k - args.pad;
    let x = j + tap % args.k - args.pad;
    let inside = y < args.h && x < args.w;
    let at = select(0u, ((b * args.in_c + c) * args.h + y) * args.w + x, inside);
    var v = work[rw + args.x + step.t * args.x_step + at];
    if args.x2 != NONE {
        v += work[rw + args.x2 + at];
    }
    return select(0.0, v, inside);
}

fn mm_b(p: u32, kk: u32, o: u32) -> f32 {
    return params[rp + args.weight + o * args.in_c * args.k * args.k + kk];
}

@compute @workgroup_size(MM_INVOCATIONS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    enter_replica(wid.z);
    let opix = args.oh * args.ow;
    let blk = mm_block(wid, nwg, lid, args.batch * opix, args.out_c, 1u);
    if !blk.live {
        return;
    }
    var acc: MmAcc;
    mm_product(&acc, 0u, blk, 0u, args.in_c * args.k * args.k);
    for (var r = 0u; r < MM_RM; r++) {
        if !mm_row_ok(blk, r) {
            continue;
        }
        let row = blk.r0 + r;
        let b = row / opix;
        let pix = row % opix;
        for (var c = 0u; c < 4u; c++) {
            if !mm_col_ok(blk, c) {
                continue;
            }
            let o = blk.c0 + c;
            var v = acc[r][c];
            if args.bias != NONE {
                v += params[rp + args.bias + o];
            }
            let at = rw + args.out + (b * args.out_c + o) * opix + pix;
            if args.accumulate != 0u {
                work[at] += v;
            } else {
                work[at] = v;
            }
        }
    }
}
