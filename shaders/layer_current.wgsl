// Forward, step 1 of a hidden layer: the input currents (method §1), before any batch norm.
//   cur_x = W_x·x + c_x      (fused variant: W_x·[x ; s] + c_x)
//   cur_r = W_r·s + c_r      (s: the layer's own spikes from the previous step)
// Matrix products of (sample, neuron) outputs through the template (shaders/shared/matmul.wgsl).
#import bindings
#import args
#import matmul
@group(1) @binding(0) var<storage, read> args: LayerArgs;

const MM_A_K_FAST: bool = true;
const MM_B_K_FAST: bool = true;

// Offset of this step's layer input [B, I].
fn x_offset() -> u32 {
    if (args.flags & LAYER_DATA_INPUT) != 0u {
        return args.x_in + step.t * args.batch * args.n_in;
    }
    return args.x_in;
}

fn fused() -> bool {
    return (args.flags & LAYER_FUSED) != 0u;
}

// Products, as K segments so that mm_a and mm_b never branch on k (the product index is a
// constant at every call, which the drivers fold after inlining):
//   0: x[b, k]·W_x[j, k]   (rows of W_x: n_in, or n_in + n when fused)
//   1: s[b, k]·W_r[j, k]   (not fused)      2: s[b, k]·W_x[j, n_in + k]   (fused)
fn mm_a(p: u32, row: u32, k: u32) -> f32 {
    if p == 0u {
        return work[rw + x_offset() + row * args.n_in + k];
    }
    return work[rw + args.s_prev + row * args.n + k];
}

fn mm_b(p: u32, k: u32, col: u32) -> f32 {
    switch p {
        case 0u: {
            let row_len = select(args.n_in, args.n_in + args.n, fused());
            return params[rp + args.w_x + col * row_len + k];
        }
        case 1u: {
            return params[rp + args.w_r + col * args.n + k];
        }
        default: {
            return params[rp + args.w_x + col * (args.n_in + args.n) + args.n_in + k];
        }
    }
}

fn store(acc: ptr<function, MmAcc>, blk: MmBlock, out: u32, bias: u32) {
    for (var r = 0u; r < MM_RM; r++) {
        for (var c = 0u; c < 4u; c++) {
            if mm_row_ok(blk, r) && mm_col_ok(blk, c) {
                let j = blk.c0 + c;
                work[rw + out + (blk.r0 + r) * args.n + j] = (*acc)[r][c] + params[rp + bias + j];
            }
        }
    }
}

@compute @workgroup_size(MM_INVOCATIONS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    enter_replica(wid.z);
    let blk = mm_block(wid, nwg, lid, args.batch, args.n, 1u);
    if !blk.live {
        return;
    }
    var acc: MmAcc;
    mm_product(&acc, 0u, blk, 0u, args.n_in);
    if fused() {
        mm_product(&acc, 2u, blk, 0u, args.n);
    }
    // Keep this step's input on the tape, where the backward reads it without knowing t.
    if (args.flags & LAYER_DATA_INPUT) != 0u && blk.c0 == 0u {
        let x_off = x_offset();
        for (var r = 0u; r < MM_RM; r++) {
            if mm_row_ok(blk, r) {
                let b = blk.r0 + r;
                for (var i = 0u; i < args.n_in; i++) {
                    work[rw + args.x_tape + b * args.n_in + i] = work[rw + x_off + b * args.n_in + i];
                }
            }
        }
    }
    store(&acc, blk, args.cur_x, args.c_x);
    if !fused() && args.w_r != NONE {
        var accr: MmAcc;
        mm_product(&accr, 1u, blk, 0u, args.n);
        store(&accr, blk, args.cur_r, args.c_r);
    }
}
