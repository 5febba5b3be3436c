// One step backward through the readout gate (spec §3, readout). One invocation per sample.
//   ḡ_zo = ḡ_o'·(z − o)·τo(1 − τo)·a_o    (r_o: the same without a_o, for ∇a_o)
//   ḡ_z  = ḡ_o'·τo + ḡ_zo·W_om[:, :C]
// Inside a chunk of steps, ḡ_o'·(1 − τo) is added to the previous step's ḡ_o (input_grad then
// adds ḡ_zo·W_om[:, C:]); that step's backward runs next.
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: ReadoutArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_index(gid, nwg);
    if b >= args.batch {
        return;
    }
    let c = args.c;
    let base = b * c;
    let a_o = params[args.a_o];
    for (var k = 0u; k < c; k++) {
        let i = base + k;
        let tau_o = work[args.tau_o + i];
        let r = work[args.g_o + i] * (work[args.z + i] - work[args.o_prev + i]) * tau_o * (1.0 - tau_o);
        work[args.r_o + i] = r;
        work[args.g_zo + i] = r * a_o;
        if args.g_o_prev != NONE {
            work[args.g_o_prev + i] += work[args.g_o + i] * (1.0 - tau_o);
        }
    }
    for (var k = 0u; k < c; k++) {
        var acc = work[args.g_o + base + k] * work[args.tau_o + base + k];
        for (var i = 0u; i < c; i++) {
            acc += work[args.g_zo + base + i] * params[args.w_om + i * 2u * c + k];
        }
        work[args.g_z + base + k] = acc;
    }
}
