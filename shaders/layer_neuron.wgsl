// Forward, step 2 of a hidden layer: gates and the neuron update (spec §1, §7).
//   d = cur_x + cur_r, τm = σ(a_m·(W_m·[d ; m] + c_m)), τa = σ(a_a·(W_a·[d ; b] + c_a)),
//   b' = τa·b + (1 − τa)·s, θ = b0 + β_a·b', u = m + τm·(d − m), s' = H(u − θ), m' = (1 − s')·u
// LIF/ALIF (LAYER_CONSTANT_TAU): τm = σ(ρ_m), τa = σ(ρ_a) per neuron, the rest unchanged; the
// tape's "pre-activations" are then ρ_m, ρ_a.
// Reads the previous state and writes the next one (the host alternates the two), and records
// the tape (d, τm, τa, the gate pre-activations, u) that the one-step backward needs.
// One invocation per 4×4 tile of (sample, neuron).
#import bindings
#import args
#import neuron
#import tile
@group(1) @binding(0) var<storage, read> args: LayerArgs;

fn current(i: u32) -> f32 {
    if (args.flags & LAYER_FUSED) != 0u {
        return work[args.cur_x + i];
    }
    return work[args.cur_x + i] + work[args.cur_r + i];
}

// Σ_i W[j, i]·[d ; state][b, i] for the tile's samples `rows` (offsets of row b) and gate rows
// `wrows` (offsets of W[j, 0]).
fn gate_tile(rows: vec4<u32>, state: u32, wrows: vec4<u32>) -> array<vec4<f32>, 4> {
    let n = args.n;
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < n; i++) {
        let a = vec4<f32>(current(rows.x + i), current(rows.y + i), current(rows.z + i), current(rows.w + i));
        let w = vec4<f32>(params[wrows.x + i], params[wrows.y + i], params[wrows.z + i], params[wrows.w + i]);
        fma_tile(&acc, a, w);
    }
    let srows = vec4<u32>(state) + rows;
    let wstate = wrows + vec4<u32>(n);
    for (var i = 0u; i < n; i++) {
        let a = vec4<f32>(work[srows.x + i], work[srows.y + i], work[srows.z + i], work[srows.w + i]);
        let w = vec4<f32>(params[wstate.x + i], params[wstate.y + i], params[wstate.z + i], params[wstate.w + i]);
        fma_tile(&acc, a, w);
    }
    return acc;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = args.n;
    let idx = flat_index(gid, nwg);
    if idx >= tile_count(args.batch, n) {
        return;
    }
    let tile = tile_at(idx, args.batch, n);
    let bs = tile.rows;
    let js = tile.cols;
    let rows = bs * n;
    let adaptive = (args.flags & LAYER_ADAPTIVE) != 0u;
    let gated = (args.flags & LAYER_CONSTANT_TAU) == 0u;
    var zm: array<vec4<f32>, 4>;
    var za: array<vec4<f32>, 4>;
    var slope_m = 1.0;
    var slope_a = 1.0;
    if gated {
        zm = gate_tile(rows, args.m_prev, vec4<u32>(args.w_m) + js * 2u * n);
        slope_m = params[args.a_m];
        if adaptive {
            za = gate_tile(rows, args.b_prev, vec4<u32>(args.w_a) + js * 2u * n);
            slope_a = params[args.a_a];
        }
    }
    for (var r = 0u; r < TILE; r++) {
        let b = tile.row0 + r;
        if b >= args.batch {
            break;
        }
        for (var c = 0u; c < TILE; c++) {
            let j = tile.col0 + c;
            if j >= n {
                break;
            }
            let idx = b * n + j;
            var z_m = params[args.w_m + j];
            if gated {
                z_m = zm[r][c] + params[args.c_m + j];
            }
            let tau_m = sigmoid(slope_m * z_m);
            let d = current(idx);
            let m = work[args.m_prev + idx];
            var theta = args.threshold;
            if adaptive {
                var z_a = params[args.w_a + j];
                if gated {
                    z_a = za[r][c] + params[args.c_a + j];
                }
                let tau_a = sigmoid(slope_a * z_a);
                let b_new = tau_a * work[args.b_prev + idx] + (1.0 - tau_a) * work[args.s_prev + idx];
                theta = B0 + BETA_ADAPT * b_new;
                work[args.za + idx] = z_a;
                work[args.tau_a + idx] = tau_a;
                work[args.b_next + idx] = b_new;
            }
            let u = m + tau_m * (d - m);
            let spike = select(0.0, 1.0, u - theta > 0.0);
            work[args.m_next + idx] = (1.0 - spike) * u;
            work[args.s_next + idx] = spike;
            work[args.d + idx] = d;
            work[args.tau_m + idx] = tau_m;
            work[args.zm + idx] = z_m;
            work[args.u + idx] = u;
        }
    }
}
