//! The conv front of a convolutional network at one time step (method §9): every cell's forward
//! (`Conv_x` → `BN_x` → pool → the gates' convolutions on `x̂ + m`, `x̂ + b` → their batch norms →
//! the element-wise neuron), the dropout mask on the last cell's spikes, and the backward from the
//! dense layer's input gradient down to the first cell (the one-step FPTT gradient, (9.24)–(9.25)).
//! Each convolution is one launch of the implicit-product kernels; the cells' weight gradients are
//! written here, not batched with the dense layers' jobs. Inside a chunk of steps (chunked FPTT,
//! BPTT) each step also passes its gradient on the state it read to the previous slot's carries
//! ((9.19)–(9.20)), receives the next step's on its own outputs, and adds its weight gradients to
//! the chunk's.

use super::{PlannedLayer, Planner, StepView};
use crate::gpu::{ArgArena, Dispatch};
use crate::learn::kernel_args::*;
use crate::learn::plan::ConvRegion;
use crate::model::conv::{ConvCellNames, ConvNetSpec};

/// One cell's forward as planned: the arguments its backward reuses.
pub(super) struct PlannedCell {
    conv_x: ConvArgs,
    gate_m: ConvArgs,
    gate_a: ConvArgs,
    bn_x: u32,
    bn_m: u32,
    bn_a: u32,
    pool: Option<u32>,
    neuron: u32,
}

/// The conv front's forward as planned.
pub(super) struct PlannedConv {
    cells: Vec<PlannedCell>,
    /// Where the dense layer reads its input `[B, F]`: the last cell's new spikes, or their
    /// dropped-out copy in training.
    pub dense_input: u32,
    /// The dropout launch's arguments (training with dropout only).
    dropout: Option<DropoutArgs>,
}

impl Planner<'_> {
    fn conv_spec(&self) -> &ConvNetSpec {
        self.cfg.conv.as_ref().expect("a conv network")
    }

    fn conv_region(&self) -> &ConvRegion {
        self.plan.conv.as_ref().expect("the plan of a conv network has its regions")
    }

    /// Every cell's forward, then dropout (training), appended to `out`.
    pub(super) fn conv_forward(
        &self,
        arena: &mut ArgArena,
        view: &StepView,
        training: bool,
        out: &mut Vec<Dispatch>,
    ) -> PlannedConv {
        let Planner { kernels, batch, stats, plan, .. } = *self;
        let spec = self.conv_spec();
        let region = self.conv_region();
        let (prev, next) = (view.prev, view.next);
        let bsz = batch as u32;
        let accumulate = view.accumulate();
        let off = |name: String| self.offset(&name);
        let mut cells: Vec<PlannedCell> = Vec::new();
        for (k, reg) in view.conv.iter().enumerate() {
            let earlier = view.earlier_conv.map(|e| &e[k]);
            let names = ConvCellNames::cell(k);
            let (in_c, h, w) = spec.cell_input(k);
            let (c, oh, ow) = spec.cell_output(k);
            let kernel = spec.cells[k].kernel as u32;
            let so = reg.state_offset;
            let state_len = batch * c * oh * ow;
            // Cell 1 reads frame t of the sequence; cell k the new spikes of cell k − 1.
            let (x, x_step) = match k {
                0 => (plan.inputs, (batch * in_c * h * w) as u32),
                _ => (next.s + view.conv[k - 1].state_offset, 0),
            };
            let conv_x = ConvArgs {
                batch: bsz,
                in_c: in_c as u32,
                out_c: c as u32,
                h: h as u32,
                w: w as u32,
                k: kernel,
                pad: kernel / 2,
                oh: h as u32,
                ow: w as u32,
                x,
                x2: NONE,
                g: reg.g_conv_x,
                weight: off(format!("{}.weight", names.x)),
                bias: off(format!("{}.bias", names.x)),
                out: reg.conv_x,
                // The weight gradient's mode (the forward never accumulates: its launch says 0).
                accumulate,
                split: 1,
                partials: NONE,
                x_step,
                _pad1: 0,
            };
            out.push(kernels.matmul(
                "conv_forward",
                arena.push(&ConvArgs { accumulate: 0, ..conv_x }),
                batch * h * w,
                c,
                1,
            ));
            let bn = |arena: &mut ArgArena, name: &str, x, xhat, invstd, hw: usize, g_y, g_x| {
                arena.push(&Bn2dArgs {
                    batch: bsz,
                    channels: c as u32,
                    hw: hw as u32,
                    x,
                    xhat,
                    invstd,
                    gamma: off(format!("{name}.weight")),
                    beta: off(format!("{name}.bias")),
                    running: plan.running + stats.base(name) as u32,
                    g_y,
                    g_x,
                    accumulate,
                })
            };
            let bn_x = bn(arena, &names.bn_x, reg.conv_x, reg.xhat_x, reg.invstd_x, h * w, reg.g_pool, reg.g_conv_x);
            out.push(kernels.groups("batch_norm2d_forward", bn_x, c as u32));
            let pool = spec.pool.then(|| {
                let slot = arena.push(&PoolArgs {
                    planes: (batch * c) as u32,
                    h: h as u32,
                    w: w as u32,
                    x: reg.conv_x,
                    y: reg.xhat,
                    arg: reg.pool_arg,
                    g_y: reg.g_xhat,
                    g_x: reg.g_pool,
                    accumulate: 0,
                    ..Default::default()
                });
                out.push(kernels.over("maxpool_forward", slot, state_len));
                slot
            });
            // The gates convolve x̂ + m and x̂ + b (the state the step starts from).
            let gate = |map: &str, state: u32, z: u32, g: u32| ConvArgs {
                in_c: c as u32,
                h: oh as u32,
                w: ow as u32,
                oh: oh as u32,
                ow: ow as u32,
                x: reg.xhat,
                x2: state + so,
                g,
                weight: off(format!("{map}.weight")),
                bias: off(format!("{map}.bias")),
                out: z,
                x_step: 0,
                ..conv_x
            };
            let gate_m = gate(&names.tau_m, prev.m, reg.z_m, reg.g_conv_m);
            let gate_a = gate(&names.tau_adp, prev.b, reg.z_a, reg.g_conv_a);
            let mut bns = Vec::new();
            for (args, name, xhat, invstd, g_y) in [
                (&gate_m, &names.bn_m, reg.xhat_m, reg.invstd_m, reg.g_zm),
                (&gate_a, &names.bn_a, reg.xhat_a, reg.invstd_a, reg.g_za),
            ] {
                let forward = ConvArgs { accumulate: 0, ..*args };
                out.push(kernels.matmul("conv_forward", arena.push(&forward), batch * oh * ow, c, 1));
                let slot = bn(arena, name, args.out, xhat, invstd, oh * ow, g_y, args.g);
                out.push(kernels.groups("batch_norm2d_forward", slot, c as u32));
                bns.push(slot);
            }
            let neuron = arena.push(&ConvNeuronArgs {
                len: state_len as u32,
                xhat: reg.xhat,
                z_m: reg.z_m,
                z_a: reg.z_a,
                m_prev: prev.m + so,
                s_prev: prev.s + so,
                b_prev: prev.b + so,
                tau_m: reg.tau_m,
                tau_a: reg.tau_a,
                theta: reg.theta,
                u: reg.u,
                m_next: next.m + so,
                s_next: next.s + so,
                b_next: next.b + so,
                g_s: reg.g_s,
                g_m_next: view.carry(reg.g_m_carry),
                g_b_next: view.carry(reg.g_b_carry),
                g_xhat: reg.g_xhat,
                g_zm: reg.g_zm,
                g_za: reg.g_za,
                g_m_prev: earlier.map_or(NONE, |e| e.g_m_carry),
                g_s_prev: earlier.map_or(NONE, |e| e.g_s_carry),
                g_b_prev: earlier.map_or(NONE, |e| e.g_b_carry),
                g_s_add: view.carry(reg.g_s_carry),
            });
            out.push(kernels.over("conv_neuron", neuron, state_len));
            cells.push(PlannedCell { conv_x, gate_m, gate_a, bn_x, bn_m: bns[0], bn_a: bns[1], pool, neuron });
        }
        // x_d = flatten(μ ⊙ s'_L): NCHW is already [B, F] row-major, so only the mask moves data.
        let top = next.s + view.conv.last().expect("validated: at least one cell").state_offset;
        let features = batch * spec.flat_features();
        let dropout = (training && spec.dropout > 0.0).then(|| {
            let args = DropoutArgs { len: features as u32, x: top, mask: region.masks, out: view.conv_flat };
            out.push(kernels.over("dropout", arena.push(&args), features));
            args
        });
        PlannedConv { cells, dense_input: dropout.map_or(top, |d| d.out), dropout }
    }

    /// The backward from the dense layer's current gradient down through every cell, appended to
    /// `out` (after the dense layer's backward). A convolution's weight gradient whose reduction
    /// over batch and pixels the adapter wants split writes partial sums at `split_partials +
    /// split_used` and is gathered by `split_gather` at once; returns the floats of the largest
    /// (all of it, even past the plan's room: the engine's dry run sizes the plan with it).
    pub(super) fn conv_backward(
        &self,
        arena: &mut ArgArena,
        view: &StepView,
        conv: &PlannedConv,
        dense: &PlannedLayer,
        split_used: usize,
        out: &mut Vec<Dispatch>,
    ) -> usize {
        let Planner { kernels, cfg, batch, plan, .. } = *self;
        let spec = self.conv_spec();
        let region = self.conv_region();
        let bsz = batch as u32;
        let features = spec.flat_features() as u32;
        let room = plan.split_len.saturating_sub(split_used);
        let mut needed = 0;
        // ∇W, ∇c of one convolution: split where the adapter wants more workgroups and the plan has room.
        let mut weight_grad = |arena: &mut ArgArena, out: &mut Vec<Dispatch>, args: ConvArgs, terms: usize| {
            let (rows, width) = (args.out_c as usize, (args.in_c * args.k * args.k) as usize);
            let split = kernels.tiling().weight_grad_split(rows, width + 1, terms);
            let len = split * rows * (width + 1);
            if split > 1 {
                needed = needed.max(len);
            }
            if split <= 1 || len > room {
                out.push(kernels.matmul("conv_weight_grad", arena.push(&args), rows, width + 1, 1));
                return;
            }
            let partials = plan.split_partials + split_used as u32;
            let split_args = ConvArgs { split: split as u32, partials, ..args };
            out.push(kernels.matmul("conv_weight_grad", arena.push(&split_args), rows, width + 1, split));
            let gather = SplitGatherArgs {
                region: SplitRegion {
                    out: args.weight,
                    width: width as u32,
                    rows: rows as u32,
                    bias: args.bias,
                    partials,
                    split: split as u32,
                },
                accumulate: args.accumulate,
                _pad0: 0,
            };
            out.push(kernels.over("split_gather", arena.push(&gather), rows * (width + 1)));
        };
        let top_g_s = view.conv.last().expect("validated: at least one cell").g_s;
        // ḡ_x of the dense layer (3.11): ḡ_cx·W_x[:, :F], through the mask (9.18) onto the top cell.
        let dense_reg = &view.layers[0];
        let la = dense.args;
        let n = la.n;
        self.input_grad(
            arena,
            out,
            InputGradArgs {
                batch: bsz,
                cols: features,
                add: NONE,
                out: if conv.dropout.is_some() { region.g_flat } else { top_g_s },
                k1: n,
                g1: dense_reg.g_cx,
                w1: la.w_x,
                ld1: if cfg.fused_recurrent { features + n } else { features },
                col1: 0,
                k2: 0,
                ..Default::default()
            },
        );
        if let Some(d) = conv.dropout {
            let back = DropoutArgs { len: d.len, x: region.g_flat, mask: d.mask, out: top_g_s };
            out.push(kernels.over("dropout", arena.push(&back), d.len as usize));
        }
        for (k, cell) in conv.cells.iter().enumerate().rev() {
            let reg = &view.conv[k];
            let earlier = view.earlier_conv.map(|e| &e[k]);
            let (c, oh, ow) = spec.cell_output(k);
            let (in_c, h, w) = spec.cell_input(k);
            out.push(kernels.over("conv_neuron_backward", cell.neuron, batch * c * oh * ow));
            // Each gate: its batch norm, its weight gradient, and its share of ḡ_x̂ (the gate reads
            // x̂ + state, so the input gradient of the sum is x̂'s).
            // Inside a chunk the sum's gradient also goes to the state the gate read (9.19).
            let states = [earlier.map(|e| e.g_m_carry), earlier.map(|e| e.g_b_carry)];
            for ((gate, bn), state) in [(&cell.gate_m, cell.bn_m), (&cell.gate_a, cell.bn_a)].into_iter().zip(states) {
                out.push(kernels.groups("batch_norm2d_backward", bn, c as u32));
                weight_grad(arena, out, ConvArgs { out: NONE, ..*gate }, batch * oh * ow);
                for target in std::iter::once(reg.g_xhat).chain(state) {
                    let input = ConvArgs { out: target, accumulate: 1, ..*gate };
                    out.push(kernels.matmul("conv_input_grad", arena.push(&input), batch * oh * ow, c, 1));
                }
            }
            if let Some(pool) = cell.pool {
                out.push(kernels.over("maxpool_backward", pool, batch * c * h * w));
            }
            out.push(kernels.groups("batch_norm2d_backward", cell.bn_x, c as u32));
            weight_grad(arena, out, ConvArgs { out: NONE, ..cell.conv_x }, batch * h * w);
            if k > 0 {
                // ḡ_x of this cell is ḡ_s of the cell below (cell 1's, on the frame, is dropped).
                let input = ConvArgs { out: view.conv[k - 1].g_s, accumulate: 0, ..cell.conv_x };
                out.push(kernels.matmul("conv_input_grad", arena.push(&input), batch * h * w, in_c, 1));
            }
        }
        needed
    }
}
