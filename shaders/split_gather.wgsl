// A weight gradient whose reduction conv_weight_grad split S ways (the sum over batch and pixels of
// a convolution: 262,144 terms for the DVS network's first cell at batch 16, a few workgroups'
// work without a split), summed in a fixed order into grad: one invocation per output (o, col) of
// rows × (width + 1), the bias column last, partial s of it at
// work[partials + (s·rows + o)·(width + 1) + col] (SplitRegion's layout). Accumulate adds to what
// grad holds (the steps of a chunk). The dense layers' split gradients are gathered by fptt_norm
// instead (at most SPLIT_REGIONS of them, in one pass with the norm).
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: SplitGatherArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let i = flat_index(gid, nwg);
    let cols = args.region.width + 1u;
    if i >= args.region.rows * cols {
        return;
    }
    let o = i / cols;
    let col = i % cols;
    if col == args.region.width && args.region.bias == NONE {
        return;
    }
    var sum = 0.0;
    for (var s = 0u; s < args.region.split; s++) {
        sum += work[rw + args.region.partials + (s * args.region.rows + o) * cols + col];
    }
    var at = args.region.out + o * args.region.width + col;
    if col == args.region.width {
        at = args.region.bias + o;
    }
    if args.accumulate != 0u {
        sum += grad[rp + at];
    }
    grad[rp + at] = sum;
}
