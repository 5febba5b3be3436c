// Middle of the FPTT update (spec §5): ‖g‖ from fptt_norm's partial sums, added in a fixed order
// by one workgroup, and the clip factor min(1, c/(‖g‖ + 1e-6)) stored after the partials for
// fptt_update. A separate dispatch, so that the update itself needs no barriers (expensive on
// software adapters, which run a workgroup's invocations as coroutines).
#import bindings
#import args
#import reduce
@group(1) @binding(0) var<storage, read> args: OptimArgs;

@compute @workgroup_size(REDUCE_WIDTH)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    var acc = 0.0;
    for (var p = lid; p < args.parts; p += REDUCE_WIDTH) {
        acc += work[args.partials + p];
    }
    let total = workgroup_sum(lid, acc);
    if lid == 0u {
        work[args.partials + args.parts] = min(1.0, args.clip / (sqrt(total) + 1e-6));
    }
}
