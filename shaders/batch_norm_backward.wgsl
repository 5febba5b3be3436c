// Backward through a training-mode batch norm (method §1, §3: through the batch statistics).
// The affine's gradients add up over a chunk's steps when accumulate is 1. One invocation per feature:
//   ∇γ = Σ_b ḡ_y·x̂, ∇δ = Σ_b ḡ_y, ḡ_x = γ/σ/B·(B·ḡ_y − Σ_b ḡ_y − x̂·Σ_b ḡ_y·x̂)
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: BnArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let j = flat_index(gid, nwg);
    let f = args.features;
    if j >= f {
        return;
    }
    let nb = args.batch;
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var b = 0u; b < nb; b++) {
        let i = b * f + j;
        let g = work[rw + args.g_y + i];
        sum_g += g;
        sum_gx += g * work[rw + args.xhat + i];
    }
    if args.accumulate != 0u {
        grad[rp + args.gamma + j] += sum_gx;
        grad[rp + args.beta + j] += sum_g;
    } else {
        grad[rp + args.gamma + j] = sum_gx;
        grad[rp + args.beta + j] = sum_g;
    }
    let k = params[rp + args.gamma + j] * work[rw + args.invstd + j] / f32(nb);
    for (var b = 0u; b < nb; b++) {
        let i = b * f + j;
        work[rw + args.g_x + i] = k * (f32(nb) * work[rw + args.g_y + i] - sum_g - work[rw + args.xhat + i] * sum_gx);
    }
}
