// One-step backward through the LTC neuron (spec §3), with ḡ_m = ḡ_b = 0 (the loss reads the
// layer through its spikes) and the previous state a constant. One invocation per (sample, neuron):
//   ḡ_u = ḡ_s·ψ(u − θ), ḡ_b' = −β_a·ḡ_s·ψ(u − θ), ḡ_τm = ḡ_u·(d − m), ḡ_τa = ḡ_b'·(b − s)
//   r_m = ḡ_τm·τm(1 − τm), ḡ_zm = r_m·a_m (likewise r_a, ḡ_za), direct part of ḡ_d = ḡ_u·τm
#import bindings
#import args
#import neuron
@group(1) @binding(0) var<storage, read> args: LayerArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= args.batch * args.n {
        return;
    }
    let adaptive = (args.flags & LAYER_ADAPTIVE) != 0u;
    var theta = args.threshold;
    if adaptive {
        theta = B0 + BETA_ADAPT * work[args.b_next + idx];
    }
    let g_s = work[args.g_s + idx];
    let psi = surrogate(work[args.u + idx] - theta);
    let g_u = g_s * psi;
    let tau_m = work[args.tau_m + idx];
    let g_tau_m = g_u * (work[args.d + idx] - work[args.m_prev + idx]);
    let r_m = g_tau_m * tau_m * (1.0 - tau_m);
    work[args.r_m + idx] = r_m;
    work[args.g_zm + idx] = r_m * params[args.a_m];
    work[args.g_direct + idx] = g_u * tau_m;
    if adaptive {
        let g_b = -BETA_ADAPT * g_s * psi;
        let tau_a = work[args.tau_a + idx];
        let g_tau_a = g_b * (work[args.b_prev + idx] - work[args.s_prev + idx]);
        let r_a = g_tau_a * tau_a * (1.0 - tau_a);
        work[args.r_a + idx] = r_a;
        work[args.g_za + idx] = r_a * params[args.a_a];
    }
}
