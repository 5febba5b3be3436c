//! The FPTT engine: GPU buffers for parameters, gradients, optimizer state (`W̄`, `λ`, moments)
//! and the work arena; the per-step dispatch schedule for both state parities; sequences in,
//! per-step metrics out; snapshots with the fixture/checkpoint naming.

use super::kernel_args::*;
use super::plan::{EpropRegion, LayerRegion, ReadoutRegion, StateRegion, WorkPlan, NORM_PARTS};
use crate::gpu::{
    ArgArena, ArgBuffer, Dispatch, GpuBuffer, GpuContext, GpuError, KernelProfiler, KernelTable, KernelTime,
    MemoryLedger, ARG_SLOT,
};
use crate::model::{LayerNames, ModelConfig, ModelError, ParamLayout, StatLayout, ThresholdMode, B0};
use crate::settings::{
    random_feedback, AuxTargets, EpropSettings, Feedback, FpttSettings, InitialState, LearningRule, LossKind,
    Optimizer, SequenceBatch, Targets, ADAM_BETA1, ADAM_BETA2, ADAM_EPS,
};
use crate::tensor::{Tensor, TensorMap};
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

    /// Correct predictions at the last step (spec §4: the prediction is the last step's argmax).
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

pub struct FpttEngine {
    ctx: Rc<GpuContext>,
    cfg: ModelConfig,
    settings: FpttSettings,
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
    /// One-step FPTT training, per state parity (empty when training runs in chunks).
    train_schedule: [Vec<Dispatch>; 2],
    eval_schedule: [Vec<Dispatch>; 2],
    /// Training by backpropagation through chunks of steps (chunked FPTT, BPTT); None for
    /// one-step FPTT, which trains with `train_schedule`.
    chunk: Option<ChunkSchedule>,
    /// e-prop's sequence start and end around `train_schedule` (None for the other rules).
    eprop: Option<EpropSchedule>,
    /// The state the last sequence ended in.
    last_state: usize,
    updates: u64,
    lr: f32,
    /// Steps run by the last sequence.
    last_run: usize,
    profiler: Option<KernelProfiler>,
}

/// Backpropagation through chunks of `len` steps: per chunk, `begin` (zero the gradients and the
/// carried state gradients), the forward of every step (slot i reads state i, writes state i + 1
/// and tape slot i), the backward from the last step to the first, then `end[L − 1]` for a chunk
/// of L steps: the update, and state L copied to state 0 for the next chunk.
struct ChunkSchedule {
    len: usize,
    begin: Vec<Dispatch>,
    forward: Vec<Vec<Dispatch>>,
    backward: Vec<Vec<Dispatch>>,
    end: Vec<Vec<Dispatch>>,
}

/// e-prop trains with `train_schedule` (each step: the forward, the traces and, when it updates
/// every step, the update) between `begin` (zero the traces, and the gradient that a
/// per-sequence update accumulates) and `end` (the per-sequence update; empty otherwise).
struct EpropSchedule {
    begin: Vec<Dispatch>,
    end: Vec<Dispatch>,
}

fn is_classification(loss: LossKind) -> bool {
    matches!(loss, LossKind::Classification { .. })
}

impl FpttEngine {
    /// An engine for `cfg` training batches of `batch` sequences, starting from `init` (spec names;
    /// running statistics optional). `W̄ = W`, `λ = 0`, moments 0, `q = 0`.
    pub fn new(
        ctx: Rc<GpuContext>,
        cfg: &ModelConfig,
        settings: &FpttSettings,
        batch: usize,
        init: &TensorMap,
    ) -> Result<Self, EngineError> {
        cfg.validate()?;
        if batch == 0 {
            return Err(EngineError::Shape("batch size must be at least 1".into()));
        }
        if cfg.batch_norm && batch < 2 {
            return Err(EngineError::Shape(
                "batch norm needs a batch of at least 2 (it normalises over the batch)".into(),
            ));
        }
        let (chunked, slots, eprop) = match settings.rule {
            LearningRule::Fptt { chunk } => {
                if chunk == 0 || chunk > cfg.steps {
                    return Err(EngineError::Shape(format!(
                        "an FPTT chunk of {chunk} steps: it must be between 1 and the sequence length T = {}",
                        cfg.steps
                    )));
                }
                (chunk > 1, chunk, None)
            }
            LearningRule::Bptt => (true, cfg.steps, None),
            LearningRule::Eprop(es) => {
                EpropSettings::check_model(cfg).map_err(|m| EngineError::Shape(format!("e-prop: {m}")))?;
                if cfg.outputs > EPROP_MAX_OUTPUTS as usize {
                    return Err(EngineError::Shape(format!(
                        "e-prop: at most {EPROP_MAX_OUTPUTS} outputs (its kernels mix the readout's outputs in \
                         private memory), this network has {}",
                        cfg.outputs
                    )));
                }
                (false, 1, Some(es))
            }
        };
        let regularised = matches!(settings.rule, LearningRule::Fptt { .. });
        if regularised && (settings.alpha <= 0.0 || !(settings.beta > 0.0 && settings.beta <= 1.0)) {
            return Err(EngineError::Shape(format!(
                "FPTT needs α > 0 and β in (0, 1], got α = {}, β = {}",
                settings.alpha, settings.beta
            )));
        }
        let layout = ParamLayout::new(cfg);
        let stats = StatLayout::new(cfg);
        let plan = WorkPlan::new(cfg, batch, is_classification(settings.loss), slots, eprop.as_ref());
        let kernels = KernelTable::new(&ctx);
        let ledger = MemoryLedger::default();
        let params = GpuBuffer::storage(&ctx, &ledger, "params", layout.total_len)?;
        let grad = GpuBuffer::storage(&ctx, &ledger, "grad", layout.total_len)?;
        let opt = GpuBuffer::storage(&ctx, &ledger, "opt: wbar, lambda, moments", 4 * layout.trainable_len)?;
        let work = GpuBuffer::storage(&ctx, &ledger, "work", plan.arena.len())?;

        let mut arena = ArgArena::default();
        let planner = Planner { kernels: &kernels, cfg, settings, batch, layout: &layout, stats: &stats, plan: &plan };
        // One-step schedules alternate between states 0 and 1 (evaluation always runs this way;
        // training too, unless it runs in chunks).
        let mut one_step = |p: usize, training: bool| {
            let view = StepView {
                prev: &plan.state[p],
                next: &plan.state[1 - p],
                layers: &plan.layers,
                readout: &plan.readout,
                chunked: false,
                earlier: None,
            };
            let step = planner.step(&mut arena, &view, training);
            let mut list = step.forward;
            list.extend(step.backward);
            if training {
                list.extend(planner.update(&mut arena, false));
            }
            list
        };
        let eval_schedule = [one_step(0, false), one_step(1, false)];
        let mut eprop_schedule = None;
        let train_schedule = if chunked {
            [vec![], vec![]]
        } else if let (Some(es), Some(region)) = (eprop.as_ref(), plan.eprop.as_ref()) {
            let update = planner.update(&mut arena, true);
            let mut per_parity = |p: usize| {
                let view = StepView {
                    prev: &plan.state[p],
                    next: &plan.state[1 - p],
                    layers: &plan.layers,
                    readout: &plan.readout,
                    chunked: false,
                    earlier: None,
                };
                let step = planner.step(&mut arena, &view, false);
                let traces = planner.eprop_step(&mut arena, &step, region, es);
                let mut list = step.forward;
                list.extend(traces);
                if es.update_every_step {
                    list.extend(update.iter().cloned());
                }
                list
            };
            let schedule = [per_parity(0), per_parity(1)];
            // Per-sequence updates accumulate from a zero gradient; per-step ones overwrite it.
            let zero = RangeArgs {
                len: region.traces_len as u32,
                src: 0,
                dst: region.traces,
                grad_len: if es.update_every_step { 0 } else { layout.total_len as u32 },
            };
            let elements = region.traces_len.max(layout.total_len);
            eprop_schedule = Some(EpropSchedule {
                begin: vec![kernels.over("zero_fill", arena.push(&zero), elements)],
                end: if es.update_every_step { vec![] } else { update },
            });
            schedule
        } else {
            [one_step(0, true), one_step(1, true)]
        };
        let chunk = chunked.then(|| {
            let (forward, backward) = (0..slots)
                .map(|i| {
                    let view = StepView {
                        prev: &plan.state[i],
                        next: &plan.state[i + 1],
                        layers: &plan.slot_layers[i],
                        readout: &plan.slot_readout[i],
                        chunked: true,
                        earlier: (i > 0).then(|| (&plan.slot_layers[i - 1][..], &plan.slot_readout[i - 1])),
                    };
                    let step = planner.step(&mut arena, &view, true);
                    (step.forward, step.backward)
                })
                .unzip();
            let zero =
                RangeArgs { len: plan.carry_len as u32, src: 0, dst: plan.carry, grad_len: layout.total_len as u32 };
            let begin = vec![kernels.over("zero_fill", arena.push(&zero), plan.carry_len.max(layout.total_len))];
            let update = planner.update(&mut arena, !regularised);
            let end = (1..=slots)
                .map(|len| {
                    let (last, first) = (&plan.state[len], &plan.state[0]);
                    let copy = RangeArgs { len: first.len, src: last.m, dst: first.m, grad_len: 0 };
                    let mut list = update.clone();
                    list.push(kernels.over("copy_range", arena.push(&copy), first.len as usize));
                    list
                })
                .collect();
            ChunkSchedule { len: slots, begin, forward, backward, end }
        });
        let args_buffer = arena.upload(&ctx, &ledger, "dispatch args");
        let steps_buffer = ArgArena::default();
        let mut steps_arena = steps_buffer;
        for _ in 0..2 * cfg.steps {
            steps_arena.push(&StepInfo::default());
        }
        let steps_buffer = steps_arena.upload(&ctx, &ledger, "step info");
        let storage_group = kernels.storage_bind_group(&ctx, "engine storage", [&params, &grad, &opt, &work]);
        let argument_group = kernels.argument_bind_group(&ctx, "engine arguments", &args_buffer, &steps_buffer);

        let mut engine = FpttEngine {
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
            train_schedule,
            eval_schedule,
            chunk,
            eprop: eprop_schedule,
            last_state: 0,
            updates: 0,
            lr: settings.lr,
            last_run: 0,
            profiler: None,
        };
        let table: Vec<f32> = engine
            .plan
            .layers
            .iter()
            .zip(&engine.cfg.hidden)
            .flat_map(|(l, &n)| [f32::from_bits(l.state_offset), f32::from_bits(n as u32)])
            .collect();
        engine.work.write(&engine.ctx, engine.plan.spike_layers as usize, &table);
        if let (Some(region), Some(EpropSettings { feedback: Feedback::Random { seed }, .. })) =
            (engine.plan.eprop.as_ref(), eprop)
        {
            let b: Vec<f32> = random_feedback(seed, cfg.outputs, cfg.hidden[0]).into_iter().map(|v| v as f32).collect();
            engine.work.write(&engine.ctx, region.feedback as usize, &b);
        }
        engine.load_state(init)?;
        Ok(engine)
    }
}

/// Where one time step reads and writes: its previous and next state, its tape slot, and inside a
/// chunk of steps the slot of the step before it (whose outputs' gradients it adds to).
struct StepView<'a> {
    prev: &'a StateRegion,
    next: &'a StateRegion,
    layers: &'a [LayerRegion],
    readout: &'a ReadoutRegion,
    /// Backpropagation through a chunk: gradients arrive from the next step (the carries of
    /// `layers` and the slot's `g_o`), and weight gradients add up over the chunk's steps.
    chunked: bool,
    /// The previous step's slot, to which this step passes gradients (None: the chunk's first
    /// step, whose start state is a constant, or one-step FPTT).
    earlier: Option<(&'a [LayerRegion], &'a ReadoutRegion)>,
}

/// One step's dispatches: the forward (with the loss and metrics), then the backward.
struct StepDispatches {
    forward: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    /// The arguments the bottom layer's and the readout's kernels got: where this step's tape,
    /// states and parameters are (e-prop's kernels read the same places).
    bottom_layer: LayerArgs,
    readout: ReadoutArgs,
}

/// Builds dispatch lists (and their arguments) for one engine's shapes and buffers.
struct Planner<'a> {
    kernels: &'a KernelTable,
    cfg: &'a ModelConfig,
    settings: &'a FpttSettings,
    batch: usize,
    layout: &'a ParamLayout,
    stats: &'a StatLayout,
    plan: &'a WorkPlan,
}

impl Planner<'_> {
    /// The dispatches of one time step as `view` places it (`training`: with the backward).
    fn step(&self, arena: &mut ArgArena, view: &StepView, training: bool) -> StepDispatches {
        let Planner { kernels, cfg, settings, batch, layout, stats, plan } = *self;
        let off = |name: &str| layout.get(name).map(|s| s.offset as u32).unwrap_or(NONE);
        let trainable = |name: &str| layout.is_trainable(name);
        let (prev, next) = (view.prev, view.next);
        let carry = |offset: u32| if view.chunked { offset } else { NONE };
        let accumulate = u32::from(view.chunked);
        let bsz = batch as u32;
        let nl = cfg.layers();
        let c = cfg.outputs as u32;
        let mut out = Vec::new();
        let mut layer_args = Vec::new();

        // Forward, bottom to top.
        for k in 0..nl {
            let names = LayerNames::hidden(k, nl);
            let reg = &view.layers[k];
            let n = cfg.hidden[k] as u32;
            let so = reg.state_offset;
            let earlier = view.earlier.map(|(layers, _)| &layers[k]);
            let mut flags = 0;
            if cfg.fused_recurrent {
                flags |= LAYER_FUSED;
            }
            if cfg.adaptive() {
                flags |= LAYER_ADAPTIVE;
            }
            if cfg.batch_norm {
                flags |= LAYER_BN;
            }
            if k == 0 {
                flags |= LAYER_DATA_INPUT;
            }
            let gated = cfg.neuron.has_gates();
            if !gated {
                flags |= LAYER_CONSTANT_TAU;
            }
            let threshold = match cfg.threshold {
                ThresholdMode::Fixed(th) => th,
                ThresholdMode::Adaptive => 0.0,
            };
            let la = LayerArgs {
                batch: bsz,
                n,
                n_in: cfg.layer_input(k) as u32,
                flags,
                w_x: off(&format!("{}.weight", names.x)),
                c_x: off(&format!("{}.bias", names.x)),
                w_r: off(&format!("{}.weight", names.r)),
                c_r: off(&format!("{}.bias", names.r)),
                w_m: off(&format!("{}.weight", names.tau_m)),
                c_m: off(&format!("{}.bias", names.tau_m)),
                w_a: off(&format!("{}.weight", names.tau_adp)),
                c_a: off(&format!("{}.bias", names.tau_adp)),
                a_m: off(&names.slope_m),
                a_a: off(&names.slope_a),
                x_in: if k == 0 { plan.inputs } else { next.s + view.layers[k - 1].state_offset },
                m_prev: prev.m + so,
                s_prev: prev.s + so,
                b_prev: prev.b + so,
                m_next: next.m + so,
                s_next: next.s + so,
                b_next: next.b + so,
                cur_x: reg.cur_x,
                cur_r: reg.cur_r,
                d: reg.d,
                tau_m: reg.tau_m,
                tau_a: reg.tau_a,
                zm: reg.zm,
                za: reg.za,
                u: reg.u,
                g_s: reg.g_s,
                g_zm: reg.g_zm,
                g_za: reg.g_za,
                r_m: reg.r_m,
                r_a: reg.r_a,
                // LIF/ALIF: no gate adds to ḡ_d, so the neuron's direct part is all of it.
                g_direct: if gated { reg.g_direct } else { reg.g_d },
                threshold,
                x_tape: reg.x_tape,
                g_m_next: carry(reg.g_m_carry),
                g_b_next: if cfg.adaptive() { carry(reg.g_b_carry) } else { NONE },
                g_m_prev: earlier.map_or(NONE, |e| e.g_m_carry),
                g_s_prev: earlier.map_or(NONE, |e| e.g_s_carry),
                g_b_prev: earlier.map_or(NONE, |e| e.g_b_carry),
                ..Default::default()
            };
            let la_off = arena.push(&la);
            out.push(kernels.matmul("layer_current", la_off, batch, cfg.hidden[k], 1));
            // One argument slot per normalisation serves its forward and its backward.
            let mut bn_offsets = Vec::new();
            if cfg.batch_norm {
                for (bn, x, xhat, invstd, g_x) in [
                    (&names.bn_a, reg.cur_x, reg.xhat_x, reg.invstd_x, reg.g_cx),
                    (&names.bn_b, reg.cur_r, reg.xhat_r, reg.invstd_r, reg.g_cr),
                ] {
                    let ba = BnArgs {
                        batch: bsz,
                        features: n,
                        x,
                        xhat,
                        invstd,
                        gamma: off(&format!("{bn}.weight")),
                        beta: off(&format!("{bn}.bias")),
                        running: plan.running + stats.base(bn) as u32,
                        g_y: reg.g_d,
                        g_x,
                        accumulate,
                        ..Default::default()
                    };
                    let ba_off = arena.push(&ba);
                    out.push(kernels.over("batch_norm_forward", ba_off, cfg.hidden[k]));
                    bn_offsets.push(ba_off);
                }
            }
            out.push(kernels.matmul("layer_neuron", la_off, batch, cfg.hidden[k], 1));
            layer_args.push((la, la_off, bn_offsets));
        }

        // Readout and loss.
        let (rx, rtau, rbn, rslope) = LayerNames::readout(nl);
        let top = &view.layers[nl - 1];
        let ro = view.readout;
        let n_top = cfg.top_hidden() as u32;
        let mut rflags = 0;
        if cfg.batch_norm {
            rflags |= READOUT_BN;
        }
        if !is_classification(settings.loss) {
            rflags |= READOUT_REGRESSION;
        }
        let ra = ReadoutArgs {
            batch: bsz,
            c,
            n_top,
            flags: rflags,
            w_o: off(&format!("{rx}.weight")),
            c_o: off(&format!("{rx}.bias")),
            w_om: off(&format!("{rtau}.weight")),
            c_om: off(&format!("{rtau}.bias")),
            a_o: off(&rslope),
            s_top: next.s + top.state_offset,
            o_prev: prev.o,
            o_next: next.o,
            z: ro.z,
            tau_o: ro.tau_o,
            zo: ro.zo,
            g_o: ro.g_o,
            g_zo: ro.g_zo,
            r_o: ro.r_o,
            g_z: ro.g_z,
            targets: plan.targets,
            loss_b: ro.loss_b,
            correct_b: ro.correct_b,
            sqerr_b: ro.sqerr_b,
            q: plan.q,
            metrics: plan.metrics,
            spikes: next.s,
            spike_layers: plan.spike_layers,
            layers: nl as u32,
            g_o_prev: view.earlier.map_or(NONE, |(_, r)| r.g_o),
        };
        let ra_off = arena.push(&ra);
        let bc = batch * cfg.outputs;
        out.push(kernels.over("readout_current", ra_off, bc));
        let readout_bn = BnArgs {
            batch: bsz,
            features: c,
            x: ro.z,
            xhat: ro.xhat,
            invstd: ro.invstd,
            gamma: off(&format!("{rbn}.weight")),
            beta: off(&format!("{rbn}.bias")),
            running: if cfg.batch_norm { plan.running + stats.base(&rbn) as u32 } else { NONE },
            g_y: ro.g_z,
            g_x: ro.g_zpre,
            accumulate,
            ..Default::default()
        };
        let readout_bn_off = arena.push(&readout_bn);
        if cfg.batch_norm {
            out.push(kernels.over("batch_norm_forward", readout_bn_off, cfg.outputs));
        }
        out.push(kernels.over("readout_gate", ra_off, bc));
        out.push(kernels.over("loss_grad", ra_off, batch));
        out.push(kernels.groups("loss_finalize", ra_off, 1));
        let forward = std::mem::take(&mut out);
        if !training {
            return StepDispatches { forward, backward: out, bottom_layer: layer_args[0].0, readout: ra };
        }

        // Backward through the readout.
        out.push(kernels.over("readout_backward", ra_off, batch));
        if cfg.batch_norm {
            out.push(kernels.over("batch_norm_backward", readout_bn_off, cfg.outputs));
        }
        let weight_grad = |out: &mut Vec<Dispatch>, arena: &mut ArgArena, wg: WeightGradArgs| {
            let cols = (wg.p_width + wg.q_width + 1) as usize;
            out.push(kernels.matmul("weight_grad", arena.push(&wg), wg.rows as usize, cols, 1));
        };
        weight_grad(
            &mut out,
            arena,
            WeightGradArgs {
                batch: bsz,
                rows: c,
                p_width: c,
                q_width: c,
                g: ro.g_zo,
                p: ro.z,
                q: prev.o,
                out: ra.w_om,
                bias: ra.c_om,
                accumulate,
                ..Default::default()
            },
        );
        weight_grad(
            &mut out,
            arena,
            WeightGradArgs {
                batch: bsz,
                rows: c,
                p_width: n_top,
                q_width: 0,
                g: ro.g_zpre,
                p: ra.s_top,
                q: NONE,
                out: ra.w_o,
                bias: ra.c_o,
                accumulate,
                ..Default::default()
            },
        );
        let slope = |out: &mut Vec<Dispatch>, arena: &mut ArgArena, name: &str, r: u32, z: u32, len: usize| {
            if trainable(name) {
                let da = DotArgs { len: len as u32, a: r, b: z, out: off(name), accumulate };
                out.push(kernels.groups("slope_grad", arena.push(&da), 1));
            }
        };
        slope(&mut out, arena, &rslope, ro.r_o, ro.zo, bc);
        let input_grad = |out: &mut Vec<Dispatch>, arena: &mut ArgArena, ia: InputGradArgs| {
            out.push(kernels.matmul("input_grad", arena.push(&ia), ia.batch as usize, ia.cols as usize, 1));
        };
        // The matrix part of a gradient carried to the previous step, added in place:
        // target[b, j] += Σ_o G[b, o]·W[o, col + j] for a square map of `size` rows and columns.
        let add_onto = |out: &mut Vec<Dispatch>, arena: &mut ArgArena, target, size, g, w, ld, col| {
            let ia = InputGradArgs {
                batch: bsz,
                cols: size,
                add: target,
                out: target,
                k1: size,
                g1: g,
                w1: w,
                ld1: ld,
                col1: col,
                k2: 0,
                ..Default::default()
            };
            input_grad(out, arena, ia)
        };
        if let Some((_, earlier)) = view.earlier {
            // The previous step's ḡ_o also gets ḡ_zo·W_om[:, C:] (readout_backward added ḡ_o'·(1 − τo)).
            add_onto(&mut out, arena, earlier.g_o, c, ro.g_zo, ra.w_om, 2 * c, c);
        }
        input_grad(
            &mut out,
            arena,
            InputGradArgs {
                batch: bsz,
                cols: n_top,
                add: carry(top.g_s_carry),
                out: top.g_s,
                k1: c,
                g1: ro.g_zpre,
                w1: ra.w_o,
                ld1: n_top,
                col1: 0,
                k2: 0,
                ..Default::default()
            },
        );

        // Backward through the hidden layers, top to bottom.
        for k in (0..nl).rev() {
            let (la, la_off, ref bn_offsets) = layer_args[k];
            let names = LayerNames::hidden(k, nl);
            let reg = &view.layers[k];
            let earlier = view.earlier.map(|(layers, _)| &layers[k]);
            let n = la.n;
            let elems = batch * cfg.hidden[k];
            let gated = cfg.neuron.has_gates();
            out.push(kernels.over("layer_backward_neuron", la_off, elems));
            if gated {
                input_grad(
                    &mut out,
                    arena,
                    InputGradArgs {
                        batch: bsz,
                        cols: n,
                        add: reg.g_direct,
                        out: reg.g_d,
                        k1: n,
                        g1: reg.g_zm,
                        w1: la.w_m,
                        ld1: 2 * n,
                        col1: 0,
                        k2: if cfg.adaptive() { n } else { 0 },
                        g2: reg.g_za,
                        w2: la.w_a,
                        ld2: 2 * n,
                        col2: 0,
                        ..Default::default()
                    },
                );
            }
            for &ba_off in bn_offsets {
                out.push(kernels.over("batch_norm_backward", ba_off, cfg.hidden[k]));
            }
            let wg = |g, p, p_width, q, q_width, w, bias| WeightGradArgs {
                batch: bsz,
                rows: n,
                p_width,
                q_width,
                g,
                p,
                q,
                out: w,
                bias,
                accumulate,
                ..Default::default()
            };
            if gated {
                weight_grad(&mut out, arena, wg(reg.g_zm, reg.d, n, la.m_prev, n, la.w_m, la.c_m));
                if cfg.adaptive() {
                    weight_grad(&mut out, arena, wg(reg.g_za, reg.d, n, la.b_prev, n, la.w_a, la.c_a));
                }
            } else {
                // LIF/ALIF: ∇ρ = Σ_batch ḡ_z, the bias column of an outer product with no inputs.
                weight_grad(&mut out, arena, wg(reg.g_zm, NONE, 0, NONE, 0, NONE, la.w_m));
                if cfg.adaptive() {
                    weight_grad(&mut out, arena, wg(reg.g_za, NONE, 0, NONE, 0, NONE, la.w_a));
                }
            }
            let n_in = la.n_in;
            // The bottom layer's input is this step's data, kept on the tape by layer_current.
            let x = if k == 0 { reg.x_tape } else { la.x_in };
            if cfg.fused_recurrent {
                weight_grad(&mut out, arena, wg(reg.g_cx, x, n_in, la.s_prev, n, la.w_x, la.c_x));
            } else {
                weight_grad(&mut out, arena, wg(reg.g_cx, x, n_in, NONE, 0, la.w_x, la.c_x));
                weight_grad(&mut out, arena, wg(reg.g_cr, la.s_prev, n, NONE, 0, la.w_r, la.c_r));
            }
            slope(&mut out, arena, &names.slope_m, reg.r_m, reg.zm, elems);
            if cfg.adaptive() {
                slope(&mut out, arena, &names.slope_a, reg.r_a, reg.za, elems);
            }
            if let Some(e) = earlier {
                // The matrix parts of the gradient on the previous state: through the gates'
                // state inputs [· ; m], [· ; b] and through the recurrent map.
                if gated {
                    add_onto(&mut out, arena, e.g_m_carry, n, reg.g_zm, la.w_m, 2 * n, n);
                    if cfg.adaptive() {
                        add_onto(&mut out, arena, e.g_b_carry, n, reg.g_za, la.w_a, 2 * n, n);
                    }
                }
                if cfg.fused_recurrent {
                    add_onto(&mut out, arena, e.g_s_carry, n, reg.g_cx, la.w_x, n_in + n, n_in);
                } else {
                    add_onto(&mut out, arena, e.g_s_carry, n, reg.g_cr, la.w_r, n, 0);
                }
            }
            if k > 0 {
                let ld = if cfg.fused_recurrent { n_in + n } else { n_in };
                input_grad(
                    &mut out,
                    arena,
                    InputGradArgs {
                        batch: bsz,
                        cols: n_in,
                        add: carry(view.layers[k - 1].g_s_carry),
                        out: view.layers[k - 1].g_s,
                        k1: n,
                        g1: reg.g_cx,
                        w1: la.w_x,
                        ld1: ld,
                        col1: 0,
                        k2: 0,
                        ..Default::default()
                    },
                );
            }
        }

        StepDispatches { forward, backward: out, bottom_layer: layer_args[0].0, readout: ra }
    }

    /// e-prop's dispatches for one step after its forward (one hidden layer): the readout's
    /// feedback terms, the hidden layer's traces with their gradient, and the readout's Jacobian
    /// with its gradient. They read the places the step's own layer and readout kernels use.
    fn eprop_step(
        &self,
        arena: &mut ArgArena,
        step: &StepDispatches,
        region: &EpropRegion,
        es: &EpropSettings,
    ) -> Vec<Dispatch> {
        let (la, ra) = (&step.bottom_layer, &step.readout);
        let mut flags = if es.update_every_step { 0 } else { EPROP_ACCUMULATE };
        for (on, bit) in [
            (la.flags & LAYER_ADAPTIVE != 0, EPROP_ALIF),
            (la.flags & LAYER_FUSED != 0, EPROP_FUSED),
            (es.readout_filter, EPROP_FILTER),
            (es.reset_in_trace, EPROP_RESET_IN_TRACE),
        ] {
            if on {
                flags |= bit;
            }
        }
        let args = EpropArgs {
            batch: la.batch,
            n: la.n,
            n_in: la.n_in,
            c: ra.c,
            cols: region.cols as u32,
            flags,
            threshold: la.threshold,
            p_len: region.readout_params as u32,
            x: la.x_tape,
            m_prev: la.m_prev,
            s_prev: la.s_prev,
            b_prev: la.b_prev,
            s_next: la.s_next,
            b_next: la.b_next,
            d: la.d,
            tau_m: la.tau_m,
            tau_a: la.tau_a,
            u: la.u,
            z: ra.z,
            o_prev: ra.o_prev,
            tau_o: ra.tau_o,
            zo: ra.zo,
            g_o: ra.g_o,
            membrane: region.membrane,
            adaptation: region.adaptation,
            filtered: region.filtered,
            jacobian: region.jacobian,
            v: region.v,
            signal: region.signal,
            feedback: region.feedback,
            w_x: la.w_x,
            c_x: la.c_x,
            w_r: la.w_r,
            c_r: la.c_r,
            w_m: la.w_m,
            w_a: la.w_a,
            w_o: ra.w_o,
            c_o: ra.c_o,
            w_om: ra.w_om,
            c_om: ra.c_om,
            a_o: ra.a_o,
            s_top: ra.s_top,
            psi: region.psi,
            readout_a: region.readout_a,
        };
        let at = arena.push(&args);
        let (batch, n) = (la.batch as usize, la.n as usize);
        vec![
            self.kernels.over("eprop_signal", at, batch * n),
            self.kernels.over("eprop_trace", at, n * region.cols),
            self.kernels.over("eprop_readout", at, region.readout_params),
        ]
    }

    /// The update over all trainable parameters: FPTT's regularised update, or with `plain` a
    /// plain optimizer step with the loss gradient (BPTT).
    fn update(&self, arena: &mut ArgArena, plain: bool) -> Vec<Dispatch> {
        let Planner { kernels, settings, layout, plan, .. } = *self;
        let mut out = Vec::new();
        let len = layout.trainable_len as u32;
        // Few partial sums: each workgroup's tree reduction costs barriers, and on a software
        // adapter a barrier is a coroutine switch per invocation.
        let parts = len.div_ceil(64 * 64).clamp(1, NORM_PARTS);
        let oa = OptimArgs {
            len,
            parts,
            partials: plan.partials,
            optimizer: match settings.optimizer {
                Optimizer::Adam => 0,
                Optimizer::Adamax => OPTIM_ADAMAX,
            } | if plain { OPTIM_PLAIN } else { 0 },
            alpha: settings.alpha,
            beta: settings.beta,
            clip: settings.clip,
            beta1: ADAM_BETA1 as f32,
            beta2: ADAM_BETA2 as f32,
            eps: ADAM_EPS as f32,
            one_minus_beta1: (1.0 - ADAM_BETA1) as f32,
            one_minus_beta2: (1.0 - ADAM_BETA2) as f32,
        };
        let oa_off = arena.push(&oa);
        out.push(kernels.groups("fptt_norm", oa_off, parts));
        out.push(kernels.groups("fptt_clip", oa_off, 1));
        out.push(kernels.over("fptt_update", oa_off, len as usize));
        out
    }
}

impl FpttEngine {
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

    /// Bytes of every GPU buffer this engine holds.
    pub fn gpu_bytes(&self) -> u64 {
        self.ledger.bytes()
    }

    /// Kernel launches per training time step (independent of N and B; with chunks, the chunk's
    /// launches over its length, rounded up).
    pub fn dispatches_per_step(&self) -> usize {
        match &self.chunk {
            None => self.train_schedule[0].len(),
            Some(c) => {
                let total = c.begin.len()
                    + c.forward.iter().chain(&c.backward).map(Vec::len).sum::<usize>()
                    + c.end[c.len - 1].len();
                total.div_ceil(c.len)
            }
        }
    }

    /// Time steps per parameter update: 1 for one-step FPTT, K for chunks of K, T for BPTT.
    pub fn steps_per_update(&self) -> usize {
        match (&self.chunk, self.settings.rule) {
            (Some(c), _) => c.len,
            (None, LearningRule::Eprop(e)) if !e.update_every_step => self.cfg.steps,
            _ => 1,
        }
    }

    /// Bytes of the GPU buffers that hold what the learning rule keeps (parameters, gradients,
    /// optimizer state, states, tape, scratch, dispatch arguments): everything but the sequence's
    /// own data (inputs, per-step step information, q, per-step statistics and metrics), which
    /// every rule holds alike.
    pub fn learning_bytes(&self) -> u64 {
        let step_infos = (2 * self.cfg.steps * ARG_SLOT) as u64;
        self.ledger.bytes() - step_infos - 4 * self.plan.sequence_data_len() as u64
    }

    /// Names of the kernels of one training step of one-step FPTT, in launch order (empty when the
    /// engine trains in chunks).
    pub fn step_kernels(&self) -> Vec<&'static str> {
        self.train_schedule[0].iter().map(|d| self.kernels.name(d.kernel)).collect()
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

    pub fn lr(&self) -> f32 {
        self.lr
    }

    pub fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    pub fn settings(&self) -> &FpttSettings {
        &self.settings
    }

    /// Switch the auxiliary targets (e.g. uniform for the first epochs, then the table).
    pub fn set_aux_targets(&mut self, aux: AuxTargets) {
        if let LossKind::Classification { .. } = self.settings.loss {
            self.settings.loss = LossKind::Classification { aux };
        }
    }

    fn check_batch(&self, batch: &SequenceBatch, exact: bool) -> Result<(), EngineError> {
        let cfg = &self.cfg;
        let bad = |m: String| Err(EngineError::Shape(m));
        if batch.steps != cfg.steps {
            return bad(format!("sequence has {} steps, the model was built for {}", batch.steps, cfg.steps));
        }
        if batch.inputs_per_step != cfg.inputs {
            return bad(format!(
                "sequence has {} inputs per step, the model expects {}",
                batch.inputs_per_step, cfg.inputs
            ));
        }
        if batch.batch == 0 || batch.batch > self.batch || (exact && batch.batch != self.batch) {
            return bad(format!("batch of {} sequences, the engine trains batches of {}", batch.batch, self.batch));
        }
        if batch.inputs.len() != batch.steps * batch.batch * batch.inputs_per_step {
            return bad("input length does not match steps × batch × inputs".into());
        }
        match (&batch.targets, self.settings.loss) {
            (Targets::Labels(l), LossKind::Classification { .. }) => {
                if l.len() != batch.batch {
                    return bad(format!("{} labels for {} sequences", l.len(), batch.batch));
                }
                if let Some(&y) = l.iter().find(|&&y| y as usize >= cfg.outputs) {
                    return bad(format!("label {y} out of range for {} classes", cfg.outputs));
                }
            }
            (Targets::Values(v), LossKind::Regression) => {
                if v.len() != batch.batch * cfg.outputs {
                    return bad(format!("{} targets for {} sequences × {} outputs", v.len(), batch.batch, cfg.outputs));
                }
            }
            _ => return bad("targets do not match the loss (labels for classification, values for regression)".into()),
        }
        Ok(())
    }

    /// Upload inputs, targets and the initial state, padding a short batch with zeros.
    fn upload_sequence(&self, batch: &SequenceBatch, init: &InitialState) -> Result<(), EngineError> {
        let (bsz, valid, i, t) = (self.batch, batch.batch, batch.inputs_per_step, batch.steps);
        let ctx = &self.ctx;
        let plan = &self.plan;
        if valid == bsz {
            self.work.write(ctx, plan.inputs as usize, &batch.inputs);
        } else {
            let mut padded = vec![0.0f32; t * bsz * i];
            for step in 0..t {
                padded[step * bsz * i..step * bsz * i + valid * i].copy_from_slice(batch.step(step));
            }
            self.work.write(ctx, plan.inputs as usize, &padded);
        }
        let targets: Vec<f32> = match &batch.targets {
            Targets::Labels(l) => {
                let mut v: Vec<f32> = l.iter().map(|&y| f32::from_bits(y)).collect();
                v.resize(bsz, f32::from_bits(0));
                v
            }
            Targets::Values(v) => {
                let mut v = v.clone();
                v.resize(bsz * self.cfg.outputs, 0.0);
                v
            }
        };
        self.work.write(ctx, plan.targets as usize, &targets);
        if init.membrane.len() != self.cfg.layers() {
            return Err(EngineError::Shape(format!(
                "initial state has {} layers, the model {}",
                init.membrane.len(),
                self.cfg.layers()
            )));
        }
        let total = bsz * plan.total_hidden;
        let mut m = vec![0.0f32; total];
        for (k, layer) in init.membrane.iter().enumerate() {
            let n = self.cfg.hidden[k];
            if layer.len() < valid * n || layer.len() > bsz * n {
                return Err(EngineError::Shape(format!(
                    "initial membrane of layer {} has {} values",
                    k + 1,
                    layer.len()
                )));
            }
            let start = plan.layers[k].state_offset as usize;
            m[start..start + layer.len()].copy_from_slice(layer);
        }
        let s0 = &plan.state[0];
        self.work.write(ctx, s0.m as usize, &m);
        self.work.write(ctx, s0.s as usize, &vec![0.0; total]);
        self.work.write(ctx, s0.b as usize, &vec![B0; total]);
        self.work.write(ctx, s0.o as usize, &vec![0.0; bsz * self.cfg.outputs]);
        Ok(())
    }

    fn step_infos(&self, valid: usize, training: bool) -> Vec<StepInfo> {
        let t_len = self.cfg.steps;
        let aux_mode = match self.settings.loss {
            LossKind::Classification { aux: AuxTargets::Off } | LossKind::Regression => 0,
            LossKind::Classification { aux: AuxTargets::Table } => 1,
            LossKind::Classification { aux: AuxTargets::Uniform } => 2,
        };
        let classification = is_classification(self.settings.loss);
        (0..t_len)
            .map(|t| {
                let w = (t + 1) as f64 / t_len as f64;
                let n = (self.updates + (t / self.steps_per_update()) as u64 + 1) as i32;
                StepInfo {
                    t: t as u32,
                    steps: t_len as u32,
                    valid: valid as u32,
                    training: u32::from(training),
                    w_task: w as f32,
                    w_aux: (1.0 - w) as f32,
                    aux_mode,
                    // The table is kept up to date whatever the loss reads (as the authors' code).
                    update_q: u32::from(training && classification && t + 1 < t_len),
                    step_size: (self.lr as f64 / (1.0 - ADAM_BETA1.powi(n))) as f32,
                    bc2_sqrt: (1.0 - ADAM_BETA2.powi(n)).sqrt() as f32,
                    ..Default::default()
                }
            })
            .collect()
    }

    fn run_sequence(
        &mut self,
        batch: &SequenceBatch,
        init: &InitialState,
        training: bool,
        limit: usize,
    ) -> Result<SequenceMetrics, EngineError> {
        self.check_batch(batch, training)?;
        self.upload_sequence(batch, init)?;
        let t_len = self.cfg.steps;
        let run = limit.min(t_len);
        let infos = self.step_infos(batch.batch, training);
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
            match (&self.chunk, training) {
                (Some(chunk), true) => {
                    let mut t = 0;
                    while t < run {
                        let len = chunk.len.min(run - t);
                        let mut record = |list: &[Dispatch], step: usize| {
                            self.kernels.record(&mut pass, &self.argument_group, list, at(step), self.profiler.as_mut())
                        };
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
                    self.last_state = 0;
                }
                (None, true) if self.eprop.is_some() => {
                    let eprop = self.eprop.as_ref().unwrap();
                    let mut record = |list: &[Dispatch], step: usize| {
                        self.kernels.record(&mut pass, &self.argument_group, list, at(step), self.profiler.as_mut())
                    };
                    record(&eprop.begin, 0);
                    for t in 0..run {
                        record(&self.train_schedule[t % 2], t);
                    }
                    record(&eprop.end, run.saturating_sub(1));
                    self.last_state = run % 2;
                }
                _ => {
                    let schedule = if training { &self.train_schedule } else { &self.eval_schedule };
                    for t in 0..run {
                        self.kernels.record(
                            &mut pass,
                            &self.argument_group,
                            &schedule[t % 2],
                            at(t),
                            self.profiler.as_mut(),
                        );
                    }
                    self.last_state = run % 2;
                }
            }
        }
        if let Some(p) = &self.profiler {
            p.resolve(&mut encoder);
        }
        self.ctx.queue.submit([encoder.finish()]);
        if let Some(p) = &mut self.profiler {
            p.collect(&self.ctx)?;
        }
        let raw = self.work.read(&self.ctx, self.plan.metrics as usize, 4 * t_len)?;
        self.last_run = run;
        let metrics = SequenceMetrics {
            step_loss: raw[..run].to_vec(),
            step_correct: raw[t_len..t_len + run].to_vec(),
            step_sqerr: raw[2 * t_len..2 * t_len + run].to_vec(),
            step_spikes: raw[3 * t_len..3 * t_len + run].to_vec(),
            samples: batch.batch,
        };
        if training {
            let per_update = self.steps_per_update();
            if let Some((step, &loss)) = metrics.step_loss.iter().enumerate().find(|(_, l)| !l.is_finite()) {
                return Err(EngineError::Diverged {
                    update: self.updates + (step / per_update) as u64 + 1,
                    step,
                    loss,
                });
            }
            self.updates += run.div_ceil(per_update) as u64;
        }
        Ok(metrics)
    }

    /// One sequence of T steps with an FPTT update after every step; one host read at the end.
    pub fn train_sequence(
        &mut self,
        batch: &SequenceBatch,
        init: &InitialState,
    ) -> Result<SequenceMetrics, EngineError> {
        self.run_sequence(batch, init, true, usize::MAX)
    }

    /// The first `steps` steps of a sequence only, each with its update (tests compare the
    /// trajectory after 1, 2, … updates).
    pub fn train_prefix(
        &mut self,
        batch: &SequenceBatch,
        init: &InitialState,
        steps: usize,
    ) -> Result<SequenceMetrics, EngineError> {
        self.run_sequence(batch, init, true, steps)
    }

    /// Forward only (batch norm on running statistics, no update, q untouched). A batch smaller
    /// than the engine's is padded; only its samples count.
    pub fn evaluate_sequence(
        &mut self,
        batch: &SequenceBatch,
        init: &InitialState,
    ) -> Result<SequenceMetrics, EngineError> {
        self.run_sequence(batch, init, false, usize::MAX)
    }

    /// The readout `o'` after the last sequence's final step, `[B, C]`.
    pub fn last_output(&self) -> Result<Vec<f32>, EngineError> {
        let o = self.plan.state[self.last_state].o as usize;
        Ok(self.work.read(&self.ctx, o, self.batch * self.cfg.outputs)?)
    }

    /// The epoch-end reset `W ← W̄` (λ, W̄ and the moments are kept).
    pub fn reset_to_running_mean(&mut self) -> Result<(), EngineError> {
        let mut encoder =
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("reset W to W̄") });
        let bytes = (self.layout.trainable_len * 4) as u64;
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(&self.opt.buffer, 0, &self.params.buffer, 0, bytes);
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.wait()?;
        Ok(())
    }

    fn moment_names(&self) -> (&'static str, &'static str) {
        match self.settings.optimizer {
            Optimizer::Adam => ("exp_avg", "exp_avg_sq"),
            Optimizer::Adamax => ("exp_avg", "exp_inf"),
        }
    }

    /// Everything the engine trains and keeps, by name: for every parameter NAME, `NAME` and (if
    /// trained) `NAME.wbar`, `NAME.lambda` and the optimizer moments in PyTorch's names; the
    /// running statistics; `q`. One read per buffer.
    pub fn state(&self) -> Result<TensorMap, EngineError> {
        let params = self.params.read(&self.ctx, 0, self.layout.total_len)?;
        let opt = self.opt.read(&self.ctx, 0, 4 * self.layout.trainable_len)?;
        let work = self.work.read(&self.ctx, 0, self.plan.arena.len())?;
        let len = self.layout.trainable_len;
        let (m1, m2) = self.moment_names();
        let mut map = TensorMap::new();
        for slot in &self.layout.slots {
            let r = slot.range();
            map.insert(slot.name.clone(), Tensor::new(slot.shape.clone(), params[r.clone()].to_vec()));
            if slot.offset < len {
                for (suffix, part) in [("wbar", 0), ("lambda", 1), (m1, 2), (m2, 3)] {
                    let data = opt[part * len + r.start..part * len + r.end].to_vec();
                    map.insert(format!("{}.{suffix}", slot.name), Tensor::new(slot.shape.clone(), data));
                }
            }
        }
        let running = self.plan.running as usize;
        for slot in &self.stats.slots {
            let r = slot.range();
            map.insert(
                slot.name.clone(),
                Tensor::new(slot.shape.clone(), work[running + r.start..running + r.end].to_vec()),
            );
        }
        let c = self.cfg.outputs;
        let q = self.plan.q as usize;
        map.insert("q".into(), Tensor::new(vec![c, self.cfg.steps, c], work[q..q + c * self.cfg.steps * c].to_vec()));
        Ok(map)
    }

    /// Load parameters (required) and, where present, `W̄`, `λ`, moments, running statistics and
    /// `q`. Absent extras start fresh: `W̄ = W`, `λ = 0`, moments 0, statistics (0, 1), `q = 0`.
    /// Shapes are checked against the layout; a mismatch names the tensor.
    pub fn load_state(&mut self, map: &TensorMap) -> Result<(), EngineError> {
        let len = self.layout.trainable_len;
        let mut params = vec![0.0f32; self.layout.total_len];
        let mut opt = vec![0.0f32; 4 * len];
        let (m1, m2) = self.moment_names();
        let fetch = |name: &str, shape: &[usize]| -> Result<Option<&Tensor>, EngineError> {
            match map.get(name) {
                None => Ok(None),
                Some(t) if t.shape == shape => Ok(Some(t)),
                Some(t) => Err(EngineError::Shape(format!(
                    "tensor {name} has shape {:?}, the model expects {shape:?}",
                    t.shape
                ))),
            }
        };
        for slot in &self.layout.slots {
            let t = fetch(&slot.name, &slot.shape)?
                .ok_or_else(|| EngineError::Shape(format!("parameter {} is missing", slot.name)))?;
            let r = slot.range();
            params[r.clone()].copy_from_slice(&t.data);
            if slot.offset < len {
                let wbar = fetch(&format!("{}.wbar", slot.name), &slot.shape)?;
                opt[r.clone()].copy_from_slice(&wbar.unwrap_or(t).data);
                for (suffix, part) in [("lambda", 1), (m1, 2), (m2, 3)] {
                    if let Some(x) = fetch(&format!("{}.{suffix}", slot.name), &slot.shape)? {
                        opt[part * len + r.start..part * len + r.end].copy_from_slice(&x.data);
                    }
                }
            }
        }
        self.params.write(&self.ctx, 0, &params);
        self.opt.write(&self.ctx, 0, &opt);
        let mut running = vec![0.0f32; self.stats.total_len];
        for slot in &self.stats.slots {
            let r = slot.range();
            match fetch(&slot.name, &slot.shape)? {
                Some(t) => running[r].copy_from_slice(&t.data),
                None if slot.name.contains("running_var") => running[r].fill(1.0),
                None => {}
            }
        }
        self.work.write(&self.ctx, self.plan.running as usize, &running);
        let c = self.cfg.outputs;
        let q_shape = [c, self.cfg.steps, c];
        let q = fetch("q", &q_shape)?.map(|t| t.data.clone()).unwrap_or_else(|| vec![0.0; c * self.cfg.steps * c]);
        self.work.write(&self.ctx, self.plan.q as usize, &q);
        self.ctx.wait()?;
        Ok(())
    }

    /// Fill every scratch region of the work arena and the whole gradient buffer with NaN, so that
    /// a test sees any element a kernel failed to write. Persistent state (parameters, optimizer
    /// state, q, running statistics) is left alone.
    pub fn poison_scratch(&self) -> Result<(), EngineError> {
        let q = self.plan.q as usize;
        self.work.write(&self.ctx, 0, &vec![f32::NAN; q]);
        let metrics = self.plan.metrics as usize;
        let end = self.plan.spike_layers as usize;
        self.work.write(&self.ctx, metrics, &vec![f32::NAN; end - metrics]);
        self.grad.write(&self.ctx, 0, &vec![f32::NAN; self.layout.total_len]);
        self.ctx.wait()?;
        Ok(())
    }

    /// The raw contents of the work arena and the gradient buffer, for kernel tests.
    pub fn debug_read(&self) -> Result<(Vec<f32>, Vec<f32>), EngineError> {
        Ok((self.work.read(&self.ctx, 0, self.plan.arena.len())?, self.grad.read(&self.ctx, 0, self.layout.total_len)?))
    }

    pub fn plan(&self) -> &WorkPlan {
        &self.plan
    }
}
