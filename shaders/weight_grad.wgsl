// Weight gradients as batched outer products (spec §3): for a map with output gradient G [B, O]
// and input [P ; Q] [B, P+Q],
//   ∇W[o, i] = Σ_b G[b, o]·[P ; Q][b, i],   ∇c[o] = Σ_b G[b, o]  (the bias is column P+Q, of ones)
// Inside a chunk of steps (accumulate = 1) each step adds its part. A matrix product of
// (output, column) outputs reduced over the batch, through the template
// (shaders/shared/matmul.wgsl): A[o, b] = G[b, o], B[b, i] = [P ; Q ; 1][b, i].
// With split S > 1 the grid runs S times, copy s reducing samples [s·⌈B/S⌉, (s+1)·⌈B/S⌉) into
// work[partials + s·rows·(P+Q+1) + o·(P+Q+1) + i] (bias column included) for a later fixed-order sum.
#import bindings
#import args
#import matmul
@group(1) @binding(0) var<storage, read> args: WeightGradArgs;

const MM_A_K_FAST: bool = false;
const MM_B_K_FAST: bool = false;

fn mm_a(p: u32, row: u32, k: u32) -> f32 {
    return work[args.g + k * args.rows + row];
}

// Branch-free in the column (a per-invocation value, so a branch would run every path): one
// load from P, Q or (for the bias column) the in-bounds G, replaced by 1 there. The column's
// base and stride do not depend on k, so the compilers hoist them out of the loop over k.
fn mm_b(p: u32, k: u32, col: u32) -> f32 {
    let in_q = col >= args.p_width;
    let is_bias = col >= args.p_width + args.q_width;
    let base = select(select(args.p + col, args.q + (col - args.p_width), in_q), args.g, is_bias);
    let stride = select(select(args.p_width, args.q_width, in_q), 0u, is_bias);
    return select(work[base + k * stride], 1.0, is_bias);
}

@compute @workgroup_size(MM_INVOCATIONS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let width = args.p_width + args.q_width;
    let cols = width + 1u;
    let split = max(args.split, 1u);
    let blk = mm_block(wid, nwg, lid, args.rows, cols, split);
    if !blk.live {
        return;
    }
    let chunk = (args.batch + split - 1u) / split;
    let k_begin = min(blk.slice * chunk, args.batch);
    let k_end = min(k_begin + chunk, args.batch);
    var acc: MmAcc;
    mm_product(&acc, 0u, blk, k_begin, k_end);
    for (var r = 0u; r < MM_RM; r++) {
        for (var c = 0u; c < 4u; c++) {
            if !mm_row_ok(blk, r) || !mm_col_ok(blk, c) {
                continue;
            }
            let o = blk.r0 + r;
            let i = blk.c0 + c;
            if split > 1u {
                work[args.partials + (blk.slice * args.rows + o) * cols + i] = acc[r][c];
                continue;
            }
            var at = args.out + o * width + i;
            if i == width {
                if args.bias == NONE {
                    continue;
                }
                at = args.bias + o;
            }
            if args.accumulate != 0u {
                grad[at] += acc[r][c];
            } else {
                grad[at] = acc[r][c];
            }
        }
    }
}
