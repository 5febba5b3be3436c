// Dropout with a given mask (method §9 (9.18), (9.21)): out = x ⊙ μ_t over `len` values, μ_t row t
// of the sequence's masks. The host draws the masks (reference::conv_network::dropout_mask), so that
// the engine and the reference drop the same values; the same kernel carries the gradient back
// through the mask (ḡ_s'_L = ḡ_x ⊙ μ_t).
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: DropoutArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let i = flat_index(gid, nwg);
    if i >= args.len {
        return;
    }
    work[rw + args.out + i] = work[rw + args.x + i] * work[rw + args.mask + step.t * args.len + i];
}
