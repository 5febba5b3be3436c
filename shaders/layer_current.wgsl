// Forward, step 1 of a hidden layer: the input currents (spec §1), before any batch norm.
//   cur_x = W_x·x + c_x      (fused variant: W_x·[x ; s] + c_x)
//   cur_r = W_r·s + c_r      (s: the layer's own spikes from the previous step)
// One invocation per (sample, neuron).
#import bindings
#import args
@group(1) @binding(0) var<uniform> args: LayerArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= args.batch * args.n {
        return;
    }
    let b = idx / args.n;
    let j = idx % args.n;
    var x_base = args.x_in + b * args.n_in;
    if (args.flags & LAYER_DATA_INPUT) != 0u {
        x_base += step.t * args.batch * args.n_in;
    }
    let s_base = args.s_prev + b * args.n;
    if (args.flags & LAYER_FUSED) != 0u {
        let row = args.w_x + j * (args.n_in + args.n);
        var acc = 0.0;
        for (var i = 0u; i < args.n_in; i++) {
            acc += params[row + i] * work[x_base + i];
        }
        for (var i = 0u; i < args.n; i++) {
            acc += params[row + args.n_in + i] * work[s_base + i];
        }
        work[args.cur_x + idx] = acc + params[args.c_x + j];
    } else {
        let row = args.w_x + j * args.n_in;
        var acc = 0.0;
        for (var i = 0u; i < args.n_in; i++) {
            acc += params[row + i] * work[x_base + i];
        }
        work[args.cur_x + idx] = acc + params[args.c_x + j];
        let rrow = args.w_r + j * args.n;
        var accr = 0.0;
        for (var i = 0u; i < args.n; i++) {
            accr += params[rrow + i] * work[s_base + i];
        }
        work[args.cur_r + idx] = accr + params[args.c_r + j];
    }
}
