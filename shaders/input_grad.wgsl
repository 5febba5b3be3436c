// Gradients passed down a map (spec §3): out[b, j] = add[b, j] + Σ_o G1[b, o]·W1[o, col1 + j]
// (+ the same with G2, W2). Used for ḡ_d = ḡ_u·τm + ḡ_zm·W_m[:, :N] + ḡ_za·W_a[:, :N], for
// ḡ_s_top = ḡ_z·W_o and for ḡ_x = ḡ_d·W_x. One invocation per 4×4 tile of (sample, column).
#import bindings
#import args
#import tile
@group(1) @binding(0) var<storage, read> args: InputGradArgs;

fn product(acc: ptr<function, array<vec4<f32>, 4>>, k: u32, g: u32, w: u32, ld: u32, col: u32, bs: vec4<u32>, js: vec4<u32>) {
    let grows = vec4<u32>(g) + bs * k;
    let wcols = vec4<u32>(w + col) + js;
    for (var o = 0u; o < k; o++) {
        let a = vec4<f32>(work[grows.x + o], work[grows.y + o], work[grows.z + o], work[grows.w + o]);
        let wo = o * ld;
        let v = vec4<f32>(params[wcols.x + wo], params[wcols.y + wo], params[wcols.z + wo], params[wcols.w + wo]);
        fma_tile(acc, a, v);
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= tile_count(args.batch, args.cols) {
        return;
    }
    let tile = tile_at(idx, args.batch, args.cols);
    let bs = tile.rows;
    let js = tile.cols;
    var acc: array<vec4<f32>, 4>;
    product(&acc, args.k1, args.g1, args.w1, args.ld1, args.col1, bs, js);
    if args.k2 > 0u {
        product(&acc, args.k2, args.g2, args.w2, args.ld2, args.col2, bs, js);
    }
    tile_store(&acc, tile, args.batch, args.cols, args.out, args.add, vec4<f32>(0.0));
}
