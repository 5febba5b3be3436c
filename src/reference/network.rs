//! A whole network for one time step: the stack of LTC layers (layer k reads the data for k = 0,
//! else the new spikes `s'` of layer k−1 at the same step; its recurrence uses its own previous
//! spikes) and the readout on the top layer's spikes. Owns the one-step backward through the stack
//! (layer k−1's `ḡ_s` is layer k's `ḡ_x`, with `ḡ_m = ḡ_b = 0`), and the full one-step gradient of
//! `ℓ_t` with respect to every parameter for a given state and batch: the function the
//! finite-difference tests check.

use super::batchnorm::Norm;
use super::loss::{task_loss, LossContext};
use super::neuron::{self, LayerCache, LayerSpec, LayerState};
use super::readout::{self, ReadoutCache, ReadoutSpec};
use super::{Grads, Params, SpikeFn};
use crate::model::{ModelConfig, ParamLayout};
use crate::settings::InitialState;

/// A network's structure (no parameters: those are passed in, so that finite differences can
/// perturb a copy).
#[derive(Debug, Clone)]
pub struct Net {
    pub cfg: ModelConfig,
    pub layout: ParamLayout,
    pub layers: Vec<LayerSpec>,
    pub readout: ReadoutSpec,
    pub spike: SpikeFn,
}

/// The whole recurrent state: one [`LayerState`] per hidden layer and the readout `o` `[B, C]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetState {
    pub layers: Vec<LayerState>,
    pub o: Vec<f64>,
}

impl NetState {
    /// The start of a sequence (method §1): `m` from `init`, `s = 0`, `b = b0`, `o = 0`.
    ///
    /// Method §1 (1.17).
    pub fn start(cfg: &ModelConfig, init: &InitialState, batch: usize) -> Self {
        assert_eq!(init.membrane.len(), cfg.layers(), "one initial membrane per hidden layer");
        let layers = init
            .membrane
            .iter()
            .zip(&cfg.hidden)
            .map(|(m, &n)| {
                assert_eq!(m.len(), batch * n, "initial membrane is [B, N]");
                LayerState::start(super::to_f64(m))
            })
            .collect();
        NetState { layers, o: vec![0.0; batch * cfg.outputs] }
    }
}

/// One step's forward, kept for the backward.
#[derive(Debug, Clone)]
pub struct StepCache {
    pub layers: Vec<LayerCache>,
    pub readout: ReadoutCache,
}

impl StepCache {
    /// The state after this step (the next step's constant input under FPTT).
    pub fn next_state(&self) -> NetState {
        NetState { layers: self.layers.iter().map(|c| c.next.clone()).collect(), o: self.readout.o.clone() }
    }

    /// The readout `o'` `[B, C]`.
    pub fn output(&self) -> &[f64] {
        &self.readout.o
    }
}

impl Net {
    pub fn new(cfg: &ModelConfig, spike: SpikeFn) -> Self {
        cfg.validate().expect("reference: invalid model configuration");
        Net {
            cfg: cfg.clone(),
            layout: ParamLayout::new(cfg),
            layers: (0..cfg.layers()).map(|k| LayerSpec::of(cfg, k)).collect(),
            readout: ReadoutSpec::of(cfg),
            spike,
        }
    }

    /// One step forward from `state` with data `x` `[B, I]`.
    ///
    /// Method §1, layer by layer then the readout. GPU twins: the forward kernels of
    /// [`neuron::forward`] and [`readout::forward`], in the same order.
    pub fn forward(&self, p: &Params, x: &[f64], state: &NetState, batch: usize, norm: Norm) -> StepCache {
        let mut caches: Vec<LayerCache> = Vec::with_capacity(self.layers.len());
        for (k, spec) in self.layers.iter().enumerate() {
            let input: &[f64] = if k == 0 { x } else { &caches[k - 1].next.s };
            let c = neuron::forward(spec, p, input, &state.layers[k], batch, norm, self.spike);
            caches.push(c);
        }
        let s_top = &caches.last().unwrap().next.s;
        let ro = readout::forward(&self.readout, p, s_top, &state.o, batch, norm);
        StepCache { layers: caches, readout: ro }
    }

    /// One step backward from `ḡ_o'` `[B, C]`: the gradient of every parameter (frozen slopes too).
    ///
    /// Method §3, the readout then the layers from the top. GPU twins: the backward kernels of
    /// [`readout::backward`] and [`neuron::backward`], in the same order.
    pub fn backward(&self, p: &Params, cache: &StepCache, batch: usize, g_o: &[f64]) -> Grads {
        let (mut grads, mut g_s) = readout::backward(&self.readout, p, &cache.readout, batch, g_o);
        for k in (0..self.layers.len()).rev() {
            let (g, g_x) = neuron::backward(&self.layers[k], p, &cache.layers[k], batch, self.spike, &g_s, None, None);
            grads.extend(g);
            g_s = g_x;
        }
        for slot in &self.layout.slots {
            assert!(grads.contains_key(&slot.name), "reference: no gradient for {}", slot.name);
        }
        grads
    }

    /// `ℓ_t` for one step from `state` (batch-norm with this step's batch statistics), without the
    /// gradient: the function finite differences differentiate. `loss.t` is the step's index.
    pub fn step_loss(&self, p: &Params, state: &NetState, x: &[f64], loss: LossContext) -> f64 {
        let batch = state.o.len() / self.cfg.outputs;
        let cache = self.forward(p, x, state, batch, Norm::Batch);
        task_loss(cache.output(), batch, self.cfg.outputs, self.cfg.steps, loss).0
    }

    /// `ℓ_t` and its gradient with respect to every parameter, for one step from `state` (a
    /// constant) with data `x` `[B, I]`, batch norm in training mode (method §3, §4).
    pub fn step_gradient(&self, p: &Params, state: &NetState, x: &[f64], loss: LossContext) -> (f64, Grads) {
        let batch = state.o.len() / self.cfg.outputs;
        let cache = self.forward(p, x, state, batch, Norm::Batch);
        let (l, g_o) = task_loss(cache.output(), batch, self.cfg.outputs, self.cfg.steps, loss);
        (l, self.backward(p, &cache, batch, &g_o))
    }
}
