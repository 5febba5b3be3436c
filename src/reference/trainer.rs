//! [`ReferenceTrainer`]: training with FPTT (method §5), BPTT or e-prop (method §7), as [`LearningRule`]
//! says. Owns the
//! training state (W, W̄, λ, the optimizer moments, the batch-norm running statistics per step, the
//! auxiliary table `q`, the update counter) and the order of one update: the chunk's forward step
//! by step (batch statistics; running statistics of step t updated; task loss reading `q`; table
//! write), the backward through the chunk, the total loss with the current W/λ/W̄, then the FPTT
//! update (or, for BPTT, a plain clipped optimizer step). e-prop instead runs the sequence step by
//! step, advancing its eligibility traces, with a plain clipped optimizer step after every step or
//! once at the end of the sequence. With chunks of one step FPTT is the
//! online rule, truncation 1, in the same operations as before chunks existed. Converts from/to
//! the f32 [`TensorMap`] only at its boundary.

use super::batchnorm::{self, Norm};
use super::eprop::Eprop;
use super::loss::{task_loss, update_table, LossContext};
use super::network::{Net, NetState, StepCache};
use super::optim::{OptimState, UpdateSettings};
use super::{params_from_map, to_f32, to_f64, to_tensor, Params, SpikeFn};
use crate::model::{ModelConfig, StatLayout};
use crate::settings::{
    InitialState, LearningRule, LossKind, Optimizer, SequenceBatch, StepLoss, Targets, TrainingSettings,
};
use crate::tensor::{Tensor, TensorMap};

/// The CPU oracle of training: every number in f64; an FPTT update after every chunk of K steps,
/// or one plain update per sequence (BPTT).
#[derive(Debug, Clone)]
pub struct ReferenceTrainer {
    net: Net,
    settings: TrainingSettings,
    lr: f64,
    batch: usize,
    stat_layout: StatLayout,
    /// W (all parameters, frozen ones included).
    params: Params,
    /// W̄, λ, `exp_avg` (both optimizers) and `exp_avg_sq` (Adam) or `exp_inf` (Adamax) of the
    /// trainable tensors, and the update count.
    optim: OptimState,
    /// Batch-norm running statistics by name (`{bn}.running_mean_{t}` / `running_var_{t}`).
    stats: Params,
    /// The auxiliary table `[C, T, C]`.
    q: Vec<f64>,
    /// The e-prop traces (with [`LearningRule::Eprop`] only).
    eprop: Option<Eprop>,
    /// The state the last FPTT/BPTT sequence ended in, where [`Self::train_window`] continues
    /// (streams: the neuron state is carried from one window to the next).
    carried: Option<NetState>,
    /// The readout o' of every step of the last sequence or window, `[T, B, C]`.
    outputs: Vec<f64>,
}

impl ReferenceTrainer {
    /// `init` holds every parameter by checkpoint name (method §8), and optionally the batch-norm running statistics
    /// (missing ones start at mean 0, variance 1). W̄ = W, λ = 0, moments 0, `q` = 0, no updates yet.
    /// Panics with [`super::eprop::check`]'s message when e-prop is asked for a network it does not apply to.
    pub fn new(cfg: &ModelConfig, settings: &TrainingSettings, batch: usize, init: &TensorMap) -> Self {
        if let LearningRule::Fptt { chunk } = settings.rule {
            assert!(chunk >= 1, "reference: an FPTT chunk has at least one step");
        }
        let net = Net::new(cfg, SpikeFn::Heaviside);
        let eprop = match settings.rule {
            LearningRule::Eprop(e) => Some(Eprop::new(&net, e, batch).unwrap_or_else(|err| panic!("reference: {err}"))),
            _ => None,
        };
        let params = params_from_map(&net.layout, init);
        let trainable: Params = net.layout.trainable().map(|s| (s.name.clone(), params[&s.name].clone())).collect();
        let stat_layout = StatLayout::new(cfg);
        let stats: Params = stat_layout
            .slots
            .iter()
            .map(|slot| {
                let data = match init.get(&slot.name) {
                    Some(t) => {
                        assert_eq!(t.shape, slot.shape, "reference: shape of {}", slot.name);
                        to_f64(&t.data)
                    }
                    None => vec![if slot.name.contains("running_var") { 1.0 } else { 0.0 }; slot.len()],
                };
                (slot.name.clone(), data)
            })
            .collect();
        let c = cfg.outputs;
        ReferenceTrainer {
            settings: *settings,
            lr: settings.lr as f64,
            batch,
            stat_layout,
            params,
            optim: OptimState::new(trainable),
            stats,
            q: vec![0.0; c * cfg.steps * c],
            net,
            eprop,
            carried: None,
            outputs: Vec::new(),
        }
    }

    pub fn set_spike_fn(&mut self, f: SpikeFn) {
        self.net.spike = f;
    }

    pub fn set_lr(&mut self, lr: f32) {
        self.lr = lr as f64;
    }

    /// The network structure (for calling the lower-level functions on this trainer's parameters).
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The current parameters W, f64.
    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn updates(&self) -> u64 {
        self.optim.updates
    }

    /// The e-prop state (traces, feedback) under [`LearningRule::Eprop`].
    pub fn eprop(&self) -> Option<&Eprop> {
        self.eprop.as_ref()
    }

    /// The auxiliary table `q` `[C, T, C]`, f64.
    pub fn q(&self) -> &[f64] {
        &self.q
    }

    fn check_batch(&self, batch: &SequenceBatch) {
        assert_eq!(batch.batch, self.batch, "reference: batch size");
        assert_eq!(batch.steps, self.net.cfg.steps, "reference: sequence length");
        assert_eq!(batch.inputs_per_step, self.net.cfg.inputs, "reference: inputs per step");
    }

    /// One sequence of T steps, with an update after every chunk ([`LearningRule`]). Returns each
    /// step's task loss and total loss (see [`StepLoss`]: the latter with W, λ, W̄ as they were
    /// before the update of the step's chunk; under BPTT the task loss).
    pub fn train_sequence(&mut self, batch: &SequenceBatch, init: &InitialState) -> Vec<StepLoss> {
        self.train_prefix(batch, init, self.net.cfg.steps)
    }

    /// Like [`Self::train_sequence`] but stops after the first `steps` steps of the sequence, the
    /// last chunk cut short there (with chunks of one step: as many updates as steps, the
    /// fixtures' `after-step-1` / `after-step-2` states).
    pub fn train_prefix(&mut self, batch: &SequenceBatch, init: &InitialState, steps: usize) -> Vec<StepLoss> {
        self.check_batch(batch);
        let total_steps = self.net.cfg.steps;
        assert!(steps <= total_steps, "reference: a sequence has only {total_steps} steps");
        let state = NetState::start(&self.net.cfg, init, self.batch);
        self.train_from(batch, state, steps)
    }

    /// One window of a stream: like [`Self::train_sequence`], but from the state the previous
    /// window ended in (`init` only for the first window, or after a reset of the state). The GPU
    /// twin is `Engine::train_window`. FPTT and BPTT only.
    pub fn train_window(&mut self, batch: &SequenceBatch, init: Option<&InitialState>) -> Vec<StepLoss> {
        self.check_batch(batch);
        let state = match (init, self.carried.take()) {
            (Some(init), _) => NetState::start(&self.net.cfg, init, self.batch),
            (None, Some(state)) => state,
            (None, None) => panic!("reference: the first window of a stream needs an initial state"),
        };
        self.train_from(batch, state, self.net.cfg.steps)
    }

    /// The readout `o'` of every step of the last FPTT/BPTT sequence or window, `[T, B, C]` (the
    /// GPU twin: `Engine::window_predictions`).
    pub fn last_outputs(&self) -> &[f64] {
        &self.outputs
    }

    fn train_from(&mut self, batch: &SequenceBatch, mut state: NetState, steps: usize) -> Vec<StepLoss> {
        let mut losses = Vec::with_capacity(steps);
        self.outputs.clear();
        if let LearningRule::Eprop(e) = self.settings.rule {
            self.train_eprop(batch, &state, steps, e.update_every_step, &mut losses);
            return losses;
        }
        let mut t0 = 0;
        while t0 < steps {
            let len = match self.settings.rule {
                LearningRule::Fptt { chunk } => chunk.min(steps - t0),
                LearningRule::Bptt => steps - t0,
                LearningRule::Eprop(_) => unreachable!("e-prop runs step by step above"),
            };
            state = self.train_chunk(batch, &state, t0, len, &mut losses);
            t0 += len;
        }
        self.carried = Some(state);
        losses
    }

    /// Steps `t0 … t0+len−1` from `start` (a constant) and one update: each step's forward, running
    /// statistics, task loss and table write in forward order, exactly as the online rule does them
    /// (the table write of step t only touches row t, which no later step reads, so the losses are
    /// those of the chunk with `q` as it was at its start); then the backward through the chunk and
    /// the update. Appends each step's losses to `losses` and returns the state after the chunk
    /// (computed with the weights before the update: the next chunk's constant start).
    fn train_chunk(
        &mut self,
        batch: &SequenceBatch,
        start: &NetState,
        t0: usize,
        len: usize,
        losses: &mut Vec<StepLoss>,
    ) -> NetState {
        let (nb, nc, steps) = (self.batch, self.net.cfg.outputs, self.net.cfg.steps);
        let mut caches: Vec<StepCache> = Vec::with_capacity(len);
        let mut task_losses = Vec::with_capacity(len);
        let mut g_outputs = Vec::with_capacity(len);
        for t in t0..t0 + len {
            let x = to_f64(batch.step(t));
            let state = match caches.last() {
                None => start.clone(),
                Some(before) => before.next_state(),
            };
            // Forward with this step's batch statistics; PyTorch updates the running ones here.
            let cache = self.net.forward(&self.params, &x, &state, nb, Norm::Batch);
            if self.net.cfg.batch_norm {
                for (spec, c) in self.net.layers.iter().zip(&cache.layers) {
                    batchnorm::update_running(&mut self.stats, &spec.names.bn_a, t, c.bn_a.as_ref().unwrap(), nb);
                    batchnorm::update_running(&mut self.stats, &spec.names.bn_b, t, c.bn_b.as_ref().unwrap(), nb);
                }
                let ro = &self.net.readout;
                batchnorm::update_running(&mut self.stats, &ro.bn, t, cache.readout.bn.as_ref().unwrap(), nb);
            }
            // ℓ_t reads q[y_b, t] before this step's write.
            let (task, g_o) = task_loss(
                cache.output(),
                nb,
                nc,
                steps,
                LossContext::new(self.settings.loss, &batch.targets, t, &self.q),
            );
            // The table is kept up to date whatever the loss reads: the authors' code (and the
            // `bn-adamax` fixture, aux term off) writes it regardless, so uniform targets in the
            // first epochs leave a table ready for when it is switched on.
            if let (LossKind::Classification { .. }, Targets::Labels(labels)) = (self.settings.loss, &batch.targets) {
                update_table(&mut self.q, cache.output(), labels, nc, t, steps);
            }
            self.outputs.extend_from_slice(cache.output());
            caches.push(cache);
            task_losses.push(task);
            g_outputs.push(g_o);
        }
        // The gradient of Σ_t ℓ_t through the chunk (the start state is a constant).
        let (grads, _) = self.net.chunk_backward(&self.params, &caches, &g_outputs);
        match self.settings.rule {
            LearningRule::Fptt { .. } => {
                let regulariser = self.regulariser();
                self.fptt_update(&grads);
                losses.extend(
                    task_losses.iter().map(|&task| StepLoss { task_loss: task, total_loss: task + regulariser }),
                );
            }
            LearningRule::Bptt => {
                self.plain_update(&grads);
                losses.extend(task_losses.iter().map(|&task| StepLoss { task_loss: task, total_loss: task }));
            }
            LearningRule::Eprop(_) => unreachable!("e-prop does not run in chunks"),
        }
        caches[caches.len() - 1].next_state()
    }

    /// e-prop over steps `0 … steps−1` from `start`: per step the forward with the current W, the
    /// task loss and table write (as the other rules), then the traces advance and add the step's
    /// gradient; a plain clipped update after every step (the next step runs with the new W, the
    /// traces carry on) or once after the last step. The total loss is the task loss.
    fn train_eprop(
        &mut self,
        batch: &SequenceBatch,
        start: &NetState,
        steps: usize,
        update_every_step: bool,
        losses: &mut Vec<StepLoss>,
    ) {
        let (nb, nc, total_steps) = (self.batch, self.net.cfg.outputs, self.net.cfg.steps);
        let mut eprop = self.eprop.take().expect("e-prop state exists under LearningRule::Eprop");
        eprop.start_sequence();
        let mut state = start.clone();
        for t in 0..steps {
            let x = to_f64(batch.step(t));
            // No batch norm under e-prop (eprop::check), so no running statistics to update.
            let cache = self.net.forward(&self.params, &x, &state, nb, Norm::Batch);
            let loss = LossContext::new(self.settings.loss, &batch.targets, t, &self.q);
            let (task, g_o) = task_loss(cache.output(), nb, nc, total_steps, loss);
            if let (LossKind::Classification { .. }, Targets::Labels(labels)) = (self.settings.loss, &batch.targets) {
                update_table(&mut self.q, cache.output(), labels, nc, t, total_steps);
            }
            eprop.step(&self.net, &self.params, &cache, &g_o);
            if update_every_step {
                let grads = eprop.take_gradient(&self.net);
                self.plain_update(&grads);
            }
            losses.push(StepLoss { task_loss: task, total_loss: task });
            state = cache.next_state();
        }
        if !update_every_step && steps > 0 {
            let grads = eprop.take_gradient(&self.net);
            self.plain_update(&grads);
        }
        self.eprop = Some(eprop);
    }

    /// `−Σ⟨W, λ⟩ + α/2·Σ‖W − W̄‖²` over the trainable tensors, with the current W, λ, W̄.
    ///
    /// Method §5 (5.1).
    fn regulariser(&self) -> f64 {
        self.optim.regulariser(&self.params, self.settings.alpha as f64)
    }

    /// Method §5 (5.2)–(5.6): [`OptimState::fptt_update`] with this trainer's settings and rate.
    fn fptt_update(&mut self, grads: &Params) {
        self.optim.fptt_update(&mut self.params, grads, UpdateSettings::of(&self.settings, self.lr));
    }

    /// Method §5 (5.13): [`OptimState::plain_update`] (BPTT, e-prop).
    fn plain_update(&mut self, grads: &Params) {
        self.optim.plain_update(&mut self.params, grads, UpdateSettings::of(&self.settings, self.lr));
    }

    /// Forward only, batch norm in evaluation mode (the running statistics of step t), no update,
    /// `q` read but not written. Returns each step's task loss `ℓ_t` (same formula as in training)
    /// and the final readout `o'` `[B, C]`.
    pub fn evaluate_sequence(&self, batch: &SequenceBatch, init: &InitialState) -> (Vec<f64>, Vec<f32>) {
        self.evaluate_with(batch, init, false)
    }

    /// [`ReferenceTrainer::evaluate_sequence`] with batch norm on the batch's own statistics
    /// (`train.eval_batch_norm = "batch"`); the running statistics are not touched.
    pub fn evaluate_sequence_batch_statistics(
        &self,
        batch: &SequenceBatch,
        init: &InitialState,
    ) -> (Vec<f64>, Vec<f32>) {
        self.evaluate_with(batch, init, true)
    }

    fn evaluate_with(&self, batch: &SequenceBatch, init: &InitialState, batch_stats: bool) -> (Vec<f64>, Vec<f32>) {
        self.check_batch(batch);
        let (nb, nc, steps) = (self.batch, self.net.cfg.outputs, self.net.cfg.steps);
        let mut state = NetState::start(&self.net.cfg, init, nb);
        let mut losses = Vec::with_capacity(steps);
        for t in 0..steps {
            let x = to_f64(batch.step(t));
            let norm = if batch_stats { Norm::Batch } else { Norm::Running { stats: &self.stats, t } };
            let cache = self.net.forward(&self.params, &x, &state, nb, norm);
            let loss = LossContext::new(self.settings.loss, &batch.targets, t, &self.q);
            losses.push(task_loss(cache.output(), nb, nc, steps, loss).0);
            state = cache.next_state();
        }
        (losses, to_f32(&state.o))
    }

    /// The epoch-end reset: `W ← W̄` for every trainable tensor (λ, W̄, moments kept).
    ///
    /// Method §5 (5.9).
    pub fn reset_to_running_mean(&mut self) {
        for (k, wbar) in &self.optim.wbar {
            self.params.insert(k.clone(), wbar.clone());
        }
    }

    /// Everything, in the fixtures' names: every parameter `NAME`; for trainable ones also
    /// `NAME.wbar`, `NAME.lambda`, `NAME.exp_avg` and `NAME.exp_avg_sq` (Adam) or `NAME.exp_inf`
    /// (Adamax); the batch-norm running statistics; `q` `[C, T, C]`.
    pub fn state(&self) -> TensorMap {
        let mut map = TensorMap::new();
        let second = match self.settings.optimizer {
            Optimizer::Adam => "exp_avg_sq",
            Optimizer::Adamax => "exp_inf",
        };
        for slot in &self.net.layout.slots {
            let k = &slot.name;
            map.insert(k.clone(), to_tensor(&slot.shape, &self.params[k]));
            if self.net.layout.is_trainable(k) {
                let o = &self.optim;
                map.insert(format!("{k}.wbar"), to_tensor(&slot.shape, &o.wbar[k]));
                map.insert(format!("{k}.lambda"), to_tensor(&slot.shape, &o.lambda[k]));
                map.insert(format!("{k}.exp_avg"), to_tensor(&slot.shape, &o.moment1[k]));
                map.insert(format!("{k}.{second}"), to_tensor(&slot.shape, &o.moment2[k]));
            }
        }
        for slot in &self.stat_layout.slots {
            map.insert(slot.name.clone(), to_tensor(&slot.shape, &self.stats[&slot.name]));
        }
        let c = self.net.cfg.outputs;
        map.insert("q".into(), Tensor::new(vec![c, self.net.cfg.steps, c], to_f32(&self.q)));
        map
    }
}
