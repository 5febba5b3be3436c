// Register tiles: matrix-shaped kernels compute a 4×4 block of outputs per invocation, so each
// value loaded feeds four multiply-adds (lavapipe and GPUs alike reward the reuse).
// Twin: `tiles()` in src/learn/fptt.rs, which sizes their dispatches.

const TILE: u32 = 4u;

// The four row (or column) indices of tile `t`, clamped to `len − 1` so that edge tiles read in
// bounds; their extra outputs are never written.
fn tile_indices(t: u32, len: u32) -> vec4<u32> {
    let first = t * TILE;
    return min(vec4<u32>(first, first + 1u, first + 2u, first + 3u), vec4<u32>(len - 1u));
}

// The tile an invocation owns in a rows × cols output, tiles laid row-major: its first row and
// column, and its four (clamped) row and column indices.
struct Tile {
    row0: u32,
    col0: u32,
    rows: vec4<u32>,
    cols: vec4<u32>,
}

fn tile_count(rows: u32, cols: u32) -> u32 {
    return ((rows + TILE - 1u) / TILE) * ((cols + TILE - 1u) / TILE);
}

// Tile `idx` (< tile_count(rows, cols)).
fn tile_at(idx: u32, rows: u32, cols: u32) -> Tile {
    let across = (cols + TILE - 1u) / TILE;
    let tr = idx / across;
    let tc = idx % across;
    return Tile(tr * TILE, tc * TILE, tile_indices(tr, rows), tile_indices(tc, cols));
}

// Write a finished tile into work: out[r, c] = add[r, c] + acc[r][c] + bias[c] for the rows and
// columns inside the rows × cols output (add = NONE: no addend).
fn tile_store(acc: ptr<function, array<vec4<f32>, 4>>, tile: Tile, rows: u32, cols: u32, out: u32, add: u32, bias: vec4<f32>) {
    for (var r = 0u; r < TILE; r++) {
        let row = tile.row0 + r;
        if row >= rows {
            break;
        }
        for (var c = 0u; c < TILE; c++) {
            let col = tile.col0 + c;
            if col >= cols {
                break;
            }
            let i = row * cols + col;
            var v = (*acc)[r][c] + bias[c];
            if add != NONE {
                v = work[add + i] + v;
            }
            work[out + i] = v;
        }
    }
}

// acc[r] += a[r]·w: one rank-1 update of a 4×4 tile (a: the tile's four rows, w: its four columns).
fn fma_tile(acc: ptr<function, array<vec4<f32>, 4>>, a: vec4<f32>, w: vec4<f32>) {
    (*acc)[0] += a.x * w;
    (*acc)[1] += a.y * w;
    (*acc)[2] += a.z * w;
    (*acc)[3] += a.w * w;
}
