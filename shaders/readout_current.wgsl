// Forward: the readout current z = W_o·s_top + c_o, before any batch norm (method §1, readout).
// One invocation per (sample, output). Without batch norm on the readout, readout_step does this.
#import bindings
#import args
#import neuron
#import readout
@group(1) @binding(0) var<storage, read> args: ReadoutArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let idx = flat_index(gid, nwg);
    if idx >= args.batch * args.c {
        return;
    }
    readout_current_at(idx / args.c, idx % args.c);
}
