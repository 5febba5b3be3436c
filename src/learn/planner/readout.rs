//! The readout at one time step: its current, optional batch norm, gate, the loss with its
//! gradient and the per-step metrics (method §1, §4), in one `readout_step` dispatch where it can;
//! and its backward.

use super::{is_classification, PlannedReadout, Planner, SquareBlock, StepView};
use crate::gpu::{ArgArena, Dispatch};
use crate::learn::kernel_args::*;

impl Planner<'_> {
    /// Whether the readout runs as one `readout_step` dispatch: without batch norm (which needs
    /// the whole batch between current and gate) and with few enough outputs that a workgroup
    /// holds at least one sample.
    pub(super) fn readout_fused(&self) -> bool {
        !self.cfg.batch_norm && self.cfg.outputs <= READOUT_LANES as usize
    }

    /// The readout's and the loss's forward dispatches, appended to `out`; with `fused_backward`
    /// (one-step training, fused readout) the readout's backward runs in the same dispatch.
    pub(super) fn readout_forward(
        &self,
        arena: &mut ArgArena,
        view: &StepView,
        fused_backward: bool,
        out: &mut Vec<Dispatch>,
    ) -> PlannedReadout {
        let Planner { kernels, cfg, settings, batch, stats, plan, .. } = *self;
        let off = |name: &str| self.offset(name);
        let (prev, next) = (view.prev, view.next);
        let accumulate = view.accumulate();
        let bsz = batch as u32;
        let nl = cfg.layers();
        let c = cfg.outputs as u32;
        let (rx, rtau, rbn, rslope) = cfg.readout_names();
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
        if fused_backward {
            rflags |= READOUT_FUSED_BACKWARD;
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
            layers: cfg.state_blocks().len() as u32,
            g_o_prev: view.earlier.map_or(NONE, |(_, r)| r.g_o),
            predictions: plan.predictions,
        };
        let ra_off = arena.push(&ra);
        let bc = batch * cfg.outputs;
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
        if self.readout_fused() {
            let samples_per_group = READOUT_LANES as usize / cfg.outputs;
            out.push(kernels.groups("readout_step", ra_off, batch.div_ceil(samples_per_group) as u32));
        } else {
            out.push(kernels.over("readout_current", ra_off, bc));
            if cfg.batch_norm {
                out.push(kernels.over("batch_norm_forward", readout_bn_off, cfg.outputs));
            }
            out.push(kernels.over("readout_gate", ra_off, bc));
            out.push(kernels.over("loss_grad", ra_off, batch));
        }
        out.push(kernels.groups("loss_finalize", ra_off, 1));
        PlannedReadout { args: ra, slot: ra_off, bn_slot: readout_bn_off }
    }

    /// The readout's backward: its weight and slope gradients, the gradient carried to the
    /// previous step's output (inside a chunk). The top hidden layer's
    /// `ḡ_s = ḡ_z·W_o` is computed by its `layer_backward_neuron` (`LayerArgs::top_g_z`).
    pub(super) fn readout_backward(
        &self,
        arena: &mut ArgArena,
        view: &StepView,
        readout: &PlannedReadout,
        out: &mut Vec<Dispatch>,
        jobs: &mut Vec<WeightGradArgs>,
    ) {
        let Planner { kernels, cfg, batch, .. } = *self;
        let PlannedReadout { args: ra, slot: ra_off, bn_slot: readout_bn_off } = *readout;
        let prev = view.prev;
        let accumulate = view.accumulate();
        let bsz = batch as u32;
        let c = cfg.outputs as u32;
        let (_, _, _, rslope) = cfg.readout_names();
        let ro = view.readout;
        let n_top = cfg.top_hidden() as u32;
        let bc = batch * cfg.outputs;
        if ra.flags & READOUT_FUSED_BACKWARD == 0 {
            out.push(kernels.over("readout_backward", ra_off, batch));
        }
        if cfg.batch_norm {
            out.push(kernels.over("batch_norm_backward", readout_bn_off, cfg.outputs));
        }
        jobs.push(WeightGradArgs {
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
        });
        jobs.push(WeightGradArgs {
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
        });
        self.slope_grad(jobs, view, &rslope, (ro.r_o, ro.zo), bc);
        if let Some((_, earlier)) = view.earlier {
            // The previous step's ḡ_o also gets ḡ_zo·W_om[:, C:] (readout_backward added ḡ_o'·(1 − τo)).
            self.add_onto(arena, out, earlier.g_o, ro.g_zo, SquareBlock { w: ra.w_om, ld: 2 * c, col: c, size: c });
        }
    }
}
