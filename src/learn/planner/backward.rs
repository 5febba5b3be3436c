//! The backward of one hidden layer at one time step (method §3): the neuron's surrogate
//! gradient, the gradient through the gates onto the current, batch norm, the weight and slope
//! gradients, the matrix parts of the gradients carried to the previous step (inside a chunk) and
//! the gradient passed to the layer below.

use super::{PlannedLayer, Planner, SquareBlock, StepView};
use crate::gpu::{ArgArena, Dispatch};
use crate::learn::kernel_args::*;

impl Planner<'_> {
    /// Layer `k`'s backward dispatches, appended to `out` (layers run top down).
    pub(super) fn layer_backward(
        &self,
        arena: &mut ArgArena,
        view: &StepView,
        k: usize,
        layer: &PlannedLayer,
        out: &mut Vec<Dispatch>,
        jobs: &mut Vec<WeightGradArgs>,
    ) {
        let Planner { kernels, cfg, batch, .. } = *self;
        let carry = |offset: u32| view.carry(offset);
        let accumulate = view.accumulate();
        let bsz = batch as u32;
        let PlannedLayer { args: la, slot: la_off, bn_slots: ref bn_offsets } = *layer;
        let names = cfg.layer_names(k);
        let reg = &view.layers[k];
        let earlier = view.earlier.map(|(layers, _)| &layers[k]);
        let n = la.n;
        let elems = batch * cfg.hidden[k];
        let gated = cfg.neuron.has_gates();
        out.push(kernels.over("layer_backward_neuron", la_off, elems));
        if gated {
            self.input_grad(
                arena,
                out,
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
            jobs.push(wg(reg.g_zm, reg.d, n, la.m_prev, n, la.w_m, la.c_m));
            if cfg.adaptive() {
                jobs.push(wg(reg.g_za, reg.d, n, la.b_prev, n, la.w_a, la.c_a));
            }
        } else {
            // LIF/ALIF: ∇ρ = Σ_batch ḡ_z, the bias column of an outer product with no inputs.
            jobs.push(wg(reg.g_zm, NONE, 0, NONE, 0, NONE, la.w_m));
            if cfg.adaptive() {
                jobs.push(wg(reg.g_za, NONE, 0, NONE, 0, NONE, la.w_a));
            }
        }
        let n_in = la.n_in;
        // The bottom layer's input is this step's data, kept on the tape by layer_current (a
        // conv network's dense layer reads its input where it lies).
        let x = if k == 0 && cfg.conv.is_none() { reg.x_tape } else { la.x_in };
        if cfg.fused_recurrent {
            jobs.push(wg(reg.g_cx, x, n_in, la.s_prev, n, la.w_x, la.c_x));
        } else if !cfg.recurrent_map() {
            jobs.push(wg(reg.g_cx, x, n_in, NONE, 0, la.w_x, la.c_x));
        } else {
            jobs.push(wg(reg.g_cx, x, n_in, NONE, 0, la.w_x, la.c_x));
            jobs.push(wg(reg.g_cr, la.s_prev, n, NONE, 0, la.w_r, la.c_r));
        }
        self.slope_grad(jobs, view, &names.slope_m, (reg.r_m, reg.zm), elems);
        if cfg.adaptive() {
            self.slope_grad(jobs, view, &names.slope_a, (reg.r_a, reg.za), elems);
        }
        if let Some(e) = earlier {
            // The matrix parts of the gradient on the previous state: through the gates'
            // state inputs [· ; m], [· ; b] and through the recurrent map.
            if gated {
                self.add_onto(arena, out, e.g_m_carry, reg.g_zm, SquareBlock { w: la.w_m, ld: 2 * n, col: n, size: n });
                if cfg.adaptive() {
                    self.add_onto(
                        arena,
                        out,
                        e.g_b_carry,
                        reg.g_za,
                        SquareBlock { w: la.w_a, ld: 2 * n, col: n, size: n },
                    );
                }
            }
            if cfg.fused_recurrent {
                self.add_onto(
                    arena,
                    out,
                    e.g_s_carry,
                    reg.g_cx,
                    SquareBlock { w: la.w_x, ld: n_in + n, col: n_in, size: n },
                );
            } else if cfg.recurrent_map() {
                self.add_onto(arena, out, e.g_s_carry, reg.g_cr, SquareBlock { w: la.w_r, ld: n, col: 0, size: n });
            }
        }
        if k > 0 {
            let ld = if cfg.fused_recurrent { n_in + n } else { n_in };
            self.input_grad(
                arena,
                out,
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
}
