// The end of a chunk of steps: its final state becomes the state the next chunk starts from.
// One invocation per element; the two ranges do not overlap.
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: RangeArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let i = flat_index(gid, nwg);
    if i < args.len {
        work[rw + args.dst + i] = work[rw + args.src + i];
    }
}
