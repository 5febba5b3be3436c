// e-prop, step 1 of 3: how neuron j's spike moves each output this step through the feedback
// matrix, V[b, k, j] = Σ_kk D[k, kk]·B[kk, j], and the learning signal L[b, j] = Σ_k ḡ_o[b, k]·V[b, k, j]
// (method §7; src/reference/eprop.rs `readout_step`); also what every trace of the step reads once
// per sample and neuron or per sample: ψ(u − θ) and the readout's A. One invocation per (sample,
// neuron).
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
    let c = args.c;
    if idx >= args.batch * n {
        return;
    }
    let b = idx / n;
    let j = idx % n;
    var theta = args.threshold;
    if (args.flags & EPROP_ALIF) != 0u {
        theta = B0 + BETA_ADAPT * work[rw + args.b_next + idx];
    }
    work[rw + args.psi + idx] = surrogate(work[rw + args.u + idx] - theta);
    var signal = 0.0;
    for (var k = 0u; k < c; k++) {
        let gain = readout_gain(b, k);
        var v = 0.0;
        for (var kk = 0u; kk < c; kk++) {
            v += readout_d(b, k, kk, gain) * feedback(kk, j);
        }
        work[rw + args.v + (b * c + k) * n + j] = v;
        if j == 0u {
            for (var kk = 0u; kk < c; kk++) {
                work[rw + args.readout_a + (b * c + k) * c + kk] = readout_a(b, k, kk, gain);
            }
        }
        signal += work[rw + args.g_o + b * c + k] * v;
    }
    work[rw + args.signal + idx] = signal;
}
