// 2×2 max-pool, stride 2, no padding (method §9 (9.2)): one invocation per output element of
// `planes` planes of h × w (floor: an odd last row or column is never read). Ties go to the first
// maximum in row-major order within the window (PyTorch's `>` scan); the position 0..3 of the
// element taken is kept in arg (an f32) for the backward.
#import bindings
#import args
@group(1) @binding(0) var<storage, read> args: PoolArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    enter_replica(gid.z);
    let e = flat_index(gid, nwg);
    let oh = args.h / 2u;
    let ow = args.w / 2u;
    if e >= args.planes * oh * ow {
        return;
    }
    let plane = e / (oh * ow);
    let oy = (e % (oh * ow)) / ow;
    let ox = e % ow;
    let top = rw + args.x + (plane * args.h + 2u * oy) * args.w + 2u * ox;
    var best = work[top];
    var at = 0u;
    let v1 = work[top + 1u];
    if v1 > best {
        best = v1;
        at = 1u;
    }
    let v2 = work[top + args.w];
    if v2 > best {
        best = v2;
        at = 2u;
    }
    let v3 = work[top + args.w + 1u];
    if v3 > best {
        best = v3;
        at = 3u;
    }
    work[rw + args.y + e] = best;
    work[rw + args.arg + e] = f32(at);
}
