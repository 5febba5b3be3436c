// After loss_grad: the auxiliary table update and the step's metrics, in one workgroup.
// q (method §4): for each class y, the first sample (batch order) labelled y whose prediction is
// wrong writes its softmax into q[y, t]; only when step.update_q is set.
// Metrics: this step's loss, correct count, squared error and spike count, reduced in a fixed
// order (no atomics), so that two runs give bit-identical numbers.
#import bindings
#import args
#import reduce
@group(1) @binding(0) var<storage, read> args: ReadoutArgs;

fn strided_sum(inv: ReduceInvocation, base: u32, len: u32) -> f32 {
    var acc = 0.0;
    for (var i = inv.local.x; i < len; i += REDUCE_WIDTH) {
        acc += work[rw + base + i];
    }
    return workgroup_sum(inv, acc);
}

// q[y, t] ← softmax(o'_b) for the first sample b labelled y that is predicted wrong.
fn update_table(y: u32) {
    let c = args.c;
    for (var b = 0u; b < step.valid; b++) {
        if bitcast<u32>(work[rw + args.targets + step.target_offset + b]) == y && work[rw + args.correct_b + b] == 0.0 {
            let o = args.o_next + b * c;
            var mx = work[rw + o];
            for (var k = 1u; k < c; k++) {
                mx = max(mx, work[rw + o + k]);
            }
            var sum_exp = 0.0;
            for (var k = 0u; k < c; k++) {
                sum_exp += exp(work[rw + o + k] - mx);
            }
            let row = args.q + (y * step.steps + step.t) * c;
            for (var k = 0u; k < c; k++) {
                work[rw + row + k] = exp(work[rw + o + k] - mx) / sum_exp;
            }
            return;
        }
    }
}

@compute @workgroup_size(REDUCE_WIDTH)
fn main(inv: ReduceInvocation, @builtin(workgroup_id) replica_group: vec3<u32>) {
    enter_replica(replica_group.z);
    let lid = inv.local.x;
    if step.update_q != 0u {
        for (var y = lid; y < args.c; y += REDUCE_WIDTH) {
            update_table(y);
        }
    }
    let loss = strided_sum(inv, args.loss_b, args.batch);
    let correct = strided_sum(inv, args.correct_b, args.batch);
    let sqerr = strided_sum(inv, args.sqerr_b, args.batch);
    // Spikes of the valid samples only (an evaluation's padding rows are not counted).
    var spikes = 0.0;
    for (var k = 0u; k < args.layers; k++) {
        let start = bitcast<u32>(work[rw + args.spike_layers + 2u * k]);
        let n = bitcast<u32>(work[rw + args.spike_layers + 2u * k + 1u]);
        spikes += strided_sum(inv, args.spikes + start, step.valid * n);
    }
    if lid == 0u {
        let t = step.t;
        let steps = step.steps;
        work[rw + args.metrics + t] = loss;
        work[rw + args.metrics + steps + t] = correct;
        work[rw + args.metrics + 2u * steps + t] = sqerr;
        work[rw + args.metrics + 3u * steps + t] = spikes;
    }
}
