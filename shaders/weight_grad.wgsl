// Weight gradients as batched outer products (spec §3): for a map with output gradient G [B, O]
// and input [P ; Q] [B, P+Q],
//   ∇W[o, i] = Σ_b G[b, o]·[P ; Q][b, i],   ∇c[o] = Σ_b G[b, o]
// One invocation per weight (o, i), plus one per output for the bias (i = P+Q).
#import bindings
#import args
@group(1) @binding(0) var<uniform> args: WeightGradArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    let width = args.p_width + args.q_width;
    if idx >= args.rows * (width + 1u) {
        return;
    }
    let o = idx / (width + 1u);
    let i = idx % (width + 1u);
    let nb = args.batch;
    var acc = 0.0;
    if i == width {
        if args.bias == NONE {
            return;
        }
        for (var b = 0u; b < nb; b++) {
            acc += work[args.g + b * args.rows + o];
        }
        grad[args.bias + o] = acc;
        return;
    }
    var src: u32;
    var stride: u32;
    if i < args.p_width {
        src = args.p + i;
        if args.p_is_data != 0u {
            src += step.t * nb * args.p_width;
        }
        stride = args.p_width;
    } else {
        src = args.q + (i - args.p_width);
        stride = args.q_width;
    }
    for (var b = 0u; b < nb; b++) {
        acc += work[args.g + b * args.rows + o] * work[src + b * stride];
    }
    grad[args.out + o * width + i] = acc;
}
