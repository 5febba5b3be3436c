// The step's loss and its gradient on the readout output o' (method §4), one invocation per
// sample (`loss_grad_at` in shared/readout.wgsl). Without batch norm on the readout, readout_step
// does this.
#import bindings
#import args
#import neuron
#import readout
@group(1) @binding(0) var<storage, read> args: ReadoutArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let b = flat_index(gid, nwg);
    if b >= args.batch {
        return;
    }
    loss_grad_at(b);
}
