// The readout and the loss, one sample (and output) at a time (method §1 readout, §3, §4). Shared
// by the separate kernels (readout_current, readout_gate, loss_grad, readout_backward), which
// serve batch norm on the readout (it needs the whole batch between current and gate) and chunks
// of steps (whose backward runs after the chunk's forwards), and by readout_step, which runs them
// all for a few samples per workgroup in one dispatch. The including kernel declares
// `args: ReadoutArgs`.

// z[b, k] = W_o[k, :]·s_top[b, :] + c_o[k]: the readout current, before any batch norm.
fn readout_current_at(b: u32, k: u32) {
    let row = args.w_o + k * args.n_top;
    let s_base = args.s_top + b * args.n_top;
    var acc = 0.0;
    for (var i = 0u; i < args.n_top; i++) {
        acc += params[rp + row + i] * work[rw + s_base + i];
    }
    work[rw + args.z + b * args.c + k] = acc + params[rp + args.c_o + k];
}

// τo = σ(a_o·(W_om[k, :]·[z ; o] + c_om[k])), o'[b, k] = (1 − τo)·o + τo·z. Reads z[b, :] whole.
fn readout_gate_at(b: u32, k: u32) {
    let c = args.c;
    let idx = b * c + k;
    let row = args.w_om + k * 2u * c;
    var zo = 0.0;
    for (var i = 0u; i < c; i++) {
        zo += params[rp + row + i] * work[rw + args.z + b * c + i];
    }
    for (var i = 0u; i < c; i++) {
        zo += params[rp + row + c + i] * work[rw + args.o_prev + b * c + i];
    }
    zo += params[rp + args.c_om + k];
    let tau_o = sigmoid(slope_or_one(args.a_o) * zo);
    let o = work[rw + args.o_prev + idx];
    work[rw + args.o_next + idx] = (1.0 - tau_o) * o + tau_o * work[rw + args.z + idx];
    work[rw + args.tau_o + idx] = tau_o;
    work[rw + args.zo + idx] = zo;
}

// The step's loss and its gradient on o'[b, :] for sample b (method §4). Reads o'[b, :] whole.
// Classification: ℓ_t = w_task·NLL(log_softmax(o'), y) + w_aux·mean_{batch,classes}(−q_{y,t}·p)
// with q read before this step's update; regression: ℓ_t = w_task·mean (o' − y)².
// Writes the sample's share of ℓ_t, whether its argmax is right and its squared error, for the
// fixed-order reduction in loss_finalize. Samples past step.valid (evaluation padding) count 0.
fn loss_grad_at(b: u32) {
    let c = args.c;
    let base = b * c;
    if b >= step.valid {
        for (var k = 0u; k < c; k++) {
            work[rw + args.g_o + base + k] = 0.0;
        }
        work[rw + args.loss_b + b] = 0.0;
        work[rw + args.correct_b + b] = 0.0;
        work[rw + args.sqerr_b + b] = 0.0;
        return;
    }
    let inv_b = 1.0 / f32(step.valid);
    let o = args.o_next + base;
    if args.predictions != NONE {
        // Streams keep every step's o' so that the host can read a window's predictions at once.
        let row = args.predictions + (step.t * args.batch + b) * c;
        for (var k = 0u; k < c; k++) {
            work[rw + row + k] = work[rw + o + k];
        }
    }
    if (args.flags & READOUT_REGRESSION) != 0u {
        var se = 0.0;
        for (var k = 0u; k < c; k++) {
            let diff = work[rw + o + k] - work[rw + args.targets + step.target_offset + base + k];
            se += diff * diff;
            work[rw + args.g_o + base + k] = step.w_task * 2.0 * diff * inv_b / f32(c);
        }
        work[rw + args.loss_b + b] = step.w_task * se * inv_b / f32(c);
        work[rw + args.sqerr_b + b] = se;
        work[rw + args.correct_b + b] = 0.0;
        return;
    }
    let y = bitcast<u32>(work[rw + args.targets + step.target_offset + b]);
    var best = 0u;
    var mx = work[rw + o];
    for (var k = 1u; k < c; k++) {
        if work[rw + o + k] > mx {
            mx = work[rw + o + k];
            best = k;
        }
    }
    var sum_exp = 0.0;
    for (var k = 0u; k < c; k++) {
        sum_exp += exp(work[rw + o + k] - mx);
    }
    let lse = mx + log(sum_exp);
    var loss = step.w_task * (lse - work[rw + o + y]) * inv_b;
    let use_aux = step.aux_mode != 0u && step.w_aux != 0.0;
    let q_row = args.q + (y * step.steps + step.t) * c;
    var q_sum = 0.0;
    if use_aux {
        var cross = 0.0;
        for (var k = 0u; k < c; k++) {
            var qk = 1.0 / f32(c);
            if step.aux_mode == 1u {
                qk = work[rw + q_row + k];
            }
            q_sum += qk;
            cross -= qk * (work[rw + o + k] - lse);
        }
        loss += step.w_aux * inv_b / f32(c) * cross;
    }
    for (var k = 0u; k < c; k++) {
        let p = exp(work[rw + o + k] - lse);
        var g = step.w_task * inv_b * (p - select(0.0, 1.0, k == y));
        if use_aux {
            var qk = 1.0 / f32(c);
            if step.aux_mode == 1u {
                qk = work[rw + q_row + k];
            }
            g += step.w_aux * inv_b / f32(c) * (q_sum * p - qk);
        }
        work[rw + args.g_o + base + k] = g;
    }
    work[rw + args.loss_b + b] = loss;
    work[rw + args.correct_b + b] = select(0.0, 1.0, best == y);
    work[rw + args.sqerr_b + b] = 0.0;
}

// Backward through the readout gate at (b, k) (method §3, readout):
//   ḡ_zo = ḡ_o'·(z − o)·τo(1 − τo)·a_o    (r_o: the same without a_o, for ∇a_o)
// Inside a chunk of steps, ḡ_o'·(1 − τo) is added to the previous step's ḡ_o (input_grad then
// adds ḡ_zo·W_om[:, C:]); that step's backward runs next.
fn readout_backward_gate_at(b: u32, k: u32) {
    let i = b * args.c + k;
    let tau_o = work[rw + args.tau_o + i];
    let r = work[rw + args.g_o + i] * (work[rw + args.z + i] - work[rw + args.o_prev + i]) * tau_o * (1.0 - tau_o);
    work[rw + args.r_o + i] = r;
    work[rw + args.g_zo + i] = r * slope_or_one(args.a_o);
    if args.g_o_prev != NONE {
        work[rw + args.g_o_prev + i] += work[rw + args.g_o + i] * (1.0 - tau_o);
    }
}

// ḡ_z[b, k] = ḡ_o'·τo + Σ_i ḡ_zo[b, i]·W_om[i, k]. Reads ḡ_zo[b, :] whole.
fn readout_backward_input_at(b: u32, k: u32) {
    let c = args.c;
    let base = b * c;
    var acc = work[rw + args.g_o + base + k] * work[rw + args.tau_o + base + k];
    for (var i = 0u; i < c; i++) {
        acc += work[rw + args.g_zo + base + i] * params[rp + args.w_om + i * 2u * c + k];
    }
    work[rw + args.g_z + base + k] = acc;
}
