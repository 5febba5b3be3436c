// One step backward through the neuron (method §3; LIF/ALIF: the slopes a_m, a_a are 1 and
// ḡ_zm, ḡ_za are the per-sample gradients of ρ_m, ρ_a). One invocation per (sample, neuron), from
// ḡ_s on s' and, inside a chunk of steps, the gradients ḡ_m, ḡ_b carried onto m', b' from the
// next step (NONE: zero, as in one-step FPTT where the loss reads the layer through its spikes):
//   e = ḡ_s − ḡ_m·u, ḡ_u = ḡ_m·(1 − s') + e·ψ(u − θ), ḡ_b' = ḡ_b − β_a·e·ψ(u − θ)
//   ḡ_τm = ḡ_u·(d − m), ḡ_τa = ḡ_b'·(b − s)
//   r_m = ḡ_τm·τm(1 − τm), ḡ_zm = r_m·a_m (likewise r_a, ḡ_za), direct part of ḡ_d = ḡ_u·τm
// Inside a chunk it also writes the element-wise parts of the gradient on the previous state:
//   ḡ_m(prev) = ḡ_u·(1 − τm), ḡ_b(prev) = ḡ_b'·τa, ḡ_s(prev) = ḡ_b'·(1 − τa)
// (input_grad then adds ḡ_zm·W_m[:, N:], ḡ_za·W_a[:, N:] and the recurrent map's part).
// The top layer's ḡ_s comes from the readout: with `top_g_z` set this kernel computes it
// (ḡ_s = carried + ḡ_z·W_o, a dot product of length C) instead of a separate input_grad.
#import bindings
#import args
#import neuron
@group(1) @binding(0) var<storage, read> args: LayerArgs;

// A gate's slope; LIF/ALIF's τ = σ(ρ) has none (1).
fn slope(offset: u32) -> f32 {
    if (args.flags & LAYER_CONSTANT_TAU) != 0u {
        return 1.0;
    }
    return slope_or_one(offset);
}

fn carried(offset: u32, idx: u32) -> f32 {
    if offset == NONE {
        return 0.0;
    }
    return work[rw + offset + idx];
}

// ḡ_s[b, j] from the readout's ḡ_z [B, C] and W_o [C, N] (plus what the next step carried).
fn spikes_grad_from_readout(idx: u32) -> f32 {
    let b = idx / args.n;
    let j = idx % args.n;
    var acc = 0.0;
    for (var o = 0u; o < args.top_c; o++) {
        acc += work[rw + args.top_g_z + b * args.top_c + o] * params[rp + args.top_w_o + o * args.n + j];
    }
    let g_s = carried(args.top_g_s_add, idx) + acc;
    work[rw + args.g_s + idx] = g_s;
    return g_s;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let idx = flat_index(gid, nwg);
    if idx >= args.batch * args.n {
        return;
    }
    let adaptive = (args.flags & LAYER_ADAPTIVE) != 0u;
    var theta = args.threshold;
    if adaptive {
        theta = select(B0, CONV_B0, (args.flags & LAYER_CONV_B0) != 0u) + BETA_ADAPT * work[rw + args.b_next + idx];
    }
    let u = work[rw + args.u + idx];
    let g_m = carried(args.g_m_next, idx);
    let psi = surrogate(u - theta);
    var g_s = 0.0;
    if args.top_g_z != NONE {
        g_s = spikes_grad_from_readout(idx);
    } else {
        g_s = work[rw + args.g_s + idx];
    }
    let e = g_s - g_m * u;
    let g_u = g_m * (1.0 - work[rw + args.s_next + idx]) + e * psi;
    let tau_m = work[rw + args.tau_m + idx];
    let g_tau_m = g_u * (work[rw + args.d + idx] - work[rw + args.m_prev + idx]);
    let r_m = g_tau_m * tau_m * (1.0 - tau_m);
    work[rw + args.r_m + idx] = r_m;
    work[rw + args.g_zm + idx] = r_m * slope(args.a_m);
    work[rw + args.g_direct + idx] = g_u * tau_m;
    if args.g_m_prev != NONE {
        work[rw + args.g_m_prev + idx] = g_u * (1.0 - tau_m);
    }
    var g_s_prev = 0.0;
    if adaptive {
        let g_b = carried(args.g_b_next, idx) - BETA_ADAPT * e * psi;
        let tau_a = work[rw + args.tau_a + idx];
        let g_tau_a = g_b * (work[rw + args.b_prev + idx] - work[rw + args.s_prev + idx]);
        let r_a = g_tau_a * tau_a * (1.0 - tau_a);
        work[rw + args.r_a + idx] = r_a;
        work[rw + args.g_za + idx] = r_a * slope(args.a_a);
        if args.g_b_prev != NONE {
            work[rw + args.g_b_prev + idx] = g_b * tau_a;
        }
        g_s_prev = g_b * (1.0 - tau_a);
    }
    if args.g_s_prev != NONE {
        work[rw + args.g_s_prev + idx] = g_s_prev;
    }
}
