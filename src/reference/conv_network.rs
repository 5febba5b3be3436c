//! A whole convolutional LTC network for one time step (method §9, "The network, one step"):
//! cells 1..L (cell 1 reads the frame, cell k the new spikes `s'` of cell k−1 at the same step),
//! dropout on the last cell's new spikes, the flatten, the dense LTC layer (the DVS model's: `b0 =
//! 0.5`, gates without slopes, no batch norm, no recurrent map unless the spec asks for the fused
//! `[x ; s]` one), the readout (slope 1, no batch norm) and the per-step loss of method §4. Owns the
//! one-step FPTT backward of `ℓ_t` through that chain (the previous state a constant) and the
//! running-statistics update of the cells' batch norms after a training forward.
//!
//! The backward passes, from the top: `ḡ_o'` (the loss) → readout → `ḡ_s` of the dense layer →
//! dense layer → `ḡ_x` `[B, F]` → unflatten (the identity on the data: NCHW `[B, C, H', W']` is
//! already `[B, C·H'·W']` row-major) → times the dropout mask → `ḡ_s` of cell L → cell L → its `ḡ_x`
//! is the `ḡ_s` of cell L−1 → … → cell 1 (whose `ḡ_x`, on the frame, is dropped). Within a step
//! only the new spikes pass between cells, so every cell's `ḡ_m` and `ḡ_b` are 0.

use super::batchnorm::Norm;
use super::conv::{self, bn2d_update_running, ConvCellCache, ConvCellSpec};
use super::loss::{task_loss, LossContext};
use super::neuron::{self, LayerCache, LayerSpec, LayerState};
use super::readout::{self, ReadoutCache, ReadoutSpec};
use super::{add_grads, add_into, Grads, Params, SpikeFn};
use crate::model::conv::{ConvNetSpec, CONV_B0};
use crate::model::{ModelConfig, NeuronKind, ThresholdMode};
use crate::rng::Rng;

/// A conv network's structure (no parameters: those are passed in by the names of
/// [`ConvNetSpec::tensors`], so that finite differences can perturb a copy).
#[derive(Debug, Clone)]
pub struct ConvNet {
    pub spec: ConvNetSpec,
    /// Cell k (0-based) is `conv_snn{k+1}`.
    pub cells: Vec<ConvCellSpec>,
    /// The dense layer `snn_rec.layer1_*`: `F = spec.flat_features()` inputs, `spec.hidden` neurons.
    pub dense: LayerSpec,
    /// The readout `layer3_*`.
    pub readout: ReadoutSpec,
    pub spike: SpikeFn,
}

/// The whole recurrent state: `m`, `s`, `b` of every cell (`[B, C, H', W']` each), of the dense
/// layer (`[B, N]`) and the readout `o` `[B, classes]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvNetState {
    pub cells: Vec<LayerState>,
    pub dense: LayerState,
    pub o: Vec<f64>,
}

impl ConvNetState {
    /// A state of the same shape with every element 0 (as a gradient: what flows into the last
    /// step of a chunk from beyond it).
    pub fn zeros_like(&self) -> Self {
        let zeros = |v: &[f64]| vec![0.0; v.len()];
        let layer = |l: &LayerState| LayerState { m: zeros(&l.m), s: zeros(&l.s), b: zeros(&l.b) };
        ConvNetState { cells: self.cells.iter().map(layer).collect(), dense: layer(&self.dense), o: zeros(&self.o) }
    }

    /// The start of a sequence: the given membranes (one per cell, then the dense layer's), `s = 0`,
    /// `b = b0 = 0.5`, `o = 0` (method §9, §1 (1.17)).
    pub fn start(net: &ConvNet, cells: Vec<Vec<f64>>, dense: Vec<f64>, batch: usize) -> Self {
        assert_eq!(cells.len(), net.cells.len(), "one initial membrane per cell");
        let cells = cells
            .into_iter()
            .zip(&net.cells)
            .map(|(m, spec)| {
                assert_eq!(m.len(), spec.state_len(batch), "a cell's initial membrane is [B, C, H', W']");
                conv::start_state(spec, m)
            })
            .collect();
        assert_eq!(dense.len(), batch * net.dense.neurons, "the dense layer's initial membrane is [B, N]");
        ConvNetState {
            cells,
            dense: LayerState::start_with(dense, net.dense.b0),
            o: vec![0.0; batch * net.spec.classes],
        }
    }

    /// [`Self::start`] with `m ~ U[0, 1)` drawn from `rng`: the cells in order (each in NCHW order),
    /// then the dense layer.
    pub fn uniform_start(net: &ConvNet, batch: usize, rng: &mut Rng) -> Self {
        let cells = net.cells.iter().map(|c| (0..c.state_len(batch)).map(|_| rng.uniform()).collect()).collect();
        let dense = (0..batch * net.dense.neurons).map(|_| rng.uniform()).collect();
        Self::start(net, cells, dense, batch)
    }
}

/// PyTorch's dropout mask for `len` values with drop probability `p`: each value is kept with
/// probability `1 − p` and then scaled by `1/(1 − p)`, i.e. the mask holds `0` or `1/(1 − p)`.
/// Deterministic from `(seed, t)`: one uniform draw per value, in order, from the stream
/// `Rng::derive(seed, "conv dropout {t}")`; a value is kept when its draw is below `1 − p`. (The
/// caller varies `seed` from sequence to sequence; a GPU engine can upload this mask.)
///
/// Method §9 (9.21).
pub fn dropout_mask(p: f64, len: usize, seed: u64, t: usize) -> Vec<f64> {
    assert!((0.0..1.0).contains(&p), "dropout probability {p} is not in [0, 1)");
    let keep = 1.0 - p;
    let mut rng = Rng::derive(seed, &format!("conv dropout {t}"));
    (0..len).map(|_| if rng.uniform() < keep { 1.0 / keep } else { 0.0 }).collect()
}

/// The seed of one training sequence's dropout masks: from the run's seed and the number of
/// updates made before the sequence, so that every sequence draws fresh masks and a resumed run
/// draws the ones the uninterrupted run would have. The engine draws its masks this way too.
pub fn sequence_dropout_seed(run_seed: u64, updates: u64) -> u64 {
    Rng::derive(run_seed, &format!("conv dropout sequence {updates}")).next_u64()
}

/// One step's forward, kept for the backward (the one-step tape).
#[derive(Debug, Clone)]
pub struct ConvStepCache {
    pub cells: Vec<ConvCellCache>,
    /// The dropout mask `[B, F]` the step used (`None`: evaluation, no dropout).
    pub mask: Option<Vec<f64>>,
    /// The dense layer; its `x` is the flattened, dropped-out spikes of the last cell `[B, F]`.
    pub dense: LayerCache,
    pub readout: ReadoutCache,
}

impl ConvStepCache {
    /// The state after this step (the next step's constant input under FPTT). The last cell keeps
    /// its own spikes, not the dropped-out ones (method §9, **Choice**).
    pub fn next_state(&self) -> ConvNetState {
        ConvNetState {
            cells: self.cells.iter().map(|c| c.neuron.next.clone()).collect(),
            dense: self.dense.next.clone(),
            o: self.readout.o.clone(),
        }
    }

    /// The readout `o'` `[B, classes]`.
    pub fn output(&self) -> &[f64] {
        &self.readout.o
    }
}

impl ConvNet {
    /// The network of `spec` (validated) with the spike function `spike`.
    pub fn new(spec: &ConvNetSpec, spike: SpikeFn) -> Self {
        spec.validate().expect("reference: invalid conv network");
        let b0 = CONV_B0 as f64;
        let (hidden, classes) = (spec.hidden, spec.classes);
        // The names the model gives a conv network's dense layer and readout (the authors'; no
        // slopes or batch norms: those names are empty and never read).
        let cfg = ModelConfig::convolutional(spec.clone());
        let (readout_x, readout_tau, _, _) = cfg.readout_names();
        let dense = LayerSpec {
            names: cfg.layer_names(0),
            inputs: spec.flat_features(),
            neurons: hidden,
            threshold: ThresholdMode::Adaptive,
            // `dense_recurrent`: `layer1_x` reads `[x ; s]` (1.10); otherwise `x` only.
            fused: spec.dense_recurrent,
            batch_norm: false,
            neuron: NeuronKind::Ltc,
            recurrent: spec.dense_recurrent,
            slopes: false,
            b0,
        };
        let readout = ReadoutSpec {
            x: readout_x,
            tau_m: readout_tau,
            bn: String::new(),
            slope: String::new(),
            inputs: hidden,
            outputs: classes,
            batch_norm: false,
            slopes: false,
        };
        ConvNet {
            spec: spec.clone(),
            cells: (0..spec.cells.len()).map(|k| ConvCellSpec::of(spec, k)).collect(),
            dense,
            readout,
            spike,
        }
    }

    /// Values of one frame `[B, C, H, W]`.
    pub fn frame_len(&self, batch: usize) -> usize {
        batch * self.spec.in_channels * self.spec.height * self.spec.width
    }

    /// Values of the dropout mask `[B, F]`.
    pub fn mask_len(&self, batch: usize) -> usize {
        batch * self.spec.flat_features()
    }

    /// The training mask of step `t` ([`dropout_mask`] with the spec's `p`).
    pub fn dropout_mask(&self, batch: usize, seed: u64, t: usize) -> Vec<f64> {
        dropout_mask(self.spec.dropout as f64, self.mask_len(batch), seed, t)
    }

    /// One step forward from `state` with the frame `[B, C, H, W]`: cells 1..L, dropout with `mask`
    /// (`None`: none, for evaluation), flatten, dense layer, readout. `norm` selects batch or
    /// running statistics for the cells' batch norms (the dense layer and readout have none).
    ///
    /// Method §9 (9.21)–(9.23). GPU twins: `shaders/conv_*.wgsl`, `shaders/batch_norm2d_*.wgsl`,
    /// `shaders/maxpool_*.wgsl` per cell, chained by `learn/planner/conv.rs`, then the dense kernels of
    /// [`neuron::forward`] and [`readout::forward`].
    pub fn forward(
        &self,
        p: &Params,
        frame: &[f64],
        state: &ConvNetState,
        batch: usize,
        norm: Norm,
        mask: Option<&[f64]>,
    ) -> ConvStepCache {
        assert_eq!(frame.len(), self.frame_len(batch), "a frame is [B, C, H, W]");
        assert_eq!(state.cells.len(), self.cells.len(), "one state per cell");
        let mut cells: Vec<ConvCellCache> = Vec::with_capacity(self.cells.len());
        for (k, spec) in self.cells.iter().enumerate() {
            let input: &[f64] = if k == 0 { frame } else { &cells[k - 1].neuron.next.s };
            let c = conv::forward(spec, p, input, &state.cells[k], batch, norm, self.spike);
            cells.push(c);
        }
        // x = flatten(Drop(s'_L)): NCHW [B, C, H', W'] is [B, C·H'·W'] row-major as it is.
        let top = &cells.last().unwrap().neuron.next.s;
        let flat: Vec<f64> = match mask {
            Some(m) => {
                assert_eq!(m.len(), top.len(), "the dropout mask is [B, F]");
                top.iter().zip(m).map(|(s, m)| s * m).collect()
            }
            None => top.clone(),
        };
        let dense = neuron::forward(&self.dense, p, &flat, &state.dense, batch, norm, self.spike);
        let ro = readout::forward(&self.readout, p, &dense.next.s, &state.o, batch, norm);
        ConvStepCache { cells, mask: mask.map(<[f64]>::to_vec), dense, readout: ro }
    }

    /// One step backward from `ḡ_o'` `[B, classes]`: the gradient of every tensor of
    /// [`ConvNetSpec::tensors`] (`tau_m_o`, never read by the forward, gets 0), the previous state
    /// a constant.
    ///
    /// Method §9 (9.24), (9.18), (9.25)–(9.26): [`Self::step_backward_through_state`] with nothing
    /// flowing back from later steps. GPU twins: the backward of `learn/planner/conv.rs`.
    pub fn backward(&self, p: &Params, cache: &ConvStepCache, batch: usize, g_o: &[f64]) -> Grads {
        let (grads, _) = self.step_backward_through_state(p, cache, batch, g_o, &cache.next_state().zeros_like());
        for t in self.spec.tensors() {
            let g = grads.get(&t.name).unwrap_or_else(|| panic!("reference: no gradient for {}", t.name));
            assert_eq!(g.len(), t.len(), "reference: gradient shape of {}", t.name);
        }
        grads
    }

    /// One step of a chunk's backward (chunked FPTT, BPTT): [`Self::backward`] with the gradient
    /// `g_next` that flows back from the chunk's later steps onto this step's new state (zeros at
    /// its last step): the readout receives `ḡ_o' = g_o + g_next.o`, the dense layer and each cell
    /// add `g_next`'s share to the `ḡ_s'` from above and take its `ḡ_m'`, `ḡ_b'`. Returns the
    /// step's parameter gradients and the gradient on the state it started from ((9.19)–(9.20),
    /// (3.16)–(3.18)).
    ///
    /// Method §9 with §3 (3.20). GPU twins: the one-step backward kernels with the carries of a
    /// chunk's slots (`learn/planner/conv.rs`).
    pub fn step_backward_through_state(
        &self,
        p: &Params,
        cache: &ConvStepCache,
        batch: usize,
        g_o: &[f64],
        g_next: &ConvNetState,
    ) -> (Grads, ConvNetState) {
        let mut g_o_total = g_o.to_vec();
        add_into(&mut g_o_total, &g_next.o);
        let ro = readout::backward_through_state(&self.readout, p, &cache.readout, batch, &g_o_total);
        let mut grads = ro.grads;
        let mut g_s = ro.g_s_top;
        add_into(&mut g_s, &g_next.dense.s);
        let dense = neuron::backward_through_state(
            &self.dense,
            p,
            &cache.dense,
            batch,
            self.spike,
            &g_s,
            Some(&g_next.dense.m),
            Some(&g_next.dense.b),
        );
        grads.extend(dense.grads);
        let mut g_from_above: Vec<f64> = match &cache.mask {
            Some(m) => dense.g_x.iter().zip(m).map(|(g, m)| g * m).collect(),
            None => dense.g_x,
        };
        let mut g_prev_cells = Vec::with_capacity(self.cells.len());
        for k in (0..self.cells.len()).rev() {
            let later = &g_next.cells[k];
            let mut g_s = g_from_above;
            add_into(&mut g_s, &later.s);
            let c = conv::backward_through_state(
                &self.cells[k],
                p,
                &cache.cells[k],
                batch,
                self.spike,
                &g_s,
                Some(&later.m),
                Some(&later.b),
            );
            grads.extend(c.grads);
            g_from_above = c.g_x;
            g_prev_cells.push(c.g_prev);
        }
        g_prev_cells.reverse();
        if self.spec.tau_m_o {
            grads.insert("tau_m_o".into(), vec![0.0; self.spec.classes]);
        }
        (grads, ConvNetState { cells: g_prev_cells, dense: dense.g_prev, o: ro.g_prev_o })
    }

    /// The backward of a chunk from its caches (step order) and each step's `∂ℓ_t/∂o'_t`: the
    /// gradient of `Σ_t ℓ_t` with respect to every tensor, and the gradient on the chunk's start
    /// state (training treats the start as a constant; tests check it).
    pub fn chunk_backward(
        &self,
        p: &Params,
        caches: &[ConvStepCache],
        g_outputs: &[Vec<f64>],
    ) -> (Grads, ConvNetState) {
        assert!(!caches.is_empty(), "a chunk has at least one step");
        assert_eq!(caches.len(), g_outputs.len(), "one output gradient per step");
        let batch = caches[0].output().len() / self.spec.classes;
        let mut g_next = caches[caches.len() - 1].next_state().zeros_like();
        let mut total = Grads::new();
        for (cache, g_o) in caches.iter().zip(g_outputs).rev() {
            let (grads, g_prev) = self.step_backward_through_state(p, cache, batch, g_o, &g_next);
            add_grads(&mut total, grads);
            g_next = g_prev;
        }
        (total, g_next)
    }

    /// After a training forward (batch statistics), PyTorch's update of the running statistics of
    /// every cell's three batch norms, stored as step `t`'s `{bn}.running_mean_{t}` /
    /// `{bn}.running_var_{t}` in `stats` (method §9 (9.10); the authors' one set per batch norm is
    /// `t = 0` at every frame). Missing entries start at mean 0, variance 1.
    pub fn update_running(&self, stats: &mut Params, t: usize, cache: &ConvStepCache, batch: usize) {
        for (spec, c) in self.cells.iter().zip(&cache.cells) {
            let (oh, ow) = spec.out_hw();
            let n = &spec.names;
            for (bn, bc, hw) in
                [(&n.bn_x, &c.bn_x, spec.h * spec.w), (&n.bn_m, &c.bn_m, oh * ow), (&n.bn_a, &c.bn_a, oh * ow)]
            {
                let (mean, var) = super::batchnorm::stat_names(bn, t);
                stats.entry(mean).or_insert_with(|| vec![0.0; spec.out_c]);
                stats.entry(var).or_insert_with(|| vec![1.0; spec.out_c]);
                bn2d_update_running(stats, bn, t, bc, batch, hw);
            }
        }
    }

    /// `ℓ_t` for one step from `state` (batch statistics, the given dropout mask), without the
    /// gradient: the function finite differences differentiate. `loss.t` is the step's index.
    pub fn step_loss(
        &self,
        p: &Params,
        state: &ConvNetState,
        frame: &[f64],
        mask: Option<&[f64]>,
        loss: LossContext,
    ) -> f64 {
        let batch = state.o.len() / self.spec.classes;
        let cache = self.forward(p, frame, state, batch, Norm::Batch, mask);
        task_loss(cache.output(), batch, self.spec.classes, self.spec.steps, loss).0
    }

    /// `ℓ_t` and its one-step FPTT gradient with respect to every tensor, for one step from `state`
    /// (a constant) with the frame `[B, C, H, W]` and dropout `mask`, batch norm in training mode.
    /// Also returns the step's cache (for the next state and the running statistics).
    pub fn step_gradient(
        &self,
        p: &Params,
        state: &ConvNetState,
        frame: &[f64],
        mask: Option<&[f64]>,
        loss: LossContext,
    ) -> (f64, Grads, ConvStepCache) {
        let batch = state.o.len() / self.spec.classes;
        let cache = self.forward(p, frame, state, batch, Norm::Batch, mask);
        let (l, g_o) = task_loss(cache.output(), batch, self.spec.classes, self.spec.steps, loss);
        let grads = self.backward(p, &cache, batch, &g_o);
        (l, grads, cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conv::ConvCell;
    use crate::settings::{AuxTargets, LossKind, Targets};

    fn randoms(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| rng.uniform_range(lo, hi)).collect()
    }

    /// Tiny networks: 2×9×9 frames, cells 2→3 (3×3) and 3→4 (3×3), each pooled (states 3×4×4 and
    /// 4×2×2, 16 features), dense 6, 3 classes, dropout 0.25; or 2×4×5 frames, no pool, cells 2→3
    /// (3×3) and 3→4 (1×1) (80 features), the dense layer reading `[x ; s]`, no `tau_m_o`.
    fn tiny(variant: usize) -> ConvNetSpec {
        let cell = |out_channels, kernel| ConvCell { out_channels, kernel };
        match variant {
            0 => ConvNetSpec {
                in_channels: 2,
                height: 9,
                width: 9,
                cells: vec![cell(3, 3), cell(4, 3)],
                pool: true,
                dropout: 0.25,
                hidden: 6,
                dense_recurrent: false,
                classes: 3,
                tau_m_o: true,
                steps: 5,
            },
            _ => ConvNetSpec {
                in_channels: 2,
                height: 4,
                width: 5,
                cells: vec![cell(3, 3), cell(4, 1)],
                pool: false,
                dropout: 0.1,
                hidden: 6,
                dense_recurrent: true,
                classes: 3,
                tau_m_o: false,
                steps: 5,
            },
        }
    }

    /// Random parameters by the spec's tensor names: batch-norm γ in [0.5, 1.5), δ in [−0.3, 0.3),
    /// weights in ±1.5/√fan-in, biases in [−0.2, 0.2).
    fn random_params(spec: &ConvNetSpec, rng: &mut Rng) -> Params {
        spec.tensors()
            .into_iter()
            .map(|t| {
                let n = t.len();
                let v = if t.name.contains(".BN") && t.name.ends_with(".weight") {
                    randoms(rng, n, 0.5, 1.5)
                } else if t.name.contains(".BN") {
                    randoms(rng, n, -0.3, 0.3)
                } else if t.shape.len() >= 2 {
                    let fan_in: usize = t.shape[1..].iter().product();
                    let bound = 1.5 / (fan_in as f64).sqrt();
                    randoms(rng, n, -bound, bound)
                } else {
                    randoms(rng, n, -0.2, 0.2)
                };
                (t.name, v)
            })
            .collect()
    }

    /// A random incoming state: m in [0, 1), s in [0, 1) (smooth spikes), b in [0.3, 0.8), o in ±1.
    fn random_state(net: &ConvNet, batch: usize, rng: &mut Rng) -> ConvNetState {
        let layer = |rng: &mut Rng, len: usize| LayerState {
            m: randoms(rng, len, 0.0, 1.0),
            s: randoms(rng, len, 0.0, 1.0),
            b: randoms(rng, len, 0.3, 0.8),
        };
        ConvNetState {
            cells: net.cells.iter().map(|c| layer(rng, c.state_len(batch))).collect(),
            dense: layer(rng, batch * net.dense.neurons),
            o: randoms(rng, batch * net.spec.classes, -1.0, 1.0),
        }
    }

    fn labels(batch: usize, classes: usize) -> Targets {
        Targets::Labels((0..batch).map(|b| (b % classes) as u32).collect())
    }

    /// Central differences of `f` in every coordinate of `v` against `analytic`. The error of a
    /// coordinate is `|a − fd|` over the tensor's scale, its largest `|fd|` (at least 1e−4, so that
    /// the exactly-zero gradients of the biases in front of a batch norm are measured against
    /// 1e−4); returns the worst and asserts it is at most `tol`.
    fn check_all(what: &str, v: &[f64], analytic: &[f64], h: f64, tol: f64, f: &dyn Fn(&[f64]) -> f64) -> f64 {
        assert_eq!(v.len(), analytic.len(), "{what}: gradient shape");
        let fd: Vec<f64> = (0..v.len())
            .map(|i| {
                let mut plus = v.to_vec();
                plus[i] += h;
                let mut minus = v.to_vec();
                minus[i] -= h;
                (f(&plus) - f(&minus)) / (2.0 * h)
            })
            .collect();
        let scale = fd.iter().fold(1e-4, |m: f64, x| m.max(x.abs()));
        let mut worst: f64 = 0.0;
        for i in 0..v.len() {
            let err = (analytic[i] - fd[i]).abs() / scale;
            assert!(err <= tol, "{what}[{i}]: analytic {} vs finite difference {} (scale {scale})", analytic[i], fd[i]);
            worst = worst.max(err);
        }
        worst
    }

    #[test]
    fn the_whole_step_gradient_matches_finite_differences_for_every_tensor() {
        let spike = SpikeFn::Smooth(5.0);
        for (variant, batch, seed) in [(0, 3, 11), (1, 2, 12)] {
            let spec = tiny(variant);
            let net = ConvNet::new(&spec, spike);
            let mut rng = Rng::new(seed);
            let p = random_params(&spec, &mut rng);
            let state = random_state(&net, batch, &mut rng);
            let frame = randoms(&mut rng, net.frame_len(batch), 0.0, 2.0);
            // Variant 0 trains with a dropout mask, variant 1 without (the evaluation path).
            let mask = (variant == 0).then(|| net.dropout_mask(batch, 5, 1));
            if let Some(m) = &mask {
                assert!(m.contains(&0.0), "the mask drops something");
            }
            let targets = labels(batch, spec.classes);
            let ctx = LossContext::new(LossKind::Classification { aux: AuxTargets::Uniform }, &targets, 1, &[]);
            let (l, grads, _) = net.step_gradient(&p, &state, &frame, mask.as_deref(), ctx);
            assert!(l.is_finite() && l > 0.0);
            // Exactly the spec's tensors, no more (no slope or batch-norm names of the dense part).
            let names: Vec<String> = spec.tensors().into_iter().map(|t| t.name).collect();
            assert_eq!(
                grads.keys().cloned().collect::<std::collections::BTreeSet<_>>(),
                names.iter().cloned().collect()
            );
            let mut worst: f64 = 0.0;
            let mut worst_name = String::new();
            for name in &names {
                let err = check_all(&format!("variant {variant} {name}"), &p[name], &grads[name], 1e-6, 1e-5, &|v| {
                    let mut q = p.clone();
                    q.insert(name.clone(), v.to_vec());
                    net.step_loss(&q, &state, &frame, mask.as_deref(), ctx)
                });
                if err > worst {
                    (worst, worst_name) = (err, name.clone());
                }
            }
            eprintln!("variant {variant}: worst finite-difference error {worst:.2e} ({worst_name})");
            // The biases in front of a batch norm get an exactly zero gradient; tau_m_o is unread.
            for cell in &net.cells {
                for map in [&cell.names.x, &cell.names.tau_m, &cell.names.tau_adp] {
                    assert!(grads[&format!("{map}.bias")].iter().all(|g| g.abs() < 1e-12));
                }
            }
            if spec.tau_m_o {
                assert_eq!(grads["tau_m_o"], vec![0.0; spec.classes]);
            }
        }
    }

    #[test]
    fn the_chunk_gradient_through_the_state_matches_finite_differences() {
        // Σ_t ℓ_t over a chunk of 3 steps from a fixed start: every tensor, and the start state.
        let spike = SpikeFn::Smooth(5.0);
        for (variant, batch, seed) in [(0, 2, 31), (1, 2, 32)] {
            let spec = ConvNetSpec { steps: 3, ..tiny(variant) };
            let net = ConvNet::new(&spec, spike);
            let mut rng = Rng::new(seed);
            let p = random_params(&spec, &mut rng);
            let start = random_state(&net, batch, &mut rng);
            let frames: Vec<Vec<f64>> = (0..3).map(|_| randoms(&mut rng, net.frame_len(batch), 0.0, 2.0)).collect();
            let masks: Vec<Option<Vec<f64>>> =
                (0..3).map(|t| (variant == 0).then(|| net.dropout_mask(batch, 8, t))).collect();
            let targets = labels(batch, spec.classes);
            let kind = LossKind::Classification { aux: AuxTargets::Uniform };
            let chunk_loss = |q: &Params, start: &ConvNetState| -> (f64, Vec<ConvStepCache>, Vec<Vec<f64>>) {
                let mut state = start.clone();
                let (mut total, mut caches, mut g_outputs) = (0.0, Vec::new(), Vec::new());
                for t in 0..3 {
                    let cache = net.forward(q, &frames[t], &state, batch, Norm::Batch, masks[t].as_deref());
                    let ctx = LossContext::new(kind, &targets, t, &[]);
                    let (l, g_o) = task_loss(cache.output(), batch, spec.classes, spec.steps, ctx);
                    total += l;
                    state = cache.next_state();
                    caches.push(cache);
                    g_outputs.push(g_o);
                }
                (total, caches, g_outputs)
            };
            let (_, caches, g_outputs) = chunk_loss(&p, &start);
            let (grads, g_start) = net.chunk_backward(&p, &caches, &g_outputs);
            let mut worst: f64 = 0.0;
            for t in spec.tensors() {
                let name = t.name;
                let err = check_all(&format!("variant {variant} {name}"), &p[&name], &grads[&name], 1e-6, 1e-5, &|v| {
                    let mut q = p.clone();
                    q.insert(name.clone(), v.to_vec());
                    chunk_loss(&q, &start).0
                });
                worst = worst.max(err);
            }
            // The start state: m, s, b of the first cell and of the dense layer, and o.
            type Pick = fn(&mut ConvNetState) -> &mut Vec<f64>;
            let picks: [(&str, Pick, Pick); 5] = [
                ("cell 1 m", |s| &mut s.cells[0].m, |s| &mut s.cells[0].m),
                ("cell 1 b", |s| &mut s.cells[0].b, |s| &mut s.cells[0].b),
                ("cell 1 s", |s| &mut s.cells[0].s, |s| &mut s.cells[0].s),
                ("dense m", |s| &mut s.dense.m, |s| &mut s.dense.m),
                ("o", |s| &mut s.o, |s| &mut s.o),
            ];
            for (what, pick, pick_g) in picks {
                let v = pick(&mut start.clone()).clone();
                let analytic = pick_g(&mut g_start.clone()).clone();
                let err = check_all(&format!("variant {variant} start {what}"), &v, &analytic, 1e-6, 1e-5, &|x| {
                    let mut s = start.clone();
                    *pick(&mut s) = x.to_vec();
                    chunk_loss(&p, &s).0
                });
                worst = worst.max(err);
            }
            eprintln!("variant {variant}: worst chunk finite-difference error {worst:.2e}");
        }
    }

    #[test]
    fn the_chain_uses_every_cell_and_the_frame() {
        let spec = tiny(0);
        let net = ConvNet::new(&spec, SpikeFn::Smooth(5.0));
        let batch = 3;
        let mut rng = Rng::new(3);
        let p = random_params(&spec, &mut rng);
        let state = random_state(&net, batch, &mut rng);
        let frame = randoms(&mut rng, net.frame_len(batch), 0.0, 2.0);
        let targets = labels(batch, spec.classes);
        let ctx = LossContext::new(LossKind::Classification { aux: AuxTargets::Off }, &targets, 2, &[]);
        let base = net.step_loss(&p, &state, &frame, None, ctx);
        for cell in &net.cells {
            // Zeroing a cell's input weights (its x̂ becomes BN_x's δ everywhere) changes ℓ_t.
            let w = format!("{}.weight", cell.names.x);
            let mut q = p.clone();
            q.insert(w.clone(), vec![0.0; p[&w].len()]);
            let changed = net.step_loss(&q, &state, &frame, None, ctx);
            assert!((changed - base).abs() > 1e-6, "{w}: ℓ {base} → {changed}");
        }
        // The frame reaches the loss (only through cell 1).
        let other = randoms(&mut rng, frame.len(), 0.0, 2.0);
        assert!((net.step_loss(&p, &state, &other, None, ctx) - base).abs() > 1e-6);
        // Every cell's weights get a non-zero gradient, with the step function and its surrogate too.
        let heaviside = ConvNet::new(&spec, SpikeFn::Heaviside);
        for n in [&net, &heaviside] {
            let (_, grads, _) = n.step_gradient(&p, &state, &frame, None, ctx);
            for cell in &n.cells {
                for map in [&cell.names.x, &cell.names.tau_m, &cell.names.tau_adp] {
                    let g = &grads[&format!("{map}.weight")];
                    assert!(g.iter().map(|v| v * v).sum::<f64>() > 1e-20, "{map}: zero gradient ({:?})", n.spike);
                }
            }
        }
    }

    #[test]
    fn the_dropout_mask_is_deterministic_drops_about_p_and_feeds_the_dense_layer() {
        let (p, len) = (0.1, 20_000);
        let m = dropout_mask(p, len, 42, 7);
        assert_eq!(m, dropout_mask(p, len, 42, 7), "the same (seed, step), the same mask");
        assert_ne!(m, dropout_mask(p, len, 42, 8), "another step, another mask");
        assert_ne!(m, dropout_mask(p, len, 43, 7), "another seed, another mask");
        let keep = 1.0 / (1.0 - p);
        assert!(m.iter().all(|&v| v == 0.0 || v == keep));
        let dropped = m.iter().filter(|&&v| v == 0.0).count() as f64 / len as f64;
        assert!((dropped - p).abs() < 0.01, "dropped {dropped}, p {p}");
        assert!(dropout_mask(0.0, 100, 1, 0).iter().all(|&v| v == 1.0));

        // The dense layer reads the last cell's spikes times the mask, flattened as they lie;
        // without a mask (evaluation) the spikes themselves. The last cell keeps its own spikes.
        let spec = tiny(0);
        let net = ConvNet::new(&spec, SpikeFn::Heaviside);
        let batch = 2;
        let mut rng = Rng::new(9);
        let params = random_params(&spec, &mut rng);
        let state = ConvNetState::uniform_start(&net, batch, &mut rng);
        let frame = randoms(&mut rng, net.frame_len(batch), 0.0, 2.0);
        let mask = net.dropout_mask(batch, 1, 0);
        assert_eq!(mask.len(), batch * spec.flat_features());
        let with = net.forward(&params, &frame, &state, batch, Norm::Batch, Some(&mask));
        let top = &with.cells[1].neuron.next.s;
        let want: Vec<f64> = top.iter().zip(&mask).map(|(s, m)| s * m).collect();
        assert_eq!(with.dense.x, want);
        assert_eq!(with.next_state().cells[1].s, *top);
        let without = net.forward(&params, &frame, &state, batch, Norm::Batch, None);
        assert_eq!(without.dense.x, *top);
        let ones = vec![1.0; mask.len()];
        let all_kept = net.forward(&params, &frame, &state, batch, Norm::Batch, Some(&ones));
        assert_eq!(all_kept.output(), without.output());
    }

    #[test]
    fn the_dense_part_has_the_dvs_constants_and_the_running_statistics_serve_evaluation() {
        let spec = tiny(0);
        let net = ConvNet::new(&spec, SpikeFn::Heaviside);
        let batch = 3;
        let mut rng = Rng::new(21);
        let p = random_params(&spec, &mut rng);
        let start = ConvNetState::uniform_start(&net, batch, &mut rng);
        assert!(start.dense.b.iter().chain(start.cells.iter().flat_map(|c| &c.b)).all(|&b| b == 0.5));
        assert_eq!(start.o, vec![0.0; batch * spec.classes]);
        let frame = randoms(&mut rng, net.frame_len(batch), 0.0, 2.0);
        let cache = net.forward(&p, &frame, &start, batch, Norm::Batch, None);
        // θ = 0.5 + 1.8·b' in the dense layer; gates σ(W·[d ; m] + c), no slope.
        for i in 0..cache.dense.theta.len() {
            assert!((cache.dense.theta[i] - (0.5 + 1.8 * cache.dense.next.b[i])).abs() < 1e-15);
            assert!((cache.dense.tau_m[i] - super::super::sigmoid(cache.dense.pre_m[i])).abs() < 1e-15);
        }
        let mut stats = Params::new();
        net.update_running(&mut stats, 2, &cache, batch);
        assert_eq!(stats.len(), 2 * 3 * spec.cells.len());
        for cell in &net.cells {
            // The mean moved from 0 by 0.1·μ (γ-independent: the statistics are of the conv output).
            let (mean, _) = super::super::batchnorm::stat_names(&cell.names.bn_x, 2);
            assert_eq!(stats[&mean].len(), cell.out_c);
        }
        let eval = net.forward(&p, &frame, &start, batch, Norm::Running { stats: &stats, t: 2 }, None);
        assert!(eval.output().iter().all(|v| v.is_finite()));
        for (e, c) in eval.cells.iter().zip(&cache.cells) {
            assert_ne!(e.xhat, c.xhat, "evaluation normalises with the running statistics");
        }
    }

    #[test]
    fn fptt_updates_on_the_conv_network_lower_the_loss_on_a_fixed_batch() {
        // The FPTT update is per-tensor algebra over a map by name: it runs on the conv network's
        // map as on the dense one. One-step FPTT with the step function and its surrogate, Adamax,
        // the DVS recipe's α = 0.1, β = 0.5, clip 1, from the same state and frame every time.
        use crate::reference::optim::{OptimState, UpdateSettings};
        use crate::settings::Optimizer;
        let spec = tiny(0);
        let net = ConvNet::new(&spec, SpikeFn::Heaviside);
        let batch = 3;
        let mut rng = Rng::new(5);
        let mut p = random_params(&spec, &mut rng);
        let state = ConvNetState::uniform_start(&net, batch, &mut rng);
        let frame = randoms(&mut rng, net.frame_len(batch), 0.0, 2.0);
        let targets = labels(batch, spec.classes);
        let ctx = LossContext::new(LossKind::Classification { aux: AuxTargets::Off }, &targets, spec.steps - 1, &[]);
        let settings = UpdateSettings { optimizer: Optimizer::Adamax, lr: 3e-2, clip: 1.0, alpha: 0.1, beta: 0.5 };
        let tau_m_o = p["tau_m_o"].clone();
        let mut optim = OptimState::new(p.clone());
        assert_eq!(optim.regulariser(&p, settings.alpha), 0.0);
        let first = net.step_loss(&p, &state, &frame, None, ctx);
        for n in 0..10 {
            let mask = net.dropout_mask(batch, 17, n);
            let (_, grads, _) = net.step_gradient(&p, &state, &frame, Some(&mask), ctx);
            optim.fptt_update(&mut p, &grads, settings);
        }
        assert_eq!(optim.updates, 10);
        let last = net.step_loss(&p, &state, &frame, None, ctx);
        assert!(last < first - 0.05, "ℓ {first} → {last} after 10 updates");
        // W̄ and λ moved with W, so the regulariser is no longer 0. tau_m_o, never read, has
        // gradient 0 and W = W̄, λ = 0 for it: g = 0 at every update and it stays where it was.
        assert!(optim.regulariser(&p, settings.alpha).abs() > 0.0);
        assert_eq!(p["tau_m_o"], tau_m_o);
        assert_eq!(optim.wbar["tau_m_o"], tau_m_o);
        assert_eq!(optim.lambda["tau_m_o"], vec![0.0; spec.classes]);
        assert!(p.values().flatten().all(|v| v.is_finite()));
    }
}
