// Forward, step 2 of a hidden layer: gates and the neuron update (method §1, §7).
//   d = cur_x + cur_r, τm = σ(a_m·(W_m·[d ; m] + c_m)), τa = σ(a_a·(W_a·[d ; b] + c_a)),
//   b' = τa·b + (1 − τa)·s, θ = b0 + β_a·b', u = m + τm·(d − m), s' = H(u − θ), m' = (1 − s')·u
// LIF/ALIF (LAYER_CONSTANT_TAU): τm = σ(ρ_m), τa = σ(ρ_a) per neuron, the rest unchanged; the
// tape's "pre-activations" are then ρ_m, ρ_a.
// Reads the previous state and writes the next one (the host alternates the two), and records
// the tape (d, τm, τa, the gate pre-activations, u) that the one-step backward needs.
// The two gate products W_m·[d ; m] and W_a·[d ; b] over (sample, neuron) outputs run through the
// matrix-product template (shaders/shared/matmul.wgsl), with the neuron update as their
// epilogue: each invocation updates the neurons of its register block.
#import bindings
#import args
#import neuron
#import matmul
@group(1) @binding(0) var<storage, read> args: LayerArgs;

const MM_A_K_FAST: bool = true;
const MM_B_K_FAST: bool = true;

// One input current (fused map, or no recurrent map): d = cur_x.
fn single_current() -> bool {
    return (args.flags & LAYER_FUSED) != 0u || args.w_r == NONE;
}

fn current(i: u32) -> f32 {
    if single_current() {
        return work[rw + args.cur_x + i];
    }
    return work[rw + args.cur_x + i] + work[rw + args.cur_r + i];
}

// Each gate product runs as two K segments, so that mm_a and mm_b never branch on k (the
// product index is a constant at every call, and the drivers fold it after inlining):
//   product 0: d[b, k]·W_m[j, k]        (d = cur_x, fused)       1: d·W_m, d = cur_x + cur_r
//   product 2: m[b, k]·W_m[j, N + k]    3: b[b, k]·W_a[j, N + k]
//   product 4: d·W_a[j, k] (fused)      5: d·W_a, d = cur_x + cur_r
fn mm_a(p: u32, row: u32, k: u32) -> f32 {
    let i = row * args.n + k;
    switch p {
        case 0u, 4u: {
            return work[rw + args.cur_x + i];
        }
        case 1u, 5u: {
            return work[rw + args.cur_x + i] + work[rw + args.cur_r + i];
        }
        case 2u: {
            return work[rw + args.m_prev + i];
        }
        default: {
            return work[rw + args.b_prev + i];
        }
    }
}

fn mm_b(p: u32, k: u32, col: u32) -> f32 {
    let row = col * 2u * args.n;
    switch p {
        case 0u, 1u: {
            return params[rp + args.w_m + row + k];
        }
        case 2u: {
            return params[rp + args.w_m + row + args.n + k];
        }
        case 3u: {
            return params[rp + args.w_a + row + args.n + k];
        }
        default: {
            return params[rp + args.w_a + row + k];
        }
    }
}

// acc = W·[d ; state] for the gate whose state product is `state_p` (2: m, 3: b).
fn gate(acc: ptr<function, MmAcc>, blk: MmBlock, state_p: u32) {
    let n = args.n;
    let fused = single_current();
    if state_p == 2u {
        if fused {
            mm_product(acc, 0u, blk, 0u, n);
        } else {
            mm_product(acc, 1u, blk, 0u, n);
        }
    } else {
        if fused {
            mm_product(acc, 4u, blk, 0u, n);
        } else {
            mm_product(acc, 5u, blk, 0u, n);
        }
    }
    mm_product(acc, state_p, blk, 0u, n);
}

@compute @workgroup_size(MM_INVOCATIONS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    enter_replica(wid.z);
    let n = args.n;
    let blk = mm_block(wid, nwg, lid, args.batch, n, 1u);
    if !blk.live {
        return;
    }
    let adaptive = (args.flags & LAYER_ADAPTIVE) != 0u;
    let gated = (args.flags & LAYER_CONSTANT_TAU) == 0u;
    var zm: MmAcc;
    var za: MmAcc;
    var slope_m = 1.0;
    var slope_a = 1.0;
    if gated {
        gate(&zm, blk, 2u);
        slope_m = slope_or_one(args.a_m);
        if adaptive {
            gate(&za, blk, 3u);
            slope_a = slope_or_one(args.a_a);
        }
    }
    for (var r = 0u; r < MM_RM; r++) {
        if !mm_row_ok(blk, r) {
            break;
        }
        let b = blk.r0 + r;
        for (var c = 0u; c < 4u; c++) {
            if !mm_col_ok(blk, c) {
                break;
            }
            let j = blk.c0 + c;
            let idx = b * n + j;
            var z_m = params[rp + args.w_m + j];
            if gated {
                z_m = zm[r][c] + params[rp + args.c_m + j];
            }
            let tau_m = sigmoid(slope_m * z_m);
            let d = current(idx);
            let m = work[rw + args.m_prev + idx];
            var theta = args.threshold;
            if adaptive {
                var z_a = params[rp + args.w_a + j];
                if gated {
                    z_a = za[r][c] + params[rp + args.c_a + j];
                }
                let tau_a = sigmoid(slope_a * z_a);
                let b_new = tau_a * work[rw + args.b_prev + idx] + (1.0 - tau_a) * work[rw + args.s_prev + idx];
                theta = select(B0, CONV_B0, (args.flags & LAYER_CONV_B0) != 0u) + BETA_ADAPT * b_new;
                work[rw + args.za + idx] = z_a;
                work[rw + args.tau_a + idx] = tau_a;
                work[rw + args.b_next + idx] = b_new;
            }
            let u = m + tau_m * (d - m);
            let spike = select(0.0, 1.0, u - theta > 0.0);
            work[rw + args.m_next + idx] = (1.0 - spike) * u;
            work[rw + args.s_next + idx] = spike;
            work[rw + args.d + idx] = d;
            work[rw + args.tau_m + idx] = tau_m;
            work[rw + args.zm + idx] = z_m;
            work[rw + args.u + idx] = u;
        }
    }
}
