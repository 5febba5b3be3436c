// The step's loss and its gradient on the readout output o' (spec §4). One invocation per sample.
// Classification: ℓ_t = w_task·NLL(log_softmax(o'), y) + w_aux·mean_{batch,classes}(−q_{y,t}·p)
// with q read before this step's update; regression: ℓ_t = w_task·mean (o' − y)².
// Writes each sample's share of ℓ_t, whether its argmax is right and its squared error, for the
// fixed-order reduction in loss_finalize. Samples past step.valid (evaluation padding) count 0.
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: ReadoutArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_index(gid, nwg);
    if b >= args.batch {
        return;
    }
    let c = args.c;
    let base = b * c;
    if b >= step.valid {
        for (var k = 0u; k < c; k++) {
            work[args.g_o + base + k] = 0.0;
        }
        work[args.loss_b + b] = 0.0;
        work[args.correct_b + b] = 0.0;
        work[args.sqerr_b + b] = 0.0;
        return;
    }
    let inv_b = 1.0 / f32(step.valid);
    let o = args.o_next + base;
    if (args.flags & READOUT_REGRESSION) != 0u {
        var se = 0.0;
        for (var k = 0u; k < c; k++) {
            let diff = work[o + k] - work[args.targets + base + k];
            se += diff * diff;
            work[args.g_o + base + k] = step.w_task * 2.0 * diff * inv_b / f32(c);
        }
        work[args.loss_b + b] = step.w_task * se * inv_b / f32(c);
        work[args.sqerr_b + b] = se;
        work[args.correct_b + b] = 0.0;
        return;
    }
    let y = bitcast<u32>(work[args.targets + b]);
    var best = 0u;
    var mx = work[o];
    for (var k = 1u; k < c; k++) {
        if work[o + k] > mx {
            mx = work[o + k];
            best = k;
        }
    }
    var sum_exp = 0.0;
    for (var k = 0u; k < c; k++) {
        sum_exp += exp(work[o + k] - mx);
    }
    let lse = mx + log(sum_exp);
    var loss = step.w_task * (lse - work[o + y]) * inv_b;
    let use_aux = step.aux_mode != 0u && step.w_aux != 0.0;
    let q_row = args.q + (y * step.steps + step.t) * c;
    var q_sum = 0.0;
    if use_aux {
        var cross = 0.0;
        for (var k = 0u; k < c; k++) {
            var qk = 1.0 / f32(c);
            if step.aux_mode == 1u {
                qk = work[q_row + k];
            }
            q_sum += qk;
            cross -= qk * (work[o + k] - lse);
        }
        loss += step.w_aux * inv_b / f32(c) * cross;
    }
    for (var k = 0u; k < c; k++) {
        let p = exp(work[o + k] - lse);
        var g = step.w_task * inv_b * (p - select(0.0, 1.0, k == y));
        if use_aux {
            var qk = 1.0 / f32(c);
            if step.aux_mode == 1u {
                qk = work[q_row + k];
            }
            g += step.w_aux * inv_b / f32(c) * (q_sum * p - qk);
        }
        work[args.g_o + base + k] = g;
    }
    work[args.loss_b + b] = loss;
    work[args.correct_b + b] = select(0.0, 1.0, best == y);
    work[args.sqerr_b + b] = 0.0;
}
