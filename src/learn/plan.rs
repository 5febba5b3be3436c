//! The work arena of one FPTT engine: where every activation, tape entry, gradient, input,
//! target, running statistic, the table q and the per-step metrics live in the `work` buffer.
//! Planned once from the model, the batch size and the number of tape slots; kernels only ever
//! see these offsets.
//!
//! One-step FPTT needs one tape slot and two states that swap roles every step. Backpropagation
//! through a chunk of K steps (chunked FPTT; BPTT with K = T) keeps K tape slots, K + 1 states
//! (the chunk's start and each step's result) and, per slot, the gradients carried back onto
//! that step's outputs m', s', b' (and o' in the slot's `g_o`). Backward scratch that a step
//! uses and drops (ḡ_s, ḡ_d, …) is shared by all slots.
//!
//! e-prop runs one-step schedules and adds its traces (sized by the network, never by T).

use super::kernel_args::{HYPER_STEP_SIZES, NONE};
use crate::model::{ModelConfig, StatLayout};
use crate::settings::{EpropSettings, Feedback};

/// Named regions of the work buffer, allocated back to back.
#[derive(Debug, Default, Clone)]
pub struct Arena {
    regions: Vec<(String, usize, usize)>,
    len: usize,
}

impl Arena {
    pub fn alloc(&mut self, name: impl Into<String>, len: usize) -> u32 {
        let offset = self.len;
        self.regions.push((name.into(), offset, len));
        self.len += len;
        offset as u32
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `(name, offset, len)` of every region, for debugging and documentation.
    pub fn regions(&self) -> &[(String, usize, usize)] {
        &self.regions
    }
}

/// State of every hidden layer at one parity: membranes, spikes and adaptation, each laid out
/// layer after layer so that all spikes form one range (the spike-count metric reads it whole).
/// The four parts are contiguous, `m` first, so a state copies as one range of `len` floats.
#[derive(Debug, Clone)]
pub struct StateRegion {
    pub m: u32,
    pub s: u32,
    pub b: u32,
    pub o: u32,
    pub len: u32,
}

/// One hidden layer's tape and backward scratch.
#[derive(Debug, Clone)]
pub struct LayerRegion {
    /// Offset of this layer within each state vector (`state.m + layer_offset`).
    pub state_offset: u32,
    /// This step's data input (bottom layer only; the input of other layers is spikes).
    pub x_tape: u32,
    pub cur_x: u32,
    pub cur_r: u32,
    pub d: u32,
    pub tau_m: u32,
    pub tau_a: u32,
    pub zm: u32,
    pub za: u32,
    pub u: u32,
    pub xhat_x: u32,
    pub xhat_r: u32,
    pub invstd_x: u32,
    pub invstd_r: u32,
    pub g_s: u32,
    pub g_zm: u32,
    pub g_za: u32,
    pub r_m: u32,
    pub r_a: u32,
    pub g_direct: u32,
    pub g_d: u32,
    /// Gradient on the input map's output (after batch norm's backward; `g_d` without it).
    pub g_cx: u32,
    pub g_cr: u32,
    /// Gradients carried back from the next step onto this slot's outputs m', s', b' (chunks
    /// only; `NONE` otherwise).
    pub g_m_carry: u32,
    pub g_s_carry: u32,
    pub g_b_carry: u32,
}

#[derive(Debug, Clone)]
pub struct ReadoutRegion {
    pub z: u32,
    pub tau_o: u32,
    pub zo: u32,
    pub xhat: u32,
    pub invstd: u32,
    pub g_o: u32,
    pub g_zo: u32,
    pub r_o: u32,
    pub g_z: u32,
    /// Gradient on the readout map's output (after batch norm's backward; `g_z` without it).
    pub g_zpre: u32,
    pub loss_b: u32,
    pub correct_b: u32,
    pub sqerr_b: u32,
}

/// One conv cell's tape and backward scratch (one-step FPTT: one slot). `[state]` is the cell's
/// state shape `[B, C, H', W']`, `[image]` its convolution's output `[B, C, H, W]` before the pool.
#[derive(Debug, Clone)]
pub struct ConvCellRegion {
    /// Offset of this cell within each state vector.
    pub state_offset: u32,
    /// `Conv_x(x)` `[image]`, normalised in place by `BN_x` (the pool's input); `BN_x`'s `x̂` and
    /// `1/σ`; the pool's choices `[state]`.
    pub conv_x: u32,
    pub xhat_x: u32,
    pub invstd_x: u32,
    pub pool_arg: u32,
    /// The input current `x̂` `[state]` (`conv_x` itself when the cell does not pool).
    pub xhat: u32,
    /// The gates' convolutions `[state]`, normalised in place by `BN_m`, `BN_a` (their `x̂` and
    /// `1/σ` kept), i.e. the sigmoids' arguments.
    pub z_m: u32,
    pub xhat_m: u32,
    pub invstd_m: u32,
    pub z_a: u32,
    pub xhat_a: u32,
    pub invstd_a: u32,
    pub tau_m: u32,
    pub tau_a: u32,
    pub theta: u32,
    pub u: u32,
    /// Backward scratch: `ḡ` on `s'` (from the cell above or the dense layer), on `x̂`, on the
    /// gates' sigmoid arguments and on their convolutions' outputs `[state]`; on the pool's input
    /// and on `Conv_x`'s output `[image]` (`g_pool` is `g_xhat` without a pool).
    pub g_s: u32,
    pub g_xhat: u32,
    pub g_zm: u32,
    pub g_za: u32,
    pub g_conv_m: u32,
    pub g_conv_a: u32,
    pub g_pool: u32,
    pub g_conv_x: u32,
    /// Gradients carried back from the next step onto this slot's `m'`, `s'`, `b'` (chunks
    /// only; `NONE` otherwise).
    pub g_m_carry: u32,
    pub g_s_carry: u32,
    pub g_b_carry: u32,
}

/// The conv front of a convolutional network: its cells, the dropout masks of a sequence and the
/// dense layer's input.
#[derive(Debug, Clone)]
pub struct ConvRegion {
    /// Per tape slot, every cell's regions (tape and carries per slot, scratch shared; one-step
    /// FPTT and evaluation use slot 0).
    pub slot_cells: Vec<Vec<ConvCellRegion>>,
    /// `[T, B·F]`: the training masks of the sequence's steps, uploaded per sequence (empty without dropout).
    pub masks: u32,
    /// Per slot, `μ ⊙ s'_L`, `[B, F]`: the dense layer's input in training with dropout (the dense
    /// layer's weight gradient reads it in its slot's backward).
    pub slot_flat: Vec<u32>,
    /// `ḡ` on the dense layer's input `[B, F]`, before the mask.
    pub g_flat: u32,
}

/// e-prop's state for its one hidden layer (src/reference/eprop.rs has the same traces, grouped
/// by kind): per sample, neuron and trace column (the `I + N` synapses, the bias, ρ_m and, for
/// ALIF, ρ_a) the traces ε^m, ε^a and the readout-filtered φ per output; the readout's Jacobian.
#[derive(Debug, Clone)]
pub struct EpropRegion {
    /// Trace columns per neuron: `I + N + 2`, plus 1 for ALIF's ρ_a.
    pub cols: usize,
    /// Readout parameters in a row of the Jacobian: `C·N + C + 2C² + C + 1`.
    pub readout_params: usize,
    /// ε^m `[B, N, cols]`.
    pub membrane: u32,
    /// ε^a `[B, N, cols]` (`NONE` for LIF).
    pub adaptation: u32,
    /// φ `[B, C, N, cols]` (`NONE` without the readout filter).
    pub filtered: u32,
    /// `J` `[B, C, readout_params]`.
    pub jacobian: u32,
    /// Every trace above, one contiguous range (zeroed at each sequence's start).
    pub traces: u32,
    pub traces_len: usize,
    /// `D·B` `[B, C, N]` and the learning signal `[B, N]` of the current step.
    pub v: u32,
    pub signal: u32,
    /// The current step's `ψ(u − θ)` `[B, N]` and the readout's `A = ∂o'/∂o` `[B, C, C]`,
    /// computed once per step for every trace that reads them.
    pub psi: u32,
    pub readout_a: u32,
    /// The fixed random feedback `[C, N]` (`NONE` with symmetric feedback).
    pub feedback: u32,
}

/// Partial sums of the gradient norm: at most this many workgroups.
pub const NORM_PARTS: u32 = 256;

#[derive(Debug, Clone)]
pub struct WorkPlan {
    pub arena: Arena,
    pub inputs: u32,
    pub targets: u32,
    pub state: Vec<StateRegion>,
    pub layers: Vec<LayerRegion>,
    pub readout: ReadoutRegion,
    pub q: u32,
    pub running: u32,
    pub metrics: u32,
    /// Streams only: o' of every step of the window, `[T, B, C]` (`NONE` otherwise).
    pub predictions: u32,
    pub partials: u32,
    /// Weight-gradient partial sums (`split_len` floats; see `planner::Planner::weight_grad_dispatches`).
    pub split_partials: u32,
    pub split_len: usize,
    /// Per hidden layer, (offset of its block in a state vector, N) as u32 bit patterns.
    pub spike_layers: u32,
    /// This replica's hyperparameters (`HYPER_*`: α, β, clip, frozen, a step size per step),
    /// written by the engine; the update reads them instead of engine-wide constants.
    pub hyper: u32,
    pub total_hidden: usize,
    /// Tape slots: per slot, every layer's regions (slot 0's are `layers`) and the readout's.
    pub slot_layers: Vec<Vec<LayerRegion>>,
    pub slot_readout: Vec<ReadoutRegion>,
    /// The carried gradients of every slot, one contiguous range (zeroed at a chunk's start).
    pub carry: u32,
    pub carry_len: usize,
    pub eprop: Option<EpropRegion>,
    /// Convolutional networks: the cells' regions.
    pub conv: Option<ConvRegion>,
}

impl WorkPlan {
    /// `slots` tape slots: 1 for one-step FPTT and e-prop, K for backpropagation through chunks of
    /// K steps; `eprop` adds e-prop's traces (one hidden layer); `per_step_targets` (streams)
    /// makes the targets region `[T, B(, C)]` instead of `[B(, C)]`.
    pub fn new(
        cfg: &ModelConfig,
        batch: usize,
        classification: bool,
        slots: usize,
        eprop: Option<&EpropSettings>,
        split_len: usize,
        per_step_targets: bool,
    ) -> Self {
        assert!(slots >= 1);
        let chunked = slots > 1;
        let mut a = Arena::default();
        let bsz = batch;
        let t = cfg.steps;
        let c = cfg.outputs;
        // Every state block: the conv cells' (if any), then the hidden layers'.
        let total_hidden: usize = cfg.state_blocks().iter().sum();
        let cell_state_len: usize = bsz * (total_hidden - cfg.hidden.iter().sum::<usize>());
        let inputs = a.alloc("inputs", t * bsz * cfg.inputs);
        let per_sequence = if classification { bsz } else { bsz * c };
        let targets = a.alloc("targets", if per_step_targets { t * per_sequence } else { per_sequence });
        let state_for = |p: usize, a: &mut Arena| {
            let m = a.alloc(format!("state{p}.m"), bsz * total_hidden);
            let s = a.alloc(format!("state{p}.s"), bsz * total_hidden);
            let b = a.alloc(format!("state{p}.b"), bsz * total_hidden);
            let o = a.alloc(format!("state{p}.o"), bsz * c);
            StateRegion { m, s, b, o, len: (3 * bsz * total_hidden + bsz * c) as u32 }
        };
        let state: Vec<StateRegion> = (0..(slots + 1).max(2)).map(|p| state_for(p, &mut a)).collect();
        let bn = cfg.batch_norm;

        // Scratch shared by every slot (slot 0's regions; later slots copy these offsets).
        let mut scratch = Vec::new();
        for (k, &n) in cfg.hidden.iter().enumerate() {
            let l = cfg.layer_names(k).x;
            let mut r = |what: &str, len: usize| a.alloc(format!("{l}.{what}"), len);
            let g_d = r("g_d", bsz * n);
            scratch.push(LayerRegion {
                state_offset: 0,
                x_tape: NONE,
                cur_x: r("cur_x", bsz * n),
                cur_r: r("cur_r", bsz * n),
                d: NONE,
                tau_m: NONE,
                tau_a: NONE,
                zm: NONE,
                za: NONE,
                u: NONE,
                xhat_x: NONE,
                xhat_r: NONE,
                invstd_x: NONE,
                invstd_r: NONE,
                g_s: r("g_s", bsz * n),
                g_zm: r("g_zm", bsz * n),
                g_za: r("g_za", bsz * n),
                r_m: r("r_m", bsz * n),
                r_a: r("r_a", bsz * n),
                g_direct: r("g_direct", bsz * n),
                g_d,
                g_cx: if bn { r("g_cx", bsz * n) } else { g_d },
                g_cr: if bn { r("g_cr", bsz * n) } else { g_d },
                g_m_carry: NONE,
                g_s_carry: NONE,
                g_b_carry: NONE,
            });
        }
        let g_z = a.alloc("readout.g_z", bsz * c);
        let readout_scratch = ReadoutRegion {
            z: NONE,
            tau_o: NONE,
            zo: NONE,
            xhat: NONE,
            invstd: NONE,
            g_o: NONE,
            g_zo: a.alloc("readout.g_zo", bsz * c),
            r_o: a.alloc("readout.r_o", bsz * c),
            g_z,
            g_zpre: if bn { a.alloc("readout.g_zpre", bsz * c) } else { g_z },
            loss_b: a.alloc("loss_b", bsz),
            correct_b: a.alloc("correct_b", bsz),
            sqerr_b: a.alloc("sqerr_b", bsz),
        };

        // A conv network's backward scratch, shared by every slot (the tape fields are filled per slot).
        let conv_scratch: Vec<ConvCellRegion> = match &cfg.conv {
            Some(spec) => {
                // Per cell `(image, state)` over the batch. A cell's backward uses its scratch and
                // is done with it before the cell below starts, so one set, sized by the largest
                // cell, serves them all; only `ḡ_s` is per cell (cell k writes the one of cell
                // k − 1 while it still reads its own scratch).
                let sizes: Vec<(usize, usize)> = (0..spec.cells.len())
                    .map(|k| {
                        let (_, h, w) = spec.cell_input(k);
                        let (ch, oh, ow) = spec.cell_output(k);
                        (bsz * ch * h * w, bsz * ch * oh * ow)
                    })
                    .collect();
                let image = sizes.iter().map(|s| s.0).max().unwrap_or(0);
                let state = sizes.iter().map(|s| s.1).max().unwrap_or(0);
                let mut r = |what: &str, len: usize| a.alloc(format!("conv.{what}"), len);
                let g_xhat = r("g_xhat", state);
                let shared = ConvCellRegion {
                    state_offset: 0,
                    conv_x: NONE,
                    xhat_x: NONE,
                    invstd_x: NONE,
                    pool_arg: NONE,
                    xhat: NONE,
                    z_m: NONE,
                    xhat_m: NONE,
                    invstd_m: NONE,
                    z_a: NONE,
                    xhat_a: NONE,
                    invstd_a: NONE,
                    tau_m: NONE,
                    tau_a: NONE,
                    theta: NONE,
                    u: NONE,
                    g_s: NONE,
                    g_xhat,
                    g_zm: r("g_zm", state),
                    g_za: r("g_za", state),
                    g_conv_m: r("g_conv_m", state),
                    g_conv_a: r("g_conv_a", state),
                    // Without a pool the input current is the normalised output itself (image = state).
                    g_pool: if spec.pool { r("g_pool", image) } else { g_xhat },
                    g_conv_x: r("g_conv_x", image),
                    g_m_carry: NONE,
                    g_s_carry: NONE,
                    g_b_carry: NONE,
                };
                sizes
                    .iter()
                    .enumerate()
                    .map(|(k, &(_, state))| ConvCellRegion {
                        g_s: a.alloc(format!("conv_snn{}.g_s", k + 1), state),
                        ..shared.clone()
                    })
                    .collect()
            }
            None => Vec::new(),
        };

        // The carried gradients of all slots, back to back.
        let carry = a.len() as u32;
        let mut conv_carries = Vec::new();
        let mut carries = Vec::new();
        for slot in 0..slots {
            let mut per_layer = Vec::new();
            for (k, &n) in cfg.hidden.iter().enumerate() {
                let l = cfg.layer_names(k).x;
                let len = if chunked { bsz * n } else { 0 };
                let mut r = |what: &str| a.alloc(format!("slot{slot}.{l}.{what}"), len);
                per_layer.push(if chunked {
                    (r("g_m_carry"), r("g_s_carry"), r("g_b_carry"))
                } else {
                    (NONE, NONE, NONE)
                });
            }
            carries.push(per_layer);
            // The conv cells' carries onto m', s', b' of this slot's step.
            let mut per_cell = Vec::new();
            if let Some(spec) = &cfg.conv {
                for k in 0..spec.cells.len() {
                    let (ch, oh, ow) = spec.cell_output(k);
                    let len = if chunked { bsz * ch * oh * ow } else { 0 };
                    let mut r = |what: &str| a.alloc(format!("slot{slot}.conv_snn{}.{what}", k + 1), len);
                    per_cell.push(if chunked {
                        (r("g_m_carry"), r("g_s_carry"), r("g_b_carry"))
                    } else {
                        (NONE, NONE, NONE)
                    });
                }
            }
            conv_carries.push(per_cell);
        }
        let carry_len = a.len() - carry as usize;

        // The tape of every slot.
        let mut slot_layers = Vec::new();
        let mut slot_readout = Vec::new();
        for (slot, slot_carries) in carries.iter().enumerate() {
            let mut layers = Vec::new();
            let mut state_offset = cell_state_len;
            for (k, &n) in cfg.hidden.iter().enumerate() {
                let l = cfg.layer_names(k).x;
                let tag = if chunked { format!("slot{slot}.{l}") } else { l.clone() };
                let mut r = |what: &str, len: usize| a.alloc(format!("{tag}.{what}"), len);
                let bn_len = if bn { bsz * n } else { 0 };
                let (g_m_carry, g_s_carry, g_b_carry) = slot_carries[k];
                layers.push(LayerRegion {
                    state_offset: state_offset as u32,
                    x_tape: r("x_tape", if k == 0 && cfg.conv.is_none() { bsz * cfg.inputs } else { 0 }),
                    d: r("d", bsz * n),
                    tau_m: r("tau_m", bsz * n),
                    tau_a: r("tau_a", bsz * n),
                    zm: r("zm", bsz * n),
                    za: r("za", bsz * n),
                    u: r("u", bsz * n),
                    xhat_x: r("xhat_x", bn_len),
                    xhat_r: r("xhat_r", bn_len),
                    invstd_x: r("invstd_x", if bn { n } else { 0 }),
                    invstd_r: r("invstd_r", if bn { n } else { 0 }),
                    g_m_carry,
                    g_s_carry,
                    g_b_carry,
                    ..scratch[k].clone()
                });
                state_offset += bsz * n;
            }
            let tag = if chunked { format!("slot{slot}.readout") } else { "readout".to_string() };
            let mut r = |what: &str, len: usize| a.alloc(format!("{tag}.{what}"), len);
            slot_readout.push(ReadoutRegion {
                z: r("z", bsz * c),
                tau_o: r("tau_o", bsz * c),
                zo: r("zo", bsz * c),
                xhat: r("xhat", if bn { bsz * c } else { 0 }),
                invstd: r("invstd", if bn { c } else { 0 }),
                g_o: r("g_o", bsz * c),
                ..readout_scratch.clone()
            });
            slot_layers.push(layers);
        }
        let layers = slot_layers[0].clone();
        let readout = slot_readout[0].clone();
        let conv = cfg.conv.as_ref().map(|spec| {
            // Per cell: (channels, image, state) sizes over the batch.
            let shapes: Vec<(usize, usize, usize)> = (0..spec.cells.len())
                .map(|k| {
                    let (_, h, w) = spec.cell_input(k);
                    let (ch, oh, ow) = spec.cell_output(k);
                    (ch, bsz * ch * h * w, bsz * ch * oh * ow)
                })
                .collect();
            let mut slot_cells = Vec::new();
            let mut slot_flat = Vec::new();
            let features = bsz * spec.flat_features();
            let dropout = spec.dropout > 0.0;
            for (slot, slot_carries) in conv_carries.iter().enumerate() {
                let mut cells = Vec::new();
                let mut state_offset = 0;
                for (k, &(ch, image, state)) in shapes.iter().enumerate() {
                    let tag =
                        if chunked { format!("slot{slot}.conv_snn{}", k + 1) } else { format!("conv_snn{}", k + 1) };
                    let mut r = |what: &str, len: usize| a.alloc(format!("{tag}.{what}"), len);
                    let conv_x = r("conv_x", image);
                    let (pool_arg, xhat) =
                        if spec.pool { (r("pool_arg", state), r("xhat", state)) } else { (NONE, conv_x) };
                    let (g_m_carry, g_s_carry, g_b_carry) = slot_carries[k];
                    cells.push(ConvCellRegion {
                        state_offset: state_offset as u32,
                        conv_x,
                        xhat_x: r("xhat_x", image),
                        invstd_x: r("invstd_x", ch),
                        pool_arg,
                        xhat,
                        z_m: r("z_m", state),
                        xhat_m: r("xhat_m", state),
                        invstd_m: r("invstd_m", ch),
                        z_a: r("z_a", state),
                        xhat_a: r("xhat_a", state),
                        invstd_a: r("invstd_a", ch),
                        tau_m: r("tau_m", state),
                        tau_a: r("tau_a", state),
                        theta: r("theta", state),
                        u: r("u", state),
                        g_m_carry,
                        g_s_carry,
                        g_b_carry,
                        ..conv_scratch[k].clone()
                    });
                    state_offset += state;
                }
                slot_cells.push(cells);
                slot_flat.push(a.alloc(format!("slot{slot}.conv.flat"), if dropout { features } else { 0 }));
            }
            ConvRegion {
                slot_cells,
                masks: a.alloc("conv.dropout_masks", if dropout { t * features } else { 0 }),
                slot_flat,
                g_flat: a.alloc("conv.g_flat", if dropout { features } else { 0 }),
            }
        });
        let mut eprop_region = eprop.map(|settings| {
            let (ni, nn) = (cfg.inputs, cfg.hidden[0]);
            let cols = ni + nn + 2 + usize::from(cfg.adaptive());
            let readout_params = c * nn + c + 2 * c * c + c + 1;
            let per_sample = bsz * nn * cols;
            let traces = a.len() as u32;
            let membrane = a.alloc("eprop.membrane", per_sample);
            let adaptation = if cfg.adaptive() { a.alloc("eprop.adaptation", per_sample) } else { NONE };
            let filtered = if settings.readout_filter { a.alloc("eprop.filtered", per_sample * c) } else { NONE };
            let jacobian = a.alloc("eprop.jacobian", bsz * c * readout_params);
            let traces_len = a.len() - traces as usize;
            EpropRegion {
                cols,
                readout_params,
                membrane,
                adaptation,
                filtered,
                jacobian,
                traces,
                traces_len,
                v: a.alloc("eprop.v", bsz * c * nn),
                signal: a.alloc("eprop.signal", bsz * nn),
                psi: a.alloc("eprop.psi", bsz * nn),
                readout_a: a.alloc("eprop.readout_a", bsz * c * c),
                feedback: NONE,
            }
        });
        // Weight-gradient partial sums of a step whose batch reduction is split (GPUs, small
        // layers), summed by fptt_norm; sized by the planner's dry run (0 when nothing splits).
        let split_partials = a.alloc("weight_grad_partials", split_len);
        let q = a.alloc("q", c * t * c);
        let running = a.alloc("running_stats", StatLayout::new(cfg).total_len);
        let metrics = a.alloc("metrics", 4 * t);
        // Streams: every step's readout o' `[T, B, C]`, read once per window when asked for.
        let predictions = if per_step_targets { a.alloc("predictions", t * bsz * c) } else { NONE };
        // The gradient-norm partial sums (fptt_norm writes them, fptt_update adds them up).
        let partials = a.alloc("norm_partials", NORM_PARTS as usize);
        // Constant for the engine's life, with e-prop's random feedback after it: keep them last
        // (poison_scratch stops before them).
        let spike_layers = a.alloc("spike_layers", 2 * cfg.state_blocks().len());
        let hyper = a.alloc("hyper", HYPER_STEP_SIZES + cfg.steps);
        if let (Some(region), Some(settings)) = (eprop_region.as_mut(), eprop) {
            if let Feedback::Random { .. } = settings.feedback {
                region.feedback = a.alloc("eprop.feedback", c * cfg.hidden[0]);
            }
        }
        WorkPlan {
            arena: a,
            inputs,
            targets,
            state,
            layers,
            readout,
            q,
            running,
            metrics,
            predictions,
            partials,
            split_partials,
            split_len,
            spike_layers,
            hyper,
            total_hidden,
            slot_layers,
            slot_readout,
            carry,
            carry_len,
            eprop: eprop_region,
            conv,
        }
    }

    /// Floats of the regions whose size follows the sequence length by the task's definition
    /// (the inputs of every step, `q`, per-step running statistics, per-step metrics, the step
    /// sizes), not by
    /// the learning rule: what stays when comparing the rules' memory.
    pub fn sequence_data_len(&self) -> usize {
        self.arena
            .regions()
            .iter()
            // `hyper` holds a step size per step (and four scalars): per-step data like the step infos.
            .filter(|(name, _, _)| matches!(name.as_str(), "inputs" | "q" | "running_stats" | "metrics" | "hyper"))
            .map(|(_, _, len)| len)
            .sum()
    }
}
