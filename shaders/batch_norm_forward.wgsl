// Per-step batch normalisation of a [B, F] region, in place (method §1). One invocation per feature.
// Training: batch mean and biased variance (eps 1e-5), x̂ and 1/σ kept for the backward, and the
// running statistics of step t updated (momentum 0.1, unbiased variance). Evaluation: the
// running statistics of step t, or (`eval_batch_stats`) the statistics of the batch's valid
// samples, with nothing written back.
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: BnArgs;

const EPS: f32 = 1e-5;
const MOMENTUM: f32 = 0.1;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let j = flat_index(gid, nwg);
    let f = args.features;
    if j >= f {
        return;
    }
    let nb = args.batch;
    let gamma = params[rp + args.gamma + j];
    let beta = params[rp + args.beta + j];
    let rm = args.running + step.t * f + j;
    let rv = args.running + (step.steps + step.t) * f + j;
    let training = step.training != 0u;
    if !training && step.eval_batch_stats == 0u {
        let inv = 1.0 / sqrt(work[rw + rv] + EPS);
        let mean = work[rw + rm];
        for (var b = 0u; b < nb; b++) {
            let i = args.x + b * f + j;
            work[rw + i] = gamma * (work[rw + i] - mean) * inv + beta;
        }
        return;
    }
    // Welford's update: exact for a feature that is constant over the batch (x̂ = 0 exactly, as
    // in PyTorch's double-precision statistics), where a plain sum would leave rounding noise
    // that Adam-type optimizers amplify into real steps.
    // Statistics over the samples that count: all of them in training, the unpadded ones when an
    // evaluation normalises a short last batch with its own statistics.
    let counted = min(step.valid, nb);
    var mean = 0.0;
    var var_sum = 0.0;
    for (var b = 0u; b < counted; b++) {
        let x = work[rw + args.x + b * f + j];
        let delta = x - mean;
        mean += delta / f32(b + 1u);
        var_sum += delta * (x - mean);
    }
    let variance = var_sum / f32(counted);
    let inv = 1.0 / sqrt(variance + EPS);
    for (var b = 0u; b < nb; b++) {
        let i = b * f + j;
        let xhat = (work[rw + args.x + i] - mean) * inv;
        work[rw + args.x + i] = gamma * xhat + beta;
        if training {
            work[rw + args.xhat + i] = xhat;
        }
    }
    if training {
        work[rw + args.invstd + j] = inv;
        work[rw + rm] = (1.0 - MOMENTUM) * work[rw + rm] + MOMENTUM * mean;
        work[rw + rv] = (1.0 - MOMENTUM) * work[rw + rv] + MOMENTUM * var_sum / f32(nb - 1u);
    }
}
