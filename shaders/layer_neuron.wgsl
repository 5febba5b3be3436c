// Forward, step 2 of a hidden layer: gates and the neuron update (spec §1, §7).
//   d = cur_x + cur_r, τm = σ(a_m·(W_m·[d ; m] + c_m)), τa = σ(a_a·(W_a·[d ; b] + c_a)),
//   b' = τa·b + (1 − τa)·s, θ = b0 + β_a·b', u = m + τm·(d − m), s' = H(u − θ), m' = (1 − s')·u
// LIF/ALIF (LAYER_CONSTANT_TAU): τm = σ(ρ_m), τa = σ(ρ_a) per neuron, the rest unchanged; the
// tape's "pre-activations" are then ρ_m, ρ_a.
// Reads the previous state and writes the next one (the host alternates the two), and records
// the tape (d, τm, τa, the gate pre-activations, u) that the one-step backward needs.
// The two gate products run through the matrix-product template (shaders/shared/matmul.wgsl),
// product 0 = W_m·[d ; m], product 1 = W_a·[d ; b] over (sample, neuron) outputs, with the neuron
// update as their epilogue: each invocation updates the neurons of its register block.
#import bindings
#import args
#import neuron
#import matmul
@group(1) @binding(0) var<storage, read> args: LayerArgs;

const MM_A_K_FAST: bool = true;
const MM_B_K_FAST: bool = true;

fn current(i: u32) -> f32 {
    if (args.flags & LAYER_FUSED) != 0u {
        return work[args.cur_x + i];
    }
    return work[args.cur_x + i] + work[args.cur_r + i];
}

// A: [d ; m][b, k] (product 0), [d ; b][b, k] (product 1).
fn mm_a(p: u32, row: u32, k: u32) -> f32 {
    let n = args.n;
    if k < n {
        return current(row * n + k);
    }
    let state = select(args.b_prev, args.m_prev, p == 0u);
    return work[state + row * n + k - n];
}

// B[k, j] = W[j, k] with rows of 2N (W_m, W_a).
fn mm_b(p: u32, k: u32, col: u32) -> f32 {
    let w = select(args.w_a, args.w_m, p == 0u);
    return params[w + col * 2u * args.n + k];
}

@compute @workgroup_size(MM_INVOCATIONS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
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
        mm_product(&zm, 0u, blk, 0u, 2u * n);
        slope_m = params[args.a_m];
        if adaptive {
            mm_product(&za, 1u, blk, 0u, 2u * n);
            slope_a = params[args.a_a];
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
            var z_m = params[args.w_m + j];
            if gated {
                z_m = zm[r][c] + params[args.c_m + j];
            }
            let tau_m = sigmoid(slope_m * z_m);
            let d = current(idx);
            let m = work[args.m_prev + idx];
            var theta = args.threshold;
            if adaptive {
                var z_a = params[args.w_a + j];
                if gated {
                    z_a = za[r][c] + params[args.c_a + j];
                }
                let tau_a = sigmoid(slope_a * z_a);
                let b_new = tau_a * work[args.b_prev + idx] + (1.0 - tau_a) * work[args.s_prev + idx];
                theta = B0 + BETA_ADAPT * b_new;
                work[args.za + idx] = z_a;
                work[args.tau_a + idx] = tau_a;
                work[args.b_next + idx] = b_new;
            }
            let u = m + tau_m * (d - m);
            let spike = select(0.0, 1.0, u - theta > 0.0);
            work[args.m_next + idx] = (1.0 - spike) * u;
            work[args.s_next + idx] = spike;
            work[args.d + idx] = d;
            work[args.tau_m + idx] = tau_m;
            work[args.zm + idx] = z_m;
            work[args.u + idx] = u;
        }
    }
}
