// A convolution's weight and bias gradients (method §9 (9.12)) as an implicit matrix product
// through the template (shaders/shared/matmul.wgsl), reducing over samples and output pixels:
//   C[o, col] = Σ_q A[o, q]·B[q, col],  q = (b, i, j) over B·oh·ow,  col = (c, u, v) over in_c·k·k
//   and a last column of ones for the bias,
//   A[o, q] = g[b, o, i, j],  B[q, col] = X[b, c, i+u−pad, j+v−pad] (0 in the padding), B[q, bias] = 1,
// then ∇W[o, c, u, v] = C[o, col], ∇bias[o] = C[o, in_c·k·k] (added when accumulate = 1: the steps
// of a chunk). With split S > 1 the grid runs S times, copy s reducing q in [s·⌈Q/S⌉, (s+1)·⌈Q/S⌉)
// into work[partials + (s·out_c + o)·(in_c·k·k + 1) + col] for a later fixed-order sum (the layout
// fptt_norm gathers: SplitRegion).
#import bindings
#import args
#import matmul
@group(1) @binding(0) var<storage, read> args: ConvArgs;

// Consecutive q are consecutive pixels of one row of g's and X's images.
const MM_A_K_FAST: bool = true;
const MM_B_K_FAST: bool = true;

fn mm_a(p: u32, o: u32, q: u32) -> f32 {
    let opix = args.oh * args.ow;
    return work[rw + args.g + (q / opix * args.out_c + o) * opix + q % opix];
}

// Branch-free in the column (a per-invocation value): the bias column loads an in-bounds element
// and replaces it by 1.
fn mm_b(p: u32, q: u32, col: u32) -> f32 {
    let opix = args.oh * args.ow;
    let b = q / opix;
    let pix = q % opix;
    let i = pix / args.ow;
    let j = pix % args.ow;
    let kq = args.k * args.k;
    let is_bias = col >= args.in_c * kq;
    let c = col / kq;
    let tap = col % kq;
    let y = i + tap / args.k - args.pad;
    let x = j + tap % args.k - args.pad;
    let inside = y < args.h && x < args.w && !is_bias;
    let at = select(0u, ((b * args.in_c + c) * args.h + y) * args.w + x, inside);
    var v = work[rw + args.x + step.t * args.x_step + at];
    if args.x2 != NONE {
        v += work[rw + args.x2 + at];
    }
    return select(select(0.0, v, inside), 1.0, is_bias);
}

@compute @workgroup_size(MM_INVOCATIONS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    enter_replica(wid.z);
    let width = args.in_c * args.k * args.k;
    let cols = width + 1u;
    let split = max(args.split, 1u);
    let blk = mm_block(wid, nwg, lid, args.out_c, cols, split);
    if !blk.live {
        return;
    }
    let terms = args.batch * args.oh * args.ow;
    let chunk = (terms + split - 1u) / split;
    let q_begin = min(blk.slice * chunk, terms);
    let q_end = min(q_begin + chunk, terms);
    var acc: MmAcc;
    mm_product(&acc, 0u, blk, q_begin, q_end);
    for (var r = 0u; r < MM_RM; r++) {
        for (var c = 0u; c < 4u; c++) {
            if !mm_row_ok(blk, r) || !mm_col_ok(blk, c) {
                continue;
            }
            let o = blk.r0 + r;
            let col = blk.c0 + c;
            if split > 1u {
                work[rw + args.partials + (blk.slice * args.out_c + o) * cols + col] = acc[r][c];
                continue;
            }
            var at = args.weight + o * width + col;
            if col == width {
                if args.bias == NONE {
                    continue;
                }
                at = args.bias + o;
            }
            if args.accumulate != 0u {
                grad[rp + at] += acc[r][c];
            } else {
                grad[rp + at] = acc[r][c];
            }
        }
    }
}
