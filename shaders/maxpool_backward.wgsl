// The backward of the 2×2 max-pool (method §9 (9.13)): one invocation per input element, which
// belongs to at most one window (stride 2 = the window), so it gathers instead of scattering and
// needs no atomics: g_x = g_y of its window where the window took it, else 0 (also in a dropped
// odd last row or column). Written, or added when accumulate = 1.
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: PoolArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let e = flat_index(gid, nwg);
    let plane_len = args.h * args.w;
    if e >= args.planes * plane_len {
        return;
    }
    let plane = e / plane_len;
    let y = (e % plane_len) / args.w;
    let x = e % args.w;
    let oh = args.h / 2u;
    let ow = args.w / 2u;
    var g = 0.0;
    if y / 2u < oh && x / 2u < ow {
        let o = (plane * oh + y / 2u) * ow + x / 2u;
        let mine = f32((y % 2u) * 2u + x % 2u);
        if work[rw + args.arg + o] == mine {
            g = work[rw + args.g_y + o];
        }
    }
    if args.accumulate != 0u {
        work[rw + args.g_x + e] += g;
    } else {
        work[rw + args.g_x + e] = g;
    }
}
