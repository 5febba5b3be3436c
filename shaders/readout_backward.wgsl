// One step backward through the readout gate (method §3, readout), one invocation per sample:
//   ḡ_zo = ḡ_o'·(z − o)·τo(1 − τo)·a_o,   ḡ_z = ḡ_o'·τo + ḡ_zo·W_om[:, :C]
// (shared/readout.wgsl). Used inside chunks of steps and with batch norm on the readout; one-step
// schedules without it run this inside readout_step.
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
    for (var k = 0u; k < args.c; k++) {
        readout_backward_gate_at(b, k);
    }
    for (var k = 0u; k < args.c; k++) {
        readout_backward_input_at(b, k);
    }
}
