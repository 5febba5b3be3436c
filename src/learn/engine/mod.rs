//! The training engine: GPU buffers for parameters, gradients, optimizer state (`W̄`, `λ`,
//! moments) and the work arena; the learning rule's schedule and the evaluation schedule; one
//! sequence in, its per-step metrics out (one read). Uploads live in `upload.rs`, named state in
//! and out in `snapshot.rs`.

mod fit;
mod snapshot;
mod upload;

pub use fit::{check_fits, engine_buffers, host_available_bytes, SizeLimits};

use super::kernel_args::*;
use super::plan::WorkPlan;
use super::planner::{is_classification, Planner, StepView};
use super::schedule::{split_partials_len, tape_slots, Schedule};
use crate::gpu::{
    ArgArena, ArgBuffer, Dispatch, GpuBuffer, GpuContext, GpuError, KernelProfiler, KernelTable, KernelTime,
    MemoryLedger, ARG_SLOT,
};
use crate::model::{ModelConfig, ModelError, ParamLayout, StatLayout};
use crate::settings::{
    random_feedback, AuxTargets, EpropSettings, Feedback, InitialState, LearningRule, LossKind, SequenceBatch,
    TrainingSettings,
};
use crate::tensor::TensorMap;
use std::rc::Rc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Shape(String),
    #[error("training diverged at update {update}: the loss of time step {step} is {loss}")]
    Diverged { update: u64, step: usize, loss: f32 },
}

/// Where a replica's training diverged: the update whose step gave a non-finite loss. The
/// replica is frozen from then on (no update touches it) while the others go on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Divergence {
    pub update: u64,
    pub step: usize,
    pub loss: f32,
}

impl From<Divergence> for EngineError {
    fn from(d: Divergence) -> Self {
        EngineError::Diverged { update: d.update, step: d.step, loss: d.loss }
    }
}

/// The scalar hyperparameters in which replicas stepped together may differ (everything else,
/// shapes, rule, optimizer and its betas, schedule, is the engine's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaHyper {
    pub lr: f32,
    pub alpha: f32,
    pub beta: f32,
    pub clip: f32,
}

impl ReplicaHyper {
    /// The settings' own values.
    pub fn of(settings: &TrainingSettings) -> Self {
        ReplicaHyper { lr: settings.lr, alpha: settings.alpha, beta: settings.beta, clip: settings.clip }
    }
}

/// What one sequence gave each replica: its metrics, or where it diverged (now or earlier).
pub type ReplicaOutcome = Result<SequenceMetrics, Divergence>;

/// What one sequence produced, per time step (read once, at the sequence's end).
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceMetrics {
    /// `ℓ_t` summed over the valid samples' shares (the batch loss of step t).
    pub step_loss: Vec<f32>,
    /// Samples whose argmax at step t is their label.
    pub step_correct: Vec<f32>,
    /// Σ over samples and outputs of (o' − y)² at step t (regression).
    pub step_sqerr: Vec<f32>,
    /// Spikes of all hidden layers at step t.
    pub step_spikes: Vec<f32>,
    /// Samples that counted.
    pub samples: usize,
}

impl SequenceMetrics {
    pub fn loss(&self) -> f64 {
        self.step_loss.iter().map(|&x| x as f64).sum()
    }

    /// Correct predictions at the last step (method §4: the prediction is the last step's argmax).
    pub fn correct(&self) -> usize {
        self.step_correct.last().copied().unwrap_or(0.0) as usize
    }

    /// Σ (o' − y)² at the last step, over samples and outputs.
    pub fn last_sqerr(&self) -> f64 {
        self.step_sqerr.last().copied().unwrap_or(0.0) as f64
    }

    pub fn spikes(&self) -> f64 {
        self.step_spikes.iter().map(|&x| x as f64).sum()
    }
}

pub struct Engine {
    ctx: Rc<GpuContext>,
    cfg: ModelConfig,
    settings: TrainingSettings,
    batch: usize,
    layout: ParamLayout,
    stats: StatLayout,
    plan: WorkPlan,
    kernels: KernelTable,
    ledger: MemoryLedger,
    params: GpuBuffer,
    grad: GpuBuffer,
    opt: GpuBuffer,
    work: GpuBuffer,
    steps_buffer: ArgBuffer,
    _args_buffer: ArgBuffer,
    storage_group: wgpu::BindGroup,
    argument_group: wgpu::BindGroup,
    /// How the learning rule trains: its dispatch lists and their order.
    schedule: Schedule,
    /// Evaluation, per state parity: the one-step forward and loss, whatever the rule.
    eval_schedule: [Vec<Dispatch>; 2],
    /// The state the last sequence ended in.
    last_state: usize,
    updates: u64,
    /// Steps run by the last sequence.
    last_run: usize,
    profiler: Option<KernelProfiler>,
    /// FPTT sequence engines only: where `W` waits while an evaluation runs on `W̄` (allocated with the engine, so
    /// the GPU bytes do not change at the first evaluation).
    stash: Option<GpuBuffer>,
    /// Whether `W̄` currently sits in the parameters (and `W` in `stash`).
    running_mean_loaded: bool,
    /// Evaluations normalise with each batch's own statistics instead of the running ones.
    eval_batch_stats: bool,
    /// A stream engine ([`Engine::new_stream`]): targets at every step, loss weight 1, the state
    /// carried from one window to the next.
    per_step_targets: bool,
    /// Per state slot p, the dispatch that copies state p to state 0 (empty for p = 0): where a
    /// stream window continues from the slot the last one ended in.
    carry: Vec<Vec<Dispatch>>,
    /// Models stepped together (the z of every dispatch); replica r's params and grad start at
    /// `r·layout.total_len`, its opt at `r·4·trainable_len`, its work at `r·plan.arena.len()`.
    replicas: usize,
    hypers: Vec<ReplicaHyper>,
    /// Per replica, where it diverged (it is frozen on the GPU since).
    divergence: Vec<Option<Divergence>>,
    /// Per replica, the seed its conv network's dropout masks derive from (the run's seed).
    dropout_seeds: Vec<u64>,
}

impl Engine {
    /// An engine for `cfg` training batches of `batch` sequences, starting from `init` (method
    /// names; running statistics optional). `W̄ = W`, `λ = 0`, moments 0, `q = 0`.
    pub fn new(
        ctx: Rc<GpuContext>,
        cfg: &ModelConfig,
        settings: &TrainingSettings,
        batch: usize,
        init: &TensorMap,
    ) -> Result<Self, EngineError> {
        Self::build(ctx, cfg, settings, batch, &[(init, ReplicaHyper::of(settings))], false)
    }

    /// `inits.len()` models of one shape stepped together in one set of dispatches (the replica
    /// index in each dispatch's z), each from its own initial state and with its own scalar
    /// hyperparameters (`settings`' own lr, α, β and clip are not used). Each replica trains
    /// exactly, bit for bit, as an engine of its own with its hyperparameters would.
    pub fn with_replicas(
        ctx: Rc<GpuContext>,
        cfg: &ModelConfig,
        settings: &TrainingSettings,
        batch: usize,
        inits: &[(&TensorMap, ReplicaHyper)],
    ) -> Result<Self, EngineError> {
        if inits.is_empty() {
            return Err(EngineError::Shape("an engine needs at least one replica".into()));
        }
        Self::build(ctx, cfg, settings, batch, inits, false)
    }

    /// An engine for endless streams cut into windows of `cfg.steps` steps
    /// ([`Engine::train_window`]): every step has its own target (`Targets::StepValues` /
    /// `StepLabels`) and a loss of weight 1, and each window continues from the state the last one
    /// ended in. FPTT only (its W̄ and λ carry on as the stream does); no batch norm (its
    /// statistics are per step of a sequence, and a stream has no sequence).
    pub fn new_stream(
        ctx: Rc<GpuContext>,
        cfg: &ModelConfig,
        settings: &TrainingSettings,
        batch: usize,
        init: &TensorMap,
    ) -> Result<Self, EngineError> {
        let init = &[(init, ReplicaHyper::of(settings))];
        if !matches!(settings.rule, LearningRule::Fptt { .. }) {
            return Err(EngineError::Shape(
                "a stream trains with FPTT (train.rule = \"fptt\"): BPTT and e-prop restart with every sequence".into(),
            ));
        }
        if cfg.batch_norm || cfg.conv.is_some() {
            return Err(EngineError::Shape(
                "a stream cannot use batch norm (nor conv cells, which normalise): its running statistics are \
                 kept per step of a sequence"
                    .into(),
            ));
        }
        Self::build(ctx, cfg, settings, batch, init, true)
    }

    fn build(
        ctx: Rc<GpuContext>,
        cfg: &ModelConfig,
        settings: &TrainingSettings,
        batch: usize,
        inits: &[(&TensorMap, ReplicaHyper)],
        per_step_targets: bool,
    ) -> Result<Self, EngineError> {
        cfg.validate()?;
        if batch == 0 {
            return Err(EngineError::Shape("batch size must be at least 1".into()));
        }
        let replicas = inits.len();
        // Every buffer against the adapter's limits, before any is allocated (callers that build
        // `init` themselves check earlier, before initialising; this is cheap).
        check_fits(&SizeLimits { host_available: None, ..SizeLimits::of(&ctx) }, cfg, settings, batch, replicas)?;
        if cfg.batch_norm && batch < 2 {
            return Err(EngineError::Shape(
                "batch norm needs a batch of at least 2 (it normalises over the batch)".into(),
            ));
        }
        let slots = tape_slots(cfg, settings)?;
        let eprop = match settings.rule {
            LearningRule::Eprop(es) => Some(es),
            _ => None,
        };
        let layout = ParamLayout::new(cfg);
        let stats = StatLayout::new(cfg);
        let kernels = KernelTable::new(&ctx);
        let plan_with = |split_len| {
            let classification = is_classification(settings.loss);
            WorkPlan::new(cfg, batch, classification, slots, eprop.as_ref(), split_len, per_step_targets)
        };
        let mut plan = plan_with(0);
        let split_len = {
            let planner =
                Planner { kernels: &kernels, cfg, settings, batch, layout: &layout, stats: &stats, plan: &plan };
            split_partials_len(&planner, settings)
        };
        if split_len > 0 {
            plan = plan_with(split_len);
        }
        let ledger = MemoryLedger::default();
        let params = GpuBuffer::storage(&ctx, &ledger, "params", replicas * layout.total_len)?;
        let grad = GpuBuffer::storage(&ctx, &ledger, "grad", replicas * layout.total_len)?;
        let opt = GpuBuffer::storage(&ctx, &ledger, "opt: wbar, lambda, moments", replicas * 4 * layout.trainable_len)?;
        let work = GpuBuffer::storage(&ctx, &ledger, "work", replicas * plan.arena.len())?;
        // Streams are never evaluated, so they keep no stash.
        let stash = match settings.rule {
            LearningRule::Fptt { .. } if !per_step_targets => {
                Some(GpuBuffer::storage(&ctx, &ledger, "W while W̄ is evaluated", replicas * layout.trainable_len)?)
            }
            _ => None,
        };

        let mut arena = ArgArena::default();
        let planner = Planner { kernels: &kernels, cfg, settings, batch, layout: &layout, stats: &stats, plan: &plan };
        let mut eval_step = |p: usize| planner.step(&mut arena, &StepView::one_step(&plan, p), false).forward;
        let eval_schedule = [eval_step(0), eval_step(1)];
        let schedule = Schedule::build(&planner, &mut arena, settings);
        let carry = (0..plan.state.len())
            .map(|p| {
                let (from, to) = (&plan.state[p], &plan.state[0]);
                let copy = RangeArgs { len: to.len, src: from.m, dst: to.m, grad_len: 0 };
                if p == 0 {
                    vec![]
                } else {
                    vec![kernels.over("copy_range", arena.push(&copy), to.len as usize)]
                }
            })
            .collect();
        let args_buffer = arena.upload(&ctx, &ledger, "dispatch args");
        let mut steps_arena = ArgArena::default();
        for _ in 0..2 * cfg.steps {
            steps_arena.push(&StepInfo::default());
        }
        let steps_buffer = steps_arena.upload(&ctx, &ledger, "step info");
        let storage_group = kernels.storage_bind_group(&ctx, "engine storage", [&params, &grad, &opt, &work]);
        let argument_group = kernels.argument_bind_group(&ctx, "engine arguments", &args_buffer, &steps_buffer);

        let mut engine = Engine {
            ctx,
            cfg: cfg.clone(),
            settings: *settings,
            batch,
            layout,
            stats,
            plan,
            kernels,
            ledger,
            params,
            grad,
            opt,
            work,
            steps_buffer,
            _args_buffer: args_buffer,
            storage_group,
            argument_group,
            schedule,
            eval_schedule,
            last_state: 0,
            updates: 0,
            last_run: 0,
            profiler: None,
            stash,
            running_mean_loaded: false,
            eval_batch_stats: false,
            per_step_targets,
            carry,
            replicas,
            hypers: inits.iter().map(|(_, h)| *h).collect(),
            divergence: vec![None; replicas],
            dropout_seeds: vec![0; replicas],
        };
        // (offset, per-sample size) of every state block: the conv cells', then the layers'.
        let mut table: Vec<f32> = Vec::new();
        let mut offset = 0;
        for n in engine.cfg.state_blocks() {
            table.extend([f32::from_bits(offset as u32), f32::from_bits(n as u32)]);
            offset += batch * n;
        }
        for r in 0..replicas {
            let base = engine.work_base(r);
            engine.work.write(&engine.ctx, base + engine.plan.spike_layers as usize, &table);
            if let (Some(region), Some(EpropSettings { feedback: Feedback::Random { seed }, .. })) =
                (engine.plan.eprop.as_ref(), eprop)
            {
                let b: Vec<f32> =
                    random_feedback(seed, cfg.outputs, cfg.hidden[0]).into_iter().map(|v| v as f32).collect();
                engine.work.write(&engine.ctx, base + region.feedback as usize, &b);
            }
        }
        for (r, (init, _)) in inits.iter().enumerate() {
            engine.load_replica_state(r, init)?;
        }
        Ok(engine)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Bytes of every GPU buffer this engine holds (all replicas).
    pub fn gpu_bytes(&self) -> u64 {
        self.ledger.bytes()
    }

    /// The bytes one replica would hold as an engine of its own: its share of the storage
    /// buffers (R copies each) plus the dispatch arguments and step infos the replicas share.
    pub fn gpu_bytes_per_replica(&self) -> u64 {
        let shared = self._args_buffer.buffer.size() + self.steps_buffer.buffer.size();
        (self.ledger.bytes() - shared) / self.replicas as u64 + shared
    }

    /// The matrix-product tile shape the kernels were built with (chosen per adapter).
    pub fn matmul_tiling(&self) -> crate::gpu::MatmulTiling {
        self.kernels.tiling()
    }

    /// Whether the reductions run on subgroup operations ([`KernelTable::subgroup_reductions`]).
    pub fn subgroup_reductions(&self) -> bool {
        self.kernels.subgroup_reductions()
    }

    /// Kernel launches per training time step (independent of N and B; with chunks, the chunk's
    /// launches over its length, rounded up).
    pub fn dispatches_per_step(&self) -> usize {
        self.schedule.dispatches_per_step()
    }

    /// Time steps per parameter update: 1 for one-step FPTT, K for chunks of K, T for BPTT.
    pub fn steps_per_update(&self) -> usize {
        self.schedule.steps_per_update(self.cfg.steps)
    }

    /// Bytes of the GPU buffers that hold what the learning rule keeps (parameters, gradients,
    /// optimizer state, states, tape, scratch, dispatch arguments): everything but the sequence's
    /// own data (inputs, per-step step information, q, per-step statistics and metrics), which
    /// every rule holds alike.
    pub fn learning_bytes(&self) -> u64 {
        let step_infos = (2 * self.cfg.steps * ARG_SLOT) as u64;
        self.ledger.bytes() - step_infos - 4 * (self.replicas * self.plan.sequence_data_len()) as u64
    }

    /// Names of the kernels of one training step, in launch order, for rules that repeat one
    /// list per step (empty when the engine trains in chunks).
    pub fn step_kernels(&self) -> Vec<&'static str> {
        let list = self.schedule.step_list().unwrap_or_default();
        list.iter().map(|d| self.kernels.name(d.kernel)).collect()
    }

    /// Time every dispatch with GPU timestamps from now on. Returns false (and changes nothing)
    /// when the adapter cannot write timestamps inside a compute pass.
    pub fn enable_profiling(&mut self) -> bool {
        if self.profiler.is_none() {
            self.profiler = KernelProfiler::new(&self.ctx, self.kernels.len());
        }
        self.profiler.is_some()
    }

    /// Per-kernel GPU time so far (empty unless profiling is on), busiest first, and the number
    /// of dispatches that went unmeasured (past the query set's capacity in one submission).
    pub fn kernel_times(&self) -> (Vec<KernelTime>, u64) {
        match &self.profiler {
            Some(p) => (p.table(self.kernels.names()), p.unmeasured),
            None => (Vec::new(), 0),
        }
    }

    pub fn updates(&self) -> u64 {
        self.updates
    }

    pub fn set_updates(&mut self, n: u64) {
        self.updates = n;
    }

    /// The learning rate of replica 0 (the engine's, with one replica).
    pub fn lr(&self) -> f32 {
        self.hypers[0].lr
    }

    /// Set every replica's learning rate to `lr` (a schedule's value for the next sequences).
    pub fn set_lr(&mut self, lr: f32) {
        self.hypers.iter_mut().for_each(|h| h.lr = lr);
    }

    /// Set replica r's learning rate (its own schedule's value).
    pub fn set_replica_lr(&mut self, r: usize, lr: f32) {
        self.hypers[r].lr = lr;
    }

    /// The seed replica r's dropout masks derive from (a conv network's; 0 until set). With the
    /// update count it fixes every mask, so a resumed run drops what the uninterrupted one would.
    pub fn set_dropout_seed(&mut self, r: usize, seed: u64) {
        self.dropout_seeds[r] = seed;
    }

    pub fn settings(&self) -> &TrainingSettings {
        &self.settings
    }

    /// Which statistics batch norm uses in `evaluate_sequence`: the running statistics of each
    /// step (false, the method), or each evaluated batch's own, over its valid samples (true; the
    /// running statistics are neither used nor changed).
    pub fn set_evaluation_batch_statistics(&mut self, on: bool) {
        self.eval_batch_stats = on;
    }

    /// Switch the auxiliary targets (e.g. uniform for the first epochs, then the table).
    pub fn set_aux_targets(&mut self, aux: AuxTargets) {
        if let LossKind::Classification { .. } = self.settings.loss {
            self.settings.loss = LossKind::Classification { aux };
        }
    }
    /// Models stepped together by every dispatch.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Replica r's scalar hyperparameters.
    pub fn replica_hyper(&self, r: usize) -> ReplicaHyper {
        self.hypers[r]
    }

    /// Where replica r diverged, if it did (it is frozen since).
    pub fn divergence(&self, r: usize) -> Option<Divergence> {
        self.divergence[r]
    }

    /// Where replica r's work arena starts in the work buffer.
    fn work_base(&self, r: usize) -> usize {
        r * self.plan.arena.len()
    }

    fn params_base(&self, r: usize) -> usize {
        r * self.layout.total_len
    }

    fn opt_base(&self, r: usize) -> usize {
        r * 4 * self.layout.trainable_len
    }

    /// Write replica r's hyperparameters where the update reads them: α, β, clip, whether it is
    /// frozen (diverged), and the step size of every step of the next sequence from its own
    /// learning rate, so that it steps exactly as it would alone.
    fn write_hyper(&self, r: usize) {
        let h = &self.hypers[r];
        let mut v = vec![0.0f32; HYPER_STEP_SIZES];
        v[HYPER_ALPHA] = h.alpha;
        v[HYPER_BETA] = h.beta;
        v[HYPER_CLIP] = h.clip;
        v[HYPER_FROZEN] = if self.divergence[r].is_some() { 1.0 } else { 0.0 };
        v.extend(self.step_sizes(h.lr));
        self.work.write(&self.ctx, self.work_base(r) + self.plan.hyper as usize, &v);
    }

    /// One sequence (or stream window) per replica from `inits`, or, with `None`, from the state
    /// the last one ended in. Every replica gets its own batch (the same one may be passed for
    /// all); the per-step metrics of all of them come back in one read.
    fn run_sequence(
        &mut self,
        batches: &[&SequenceBatch],
        inits: Option<&[&InitialState]>,
        training: bool,
        limit: usize,
    ) -> Result<Vec<ReplicaOutcome>, EngineError> {
        if batches.len() != self.replicas || inits.is_some_and(|i| i.len() != self.replicas) {
            return Err(EngineError::Shape(format!(
                "{} batches and {} initial states for an engine of {} replicas",
                batches.len(),
                inits.map_or(0, |i| i.len()),
                self.replicas
            )));
        }
        let valid = batches[0].batch;
        for batch in batches {
            self.check_batch(batch, training)?;
            if batch.batch != valid {
                return Err(EngineError::Shape(format!(
                    "replicas run batches of one size: {} and {} sequences",
                    valid, batch.batch
                )));
            }
        }
        if training {
            self.refuse_while_running_mean_loaded("training")?;
        }
        for (r, batch) in batches.iter().enumerate() {
            self.upload_sequence(r, batch, inits.map(|i| i[r]))?;
            self.write_hyper(r);
            if training {
                self.write_dropout_masks(r);
            }
        }
        let t_len = self.cfg.steps;
        let run = limit.min(t_len);
        let infos = self.step_infos(valid, training);
        let base_slot = if training { 0 } else { t_len };
        let mut bytes = Vec::with_capacity(t_len * ARG_SLOT);
        for info in &infos {
            let start = bytes.len();
            bytes.extend_from_slice(bytemuck::bytes_of(info));
            bytes.resize(start + ARG_SLOT, 0);
        }
        self.ctx.queue.write_buffer(&self.steps_buffer.buffer, (base_slot * ARG_SLOT) as u64, &bytes);

        let mut encoder = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some(if training { "train sequence" } else { "evaluate sequence" }),
        });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(if training { "fptt steps" } else { "forward steps" }),
                timestamp_writes: None,
            });
            pass.set_bind_group(0, &self.storage_group, &[]);
            let at = |t: usize| ((base_slot + t) * ARG_SLOT) as u32;
            let (kernels, group, profiler) = (&self.kernels, &self.argument_group, &mut self.profiler);
            let replicas = self.replicas as u32;
            let mut record = |list: &[Dispatch], step: usize| {
                kernels.record(&mut pass, group, list, at(step), replicas, profiler.as_mut())
            };
            if inits.is_none() && self.last_state != 0 {
                // Continue a stream: the last window's final state becomes state 0, on the GPU
                // (copy_range: wgpu copies no buffer onto itself), with no trip through the host.
                record(&self.carry[self.last_state], 0);
            }
            self.last_state = if training {
                self.schedule.record(run, record)
            } else {
                for t in 0..run {
                    record(&self.eval_schedule[t % 2], t);
                }
                run % 2
            };
        }
        if let Some(p) = &self.profiler {
            p.resolve(&mut encoder);
        }
        self.ctx.queue.submit([encoder.finish()]);
        if let Some(p) = &mut self.profiler {
            p.collect(&self.ctx)?;
        }
        let ranges: Vec<(usize, usize)> =
            (0..self.replicas).map(|r| (self.work_base(r) + self.plan.metrics as usize, 4 * t_len)).collect();
        let raws = self.work.read_ranges(&self.ctx, &ranges)?;
        self.last_run = run;
        let per_update = self.steps_per_update();
        let mut outcomes = Vec::with_capacity(self.replicas);
        for (r, raw) in raws.into_iter().enumerate() {
            let metrics = SequenceMetrics {
                step_loss: raw[..run].to_vec(),
                step_correct: raw[t_len..t_len + run].to_vec(),
                step_sqerr: raw[2 * t_len..2 * t_len + run].to_vec(),
                step_spikes: raw[3 * t_len..3 * t_len + run].to_vec(),
                samples: valid,
            };
            if let Some(d) = self.divergence[r] {
                outcomes.push(Err(d));
                continue;
            }
            if training {
                if let Some((step, &loss)) = metrics.step_loss.iter().enumerate().find(|(_, l)| !l.is_finite()) {
                    let d = Divergence { update: self.updates + (step / per_update) as u64 + 1, step, loss };
                    // Frozen from the next update on: its W, W̄, λ and moments stay as they are.
                    self.divergence[r] = Some(d);
                    self.write_hyper(r);
                    outcomes.push(Err(d));
                    continue;
                }
            }
            outcomes.push(Ok(metrics));
        }
        if training {
            self.updates += run.div_ceil(per_update) as u64;
        }
        Ok(outcomes)
    }

    /// The one-replica case: its metrics, or its divergence as an error.
    fn run_single(
        &mut self,
        batch: &SequenceBatch,
        init: Option<&InitialState>,
        training: bool,
        limit: usize,
    ) -> Result<SequenceMetrics, EngineError> {
        if self.replicas != 1 {
            return Err(EngineError::Shape(format!(
                "this engine steps {} replicas: use train_replicas / evaluate_replicas",
                self.replicas
            )));
        }
        let inits = init.map(|i| [i]);
        let mut out = self.run_sequence(&[batch], inits.as_ref().map(|i| &i[..]), training, limit)?;
        Ok(out.pop().expect("one outcome per replica")?)
    }

    /// One sequence per replica (batch r and initial state r for replica r), each with its
    /// updates; one host read at the end. A replica whose loss turns non-finite is frozen and
    /// reported as diverged, then and at every later call; the others go on.
    pub fn train_replicas(
        &mut self,
        batches: &[&SequenceBatch],
        inits: &[&InitialState],
    ) -> Result<Vec<ReplicaOutcome>, EngineError> {
        self.run_sequence(batches, Some(inits), true, usize::MAX)
    }

    /// Forward only, every replica on its own batch (pass one batch R times to evaluate all on
    /// the same data).
    pub fn evaluate_replicas(
        &mut self,
        batches: &[&SequenceBatch],
        inits: &[&InitialState],
    ) -> Result<Vec<ReplicaOutcome>, EngineError> {
        self.run_sequence(batches, Some(inits), false, usize::MAX)
    }

    /// One sequence of T steps with an FPTT update after every step; one host read at the end.
    pub fn train_sequence(
        &mut self,
        batch: &SequenceBatch,
        init: &InitialState,
    ) -> Result<SequenceMetrics, EngineError> {
        self.run_single(batch, Some(init), true, usize::MAX)
    }

    /// The first `steps` steps of a sequence only, each with its update (tests compare the
    /// trajectory after 1, 2, … updates).
    pub fn train_prefix(
        &mut self,
        batch: &SequenceBatch,
        init: &InitialState,
        steps: usize,
    ) -> Result<SequenceMetrics, EngineError> {
        self.run_single(batch, Some(init), true, steps)
    }

    /// Forward only (batch norm on running statistics, no update, q untouched). A batch smaller
    /// than the engine's is padded; only its samples count.
    pub fn evaluate_sequence(
        &mut self,
        batch: &SequenceBatch,
        init: &InitialState,
    ) -> Result<SequenceMetrics, EngineError> {
        self.run_single(batch, Some(init), false, usize::MAX)
    }

    /// One window of a stream (an engine from [`Engine::new_stream`]): `cfg.steps` steps with
    /// their per-step targets and updates, from `init` (the first window, or a reset of the
    /// state) or, with `None`, from the state the previous window ended in (a copy on the GPU).
    /// Its metrics are read once, at the window's end.
    pub fn train_window(
        &mut self,
        batch: &SequenceBatch,
        init: Option<&InitialState>,
    ) -> Result<SequenceMetrics, EngineError> {
        if !self.per_step_targets {
            return Err(EngineError::Shape("train_window needs an engine built with Engine::new_stream".into()));
        }
        self.run_single(batch, init, true, usize::MAX)
    }

    /// The readout `o'` of every step of the last stream window, `[T, B, C]` (one read).
    pub fn window_predictions(&self) -> Result<Vec<f32>, EngineError> {
        if self.plan.predictions == NONE {
            return Err(EngineError::Shape("predictions are kept by stream engines only (Engine::new_stream)".into()));
        }
        let len = self.cfg.steps * self.batch * self.cfg.outputs;
        Ok(self.work.read(&self.ctx, self.plan.predictions as usize, len)?)
    }

    /// The neuron and readout state a stream continues from (`m, s, b` of every layer, then `o`;
    /// `WorkPlan::state`'s order), for checkpoints: one read.
    pub fn carried_state(&self) -> Result<Vec<f32>, EngineError> {
        let from = &self.plan.state[self.last_state];
        Ok(self.work.read(&self.ctx, from.m as usize, from.len as usize)?)
    }

    /// Restore a state saved by [`Engine::carried_state`]: the next `train_window(…, None)`
    /// continues from it.
    pub fn load_carried_state(&mut self, state: &[f32]) -> Result<(), EngineError> {
        let to = &self.plan.state[0];
        if state.len() != to.len as usize {
            return Err(EngineError::Shape(format!(
                "a carried state of {} values; this engine's state holds {}",
                state.len(),
                to.len
            )));
        }
        self.work.write(&self.ctx, to.m as usize, state);
        self.last_state = 0;
        Ok(())
    }

    /// The readout `o'` after the last sequence's final step, `[B, C]`.
    pub fn last_output(&self) -> Result<Vec<f32>, EngineError> {
        let o = self.plan.state[self.last_state].o as usize;
        Ok(self.work.read(&self.ctx, o, self.batch * self.cfg.outputs)?)
    }

    /// The epoch-end reset `W ← W̄` (λ, W̄ and the moments are kept).
    pub fn reset_to_running_mean(&mut self) -> Result<(), EngineError> {
        self.refuse_while_running_mean_loaded("the reset W ← W̄")?;
        self.copy_trainable([(&self.opt, &self.params)], "reset W to W̄")
    }

    /// Put `W̄` in the parameters for evaluation, keeping `W` aside: `evaluate_sequence` then
    /// measures the running mean without changing either weight set. Training is refused until
    /// [`Engine::restore_current_weights`]. Only FPTT keeps a `W̄`.
    pub fn load_running_mean_for_evaluation(&mut self) -> Result<(), EngineError> {
        self.refuse_while_running_mean_loaded("loading W̄ again")?;
        let Some(stash) = &self.stash else {
            return Err(EngineError::Shape("only FPTT keeps a running mean W̄ (BPTT and e-prop do not)".into()));
        };
        self.copy_trainable([(&self.params, stash), (&self.opt, &self.params)], "evaluate W̄: stash W, load W̄")?;
        self.running_mean_loaded = true;
        Ok(())
    }

    /// Undo [`Engine::load_running_mean_for_evaluation`]: `W` back in the parameters, bit for bit.
    pub fn restore_current_weights(&mut self) -> Result<(), EngineError> {
        if !self.running_mean_loaded {
            return Ok(());
        }
        let stash = self.stash.as_ref().expect("W̄ is loaded only where a stash exists");
        self.copy_trainable([(stash, &self.params)], "restore W after evaluating W̄")?;
        self.running_mean_loaded = false;
        Ok(())
    }

    fn refuse_while_running_mean_loaded(&self, what: &str) -> Result<(), EngineError> {
        if self.running_mean_loaded {
            return Err(EngineError::Shape(format!(
                "{what} while W̄ is loaded for evaluation: restore the current weights first"
            )));
        }
        Ok(())
    }

    /// Copy every replica's trainable range `[0, trainable_len)` between buffers, in order, in
    /// one submission.
    fn copy_trainable<const N: usize>(
        &self,
        copies: [(&GpuBuffer, &GpuBuffer); N],
        label: &str,
    ) -> Result<(), EngineError> {
        // Each buffer's per-replica stride, told apart by identity.
        let stride = |b: &GpuBuffer| -> u64 {
            let floats = if std::ptr::eq(b, &self.params) {
                self.layout.total_len
            } else if std::ptr::eq(b, &self.opt) {
                4 * self.layout.trainable_len
            } else {
                self.layout.trainable_len
            };
            (floats * 4) as u64
        };
        let mut encoder =
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        let bytes = (self.layout.trainable_len * 4) as u64;
        if bytes > 0 {
            for (from, to) in copies {
                for r in 0..self.replicas as u64 {
                    encoder.copy_buffer_to_buffer(&from.buffer, r * stride(from), &to.buffer, r * stride(to), bytes);
                }
            }
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.wait()?;
        Ok(())
    }

    pub fn plan(&self) -> &WorkPlan {
        &self.plan
    }
}
