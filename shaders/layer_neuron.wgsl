// Forward, step 2 of a hidden layer: gates and the LTC neuron update (spec §1).
//   d = cur_x + cur_r, τm = σ(a_m·(W_m·[d ; m] + c_m)), τa = σ(a_a·(W_a·[d ; b] + c_a)),
//   b' = τa·b + (1 − τa)·s, θ = b0 + β_a·b', u = m + τm·(d − m), s' = H(u − θ), m' = (1 − s')·u
// Reads the previous state and writes the next one (the host alternates the two), and records
// the tape (d, τm, τa, the gate pre-activations, u) that the one-step backward needs.
// One invocation per (sample, neuron).
#import bindings
#import args
#import neuron
@group(1) @binding(0) var<uniform> args: LayerArgs;

fn current(i: u32) -> f32 {
    if (args.flags & LAYER_FUSED) != 0u {
        return work[args.cur_x + i];
    }
    return work[args.cur_x + i] + work[args.cur_r + i];
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    let n = args.n;
    if idx >= args.batch * n {
        return;
    }
    let b = idx / n;
    let j = idx % n;
    let row = b * n;

    let wm = args.w_m + j * 2u * n;
    var zm = 0.0;
    for (var i = 0u; i < n; i++) {
        zm += params[wm + i] * current(row + i);
    }
    for (var i = 0u; i < n; i++) {
        zm += params[wm + n + i] * work[args.m_prev + row + i];
    }
    zm += params[args.c_m + j];
    let tau_m = sigmoid(params[args.a_m] * zm);

    let d = current(idx);
    let m = work[args.m_prev + idx];
    var theta = args.threshold;
    if (args.flags & LAYER_ADAPTIVE) != 0u {
        let wa = args.w_a + j * 2u * n;
        var za = 0.0;
        for (var i = 0u; i < n; i++) {
            za += params[wa + i] * current(row + i);
        }
        for (var i = 0u; i < n; i++) {
            za += params[wa + n + i] * work[args.b_prev + row + i];
        }
        za += params[args.c_a + j];
        let tau_a = sigmoid(params[args.a_a] * za);
        let b_new = tau_a * work[args.b_prev + idx] + (1.0 - tau_a) * work[args.s_prev + idx];
        theta = B0 + BETA_ADAPT * b_new;
        work[args.za + idx] = za;
        work[args.tau_a + idx] = tau_a;
        work[args.b_next + idx] = b_new;
    }
    let u = m + tau_m * (d - m);
    let spike = select(0.0, 1.0, u - theta > 0.0);
    work[args.m_next + idx] = (1.0 - spike) * u;
    work[args.s_next + idx] = spike;
    work[args.d + idx] = d;
    work[args.tau_m + idx] = tau_m;
    work[args.zm + idx] = zm;
    work[args.u + idx] = u;
}
