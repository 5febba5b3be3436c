// The matrix-product template of every matrix-shaped kernel: C[M, N] (+)= Σ_k A[row, k]·B[k, col].
//
// The including kernel defines at module scope (WGSL resolves module-scope names in any order):
//   fn mm_a(p: u32, row: u32, k: u32) -> f32   A[row, k] of the kernel's product p
//   fn mm_b(p: u32, k: u32, col: u32) -> f32   B[k, col] of product p
//       (called with row < M, col < N and k inside the range given to mm_product only)
//   const MM_A_K_FAST: bool   A[row, k + 1] sits next to A[row, k] in memory (else A[row + 1, k])
//   const MM_B_K_FAST: bool   B[k + 1, col] sits next to B[k, col] (else B[k, col + 1])
// and declares `@compute @workgroup_size(MM_INVOCATIONS)`. A launch has `groups` workgroups
// (`MatmulTiling::groups` in src/gpu/tiling.rs), each owning one TM × TN block of the output
// (TM = MM_WG_ROWS·MM_RM, TN = MM_WG_COLS·4; blocks row-major, then `split` copies of the grid).
// Every invocation keeps an MM_RM × 4 register block (rows r0.., columns c0..c0+3).
//
// Two ways through K, chosen per adapter on the host (src/gpu/tiling.rs sets every override):
//   MM_TK > 0: the workgroup stages K-slices of A (TM × TK) and B (TK × TN) in workgroup memory
//              with cooperative loads, zero-filled past K, and every invocation reads its operands
//              from there (GPUs: each value loaded from memory feeds TN or TM multiply-adds);
//   MM_TK = 0: no workgroup memory and no barriers: each invocation reads its own operands
//              (lavapipe, where a barrier costs a coroutine switch per invocation and workgroup
//              memory is no faster than the buffers).
// Rows and columns past the output are clamped on load (in bounds, never stored: see mm_row_ok).

// Tile shape (the defaults are the GPU shape; the host always sets all of them).
override MM_WG_ROWS: u32 = 16u;
override MM_WG_COLS: u32 = 16u;
override MM_RM: u32 = 4u;
override MM_TK: u32 = 16u;
// = MM_WG_ROWS·MM_WG_COLS, and the staged slices' lengths TM·TK and TK·TN/4 (at least 1).
override MM_INVOCATIONS: u32 = 256u;
override MM_A_LEN: u32 = 1024u;
override MM_B_LEN: u32 = 256u;

// Register rows per invocation at most (MM_RM ≤ this; loops run to MM_RM, a pipeline constant,
// so drivers unroll them and keep the block in registers).
const MM_RM_MAX: u32 = 8u;

// A staged K-slice: A k-major ([TK][TM]), B k-major in vec4s of columns ([TK][TN/4]).
var<workgroup> mm_as: array<f32, MM_A_LEN>;
var<workgroup> mm_bs: array<vec4<f32>, MM_B_LEN>;

// The register block of one invocation: acc[r][c] = C[r0 + r, c0 + c].
alias MmAcc = array<vec4<f32>, MM_RM_MAX>;

// Where an invocation works: its workgroup's block, its register block, the output's size and
// which copy of the grid (`slice` < split) its workgroup belongs to.
struct MmBlock {
    row0: u32,
    col0: u32,
    r0: u32,
    c0: u32,
    m: u32,
    n: u32,
    slice: u32,
    // The workgroup lies inside the launched grid (the host rounds the count up to fill 2-D).
    live: bool,
    // Local invocation index.
    lid: u32,
}

fn mm_tm() -> u32 {
    return MM_WG_ROWS * MM_RM;
}

fn mm_tn() -> u32 {
    return MM_WG_COLS * 4u;
}

// Workgroups for an m × n output split `split` ways (twin: `MatmulTiling::groups`).
fn mm_blocks(m: u32, n: u32) -> u32 {
    return ((m + mm_tm() - 1u) / mm_tm()) * ((n + mm_tn() - 1u) / mm_tn());
}

fn mm_block(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, m: u32, n: u32, split: u32) -> MmBlock {
    let g = wid.y * nwg.x + wid.x;
    let blocks = mm_blocks(m, n);
    let across = (n + mm_tn() - 1u) / mm_tn();
    let b = g % blocks;
    let row0 = (b / across) * mm_tm();
    let col0 = (b % across) * mm_tn();
    let ty = lid / MM_WG_COLS;
    let tx = lid % MM_WG_COLS;
    return MmBlock(row0, col0, row0 + ty * MM_RM, col0 + tx * 4u, m, n, g / blocks, g < blocks * split, lid);
}

// Row r and column c of the register block inside the output (stores check these).
fn mm_row_ok(blk: MmBlock, r: u32) -> bool {
    return blk.r0 + r < blk.m;
}

fn mm_col_ok(blk: MmBlock, c: u32) -> bool {
    return blk.c0 + c < blk.n;
}

// acc += A·B over k in [k_begin, k_end) for product p. Every invocation of the workgroup must
// call it with the same p and range (barriers inside when staging).
fn mm_product(acc: ptr<function, MmAcc>, p: u32, blk: MmBlock, k_begin: u32, k_end: u32) {
    let m_last = max(blk.m, 1u) - 1u;
    let n_last = max(blk.n, 1u) - 1u;
    if MM_TK == 0u {
        // Register blocks wholly outside the output have nothing to compute (no barriers here).
        if blk.r0 >= blk.m || blk.c0 >= blk.n {
            return;
        }
        let cols = min(vec4<u32>(blk.c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(n_last));
        for (var k = k_begin; k < k_end; k++) {
            let bv = vec4<f32>(mm_b(p, k, cols.x), mm_b(p, k, cols.y), mm_b(p, k, cols.z), mm_b(p, k, cols.w));
            for (var r = 0u; r < MM_RM; r++) {
                (*acc)[r] += mm_a(p, min(blk.r0 + r, m_last), k) * bv;
            }
        }
        return;
    }
    // The slice length as a divisor that is never the constant 0 (naga rejects that even on the
    // branch above that MM_TK = 0 never reaches).
    let tk = max(MM_TK, 1u);
    let tm = mm_tm();
    let tn4 = MM_WG_COLS;
    let ty = blk.lid / MM_WG_COLS;
    let tx = blk.lid % MM_WG_COLS;
    for (var k0 = k_begin; k0 < k_end; k0 += MM_TK) {
        for (var e = blk.lid; e < tm * MM_TK; e += MM_INVOCATIONS) {
            var kk: u32;
            var rr: u32;
            if MM_A_K_FAST {
                kk = e % tk;
                rr = e / tk;
            } else {
                rr = e % tm;
                kk = e / tm;
            }
            var v = 0.0;
            if k0 + kk < k_end {
                v = mm_a(p, min(blk.row0 + rr, m_last), k0 + kk);
            }
            mm_as[kk * tm + rr] = v;
        }
        for (var e = blk.lid; e < tn4 * MM_TK; e += MM_INVOCATIONS) {
            var kk: u32;
            var cc: u32;
            if MM_B_K_FAST {
                kk = e % tk;
                cc = e / tk;
            } else {
                cc = e % tn4;
                kk = e / tn4;
            }
            var v = vec4<f32>(0.0);
            let k = k0 + kk;
            if k < k_end {
                let cols = min(vec4<u32>(blk.col0 + cc * 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(n_last));
                v = vec4<f32>(mm_b(p, k, cols.x), mm_b(p, k, cols.y), mm_b(p, k, cols.z), mm_b(p, k, cols.w));
            }
            mm_bs[kk * tn4 + cc] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < MM_TK; kk++) {
            let bv = mm_bs[kk * tn4 + tx];
            let a = kk * tm + ty * MM_RM;
            for (var r = 0u; r < MM_RM; r++) {
                (*acc)[r] += mm_as[a + r] * bv;
            }
        }
        workgroupBarrier();
    }
}
