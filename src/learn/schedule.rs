//! A learning rule is a schedule: which dispatch lists it builds, in what order it records them
//! over a sequence, how many dispatches one time step costs and how many steps one update spans.
//! The engine asks its [`Schedule`] and knows no rule of its own; evaluation (the one-step forward,
//! whatever the rule) stays with the engine.

use super::kernel_args::RangeArgs;
use super::kernel_args::EPROP_MAX_OUTPUTS;
use super::planner::{Planner, StepView};
use super::EngineError;
use crate::gpu::{ArgArena, Dispatch};
use crate::model::ModelConfig;
use crate::settings::{EpropSettings, LearningRule, TrainingSettings};

pub(crate) enum Schedule {
    /// One-step FPTT: per step the forward, the one-step backward and the regularised update,
    /// alternating between states 0 and 1 (`train[t % 2]`).
    OneStep { train: [Vec<Dispatch>; 2] },
    /// Backpropagation through chunks of steps: chunked FPTT, and BPTT (one chunk of T steps).
    Chunked(ChunkSchedule),
    /// e-prop: the one-step forward plus the traces each step, between a sequence's `begin` and
    /// `end`.
    Eprop(EpropSchedule),
}

/// Backpropagation through chunks of `len` steps: per chunk, `begin` (zero the gradients and the
/// carried state gradients), the forward of every step (slot i reads state i, writes state i + 1
/// and tape slot i), the backward from the last step to the first, then `end[L − 1]` for a chunk
/// of L steps: the update, and state L copied to state 0 for the next chunk.
pub(crate) struct ChunkSchedule {
    len: usize,
    begin: Vec<Dispatch>,
    forward: Vec<Vec<Dispatch>>,
    backward: Vec<Vec<Dispatch>>,
    end: Vec<Vec<Dispatch>>,
}

/// e-prop trains with `train` (each step: the forward, the traces and, when it updates every
/// step, the update) between `begin` (zero the traces, and the gradient that a per-sequence
/// update accumulates) and `end` (the per-sequence update; empty otherwise).
pub(crate) struct EpropSchedule {
    train: [Vec<Dispatch>; 2],
    begin: Vec<Dispatch>,
    end: Vec<Dispatch>,
    update_every_step: bool,
}

/// Tape slots the rule needs (1 for one-step rules, K for chunks of K, T for BPTT), after checking
/// that the rule fits the model and its settings are in range.
pub(crate) fn tape_slots(cfg: &ModelConfig, settings: &TrainingSettings) -> Result<usize, EngineError> {
    if cfg.conv.is_some() && matches!(settings.rule, LearningRule::Eprop(_)) {
        return Err(EngineError::Shape(
            "e-prop's traces are for one dense LIF/ALIF layer: a convolutional network trains with FPTT (one step \
             or chunks) or BPTT"
                .into(),
        ));
    }
    let slots = match settings.rule {
        LearningRule::Fptt { chunk } => {
            if chunk == 0 || chunk > cfg.steps {
                return Err(EngineError::Shape(format!(
                    "an FPTT chunk of {chunk} steps: it must be between 1 and the sequence length T = {}",
                    cfg.steps
                )));
            }
            if settings.alpha <= 0.0 || !(settings.beta > 0.0 && settings.beta <= 1.0) {
                return Err(EngineError::Shape(format!(
                    "FPTT needs α > 0 and β in (0, 1], got α = {}, β = {}",
                    settings.alpha, settings.beta
                )));
            }
            chunk
        }
        LearningRule::Bptt => cfg.steps,
        LearningRule::Eprop(_) => {
            EpropSettings::check_model(cfg).map_err(|m| EngineError::Shape(format!("e-prop: {m}")))?;
            if cfg.outputs > EPROP_MAX_OUTPUTS as usize {
                return Err(EngineError::Shape(format!(
                    "e-prop: at most {EPROP_MAX_OUTPUTS} outputs (its kernels mix the readout's outputs in \
                     private memory), this network has {}",
                    cfg.outputs
                )));
            }
            1
        }
    };
    Ok(slots)
}

/// Floats of weight-gradient partial sums the rule's steps need (only one-step FPTT splits a batch
/// reduction: inside chunks gradients accumulate over steps), from a dry run of one step.
pub(crate) fn split_partials_len(planner: &Planner, settings: &TrainingSettings) -> usize {
    match settings.rule {
        LearningRule::Fptt { chunk: 1 } => {
            planner.step(&mut ArgArena::default(), &StepView::one_step(planner.plan, 0), true).split_len
        }
        _ => 0,
    }
}

impl Schedule {
    /// The training schedule of `settings.rule`, its arguments pushed into `arena`.
    pub fn build(planner: &Planner, arena: &mut ArgArena, settings: &TrainingSettings) -> Schedule {
        let plan = planner.plan;
        match settings.rule {
            LearningRule::Fptt { chunk: 1 } => {
                let mut one_step = |p: usize| {
                    let step = planner.step(arena, &StepView::one_step(plan, p), true);
                    let mut list = step.forward;
                    list.extend(step.backward);
                    list.extend(planner.update(arena, false, &step.splits));
                    list
                };
                Schedule::OneStep { train: [one_step(0), one_step(1)] }
            }
            LearningRule::Fptt { chunk } => Schedule::Chunked(ChunkSchedule::build(planner, arena, chunk, false)),
            LearningRule::Bptt => Schedule::Chunked(ChunkSchedule::build(planner, arena, planner.cfg.steps, true)),
            LearningRule::Eprop(es) => Schedule::Eprop(EpropSchedule::build(planner, arena, &es)),
        }
    }

    /// Record the training steps `0..run` of a sequence: `record(list, t)` records one dispatch
    /// list with step t's step information. Returns the state the sequence ends in.
    pub fn record(&self, run: usize, mut record: impl FnMut(&[Dispatch], usize)) -> usize {
        match self {
            Schedule::OneStep { train } => {
                for t in 0..run {
                    record(&train[t % 2], t);
                }
                run % 2
            }
            Schedule::Chunked(chunk) => {
                let mut t = 0;
                while t < run {
                    let len = chunk.len.min(run - t);
                    record(&chunk.begin, t);
                    for i in 0..len {
                        record(&chunk.forward[i], t + i);
                    }
                    for i in (0..len).rev() {
                        record(&chunk.backward[i], t + i);
                    }
                    record(&chunk.end[len - 1], t + len - 1);
                    t += len;
                }
                0
            }
            Schedule::Eprop(eprop) => {
                record(&eprop.begin, 0);
                for t in 0..run {
                    record(&eprop.train[t % 2], t);
                }
                record(&eprop.end, run.saturating_sub(1));
                run % 2
            }
        }
    }

    /// Kernel launches per training time step (independent of N and B; with chunks, the chunk's
    /// launches over its length, rounded up).
    pub fn dispatches_per_step(&self) -> usize {
        match self {
            Schedule::OneStep { train } => train[0].len(),
            Schedule::Eprop(e) => e.train[0].len(),
            Schedule::Chunked(c) => {
                let total = c.begin.len()
                    + c.forward.iter().chain(&c.backward).map(Vec::len).sum::<usize>()
                    + c.end[c.len - 1].len();
                total.div_ceil(c.len)
            }
        }
    }

    /// Time steps per parameter update for sequences of `steps` steps: 1 for one-step FPTT and
    /// per-step e-prop, K for chunks of K, T for BPTT and per-sequence e-prop.
    pub fn steps_per_update(&self, steps: usize) -> usize {
        match self {
            Schedule::OneStep { .. } => 1,
            Schedule::Chunked(c) => c.len,
            Schedule::Eprop(e) if e.update_every_step => 1,
            Schedule::Eprop(_) => steps,
        }
    }

    /// One training step's dispatches for rules that repeat one list per step (None for chunks).
    pub fn step_list(&self) -> Option<&[Dispatch]> {
        match self {
            Schedule::OneStep { train } => Some(&train[0]),
            Schedule::Eprop(e) => Some(&e.train[0]),
            Schedule::Chunked(_) => None,
        }
    }
}

impl ChunkSchedule {
    /// Chunks of `len` steps; `plain`: a plain optimizer step (BPTT) instead of FPTT's update.
    fn build(planner: &Planner, arena: &mut ArgArena, len: usize, plain: bool) -> ChunkSchedule {
        let (plan, kernels, layout) = (planner.plan, planner.kernels, planner.layout);
        let (forward, backward) = (0..len)
            .map(|i| {
                let step = planner.step(arena, &StepView::chunk_slot(plan, i), true);
                (step.forward, step.backward)
            })
            .unzip();
        let zero = RangeArgs { len: plan.carry_len as u32, src: 0, dst: plan.carry, grad_len: layout.total_len as u32 };
        let begin = vec![kernels.over("zero_fill", arena.push(&zero), plan.carry_len.max(layout.total_len))];
        let update = planner.update(arena, plain, &[]);
        let end = (1..=len)
            .map(|steps| {
                let (last, first) = (&plan.state[steps], &plan.state[0]);
                let copy = RangeArgs { len: first.len, src: last.m, dst: first.m, grad_len: 0 };
                let mut list = update.clone();
                list.push(kernels.over("copy_range", arena.push(&copy), first.len as usize));
                list
            })
            .collect();
        ChunkSchedule { len, begin, forward, backward, end }
    }
}

impl EpropSchedule {
    fn build(planner: &Planner, arena: &mut ArgArena, es: &EpropSettings) -> EpropSchedule {
        let (plan, kernels, layout) = (planner.plan, planner.kernels, planner.layout);
        let region = plan.eprop.as_ref().expect("the work plan of an e-prop engine has its trace region");
        let update = planner.update(arena, true, &[]);
        let mut per_parity = |p: usize| {
            let step = planner.step(arena, &StepView::one_step(plan, p), false);
            let traces = planner.eprop_step(arena, &step, region, es);
            let mut list = step.forward;
            list.extend(traces);
            if es.update_every_step {
                list.extend(update.iter().cloned());
            }
            list
        };
        let train = [per_parity(0), per_parity(1)];
        // Per-sequence updates accumulate from a zero gradient; per-step ones overwrite it.
        let zero = RangeArgs {
            len: region.traces_len as u32,
            src: 0,
            dst: region.traces,
            grad_len: if es.update_every_step { 0 } else { layout.total_len as u32 },
        };
        let elements = region.traces_len.max(layout.total_len);
        EpropSchedule {
            train,
            begin: vec![kernels.over("zero_fill", arena.push(&zero), elements)],
            end: if es.update_every_step { vec![] } else { update },
            update_every_step: es.update_every_step,
        }
    }
}
