// Weight gradients as batched outer products (method §3): for a map with output gradient G [B, O]
// and input [P ; Q] [B, P+Q],
//   ∇W[o, i] = Σ_b G[b, o]·[P ; Q][b, i],   ∇c[o] = Σ_b G[b, o]  (the bias is column P+Q, of ones)
// and the gate slopes' gradients ∇a = Σ r·z as dot jobs. Inside a chunk of steps (accumulate = 1)
// each step adds its part. One dispatch runs up to WEIGHT_GRAD_JOBS jobs (every weight gradient
// of a step in two dispatches for one layer, not one each): the workgroup's index picks the job.
// A matrix job is a product through the template (shaders/shared/matmul.wgsl):
// A[o, b] = G[b, o], B[b, i] = [P ; Q ; 1][b, i]. With split S > 1 its grid runs S times, copy s
// reducing samples [s·⌈B/S⌉, (s+1)·⌈B/S⌉) into work[partials + s·rows·(P+Q+1) + o·(P+Q+1) + i]
// (bias column included) for a later fixed-order sum.
#import bindings
#import args
#import matmul
@group(1) @binding(0) var<storage, read> args: WeightGradJobs;

// The job this workgroup works on (set first thing in main; the operands below read it).
var<private> job: WeightGradArgs;

// One partial sum per invocation of a dot job, added in lane order by lane 0.
var<workgroup> dot_lanes: array<f32, MM_INVOCATIONS>;

const MM_A_K_FAST: bool = false;
const MM_B_K_FAST: bool = false;

fn mm_a(p: u32, row: u32, k: u32) -> f32 {
    return work[rw + job.g + k * job.rows + row];
}

// Branch-free in the column (a per-invocation value, so a branch would run every path): one
// load from P, Q or (for the bias column) the in-bounds G, replaced by 1 there. The column's
// base and stride do not depend on k, so the compilers hoist them out of the loop over k.
fn mm_b(p: u32, k: u32, col: u32) -> f32 {
    let in_q = col >= job.p_width;
    let is_bias = col >= job.p_width + job.q_width;
    let base = select(select(job.p + col, job.q + (col - job.p_width), in_q), job.g, is_bias);
    let stride = select(select(job.p_width, job.q_width, in_q), 0u, is_bias);
    return select(work[rw + base + k * stride], 1.0, is_bias);
}

// Workgroups a job owns (twin: the planner's `job_groups` in src/learn/planner/mod.rs).
fn job_groups(jb: WeightGradArgs) -> u32 {
    if jb.rows == 0u {
        return 1u;
    }
    return mm_blocks(jb.rows, jb.p_width + jb.q_width + 1u) * max(jb.split, 1u);
}

// grad[out] (+)= Σ_i g[i]·p[i], by one workgroup (`group` > 0: a workgroup past the grid's end).
fn dot_job(group: u32, lid: u32) {
    var acc = 0.0;
    if group == 0u {
        for (var i = lid; i < job.batch; i += MM_INVOCATIONS) {
            acc += work[rw + job.g + i] * work[rw + job.p + i];
        }
    }
    dot_lanes[lid] = acc;
    workgroupBarrier();
    if lid == 0u && group == 0u {
        var total = 0.0;
        for (var l = 0u; l < MM_INVOCATIONS; l++) {
            total += dot_lanes[l];
        }
        if job.accumulate != 0u {
            grad[rp + job.out] += total;
        } else {
            grad[rp + job.out] = total;
        }
    }
}

@compute @workgroup_size(MM_INVOCATIONS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    enter_replica(wid.z);
    // Find this workgroup's job: jobs own consecutive ranges of workgroups, in order.
    var group = wid.y * nwg.x + wid.x;
    var j = 0u;
    loop {
        if j + 1u >= args.jobs {
            break;
        }
        let owned = job_groups(args.job[j]);
        if group < owned {
            break;
        }
        group -= owned;
        j++;
    }
    job = args.job[j];
    if job.rows == 0u {
        dot_job(group, lid);
        return;
    }
    let width = job.p_width + job.q_width;
    let cols = width + 1u;
    let split = max(job.split, 1u);
    let blk = mm_block(vec3<u32>(group, 0u, 0u), vec3<u32>(group + 1u, 1u, 1u), lid, job.rows, cols, split);
    if !blk.live {
        return;
    }
    let chunk = (job.batch + split - 1u) / split;
    let k_begin = min(blk.slice * chunk, job.batch);
    let k_end = min(k_begin + chunk, job.batch);
    var acc: MmAcc;
    mm_product(&acc, 0u, blk, k_begin, k_end);
    for (var r = 0u; r < MM_RM; r++) {
        for (var c = 0u; c < 4u; c++) {
            if !mm_row_ok(blk, r) || !mm_col_ok(blk, c) {
                continue;
            }
            let o = blk.r0 + r;
            let i = blk.c0 + c;
            if split > 1u {
                work[rw + job.partials + (blk.slice * job.rows + o) * cols + i] = acc[r][c];
                continue;
            }
            var at = job.out + o * width + i;
            if i == width {
                if job.bias == NONE {
                    continue;
                }
                at = job.bias + o;
            }
            if job.accumulate != 0u {
                grad[rp + at] += acc[r][c];
            } else {
                grad[rp + at] = acc[r][c];
            }
        }
    }
}
