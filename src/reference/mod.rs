//! The CPU reference: the oracle every GPU result is checked against, written in plain f64 so that
//! it can be read against `docs/method.md` line by line. No GPU types, no cleverness:
//! every formula appears once, in the order the method writes it.
//!
//! Files and what each one owns:
//!
//! - `mod.rs` (this file): the spike function and the surrogate ψ (method §2), f64 parameter maps and
//!   their conversion from/to the f32 [`TensorMap`], and the dense-map helpers (`y = x·Wᵀ + c`).
//! - [`batchnorm`]: per-step batch normalisation, its backward through the batch statistics, and
//!   the running statistics (method §1).
//! - [`neuron`]: one spiking layer (LTC, ALIF or LIF neurons), one step forward (method §1, §7) and
//!   one step backward (method §3).
//! - [`conv`]: convolutional LTC cells (method §9): the 2-D convolution, 2×2 max-pool and 2-D
//!   batch norm with their backwards, and one conv cell's step forward and backward (NCHW
//!   `[B, C, H, W]` activations, `[out, in, k, k]` weights).
//! - [`conv_network`]: a whole convolutional network for one step (method §9): cells 1..L, dropout,
//!   flatten, the DVS model's dense LTC layer, readout and loss; the one-step FPTT gradient of `ℓ_t`
//!   with respect to every tensor of [`crate::model::conv::ConvNetSpec::tensors`], chained back
//!   through the readout, the dense layer, the mask and the cells; the dropout mask from a seed.
//! - [`readout`]: the leaky-integrator readout, forward and backward (method §1, §3).
//! - [`network`]: a stack of layers plus readout for one step, and the full one-step gradient of
//!   `ℓ_t` with respect to every parameter (the finite-difference target).
//! - [`bptt`]: backpropagation through a chunk of K steps (chunked FPTT) or a whole sequence
//!   (BPTT): the summed loss `Σ_t ℓ_t` from a constant start state and its gradient, chained
//!   through `m, s, b, o` across the steps.
//! - [`eprop`]: e-prop (method §7) for one LIF/ALIF layer: per-synapse eligibility traces derived
//!   from the layer's own dynamics, the learning signal from the readout error, the readout's own
//!   forward-mode trace; its gradient over a chunk, the counterpart of [`bptt`]'s.
//! - [`loss`]: the per-step losses and their gradient on `o'`, and the auxiliary table `q` (method §4).
//! - [`optim`]: the FPTT update's algebra, gradient clipping, Adam/Adamax/SGD steps (method §5).
//! - [`trainer`]: [`ReferenceTrainer`], which runs sequences with an FPTT update after every chunk
//!   of K steps (K = 1: after every step), one plain update per sequence (BPTT), or e-prop's plain
//!   updates after every step or once per sequence.
//!
//! Conventions: activations are row-major `[B, F]` (`B` samples, `F` features) `Vec<f64>`; a dense
//! weight is `[out, in]` row-major like PyTorch's `Linear`. Parameters live in a [`Params`] map by
//! their checkpoint name (method §8).

// Index loops read like the method's formulas; iterator chains would hide the indices.
#![allow(clippy::needless_range_loop)]

pub mod batchnorm;
pub mod bptt;
pub mod conv;
pub mod conv_network;
pub mod eprop;
pub mod loss;
pub mod network;
pub mod neuron;
pub mod optim;
pub mod readout;
pub mod trainer;

use std::collections::BTreeMap;

use crate::model::ParamLayout;
use crate::tensor::{Tensor, TensorMap};

pub use batchnorm::Norm;
pub use bptt::StateGrad;
pub use conv_network::{ConvNet, ConvNetState, ConvStepCache};
pub use eprop::{Eprop, EpropError};
pub use loss::LossContext;
pub use network::{Net, NetState, StepCache};
pub use neuron::{LayerBackward, LayerCache, LayerSpec, LayerState};
pub use readout::{ReadoutBackward, ReadoutCache, ReadoutSpec};
pub use trainer::ReferenceTrainer;

/// Method §1 constants ((1.5), (1.12), (1.13)) in exact f64 (the model's f32 constants, written as
/// the decimal literals docs/method.md gives, so that the test vectors of method §6 hold to f64
/// precision). GPU twins: `B0`, `BETA_ADAPT` in `shaders/shared/neuron.wgsl`.
pub const B0: f64 = 0.1;
pub const BETA_ADAPT: f64 = 1.8;
pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// f64 tensors by name (parameters, gradients, running statistics). Shapes come from the
/// [`ParamLayout`] / [`crate::model::StatLayout`]; the data is row-major.
pub type Params = BTreeMap<String, Vec<f64>>;

/// Gradients by parameter name, same shapes as the parameters.
pub type Grads = Params;

/// The spike nonlinearity: what the forward pass uses and what the backward pass differentiates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpikeFn {
    /// Forward `H(v)` (1 if `v > 0`, method §2 (2.1)), backward the multi-Gaussian surrogate ψ (2.2).
    Heaviside,
    /// Forward `σ(k·v)`, backward its exact derivative `k·σ(kv)(1 − σ(kv))`: a smooth network whose
    /// analytic gradient must match finite differences.
    Smooth(f64),
}

impl SpikeFn {
    /// The spike `s' = f(u − θ)`.
    pub fn forward(self, v: f64) -> f64 {
        match self {
            SpikeFn::Heaviside => {
                if v > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            SpikeFn::Smooth(k) => sigmoid(k * v),
        }
    }

    /// What the backward pass uses for `ds'/dv`.
    pub fn derivative(self, v: f64) -> f64 {
        match self {
            SpikeFn::Heaviside => surrogate(v),
            SpikeFn::Smooth(k) => {
                let s = sigmoid(k * v);
                k * s * (1.0 - s)
            }
        }
    }
}

/// `N(v; μ, σ)`: the normal density (method §2 (2.3)).
fn gaussian(v: f64, mu: f64, sigma: f64) -> f64 {
    (-(v - mu) * (v - mu) / (2.0 * sigma * sigma)).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt())
}

/// The surrogate's constants, method §2 (2.4): the gain γ, the width ℓ of the central Gaussian (and
/// the offset of the side lobes), the height h of the side lobes and their width factor k. (The
/// authors' code calls them `gamma`, `lens`, `hight`, `scale`.)
pub const SURROGATE_GAMMA: f64 = 0.5;
pub const SURROGATE_WIDTH: f64 = 0.3;
pub const SURROGATE_HEIGHT: f64 = 0.15;
pub const SURROGATE_SCALE: f64 = 6.0;

/// The surrogate gradient ψ of method §2 (2.2):
/// `ψ(v) = γ·[(1+h)·N(v; 0, ℓ) − h·N(v; ℓ, kℓ) − h·N(v; −ℓ, kℓ)]`, γ = 0.5, ℓ = 0.3, h = 0.15, k = 6.
/// GPU twin: `surrogate` in `shaders/shared/neuron.wgsl`.
pub fn surrogate(v: f64) -> f64 {
    let (w, h) = (SURROGATE_WIDTH, SURROGATE_HEIGHT);
    SURROGATE_GAMMA
        * ((1.0 + h) * gaussian(v, 0.0, w)
            - h * gaussian(v, w, SURROGATE_SCALE * w)
            - h * gaussian(v, -w, SURROGATE_SCALE * w))
}

/// `σ(z) = 1/(1 + e^(−z))`. GPU twin: `sigmoid` in `shaders/shared/neuron.wgsl`.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// A named tensor of a parameter map (a missing name is a programming error).
pub fn get<'a>(p: &'a Params, name: &str) -> &'a [f64] {
    p.get(name).unwrap_or_else(|| panic!("reference: no tensor {name}"))
}

/// A scalar parameter (a gate slope).
pub fn scalar(p: &Params, name: &str) -> f64 {
    get(p, name)[0]
}

/// f32 data to f64.
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// f64 data to f32.
pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Every parameter of `layout` from `map`, as f64. Panics on a missing tensor or a shape mismatch.
pub fn params_from_map(layout: &ParamLayout, map: &TensorMap) -> Params {
    layout
        .slots
        .iter()
        .map(|slot| {
            let t = map.get(&slot.name).unwrap_or_else(|| panic!("reference: init has no tensor {}", slot.name));
            assert_eq!(t.shape, slot.shape, "reference: shape of {}", slot.name);
            (slot.name.clone(), to_f64(&t.data))
        })
        .collect()
}

/// An f32 tensor of the given shape from f64 data.
pub fn to_tensor(shape: &[usize], data: &[f64]) -> Tensor {
    Tensor::new(shape.to_vec(), to_f32(data))
}

/// A dense map `y = x·Wᵀ + c`: `x` is `[rows, inp]`, `w` is `[out, inp]`, `c` is `[out]`; `y` is `[rows, out]`.
pub fn linear(x: &[f64], rows: usize, inp: usize, w: &[f64], c: &[f64], out: usize) -> Vec<f64> {
    assert_eq!(x.len(), rows * inp);
    assert_eq!(w.len(), out * inp);
    assert_eq!(c.len(), out);
    let mut y = vec![0.0; rows * out];
    for r in 0..rows {
        for o in 0..out {
            let mut acc = c[o];
            for i in 0..inp {
                acc += x[r * inp + i] * w[o * inp + i];
            }
            y[r * out + o] = acc;
        }
    }
    y
}

/// The backward of [`linear`] given `ḡ_y` `[rows, out]`: `(∇W = Σ_batch ḡ_yᵀ·x, ∇c = Σ_batch ḡ_y, ḡ_x = ḡ_y·W)`.
pub fn linear_backward(
    g_y: &[f64],
    x: &[f64],
    rows: usize,
    inp: usize,
    w: &[f64],
    out: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    assert_eq!(g_y.len(), rows * out);
    let mut g_w = vec![0.0; out * inp];
    let mut g_c = vec![0.0; out];
    let mut g_x = vec![0.0; rows * inp];
    for r in 0..rows {
        for o in 0..out {
            let g = g_y[r * out + o];
            g_c[o] += g;
            for i in 0..inp {
                g_w[o * inp + i] += g * x[r * inp + i];
                g_x[r * inp + i] += g * w[o * inp + i];
            }
        }
    }
    (g_w, g_c, g_x)
}

/// `[a ; b]` per row: `a` is `[rows, na]`, `b` is `[rows, nb]`, the result `[rows, na + nb]`.
pub fn concat(a: &[f64], na: usize, b: &[f64], nb: usize, rows: usize) -> Vec<f64> {
    assert_eq!(a.len(), rows * na);
    assert_eq!(b.len(), rows * nb);
    let mut y = Vec::with_capacity(rows * (na + nb));
    for r in 0..rows {
        y.extend_from_slice(&a[r * na..(r + 1) * na]);
        y.extend_from_slice(&b[r * nb..(r + 1) * nb]);
    }
    y
}

/// The first `na` columns of a `[rows, width]` matrix (the `a` part of a `[a ; b]` gradient).
pub fn first_columns(m: &[f64], rows: usize, width: usize, na: usize) -> Vec<f64> {
    assert_eq!(m.len(), rows * width);
    (0..rows).flat_map(|r| m[r * width..r * width + na].iter().copied()).collect()
}

/// The columns after the first `na` of a `[rows, width]` matrix (the `b` part of a `[a ; b]` gradient).
pub fn last_columns(m: &[f64], rows: usize, width: usize, na: usize) -> Vec<f64> {
    assert_eq!(m.len(), rows * width);
    (0..rows).flat_map(|r| m[r * width + na..(r + 1) * width].iter().copied()).collect()
}

/// `a += b` element-wise.
pub fn add_into(a: &mut [f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `total += grads` by name (a name new to `total` is taken as it is): the gradient of a chunk's
/// summed loss from its steps' gradients.
pub fn add_grads(total: &mut Grads, grads: Grads) {
    for (name, g) in grads {
        match total.get_mut(&name) {
            Some(sum) => add_into(sum, &g),
            None => {
                total.insert(name, g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_agree_with_the_model_constants() {
        assert_eq!(B0 as f32, crate::model::B0);
        assert_eq!(BETA_ADAPT as f32, crate::model::BETA_ADAPT);
        assert_eq!(BN_EPS as f32, crate::model::BN_EPS);
        assert_eq!(BN_MOMENTUM as f32, crate::model::BN_MOMENTUM);
    }

    #[test]
    fn surrogate_matches_the_spec_check_values() {
        for (v, want, tol) in [
            (0.0, 0.73185277, 1e-7),
            (0.1, 0.690580, 1e-6),
            (-0.1, 0.690580, 1e-6),
            (0.3, 0.431430, 1e-6),
            (-0.3, 0.431430, 1e-6),
            (0.5, 0.159085, 1e-6),
            (1.0, -0.025263, 1e-6),
            (2.0, -0.017989, 1e-6),
        ] {
            let got = surrogate(v);
            assert!((got - want).abs() < tol, "ψ({v}) = {got}, method {want}");
        }
    }

    #[test]
    fn linear_and_its_backward_agree_with_a_hand_example() {
        // x = [[1, 2]], W = [[3, 4], [5, 6]], c = [0.5, -0.5].
        let y = linear(&[1.0, 2.0], 1, 2, &[3.0, 4.0, 5.0, 6.0], &[0.5, -0.5], 2);
        assert_eq!(y, vec![11.5, 16.5]);
        let (gw, gc, gx) = linear_backward(&[1.0, -1.0], &[1.0, 2.0], 1, 2, &[3.0, 4.0, 5.0, 6.0], 2);
        assert_eq!(gw, vec![1.0, 2.0, -1.0, -2.0]);
        assert_eq!(gc, vec![1.0, -1.0]);
        assert_eq!(gx, vec![-2.0, -2.0]);
        assert_eq!(concat(&[1.0, 2.0], 1, &[3.0, 4.0], 1, 2), vec![1.0, 3.0, 2.0, 4.0]);
        assert_eq!(first_columns(&[1.0, 3.0, 2.0, 4.0], 2, 2, 1), vec![1.0, 2.0]);
        assert_eq!(last_columns(&[1.0, 3.0, 5.0, 2.0, 4.0, 6.0], 2, 3, 1), vec![3.0, 5.0, 4.0, 6.0]);
    }
}
