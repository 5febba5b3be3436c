//! e-prop (Bellec et al. 2020, "A solution to the learning dilemma for recurrent networks of
//! spiking neurons", Nature Communications 11:3625; method §7) for a network of one LIF or ALIF
//! layer and the LTC readout: forward-mode eligibility traces per synapse and per sample, whose
//! size does not depend on T, combined at every step with a learning signal from the readout error.
//!
//! # The traces, derived from this network's dynamics
//!
//! Neuron j of one sample at step t (method §1 with constant `τm = σ(ρ_m)`, `τa = σ(ρ_a)`):
//!
//! ```text
//! d_t = Σ_i W_ji·z_i,t + c_j          z_t = [x_t ; s_t−1] (input, then previous spikes of the layer)
//! b_t = τa·b_t−1 + (1 − τa)·s_t−1      θ_t = b0 + β_a·b_t            (ALIF; LIF: θ fixed, no b)
//! u_t = (1 − τm)·m_t−1 + τm·d_t        s_t = H(u_t − θ_t)            m_t = (1 − s_t)·u_t
//! ```
//!
//! e-prop differentiates a neuron's own state `(m, s, b)` with respect to the parameters that enter
//! it directly (its row of `W_x`, `W_r`, its biases, its `ρ_m`, `ρ_a`), following the neuron's own
//! dynamics and treating the spikes of the other neurons, arriving through `W_r` (diagonal
//! included), as constants: that is the approximation. With `ψ_t = H'(u_t − θ_t)` replaced by the
//! surrogate (method §2) and, for one parameter `w`, the traces `ε^m_t = dm_t/dw` and
//! `ε^a_t = db_t+1/dw` (the adaptation the next step will use), the chain rule along those lines is
//!
//! ```text
//! ε^u_t = (1 − τm)·ε^m_t−1 + ∂u_t/∂w          du_t/dw; ∂u_t/∂W_ji = τm·z_i,t, ∂u_t/∂c_j = τm,
//!                                             ∂u_t/∂ρ_m = (d_t − m_t−1)·τm(1 − τm)
//! ε^b_t = ε^a_t−1 + ∂b_t/∂w                   db_t/dw;  ∂b_t/∂ρ_a = (b_t−1 − s_t−1)·τa(1 − τa)
//! e_t   = ψ_t·(ε^u_t − β_a·ε^b_t)             ds_t/dw: the eligibility (LIF: ψ_t·ε^u_t)
//! ε^m_t = (1 − s_t)·ε^u_t − u_t·e_t           dm_t/dw, the reset m = (1 − s)·u differentiated
//! ε^a_t = τa·ε^b_t + (1 − τa)·e_t             db_t+1/dw
//! ```
//!
//! which is the paper's ALIF recursion (their `ε^v`, `ε^a`, with `b` in place of `a`, the spike
//! entering the adaptation with weight `1 − τa` and the threshold `θ = b0 + β_a·b`) and, for LIF,
//! its LIF trace. Traces start at 0 with every sequence (the start state is a constant).
//!
//! **The reset** ([`EpropSettings::reset_in_trace`]). Kept by default: `−u_t·e_t` is the
//! derivative of the reset `m = (1 − s)·u` through the spike, which the one-step backward of method §3
//! (and so FPTT and BPTT here) differentiates; keeping it makes e-prop exactly BPTT's gradient for
//! a network without recurrent weights, so that comparisons measure e-prop's approximation and not
//! a change of the derivative. Dropped, `ε^m_t = (1 − s_t)·ε^u_t`: Bellec et al.'s choice (the
//! spike in the reset taken as a constant), which keeps the trace from growing through `ψ·u`.
//!
//! # The learning signal and the readout
//!
//! The readout (method §1) is a leaky integrator with a gate: `z = W_o·s + c_o`,
//! `τo = σ(a_o·(W_om·[z ; o] + c_om))`, `o' = (1 − τo)⊙o + τo⊙z`. Per sample and step its Jacobians
//! are `D_t = ∂o'_t/∂z_t = diag(τo) + diag(g)·W_om[:, :C]` and `A_t = ∂o'_t/∂o_t−1 =
//! diag(1 − τo) + diag(g)·W_om[:, C:]` with `g = (z − o)⊙τo(1 − τo)·a_o`.
//!
//! - Learning signal (readout filter off): `L_j,t = Σ_k B_kj·ḡ_z,k,t` with `ḡ_z,t = ḡ_o,t·D_t` the
//!   gradient of `ℓ_t` on the readout's input current (`ḡ_o,t = ∂ℓ_t/∂o'_t`, the previous `o`
//!   held constant) and `B = W_o` (symmetric feedback, the one-step `ḡ_s` of method §3 exactly) or a
//!   fixed random `[C, N]` matrix. `∇w += Σ_batch L_j,t·e_t`.
//! - Readout filter on (the default): the error of step t also reaches the spikes of earlier steps
//!   through the readout's memory. The paper filters the eligibility with the readout's leak κ,
//!   `F_κ(e)_t = κ·F_κ(e)_t−1 + e_t`; here the leak `1 − τo` differs per output, sample and step,
//!   and the gate mixes the outputs, so the filtered eligibility is kept per output k:
//!   `φ_t = A_t·φ_t−1 + D_t·B[:, j]·e_t` (`[C]` per synapse), `∇w += Σ_batch Σ_k ḡ_o,k,t·φ_k,t`.
//!   With `B = W_o`, `φ_t = do'_t/dw` along the neuron's own dynamics and the readout: without
//!   recurrent weights e-prop is then BPTT's gradient exactly. With `W_om = 0` (a gate that reads
//!   neither z nor o) it is the paper's filter with a per-output `κ = 1 − τo`.
//! - The readout's own parameters (`W_o, c_o, W_om, c_om, a_o`) do not influence the hidden layer,
//!   so their exact gradient is cheap online: the forward-mode Jacobian `J_t = ∂o'_t/∂θ_readout`
//!   (`[C, P]` per sample, P readout parameters) follows `J_t = A_t·J_t−1 + ∂o'_t/∂θ|_(o_t−1 fixed)`,
//!   and `∇θ += Σ_batch ḡ_o,tᵀ·J_t`. That is "its own filtered trace": for `W_o[k, i]` with a gate
//!   that reads neither z nor o, `J = τo·s_i` filtered by `(1 − τo)`; here the gate terms are
//!   carried too, so the readout's gradient equals BPTT's.
//! - `ρ_m` and `ρ_a` are trained through their own per-neuron traces (`[B, N]`, the same
//!   recursion with the injections above), the biases `c_x` (`c_r`: the same gradient) through
//!   per-neuron traces with `z = 1`.
//!
//! Memory: per sample the traces `ε^m` (and `ε^a` for ALIF) of `[N, I + N]` synapses, the same for
//! the `[N]` biases and time constants; with the readout filter `φ` `[C, N, I + N]`; the readout's
//! `J` `[C, P]`. None depends on T.
//!
//! Scope: one hidden LIF/ALIF layer, separate or fused input and recurrent maps, no batch norm
//! (its statistics couple the samples of a batch, so per-sample traces would not be its gradient).

use thiserror::Error;

use super::loss::LossContext;
use super::network::{Net, NetState, StepCache};
use super::{get, scalar, Grads, Params, BETA_ADAPT};
use crate::model::{ModelConfig, ThresholdMode};
use crate::settings::{random_feedback, EpropSettings, Feedback};

#[derive(Debug, Error, PartialEq)]
pub enum EpropError {
    #[error("e-prop: {0}")]
    Unsupported(String),
}

/// Whether e-prop is defined for `cfg` here: one hidden LIF or ALIF layer without batch norm
/// ([`EpropSettings::check_model`], shared with the GPU engine).
pub fn check(cfg: &ModelConfig) -> Result<(), EpropError> {
    EpropSettings::check_model(cfg).map_err(EpropError::Unsupported)
}

/// One kind of trace (weights, biases, `ρ_m` or `ρ_a`) for every sample, neuron and column.
#[derive(Debug, Clone)]
struct TraceGroup {
    /// Parameters per neuron: `I + N` synapses, or 1 (bias, `ρ_m`, `ρ_a`).
    cols: usize,
    /// `ε^m = dm_t/dw`, `[B, N, cols]`.
    membrane: Vec<f64>,
    /// `ε^a = db_t+1/dw`, `[B, N, cols]` (ALIF; empty for LIF).
    adaptation: Vec<f64>,
    /// The readout-filtered eligibility `φ`, `[B, C, N, cols]` (empty without the filter).
    filtered: Vec<f64>,
    /// `Σ_t Σ_batch` of the gradient since the last [`Eprop::take_gradient`], `[N, cols]`.
    grad: Vec<f64>,
}

impl TraceGroup {
    fn new(cols: usize, batch: usize, neurons: usize, outputs: usize, alif: bool, filter: bool) -> Self {
        let len = batch * neurons * cols;
        TraceGroup {
            cols,
            membrane: vec![0.0; len],
            adaptation: if alif { vec![0.0; len] } else { Vec::new() },
            filtered: if filter { vec![0.0; len * outputs] } else { Vec::new() },
            grad: vec![0.0; neurons * cols],
        }
    }

    fn clear_traces(&mut self) {
        for v in [&mut self.membrane, &mut self.adaptation, &mut self.filtered] {
            v.iter_mut().for_each(|x| *x = 0.0);
        }
    }
}

/// What the traces read of one neuron of one sample at this step.
struct NeuronStep {
    tau_m: f64,
    /// 0 for LIF (unused).
    tau_a: f64,
    u: f64,
    s_new: f64,
    /// The surrogate `ψ(u − θ)`.
    psi: f64,
}

/// What the traces read of the readout at this step, per sample.
struct ReadoutStep {
    /// `A_t = ∂o'/∂o`, `[B, C, C]`.
    a: Vec<f64>,
    /// `D_t·B`, `[B, C, N]`: how neuron j's spike moves each output this step.
    v: Vec<f64>,
    /// `ḡ_o,t`, `[B, C]`.
    g_o: Vec<f64>,
    /// The learning signal `L = ḡ_o·D·B`, `[B, N]`.
    signal: Vec<f64>,
}

/// The e-prop state of one batch: traces, random feedback and the gradient accumulated since the
/// last update.
#[derive(Debug, Clone)]
pub struct Eprop {
    settings: EpropSettings,
    batch: usize,
    inputs: usize,
    neurons: usize,
    outputs: usize,
    alif: bool,
    /// `B` `[C, N]` with random feedback (symmetric feedback reads `W_o` at every step).
    random_feedback: Option<Vec<f64>>,
    /// Input and recurrent synapses, columns `[x ; s_t−1]`.
    weights: TraceGroup,
    /// The biases `c_x` (and `c_r`, which enters `d` the same way).
    bias: TraceGroup,
    rho_m: TraceGroup,
    rho_a: Option<TraceGroup>,
    /// The readout's parameters in layout order: (name, length).
    readout_params: Vec<(String, usize)>,
    /// `J = ∂o'/∂θ_readout`, `[B, C, P]`.
    readout_jacobian: Vec<f64>,
    readout_grad: Vec<f64>,
}

impl Eprop {
    /// Fresh (zero) traces for `batch` samples of `net`, or why e-prop does not apply to it.
    pub fn new(net: &Net, settings: EpropSettings, batch: usize) -> Result<Self, EpropError> {
        let cfg = &net.cfg;
        check(cfg)?;
        let (ni, nn, nc) = (cfg.inputs, cfg.hidden[0], cfg.outputs);
        let alif = matches!(cfg.threshold, ThresholdMode::Adaptive);
        let filter = settings.readout_filter;
        let random_feedback = match settings.feedback {
            Feedback::Symmetric => None,
            Feedback::Random { seed } => Some(random_feedback(seed, nc, nn)),
        };
        let ro = &net.readout;
        let readout_params: Vec<(String, usize)> = [
            format!("{}.weight", ro.x),
            format!("{}.bias", ro.x),
            format!("{}.weight", ro.tau_m),
            format!("{}.bias", ro.tau_m),
            ro.slope.clone(),
        ]
        .into_iter()
        .map(|name| {
            let len = net.layout.slot(&name).len();
            (name, len)
        })
        .collect();
        let p_len: usize = readout_params.iter().map(|(_, l)| l).sum();
        Ok(Eprop {
            settings,
            batch,
            inputs: ni,
            neurons: nn,
            outputs: nc,
            alif,
            random_feedback,
            weights: TraceGroup::new(ni + nn, batch, nn, nc, alif, filter),
            bias: TraceGroup::new(1, batch, nn, nc, alif, filter),
            rho_m: TraceGroup::new(1, batch, nn, nc, alif, filter),
            rho_a: alif.then(|| TraceGroup::new(1, batch, nn, nc, alif, filter)),
            readout_params,
            readout_jacobian: vec![0.0; batch * nc * p_len],
            readout_grad: vec![0.0; p_len],
        })
    }

    pub fn settings(&self) -> &EpropSettings {
        &self.settings
    }

    /// The start of a sequence: every trace 0 (the accumulated gradient is kept).
    pub fn start_sequence(&mut self) {
        for g in self.groups_mut() {
            g.clear_traces();
        }
        self.readout_jacobian.iter_mut().for_each(|x| *x = 0.0);
    }

    fn groups_mut(&mut self) -> impl Iterator<Item = &mut TraceGroup> {
        [&mut self.weights, &mut self.bias, &mut self.rho_m].into_iter().chain(self.rho_a.as_mut())
    }

    /// The feedback matrix `B` `[C, N]` used with parameters `p`: `W_o`, or the fixed random one.
    pub fn feedback(&self, net: &Net, p: &Params) -> Vec<f64> {
        match &self.random_feedback {
            Some(b) => b.clone(),
            None => get(p, &format!("{}.weight", net.readout.x)).to_vec(),
        }
    }

    /// The shape of every trace this state keeps, by name. None depends on T.
    pub fn trace_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (nb, nn, nc) = (self.batch, self.neurons, self.outputs);
        let mut shapes = Vec::new();
        let groups = [("weights", &self.weights), ("bias", &self.bias), ("rho_m", &self.rho_m)];
        for (name, g) in groups.into_iter().chain(self.rho_a.as_ref().map(|g| ("rho_a", g))) {
            let shape = if g.cols == 1 { vec![nb, nn] } else { vec![nb, nn, g.cols] };
            assert_eq!(g.membrane.len(), shape.iter().product::<usize>());
            shapes.push((format!("{name}.membrane"), shape.clone()));
            if !g.adaptation.is_empty() {
                shapes.push((format!("{name}.adaptation"), shape.clone()));
            }
            if !g.filtered.is_empty() {
                let mut f = shape.clone();
                f.insert(1, nc);
                assert_eq!(g.filtered.len(), f.iter().product::<usize>());
                shapes.push((format!("{name}.filtered"), f));
            }
        }
        let p_len = self.readout_grad.len();
        shapes.push(("readout.jacobian".into(), vec![nb, nc, p_len]));
        shapes
    }

    /// One step: advance every trace with this step's forward (`cache`, computed from the state
    /// the traces describe, with parameters `p`) and add this step's gradient contribution for
    /// `ḡ_o,t = ∂ℓ_t/∂o'_t` (`g_o` `[B, C]`).
    ///
    /// Method §7 (7.4)–(7.14). GPU twins: `shaders/eprop_signal.wgsl`, `shaders/eprop_trace.wgsl`,
    /// `shaders/eprop_readout.wgsl`, in that order.
    pub fn step(&mut self, net: &Net, p: &Params, cache: &StepCache, g_o: &[f64]) {
        let (nb, ni, nn, nc) = (self.batch, self.inputs, self.neurons, self.outputs);
        assert_eq!(g_o.len(), nb * nc, "ḡ_o shape");
        let layer = &cache.layers[0];
        assert_eq!(layer.next.s.len(), nb * nn, "e-prop was set up for another batch size");

        // The neurons: what the recursion reads.
        let neurons: Vec<NeuronStep> = (0..nb * nn)
            .map(|i| NeuronStep {
                tau_m: layer.tau_m[i],
                tau_a: if self.alif { layer.tau_a[i] } else { 0.0 },
                u: layer.u[i],
                s_new: layer.next.s[i],
                psi: net.spike.derivative(layer.u[i] - layer.theta[i]),
            })
            .collect();
        let readout = self.readout_step(net, p, cache, g_o);
        let rule = Rule { alif: self.alif, reset_in_trace: self.settings.reset_in_trace };
        let dims = Dims { batch: nb, neurons: nn, outputs: nc };

        // Synapses: ∂u/∂W_ji = τm·z_i with z = [x ; s_t−1].
        let (x, s_prev) = (&layer.x, &layer.prev.s);
        advance_group(&mut self.weights, &neurons, dims, rule, &readout, |b, j, c| {
            let z = if c < ni { x[b * ni + c] } else { s_prev[b * nn + c - ni] };
            (neurons[b * nn + j].tau_m * z, 0.0)
        });
        // Biases: ∂u/∂c_j = τm.
        advance_group(&mut self.bias, &neurons, dims, rule, &readout, |b, j, _| (neurons[b * nn + j].tau_m, 0.0));
        // ρ_m: ∂u/∂ρ_m = (d − m_t−1)·τm(1 − τm).
        let (d, m_prev) = (&layer.d, &layer.prev.m);
        advance_group(&mut self.rho_m, &neurons, dims, rule, &readout, |b, j, _| {
            let (i, tm) = (b * nn + j, neurons[b * nn + j].tau_m);
            ((d[i] - m_prev[i]) * tm * (1.0 - tm), 0.0)
        });
        // ρ_a: ∂b_t/∂ρ_a = (b_t−1 − s_t−1)·τa(1 − τa).
        if let Some(group) = self.rho_a.as_mut() {
            let b_prev = &layer.prev.b;
            advance_group(group, &neurons, dims, rule, &readout, |b, j, _| {
                let (i, ta) = (b * nn + j, neurons[b * nn + j].tau_a);
                (0.0, (b_prev[i] - s_prev[i]) * ta * (1.0 - ta))
            });
        }
        self.advance_readout(net, p, cache, &readout);
    }

    /// The readout's Jacobians of this step and the learning signal.
    ///
    /// Method §7 (7.10)–(7.12). GPU twin: `shaders/eprop_signal.wgsl`.
    fn readout_step(&self, net: &Net, p: &Params, cache: &StepCache, g_o: &[f64]) -> ReadoutStep {
        let (nb, nn, nc) = (self.batch, self.neurons, self.outputs);
        let rc = &cache.readout;
        let w_om = get(p, &format!("{}.weight", net.readout.tau_m));
        let a_o = scalar(p, &net.readout.slope);
        let feedback = self.feedback(net, p);
        let mut a = vec![0.0; nb * nc * nc];
        let mut v = vec![0.0; nb * nc * nn];
        let mut signal = vec![0.0; nb * nn];
        for b in 0..nb {
            for k in 0..nc {
                let i = b * nc + k;
                let tau = rc.tau[i];
                // g = (z − o)·τo(1 − τo)·a_o: how the gate's pre-activation moves o'_k.
                let g = (rc.z[i] - rc.o_prev[i]) * tau * (1.0 - tau) * a_o;
                for kk in 0..nc {
                    let diag = if k == kk { 1.0 } else { 0.0 };
                    // D[k, kk] = τo·δ + g·W_om[k, kk];  A[k, kk] = (1 − τo)·δ + g·W_om[k, C + kk]
                    let dz = tau * diag + g * w_om[k * 2 * nc + kk];
                    a[(b * nc + k) * nc + kk] = (1.0 - tau) * diag + g * w_om[k * 2 * nc + nc + kk];
                    for j in 0..nn {
                        v[(b * nc + k) * nn + j] += dz * feedback[kk * nn + j];
                    }
                }
                for j in 0..nn {
                    signal[b * nn + j] += g_o[i] * v[(b * nc + k) * nn + j];
                }
            }
        }
        ReadoutStep { a, v, g_o: g_o.to_vec(), signal }
    }

    /// `J_t = A_t·J_t−1 + ∂o'_t/∂θ|_(o_t−1 fixed)` and `∇θ += Σ_batch ḡ_o,tᵀ·J_t` for the readout.
    ///
    /// Method §7 (7.14). GPU twin: `shaders/eprop_readout.wgsl`.
    fn advance_readout(&mut self, net: &Net, p: &Params, cache: &StepCache, rs: &ReadoutStep) {
        let (nb, nn, nc) = (self.batch, self.neurons, self.outputs);
        let rc = &cache.readout;
        let p_len = self.readout_grad.len();
        let w_om = get(p, &format!("{}.weight", net.readout.tau_m));
        let a_o = scalar(p, &net.readout.slope);
        // Offsets of W_o [C, N], c_o [C], W_om [C, 2C], c_om [C], a_o [] in a row of J.
        let (off_co, off_wom) = (nc * nn, nc * nn + nc);
        let (off_com, off_ao) = (off_wom + 2 * nc * nc, off_wom + 2 * nc * nc + nc);
        debug_assert_eq!(off_ao + 1, p_len);
        for b in 0..nb {
            let base = b * nc * p_len;
            let old = self.readout_jacobian[base..base + nc * p_len].to_vec();
            let s_top = &rc.s_top[b * nn..(b + 1) * nn];
            for k in 0..nc {
                let i = b * nc + k;
                let tau = rc.tau[i];
                let dsig = tau * (1.0 - tau);
                let g = (rc.z[i] - rc.o_prev[i]) * dsig * a_o;
                let row = &mut self.readout_jacobian[base + k * p_len..base + (k + 1) * p_len];
                // A·J_t−1
                for col in 0..p_len {
                    row[col] = (0..nc).map(|kk| rs.a[(b * nc + k) * nc + kk] * old[kk * p_len + col]).sum();
                }
                // Local terms: through z (W_o, c_o), with D[k, kk] = τo·δ + g·W_om[k, kk] …
                for kk in 0..nc {
                    let dz = if k == kk { tau } else { 0.0 } + g * w_om[k * 2 * nc + kk];
                    for n in 0..nn {
                        row[kk * nn + n] += dz * s_top[n];
                    }
                    row[off_co + kk] += dz;
                }
                // … and through the gate of output k itself (W_om[k, :], c_om[k], a_o).
                for c in 0..2 * nc {
                    let zo = if c < nc { rc.z[b * nc + c] } else { rc.o_prev[b * nc + c - nc] };
                    row[off_wom + k * 2 * nc + c] += g * zo;
                }
                row[off_com + k] += g;
                row[off_ao] += (rc.z[i] - rc.o_prev[i]) * dsig * rc.pre[i];
            }
            for k in 0..nc {
                let g = rs.g_o[b * nc + k];
                let row = &self.readout_jacobian[base + k * p_len..base + (k + 1) * p_len];
                for col in 0..p_len {
                    self.readout_grad[col] += g * row[col];
                }
            }
        }
    }

    /// The gradient accumulated since the last call, by parameter name (every tensor of the
    /// layout, frozen slopes too), and a fresh accumulator. The traces are kept.
    pub fn take_gradient(&mut self, net: &Net) -> Grads {
        let (ni, nn) = (self.inputs, self.neurons);
        let names = &net.layers[0].names;
        let mut grads = Grads::new();
        let w = std::mem::replace(&mut self.weights.grad, vec![0.0; nn * (ni + nn)]);
        let bias = std::mem::replace(&mut self.bias.grad, vec![0.0; nn]);
        if net.cfg.fused_recurrent {
            grads.insert(format!("{}.weight", names.x), w);
        } else {
            let cols = |from: usize, to: usize| -> Vec<f64> {
                (0..nn).flat_map(|j| w[j * (ni + nn) + from..j * (ni + nn) + to].iter().copied()).collect()
            };
            grads.insert(format!("{}.weight", names.x), cols(0, ni));
            grads.insert(format!("{}.weight", names.r), cols(ni, ni + nn));
            grads.insert(format!("{}.bias", names.r), bias.clone());
        }
        grads.insert(format!("{}.bias", names.x), bias);
        grads.insert(format!("{}.weight", names.tau_m), std::mem::replace(&mut self.rho_m.grad, vec![0.0; nn]));
        if let Some(g) = self.rho_a.as_mut() {
            grads.insert(format!("{}.weight", names.tau_adp), std::mem::replace(&mut g.grad, vec![0.0; nn]));
        }
        let mut offset = 0;
        for (name, len) in &self.readout_params {
            grads.insert(name.clone(), self.readout_grad[offset..offset + len].to_vec());
            offset += len;
        }
        self.readout_grad.iter_mut().for_each(|x| *x = 0.0);
        for slot in &net.layout.slots {
            assert!(grads.contains_key(&slot.name), "e-prop: no gradient for {}", slot.name);
        }
        grads
    }
}

#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    neurons: usize,
    outputs: usize,
}

#[derive(Clone, Copy)]
struct Rule {
    alif: bool,
    reset_in_trace: bool,
}

/// One step of every trace of `group` (the recursion of the module documentation) and its
/// gradient contribution. `injection(b, j, c)` is `(∂u_t/∂w, ∂b_t/∂w)` of column c of neuron j.
///
/// Method §7 (7.5)–(7.9), (7.12)–(7.13). GPU twin: `shaders/eprop_trace.wgsl`.
fn advance_group(
    group: &mut TraceGroup,
    neurons: &[NeuronStep],
    dims: Dims,
    rule: Rule,
    readout: &ReadoutStep,
    injection: impl Fn(usize, usize, usize) -> (f64, f64),
) {
    let (nb, nn, nc, cols) = (dims.batch, dims.neurons, dims.outputs, group.cols);
    let filter = !group.filtered.is_empty();
    let mut phi_old = vec![0.0; nc];
    for b in 0..nb {
        for j in 0..nn {
            let st = &neurons[b * nn + j];
            for c in 0..cols {
                let t = (b * nn + j) * cols + c;
                let (inj_u, inj_b) = injection(b, j, c);
                // ε^u = (1 − τm)·ε^m + ∂u/∂w;  ε^b = ε^a + ∂b/∂w;  e = ψ·(ε^u − β_a·ε^b)
                let eps_u = (1.0 - st.tau_m) * group.membrane[t] + inj_u;
                let (e, eps_b) = if rule.alif {
                    let eps_b = group.adaptation[t] + inj_b;
                    (st.psi * (eps_u - BETA_ADAPT * eps_b), eps_b)
                } else {
                    (st.psi * eps_u, 0.0)
                };
                // ε^m = (1 − s')·ε^u − u·e (reset kept) or (1 − s')·ε^u (dropped)
                let reset = if rule.reset_in_trace { st.u * e } else { 0.0 };
                group.membrane[t] = (1.0 - st.s_new) * eps_u - reset;
                // ε^a = τa·ε^b + (1 − τa)·e: the next step's adaptation
                if rule.alif {
                    group.adaptation[t] = st.tau_a * eps_b + (1.0 - st.tau_a) * e;
                }
                let g = if filter {
                    // φ = A·φ + (D·B)[:, j]·e;  ∇ += Σ_k ḡ_o,k·φ_k
                    let at = |k: usize| ((b * nc + k) * nn + j) * cols + c;
                    for k in 0..nc {
                        phi_old[k] = group.filtered[at(k)];
                    }
                    let mut g = 0.0;
                    for k in 0..nc {
                        let a_row = &readout.a[(b * nc + k) * nc..(b * nc + k + 1) * nc];
                        let phi: f64 = a_row.iter().zip(&phi_old).map(|(a, f)| a * f).sum::<f64>()
                            + readout.v[(b * nc + k) * nn + j] * e;
                        group.filtered[at(k)] = phi;
                        g += readout.g_o[b * nc + k] * phi;
                    }
                    g
                } else {
                    readout.signal[b * nn + j] * e
                };
                group.grad[j * cols + c] += g;
            }
        }
    }
}

/// e-prop's gradient of `Σ_t ℓ_t` over a chunk of steps from `start` (its traces start at 0) with
/// fixed parameters `p`: the sum of every step's contribution, what one update per sequence uses.
/// Returns the summed loss too. The counterpart of [`Net::chunk_gradient`] (BPTT over the chunk).
///
/// Method §7, summed over the chunk's steps. GPU twins: [`Eprop::step`]'s kernels, one update per sequence.
pub fn chunk_gradient(
    net: &Net,
    settings: EpropSettings,
    p: &Params,
    start: &NetState,
    inputs: &[Vec<f64>],
    loss: LossContext,
) -> Result<(f64, Grads), EpropError> {
    let batch = start.o.len() / net.cfg.outputs;
    let mut eprop = Eprop::new(net, settings, batch)?;
    let (caches, losses, g_outputs) = net.chunk_forward_with_losses(p, start, inputs, loss);
    for (cache, g_o) in caches.iter().zip(&g_outputs) {
        eprop.step(net, p, cache, g_o);
    }
    Ok((losses.iter().sum(), eprop.take_gradient(net)))
}
