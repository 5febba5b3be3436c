// Per-channel batch normalisation of an NCHW [B, C, hw] region in place (BatchNorm2d, method §9
// (9.10)): channel c's statistics over its B·hw values. The [B, F] kernel (batch_norm_forward)
// cannot serve by a layout choice: it normalises feature j over elements b·F + j, which is NCHW
// only for hw = 1, and it reduces serially in one invocation per feature (B·hw = 65536 values per
// channel for the DVS network's second cell). One workgroup per channel instead: each of the
// REDUCE_WIDTH lanes runs Welford's update over a strided share of the values, then the lanes'
// (count, mean, M2) merge in a fixed tree (Chan et al.; no atomics, bit-reproducible). Welford
// and the merge are exact for a channel that is constant (x̂ = 0 exactly: see batch_norm_forward).
// Training: batch mean and biased variance (eps 1e-5), x̂ (NCHW) and 1/σ kept for the backward,
// the running statistics of step t updated (momentum 0.1, unbiased variance n/(n − 1), n = B·hw).
// Evaluation: step t's running statistics, or (`eval_batch_stats`) the valid samples' own.
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: Bn2dArgs;

const EPS: f32 = 1e-5;
const MOMENTUM: f32 = 0.1;
const LANES: u32 = 256u;

var<workgroup> lane_n: array<f32, LANES>;
var<workgroup> lane_mean: array<f32, LANES>;
var<workgroup> lane_m2: array<f32, LANES>;

// Work index of value e (< B·hw) of channel ch: sample e / hw, pixel e % hw.
fn at(base: u32, ch: u32, e: u32) -> u32 {
    return rw + base + ((e / args.hw) * args.channels + ch) * args.hw + e % args.hw;
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    enter_replica(wid.z);
    let ch = wid.y * nwg.x + wid.x;
    // Uniform per workgroup: a whole workgroup leaves, never part of one before a barrier.
    if ch >= args.channels {
        return;
    }
    let c = args.channels;
    let total = args.batch * args.hw;
    let gamma = params[rp + args.gamma + ch];
    let beta = params[rp + args.beta + ch];
    let rm = args.running + step.t * c + ch;
    let rv = args.running + (step.steps + step.t) * c + ch;
    let training = step.training != 0u;
    if !training && step.eval_batch_stats == 0u {
        let inv = 1.0 / sqrt(work[rw + rv] + EPS);
        let mean = work[rw + rm];
        for (var e = lid; e < total; e += LANES) {
            let i = at(args.x, ch, e);
            work[i] = gamma * (work[i] - mean) * inv + beta;
        }
        return;
    }
    // Statistics over the samples that count (all in training; the unpadded ones otherwise).
    let counted = min(step.valid, args.batch) * args.hw;
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var e = lid; e < counted; e += LANES) {
        let x = work[at(args.x, ch, e)];
        n += 1.0;
        let delta = x - mean;
        mean += delta / n;
        m2 += delta * (x - mean);
    }
    lane_n[lid] = n;
    lane_mean[lid] = mean;
    lane_m2[lid] = m2;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            let na = lane_n[lid];
            let nb = lane_n[lid + stride];
            let nab = na + nb;
            if nb > 0.0 {
                let delta = lane_mean[lid + stride] - lane_mean[lid];
                lane_mean[lid] += delta * (nb / nab);
                lane_m2[lid] += lane_m2[lid + stride] + delta * delta * (na * nb / nab);
                lane_n[lid] = nab;
            }
        }
        workgroupBarrier();
    }
    let batch_mean = lane_mean[0];
    let m2_total = lane_m2[0];
    let inv = 1.0 / sqrt(m2_total / f32(counted) + EPS);
    for (var e = lid; e < total; e += LANES) {
        let i = at(args.x, ch, e);
        let xhat = (work[i] - batch_mean) * inv;
        work[i] = gamma * xhat + beta;
        if training {
            work[at(args.xhat, ch, e)] = xhat;
        }
    }
    if training && lid == 0u {
        work[rw + args.invstd + ch] = inv;
        work[rw + rm] = (1.0 - MOMENTUM) * work[rw + rm] + MOMENTUM * batch_mean;
        work[rw + rv] = (1.0 - MOMENTUM) * work[rw + rv] + MOMENTUM * m2_total / f32(total - 1u);
    }
}
