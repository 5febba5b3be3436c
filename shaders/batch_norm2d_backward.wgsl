// Backward through a training-mode BatchNorm2d (method §9 (9.11): (3.15) per channel with the sums
// over samples and pixels, n = B·hw). One workgroup per channel, the two sums reduced in a fixed
// order (shared/reduce.wgsl, no atomics):
//   ∇γ = Σ ḡ_y·x̂, ∇δ = Σ ḡ_y (added when accumulate = 1), ḡ_x = γ/σ/n·(n·ḡ_y − Σ ḡ_y − x̂·Σ ḡ_y·x̂)
#import bindings
#import args
#import reduce
@group(1) @binding(0) var<storage, read> args: Bn2dArgs;

fn at(base: u32, ch: u32, e: u32) -> u32 {
    return rw + base + ((e / args.hw) * args.channels + ch) * args.hw + e % args.hw;
}

@compute @workgroup_size(REDUCE_WIDTH)
fn main(inv: ReduceInvocation, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(wid.z);
    let ch = wid.y * nwg.x + wid.x;
    if ch >= args.channels {
        return;
    }
    let lid = inv.local.x;
    let total = args.batch * args.hw;
    var g_part = 0.0;
    var gx_part = 0.0;
    for (var e = lid; e < total; e += REDUCE_WIDTH) {
        let g = work[at(args.g_y, ch, e)];
        g_part += g;
        gx_part += g * work[at(args.xhat, ch, e)];
    }
    let sum_g = workgroup_sum(inv, g_part);
    let sum_gx = workgroup_sum(inv, gx_part);
    if lid == 0u {
        if args.accumulate != 0u {
            grad[rp + args.gamma + ch] += sum_gx;
            grad[rp + args.beta + ch] += sum_g;
        } else {
            grad[rp + args.gamma + ch] = sum_gx;
            grad[rp + args.beta + ch] = sum_g;
        }
    }
    let n = f32(total);
    let k = params[rp + args.gamma + ch] * work[rw + args.invstd + ch] / n;
    for (var e = lid; e < total; e += REDUCE_WIDTH) {
        let i = at(args.g_y, ch, e);
        work[at(args.g_x, ch, e)] = k * (n * work[i] - sum_g - work[at(args.xhat, ch, e)] * sum_gx);
    }
}
