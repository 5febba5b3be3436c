// Gradients passed down a map (spec §3): out[b, j] = add[b, j] + Σ_o G1[b, o]·W1[o, col1 + j]
// (+ the same with G2, W2). Used for ḡ_d = ḡ_u·τm + ḡ_zm·W_m[:, :N] + ḡ_za·W_a[:, :N], for
// ḡ_s_top = ḡ_z·W_o and for ḡ_x = ḡ_d·W_x. One invocation per (sample, column).
#import bindings
#import args
@group(1) @binding(0) var<uniform> args: InputGradArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= args.batch * args.cols {
        return;
    }
    let b = idx / args.cols;
    let j = idx % args.cols;
    var acc = 0.0;
    if args.add != NONE {
        acc = work[args.add + idx];
    }
    for (var o = 0u; o < args.k1; o++) {
        acc += work[args.g1 + b * args.k1 + o] * params[args.w1 + o * args.ld1 + args.col1 + j];
    }
    for (var o = 0u; o < args.k2; o++) {
        acc += work[args.g2 + b * args.k2 + o] * params[args.w2 + o * args.ld2 + args.col2 + j];
    }
    work[args.out + idx] = acc;
}
