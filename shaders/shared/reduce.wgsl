// A fixed-order sum over one workgroup of REDUCE_WIDTH invocations (no atomics: two runs give
// bit-identical results). Must be called in uniform control flow by every invocation.

// 256 lanes: the single-workgroup reductions (gate-slope gradients, the step's metrics) run on one
// GPU multiprocessor, whose memory pipeline 64 lanes left mostly idle (an H200 took 357 µs for a
// 131k-element dot product at 64).
const REDUCE_WIDTH: u32 = 256u;

var<workgroup> reduce_scratch: array<f32, REDUCE_WIDTH>;

fn workgroup_sum(lid: u32, value: f32) -> f32 {
    reduce_scratch[lid] = value;
    workgroupBarrier();
    for (var stride = REDUCE_WIDTH / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            reduce_scratch[lid] += reduce_scratch[lid + stride];
        }
        workgroupBarrier();
    }
    let total = reduce_scratch[0];
    workgroupBarrier();
    return total;
}
