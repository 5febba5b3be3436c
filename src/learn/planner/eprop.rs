//! e-prop's per-step dispatches (method §7): after a step's forward, the readout's feedback terms,
//! the hidden layer's eligibility traces with their gradient, and the readout's Jacobian.

use super::{Planner, StepDispatches};
use crate::gpu::{ArgArena, Dispatch};
use crate::learn::kernel_args::*;
use crate::learn::plan::EpropRegion;
use crate::settings::EpropSettings;

impl Planner<'_> {
    /// e-prop's dispatches for one step after its forward (one hidden layer): the readout's
    /// feedback terms, the hidden layer's traces with their gradient, and the readout's Jacobian
    /// with its gradient. They read the places the step's own layer and readout kernels use.
    pub(crate) fn eprop_step(
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
}
