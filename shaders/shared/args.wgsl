// Per-dispatch arguments (group 1, binding 0, read-only storage at a dynamic offset). Every field is a u32 offset into
// one of the group-0 buffers unless noted; NONE marks an absent operand. Each struct's twin, with a
// size/offset test against this file, lives in src/learn/kernel_args.rs.

// Twin: `LayerArgs`. One hidden layer (LTC, ALIF or LIF) at one state parity.
struct LayerArgs {
    batch: u32,
    n: u32,
    n_in: u32,
    // bit 0: fused input/recurrent map; bit 1: adaptive threshold; bit 2: batch norm;
    // bit 3: the layer input is the data (offset advances by t·B·I each step);
    // bit 4: LIF/ALIF: τm = σ(ρ_m), τa = σ(ρ_a) per neuron (ρ at w_m, w_a; no gates, no c_m, c_a, slopes);
    // bit 5: the threshold's baseline is CONV_B0 (a conv network's dense layer), else B0.
    // w_r NONE (not fused): no recurrent map, d = cur_x (a conv network's dense layer);
    // a_m, a_a NONE: slopes 1.
    flags: u32,
    // params (and grad) offsets
    w_x: u32,
    c_x: u32,
    w_r: u32,
    c_r: u32,
    w_m: u32,
    c_m: u32,
    w_a: u32,
    c_a: u32,
    a_m: u32,
    a_a: u32,
    // work offsets: input and state
    x_in: u32,
    m_prev: u32,
    s_prev: u32,
    b_prev: u32,
    m_next: u32,
    s_next: u32,
    b_next: u32,
    // work offsets: the one-step tape
    cur_x: u32,
    cur_r: u32,
    d: u32,
    tau_m: u32,
    tau_a: u32,
    zm: u32,
    za: u32,
    u: u32,
    // work offsets: backward
    g_s: u32,
    g_zm: u32,
    g_za: u32,
    r_m: u32,
    r_a: u32,
    g_direct: u32,
    // f32: the fixed threshold (unused when adaptive)
    threshold: f32,
    // work offset: this step's data input [B, I], copied here by layer_current (data layer only)
    x_tape: u32,
    // Backpropagation through a chunk of steps (NONE in one-step FPTT): the gradients carried
    // from the next step onto this step's outputs m', b' (read), and the ones this step passes
    // on to the previous step's m, s, b (written: their element-wise parts; the matrix parts
    // through the gates and the recurrent map are added by input_grad).
    g_m_next: u32,
    g_b_next: u32,
    g_m_prev: u32,
    g_s_prev: u32,
    g_b_prev: u32,
    // The top layer's ḡ_s straight from the readout (one dispatch fewer than input_grad):
    // layer_backward_neuron computes ḡ_s[b, j] = add[b, j] + Σ_o ḡ_z[b, o]·W_o[o, j] itself when
    // top_g_z is not NONE (top_g_z: the readout's ḡ_z [B, C], top_w_o: W_o [C, N] in params,
    // top_c: C, top_g_s_add: ḡ_s carried from the next step inside a chunk, or NONE).
    top_g_z: u32,
    top_w_o: u32,
    top_c: u32,
    top_g_s_add: u32,
    _pad0: u32,
    _pad1: u32,
}

const LAYER_FUSED: u32 = 1u;
const LAYER_ADAPTIVE: u32 = 2u;
const LAYER_BN: u32 = 4u;
const LAYER_DATA_INPUT: u32 = 8u;
const LAYER_CONSTANT_TAU: u32 = 16u;
const LAYER_CONV_B0: u32 = 32u;

// Twin: `ReadoutArgs`. The LTC readout, the loss and the metrics at one state parity.
struct ReadoutArgs {
    batch: u32,
    c: u32,
    n_top: u32,
    // bit 0: batch norm; bit 1: regression loss (else classification)
    flags: u32,
    w_o: u32,
    c_o: u32,
    w_om: u32,
    c_om: u32,
    a_o: u32,
    s_top: u32,
    o_prev: u32,
    o_next: u32,
    z: u32,
    tau_o: u32,
    zo: u32,
    g_o: u32,
    g_zo: u32,
    r_o: u32,
    g_z: u32,
    targets: u32,
    loss_b: u32,
    correct_b: u32,
    sqerr_b: u32,
    q: u32,
    // per-step metrics: loss[T], correct[T], sqerr[T], spikes[T]
    metrics: u32,
    // the new spikes of every hidden layer: layer k's [B, N_k] block starts at
    // spikes + table[2k], with N_k = table[2k + 1] (u32 pairs at work offset spike_layers)
    spikes: u32,
    spike_layers: u32,
    layers: u32,
    // Backpropagation through a chunk: the previous step's ḡ_o, to which this step's
    // ḡ_o'·(1 − τo) is added (NONE in one-step FPTT).
    g_o_prev: u32,
    // Streams: o' of every step, [T, B, C] (NONE: not kept).
    predictions: u32,
}

const READOUT_BN: u32 = 1u;
const READOUT_REGRESSION: u32 = 2u;
// readout_step also runs the readout's backward (one-step training).
const READOUT_FUSED_BACKWARD: u32 = 4u;

// Twin: `BnArgs`. Per-step batch normalisation of a [B, F] region, in place.
struct BnArgs {
    batch: u32,
    features: u32,
    x: u32,
    xhat: u32,
    invstd: u32,
    gamma: u32,
    beta: u32,
    // running mean of step 0; step t at + t·F, variances at + (T + t)·F
    running: u32,
    g_y: u32,
    g_x: u32,
    // backward: add ∇γ, ∇δ to the gradient (the steps of a chunk) instead of writing them
    accumulate: u32,
    _pad1: u32,
}

// Twin: `WeightGradArgs`. grad[out + o·(P+Q) + i] = Σ_b G[b,o]·[P ; Q][b,i], bias = Σ_b G[b,o]
// (added to what is there when accumulate is 1: the steps of a chunk sum their gradients).
// split S > 1: S groups of workgroups each reduce ⌈B/S⌉ samples into work[partials + s·rows·(P+Q+1)
// + o·(P+Q+1) + i] (bias column last) instead, for a later fixed-order sum; 0 or 1: into grad.
struct WeightGradArgs {
    batch: u32,
    rows: u32,
    p_width: u32,
    q_width: u32,
    g: u32,
    p: u32,
    q: u32,
    out: u32,
    bias: u32,
    accumulate: u32,
    split: u32,
    partials: u32,
}

// Twin: `WeightGradJobs`. One weight_grad dispatch runs up to WEIGHT_GRAD_JOBS jobs, each a
// WeightGradArgs: job j owns the workgroups after those of jobs 0..j (a matrix job
// mm_blocks(rows, P+Q+1)·S of them, a dot job one). rows = 0 marks a dot job:
// grad[out] (+)= Σ_{i < batch} work[g + i]·work[p + i] (a gate slope's gradient, method §3).
struct WeightGradJobs {
    jobs: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    job: array<WeightGradArgs, 5>,
}

const WEIGHT_GRAD_JOBS: u32 = 5u;

// Twin: `InputGradArgs`. out[b,j] = add[b,j] + Σ_o G1[b,o]·W1[o, col1 + j] + Σ_o G2[b,o]·W2[o, col2 + j]
// (G in work, W in params with row length ld; k2 = 0 drops the second product).
struct InputGradArgs {
    batch: u32,
    cols: u32,
    add: u32,
    out: u32,
    k1: u32,
    g1: u32,
    w1: u32,
    ld1: u32,
    col1: u32,
    k2: u32,
    g2: u32,
    w2: u32,
    ld2: u32,
    col2: u32,
    _pad0: u32,
    _pad1: u32,
}

// Twin: `RangeArgs`. zero_fill: work[dst .. dst + len] = 0 and grad[0 .. grad_len] = 0;
// copy_range: work[dst + i] = work[src + i] for i < len.
struct RangeArgs {
    len: u32,
    src: u32,
    dst: u32,
    grad_len: u32,
}

// Twin: `SplitRegion`. A weight gradient whose batch reduction ran `split` ways: partial sums
// [split][rows × (width + 1)] at work[partials] (bias column last), summed by fptt_norm into
// grad[out + o·width + i] and grad[bias + o].
struct SplitRegion {
    out: u32,
    width: u32,
    rows: u32,
    bias: u32,
    partials: u32,
    split: u32,
}

const SPLIT_REGIONS: u32 = 8u;

// Twin: `SplitGatherArgs`. split_gather: the partial sums of one split weight gradient into grad
// (accumulate 1: added to what grad holds).
struct SplitGatherArgs {
    region: SplitRegion,
    accumulate: u32,
    _pad0: u32,
}

// Twin: `OptimArgs`. The fused FPTT update over the trainable range [0, len).
struct OptimArgs {
    len: u32,
    parts: u32,
    partials: u32,
    // bit 0: Adamax (else Adam); bit 1: a plain optimizer step with the loss gradient only
    // (BPTT: no −λ + α(W − W̄) term, λ and W̄ untouched)
    optimizer: u32,
    // work offset of the replica's own hyperparameters: [α, β, clip, frozen, step sizes]
    // (HYPER_* below), so that replicas stepped together can differ in them.
    hyper: u32,
    _pad3: u32,
    _pad4: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    // 1 − β1 and 1 − β2 computed in f64 on the host (as PyTorch passes them): 1 − f32(0.999)
    // is off by 1.3e-5 relative.
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    // split weight gradients fptt_norm gathers into grad first
    regions: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    gather: array<SplitRegion, 8>,
}

const OPTIM_ADAMAX: u32 = 1u;
// The replica's hyperparameters at work[hyper + HYPER_*]: α, β, the clipping norm, 1 when it
// diverged and is frozen (no update touches its W, W̄, λ or moments again), then per time step t
// of the sequence the Adam/Adamax step size lr/(1 − β1ⁿ) of the update made at step t (its own
// lr, computed on the host in f64, so that a replica steps exactly as its run alone).
const HYPER_ALPHA: u32 = 0u;
const HYPER_BETA: u32 = 1u;
const HYPER_CLIP: u32 = 2u;
const HYPER_FROZEN: u32 = 3u;
const HYPER_STEP_SIZES: u32 = 4u;
const OPTIM_PLAIN: u32 = 2u;

// Twin: `EpropArgs`. e-prop (method §7) for one hidden LIF/ALIF layer and the readout at one state
// parity: the step's forward (layer tape, states, readout), the traces and the gradient targets.
// Trace column c of neuron j: c < n_in the input synapse W[j, c], then the recurrent synapses
// W[j, n_in + i], then the bias, ρ_m and (ALIF) ρ_a; `cols` of them per neuron.
struct EpropArgs {
    batch: u32,
    n: u32,
    n_in: u32,
    c: u32,
    cols: u32,
    // bits: EPROP_ALIF, EPROP_FUSED, EPROP_FILTER, EPROP_RESET_IN_TRACE, EPROP_ACCUMULATE
    flags: u32,
    // f32: the fixed threshold (LIF)
    threshold: f32,
    // readout parameters per sample and output in the Jacobian: C·N + C + 2C² + C + 1
    p_len: u32,
    // work: the layer's input and states around this step, and its tape
    x: u32,
    m_prev: u32,
    s_prev: u32,
    b_prev: u32,
    s_next: u32,
    b_next: u32,
    d: u32,
    tau_m: u32,
    tau_a: u32,
    u: u32,
    // work: the readout's forward and this step's ḡ_o = ∂ℓ_t/∂o'
    z: u32,
    o_prev: u32,
    tau_o: u32,
    zo: u32,
    g_o: u32,
    // work: the traces ε^m, ε^a [B, N, cols], φ [B, C, N, cols], J [B, C, p_len]
    membrane: u32,
    adaptation: u32,
    filtered: u32,
    jacobian: u32,
    // work: D·B [B, C, N] and the learning signal [B, N] of this step; the random feedback [C, N]
    // (NONE: symmetric feedback, B = W_o)
    v: u32,
    signal: u32,
    feedback: u32,
    // params (and grad) offsets; w_r, c_r NONE when fused; w_a (ρ_a) NONE for LIF
    w_x: u32,
    c_x: u32,
    w_r: u32,
    c_r: u32,
    w_m: u32,
    w_a: u32,
    w_o: u32,
    c_o: u32,
    w_om: u32,
    c_om: u32,
    a_o: u32,
    // work: the top layer's new spikes [B, N] (the readout's input)
    s_top: u32,
    // work: this step's ψ(u − θ) [B, N] and the readout's A [B, C, C], written by eprop_signal for
    // the two kernels after it
    psi: u32,
    readout_a: u32,
}

const EPROP_ALIF: u32 = 1u;
const EPROP_FUSED: u32 = 2u;
const EPROP_FILTER: u32 = 4u;
const EPROP_RESET_IN_TRACE: u32 = 8u;
const EPROP_ACCUMULATE: u32 = 16u;
// The readout's outputs a trace or Jacobian element mixes privately (the engine refuses more).
const EPROP_MAX_OUTPUTS: u32 = 32u;

// Twin: `ConvArgs`. One stride-1 convolution with zero padding (method §9), NCHW activations in
// work, weight [out_c, in_c, k, k] and bias [out_c] in params (conv_forward, conv_input_grad) or
// their gradients in grad (conv_weight_grad); oh = h + 2·pad − k + 1, ow likewise (set by the host).
//   conv_forward:     out[b, o, i, j] (+)= bias[o] + Σ_{c,u,v} W[o, c, u, v]·X[b, c, i+u−pad, j+v−pad]
//   conv_input_grad:  out[b, c, y, x] (+)= Σ_{o,u,v} g[b, o, y−u+pad, x−v+pad]·W[o, c, u, v]
//   conv_weight_grad: ∇W[o, c, u, v] (+)= Σ_{b,i,j} g[b, o, i, j]·X[b, c, i+u−pad, j+v−pad],
//                     ∇bias[o] (+)= Σ_{b,i,j} g[b, o, i, j]
// with X = x + x2 (x at + t·x_step; x2 NONE: X = x; the gates convolve a sum, x̂ + m, without storing it). bias NONE:
// no bias. accumulate = 1 adds to out (or grad) instead of writing. conv_weight_grad with split
// S > 1: S copies of the grid each reduce ⌈B·oh·ow/S⌉ (sample, pixel) terms into
// work[partials + s·out_c·(in_c·k·k + 1) + o·(in_c·k·k + 1) + col] (bias column last, the layout
// of SplitRegion) instead of grad.
struct ConvArgs {
    batch: u32,
    in_c: u32,
    out_c: u32,
    h: u32,
    w: u32,
    k: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    x: u32,
    x2: u32,
    g: u32,
    weight: u32,
    bias: u32,
    out: u32,
    accumulate: u32,
    split: u32,
    partials: u32,
    // x advances by step.t·x_step (the first cell reads frame t of the sequence: B·C·H·W; 0 otherwise)
    x_step: u32,
    _pad1: u32,
}

// Twin: `PoolArgs`. 2×2 max-pool, stride 2, no padding (floor: an odd last row or column is
// dropped) over `planes` = B·C planes of h × w in work: y [planes, h/2, w/2]; arg keeps, per output,
// the position 0..3 of the element it took in its window (row-major, first maximum on ties) as an
// f32. maxpool_backward: g_x [planes, h, w] = g_y at the taken element, 0 elsewhere (written, or
// added when accumulate = 1).
struct PoolArgs {
    planes: u32,
    h: u32,
    w: u32,
    x: u32,
    y: u32,
    arg: u32,
    g_y: u32,
    g_x: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Twin: `Bn2dArgs`. Per-channel batch normalisation (BatchNorm2d) of an NCHW [B, C, hw] region in
// place: the statistics of channel c over its B·hw values. Fields as BnArgs (running: mean of step
// t at + t·C, variance at + (T + t)·C; xhat NCHW like x; invstd [C]).
struct Bn2dArgs {
    batch: u32,
    channels: u32,
    hw: u32,
    x: u32,
    xhat: u32,
    invstd: u32,
    gamma: u32,
    beta: u32,
    running: u32,
    g_y: u32,
    g_x: u32,
    accumulate: u32,
}

// Twin: `DropoutArgs`. out[i] = x[i]·mask[t·len + i], i < len: dropout's mask of step t (the masks of
// the whole sequence, [T, len], uploaded by the host) on the conv network's last spikes, and on
// their gradient in the backward.
struct DropoutArgs {
    len: u32,
    x: u32,
    mask: u32,
    out: u32,
}

// Twin: `ConvNeuronArgs`. The element-wise part of a conv cell step (method §9 (9.4)–(9.9) after
// the gates' batch norms, and its backward (9.14)–(9.15), (9.19)–(9.20)) over `len` = B·C·H'·W'
// elements, every region `len` long in work.
//   conv_neuron:          reads xhat, z_m, z_a (the gates' BN outputs), m_prev, s_prev, b_prev;
//                         writes the tape tau_m, tau_a, theta, u and the next state m_next,
//                         s_next, b_next.
//   conv_neuron_backward: reads g_s (ḡ on s'), g_m_next, g_b_next (ḡ carried onto m', b' inside a
//                         chunk; NONE: 0), the tape, s_next, xhat and the previous state; writes
//                         g_xhat (the part through u), g_zm, g_za (ḡ on the gates' pre-activations)
//                         and, unless NONE, the element-wise parts of the gradient on the previous
//                         state g_m_prev, g_s_prev, g_b_prev.
struct ConvNeuronArgs {
    len: u32,
    xhat: u32,
    z_m: u32,
    z_a: u32,
    m_prev: u32,
    s_prev: u32,
    b_prev: u32,
    tau_m: u32,
    tau_a: u32,
    theta: u32,
    u: u32,
    m_next: u32,
    s_next: u32,
    b_next: u32,
    g_s: u32,
    g_m_next: u32,
    g_b_next: u32,
    g_xhat: u32,
    g_zm: u32,
    g_za: u32,
    g_m_prev: u32,
    g_s_prev: u32,
    g_b_prev: u32,
    // conv_neuron_backward: ḡ carried onto s' from the next step inside a chunk, added to g_s (NONE: 0)
    g_s_add: u32,
}
