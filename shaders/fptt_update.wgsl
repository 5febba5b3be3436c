// Second and last part of the FPTT update (method §5), after fptt_norm:
//   c_g = min(1, c/(‖g‖ + 1e-6)) with ‖g‖² the sum of fptt_norm's partials in a fixed order,
//   computed by every invocation (a few loads, no barriers, no extra dispatch), then per element
//   g ← (∇ℓ_t − λ + α·(W − W̄))·min(1, c/(‖g‖ + 1e-6))
//   W ← Adam or Adamax step with g (PyTorch semantics; bias corrections from the host)
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
    let groups = nwg.x * nwg.y;
    let per_group = ((args.len + groups - 1u) / groups + WORKGROUP - 1u) / WORKGROUP * WORKGROUP;
    let start = (wid.y * nwg.x + wid.x) * per_group;
    if start >= args.len {
        return;
    }
    var total = 0.0;
    for (var p = 0u; p < args.parts; p++) {
        total += work[args.partials + p];
    }
    let scale = min(1.0, args.clip / (sqrt(total) + 1e-6));
    let end = min(start + per_group, args.len);
    for (var i = start + lid; i < end; i += WORKGROUP) {
        update_at(i, scale);
    }
}

fn update_at(i: u32, scale: f32) {
    let n = args.len;
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
