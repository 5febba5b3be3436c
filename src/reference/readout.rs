//! The readout: a leaky integrator without spikes (method §1 "Readout"), one step forward and its
//! one-step backward (method §3), with the previous `o` a constant or with the gradient on it (for
//! chunked truncation and BPTT):
//! `z = W_o·s_top + c_o` (optionally `BN_o,t(·)`), `τo = σ(a_o·(W_om·[z ; o] + c_om))`,
//! `o' = (1 − τo)⊙o + τo⊙z`.

use super::batchnorm::{self, BnCache, Norm};
use super::{
    add_into, concat, first_columns, get, last_columns, linear, linear_backward, scalar, sigmoid, Grads, Params,
};
use crate::model::{LayerNames, ModelConfig};

/// The readout's names and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadoutSpec {
    /// `W_o`, `c_o` (`{x}.weight`, `{x}.bias`).
    pub x: String,
    /// `W_om`, `c_om`.
    pub tau_m: String,
    /// The batch norm of `z`.
    pub bn: String,
    /// The slope `a_o`.
    pub slope: String,
    /// Input width: the top hidden layer's `N`.
    pub inputs: usize,
    /// Outputs `C`.
    pub outputs: usize,
    pub batch_norm: bool,
    /// Whether the gate carries the slope `a_o` (1.15). Without it (the conv network's
    /// `nn.Sigmoid`, method §9) `a_o = 1`, not read from the parameters and without a gradient.
    pub slopes: bool,
}

impl ReadoutSpec {
    pub fn of(cfg: &ModelConfig) -> Self {
        let (x, tau_m, bn, slope) = LayerNames::readout(cfg.layers());
        ReadoutSpec {
            x,
            tau_m,
            bn,
            slope,
            inputs: cfg.top_hidden(),
            outputs: cfg.outputs,
            batch_norm: cfg.batch_norm,
            slopes: true,
        }
    }

    /// The slope `a_o`: the parameter with slopes, 1 without.
    pub fn a_o(&self, p: &Params) -> f64 {
        if self.slopes {
            scalar(p, &self.slope)
        } else {
            1.0
        }
    }
}

/// One step's readout forward, kept for the backward. `[B, C]` unless noted.
#[derive(Debug, Clone)]
pub struct ReadoutCache {
    /// The top layer's spikes `s_top`, `[B, N]`.
    pub s_top: Vec<f64>,
    /// The previous readout `o` (a constant under FPTT with truncation 1).
    pub o_prev: Vec<f64>,
    /// `W_o·s_top + c_o` before any batch norm.
    pub cur: Vec<f64>,
    pub bn: Option<BnCache>,
    pub z: Vec<f64>,
    /// `W_om·[z ; o] + c_om` (before the slope).
    pub pre: Vec<f64>,
    pub tau: Vec<f64>,
    /// `o'`: the logits or the prediction.
    pub o: Vec<f64>,
}

/// One step forward of the readout (method §1 (1.14)–(1.16)) from the top layer's new spikes
/// `s_top` `[B, N]` and the previous `o` `[B, C]`. GPU twins: `shaders/readout_current.wgsl`, then
/// `shaders/batch_norm_forward.wgsl` (with batch norm), then `shaders/readout_gate.wgsl`.
pub fn forward(
    spec: &ReadoutSpec,
    p: &Params,
    s_top: &[f64],
    o_prev: &[f64],
    batch: usize,
    norm: Norm,
) -> ReadoutCache {
    let (nb, nn, nc) = (batch, spec.inputs, spec.outputs);
    let cur = linear(s_top, nb, nn, get(p, &format!("{}.weight", spec.x)), get(p, &format!("{}.bias", spec.x)), nc);
    let (z, bn) = if spec.batch_norm {
        let (z, cache) = batchnorm::forward(&cur, nb, nc, p, &spec.bn, norm);
        (z, Some(cache))
    } else {
        (cur.clone(), None)
    };
    let a_o = spec.a_o(p);
    let zo = concat(&z, nc, o_prev, nc, nb);
    let pre =
        linear(&zo, nb, 2 * nc, get(p, &format!("{}.weight", spec.tau_m)), get(p, &format!("{}.bias", spec.tau_m)), nc);
    let tau: Vec<f64> = pre.iter().map(|&v| sigmoid(a_o * v)).collect();
    let o: Vec<f64> = (0..nb * nc).map(|i| (1.0 - tau[i]) * o_prev[i] + tau[i] * z[i]).collect();
    ReadoutCache { s_top: s_top.to_vec(), o_prev: o_prev.to_vec(), cur, bn, z, pre, tau, o }
}

/// What the readout's backward returns when the previous `o` is a variable.
#[derive(Debug, Clone)]
pub struct ReadoutBackward {
    /// The gradient of every readout parameter (including the slope `a_o`).
    pub grads: Grads,
    /// `ḡ_s_top` `[B, N]`: the gradient on the top layer's new spikes.
    pub g_s_top: Vec<f64>,
    /// `ḡ` on the previous readout `o` `[B, C]`.
    pub g_prev_o: Vec<f64>,
}

/// The backward from `ḡ_o'` `[B, C]`: the readout's parameter gradients and `ḡ_s_top` `[B, N]`.
/// `ḡ_zo = ḡ_o'⊙(z − o)⊙τo(1−τo)⊙a_o`, `ḡ_z = ḡ_o'⊙τo + ḡ_zo·W_om[:, :C]`, `ḡ_s_top = ḡ_z·W_o`.
/// The previous `o` is a constant; [`backward_through_state`] also returns the gradient on it.
///
/// Method §3 (3.12)–(3.14). GPU twins: `shaders/readout_backward.wgsl`, then `shaders/weight_grad.wgsl`,
/// `shaders/weight_grad.wgsl` (dot jobs), `shaders/input_grad.wgsl`.
pub fn backward(spec: &ReadoutSpec, p: &Params, c: &ReadoutCache, batch: usize, g_o: &[f64]) -> (Grads, Vec<f64>) {
    let r = backward_through_state(spec, p, c, batch, g_o);
    (r.grads, r.g_s_top)
}

/// [`backward`] plus the gradient on the previous `o`: through the leak `o' = (1 − τo)⊙o + τo⊙z`
/// (`ḡ_o'⊙(1 − τo)`) and through the gate input `[z ; o]` of `W_om` (`(ḡ_zo·W_om)[:, C:]`).
///
/// Method §3 (3.12)–(3.14), (3.19). GPU twins: those of [`backward`].
pub fn backward_through_state(
    spec: &ReadoutSpec,
    p: &Params,
    c: &ReadoutCache,
    batch: usize,
    g_o: &[f64],
) -> ReadoutBackward {
    let (nb, nn, nc) = (batch, spec.inputs, spec.outputs);
    let len = nb * nc;
    assert_eq!(g_o.len(), len, "ḡ_o' shape");
    let mut grads = Grads::new();
    let a_o = spec.a_o(p);
    let g_t_dsig: Vec<f64> = (0..len).map(|i| g_o[i] * (c.z[i] - c.o_prev[i]) * c.tau[i] * (1.0 - c.tau[i])).collect();
    let g_zo: Vec<f64> = g_t_dsig.iter().map(|g| g * a_o).collect();
    let zo = concat(&c.z, nc, &c.o_prev, nc, nb);
    let (gw, gc, g_zo_in) = linear_backward(&g_zo, &zo, nb, 2 * nc, get(p, &format!("{}.weight", spec.tau_m)), nc);
    grads.insert(format!("{}.weight", spec.tau_m), gw);
    grads.insert(format!("{}.bias", spec.tau_m), gc);
    if spec.slopes {
        grads.insert(spec.slope.clone(), vec![(0..len).map(|i| g_t_dsig[i] * c.pre[i]).sum()]);
    }
    let mut g_z: Vec<f64> = (0..len).map(|i| g_o[i] * c.tau[i]).collect();
    add_into(&mut g_z, &first_columns(&g_zo_in, nb, 2 * nc, nc));
    // Previous o: the leak gives ḡ_o'⊙(1 − τo), the gate input [z ; o] gives (ḡ_zo·W_om)[:, C:].
    let mut g_prev_o: Vec<f64> = (0..len).map(|i| g_o[i] * (1.0 - c.tau[i])).collect();
    add_into(&mut g_prev_o, &last_columns(&g_zo_in, nb, 2 * nc, nc));
    let g_cur = if spec.batch_norm {
        let (g_cur, gg, gd) = batchnorm::backward(&g_z, c.bn.as_ref().unwrap(), nb, nc, p, &spec.bn);
        grads.insert(format!("{}.weight", spec.bn), gg);
        grads.insert(format!("{}.bias", spec.bn), gd);
        g_cur
    } else {
        g_z
    };
    let (gw, gc, g_s) = linear_backward(&g_cur, &c.s_top, nb, nn, get(p, &format!("{}.weight", spec.x)), nc);
    grads.insert(format!("{}.weight", spec.x), gw);
    grads.insert(format!("{}.bias", spec.x), gc);
    ReadoutBackward { grads, g_s_top: g_s, g_prev_o }
}
