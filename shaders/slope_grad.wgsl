// The gradient of a gate slope (spec §3): ∇a = Σ_{b,i} r[b,i]·z[b,i], with r = ḡ_τ·τ(1 − τ) and z
// the gate's pre-activation (added to the gradient inside a chunk of steps). One workgroup,
// fixed-order reduction.
#import bindings
#import args
#import reduce
@group(1) @binding(0) var<storage, read> args: DotArgs;

@compute @workgroup_size(REDUCE_WIDTH)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    var acc = 0.0;
    for (var i = lid; i < args.len; i += REDUCE_WIDTH) {
        acc += work[args.a + i] * work[args.b + i];
    }
    let total = workgroup_sum(lid, acc);
    if lid == 0u {
        if args.accumulate != 0u {
            grad[args.out] += total;
        } else {
            grad[args.out] = total;
        }
    }
}
