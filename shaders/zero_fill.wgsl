// The start of a chunk of steps: zero the gradients the chunk's steps accumulate into (the whole
// gradient buffer and the carried state gradients). One invocation per element of the longer range.
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: RangeArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let i = flat_index(gid, nwg);
    if i < args.len {
        work[rw + args.dst + i] = 0.0;
    }
    if i < args.grad_len {
        grad[rp + i] = 0.0;
    }
}
