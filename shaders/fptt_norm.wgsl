// First part of the FPTT update (spec §5): partial sums of ‖g‖² with g = ∇ℓ_t − λ + α·(W − W̄),
// one per workgroup, over the trainable range (g = ∇ℓ alone with OPTIM_PLAIN). fptt_update adds
// them in a fixed order.
#import bindings
#import args
#import reduce
@group(1) @binding(0) var<storage, read> args: OptimArgs;

@compute @workgroup_size(REDUCE_WIDTH)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lid = lid3.x;
    let n = args.len;
    var acc = 0.0;
    for (var i = wid.x * REDUCE_WIDTH + lid; i < n; i += args.parts * REDUCE_WIDTH) {
        var g = grad[i];
        if (args.optimizer & OPTIM_PLAIN) == 0u {
            g = g - opt[n + i] + args.alpha * (params[i] - opt[i]);
        }
        acc += g * g;
    }
    let total = workgroup_sum(lid, acc);
    if lid == 0u {
        work[args.partials + wid.x] = total;
    }
}
