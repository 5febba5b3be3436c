//! Convolutional LTC cells (method §9), as in the authors' DVS Gesture model: one step forward and
//! the one-step backward of one cell, and the pieces it is made of: the 2-D convolution (stride 1,
//! zero padding) with its backward, the 2×2 max-pool with its backward, and the 2-D batch norm
//! (per channel over batch, rows and columns) with its backward and running statistics.
//!
//! Layout: activations are NCHW, `[B, C, H, W]` row-major `Vec<f64>`; a convolution's weight is
//! `[out, in, k, k]` and its bias `[out]`, as PyTorch's `Conv2d` stores them. A cell's state `m`, `s`,
//! `b` (membrane, spike, adaptation) is a [`LayerState`] whose vectors are `[B, C, H', W']` at the
//! cell's pooled resolution.
//!
//! The cell's forward (method (9.1)–(9.9)):
//!
//! ```text
//! x̂  = Pool(BN_x(Conv_x(x)))                    the input current, at the pooled size
//! τm = σ(BN_m(Conv_m(x̂ + m)))                   gates read a sum, not a concatenation
//! τa = σ(BN_a(Conv_a(x̂ + b)))
//! b' = τa⊙b + (1 − τa)⊙s;   θ = b0 + β_a·b'      b0 = 0.5, β_a = 1.8 (the DVS script's)
//! u  = m + τm⊙(x̂ − m);   s' = H(u − θ);   m' = (1 − s')⊙u
//! ```
//!
//! There is no recurrent map: the previous spikes enter only through the adaptation `b'`. The
//! gates have no slopes (the authors' `nn.Sigmoid`). The backward follows method §3 with the dense
//! maps replaced by convolutions and each gate's batch norm differentiated through its batch
//! statistics.

use super::batchnorm::{self, BnCache, Norm};
use super::neuron::{spike_backward, LayerState};
use super::{add_into, get, sigmoid, Grads, Params, SpikeFn, BETA_ADAPT};
use crate::model::conv::{ConvCellNames, ConvNetSpec, CONV_B0};

// ---------------------------------------------------------------------------------------------
// Convolution

/// The shape of one stride-1 convolution with square kernel `k` and zero padding `pad` on every
/// side: input `[batch, in_c, h, w]`, weight `[out_c, in_c, k, k]`, output `[batch, out_c, oh, ow]`
/// with `oh = h + 2·pad − k + 1`, `ow = w + 2·pad − k + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub pad: usize,
}

impl ConvShape {
    /// Output rows.
    pub fn oh(&self) -> usize {
        assert!(self.h + 2 * self.pad >= self.k, "kernel larger than the padded image");
        self.h + 2 * self.pad - self.k + 1
    }

    /// Output columns.
    pub fn ow(&self) -> usize {
        assert!(self.w + 2 * self.pad >= self.k, "kernel larger than the padded image");
        self.w + 2 * self.pad - self.k + 1
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.in_c * self.h * self.w
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.out_c * self.oh() * self.ow()
    }

    pub fn weight_len(&self) -> usize {
        self.out_c * self.in_c * self.k * self.k
    }

    /// The input pixel (row, column) output pixel `(oy, ox)` reads through kernel tap `(ky, kx)`,
    /// or `None` where it falls in the zero padding.
    fn tap(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = (oy + ky).checked_sub(self.pad)?;
        let ix = (ox + kx).checked_sub(self.pad)?;
        (iy < self.h && ix < self.w).then_some((iy, ix))
    }
}

/// `y[n, o, oy, ox] = c[o] + Σ_{i, ky, kx} W[o, i, ky, kx]·x[n, i, oy + ky − pad, ox + kx − pad]`
/// (zero outside the image): PyTorch's `Conv2d` with stride 1.
///
/// Method §9 (9.1).
pub fn conv2d(x: &[f64], s: &ConvShape, weight: &[f64], bias: &[f64]) -> Vec<f64> {
    assert_eq!(x.len(), s.input_len(), "conv input shape");
    assert_eq!(weight.len(), s.weight_len(), "conv weight shape");
    assert_eq!(bias.len(), s.out_c, "conv bias shape");
    let (oh, ow, k) = (s.oh(), s.ow(), s.k);
    let mut y = vec![0.0; s.output_len()];
    for n in 0..s.batch {
        for o in 0..s.out_c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias[o];
                    for i in 0..s.in_c {
                        for ky in 0..k {
                            for kx in 0..k {
                                if let Some((iy, ix)) = s.tap(oy, ox, ky, kx) {
                                    acc += weight[((o * s.in_c + i) * k + ky) * k + kx]
                                        * x[((n * s.in_c + i) * s.h + iy) * s.w + ix];
                                }
                            }
                        }
                    }
                    y[((n * s.out_c + o) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    y
}

/// The backward of [`conv2d`] given `ḡ_y` `[B, out, oh, ow]`: `(∇W, ∇c, ḡ_x)` with
/// `∇W[o, i, ky, kx] = Σ_{n, oy, ox} ḡ_y[n, o, oy, ox]·x[n, i, oy + ky − pad, ox + kx − pad]`,
/// `∇c[o] = Σ_{n, oy, ox} ḡ_y[n, o, oy, ox]` and `ḡ_x` the transposed convolution of `ḡ_y` (each
/// input pixel collects `ḡ_y·W` from every output pixel that read it).
///
/// Method §9 (9.12).
pub fn conv2d_backward(g_y: &[f64], x: &[f64], s: &ConvShape, weight: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    assert_eq!(g_y.len(), s.output_len(), "conv ḡ_y shape");
    assert_eq!(x.len(), s.input_len(), "conv input shape");
    assert_eq!(weight.len(), s.weight_len(), "conv weight shape");
    let (oh, ow, k) = (s.oh(), s.ow(), s.k);
    let mut g_w = vec![0.0; s.weight_len()];
    let mut g_c = vec![0.0; s.out_c];
    let mut g_x = vec![0.0; s.input_len()];
    for n in 0..s.batch {
        for o in 0..s.out_c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let g = g_y[((n * s.out_c + o) * oh + oy) * ow + ox];
                    g_c[o] += g;
                    for i in 0..s.in_c {
                        for ky in 0..k {
                            for kx in 0..k {
                                if let Some((iy, ix)) = s.tap(oy, ox, ky, kx) {
                                    let wi = ((o * s.in_c + i) * k + ky) * k + kx;
                                    let xi = ((n * s.in_c + i) * s.h + iy) * s.w + ix;
                                    g_w[wi] += g * x[xi];
                                    g_x[xi] += g * weight[wi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (g_w, g_c, g_x)
}

// ---------------------------------------------------------------------------------------------
// Max-pool

/// 2×2 max-pool with stride 2 and no padding over `[planes, h, w]` (`planes = B·C`): output
/// `[planes, h/2, w/2]` (floor: an odd last row or column is dropped, PyTorch's default), and for
/// each output the flat index into the input of the element it took. Ties go to the first maximum
/// in row-major order within the window (PyTorch's `>` scan).
///
/// Method §9 (9.2).
pub fn maxpool2(x: &[f64], planes: usize, h: usize, w: usize) -> (Vec<f64>, Vec<usize>) {
    assert_eq!(x.len(), planes * h * w, "pool input shape");
    let (oh, ow) = (h / 2, w / 2);
    let mut y = vec![0.0; planes * oh * ow];
    let mut arg = vec![0; planes * oh * ow];
    for p in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = p * h * w + (2 * oy) * w + 2 * ox;
                for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                    let i = p * h * w + (2 * oy + dy) * w + 2 * ox + dx;
                    if x[i] > x[best] {
                        best = i;
                    }
                }
                let o = (p * oh + oy) * ow + ox;
                y[o] = x[best];
                arg[o] = best;
            }
        }
    }
    (y, arg)
}

/// The backward of [`maxpool2`]: each output's gradient goes to the input element it took; the
/// others (and a dropped odd row or column) get 0. `input_len` is the input's length.
///
/// Method §9 (9.13).
pub fn maxpool2_backward(g_y: &[f64], arg: &[usize], input_len: usize) -> Vec<f64> {
    assert_eq!(g_y.len(), arg.len(), "pool ḡ_y shape");
    let mut g_x = vec![0.0; input_len];
    for (g, &i) in g_y.iter().zip(arg) {
        g_x[i] += g;
    }
    g_x
}

// ---------------------------------------------------------------------------------------------
// 2-D batch norm: the per-feature batch norm of `batchnorm` with rows (n, y, x) and features c.

/// NCHW `[B, C, H, W]` to channels-last `[B·H·W, C]`.
fn channels_last(x: &[f64], b: usize, c: usize, hw: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for n in 0..b {
        for ch in 0..c {
            for p in 0..hw {
                y[(n * hw + p) * c + ch] = x[(n * c + ch) * hw + p];
            }
        }
    }
    y
}

/// Channels-last `[B·H·W, C]` back to NCHW.
fn channels_first(y: &[f64], b: usize, c: usize, hw: usize) -> Vec<f64> {
    let mut x = vec![0.0; y.len()];
    for n in 0..b {
        for ch in 0..c {
            for p in 0..hw {
                x[(n * c + ch) * hw + p] = y[(n * hw + p) * c + ch];
            }
        }
    }
    x
}

/// PyTorch's `BatchNorm2d`: per channel, `y = γ⊙x̂ + δ` with `x̂` normalised over the batch and all
/// pixels (`B·H·W` values per channel, biased variance, eps 1e−5) in training, or with the running
/// statistics of `norm`. `x` is `[b, c, h·w]` NCHW; the cache's `xhat` is channels-last
/// `[B·H·W, C]`, the layout [`batchnorm`] works in.
///
/// Method §9 (9.10), the per-feature (1.12) with rows `(n, y, x)`.
pub fn bn2d_forward(x: &[f64], b: usize, c: usize, hw: usize, p: &Params, bn: &str, norm: Norm) -> (Vec<f64>, BnCache) {
    assert_eq!(x.len(), b * c * hw, "batch norm input shape");
    let (y, cache) = batchnorm::forward(&channels_last(x, b, c, hw), b * hw, c, p, bn, norm);
    (channels_first(&y, b, c, hw), cache)
}

/// The backward of [`bn2d_forward`] given `ḡ_y` (NCHW): `(ḡ_x, ∇γ, ∇δ)`, (3.15) per channel with
/// the sums over batch and pixels.
///
/// Method §9 (9.11).
pub fn bn2d_backward(
    g_y: &[f64],
    cache: &BnCache,
    b: usize,
    c: usize,
    hw: usize,
    p: &Params,
    bn: &str,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (g_x, g_gamma, g_delta) = batchnorm::backward(&channels_last(g_y, b, c, hw), cache, b * hw, c, p, bn);
    (channels_first(&g_x, b, c, hw), g_gamma, g_delta)
}

/// The running statistics after a training forward of `BatchNorm2d` (momentum 0.1, the variance
/// made unbiased with `n/(n − 1)`, `n = B·H·W` values per channel), stored as step `t`'s
/// `{bn}.running_mean_{t}` / `{bn}.running_var_{t}`.
///
/// Method §9 (9.10), (1.13) with `B·H·W` for `B`.
pub fn bn2d_update_running(stats: &mut Params, bn: &str, t: usize, cache: &BnCache, b: usize, hw: usize) {
    batchnorm::update_running(stats, bn, t, cache, b * hw);
}

// ---------------------------------------------------------------------------------------------
// The cell

/// One convolutional LTC cell: its names, its input image `[in_c, h, w]`, its channels, its kernel
/// (odd, padded by `k/2` so that the gate convolutions keep the pooled size), whether it pools,
/// and the threshold's baseline `b0`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvCellSpec {
    pub names: ConvCellNames,
    pub in_c: usize,
    pub out_c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub pool: bool,
    pub b0: f64,
}

impl ConvCellSpec {
    /// Cell `k` (0-based) of `net`.
    pub fn of(net: &ConvNetSpec, k: usize) -> Self {
        let (in_c, h, w) = net.cell_input(k);
        let cell = &net.cells[k];
        ConvCellSpec {
            names: ConvCellNames::cell(k),
            in_c,
            out_c: cell.out_channels,
            h,
            w,
            k: cell.kernel,
            pool: net.pool,
            b0: CONV_B0 as f64,
        }
    }

    /// The input convolution `Conv_x`.
    pub fn x_conv(&self, batch: usize) -> ConvShape {
        assert!(self.k % 2 == 1, "conv cell kernels are odd (padding k/2 keeps the size)");
        ConvShape { batch, in_c: self.in_c, out_c: self.out_c, h: self.h, w: self.w, k: self.k, pad: self.k / 2 }
    }

    /// The rows and columns of the state (after the pool, if any).
    pub fn out_hw(&self) -> (usize, usize) {
        if self.pool {
            (self.h / 2, self.w / 2)
        } else {
            (self.h, self.w)
        }
    }

    /// A gate convolution `Conv_m` or `Conv_a`: `out_c → out_c` at the state's size.
    pub fn gate_conv(&self, batch: usize) -> ConvShape {
        let (h, w) = self.out_hw();
        ConvShape { batch, in_c: self.out_c, out_c: self.out_c, h, w, k: self.k, pad: self.k / 2 }
    }

    /// Elements of the state `[B, C, H', W']`.
    pub fn state_len(&self, batch: usize) -> usize {
        let (h, w) = self.out_hw();
        batch * self.out_c * h * w
    }

    /// The cell's parameters `(name, shape)`: `Conv_x` `[C, in_c, k, k]`, `Conv_m` and `Conv_a`
    /// `[C, C, k, k]`, each with a bias `[C]`, and the affines `[C]` of `BN_x`, `BN_m`, `BN_a`.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (c, k, n) = (self.out_c, self.k, &self.names);
        let mut t = vec![(Self::w(&n.x), vec![c, self.in_c, k, k]), (Self::c(&n.x), vec![c])];
        for map in [&n.tau_m, &n.tau_adp] {
            t.push((Self::w(map), vec![c, c, k, k]));
            t.push((Self::c(map), vec![c]));
        }
        for bn in [&n.bn_x, &n.bn_m, &n.bn_a] {
            t.push((format!("{bn}.weight"), vec![c]));
            t.push((format!("{bn}.bias"), vec![c]));
        }
        t
    }

    fn w(map: &str) -> String {
        format!("{map}.weight")
    }

    fn c(map: &str) -> String {
        format!("{map}.bias")
    }
}

/// The start of a sequence for a conv cell: the given membrane, `s = 0`, `b = b0` (the DVS
/// script's `init_hidden`, with `b_j0 = 0.5`).
pub fn start_state(spec: &ConvCellSpec, membrane: Vec<f64>) -> LayerState {
    let n = membrane.len();
    LayerState { m: membrane, s: vec![0.0; n], b: vec![spec.b0; n] }
}

/// Everything one cell step's forward computed, kept for the backward (the one-step tape). Image
/// tensors are NCHW; `[B, C, H', W']` is the state's shape.
#[derive(Debug, Clone)]
pub struct ConvCellCache {
    /// The cell's input `x` `[B, in_c, H, W]`.
    pub x: Vec<f64>,
    /// The state the step started from (a constant under FPTT with truncation 1).
    pub prev: LayerState,
    /// `BN_x` of `Conv_x(x)`, `[B, C, H, W]`, before the pool.
    pub bn_x_out: Vec<f64>,
    pub bn_x: BnCache,
    /// For every element of `x̂`, the index into `bn_x_out` the pool took (identity without pool).
    pub pool_arg: Vec<usize>,
    /// The input current `x̂` `[B, C, H', W']`.
    pub xhat: Vec<f64>,
    /// The gate inputs `x̂ + m`, `x̂ + b`.
    pub in_m: Vec<f64>,
    pub in_a: Vec<f64>,
    pub bn_m: BnCache,
    pub bn_a: BnCache,
    /// The element-wise part: `τm`, `τa`, `θ`, `u` and the new state `m'`, `s'`, `b'`.
    pub neuron: ConvNeuronForward,
}

/// One cell step forward (method §9 (9.1)–(9.9)) for `batch` samples: `x` is `[B, in_c, H, W]`
/// (the frame for the first cell, the previous cell's new spikes otherwise), `prev` the state
/// `[B, C, H', W']` each. `norm` selects batch or running statistics for all three batch norms.
pub fn forward(
    spec: &ConvCellSpec,
    p: &Params,
    x: &[f64],
    prev: &LayerState,
    batch: usize,
    norm: Norm,
    spike: SpikeFn,
) -> ConvCellCache {
    let names = &spec.names;
    let xs = spec.x_conv(batch);
    let gs = spec.gate_conv(batch);
    let len = spec.state_len(batch);
    let (c, hw, ohw) = (spec.out_c, spec.h * spec.w, gs.h * gs.w);
    assert_eq!(prev.m.len(), len, "conv cell state shape");
    assert_eq!(prev.s.len(), len, "conv cell state shape");
    assert_eq!(prev.b.len(), len, "conv cell state shape");

    // x̂ = Pool(BN_x(Conv_x(x)))
    let z_x = conv2d(x, &xs, get(p, &ConvCellSpec::w(&names.x)), get(p, &ConvCellSpec::c(&names.x)));
    let (bn_x_out, bn_x) = bn2d_forward(&z_x, batch, c, hw, p, &names.bn_x, norm);
    let (xhat, pool_arg) = if spec.pool {
        maxpool2(&bn_x_out, batch * c, spec.h, spec.w)
    } else {
        (bn_x_out.clone(), (0..bn_x_out.len()).collect())
    };

    // τm = σ(BN_m(Conv_m(x̂ + m))),  τa = σ(BN_a(Conv_a(x̂ + b))): the gates' pre-activations here,
    // their sigmoids in the element-wise part.
    let gate = |state: &[f64], map: &str, bn: &str| -> (Vec<f64>, BnCache, Vec<f64>) {
        let input: Vec<f64> = xhat.iter().zip(state).map(|(a, b)| a + b).collect();
        let z = conv2d(&input, &gs, get(p, &ConvCellSpec::w(map)), get(p, &ConvCellSpec::c(map)));
        let (y, cache) = bn2d_forward(&z, batch, c, ohw, p, bn, norm);
        (input, cache, y)
    };
    let (in_m, bn_m, z_m) = gate(&prev.m, &names.tau_m, &names.bn_m);
    let (in_a, bn_a, z_a) = gate(&prev.b, &names.tau_adp, &names.bn_a);
    let neuron = neuron_forward(spec.b0, &xhat, &z_m, &z_a, prev, spike);

    ConvCellCache { x: x.to_vec(), prev: prev.clone(), bn_x_out, bn_x, pool_arg, xhat, in_m, in_a, bn_m, bn_a, neuron }
}

/// The element-wise part of one cell step forward: what [`neuron_forward`] returns.
#[derive(Debug, Clone)]
pub struct ConvNeuronForward {
    pub tau_m: Vec<f64>,
    pub tau_a: Vec<f64>,
    pub theta: Vec<f64>,
    pub u: Vec<f64>,
    /// `m'`, `s'`, `b'`.
    pub next: LayerState,
}

/// The element-wise part of one cell step (method (9.4)–(9.9) after the gates' batch norms), per
/// element of `[B, C, H', W']`: from the input current `x̂`, the gates' pre-activations `z_m`, `z_a`
/// (their batch norms' outputs) and the previous state, `τm = σ(z_m)`, `τa = σ(z_a)`,
/// `b' = τa⊙b + (1 − τa)⊙s`, `θ = b0 + β_a·b'`, `u = m + τm⊙(x̂ − m)`, `s' = f(u − θ)`,
/// `m' = (1 − s')⊙u`. GPU twin: `shaders/conv_neuron.wgsl`.
pub fn neuron_forward(
    b0: f64,
    xhat: &[f64],
    z_m: &[f64],
    z_a: &[f64],
    prev: &LayerState,
    spike: SpikeFn,
) -> ConvNeuronForward {
    let len = xhat.len();
    for v in [z_m, z_a, &prev.m, &prev.s, &prev.b] {
        assert_eq!(v.len(), len, "conv neuron shape");
    }
    let tau_m: Vec<f64> = z_m.iter().map(|&z| sigmoid(z)).collect();
    let tau_a: Vec<f64> = z_a.iter().map(|&z| sigmoid(z)).collect();
    // b' = τa⊙b + (1 − τa)⊙s;  θ = b0 + β_a·b'
    let b_new: Vec<f64> = (0..len).map(|i| tau_a[i] * prev.b[i] + (1.0 - tau_a[i]) * prev.s[i]).collect();
    let theta: Vec<f64> = b_new.iter().map(|&bb| b0 + BETA_ADAPT * bb).collect();
    // u = m + τm⊙(x̂ − m);  s' = H(u − θ);  m' = (1 − s')⊙u
    let u: Vec<f64> = (0..len).map(|i| prev.m[i] + tau_m[i] * (xhat[i] - prev.m[i])).collect();
    let s_new: Vec<f64> = (0..len).map(|i| spike.forward(u[i] - theta[i])).collect();
    let m_new: Vec<f64> = (0..len).map(|i| (1.0 - s_new[i]) * u[i]).collect();
    ConvNeuronForward { tau_m, tau_a, theta, u, next: LayerState { m: m_new, s: s_new, b: b_new } }
}

/// The element-wise part of one cell step backward: what [`neuron_backward`] returns.
#[derive(Debug, Clone)]
pub struct ConvNeuronBackward {
    /// `ḡ_x̂` through `u` only (the gates' convolutions add theirs).
    pub g_xhat: Vec<f64>,
    /// The gradients on the gates' pre-activations `z_m`, `z_a`.
    pub r_m: Vec<f64>,
    pub r_a: Vec<f64>,
    /// The element-wise parts of the gradient on the previous state (9.19)–(9.20) (the gates'
    /// convolutions add theirs to `m` and `b`).
    pub g_prev: LayerState,
}

/// The backward of [`neuron_forward`] (method (9.14)–(9.15) and the element-wise parts of
/// (9.19)–(9.20)) from `g_s` on `s'`, `g_m` on `m'` and `g_b` on `b'`, with the tape `τm`, `τa`, `θ`,
/// `u`, `s'`. GPU twin: `shaders/conv_neuron_backward.wgsl`.
#[allow(clippy::too_many_arguments)]
pub fn neuron_backward(
    xhat: &[f64],
    prev: &LayerState,
    tau_m: &[f64],
    tau_a: &[f64],
    theta: &[f64],
    u: &[f64],
    s_next: &[f64],
    spike: SpikeFn,
    g_s: &[f64],
    g_m: &[f64],
    g_b: &[f64],
) -> ConvNeuronBackward {
    let len = xhat.len();
    // The spike, reset and threshold as in the dense cell (method §3 (3.1)–(3.3)).
    let (g_u, g_bn) = spike_backward(u, theta, s_next, spike, g_s, g_m, g_b);
    // Through u = m + τm⊙(x̂ − m) and b' = τa⊙b + (1 − τa)⊙s:
    // ḡ_x̂ = ḡ_u⊙τm,  r_m = ḡ_u⊙(x̂ − m)⊙τm(1 − τm),  r_a = ḡ_b'⊙(b − s)⊙τa(1 − τa),
    // and on the previous state ḡ_u⊙(1 − τm) (m), ḡ_b'⊙τa (b), ḡ_b'⊙(1 − τa) (s).
    let (tm, ta) = (tau_m, tau_a);
    ConvNeuronBackward {
        g_xhat: (0..len).map(|i| g_u[i] * tm[i]).collect(),
        r_m: (0..len).map(|i| g_u[i] * (xhat[i] - prev.m[i]) * tm[i] * (1.0 - tm[i])).collect(),
        r_a: (0..len).map(|i| g_bn[i] * (prev.b[i] - prev.s[i]) * ta[i] * (1.0 - ta[i])).collect(),
        g_prev: LayerState {
            m: (0..len).map(|i| g_u[i] * (1.0 - tm[i])).collect(),
            s: (0..len).map(|i| g_bn[i] * (1.0 - ta[i])).collect(),
            b: (0..len).map(|i| g_bn[i] * ta[i]).collect(),
        },
    }
}

/// What one cell step's backward returns.
#[derive(Debug, Clone)]
pub struct ConvCellBackward {
    /// The gradient of every parameter of the cell (three convolutions, three batch norms).
    pub grads: Grads,
    /// `ḡ_x` `[B, in_c, H, W]`: the gradient on the cell's input (the `ḡ_s` of the cell below).
    pub g_x: Vec<f64>,
    /// The gradient on the state the step started from (`m`, `s`, `b` in the fields of the same
    /// name), for chunks and BPTT; FPTT with truncation 1 drops it.
    pub g_prev: LayerState,
}

/// One cell step backward (method §9 (9.12)–(9.20)) from `g_s` on `s'` and, inside a chunk, `g_m`
/// on `m'` and `g_b` on `b'` (`None` = 0). The batch norms are differentiated through this step's
/// batch statistics (training forward). Returns the parameter gradients, `ḡ_x` and the gradient on
/// the previous state.
#[allow(clippy::too_many_arguments)]
pub fn backward_through_state(
    spec: &ConvCellSpec,
    p: &Params,
    cache: &ConvCellCache,
    batch: usize,
    spike: SpikeFn,
    g_s: &[f64],
    g_m: Option<&[f64]>,
    g_b: Option<&[f64]>,
) -> ConvCellBackward {
    let names = &spec.names;
    let xs = spec.x_conv(batch);
    let gs = spec.gate_conv(batch);
    let len = spec.state_len(batch);
    let (c, hw, ohw) = (spec.out_c, spec.h * spec.w, gs.h * gs.w);
    assert_eq!(g_s.len(), len, "ḡ_s shape");
    let zeros = vec![0.0; len];
    let g_m = g_m.unwrap_or(&zeros);
    let g_b = g_b.unwrap_or(&zeros);
    assert_eq!(g_m.len(), len, "ḡ_m shape");
    assert_eq!(g_b.len(), len, "ḡ_b shape");
    let prev = &cache.prev;
    let mut grads = Grads::new();

    // The element-wise part: ḡ_x̂ through u, the gates' r_m, r_a, and the previous state's share.
    let ConvNeuronBackward { mut g_xhat, r_m, r_a, g_prev } = neuron_backward(
        &cache.xhat,
        prev,
        &cache.neuron.tau_m,
        &cache.neuron.tau_a,
        &cache.neuron.theta,
        &cache.neuron.u,
        &cache.neuron.next.s,
        spike,
        g_s,
        g_m,
        g_b,
    );
    let LayerState { m: mut g_prev_m, s: g_prev_s, b: mut g_prev_b } = g_prev;

    // Each gate: back through its batch norm and its convolution to the sum x̂ + state, whose
    // gradient goes to both x̂ and the previous state.
    let mut gate = |r: &[f64], input: &[f64], bn_cache: &BnCache, map: &str, bn: &str, g_state: &mut [f64]| {
        let (g_z, g_gamma, g_delta) = bn2d_backward(r, bn_cache, batch, c, ohw, p, bn);
        let (g_w, g_c, g_in) = conv2d_backward(&g_z, input, &gs, get(p, &ConvCellSpec::w(map)));
        grads.insert(format!("{bn}.weight"), g_gamma);
        grads.insert(format!("{bn}.bias"), g_delta);
        grads.insert(ConvCellSpec::w(map), g_w);
        grads.insert(ConvCellSpec::c(map), g_c);
        add_into(&mut g_xhat, &g_in);
        add_into(g_state, &g_in);
    };
    gate(&r_m, &cache.in_m, &cache.bn_m, &names.tau_m, &names.bn_m, &mut g_prev_m);
    gate(&r_a, &cache.in_a, &cache.bn_a, &names.tau_adp, &names.bn_a, &mut g_prev_b);

    // x̂ = Pool(BN_x(Conv_x(x))): back through the pool, the batch norm and the convolution.
    let g_bn_out = maxpool2_backward(&g_xhat, &cache.pool_arg, cache.bn_x_out.len());
    let (g_z, g_gamma, g_delta) = bn2d_backward(&g_bn_out, &cache.bn_x, batch, c, hw, p, &names.bn_x);
    let (g_w, g_c, g_x) = conv2d_backward(&g_z, &cache.x, &xs, get(p, &ConvCellSpec::w(&names.x)));
    grads.insert(format!("{}.weight", names.bn_x), g_gamma);
    grads.insert(format!("{}.bias", names.bn_x), g_delta);
    grads.insert(ConvCellSpec::w(&names.x), g_w);
    grads.insert(ConvCellSpec::c(&names.x), g_c);

    ConvCellBackward { grads, g_x, g_prev: LayerState { m: g_prev_m, s: g_prev_s, b: g_prev_b } }
}

/// The one-step FPTT backward: [`backward_through_state`] without the gradient on the previous
/// state (a constant under truncation 1). Returns the parameter gradients and `ḡ_x`.
///
/// Method §9 (9.12)–(9.17).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    spec: &ConvCellSpec,
    p: &Params,
    cache: &ConvCellCache,
    batch: usize,
    spike: SpikeFn,
    g_s: &[f64],
    g_m: Option<&[f64]>,
    g_b: Option<&[f64]>,
) -> (Grads, Vec<f64>) {
    let r = backward_through_state(spec, p, cache, batch, spike, g_s, g_m, g_b);
    (r.grads, r.g_x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conv::ConvCellNames;
    use crate::reference::BN_EPS;
    use crate::rng::Rng;

    fn randoms(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| rng.uniform_range(lo, hi)).collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Central difference of `f` in coordinate `i` of `v`.
    fn central(v: &[f64], i: usize, h: f64, f: &dyn Fn(&[f64]) -> f64) -> f64 {
        let mut plus = v.to_vec();
        plus[i] += h;
        let mut minus = v.to_vec();
        minus[i] -= h;
        (f(&plus) - f(&minus)) / (2.0 * h)
    }

    /// Analytic against central differences, every coordinate: `|a − fd| ≤ tol·max(1, |fd|)`.
    fn check_all(what: &str, v: &[f64], analytic: &[f64], h: f64, tol: f64, f: &dyn Fn(&[f64]) -> f64) {
        assert_eq!(v.len(), analytic.len(), "{what}: gradient shape");
        for i in 0..v.len() {
            let fd = central(v, i, h, f);
            assert!(
                (analytic[i] - fd).abs() <= tol * fd.abs().max(1.0),
                "{what}[{i}]: analytic {} vs finite difference {fd}",
                analytic[i]
            );
        }
    }

    /// Odd convolution shapes: 1 channel, kernels 1, 3, 7, with and without padding, images that
    /// are not square, batch 1 and 3.
    fn conv_shapes() -> Vec<ConvShape> {
        let s = |batch, in_c, out_c, h, w, k, pad| ConvShape { batch, in_c, out_c, h, w, k, pad };
        vec![
            s(1, 1, 1, 5, 7, 1, 0),
            s(3, 2, 3, 5, 7, 3, 1),
            s(1, 1, 2, 6, 5, 7, 3),
            s(3, 2, 1, 5, 4, 3, 0),
            s(2, 1, 2, 3, 5, 3, 2),
            s(1, 3, 2, 7, 7, 7, 0),
        ]
    }

    #[test]
    fn conv2d_agrees_with_a_hand_example() {
        // One 3×3 image, a 3×3 kernel that picks the centre and the left neighbour, padding 1.
        let s = ConvShape { batch: 1, in_c: 1, out_c: 1, h: 3, w: 3, k: 3, pad: 1 };
        let x: Vec<f64> = (1..=9).map(f64::from).collect();
        let mut w = vec![0.0; 9];
        w[4] = 1.0; // centre
        w[3] = 10.0; // (ky, kx) = (1, 0): the pixel to the left
        let y = conv2d(&x, &s, &w, &[0.5]);
        // y[r][c] = x[r][c] + 10·x[r][c−1] + 0.5, with x[r][−1] = 0 (padding).
        let want: Vec<f64> = (0..9)
            .map(|i| {
                let left = if i % 3 == 0 { 0.0 } else { x[i - 1] };
                x[i] + 10.0 * left + 0.5
            })
            .collect();
        assert_eq!(y, want);
        // 1×1 kernel of weight 1 without padding is the identity.
        let s1 = ConvShape { batch: 1, in_c: 1, out_c: 1, h: 3, w: 3, k: 1, pad: 0 };
        assert_eq!(conv2d(&x, &s1, &[1.0], &[0.0]), x);
        // Output sizes: h + 2·pad − k + 1.
        let s7 = ConvShape { batch: 1, in_c: 1, out_c: 1, h: 6, w: 5, k: 7, pad: 3 };
        assert_eq!((s7.oh(), s7.ow()), (6, 5));
        let s0 = ConvShape { batch: 1, in_c: 1, out_c: 1, h: 5, w: 4, k: 3, pad: 0 };
        assert_eq!((s0.oh(), s0.ow()), (3, 2));
    }

    #[test]
    fn conv2d_backward_matches_finite_differences() {
        let mut rng = Rng::new(18);
        for s in conv_shapes() {
            let x = randoms(&mut rng, s.input_len(), -1.0, 1.0);
            let w = randoms(&mut rng, s.weight_len(), -1.0, 1.0);
            let c = randoms(&mut rng, s.out_c, -1.0, 1.0);
            let r = randoms(&mut rng, s.output_len(), -1.0, 1.0);
            // L = Σ r⊙conv(x; W, c)
            let (g_w, g_c, g_x) = conv2d_backward(&r, &x, &s, &w);
            let what = format!("{s:?}");
            check_all(&format!("{what} ḡ_x"), &x, &g_x, 1e-6, 1e-8, &|v| dot(&r, &conv2d(v, &s, &w, &c)));
            check_all(&format!("{what} ∇W"), &w, &g_w, 1e-6, 1e-8, &|v| dot(&r, &conv2d(&x, &s, v, &c)));
            check_all(&format!("{what} ∇c"), &c, &g_c, 1e-6, 1e-8, &|v| dot(&r, &conv2d(&x, &s, &w, v)));
        }
    }

    #[test]
    fn maxpool_floors_odd_sizes_takes_the_first_of_ties_and_routes_the_gradient() {
        // One 3×5 plane: the output is 1×2; the last row and column are dropped.
        #[rustfmt::skip]
        let x = vec![
            1.0, 7.0, 2.0, 2.0, 9.0,
            3.0, 7.0, 2.0, 0.0, 9.0,
            9.0, 9.0, 9.0, 9.0, 9.0,
        ];
        let (y, arg) = maxpool2(&x, 1, 3, 5);
        assert_eq!(y, vec![7.0, 2.0]);
        // Ties: 7 at (0,1) and (1,1) → (0,1); 2 at (0,2), (0,3), (1,2) → (0,2).
        assert_eq!(arg, vec![1, 2]);
        let g = maxpool2_backward(&[10.0, 20.0], &arg, x.len());
        let mut want = vec![0.0; 15];
        want[1] = 10.0;
        want[2] = 20.0;
        assert_eq!(g, want);

        // Finite differences on random planes (no ties), batch × channels = 3 × 2, 5×7.
        let mut rng = Rng::new(5);
        let (planes, h, w) = (6, 5, 7);
        let x = randoms(&mut rng, planes * h * w, -1.0, 1.0);
        let (y, arg) = maxpool2(&x, planes, h, w);
        assert_eq!(y.len(), planes * 2 * 3);
        let r = randoms(&mut rng, y.len(), -1.0, 1.0);
        let g = maxpool2_backward(&r, &arg, x.len());
        check_all("pool ḡ_x", &x, &g, 1e-7, 1e-7, &|v| dot(&r, &maxpool2(v, planes, h, w).0));
    }

    fn bn_params(rng: &mut Rng, c: usize) -> Params {
        [("bn.weight".to_string(), randoms(rng, c, 0.5, 1.5)), ("bn.bias".to_string(), randoms(rng, c, -0.5, 0.5))]
            .into_iter()
            .collect()
    }

    #[test]
    fn bn2d_normalises_per_channel_and_its_backward_matches_finite_differences() {
        let mut rng = Rng::new(7);
        for (b, c, h, w) in [(3, 2, 2, 3), (1, 1, 5, 7), (2, 3, 1, 1)] {
            let hw = h * w;
            let p = bn_params(&mut rng, c);
            let x = randoms(&mut rng, b * c * hw, -2.0, 2.0);
            let (y, cache) = bn2d_forward(&x, b, c, hw, &p, "bn", Norm::Batch);
            // Per channel, (y − δ)/γ has mean 0 and biased variance σ²/(σ² + ε) over batch and
            // pixels, σ² being the variance of x over the same values.
            for ch in 0..c {
                let xs: Vec<f64> =
                    (0..b).flat_map(|n| (0..hw).map(move |q| (n * c + ch) * hw + q)).map(|i| x[i]).collect();
                let n = xs.len() as f64;
                let x_mean = xs.iter().sum::<f64>() / n;
                let x_var = xs.iter().map(|v| (v - x_mean).powi(2)).sum::<f64>() / n;
                assert!((cache.mean[ch] - x_mean).abs() < 1e-14 && (cache.var[ch] - x_var).abs() < 1e-14);
                let vals: Vec<f64> = (0..b)
                    .flat_map(|n| (0..hw).map(move |q| (n * c + ch) * hw + q))
                    .map(|i| (y[i] - p["bn.bias"][ch]) / p["bn.weight"][ch])
                    .collect();
                let n = vals.len() as f64;
                let mean = vals.iter().sum::<f64>() / n;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                assert!(mean.abs() < 1e-12, "channel {ch}: mean {mean}");
                let want = x_var / (x_var + BN_EPS);
                assert!((var - want).abs() < 1e-12, "channel {ch}: variance {var}, want {want}");
            }
            let r = randoms(&mut rng, x.len(), -1.0, 1.0);
            let (g_x, g_gamma, g_delta) = bn2d_backward(&r, &cache, b, c, hw, &p, "bn");
            let loss = |x: &[f64], p: &Params| dot(&r, &bn2d_forward(x, b, c, hw, p, "bn", Norm::Batch).0);
            let what = format!("bn2d {b}×{c}×{h}×{w}");
            check_all(&format!("{what} ḡ_x"), &x, &g_x, 1e-6, 1e-6, &|v| loss(v, &p));
            for (name, g) in [("bn.weight", &g_gamma), ("bn.bias", &g_delta)] {
                check_all(&format!("{what} {name}"), &p[name], g, 1e-6, 1e-7, &|v| {
                    let mut q = p.clone();
                    q.insert(name.to_string(), v.to_vec());
                    loss(&x, &q)
                });
            }
        }
    }

    #[test]
    fn bn2d_running_statistics_count_batch_and_pixels() {
        // One channel, batch 1, four pixels 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased
        // (n = 4) 5/3.
        let p: Params =
            [("bn.weight".to_string(), vec![1.0]), ("bn.bias".to_string(), vec![0.0])].into_iter().collect();
        let (_, cache) = bn2d_forward(&[1.0, 2.0, 3.0, 4.0], 1, 1, 4, &p, "bn", Norm::Batch);
        assert_eq!(cache.mean, vec![2.5]);
        assert_eq!(cache.var, vec![1.25]);
        let mut stats: Params =
            [("bn.running_mean_3".to_string(), vec![0.0]), ("bn.running_var_3".to_string(), vec![1.0])]
                .into_iter()
                .collect();
        bn2d_update_running(&mut stats, "bn", 3, &cache, 1, 4);
        assert!((stats["bn.running_mean_3"][0] - 0.25).abs() < 1e-15);
        assert!((stats["bn.running_var_3"][0] - (0.9 + 0.1 * 1.25 * 4.0 / 3.0)).abs() < 1e-15);
        // Evaluation normalises with them.
        let (y, _) = bn2d_forward(&[1.0], 1, 1, 1, &p, "bn", Norm::Running { stats: &stats, t: 3 });
        let want = (1.0 - 0.25) / (stats["bn.running_var_3"][0] + 1e-5f64).sqrt();
        assert!((y[0] - want).abs() < 1e-15);
    }

    /// A cell of the given shape with random parameters (conv weights about 1/√fan-in, batch-norm
    /// γ around 1), a random state (m in [0, 1), spikes 0/1, b in [0.3, 0.8)) and random input.
    struct Case {
        spec: ConvCellSpec,
        batch: usize,
        p: Params,
        x: Vec<f64>,
        prev: LayerState,
    }

    fn case(rng: &mut Rng, batch: usize, in_c: usize, out_c: usize, hw: (usize, usize), k: usize, pool: bool) -> Case {
        let spec =
            ConvCellSpec { names: ConvCellNames::cell(0), in_c, out_c, h: hw.0, w: hw.1, k, pool, b0: CONV_B0 as f64 };
        let mut p = Params::new();
        for (name, shape) in spec.tensors() {
            let n: usize = shape.iter().product();
            let v = if name.contains(".BN") && name.ends_with(".weight") {
                randoms(rng, n, 0.5, 1.5)
            } else if name.contains(".BN") {
                randoms(rng, n, -0.3, 0.3)
            } else if shape.len() == 4 {
                let bound = 1.5 / ((shape[1] * k * k) as f64).sqrt();
                randoms(rng, n, -bound, bound)
            } else {
                randoms(rng, n, -0.2, 0.2)
            };
            p.insert(name, v);
        }
        let len = spec.state_len(batch);
        let prev = LayerState {
            m: randoms(rng, len, 0.0, 1.0),
            s: (0..len).map(|_| if rng.uniform() < 0.3 { 1.0 } else { 0.0 }).collect(),
            b: randoms(rng, len, 0.3, 0.8),
        };
        let x = randoms(rng, batch * in_c * hw.0 * hw.1, 0.0, 2.0);
        Case { spec, batch, p, x, prev }
    }

    /// Odd cells: 1 channel with a 1×1 kernel, images not divisible by the pool (5×7), a 7×7 kernel
    /// on a 6×6 image (its gates on 3×3), no pool, batch 1, 2 and 3.
    fn cases(rng: &mut Rng) -> Vec<Case> {
        vec![
            case(rng, 1, 1, 1, (5, 7), 1, true),
            case(rng, 3, 2, 3, (5, 7), 3, true),
            case(rng, 2, 1, 2, (6, 6), 7, true),
            case(rng, 3, 2, 2, (3, 4), 3, false),
        ]
    }

    #[test]
    fn the_conv_cell_backward_matches_finite_differences_with_a_smooth_spike() {
        let spike = SpikeFn::Smooth(5.0);
        let mut rng = Rng::new(2024);
        for c in cases(&mut rng) {
            let (spec, nb) = (&c.spec, c.batch);
            let len = spec.state_len(nb);
            // L = Σ w_s⊙s' + Σ w_m⊙m' + Σ w_b⊙b': ḡ_s = w_s, ḡ_m = w_m, ḡ_b = w_b.
            let (ws, wm, wb) = (
                randoms(&mut rng, len, -1.0, 1.0),
                randoms(&mut rng, len, -1.0, 1.0),
                randoms(&mut rng, len, -1.0, 1.0),
            );
            let loss = |p: &Params, x: &[f64], prev: &LayerState| -> f64 {
                let n = forward(spec, p, x, prev, nb, Norm::Batch, spike).neuron.next;
                dot(&ws, &n.s) + dot(&wm, &n.m) + dot(&wb, &n.b)
            };
            let cache = forward(spec, &c.p, &c.x, &c.prev, nb, Norm::Batch, spike);
            let r = backward_through_state(spec, &c.p, &cache, nb, spike, &ws, Some(&wm), Some(&wb));
            let what = format!(
                "cell B={nb} {}→{} {}×{} k{} pool {}",
                spec.in_c, spec.out_c, spec.h, spec.w, spec.k, spec.pool
            );
            let (h, tol) = (1e-6, 1e-6);
            for (name, _) in spec.tensors() {
                let g = &r.grads[&name];
                check_all(&format!("{what} {name}"), &c.p[&name], g, h, tol, &|v| {
                    let mut q = c.p.clone();
                    q.insert(name.clone(), v.to_vec());
                    loss(&q, &c.x, &c.prev)
                });
            }
            check_all(&format!("{what} ḡ_x"), &c.x, &r.g_x, h, tol, &|v| loss(&c.p, v, &c.prev));
            check_all(&format!("{what} ḡ on m"), &c.prev.m, &r.g_prev.m, h, tol, &|v| {
                loss(&c.p, &c.x, &LayerState { m: v.to_vec(), ..c.prev.clone() })
            });
            check_all(&format!("{what} ḡ on s"), &c.prev.s, &r.g_prev.s, h, tol, &|v| {
                loss(&c.p, &c.x, &LayerState { s: v.to_vec(), ..c.prev.clone() })
            });
            check_all(&format!("{what} ḡ on b"), &c.prev.b, &r.g_prev.b, h, tol, &|v| {
                loss(&c.p, &c.x, &LayerState { b: v.to_vec(), ..c.prev.clone() })
            });
            // A bias in front of a batch norm has an exactly zero loss gradient (up to rounding).
            for map in [&spec.names.x, &spec.names.tau_m, &spec.names.tau_adp] {
                let g = &r.grads[&format!("{map}.bias")];
                assert!(g.iter().all(|v| v.abs() < 1e-12), "{what} {map}.bias: {g:?}");
            }
            // The one-step FPTT backward gives the same parameter gradients and ḡ_x.
            let (grads, g_x) = backward(spec, &c.p, &cache, nb, spike, &ws, Some(&wm), Some(&wb));
            assert_eq!(grads, r.grads);
            assert_eq!(g_x, r.g_x);
        }
    }

    #[test]
    fn the_conv_cell_backward_with_the_surrogate_is_the_gradient_of_the_pre_spike_quantities() {
        // With the step function, ḡ_s reaches the parameters only through v = u − θ, weighted by
        // ψ(v) of the forward; b' is smooth. So for ḡ_s = w_s, ḡ_m = 0, ḡ_b = w_b the backward must
        // be the exact gradient of L = Σ (w_s⊙ψ(v₀))⊙(u − θ) + Σ w_b⊙b' with ψ(v₀) held fixed.
        let spike = SpikeFn::Heaviside;
        let mut rng = Rng::new(77);
        for c in cases(&mut rng) {
            let (spec, nb) = (&c.spec, c.batch);
            let len = spec.state_len(nb);
            let (ws, wb) = (randoms(&mut rng, len, -1.0, 1.0), randoms(&mut rng, len, -1.0, 1.0));
            let cache = forward(spec, &c.p, &c.x, &c.prev, nb, Norm::Batch, spike);
            let weight: Vec<f64> =
                (0..len).map(|i| ws[i] * super::super::surrogate(cache.neuron.u[i] - cache.neuron.theta[i])).collect();
            let loss = |p: &Params, x: &[f64]| -> f64 {
                let f = forward(spec, p, x, &c.prev, nb, Norm::Batch, spike);
                let v: Vec<f64> = f.neuron.u.iter().zip(&f.neuron.theta).map(|(u, t)| u - t).collect();
                dot(&weight, &v) + dot(&wb, &f.neuron.next.b)
            };
            let (grads, g_x) = backward(spec, &c.p, &cache, nb, spike, &ws, None, Some(&wb));
            for (name, _) in spec.tensors() {
                check_all(&name, &c.p[&name], &grads[&name], 1e-6, 1e-6, &|v| {
                    let mut q = c.p.clone();
                    q.insert(name.clone(), v.to_vec());
                    loss(&q, &c.x)
                });
            }
            check_all("ḡ_x", &c.x, &g_x, 1e-6, 1e-6, &|v| loss(&c.p, v));
        }
    }

    #[test]
    fn the_conv_cell_forward_follows_the_formulas() {
        // With γ = 0 in the gates' batch norms the gates are the constants σ(δ_m), σ(δ_a).
        let mut rng = Rng::new(3);
        let mut c = case(&mut rng, 2, 1, 2, (4, 5), 3, true);
        for bn in [&c.spec.names.bn_m, &c.spec.names.bn_a] {
            c.p.insert(format!("{bn}.weight"), vec![0.0; 2]);
        }
        c.p.insert(format!("{}.bias", c.spec.names.bn_m), vec![0.4, -0.2]);
        c.p.insert(format!("{}.bias", c.spec.names.bn_a), vec![1.0, 0.3]);
        let f = forward(&c.spec, &c.p, &c.x, &c.prev, 2, Norm::Batch, SpikeFn::Heaviside);
        assert_eq!(c.spec.out_hw(), (2, 2));
        // x̂ is the pooled batch norm of the input convolution.
        let z = conv2d(&c.x, &c.spec.x_conv(2), &c.p["conv_snn1.conv1_x.weight"], &c.p["conv_snn1.conv1_x.bias"]);
        let (y, _) = bn2d_forward(&z, 2, 2, 20, &c.p, "conv_snn1.BN", Norm::Batch);
        assert_eq!(f.xhat, maxpool2(&y, 4, 4, 5).0);
        for i in 0..f.neuron.u.len() {
            let ch = (i / 4) % 2;
            let tm = sigmoid([0.4, -0.2][ch]);
            let ta = sigmoid([1.0, 0.3][ch]);
            let (m, s, b) = (c.prev.m[i], c.prev.s[i], c.prev.b[i]);
            let b_new = ta * b + (1.0 - ta) * s;
            let theta = 0.5 + 1.8 * b_new;
            let u = m + tm * (f.xhat[i] - m);
            let spike = if u > theta { 1.0 } else { 0.0 };
            assert!((f.neuron.tau_m[i] - tm).abs() < 1e-15 && (f.neuron.tau_a[i] - ta).abs() < 1e-15);
            assert!((f.neuron.next.b[i] - b_new).abs() < 1e-15);
            assert!((f.neuron.theta[i] - theta).abs() < 1e-14);
            assert!((f.neuron.u[i] - u).abs() < 1e-15);
            assert_eq!(f.neuron.next.s[i], spike);
            assert!((f.neuron.next.m[i] - (1.0 - spike) * u).abs() < 1e-15);
        }
        // The start state: s = 0, b = b0 = 0.5.
        let st = start_state(&c.spec, vec![0.25; 3]);
        assert_eq!((st.s, st.b), (vec![0.0; 3], vec![0.5; 3]));
    }

    #[test]
    fn cells_of_the_dvs_network_have_its_shapes() {
        let net = ConvNetSpec::dvs_gesture();
        let cell = ConvCellSpec::of(&net, 1);
        assert_eq!((cell.in_c, cell.out_c, cell.h, cell.w, cell.k), (64, 128, 64, 64, 7));
        assert_eq!(cell.x_conv(16).pad, 3);
        assert_eq!(cell.out_hw(), (32, 32));
        let count: usize = cell.tensors().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(count, 2_008_192);
        assert_eq!(
            cell.tensors(),
            net.tensors()
                .iter()
                .filter(|t| t.name.starts_with("conv_snn2."))
                .map(|t| (t.name.clone(), t.shape.clone()))
                .collect::<Vec<_>>()
        );
    }
}
