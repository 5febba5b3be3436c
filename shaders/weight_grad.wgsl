// Weight gradients as batched outer products (spec §3): for a map with output gradient G [B, O]
// and input [P ; Q] [B, P+Q],
//   ∇W[o, i] = Σ_b G[b, o]·[P ; Q][b, i],   ∇c[o] = Σ_b G[b, o]  (the bias is column P+Q, of ones)
// Inside a chunk of steps (accumulate = 1) each step adds its part. One invocation per 4×4 tile
// of (output, column).
#import bindings
#import args
#import tile
@group(1) @binding(0) var<storage, read> args: WeightGradArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let width = args.p_width + args.q_width;
    let cols = width + 1u;
    let idx = flat_index(gid, nwg);
    if idx >= tile_count(args.rows, cols) {
        return;
    }
    let tile = tile_at(idx, args.rows, cols);
    let os = tile.rows;
    let nb = args.batch;
    let p_off = args.p;
    // Where column c of the tile reads sample b: base[c] + b·stride[c]; the bias column reads 1.
    var base: vec4<u32>;
    var stride: vec4<u32>;
    var is_bias = vec4<bool>(false);
    for (var c = 0u; c < TILE; c++) {
        let i = min(tile.col0 + c, width);
        if i < args.p_width {
            base[c] = p_off + i;
            stride[c] = args.p_width;
        } else if i < width {
            base[c] = args.q + (i - args.p_width);
            stride[c] = args.q_width;
        } else {
            base[c] = 0u;
            stride[c] = 0u;
            is_bias[c] = true;
        }
    }
    var acc: array<vec4<f32>, 4>;
    for (var b = 0u; b < nb; b++) {
        let g_row = args.g + b * args.rows;
        let g = vec4<f32>(work[g_row + os.x], work[g_row + os.y], work[g_row + os.z], work[g_row + os.w]);
        let at = base + stride * b;
        let x = select(vec4<f32>(work[at.x], work[at.y], work[at.z], work[at.w]), vec4<f32>(1.0), is_bias);
        fma_tile(&acc, g, x);
    }
    for (var r = 0u; r < TILE; r++) {
        let o = tile.row0 + r;
        if o >= args.rows {
            break;
        }
        for (var c = 0u; c < TILE; c++) {
            let i = tile.col0 + c;
            if i > width {
                break;
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
