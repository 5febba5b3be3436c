// The whole readout of one time step in one dispatch, for readouts without batch norm (method §1
// readout, §4, §3): the current z, the gate and o', the loss with ḡ_o' and, with
// READOUT_FUSED_BACKWARD (one-step training), the readout's backward ḡ_zo, r_o, ḡ_z.
// A workgroup holds READOUT_LANES / C samples, one invocation per (sample, output); each phase
// reads whole rows that other invocations of the same sample wrote in the phase before, hence the
// storage barriers between phases (executed by every invocation: uniform control flow).
// Replaces readout_current → readout_gate → loss_grad → readout_backward (4 dispatches).
#import bindings
#import args
#import neuron
#import readout
@group(1) @binding(0) var<storage, read> args: ReadoutArgs;

const READOUT_LANES: u32 = 64u;

@compute @workgroup_size(READOUT_LANES)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(wid.z);
    let c = args.c;
    let per_group = READOUT_LANES / c;
    let lane = lid3.x;
    let b = (wid.y * nwg.x + wid.x) * per_group + lane / c;
    let k = lane % c;
    let in_batch = lane < per_group * c && b < args.batch;
    if in_batch {
        readout_current_at(b, k);
    }
    storageBarrier();
    if in_batch {
        readout_gate_at(b, k);
    }
    storageBarrier();
    if in_batch && k == 0u {
        loss_grad_at(b);
    }
    storageBarrier();
    if (args.flags & READOUT_FUSED_BACKWARD) == 0u {
        return;
    }
    if in_batch {
        readout_backward_gate_at(b, k);
    }
    storageBarrier();
    if in_batch {
        readout_backward_input_at(b, k);
    }
}
