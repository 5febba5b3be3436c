// A fixed-order sum over one workgroup of REDUCE_WIDTH invocations (no atomics: two runs give
// bit-identical results). Must be called in uniform control flow by every invocation.
// The workgroup-memory path, for adapters without subgroup operations (and FPTT_NO_SUBGROUPS=1);
// shared/reduce_subgroup.wgsl declares the same names, and build.rs builds every kernel that
// imports `reduce` with each.

// 256 lanes: the single-workgroup reductions (gate-slope gradients, the step's metrics) run on one
// GPU multiprocessor, whose memory pipeline 64 lanes left mostly idle (an H200 took 357 µs for a
// 131k-element dot product at 64).
const REDUCE_WIDTH: u32 = 256u;

// What the reduction needs to know of its invocation: the kernel takes it as an entry-point
// argument (`inv: ReduceInvocation`, which brings local_invocation_id) and passes it on.
struct ReduceInvocation {
    @builtin(local_invocation_id) local: vec3<u32>,
}

var<workgroup> reduce_scratch: array<f32, REDUCE_WIDTH>;

fn workgroup_sum(inv: ReduceInvocation, value: f32) -> f32 {
    let lid = inv.local.x;
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
