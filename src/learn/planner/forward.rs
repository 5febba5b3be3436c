//! The forward of one hidden layer at one time step: input currents, optional batch norm, then
//! gates and the neuron update (method §1; LIF/ALIF §7).

use super::{PlannedLayer, Planner, StepView};
use crate::gpu::{ArgArena, Dispatch};
use crate::learn::kernel_args::*;
use crate::model::ThresholdMode;

impl Planner<'_> {
    /// Layer `k`'s forward dispatches, appended to `out`; its arguments serve its backward too.
    pub(super) fn layer_forward(
        &self,
        arena: &mut ArgArena,
        view: &StepView,
        k: usize,
        conv_input: Option<u32>,
        out: &mut Vec<Dispatch>,
    ) -> PlannedLayer {
        let Planner { kernels, cfg, batch, stats, plan, .. } = *self;
        let off = |name: &str| self.offset(name);
        let (prev, next) = (view.prev, view.next);
        let carry = |offset: u32| view.carry(offset);
        let accumulate = view.accumulate();
        let bsz = batch as u32;
        let nl = cfg.layers();
        let top = k + 1 == nl;
        let names = cfg.layer_names(k);
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
        if k == 0 && conv_input.is_none() {
            flags |= LAYER_DATA_INPUT;
        }
        if cfg.conv.is_some() {
            flags |= LAYER_CONV_B0;
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
            // The bottom layer reads the data, or a conv network's flattened (dropped-out) spikes.
            x_in: match (k, conv_input) {
                (0, Some(flat)) => flat,
                (0, None) => plan.inputs,
                _ => next.s + view.layers[k - 1].state_offset,
            },
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
            // The top layer's backward reads ḡ_s straight off the readout's ḡ_z.
            top_g_z: if top { view.readout.g_zpre } else { NONE },
            top_w_o: if top { self.offset(&format!("{}.weight", cfg.readout_names().0)) } else { NONE },
            top_c: if top { cfg.outputs as u32 } else { 0 },
            top_g_s_add: if top { carry(reg.g_s_carry) } else { NONE },
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
        PlannedLayer { args: la, slot: la_off, bn_slots: bn_offsets }
    }
}
