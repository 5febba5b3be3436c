// Last part of the FPTT update (spec §5), one invocation per trainable parameter, with the clip
// factor from fptt_clip:
//   g ← (∇ℓ_t − λ + α·(W − W̄))·min(1, c/(‖g‖ + 1e-6))
//   W ← Adam or Adamax step with g (PyTorch semantics; bias corrections from the host)
//   λ ← λ − α·(W − W̄)           (old W̄)
//   W̄ ← (1 − β)·W̄ + β·W − (β/α)·λ  (new λ)
// opt holds [W̄ | λ | m | v or u], each args.len long. With OPTIM_PLAIN (BPTT) g is the clipped
// loss gradient alone and λ, W̄ are left as they are.
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: OptimArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let n = args.len;
    if i >= n {
        return;
    }
    let scale = work[args.partials + args.parts];
    let w = params[i];
    let wbar = opt[i];
    let lambda = opt[n + i];
    let plain = (args.optimizer & OPTIM_PLAIN) != 0u;
    var g = grad[i] * scale;
    if !plain {
        g = (grad[i] - lambda + args.alpha * (w - wbar)) * scale;
    }
    var m = opt[2u * n + i];
    m = m + args.one_minus_beta1 * (g - m);
    opt[2u * n + i] = m;
    var w_new: f32;
    if (args.optimizer & OPTIM_ADAMAX) == 0u {
        let v = args.beta2 * opt[3u * n + i] + args.one_minus_beta2 * g * g;
        opt[3u * n + i] = v;
        w_new = w - step.step_size * m / (sqrt(v) / step.bc2_sqrt + args.eps);
    } else {
        let u = max(args.beta2 * opt[3u * n + i], abs(g) + args.eps);
        opt[3u * n + i] = u;
        w_new = w - step.step_size * m / u;
    }
    params[i] = w_new;
    if plain {
        return;
    }
    let lambda_new = lambda - args.alpha * (w_new - wbar);
    opt[n + i] = lambda_new;
    opt[i] = (1.0 - args.beta) * wbar + args.beta * w_new - (args.beta / args.alpha) * lambda_new;
}
