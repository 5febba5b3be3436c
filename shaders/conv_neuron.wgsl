// Forward, the element-wise part of a conv cell step (method §9 (9.4)–(9.9)), one invocation per
// element of [B, C, H', W'], after the gates' convolutions and batch norms:
//   τm = σ(z_m), τa = σ(z_a), b' = τa·b + (1 − τa)·s, θ = b0 + β_a·b' (b0 = CONV_B0),
//   u = m + τm·(x̂ − m), s' = H(u − θ) (1 where u − θ > 0), m' = (1 − s')·u
// Writes the tape (τm, τa, θ, u) and the next state (m', s', b'). CPU twin:
// reference::conv::neuron_forward.
#import bindings
#import args
#import neuron
@group(1) @binding(0) var<storage, read> args: ConvNeuronArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let i = flat_index(gid, nwg);
    if i >= args.len {
        return;
    }
    let tau_m = sigmoid(work[rw + args.z_m + i]);
    let tau_a = sigmoid(work[rw + args.z_a + i]);
    let b_new = tau_a * work[rw + args.b_prev + i] + (1.0 - tau_a) * work[rw + args.s_prev + i];
    let theta = CONV_B0 + BETA_ADAPT * b_new;
    let m = work[rw + args.m_prev + i];
    let u = m + tau_m * (work[rw + args.xhat + i] - m);
    let spike = select(0.0, 1.0, u - theta > 0.0);
    work[rw + args.tau_m + i] = tau_m;
    work[rw + args.tau_a + i] = tau_a;
    work[rw + args.theta + i] = theta;
    work[rw + args.u + i] = u;
    work[rw + args.m_next + i] = (1.0 - spike) * u;
    work[rw + args.s_next + i] = spike;
    work[rw + args.b_next + i] = b_new;
}
