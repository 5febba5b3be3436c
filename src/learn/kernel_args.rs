//! Host twins of the WGSL argument structs in `shaders/shared/args.wgsl` and of `StepInfo` in
//! `shaders/shared/bindings.wgsl`. Field for field the same; `tests` checks every offset and the
//! size against naga's own layout of the WGSL.

use bytemuck::{Pod, Zeroable};

/// Marks an absent operand (`NONE` in WGSL).
pub const NONE: u32 = u32::MAX;

pub const LAYER_FUSED: u32 = 1;
pub const LAYER_ADAPTIVE: u32 = 2;
pub const LAYER_BN: u32 = 4;
pub const LAYER_DATA_INPUT: u32 = 8;
/// LIF/ALIF neurons: per-neuron `τm = σ(ρ_m)`, `τa = σ(ρ_a)` instead of LTC's gates.
pub const LAYER_CONSTANT_TAU: u32 = 16;
/// The threshold baseline is `CONV_B0` (a conv network's dense layer), not `B0`.
pub const LAYER_CONV_B0: u32 = 32;
pub const READOUT_BN: u32 = 1;
pub const READOUT_REGRESSION: u32 = 2;
pub const READOUT_FUSED_BACKWARD: u32 = 4;
/// Invocations of a `readout_step` workgroup (`READOUT_LANES` in shaders/readout_step.wgsl): it
/// holds `READOUT_LANES / C` samples.
pub const READOUT_LANES: u32 = 64;
/// `EpropArgs::flags` bits.
pub const EPROP_ALIF: u32 = 1;
pub const EPROP_FUSED: u32 = 2;
pub const EPROP_FILTER: u32 = 4;
pub const EPROP_RESET_IN_TRACE: u32 = 8;
pub const EPROP_ACCUMULATE: u32 = 16;
/// Outputs an e-prop kernel mixes in private memory (`EPROP_MAX_OUTPUTS` in WGSL).
pub const EPROP_MAX_OUTPUTS: u32 = 32;
/// A replica's hyperparameters at `work[hyper + HYPER_*]` (`HYPER_*` in args.wgsl): α, β, clip,
/// frozen, then T step sizes.
pub const HYPER_ALPHA: usize = 0;
pub const HYPER_BETA: usize = 1;
pub const HYPER_CLIP: usize = 2;
pub const HYPER_FROZEN: usize = 3;
/// Then one step size per time step of the sequence.
pub const HYPER_STEP_SIZES: usize = 4;
/// `OptimArgs::optimizer` bits.
pub const OPTIM_ADAMAX: u32 = 1;
pub const OPTIM_PLAIN: u32 = 2;

/// Twin of WGSL `StepInfo` (shaders/shared/bindings.wgsl).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct StepInfo {
    pub t: u32,
    pub steps: u32,
    pub valid: u32,
    pub training: u32,
    pub w_task: f32,
    pub w_aux: f32,
    pub aux_mode: u32,
    pub update_q: u32,
    pub bc2_sqrt: f32,
    /// Where this step's targets start in the targets region (0: one target per sequence).
    pub target_offset: u32,
    pub eval_batch_stats: u32,
    /// Replicas: where replica r's params/grad, opt and work start (× r); see `enter_replica`.
    pub params_stride: u32,
    pub opt_stride: u32,
    pub work_stride: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Twin of WGSL `LayerArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct LayerArgs {
    pub batch: u32,
    pub n: u32,
    pub n_in: u32,
    pub flags: u32,
    pub w_x: u32,
    pub c_x: u32,
    pub w_r: u32,
    pub c_r: u32,
    pub w_m: u32,
    pub c_m: u32,
    pub w_a: u32,
    pub c_a: u32,
    pub a_m: u32,
    pub a_a: u32,
    pub x_in: u32,
    pub m_prev: u32,
    pub s_prev: u32,
    pub b_prev: u32,
    pub m_next: u32,
    pub s_next: u32,
    pub b_next: u32,
    pub cur_x: u32,
    pub cur_r: u32,
    pub d: u32,
    pub tau_m: u32,
    pub tau_a: u32,
    pub zm: u32,
    pub za: u32,
    pub u: u32,
    pub g_s: u32,
    pub g_zm: u32,
    pub g_za: u32,
    pub r_m: u32,
    pub r_a: u32,
    pub g_direct: u32,
    pub threshold: f32,
    pub x_tape: u32,
    pub g_m_next: u32,
    pub g_b_next: u32,
    pub g_m_prev: u32,
    pub g_s_prev: u32,
    pub g_b_prev: u32,
    pub top_g_z: u32,
    pub top_w_o: u32,
    pub top_c: u32,
    pub top_g_s_add: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Twin of WGSL `ReadoutArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct ReadoutArgs {
    pub batch: u32,
    pub c: u32,
    pub n_top: u32,
    pub flags: u32,
    pub w_o: u32,
    pub c_o: u32,
    pub w_om: u32,
    pub c_om: u32,
    pub a_o: u32,
    pub s_top: u32,
    pub o_prev: u32,
    pub o_next: u32,
    pub z: u32,
    pub tau_o: u32,
    pub zo: u32,
    pub g_o: u32,
    pub g_zo: u32,
    pub r_o: u32,
    pub g_z: u32,
    pub targets: u32,
    pub loss_b: u32,
    pub correct_b: u32,
    pub sqerr_b: u32,
    pub q: u32,
    pub metrics: u32,
    pub spikes: u32,
    pub spike_layers: u32,
    pub layers: u32,
    pub g_o_prev: u32,
    /// Streams: o' of every step, `[T, B, C]` (NONE: not kept).
    pub predictions: u32,
}

/// Twin of WGSL `BnArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct BnArgs {
    pub batch: u32,
    pub features: u32,
    pub x: u32,
    pub xhat: u32,
    pub invstd: u32,
    pub gamma: u32,
    pub beta: u32,
    pub running: u32,
    pub g_y: u32,
    pub g_x: u32,
    pub accumulate: u32,
    pub _pad1: u32,
}

/// Twin of WGSL `WeightGradArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct WeightGradArgs {
    pub batch: u32,
    pub rows: u32,
    pub p_width: u32,
    pub q_width: u32,
    pub g: u32,
    pub p: u32,
    pub q: u32,
    pub out: u32,
    pub bias: u32,
    pub accumulate: u32,
    /// Batch split S: 0 or 1 reduces the whole batch into `grad`; S > 1 writes S partial sums
    /// `[S][rows × (p_width + q_width + 1)]` at work offset `partials` instead.
    pub split: u32,
    pub partials: u32,
}

/// Jobs one `weight_grad` dispatch runs (`WEIGHT_GRAD_JOBS` in WGSL): five 48-byte jobs and a
/// 16-byte header fill one 256-byte argument slot.
pub const WEIGHT_GRAD_JOBS: usize = 5;

/// Twin of WGSL `WeightGradJobs`: the weight-gradient and gate-slope jobs of one dispatch (a job
/// with `rows = 0` is a dot product: `grad[out] (+)= Σ_{i < batch} g[i]·p[i]`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct WeightGradJobs {
    pub jobs: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
    pub job: [WeightGradArgs; WEIGHT_GRAD_JOBS],
}

impl WeightGradJobs {
    /// Up to `WEIGHT_GRAD_JOBS` jobs in one dispatch.
    pub fn new(jobs: &[WeightGradArgs]) -> Self {
        assert!(
            !jobs.is_empty() && jobs.len() <= WEIGHT_GRAD_JOBS,
            "{} weight-gradient jobs in one dispatch",
            jobs.len()
        );
        let mut all = WeightGradJobs { jobs: jobs.len() as u32, ..Default::default() };
        all.job[..jobs.len()].copy_from_slice(jobs);
        all
    }
}

/// Twin of WGSL `InputGradArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct InputGradArgs {
    pub batch: u32,
    pub cols: u32,
    pub add: u32,
    pub out: u32,
    pub k1: u32,
    pub g1: u32,
    pub w1: u32,
    pub ld1: u32,
    pub col1: u32,
    pub k2: u32,
    pub g2: u32,
    pub w2: u32,
    pub ld2: u32,
    pub col2: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Twin of WGSL `ConvArgs`: one stride-1 zero-padded convolution (`conv_forward`,
/// `conv_input_grad`, `conv_weight_grad`; see args.wgsl).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct ConvArgs {
    pub batch: u32,
    pub in_c: u32,
    pub out_c: u32,
    pub h: u32,
    pub w: u32,
    pub k: u32,
    pub pad: u32,
    /// `h + 2·pad − k + 1` and `w + 2·pad − k + 1`.
    pub oh: u32,
    pub ow: u32,
    pub x: u32,
    /// A second input added to `x` (NONE: none).
    pub x2: u32,
    pub g: u32,
    pub weight: u32,
    pub bias: u32,
    pub out: u32,
    pub accumulate: u32,
    /// `conv_weight_grad` only: S > 1 writes S partial sums at work offset `partials`.
    pub split: u32,
    pub partials: u32,
    /// `x` advances by `t·x_step` at step t (the first cell's frames; 0 otherwise).
    pub x_step: u32,
    pub _pad1: u32,
}

/// Twin of WGSL `PoolArgs`: the 2×2 max-pool and its backward.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct PoolArgs {
    pub planes: u32,
    pub h: u32,
    pub w: u32,
    pub x: u32,
    pub y: u32,
    pub arg: u32,
    pub g_y: u32,
    pub g_x: u32,
    pub accumulate: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// Twin of WGSL `Bn2dArgs`: per-channel batch norm of an NCHW region.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct Bn2dArgs {
    pub batch: u32,
    pub channels: u32,
    pub hw: u32,
    pub x: u32,
    pub xhat: u32,
    pub invstd: u32,
    pub gamma: u32,
    pub beta: u32,
    pub running: u32,
    pub g_y: u32,
    pub g_x: u32,
    pub accumulate: u32,
}

/// Twin of WGSL `DropoutArgs`: `out[i] = x[i]·mask[t·len + i]` for `i < len` (`dropout`: the
/// conv network's mask on the last cell's spikes, and on their gradient in the backward).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct DropoutArgs {
    pub len: u32,
    pub x: u32,
    /// The masks of the sequence, `[T, len]` in work.
    pub mask: u32,
    pub out: u32,
}

/// Twin of WGSL `ConvNeuronArgs`: the element-wise part of a conv cell step (`conv_neuron`) and its
/// backward (`conv_neuron_backward`), every field but `len` a work offset (`NONE` where optional).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct ConvNeuronArgs {
    pub len: u32,
    pub xhat: u32,
    pub z_m: u32,
    pub z_a: u32,
    pub m_prev: u32,
    pub s_prev: u32,
    pub b_prev: u32,
    pub tau_m: u32,
    pub tau_a: u32,
    pub theta: u32,
    pub u: u32,
    pub m_next: u32,
    pub s_next: u32,
    pub b_next: u32,
    pub g_s: u32,
    pub g_m_next: u32,
    pub g_b_next: u32,
    pub g_xhat: u32,
    pub g_zm: u32,
    pub g_za: u32,
    pub g_m_prev: u32,
    pub g_s_prev: u32,
    pub g_b_prev: u32,
    /// `conv_neuron_backward`: ḡ carried onto `s'` from the next step inside a chunk (NONE: 0).
    pub g_s_add: u32,
}

/// Twin of WGSL `RangeArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct RangeArgs {
    pub len: u32,
    pub src: u32,
    pub dst: u32,
    pub grad_len: u32,
}

/// Twin of WGSL `OptimArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct OptimArgs {
    pub len: u32,
    pub parts: u32,
    pub partials: u32,
    pub optimizer: u32,
    /// Work offset of the replica's hyperparameters (`HYPER_*`: α, β, clip, frozen, step sizes).
    pub hyper: u32,
    pub _pad3: u32,
    pub _pad4: u32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    /// Split weight gradients fptt_norm sums into `grad` first (`regions` of `gather`).
    pub regions: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
    pub gather: [SplitRegion; SPLIT_REGIONS],
}

/// Split weight-gradient regions one update gathers at most (`SPLIT_REGIONS` in WGSL): with the
/// optimizer's fields they fill one 256-byte argument slot.
pub const SPLIT_REGIONS: usize = 8;

/// Twin of WGSL `SplitRegion`: a weight gradient whose batch reduction ran `split` ways, its
/// partial sums `[split][rows × (width + 1)]` at work offset `partials` (bias column last), to be
/// summed into `grad[out + o·width + i]` and `grad[bias + o]`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable, PartialEq)]
pub struct SplitRegion {
    pub out: u32,
    pub width: u32,
    pub rows: u32,
    pub bias: u32,
    pub partials: u32,
    pub split: u32,
}

/// Twin of WGSL `SplitGatherArgs`: `split_gather` sums one split weight gradient's partials into
/// `grad` (a conv network's convolutions; `accumulate` 1 adds, inside a chunk).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct SplitGatherArgs {
    pub region: SplitRegion,
    pub accumulate: u32,
    pub _pad0: u32,
}

/// Twin of WGSL `EpropArgs`: e-prop's traces and readout Jacobian for one step (see args.wgsl).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct EpropArgs {
    pub batch: u32,
    pub n: u32,
    pub n_in: u32,
    pub c: u32,
    pub cols: u32,
    pub flags: u32,
    pub threshold: f32,
    pub p_len: u32,
    pub x: u32,
    pub m_prev: u32,
    pub s_prev: u32,
    pub b_prev: u32,
    pub s_next: u32,
    pub b_next: u32,
    pub d: u32,
    pub tau_m: u32,
    pub tau_a: u32,
    pub u: u32,
    pub z: u32,
    pub o_prev: u32,
    pub tau_o: u32,
    pub zo: u32,
    pub g_o: u32,
    pub membrane: u32,
    pub adaptation: u32,
    pub filtered: u32,
    pub jacobian: u32,
    pub v: u32,
    pub signal: u32,
    pub feedback: u32,
    pub w_x: u32,
    pub c_x: u32,
    pub w_r: u32,
    pub c_r: u32,
    pub w_m: u32,
    pub w_a: u32,
    pub w_o: u32,
    pub c_o: u32,
    pub w_om: u32,
    pub c_om: u32,
    pub a_o: u32,
    pub s_top: u32,
    pub psi: u32,
    pub readout_a: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::naga;

    fn wgsl_module() -> naga::Module {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/shared/");
        let src = ["bindings.wgsl", "args.wgsl"]
            .iter()
            .map(|f| std::fs::read_to_string(format!("{dir}{f}")).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        naga::front::wgsl::parse_str(&src).expect("shared WGSL parses")
    }

    /// (size, [(member, offset)]) of a WGSL struct as naga lays it out.
    fn wgsl_layout(module: &naga::Module, name: &str) -> (u32, Vec<(String, u32)>) {
        for (_, ty) in module.types.iter() {
            if ty.name.as_deref() == Some(name) {
                if let naga::TypeInner::Struct { members, span } = &ty.inner {
                    return (*span, members.iter().map(|m| (m.name.clone().unwrap(), m.offset)).collect());
                }
            }
        }
        panic!("no WGSL struct {name}");
    }

    macro_rules! check_twin {
        ($module:expr, $ty:ident, [$($field:ident),* $(,)?]) => {{
            let (size, members) = wgsl_layout(&$module, stringify!($ty));
            assert_eq!(size as usize, std::mem::size_of::<$ty>(), "size of {}", stringify!($ty));
            let host: Vec<(String, u32)> =
                vec![$((stringify!($field).to_string(), std::mem::offset_of!($ty, $field) as u32)),*];
            assert_eq!(members, host, "members of {}", stringify!($ty));
        }};
    }

    #[test]
    fn host_structs_match_their_wgsl_twins() {
        let m = wgsl_module();
        check_twin!(
            m,
            EpropArgs,
            [
                batch, n, n_in, c, cols, flags, threshold, p_len, x, m_prev, s_prev, b_prev, s_next, b_next, d, tau_m,
                tau_a, u, z, o_prev, tau_o, zo, g_o, membrane, adaptation, filtered, jacobian, v, signal, feedback,
                w_x, c_x, w_r, c_r, w_m, w_a, w_o, c_o, w_om, c_om, a_o, s_top, psi, readout_a
            ]
        );
        check_twin!(
            m,
            StepInfo,
            [
                t,
                steps,
                valid,
                training,
                w_task,
                w_aux,
                aux_mode,
                update_q,
                bc2_sqrt,
                target_offset,
                eval_batch_stats,
                params_stride,
                opt_stride,
                work_stride,
                _pad0,
                _pad1
            ]
        );
        check_twin!(
            m,
            LayerArgs,
            [
                batch,
                n,
                n_in,
                flags,
                w_x,
                c_x,
                w_r,
                c_r,
                w_m,
                c_m,
                w_a,
                c_a,
                a_m,
                a_a,
                x_in,
                m_prev,
                s_prev,
                b_prev,
                m_next,
                s_next,
                b_next,
                cur_x,
                cur_r,
                d,
                tau_m,
                tau_a,
                zm,
                za,
                u,
                g_s,
                g_zm,
                g_za,
                r_m,
                r_a,
                g_direct,
                threshold,
                x_tape,
                g_m_next,
                g_b_next,
                g_m_prev,
                g_s_prev,
                g_b_prev,
                top_g_z,
                top_w_o,
                top_c,
                top_g_s_add,
                _pad0,
                _pad1
            ]
        );
        check_twin!(
            m,
            ReadoutArgs,
            [
                batch,
                c,
                n_top,
                flags,
                w_o,
                c_o,
                w_om,
                c_om,
                a_o,
                s_top,
                o_prev,
                o_next,
                z,
                tau_o,
                zo,
                g_o,
                g_zo,
                r_o,
                g_z,
                targets,
                loss_b,
                correct_b,
                sqerr_b,
                q,
                metrics,
                spikes,
                spike_layers,
                layers,
                g_o_prev,
                predictions
            ]
        );
        check_twin!(m, BnArgs, [batch, features, x, xhat, invstd, gamma, beta, running, g_y, g_x, accumulate, _pad1]);
        check_twin!(
            m,
            WeightGradArgs,
            [batch, rows, p_width, q_width, g, p, q, out, bias, accumulate, split, partials]
        );
        check_twin!(m, SplitRegion, [out, width, rows, bias, partials, split]);
        check_twin!(m, SplitGatherArgs, [region, accumulate, _pad0]);
        check_twin!(m, WeightGradJobs, [jobs, _pad0, _pad1, _pad2, job]);
        check_twin!(
            m,
            InputGradArgs,
            [batch, cols, add, out, k1, g1, w1, ld1, col1, k2, g2, w2, ld2, col2, _pad0, _pad1]
        );
        check_twin!(
            m,
            ConvArgs,
            [
                batch, in_c, out_c, h, w, k, pad, oh, ow, x, x2, g, weight, bias, out, accumulate, split, partials,
                x_step, _pad1
            ]
        );
        check_twin!(m, PoolArgs, [planes, h, w, x, y, arg, g_y, g_x, accumulate, _pad0, _pad1, _pad2]);
        check_twin!(m, Bn2dArgs, [batch, channels, hw, x, xhat, invstd, gamma, beta, running, g_y, g_x, accumulate]);
        check_twin!(
            m,
            ConvNeuronArgs,
            [
                len, xhat, z_m, z_a, m_prev, s_prev, b_prev, tau_m, tau_a, theta, u, m_next, s_next, b_next, g_s,
                g_m_next, g_b_next, g_xhat, g_zm, g_za, g_m_prev, g_s_prev, g_b_prev, g_s_add
            ]
        );
        check_twin!(m, RangeArgs, [len, src, dst, grad_len]);
        check_twin!(m, DropoutArgs, [len, x, mask, out]);
        check_twin!(
            m,
            OptimArgs,
            [
                len,
                parts,
                partials,
                optimizer,
                hyper,
                _pad3,
                _pad4,
                beta1,
                beta2,
                eps,
                one_minus_beta1,
                one_minus_beta2,
                regions,
                _pad0,
                _pad1,
                _pad2,
                gather
            ]
        );
    }

    #[test]
    fn flag_constants_match_wgsl() {
        let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/shared/args.wgsl")).unwrap();
        for (name, value) in [
            ("LAYER_FUSED", LAYER_FUSED),
            ("LAYER_ADAPTIVE", LAYER_ADAPTIVE),
            ("LAYER_BN", LAYER_BN),
            ("LAYER_CONV_B0", LAYER_CONV_B0),
            ("LAYER_DATA_INPUT", LAYER_DATA_INPUT),
            ("LAYER_CONSTANT_TAU", LAYER_CONSTANT_TAU),
            ("READOUT_BN", READOUT_BN),
            ("READOUT_REGRESSION", READOUT_REGRESSION),
            ("READOUT_FUSED_BACKWARD", READOUT_FUSED_BACKWARD),
            ("OPTIM_ADAMAX", OPTIM_ADAMAX),
            ("OPTIM_PLAIN", OPTIM_PLAIN),
            ("EPROP_ALIF", EPROP_ALIF),
            ("EPROP_FUSED", EPROP_FUSED),
            ("EPROP_FILTER", EPROP_FILTER),
            ("EPROP_RESET_IN_TRACE", EPROP_RESET_IN_TRACE),
            ("EPROP_ACCUMULATE", EPROP_ACCUMULATE),
            ("EPROP_MAX_OUTPUTS", EPROP_MAX_OUTPUTS),
            ("WEIGHT_GRAD_JOBS", WEIGHT_GRAD_JOBS as u32),
            ("SPLIT_REGIONS", SPLIT_REGIONS as u32),
        ] {
            assert!(src.contains(&format!("const {name}: u32 = {value}u;")), "{name} differs from WGSL");
        }
        let readout_step =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/readout_step.wgsl")).unwrap();
        assert!(readout_step.contains(&format!("const READOUT_LANES: u32 = {READOUT_LANES}u;")));
    }
}
