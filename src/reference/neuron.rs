//! One spiking layer for one time step: the forward of method §1 and the one-step backward of
//! method §3, both with the state from the previous step as a constant (FPTT, truncation 1) and with
//! the gradient on that state too (chunked truncation and BPTT chain it across steps). Owns the
//! three ways the input current is formed (separate input and recurrent maps, the same with
//! per-step batch norm, the fused map of the adding task), the two thresholds (adaptive with
//! `τa`, or fixed) and the three neurons (method §7): LTC, whose `τm`, `τa` are gates computed from
//! `[d ; m]`, `[d ; b]`, and LIF/ALIF, whose `τm = σ(ρ_m)`, `τa = σ(ρ_a)` are per-neuron constants
//! (the same for every sample and step). Everything else (current, threshold, integration, spike,
//! reset, and their derivatives) is shared, so FPTT, chunks and BPTT work for every kind.

use super::batchnorm::{self, BnCache, Norm};
use super::{
    add_into, concat, first_columns, get, last_columns, linear, linear_backward, scalar, sigmoid, Grads, Params,
    SpikeFn, B0, BETA_ADAPT,
};
use crate::model::{LayerNames, ModelConfig, NeuronKind, ThresholdMode};

/// The shape and options of hidden layer `k` of a network.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub names: LayerNames,
    /// Input width `I` (the data for the bottom layer, the spikes of the layer below otherwise).
    pub inputs: usize,
    /// Neurons `N`.
    pub neurons: usize,
    pub threshold: ThresholdMode,
    /// `d = W_x·[x ; s] + c_x` (W_x is `[N, I+N]`) instead of separate input and recurrent maps.
    pub fused: bool,
    /// `d = BN_a(W_x·x + c_x) + BN_b(W_r·s + c_r)`.
    pub batch_norm: bool,
    /// LTC gates, or the LIF/ALIF per-neuron constants.
    pub neuron: NeuronKind,
    /// Whether the (non-fused) input current has the recurrent map `W_r·s + c_r` (1.1). Without
    /// it (the conv network's dense layer, method §9) `d = W_x·x + c_x` (with batch norm
    /// `BN_a(W_x·x + c_x)`) and the previous spikes enter only through `b'`.
    pub recurrent: bool,
    /// Whether the LTC gates carry the scalar slopes `a_m`, `a_a` (1.2)–(1.3). Without them
    /// (the conv network's `nn.Sigmoid` gates, method §9) the slopes are 1, are not read from the
    /// parameters and get no gradient.
    pub slopes: bool,
    /// The threshold's baseline `b0` of (1.5) (0.1; the conv network's dense layer 0.5).
    pub b0: f64,
}

impl LayerSpec {
    /// Hidden layer `k` (0-based) of `cfg`.
    pub fn of(cfg: &ModelConfig, k: usize) -> Self {
        LayerSpec {
            names: LayerNames::hidden(k, cfg.layers()),
            inputs: cfg.layer_input(k),
            neurons: cfg.hidden[k],
            threshold: cfg.threshold,
            fused: cfg.fused_recurrent,
            batch_norm: cfg.batch_norm,
            neuron: cfg.neuron,
            recurrent: true,
            slopes: true,
            b0: B0,
        }
    }

    /// A gate's slope: the parameter `name` with slopes, 1 without.
    fn slope(&self, p: &Params, name: &str) -> f64 {
        if self.slopes {
            scalar(p, name)
        } else {
            1.0
        }
    }

    fn w(&self, map: &str) -> String {
        format!("{map}.weight")
    }

    fn c(&self, map: &str) -> String {
        format!("{map}.bias")
    }
}

/// The state a layer carries from step to step, each `[B, N]`: membrane `m`, spike `s`,
/// adaptation `b` (with a fixed threshold `b` is carried unchanged and unused).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerState {
    pub m: Vec<f64>,
    pub s: Vec<f64>,
    pub b: Vec<f64>,
}

impl LayerState {
    /// The start of a sequence (method §1): the given membrane, `s = 0`, `b = b0`.
    ///
    /// Method §1 (1.17).
    pub fn start(membrane: Vec<f64>) -> Self {
        Self::start_with(membrane, B0)
    }

    /// The start of a sequence with threshold baseline `b0`: the given membrane, `s = 0`, `b = b0`.
    pub fn start_with(membrane: Vec<f64>, b0: f64) -> Self {
        let n = membrane.len();
        LayerState { m: membrane, s: vec![0.0; n], b: vec![b0; n] }
    }
}

/// Everything one step's forward computed, kept for the backward. All `[B, N]` unless noted.
#[derive(Debug, Clone)]
pub struct LayerCache {
    /// The layer's input `x`, `[B, I]`.
    pub x: Vec<f64>,
    /// The state the step started from (a constant under FPTT with truncation 1).
    pub prev: LayerState,
    /// `W_x·x + c_x` (fused: `W_x·[x ; s] + c_x`), before any batch norm.
    pub cur_x: Vec<f64>,
    /// `W_r·s + c_r` before batch norm (empty when fused).
    pub cur_r: Vec<f64>,
    pub bn_a: Option<BnCache>,
    pub bn_b: Option<BnCache>,
    /// The input current `d`.
    pub d: Vec<f64>,
    /// `W_m·[d ; m] + c_m` (before the slope); LIF/ALIF: `ρ_m` broadcast over the batch.
    pub pre_m: Vec<f64>,
    pub tau_m: Vec<f64>,
    /// `W_a·[d ; b] + c_a` (empty with a fixed threshold); ALIF: `ρ_a` broadcast over the batch.
    pub pre_a: Vec<f64>,
    pub tau_a: Vec<f64>,
    /// The new state `(m', s', b')`.
    pub next: LayerState,
    pub theta: Vec<f64>,
    pub u: Vec<f64>,
}

/// One step forward (method §1) for a batch of `batch` samples.
///
/// Method §1 (1.1)–(1.11), §7 (7.1)–(7.2). GPU twins: `shaders/layer_current.wgsl`, then
/// `shaders/batch_norm_forward.wgsl` (with batch norm), then `shaders/layer_neuron.wgsl`.
pub fn forward(
    spec: &LayerSpec,
    p: &Params,
    x: &[f64],
    prev: &LayerState,
    batch: usize,
    norm: Norm,
    spike: SpikeFn,
) -> LayerCache {
    let (nb, ni, nn) = (batch, spec.inputs, spec.neurons);
    let names = &spec.names;
    assert_eq!(x.len(), nb * ni, "layer input shape");
    assert_eq!(prev.m.len(), nb * nn, "layer state shape");

    // d = W_x·x + c_x + W_r·s + c_r   (or its batch-norm / fused forms)
    let (cur_x, cur_r, bn_a, bn_b, d);
    if spec.fused {
        let xs = concat(x, ni, &prev.s, nn, nb);
        cur_x = linear(&xs, nb, ni + nn, get(p, &spec.w(&names.x)), get(p, &spec.c(&names.x)), nn);
        cur_r = Vec::new();
        bn_a = None;
        bn_b = None;
        d = cur_x.clone();
    } else if !spec.recurrent {
        // d = W_x·x + c_x   (with batch norm BN_a(W_x·x + c_x)): no recurrent map.
        cur_x = linear(x, nb, ni, get(p, &spec.w(&names.x)), get(p, &spec.c(&names.x)), nn);
        cur_r = Vec::new();
        bn_b = None;
        if spec.batch_norm {
            let (ya, ca) = batchnorm::forward(&cur_x, nb, nn, p, &names.bn_a, norm);
            d = ya;
            bn_a = Some(ca);
        } else {
            d = cur_x.clone();
            bn_a = None;
        }
    } else {
        cur_x = linear(x, nb, ni, get(p, &spec.w(&names.x)), get(p, &spec.c(&names.x)), nn);
        cur_r = linear(&prev.s, nb, nn, get(p, &spec.w(&names.r)), get(p, &spec.c(&names.r)), nn);
        if spec.batch_norm {
            let (ya, ca) = batchnorm::forward(&cur_x, nb, nn, p, &names.bn_a, norm);
            let (yb, cb) = batchnorm::forward(&cur_r, nb, nn, p, &names.bn_b, norm);
            let mut sum = ya;
            add_into(&mut sum, &yb);
            d = sum;
            bn_a = Some(ca);
            bn_b = Some(cb);
        } else {
            let mut sum = cur_x.clone();
            add_into(&mut sum, &cur_r);
            d = sum;
            bn_a = None;
            bn_b = None;
        }
    }

    // τm = σ(a_m · (W_m·[d ; m] + c_m))   (LIF/ALIF: τm = σ(ρ_m))
    let pre_m = if spec.neuron.has_gates() {
        let dm = concat(&d, nn, &prev.m, nn, nb);
        linear(&dm, nb, 2 * nn, get(p, &spec.w(&names.tau_m)), get(p, &spec.c(&names.tau_m)), nn)
    } else {
        per_neuron(get(p, &spec.w(&names.tau_m)), nb)
    };
    let a_m = if spec.neuron.has_gates() { spec.slope(p, &names.slope_m) } else { 1.0 };
    let tau_m: Vec<f64> = pre_m.iter().map(|&z| sigmoid(a_m * z)).collect();

    // τa = σ(a_a · (W_a·[d ; b] + c_a)) (ALIF: τa = σ(ρ_a)); b' = τa⊙b + (1 − τa)⊙s; θ = b0 + β_a·b'
    let (pre_a, tau_a, b_new, theta);
    match spec.threshold {
        ThresholdMode::Adaptive => {
            let a_a;
            if spec.neuron.has_gates() {
                let db = concat(&d, nn, &prev.b, nn, nb);
                let (w_a, c_a) = (get(p, &spec.w(&names.tau_adp)), get(p, &spec.c(&names.tau_adp)));
                pre_a = linear(&db, nb, 2 * nn, w_a, c_a, nn);
                a_a = spec.slope(p, &names.slope_a);
            } else {
                pre_a = per_neuron(get(p, &spec.w(&names.tau_adp)), nb);
                a_a = 1.0;
            }
            tau_a = pre_a.iter().map(|&z| sigmoid(a_a * z)).collect::<Vec<f64>>();
            b_new = (0..nb * nn).map(|i| tau_a[i] * prev.b[i] + (1.0 - tau_a[i]) * prev.s[i]).collect::<Vec<f64>>();
            theta = b_new.iter().map(|&bb| spec.b0 + BETA_ADAPT * bb).collect();
        }
        ThresholdMode::Fixed(th) => {
            pre_a = Vec::new();
            tau_a = Vec::new();
            b_new = prev.b.clone();
            theta = vec![th as f64; nb * nn];
        }
    }

    // u = m + τm⊙(d − m); s' = H(u − θ); m' = (1 − s')⊙u
    let u: Vec<f64> = (0..nb * nn).map(|i| prev.m[i] + tau_m[i] * (d[i] - prev.m[i])).collect();
    let s_new: Vec<f64> = (0..nb * nn).map(|i| spike.forward(u[i] - theta[i])).collect();
    let m_new: Vec<f64> = (0..nb * nn).map(|i| (1.0 - s_new[i]) * u[i]).collect();

    LayerCache {
        x: x.to_vec(),
        prev: prev.clone(),
        cur_x,
        cur_r,
        bn_a,
        bn_b,
        d,
        pre_m,
        tau_m,
        pre_a,
        tau_a,
        next: LayerState { m: m_new, s: s_new, b: b_new },
        theta,
        u,
    }
}

/// A per-neuron vector `[N]` repeated for every sample: `[B, N]`.
fn per_neuron(v: &[f64], batch: usize) -> Vec<f64> {
    (0..batch).flat_map(|_| v.iter().copied()).collect()
}

/// `Σ_batch` of a `[B, N]` matrix: `[N]` (the gradient of a per-neuron constant).
fn sum_over_batch(m: &[f64], neurons: usize) -> Vec<f64> {
    let mut sum = vec![0.0; neurons];
    for row in m.chunks(neurons) {
        add_into(&mut sum, row);
    }
    sum
}

/// What one step's backward returns when the previous state is a variable, not a constant.
#[derive(Debug, Clone)]
pub struct LayerBackward {
    /// The gradient of every parameter the layer uses (including the gate slopes).
    pub grads: Grads,
    /// `ḡ_x` `[B, I]`: the gradient on the layer's input (the `ḡ_s` of the layer below).
    pub g_x: Vec<f64>,
    /// The gradient on the state the step started from, `[B, N]` each, in the fields of the same
    /// name: `m` holds `ḡ` on the previous `m`, `s` on the previous `s`, `b` on the previous `b`.
    pub g_prev: LayerState,
}

/// One step backward (method §3) from the upstream gradients on the layer's outputs: `g_s` on `s'`,
/// `g_m` on `m'` and `g_b` on `b'` (`None` = 0). Returns the gradient of every parameter the layer
/// uses (including the gate slopes, trainable or not) and `ḡ_x` `[B, I]`, the gradient on the
/// layer's input (the `ḡ_s` of the layer below). The previous state is a constant (FPTT with
/// truncation 1); [`backward_through_state`] also returns the gradient on it.
///
/// Method §3 (3.1)–(3.11). GPU twins: `shaders/layer_backward_neuron.wgsl`, `shaders/weight_grad.wgsl`,
/// `shaders/weight_grad.wgsl` (dot jobs), `shaders/input_grad.wgsl`, `shaders/batch_norm_backward.wgsl`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    spec: &LayerSpec,
    p: &Params,
    c: &LayerCache,
    batch: usize,
    spike: SpikeFn,
    g_s: &[f64],
    g_m: Option<&[f64]>,
    g_b: Option<&[f64]>,
) -> (Grads, Vec<f64>) {
    let r = backward_through_state(spec, p, c, batch, spike, g_s, g_m, g_b);
    (r.grads, r.g_x)
}

/// One LTC gate `τ = σ(a·(W·[d ; state] + c))`: its map's name, its slope's name, its state input
/// and its pre-activation `W·[d ; state] + c` from the forward.
struct Gate<'a> {
    map: &'a str,
    slope: &'a str,
    state: &'a [f64],
    pre: &'a [f64],
}

/// Backward through `gate` from `r = ḡ_τ⊙τ(1−τ)`, with `ḡ_z = r⊙a`: records `∇W = Σ ḡ_zᵀ·[d ; state]`,
/// `∇c = Σ ḡ_z` and `∇a = Σ r⊙pre` in `grads`, adds `(ḡ_z·W)[:, :N]` to `g_d`, and returns
/// `(ḡ_z·W)[:, N:]`, the gradient on the gate's state input.
///
/// Method §3 (3.6)–(3.9). GPU twins: `shaders/weight_grad.wgsl`, `shaders/weight_grad.wgsl` (dot jobs),
/// `shaders/input_grad.wgsl`.
#[allow(clippy::too_many_arguments)]
fn gate_backward(
    spec: &LayerSpec,
    p: &Params,
    gate: Gate,
    d: &[f64],
    r: &[f64],
    nb: usize,
    grads: &mut Grads,
    g_d: &mut [f64],
) -> Vec<f64> {
    let nn = spec.neurons;
    let a = spec.slope(p, gate.slope);
    let g_z: Vec<f64> = r.iter().map(|g| g * a).collect();
    let input = concat(d, nn, gate.state, nn, nb);
    let (gw, gc, g_input) = linear_backward(&g_z, &input, nb, 2 * nn, get(p, &spec.w(gate.map)), nn);
    add_into(g_d, &first_columns(&g_input, nb, 2 * nn, nn));
    grads.insert(spec.w(gate.map), gw);
    grads.insert(spec.c(gate.map), gc);
    if spec.slopes {
        grads.insert(gate.slope.to_string(), vec![r.iter().zip(gate.pre).map(|(r, z)| r * z).sum()]);
    }
    last_columns(&g_input, nb, 2 * nn, nn)
}

/// [`backward`] plus the gradient on the previous state (the chunk's chain of method §3, last
/// paragraph). Besides the local derivatives of method §3 (which give the same parameter gradients
/// and `ḡ_x`, bit for bit):
///
/// - previous `m`: through `u = m + τm⊙(d − m)` (`ḡ_u⊙(1 − τm)`) and through the gate input
///   `[d ; m]` of `W_m` (`(ḡ_zm·W_m)[:, N:]`);
/// - previous `s`: through the recurrent map (`ḡ_cur_r·W_r`, after `BN_b`'s backward with this step's
///   batch statistics; fused: the `s` columns of `ḡ_d·W_x`) and through
///   `b' = τa⊙b + (1 − τa)⊙s` (`ḡ_b'⊙(1 − τa)`);
/// - previous `b`: through `b'` (`ḡ_b'⊙τa`) and through the gate input `[d ; b]` of `W_a`
///   (`(ḡ_za·W_a)[:, N:]`). With a fixed threshold `b' = b` is carried unchanged, so the previous
///   `b` receives `ḡ_b` as it is.
///
/// LIF/ALIF have no gate inputs: `τm`, `τa` depend on `ρ_m`, `ρ_a` only, so the previous `m` and
/// `b` receive just the integration and adaptation terms, and `∇ρ = Σ_batch ḡ_τ⊙τ(1−τ)`.
///
/// Method §3 (3.1)–(3.11) and (3.16)–(3.18); §7 for LIF/ALIF. GPU twins: those of [`backward`]
/// (`shaders/layer_backward_neuron.wgsl` also carries the state gradients inside a chunk).
/// Back through the spike `s' = H(u − θ)`, the reset `m' = u⊙(1 − s')` and the threshold
/// `θ = b0 + β_a·b'` (method §3 (3.1)–(3.3)), shared by the dense and the convolutional cells:
/// with `e = ḡ_s − ḡ_m⊙u`, returns `ḡ_u = ḡ_m⊙(1 − s') + e⊙ψ(u − θ)` and
/// `ḡ_b' = ḡ_b − β_a·e⊙ψ(u − θ)`.
pub(crate) fn spike_backward(
    u: &[f64],
    theta: &[f64],
    s_next: &[f64],
    spike: SpikeFn,
    g_s: &[f64],
    g_m: &[f64],
    g_b: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let len = u.len();
    let mut g_u = vec![0.0; len];
    let mut g_bn = vec![0.0; len];
    for i in 0..len {
        let psi = spike.derivative(u[i] - theta[i]);
        let e = g_s[i] - g_m[i] * u[i];
        g_u[i] = g_m[i] * (1.0 - s_next[i]) + e * psi;
        g_bn[i] = g_b[i] - BETA_ADAPT * e * psi;
    }
    (g_u, g_bn)
}

#[allow(clippy::too_many_arguments)]
pub fn backward_through_state(
    spec: &LayerSpec,
    p: &Params,
    c: &LayerCache,
    batch: usize,
    spike: SpikeFn,
    g_s: &[f64],
    g_m: Option<&[f64]>,
    g_b: Option<&[f64]>,
) -> LayerBackward {
    let (nb, ni, nn) = (batch, spec.inputs, spec.neurons);
    let names = &spec.names;
    let len = nb * nn;
    assert_eq!(g_s.len(), len, "ḡ_s shape");
    let zeros = vec![0.0; len];
    let g_m = g_m.unwrap_or(&zeros);
    let g_b = g_b.unwrap_or(&zeros);
    assert_eq!(g_m.len(), len, "ḡ_m shape");
    assert_eq!(g_b.len(), len, "ḡ_b shape");
    let adaptive = matches!(spec.threshold, ThresholdMode::Adaptive);
    let prev = &c.prev;
    let mut grads = Grads::new();

    let (g_u, g_bn) = spike_backward(&c.u, &c.theta, &c.next.s, spike, g_s, g_m, g_b);

    // ḡ_τm = ḡ_u⊙(d − m); ḡ_d = ḡ_u⊙τm; ḡ_zm = ḡ_τm⊙τm(1−τm)⊙a_m
    let mut g_d: Vec<f64> = (0..len).map(|i| g_u[i] * c.tau_m[i]).collect();
    let g_tm_dsig: Vec<f64> =
        (0..len).map(|i| g_u[i] * (c.d[i] - prev.m[i]) * c.tau_m[i] * (1.0 - c.tau_m[i])).collect();
    // Previous m through u = m + τm⊙(d − m): ḡ_u⊙(1 − τm) (the LTC gate input adds to it below).
    let mut g_prev_m: Vec<f64> = (0..len).map(|i| g_u[i] * (1.0 - c.tau_m[i])).collect();
    if !spec.neuron.has_gates() {
        // LIF/ALIF: τm = σ(ρ_m) per neuron, ∇ρ_m = Σ_batch ḡ_τm⊙τm(1−τm); nothing flows into d or m.
        grads.insert(spec.w(&names.tau_m), sum_over_batch(&g_tm_dsig, nn));
    } else {
        // Previous m through the gate input [d ; m]: (ḡ_zm·W_m)[:, N:].
        let through_gate = gate_backward(
            spec,
            p,
            Gate { map: &names.tau_m, slope: &names.slope_m, state: &prev.m, pre: &c.pre_m },
            &c.d,
            &g_tm_dsig,
            nb,
            &mut grads,
            &mut g_d,
        );
        add_into(&mut g_prev_m, &through_gate);
    }

    let (mut g_prev_s, g_prev_b);
    if adaptive {
        // ḡ_τa = ḡ_b'⊙(b − s); ḡ_za = ḡ_τa⊙τa(1−τa)⊙a_a
        let g_ta_dsig: Vec<f64> =
            (0..len).map(|i| g_bn[i] * (prev.b[i] - prev.s[i]) * c.tau_a[i] * (1.0 - c.tau_a[i])).collect();
        // b' = τa⊙b + (1 − τa)⊙s: ḡ_b'⊙τa on the previous b (LTC: plus the gate input [d ; b],
        // (ḡ_za·W_a)[:, N:]), ḡ_b'⊙(1 − τa) on the previous s (the recurrent map adds to it below).
        let mut g_b_from_gate = if spec.neuron.has_gates() {
            gate_backward(
                spec,
                p,
                Gate { map: &names.tau_adp, slope: &names.slope_a, state: &prev.b, pre: &c.pre_a },
                &c.d,
                &g_ta_dsig,
                nb,
                &mut grads,
                &mut g_d,
            )
        } else {
            // ALIF: τa = σ(ρ_a) per neuron, ∇ρ_a = Σ_batch ḡ_τa⊙τa(1−τa).
            grads.insert(spec.w(&names.tau_adp), sum_over_batch(&g_ta_dsig, nn));
            vec![0.0; len]
        };
        for i in 0..len {
            g_b_from_gate[i] += g_bn[i] * c.tau_a[i];
        }
        g_prev_b = g_b_from_gate;
        g_prev_s = (0..len).map(|i| g_bn[i] * (1.0 - c.tau_a[i])).collect::<Vec<f64>>();
    } else {
        // Fixed threshold: b' = b, nothing else reads b.
        g_prev_b = g_b.to_vec();
        g_prev_s = vec![0.0; len];
    }

    // The input current: ∇W_x = Σ ḡ_dᵀ·x, ∇W_r = Σ ḡ_dᵀ·s, ∇c_x = ∇c_r = Σ ḡ_d, ḡ_x = ḡ_d·W_x
    let g_x;
    if spec.fused {
        let xs = concat(&c.x, ni, &prev.s, nn, nb);
        let (gw, gc, g_xs) = linear_backward(&g_d, &xs, nb, ni + nn, get(p, &spec.w(&names.x)), nn);
        grads.insert(spec.w(&names.x), gw);
        grads.insert(spec.c(&names.x), gc);
        g_x = first_columns(&g_xs, nb, ni + nn, ni);
        // Previous s through the fused map: the s columns of ḡ_d·W_x.
        add_into(&mut g_prev_s, &last_columns(&g_xs, nb, ni + nn, ni));
    } else if !spec.recurrent {
        // No recurrent map: ḡ_d goes (through BN_a's backward) to W_x and x only.
        let g_cur_x = if spec.batch_norm {
            let (gxa, gga, gda) = batchnorm::backward(&g_d, c.bn_a.as_ref().unwrap(), nb, nn, p, &names.bn_a);
            grads.insert(format!("{}.weight", names.bn_a), gga);
            grads.insert(format!("{}.bias", names.bn_a), gda);
            gxa
        } else {
            g_d
        };
        let (gw, gc, gx) = linear_backward(&g_cur_x, &c.x, nb, ni, get(p, &spec.w(&names.x)), nn);
        grads.insert(spec.w(&names.x), gw);
        grads.insert(spec.c(&names.x), gc);
        g_x = gx;
    } else {
        let (g_cur_x, g_cur_r) = if spec.batch_norm {
            let (gxa, gga, gda) = batchnorm::backward(&g_d, c.bn_a.as_ref().unwrap(), nb, nn, p, &names.bn_a);
            let (gxb, ggb, gdb) = batchnorm::backward(&g_d, c.bn_b.as_ref().unwrap(), nb, nn, p, &names.bn_b);
            grads.insert(format!("{}.weight", names.bn_a), gga);
            grads.insert(format!("{}.bias", names.bn_a), gda);
            grads.insert(format!("{}.weight", names.bn_b), ggb);
            grads.insert(format!("{}.bias", names.bn_b), gdb);
            (gxa, gxb)
        } else {
            (g_d.clone(), g_d.clone())
        };
        let (gw, gc, gx) = linear_backward(&g_cur_x, &c.x, nb, ni, get(p, &spec.w(&names.x)), nn);
        grads.insert(spec.w(&names.x), gw);
        grads.insert(spec.c(&names.x), gc);
        g_x = gx;
        // Previous s through the recurrent map: ḡ_cur_r·W_r (ḡ_cur_r is after BN_b's backward).
        let (gw, gc, g_s_rec) = linear_backward(&g_cur_r, &prev.s, nb, nn, get(p, &spec.w(&names.r)), nn);
        grads.insert(spec.w(&names.r), gw);
        grads.insert(spec.c(&names.r), gc);
        add_into(&mut g_prev_s, &g_s_rec);
    }
    LayerBackward { grads, g_x, g_prev: LayerState { m: g_prev_m, s: g_prev_s, b: g_prev_b } }
}
