// Second and last part of the FPTT update (method §5), after fptt_norm:
//   c_g = min(1, c/(‖g‖ + 1e-6)) with ‖g‖² the sum of fptt_norm's partials in a fixed order,
//   computed by every invocation (a few loads, no barriers, no extra dispatch), then per element
//   g ← (∇ℓ_t − λ + α·(W − W̄))·min(1, c/(‖g‖ + 1e-6))
//   W ← Adam or Adamax step with g (PyTorch semantics; bias corrections from the host, the step size per replica)
//   λ ← λ − α·(W − W̄)           (old W̄)
//   W̄ ← (1 − β)·W̄ + β·W − (β/α)·λ  (new λ)
// opt holds [W̄ | λ | m | v or u], each args.len long. With OPTIM_PLAIN (BPTT) g is the clipped
// loss gradient alone and λ, W̄ are left as they are.
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: OptimArgs;

// Each workgroup updates one contiguous block of parameters (its invocations side by side, so
// every array streams through memory in order), so that the partial sums are added once per
// invocation, not once per parameter (the host sizes the grid: src/learn/planner/update.rs).
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    enter_replica(wid.z);
    let groups = nwg.x * nwg.y;
    let per_group = ((args.len + groups - 1u) / groups + WORKGROUP - 1u) / WORKGROUP * WORKGROUP;
    let start = (wid.y * nwg.x + wid.x) * per_group;
    if start >= args.len || work[rw + args.hyper + HYPER_FROZEN] != 0.0 {
        return;
    }
    var total = 0.0;
    for (var p = 0u; p < args.parts; p++) {
        total += work[rw + args.partials + p];
    }
    let scale = min(1.0, work[rw + args.hyper + HYPER_CLIP] / (sqrt(total) + 1e-6));
    let end = min(start + per_group, args.len);
    for (var i = start + lid; i < end; i += WORKGROUP) {
        update_at(i, scale);
    }
}

fn update_at(i: u32, scale: f32) {
    let n = args.len;
    let alpha = work[rw + args.hyper + HYPER_ALPHA];
    let beta = work[rw + args.hyper + HYPER_BETA];
    let step_size = work[rw + args.hyper + HYPER_STEP_SIZES + step.t];
    let w = params[rp + i];
    let wbar = opt[ro + i];
    let lambda = opt[ro + n + i];
    let plain = (args.optimizer & OPTIM_PLAIN) != 0u;
    var g = grad[rp + i] * scale;
    if !plain {
        g = (grad[rp + i] - lambda + alpha * (w - wbar)) * scale;
    }
    var m = opt[ro + 2u * n + i];
    m = m + args.one_minus_beta1 * (g - m);
    opt[ro + 2u * n + i] = m;
    var w_new: f32;
    if (args.optimizer & OPTIM_ADAMAX) == 0u {
        let v = args.beta2 * opt[ro + 3u * n + i] + args.one_minus_beta2 * g * g;
        opt[ro + 3u * n + i] = v;
        w_new = w - step_size * m / (sqrt(v) / step.bc2_sqrt + args.eps);
    } else {
        let u = max(args.beta2 * opt[ro + 3u * n + i], abs(g) + args.eps);
        opt[ro + 3u * n + i] = u;
        w_new = w - step_size * m / u;
    }
    params[rp + i] = w_new;
    if plain {
        return;
    }
    let lambda_new = lambda - alpha * (w_new - wbar);
    opt[ro + n + i] = lambda_new;
    opt[ro + i] = (1.0 - beta) * wbar + beta * w_new - (beta / alpha) * lambda_new;
}
