// Benchmark kernel (fptt bench's matrix-product ceiling): C[M, N] = A[M, K]·B[N, K]ᵀ with A and
// C in work, B in params, the same 4×4 register tiles as the training kernels. Not used in
// training; it measures what a plain tiled matrix product reaches on the adapter.
#import bindings
#import args
#import tile
@group(1) @binding(0) var<storage, read> args: InputGradArgs;

// Fields reused from InputGradArgs: batch = M, cols = N, k1 = K, g1 = A, w1 = B, out = C.
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= tile_count(args.batch, args.cols) {
        return;
    }
    let tile = tile_at(idx, args.batch, args.cols);
    let arows = vec4<u32>(args.g1) + tile.rows * args.k1;
    let brows = vec4<u32>(args.w1) + tile.cols * args.k1;
    var acc: array<vec4<f32>, 4>;
    for (var k = 0u; k < args.k1; k++) {
        let a = vec4<f32>(work[arows.x + k], work[arows.y + k], work[arows.z + k], work[arows.w + k]);
        let b = vec4<f32>(params[brows.x + k], params[brows.y + k], params[brows.z + k], params[brows.w + k]);
        fma_tile(&acc, a, b);
    }
    tile_store(&acc, tile, args.batch, args.cols, args.out, NONE, vec4<f32>(0.0));
}
