// After loss_grad: the auxiliary table update and the step's metrics, in one workgroup.
// q (spec §4): for each class y, the first sample (batch order) labelled y whose prediction is
// wrong writes its softmax into q[y, t]; only when step.update_q is set.
// Metrics: this step's loss, correct count, squared error and spike count, reduced in a fixed
// order (no atomics), so that two runs give bit-identical numbers.
#import bindings
#import args
@group(1) @binding(0) var<uniform> args: ReadoutArgs;

var<workgroup> partial: array<f32, 256>;

fn workgroup_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

fn strided_sum(lid: u32, base: u32, len: u32) -> f32 {
    var acc = 0.0;
    for (var i = lid; i < len; i += 256u) {
        acc += work[base + i];
    }
    return workgroup_sum(lid, acc);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let c = args.c;
    if step.update_q != 0u && lid < c {
        for (var b = 0u; b < step.valid; b++) {
            let y = bitcast<u32>(work[args.targets + b]);
            if y == lid && work[args.correct_b + b] == 0.0 {
                let o = args.o_next + b * c;
                var mx = work[o];
                for (var k = 1u; k < c; k++) {
                    mx = max(mx, work[o + k]);
                }
                var sum_exp = 0.0;
                for (var k = 0u; k < c; k++) {
                    sum_exp += exp(work[o + k] - mx);
                }
                let row = args.q + (y * step.steps + step.t) * c;
                for (var k = 0u; k < c; k++) {
                    work[row + k] = exp(work[o + k] - mx) / sum_exp;
                }
                break;
            }
        }
    }
    let loss = strided_sum(lid, args.loss_b, args.batch);
    let correct = strided_sum(lid, args.correct_b, args.batch);
    let sqerr = strided_sum(lid, args.sqerr_b, args.batch);
    let spikes = strided_sum(lid, args.spikes, args.spikes_len);
    if lid == 0u {
        let t = step.t;
        let steps = step.steps;
        work[args.metrics + t] = loss;
        work[args.metrics + steps + t] = correct;
        work[args.metrics + 2u * steps + t] = sqerr;
        work[args.metrics + 3u * steps + t] = spikes;
    }
}
