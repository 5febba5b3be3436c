// First part of the FPTT update (method §5): partial sums of ‖g‖² with g = ∇ℓ_t − λ + α·(W − W̄),
// one per workgroup, over the trainable range (g = ∇ℓ alone with OPTIM_PLAIN). fptt_update adds
// them in a fixed order. Weight gradients whose batch reduction weight_grad split S ways
// (args.gather) are first summed here from their partials, in a fixed order, into grad.
#import bindings
#import args
#import reduce
@group(1) @binding(0) var<storage, read> args: OptimArgs;

// ∇ℓ of parameter i: grad[i], or the sum of its split partials (then stored in grad for
// fptt_update).
fn loss_gradient(i: u32) -> f32 {
    for (var r = 0u; r < args.regions; r++) {
        let reg = args.gather[r];
        var o = 0u;
        var col = 0u;
        var hit = false;
        if i >= reg.out && i - reg.out < reg.rows * reg.width {
            o = (i - reg.out) / reg.width;
            col = (i - reg.out) % reg.width;
            hit = true;
        } else if reg.bias != NONE && i >= reg.bias && i - reg.bias < reg.rows {
            o = i - reg.bias;
            col = reg.width;
            hit = true;
        }
        if hit {
            let cols = reg.width + 1u;
            var sum = 0.0;
            for (var s = 0u; s < reg.split; s++) {
                sum += work[rw + reg.partials + (s * reg.rows + o) * cols + col];
            }
            grad[rp + i] = sum;
            return sum;
        }
    }
    return grad[rp + i];
}

@compute @workgroup_size(REDUCE_WIDTH)
fn main(inv: ReduceInvocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter_replica(wid.z);
    let lid = inv.local.x;
    let n = args.len;
    var acc = 0.0;
    // Without split gradients the plain loop (the gather loop keeps lavapipe from vectorising it).
    let gather = args.regions > 0u;
    for (var i = wid.x * REDUCE_WIDTH + lid; i < n; i += args.parts * REDUCE_WIDTH) {
        var g = 0.0;
        if gather {
            g = loss_gradient(i);
        } else {
            g = grad[rp + i];
        }
        if (args.optimizer & OPTIM_PLAIN) == 0u {
            g = g - opt[ro + n + i] + work[rw + args.hyper + HYPER_ALPHA] * (params[rp + i] - opt[ro + i]);
        }
        acc += g * g;
    }
    let total = workgroup_sum(inv, acc);
    if lid == 0u {
        work[rw + args.partials + wid.x] = total;
    }
}
