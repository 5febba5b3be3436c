// The engine's storage (group 0) and the per-step info (group 1, binding 1), shared by every
// kernel. All buffers are flat f32 arrays addressed by offsets that the host plans once:
//   params: every parameter, trainable ones first (src/model/layout.rs)
//   grad:   ∇ℓ_t of each parameter, same offsets as params
//   opt:    [W̄ | λ | first moment | second moment], each `trainable_len` long
//   work:   activations, the one-step tape, inputs, targets, the table q, running statistics,
//           per-step metrics (src/learn/plan.rs)
@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> opt: array<f32>;
@group(0) @binding(3) var<storage, read_write> work: array<f32>;

// Twin: `StepInfo` in src/learn/kernel_args.rs. One per time step, bound with a dynamic offset.
// Arguments and step info are read-only storage, not uniforms: see src/gpu/kernels.rs.
struct StepInfo {
    t: u32,
    steps: u32,
    // Samples that count in losses and metrics (evaluation pads the last batch).
    valid: u32,
    // 1: training (batch statistics, gradients, q updates); 0: evaluation.
    training: u32,
    // Loss weights of this step: (t+1)/T and 1 − (t+1)/T.
    w_task: f32,
    w_aux: f32,
    // 0: no auxiliary term, 1: the table q, 2: uniform targets 1/C.
    aux_mode: u32,
    // 1 when this step writes into q (training a classifier, t < T−1).
    update_q: u32,
    // Adam/Adamax: √(1 − β2ⁿ) for this update's n, computed on the host in f64 (the step size
    // lr/(1 − β1ⁿ) is per replica: HYPER_STEP_SIZES in args.wgsl).
    bc2_sqrt: f32,
    // Where this step's targets start in the targets region: 0 when a sequence has one target
    // per sample (read at every step), t·B·C (labels: t·B) when every step has its own (streams).
    target_offset: u32,
    // Evaluation only: 1 normalises with the batch's own statistics (over the `valid` samples)
    // instead of the running ones; nothing is written back.
    eval_batch_stats: u32,
    // Replicas (R models of one shape stepped together, the replica index in the dispatch's z):
    // replica r's params and grad start at r·params_stride, its opt at r·opt_stride, its work at
    // r·work_stride. One replica: all three are unused (r = 0).
    params_stride: u32,
    opt_stride: u32,
    work_stride: u32,
    _pad0: u32,
    _pad1: u32,
}
@group(1) @binding(1) var<storage, read> step: StepInfo;

// Where this invocation's replica starts in params and grad (rp), opt (ro) and work (rw): every
// index into the storage buffers adds one of them. Set by `enter_replica` first thing in every
// entry point, from the z of its workgroup.
var<private> rp: u32;
var<private> ro: u32;
var<private> rw: u32;

fn enter_replica(z: u32) {
    rp = z * step.params_stride;
    ro = z * step.opt_stride;
    rw = z * step.work_stride;
}

const NONE: u32 = 0xffffffffu;

// A gate slope: the parameter at `offset`, or 1 where the model has none (NONE: the conv
// network's dense layer and readout, whose gates are plain sigmoids).
fn slope_or_one(offset: u32) -> f32 {
    if offset == NONE {
        return 1.0;
    }
    return params[rp + offset];
}
const WORKGROUP: u32 = 64u;

// Flat invocation index of a 1-D problem dispatched as a 2-D grid of 64-wide workgroups
// (the host folds dispatches larger than 65535 workgroups into y).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * WORKGROUP + gid.x;
}

