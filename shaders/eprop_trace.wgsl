// e-prop, step 2 of 3: every eligibility trace of the hidden layer advances one step and adds
// its gradient (method §7; the recursion and its derivation: src/reference/eprop.rs). Per sample,
// neuron j and trace column c, with ψ = H'(u − θ) and (∂u/∂w, ∂b/∂w) the column's injection:
//   ε^u = (1 − τm)·ε^m + ∂u/∂w,  ε^b = ε^a + ∂b/∂w,  e = ψ·(ε^u − β_a·ε^b)  (LIF: ψ·ε^u)
//   ε^m ← (1 − s')·ε^u − u·e (the reset's term only with EPROP_RESET_IN_TRACE)
//   ε^a ← τa·ε^b + (1 − τa)·e
//   filter: φ_k ← (A·φ)_k + V[k, j]·e, ∇w += Σ_k ḡ_o,k·φ_k;  no filter: ∇w += L_j·e
// One invocation per (neuron, column) owns that parameter's gradient and loops over the batch,
// so no two invocations write the same element.
#import bindings
#import args
#import neuron
#import eprop
@group(1) @binding(0) var<storage, read> args: EpropArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let idx = flat_index(gid, nwg);
    let n = args.n;
    let n_in = args.n_in;
    let cols = args.cols;
    let c = args.c;
    if idx >= n * cols {
        return;
    }
    let j = idx / cols;
    let col = idx % cols;
    let alif = (args.flags & EPROP_ALIF) != 0u;
    let filtered = (args.flags & EPROP_FILTER) != 0u;
    let keep_reset = (args.flags & EPROP_RESET_IN_TRACE) != 0u;
    // The column's injection, with no branch inside the loop (a software adapter runs divergent
    // branches on every lane): ∂u/∂w = scale·source[b], where the source is the input x, the
    // previous spikes or 1 (bias), scaled by τm; ρ_m and ρ_a use their own formulas (selected).
    let is_input = col < n_in;
    let is_synapse = col < n_in + n;
    let is_rho_m = col == n_in + n + 1u;
    let is_rho_a = col == n_in + n + 2u;
    var source = args.x + col;
    var stride = n_in;
    if !is_input {
        source = args.s_prev + col - n_in;
        stride = n;
    }
    if !is_synapse {
        source = args.s_prev + j;
        stride = n;
    }
    var total = 0.0;
    var old: array<f32, EPROP_MAX_OUTPUTS>;
    for (var b = 0u; b < args.batch; b++) {
        let i = b * n + j;
        let tau_m = work[rw + args.tau_m + i];
        let u = work[rw + args.u + i];
        let psi = work[rw + args.psi + i];
        let s_prev = work[rw + args.s_prev + i];
        let rho_m_term = (work[rw + args.d + i] - work[rw + args.m_prev + i]) * tau_m * (1.0 - tau_m);
        let input = select(1.0, work[rw + source + b * stride], is_synapse);
        let inj_u = select(select(tau_m * input, rho_m_term, is_rho_m), 0.0, is_rho_a);
        var tau_a = 0.0;
        var inj_b = 0.0;
        if alif {
            tau_a = work[rw + args.tau_a + i];
            inj_b = select(0.0, (work[rw + args.b_prev + i] - s_prev) * tau_a * (1.0 - tau_a), is_rho_a);
        }
        let t = i * cols + col;
        let eps_u = (1.0 - tau_m) * work[rw + args.membrane + t] + inj_u;
        var e = psi * eps_u;
        if alif {
            let eps_b = work[rw + args.adaptation + t] + inj_b;
            e = psi * (eps_u - BETA_ADAPT * eps_b);
            work[rw + args.adaptation + t] = tau_a * eps_b + (1.0 - tau_a) * e;
        }
        var reset = 0.0;
        if keep_reset {
            reset = u * e;
        }
        work[rw + args.membrane + t] = (1.0 - work[rw + args.s_next + i]) * eps_u - reset;
        if filtered && c == 1u {
            // One output (regression): no mixing, no private array.
            let at = args.filtered + i * cols + col;
            let phi = work[rw + args.readout_a + b] * work[rw + at] + work[rw + args.v + i] * e;
            work[rw + at] = phi;
            total += work[rw + args.g_o + b] * phi;
        } else if filtered {
            // φ of every output before any is overwritten: A mixes them.
            for (var k = 0u; k < c; k++) {
                old[k] = work[rw + args.filtered + ((b * c + k) * n + j) * cols + col];
            }
            for (var k = 0u; k < c; k++) {
                let phi = readout_carry(b, k, &old) + work[rw + args.v + (b * c + k) * n + j] * e;
                work[rw + args.filtered + ((b * c + k) * n + j) * cols + col] = phi;
                total += work[rw + args.g_o + b * c + k] * phi;
            }
        } else {
            total += work[rw + args.signal + i] * e;
        }
    }
    let fused = (args.flags & EPROP_FUSED) != 0u;
    if col < n_in + n {
        if fused {
            store_grad(args.w_x + j * (n_in + n) + col, total);
        } else if col < n_in {
            store_grad(args.w_x + j * n_in + col, total);
        } else {
            store_grad(args.w_r + j * n + col - n_in, total);
        }
    } else if col == n_in + n {
        // c_x and c_r enter d alike: the same gradient.
        store_grad(args.c_x + j, total);
        if !fused {
            store_grad(args.c_r + j, total);
        }
    } else if col == n_in + n + 1u {
        store_grad(args.w_m + j, total);
    } else {
        store_grad(args.w_a + j, total);
    }
}
