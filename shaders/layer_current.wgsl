// Forward, step 1 of a hidden layer: the input currents (spec §1), before any batch norm.
//   cur_x = W_x·x + c_x      (fused variant: W_x·[x ; s] + c_x)
//   cur_r = W_r·s + c_r      (s: the layer's own spikes from the previous step)
// One invocation per 4×4 tile of (sample, neuron).
#import bindings
#import args
#import tile
@group(1) @binding(0) var<storage, read> args: LayerArgs;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= tile_count(args.batch, args.n) {
        return;
    }
    let tile = tile_at(idx, args.batch, args.n);
    let bs = tile.rows;
    let js = tile.cols;
    var x_off = args.x_in;
    if (args.flags & LAYER_DATA_INPUT) != 0u {
        x_off += step.t * args.batch * args.n_in;
    }
    let xb = vec4<u32>(x_off) + bs * args.n_in;
    let sb = vec4<u32>(args.s_prev) + bs * args.n;
    let fused = (args.flags & LAYER_FUSED) != 0u;
    var row_len = args.n_in;
    if fused {
        row_len = args.n_in + args.n;
    }
    let wx = vec4<u32>(args.w_x) + js * row_len;
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < args.n_in; i++) {
        let a = vec4<f32>(work[xb.x + i], work[xb.y + i], work[xb.z + i], work[xb.w + i]);
        let w = vec4<f32>(params[wx.x + i], params[wx.y + i], params[wx.z + i], params[wx.w + i]);
        fma_tile(&acc, a, w);
    }
    var wr = vec4<u32>(args.w_r) + js * args.n;
    if fused {
        // The recurrent part of the fused map: columns I.. of the same rows.
        wr = wx + vec4<u32>(args.n_in);
        for (var i = 0u; i < args.n; i++) {
            let a = vec4<f32>(work[sb.x + i], work[sb.y + i], work[sb.z + i], work[sb.w + i]);
            let w = vec4<f32>(params[wr.x + i], params[wr.y + i], params[wr.z + i], params[wr.w + i]);
            fma_tile(&acc, a, w);
        }
    }
    // Keep this step's input on the tape, where the backward reads it without knowing t.
    if (args.flags & LAYER_DATA_INPUT) != 0u && tile.col0 == 0u {
        for (var r = 0u; r < TILE; r++) {
            let b = tile.row0 + r;
            if b < args.batch {
                for (var i = 0u; i < args.n_in; i++) {
                    work[args.x_tape + b * args.n_in + i] = work[x_off + b * args.n_in + i];
                }
            }
        }
    }
    let cx = vec4<u32>(args.c_x) + js;
    tile_store(&acc, tile, args.batch, args.n, args.cur_x, NONE, vec4<f32>(params[cx.x], params[cx.y], params[cx.z], params[cx.w]));
    if !fused {
        var accr: array<vec4<f32>, 4>;
        for (var i = 0u; i < args.n; i++) {
            let a = vec4<f32>(work[sb.x + i], work[sb.y + i], work[sb.z + i], work[sb.w + i]);
            let w = vec4<f32>(params[wr.x + i], params[wr.y + i], params[wr.z + i], params[wr.w + i]);
            fma_tile(&accr, a, w);
        }
        let cr = vec4<u32>(args.c_r) + js;
        tile_store(&accr, tile, args.batch, args.n, args.cur_r, NONE, vec4<f32>(params[cr.x], params[cr.y], params[cr.z], params[cr.w]));
    }
}
