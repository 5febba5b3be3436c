// A fixed-order sum over one workgroup of REDUCE_WIDTH invocations (no atomics), with subgroup
// operations: the same names as shared/reduce.wgsl, built instead of it where the device has
// wgpu::Features::SUBGROUP (and FPTT_NO_SUBGROUPS is not set). Must be called in uniform control
// flow by every invocation.
//
// subgroupAdd within each subgroup, one partial per subgroup into workgroup memory, one barrier,
// then every invocation adds the partials in subgroup order: two barriers instead of the tree's
// ten. Works for any subgroup size (and subgroups that are not full): it reads the subgroup's id
// and count, never assumes a size. Deterministic on a given adapter: subgroupAdd's order is fixed
// by the hardware (or the compiler, on lavapipe) and the partials are added in a fixed order, but
// it may differ in the last bits from the tree of the plain path.
// No `enable subgroups;`: naga 30 rejects it; the builtins work without it (see build.rs).

const REDUCE_WIDTH: u32 = 256u;

struct ReduceInvocation {
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
}

// One partial per subgroup (at most REDUCE_WIDTH subgroups, of one invocation each).
var<workgroup> reduce_scratch: array<f32, REDUCE_WIDTH>;

fn workgroup_sum(inv: ReduceInvocation, value: f32) -> f32 {
    let partial = subgroupAdd(value);
    if inv.lane == 0u {
        reduce_scratch[inv.subgroup] = partial;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var s = 0u; s < inv.subgroups; s++) {
        total += reduce_scratch[s];
    }
    // The next call overwrites the partials only after every invocation has read them.
    workgroupBarrier();
    return total;
}
