// The gradient of a gate slope (spec §3): ∇a = Σ_{b,i} r[b,i]·z[b,i], with r = ḡ_τ·τ(1 − τ) and z
// the gate's pre-activation. One workgroup, fixed-order reduction.
#import bindings
#import args
@group(1) @binding(0) var<uniform> args: DotArgs;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    var acc = 0.0;
    for (var i = lid; i < args.len; i += 256u) {
        acc += work[args.a + i] * work[args.b + i];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        grad[args.out] = partial[0];
    }
}
