// e-prop, step 3 of 3: the readout's exact online gradient (method §7; src/reference/eprop.rs
// `advance_readout`). Its forward-mode Jacobian J = ∂o'/∂θ (per sample, output and readout
// parameter θ ∈ [W_o | c_o | W_om | c_om | a_o]) follows J ← A·J + ∂o'/∂θ (o held), and
// ∇θ += Σ_b Σ_k ḡ_o[b, k]·J[b, k, θ]. One invocation per parameter, looping over the batch.
#import bindings
#import args
#import eprop
@group(1) @binding(0) var<storage, read> args: EpropArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let col = flat_index(gid, nwg);
    let p_len = args.p_len;
    if col >= p_len {
        return;
    }
    let n = args.n;
    let c = args.c;
    // Where the column's parameter sits: W_o [C, N], c_o [C], W_om [C, 2C], c_om [C], a_o.
    let off_co = c * n;
    let off_wom = off_co + c;
    let off_com = off_wom + 2u * c * c;
    let off_ao = off_com + c;
    var total = 0.0;
    var old: array<f32, EPROP_MAX_OUTPUTS>;
    for (var b = 0u; b < args.batch; b++) {
        for (var k = 0u; k < c; k++) {
            old[k] = work[rw + args.jacobian + (b * c + k) * p_len + col];
        }
        for (var k = 0u; k < c; k++) {
            let i = b * c + k;
            let gain = readout_gain(b, k);
            var local = 0.0;
            if col < off_co {
                // W_o[kk, m] moves z_kk by s_m.
                let kk = col / n;
                local = readout_d(b, k, kk, gain) * work[rw + args.s_top + b * n + col % n];
            } else if col < off_wom {
                local = readout_d(b, k, col - off_co, gain);
            } else if col < off_com {
                // W_om[row, cc] acts on output `row`'s gate through [z ; o].
                let r = col - off_wom;
                if r / (2u * c) == k {
                    let cc = r % (2u * c);
                    var zo = 0.0;
                    if cc < c {
                        zo = work[rw + args.z + b * c + cc];
                    } else {
                        zo = work[rw + args.o_prev + b * c + cc - c];
                    }
                    local = gain * zo;
                }
            } else if col < off_ao {
                if col - off_com == k {
                    local = gain;
                }
            } else {
                let tau = work[rw + args.tau_o + i];
                local = (work[rw + args.z + i] - work[rw + args.o_prev + i]) * tau * (1.0 - tau) * work[rw + args.zo + i];
            }
            let value = readout_carry(b, k, &old) + local;
            work[rw + args.jacobian + i * p_len + col] = value;
            total += work[rw + args.g_o + i] * value;
        }
    }
    var at = args.a_o;
    if col < off_co {
        at = args.w_o + col;
    } else if col < off_wom {
        at = args.c_o + col - off_co;
    } else if col < off_com {
        at = args.w_om + col - off_wom;
    } else if col < off_ao {
        at = args.c_om + col - off_com;
    }
    store_grad(at, total);
}
