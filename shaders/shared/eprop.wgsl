// What the three e-prop kernels share: the readout's per-step Jacobians (method §7; derivation in
// src/reference/eprop.rs). Per sample b and output k, with g_k = (z_k − o_k)·τo_k(1 − τo_k)·a_o:
//   D[k, kk] = ∂o'_k/∂z_kk = τo_k·δ + g_k·W_om[k, kk]
//   A[k, kk] = ∂o'_k/∂o_kk = (1 − τo_k)·δ + g_k·W_om[k, C + kk]
// Needs `args: EpropArgs` and the bindings.

// How much the gate's pre-activation moves o'_k of sample b: g_k above.
fn readout_gain(b: u32, k: u32) -> f32 {
    let i = b * args.c + k;
    let tau = work[rw + args.tau_o + i];
    return (work[rw + args.z + i] - work[rw + args.o_prev + i]) * tau * (1.0 - tau) * params[rp + args.a_o];
}

// D[k, kk] for sample b, given its gain g_k.
fn readout_d(b: u32, k: u32, kk: u32, gain: f32) -> f32 {
    var diag = 0.0;
    if k == kk {
        diag = work[rw + args.tau_o + b * args.c + k];
    }
    return diag + gain * params[rp + args.w_om + k * 2u * args.c + kk];
}

// A[k, kk] for sample b, given its gain g_k (eprop_signal stores it at readout_a for the rest).
fn readout_a(b: u32, k: u32, kk: u32, gain: f32) -> f32 {
    var diag = 0.0;
    if k == kk {
        diag = 1.0 - work[rw + args.tau_o + b * args.c + k];
    }
    return diag + gain * params[rp + args.w_om + k * 2u * args.c + args.c + kk];
}

// (A·old)_k for sample b from the stored A: how the readout carries last step's sensitivities
// forward.
fn readout_carry(b: u32, k: u32, old: ptr<function, array<f32, EPROP_MAX_OUTPUTS>>) -> f32 {
    let c = args.c;
    let row = args.readout_a + (b * c + k) * c;
    var mixed = 0.0;
    for (var kk = 0u; kk < c; kk++) {
        mixed += work[rw + row + kk] * (*old)[kk];
    }
    return mixed;
}

// The feedback matrix B[k, j]: W_o (symmetric e-prop) or the fixed random one.
fn feedback(k: u32, j: u32) -> f32 {
    if args.feedback == NONE {
        return params[rp + args.w_o + k * args.n + j];
    }
    return work[rw + args.feedback + k * args.n + j];
}

// grad[at] = value, or += inside an update window of several steps.
fn store_grad(at: u32, value: f32) {
    if (args.flags & EPROP_ACCUMULATE) != 0u {
        grad[rp + at] += value;
    } else {
        grad[rp + at] = value;
    }
}
