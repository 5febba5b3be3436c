//! Backpropagation through a chunk of K steps: chunked FPTT and BPTT (method §3, last paragraph;
//! method §5, BPTT). Owns the summed task loss `Σ_{t=t0}^{t0+K−1} ℓ_t` of a chunk that starts from a
//! given [`NetState`] and its gradient with respect to every parameter: the chunk's forward (one
//! [`StepCache`] per step, batch norm with each step's batch statistics like the one-step code),
//! then the backward from the last step to the first with the one-step local derivatives of
//! [`neuron::backward_through_state`] and [`readout::backward_through_state`], chained through
//! `m, s, b` of every layer and the readout `o`. A whole sequence (BPTT) is the chunk `t0 = 0`,
//! `K = T`.
//!
//! What is a constant here: the chunk's start state (no gradient flows into it during training;
//! [`Net::chunk_backward`] still returns the gradient on it so that tests can check the state
//! paths), and the auxiliary table `q` (read only; within one sequence step t reads only row t,
//! which only step t writes, after reading it, so the trainer's writes cannot change what the
//! chunk's later steps read).

use super::batchnorm::Norm;
use super::loss::{task_loss, LossContext};
use super::network::{Net, NetState, StepCache};
use super::neuron::{self, LayerState};
use super::readout;
use super::{add_grads, add_into, to_f64, Grads, Params};
use crate::settings::{LossKind, SequenceBatch};

/// The gradient on a [`NetState`], in a value of the same shape: per layer `ḡ` on `m`, `s`, `b` in
/// the fields of the same name, and `ḡ` on the readout `o`.
pub type StateGrad = NetState;

impl NetState {
    /// A state of the same shape with every element 0 (the gradient that flows into the last step
    /// of a chunk from beyond it).
    pub fn zeros_like(&self) -> Self {
        let zeros = |v: &[f64]| vec![0.0; v.len()];
        NetState {
            layers: self.layers.iter().map(|l| LayerState { m: zeros(&l.m), s: zeros(&l.s), b: zeros(&l.b) }).collect(),
            o: zeros(&self.o),
        }
    }
}

impl Net {
    /// The forward of a chunk: one step per element of `inputs` (each `[B, I]`) from `start`, batch
    /// norm with each step's batch statistics. Returns every step's cache, in step order.
    pub fn chunk_forward(&self, p: &Params, start: &NetState, inputs: &[Vec<f64>]) -> Vec<StepCache> {
        let batch = start.o.len() / self.cfg.outputs;
        let mut caches: Vec<StepCache> = Vec::with_capacity(inputs.len());
        for x in inputs {
            let cache = match caches.last() {
                None => self.forward(p, x, start, batch, Norm::Batch),
                Some(before) => self.forward(p, x, &before.next_state(), batch, Norm::Batch),
            };
            caches.push(cache);
        }
        caches
    }

    /// One step of a chunk's backward. `g_o` `[B, C]` is `∂ℓ_t/∂o'_t` (this step's own loss), `g_next`
    /// the gradient on this step's new state `(m', s', b')` per layer and `o'` that flows back from
    /// the later steps of the chunk (zeros at the last step). Returns this step's parameter
    /// gradients and the gradient on the state the step started from.
    ///
    /// The readout receives `ḡ_o' = g_o + g_next.o`; layer k receives `ḡ_s' = ḡ_x of layer k+1 (or
    /// ḡ_s_top) + g_next.layers[k].s`, `ḡ_m' = g_next.layers[k].m`, `ḡ_b' = g_next.layers[k].b`.
    ///
    /// Method §3 (3.20).
    pub fn step_backward_through_state(
        &self,
        p: &Params,
        cache: &StepCache,
        batch: usize,
        g_o: &[f64],
        g_next: &StateGrad,
    ) -> (Grads, StateGrad) {
        assert_eq!(g_next.layers.len(), self.layers.len(), "one state gradient per hidden layer");
        let mut g_o_total = g_o.to_vec();
        add_into(&mut g_o_total, &g_next.o);
        let ro = readout::backward_through_state(&self.readout, p, &cache.readout, batch, &g_o_total);
        let mut grads = ro.grads;
        // ḡ on this step's new spikes of the layer above (the readout's ḡ_s_top for the top layer).
        let mut g_from_above = ro.g_s_top;
        let mut g_prev_layers: Vec<LayerState> = Vec::with_capacity(self.layers.len());
        for k in (0..self.layers.len()).rev() {
            let g_later = &g_next.layers[k];
            let mut g_s = g_from_above;
            add_into(&mut g_s, &g_later.s);
            let lb = neuron::backward_through_state(
                &self.layers[k],
                p,
                &cache.layers[k],
                batch,
                self.spike,
                &g_s,
                Some(&g_later.m),
                Some(&g_later.b),
            );
            grads.extend(lb.grads);
            g_from_above = lb.g_x;
            g_prev_layers.push(lb.g_prev);
        }
        g_prev_layers.reverse();
        (grads, NetState { layers: g_prev_layers, o: ro.g_prev_o })
    }

    /// The backward of a chunk from its caches (step order) and each step's `∂ℓ_t/∂o'_t`
    /// (`g_outputs`, same order): the gradient of `Σ_t ℓ_t` with respect to every parameter (frozen
    /// slopes too), and the gradient on the chunk's start state (training treats the start as a
    /// constant and drops it; tests check it).
    ///
    /// Method §3 (3.20)–(3.21). GPU twins: the one-step backward kernels run from the chunk's last
    /// step to its first, after `shaders/zero_fill.wgsl` (the chunk's gradient accumulators); the
    /// next chunk starts from `shaders/copy_range.wgsl`'s copy of the final state.
    pub fn chunk_backward(&self, p: &Params, caches: &[StepCache], g_outputs: &[Vec<f64>]) -> (Grads, StateGrad) {
        assert!(!caches.is_empty(), "a chunk has at least one step");
        assert_eq!(caches.len(), g_outputs.len(), "one output gradient per step");
        let batch = caches[0].output().len() / self.cfg.outputs;
        let mut g_next = caches[caches.len() - 1].next_state().zeros_like();
        let mut total = Grads::new();
        for (cache, g_o) in caches.iter().zip(g_outputs).rev() {
            let (grads, g_prev) = self.step_backward_through_state(p, cache, batch, g_o, &g_next);
            add_grads(&mut total, grads);
            g_next = g_prev;
        }
        for slot in &self.layout.slots {
            assert!(total.contains_key(&slot.name), "reference: no gradient for {}", slot.name);
        }
        (total, g_next)
    }

    /// The chunk's forward and each step's `(ℓ_t, ∂ℓ_t/∂o'_t)` for `t = t0, t0+1, …` (`t0 = loss.t`).
    pub(super) fn chunk_forward_with_losses(
        &self,
        p: &Params,
        start: &NetState,
        inputs: &[Vec<f64>],
        loss: LossContext,
    ) -> (Vec<StepCache>, Vec<f64>, Vec<Vec<f64>>) {
        let (steps, classes, t0) = (self.cfg.steps, self.cfg.outputs, loss.t);
        assert!(!inputs.is_empty(), "a chunk has at least one step");
        assert!(t0 + inputs.len() <= steps, "chunk {t0}..{} runs past T = {steps}", t0 + inputs.len());
        let batch = start.o.len() / classes;
        let caches = self.chunk_forward(p, start, inputs);
        let (losses, g_outputs) =
            caches.iter().enumerate().map(|(j, c)| task_loss(c.output(), batch, classes, steps, loss.later(j))).unzip();
        (caches, losses, g_outputs)
    }

    /// `Σ_{t=t0}^{t0+K−1} ℓ_t` for the chunk of `K = inputs.len()` steps (data `[B, I]` each) from
    /// `start`, with per-step batch statistics, without the gradient: the function finite
    /// differences differentiate. `t0 = loss.t` is the absolute step index (ℓ_t's weights depend on
    /// `t` and `T = cfg.steps`); `loss.q` is the `[C, T, C]` table.
    pub fn chunk_loss(&self, p: &Params, start: &NetState, inputs: &[Vec<f64>], loss: LossContext) -> f64 {
        self.chunk_forward_with_losses(p, start, inputs, loss).1.iter().sum()
    }

    /// [`Self::chunk_loss`] and its gradient with respect to every parameter, through all `K`
    /// steps of the chunk (method §3, (3.16)–(3.21); the start state and `q` are constants).
    pub fn chunk_gradient(&self, p: &Params, start: &NetState, inputs: &[Vec<f64>], loss: LossContext) -> (f64, Grads) {
        let (caches, losses, g_outputs) = self.chunk_forward_with_losses(p, start, inputs, loss);
        let (grads, _) = self.chunk_backward(p, &caches, &g_outputs);
        (losses.iter().sum(), grads)
    }

    /// The BPTT loss `Σ_{t=0}^{T−1} ℓ_t` of a whole sequence from `start` (the chunk `t0 = 0`, `K = T`).
    ///
    /// Method §5 (5.13).
    pub fn sequence_loss(&self, p: &Params, start: &NetState, seq: &SequenceBatch, loss: LossKind, q: &[f64]) -> f64 {
        self.chunk_loss(p, start, &self.sequence_inputs(seq), LossContext::new(loss, &seq.targets, 0, q))
    }

    /// The BPTT loss of a whole sequence and its gradient through all `T` steps.
    ///
    /// Method §5 (5.13), §3 with K = T.
    pub fn sequence_gradient(
        &self,
        p: &Params,
        start: &NetState,
        seq: &SequenceBatch,
        loss: LossKind,
        q: &[f64],
    ) -> (f64, Grads) {
        self.chunk_gradient(p, start, &self.sequence_inputs(seq), LossContext::new(loss, &seq.targets, 0, q))
    }

    /// Every step's data `[B, I]` of a sequence, as f64.
    fn sequence_inputs(&self, seq: &SequenceBatch) -> Vec<Vec<f64>> {
        assert_eq!(seq.steps, self.cfg.steps, "reference: sequence length");
        assert_eq!(seq.inputs_per_step, self.cfg.inputs, "reference: inputs per step");
        (0..seq.steps).map(|t| to_f64(seq.step(t))).collect()
    }
}
