// Backward, the element-wise part of a conv cell step (method §9 (9.14)–(9.15) and the element-wise
// parts of (9.19)–(9.20)), one invocation per element of [B, C, H', W'], from ḡ_s on s' and, inside
// a chunk, ḡ_m, ḡ_b carried onto m', b' and the share of ḡ_s carried from the next step (g_s_add;
// each NONE: 0), with ψ = ψ(u − θ) the surrogate:
//   e = ḡ_s − ḡ_m·u, ḡ_u = ḡ_m·(1 − s') + e·ψ, ḡ_b' = ḡ_b − β_a·e·ψ
//   ḡ_x̂ = ḡ_u·τm (the part through u; the gates' input gradients add theirs),
//   ḡ_zm = ḡ_u·(x̂ − m)·τm(1 − τm), ḡ_za = ḡ_b'·(b − s)·τa(1 − τa)
//   previous state (each unless NONE): ḡ_m = ḡ_u·(1 − τm), ḡ_b = ḡ_b'·τa, ḡ_s = ḡ_b'·(1 − τa)
// CPU twin: reference::conv::neuron_backward.
#import bindings
#import args
#import neuron
@group(1) @binding(0) var<storage, read> args: ConvNeuronArgs;

fn carried(offset: u32, i: u32) -> f32 {
    if offset == NONE {
        return 0.0;
    }
    return work[rw + offset + i];
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let i = flat_index(gid, nwg);
    if i >= args.len {
        return;
    }
    let u = work[rw + args.u + i];
    let psi = surrogate(u - work[rw + args.theta + i]);
    let g_m = carried(args.g_m_next, i);
    let e = work[rw + args.g_s + i] + carried(args.g_s_add, i) - g_m * u;
    let g_u = g_m * (1.0 - work[rw + args.s_next + i]) + e * psi;
    let g_b = carried(args.g_b_next, i) - BETA_ADAPT * e * psi;
    let tau_m = work[rw + args.tau_m + i];
    let tau_a = work[rw + args.tau_a + i];
    let m = work[rw + args.m_prev + i];
    let s = work[rw + args.s_prev + i];
    let b = work[rw + args.b_prev + i];
    work[rw + args.g_xhat + i] = g_u * tau_m;
    work[rw + args.g_zm + i] = g_u * (work[rw + args.xhat + i] - m) * tau_m * (1.0 - tau_m);
    work[rw + args.g_za + i] = g_b * (b - s) * tau_a * (1.0 - tau_a);
    if args.g_m_prev != NONE {
        work[rw + args.g_m_prev + i] = g_u * (1.0 - tau_m);
    }
    if args.g_s_prev != NONE {
        work[rw + args.g_s_prev + i] = g_b * (1.0 - tau_a);
    }
    if args.g_b_prev != NONE {
        work[rw + args.g_b_prev + i] = g_b * tau_a;
    }
}
