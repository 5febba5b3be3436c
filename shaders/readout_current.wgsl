// Forward: the readout current z = W_o·s_top + c_o (before any batch norm) (spec §1, readout).
// One invocation per (sample, output).
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: ReadoutArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= args.batch * args.c {
        return;
    }
    let b = idx / args.c;
    let k = idx % args.c;
    let row = args.w_o + k * args.n_top;
    let s_base = args.s_top + b * args.n_top;
    var acc = 0.0;
    for (var i = 0u; i < args.n_top; i++) {
        acc += params[row + i] * work[s_base + i];
    }
    work[args.z + idx] = acc + params[args.c_o + k];
}
