// Forward: the leaky-integrator readout (spec §1, readout).
//   τo = σ(a_o·(W_om·[z ; o] + c_om)), o' = (1 − τo)·o + τo·z
// One invocation per (sample, output).
#import bindings
#import args
#import neuron
@group(1) @binding(0) var<storage, read> args: ReadoutArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    let c = args.c;
    if idx >= args.batch * c {
        return;
    }
    let b = idx / c;
    let k = idx % c;
    let row = args.w_om + k * 2u * c;
    var zo = 0.0;
    for (var i = 0u; i < c; i++) {
        zo += params[row + i] * work[args.z + b * c + i];
    }
    for (var i = 0u; i < c; i++) {
        zo += params[row + c + i] * work[args.o_prev + b * c + i];
    }
    zo += params[args.c_om + k];
    let tau_o = sigmoid(params[args.a_o] * zo);
    let o = work[args.o_prev + idx];
    work[args.o_next + idx] = (1.0 - tau_o) * o + tau_o * work[args.z + idx];
    work[args.tau_o + idx] = tau_o;
    work[args.zo + idx] = zo;
}
