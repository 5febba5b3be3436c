//! The step planner: turns one engine's shapes and work-arena plan into dispatch lists with their
//! arguments. A time step is planned in pieces, each in its own file: the hidden layers' forward
//! (`forward.rs`), the readout with the loss and the readout's backward (`readout.rs`), the hidden
//! layers' backward (`backward.rs`), the optimizer update (`update.rs`) and e-prop's per-step
//! traces (`eprop.rs`). Schedules (`super::schedule`) put the pieces in order per learning rule.

mod backward;
mod conv;
mod eprop;
mod forward;
mod readout;
mod update;

use super::kernel_args::*;
use super::plan::{ConvCellRegion, LayerRegion, ReadoutRegion, StateRegion, WorkPlan};
use crate::gpu::{ArgArena, Dispatch, KernelTable};
use crate::model::{ModelConfig, ParamLayout, StatLayout};
use crate::settings::{LossKind, TrainingSettings};

pub(crate) fn is_classification(loss: LossKind) -> bool {
    matches!(loss, LossKind::Classification { .. })
}

/// Where one time step reads and writes: its previous and next state, its tape slot, and inside a
/// chunk of steps the slot of the step before it (whose outputs' gradients it adds to).
pub(crate) struct StepView<'a> {
    pub prev: &'a StateRegion,
    pub next: &'a StateRegion,
    pub layers: &'a [LayerRegion],
    pub readout: &'a ReadoutRegion,
    /// Backpropagation through a chunk: gradients arrive from the next step (the carries of
    /// `layers` and the slot's `g_o`), and weight gradients add up over the chunk's steps.
    pub chunked: bool,
    /// The previous step's slot, to which this step passes gradients (None: the chunk's first
    /// step, whose start state is a constant, or one-step FPTT).
    pub earlier: Option<(&'a [LayerRegion], &'a ReadoutRegion)>,
    /// A conv network's cells at this slot, and where the dense layer's dropped-out input goes.
    pub conv: &'a [ConvCellRegion],
    pub conv_flat: u32,
    /// The previous slot's cells (their carries receive this step's gradients on the state).
    pub earlier_conv: Option<&'a [ConvCellRegion]>,
}

impl<'a> StepView<'a> {
    /// One-step FPTT and evaluation: state `parity` in, the other state out, the one tape slot.
    pub fn one_step(plan: &'a WorkPlan, parity: usize) -> Self {
        StepView {
            prev: &plan.state[parity],
            next: &plan.state[1 - parity],
            layers: &plan.layers,
            readout: &plan.readout,
            chunked: false,
            earlier: None,
            conv: plan.conv.as_ref().map_or(&[], |c| &c.slot_cells[0][..]),
            conv_flat: plan.conv.as_ref().map_or(NONE, |c| c.slot_flat[0]),
            earlier_conv: None,
        }
    }

    /// Slot `i` of a chunk of steps: state i in, state i + 1 out, gradients passed to slot i − 1.
    pub fn chunk_slot(plan: &'a WorkPlan, i: usize) -> Self {
        StepView {
            prev: &plan.state[i],
            next: &plan.state[i + 1],
            layers: &plan.slot_layers[i],
            readout: &plan.slot_readout[i],
            chunked: true,
            earlier: (i > 0).then(|| (&plan.slot_layers[i - 1][..], &plan.slot_readout[i - 1])),
            conv: plan.conv.as_ref().map_or(&[], |c| &c.slot_cells[i][..]),
            conv_flat: plan.conv.as_ref().map_or(NONE, |c| c.slot_flat[i]),
            earlier_conv: plan.conv.as_ref().filter(|_| i > 0).map(|c| &c.slot_cells[i - 1][..]),
        }
    }

    /// An offset that only exists inside a chunk of steps (a carried gradient), `NONE` otherwise.
    fn carry(&self, offset: u32) -> u32 {
        if self.chunked {
            offset
        } else {
            NONE
        }
    }

    /// Whether weight-like gradients add to what earlier steps of the chunk left (1) or overwrite (0).
    fn accumulate(&self) -> u32 {
        u32::from(self.chunked)
    }
}

/// One step's dispatches: the forward (with the loss and metrics), then the backward.
pub(crate) struct StepDispatches {
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
    /// The arguments the bottom layer's and the readout's kernels got: where this step's tape,
    /// states and parameters are (e-prop's kernels read the same places).
    pub bottom_layer: LayerArgs,
    pub readout: ReadoutArgs,
    /// Weight gradients this step left as split partial sums, for the update to gather.
    pub splits: Vec<SplitRegion>,
    /// Floats of split partial sums this step asked for (more than `WorkPlan::split_len` in a
    /// dry run, which then splits nothing).
    pub split_len: usize,
}

/// A hidden layer's forward as planned: its arguments, their slot, and the slots of its two
/// normalisations (each serves its forward and its backward).
struct PlannedLayer {
    args: LayerArgs,
    slot: u32,
    bn_slots: Vec<u32>,
}

/// The readout's forward as planned (its backward reuses both slots).
struct PlannedReadout {
    args: ReadoutArgs,
    slot: u32,
    bn_slot: u32,
}

/// A `size × size` block of a weight matrix: columns `col..col + size` of `W` with rows `ld` apart.
#[derive(Clone, Copy)]
struct SquareBlock {
    w: u32,
    ld: u32,
    col: u32,
    size: u32,
}

/// Builds dispatch lists (and their arguments) for one engine's shapes and buffers.
pub(crate) struct Planner<'a> {
    pub kernels: &'a KernelTable,
    pub cfg: &'a ModelConfig,
    pub settings: &'a TrainingSettings,
    pub batch: usize,
    pub layout: &'a ParamLayout,
    pub stats: &'a StatLayout,
    pub plan: &'a WorkPlan,
}

impl Planner<'_> {
    /// The dispatches of one time step as `view` places it (`training`: with the backward).
    pub fn step(&self, arena: &mut ArgArena, view: &StepView, training: bool) -> StepDispatches {
        let mut forward = Vec::new();
        let conv = self.cfg.conv.is_some().then(|| self.conv_forward(arena, view, training, &mut forward));
        let dense_input = conv.as_ref().map(|c| c.dense_input);
        let layers: Vec<PlannedLayer> =
            (0..self.cfg.layers()).map(|k| self.layer_forward(arena, view, k, dense_input, &mut forward)).collect();
        // The readout's backward joins its forward where nothing lies between them: one-step
        // training (inside a chunk, the next step's backward first adds to this step's ḡ_o').
        let fused_backward = training && !view.chunked && self.readout_fused();
        let readout = self.readout_forward(arena, view, fused_backward, &mut forward);
        let mut backward = Vec::new();
        let mut split = (Vec::new(), 0);
        if training {
            let mut jobs = Vec::new();
            self.readout_backward(arena, view, &readout, &mut backward, &mut jobs);
            for k in (0..self.cfg.layers()).rev() {
                self.layer_backward(arena, view, k, &layers[k], &mut backward, &mut jobs);
            }
            split = self.split_jobs(view, &mut jobs);
            if let Some(conv) = &conv {
                // The convolutions' split partials follow the dense jobs' (one region that every
                // convolution reuses in turn: each is gathered before the next is reduced).
                let needed = self.conv_backward(arena, view, conv, &layers[0], split.1, &mut backward);
                split.1 += needed;
            }
            self.weight_grad_dispatches(arena, &jobs, &mut backward);
        }
        let (splits, split_len) = split;
        StepDispatches { forward, backward, bottom_layer: layers[0].args, readout: readout.args, splits, split_len }
    }

    /// The offset of parameter `name` in `params`, `NONE` when the model has no such tensor.
    fn offset(&self, name: &str) -> u32 {
        self.layout.get(name).map(|s| s.offset as u32).unwrap_or(NONE)
    }

    /// Workgroups of one weight-gradient job (twin: `job_groups` in shaders/weight_grad.wgsl).
    fn job_groups(&self, job: &WeightGradArgs) -> u32 {
        if job.rows == 0 {
            return 1;
        }
        let cols = (job.p_width + job.q_width + 1) as usize;
        self.kernels.tiling().groups(job.rows as usize, cols, job.split.max(1) as usize)
    }

    /// Split the batch reduction of a one-step schedule's matrix jobs where the adapter wants more
    /// workgroups (`MatmulTiling::weight_grad_split`), their partial sums laid out one after the
    /// other in `WorkPlan::split_partials` for fptt_norm to gather (at most `SPLIT_REGIONS`). Inside
    /// a chunk gradients accumulate over steps, so nothing splits there. Returns the regions and
    /// the floats they need (all of it, even past the plan's room: the engine's dry run sizes the
    /// plan with it).
    fn split_jobs(&self, view: &StepView, jobs: &mut [WeightGradArgs]) -> (Vec<SplitRegion>, usize) {
        let mut regions = Vec::new();
        let mut needed = 0;
        if view.chunked {
            return (regions, needed);
        }
        for job in jobs.iter_mut().filter(|j| j.rows > 0 && j.accumulate == 0) {
            let width = (job.p_width + job.q_width) as usize;
            let (rows, cols) = (job.rows as usize, width + 1);
            let split = self.kernels.tiling().weight_grad_split(rows, cols, job.batch as usize);
            if split <= 1 || regions.len() == SPLIT_REGIONS {
                continue;
            }
            let len = split * rows * cols;
            if needed + len <= self.plan.split_len {
                job.split = split as u32;
                job.partials = self.plan.split_partials + needed as u32;
                regions.push(SplitRegion {
                    out: job.out,
                    width: width as u32,
                    rows: job.rows,
                    bias: job.bias,
                    partials: job.partials,
                    split: job.split,
                });
            }
            needed += len;
        }
        (regions, needed)
    }

    /// A step's weight-gradient and gate-slope jobs, `WEIGHT_GRAD_JOBS` per dispatch, in order.
    /// They only write `grad`, so they wait until the step's backward has produced all their
    /// inputs (and run before the next step reuses the backward scratch).
    fn weight_grad_dispatches(&self, arena: &mut ArgArena, jobs: &[WeightGradArgs], out: &mut Vec<Dispatch>) {
        for group in jobs.chunks(WEIGHT_GRAD_JOBS) {
            let workgroups = group.iter().map(|j| self.job_groups(j)).sum();
            let slot = arena.push(&WeightGradJobs::new(group));
            out.push(self.kernels.groups("weight_grad", slot, workgroups));
        }
    }

    /// A gradient passed down through one or two maps.
    fn input_grad(&self, arena: &mut ArgArena, out: &mut Vec<Dispatch>, ia: InputGradArgs) {
        out.push(self.kernels.matmul("input_grad", arena.push(&ia), ia.batch as usize, ia.cols as usize, 1));
    }

    /// The matrix part of a gradient carried to the previous step, added in place:
    /// `target[b, j] += Σ_o G[b, o]·W[o, col + j]` for a square block of `size` rows and columns.
    fn add_onto(&self, arena: &mut ArgArena, out: &mut Vec<Dispatch>, target: u32, g: u32, block: SquareBlock) {
        let ia = InputGradArgs {
            batch: self.batch as u32,
            cols: block.size,
            add: target,
            out: target,
            k1: block.size,
            g1: g,
            w1: block.w,
            ld1: block.ld,
            col1: block.col,
            k2: 0,
            ..Default::default()
        };
        self.input_grad(arena, out, ia)
    }

    /// `∇a = Σ r·z` of a trainable gate slope `name` over `len` elements of `(r, z)` (nothing
    /// when the slope is frozen).
    fn slope_grad(&self, jobs: &mut Vec<WeightGradArgs>, view: &StepView, name: &str, (r, z): (u32, u32), len: usize) {
        if self.layout.is_trainable(name) {
            jobs.push(WeightGradArgs {
                batch: len as u32,
                rows: 0,
                g: r,
                p: z,
                q: NONE,
                out: self.offset(name),
                bias: NONE,
                accumulate: view.accumulate(),
                ..Default::default()
            });
        }
    }
}
