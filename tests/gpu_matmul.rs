//! The matrix-product template (shaders/shared/matmul.wgsl) against f64 CPU products on odd
//! shapes (1×1×1, single rows and columns, sizes that are no multiple of any tile, K shorter and
//! longer than a K-slice), with every output NaN-poisoned first so that an element left unwritten
//! fails, and a guard region after the output that must stay untouched. Each check runs with the
//! adapter's own tile shape, the GPU shape (workgroup memory and barriers, also on lavapipe) and a
//! ragged one (non-power-of-two workgroup, 3 register rows, K-slice 5).

mod gpu_common;

use fptt::gpu::{GpuContext, KernelTable, MatmulTiling};
use fptt::learn::kernel_args::{InputGradArgs, StepInfo, WeightGradArgs, WeightGradJobs};
use fptt::rng::Rng;
use gpu_common::{assert_guard, SENTINEL};

const NONE: u32 = u32::MAX;
const GUARD: usize = 64;

fn tables(ctx: &GpuContext) -> Vec<KernelTable> {
    let ragged = MatmulTiling { wg_rows: 3, wg_cols: 5, reg_rows: 3, k_slice: 5 };
    vec![KernelTable::new(ctx), KernelTable::with_tiling(ctx, MatmulTiling::GPU), KernelTable::with_tiling(ctx, ragged)]
}

fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect()
}

/// Run one launch of `kernel` over an `rows × cols` output (`split` copies) on the given buffers;
/// returns (grad, work) after it.
#[allow(clippy::too_many_arguments)]
fn launch<T: bytemuck::Pod>(
    ctx: &GpuContext,
    kernels: &KernelTable,
    kernel: &str,
    args: &T,
    (rows, cols, split): (usize, usize, usize),
    params: &[f32],
    grad: &[f32],
    work: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let workgroups = kernels.tiling().groups(rows, cols, split);
    launch_groups(ctx, kernels, kernel, args, workgroups, params, grad, work)
}

/// `launch` with the number of workgroups given.
#[allow(clippy::too_many_arguments)]
fn launch_groups<T: bytemuck::Pod>(
    ctx: &GpuContext,
    kernels: &KernelTable,
    kernel: &str,
    args: &T,
    workgroups: u32,
    params: &[f32],
    grad: &[f32],
    work: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    gpu_common::launch(ctx, kernels, kernel, args, workgroups, 1, &StepInfo::default(), params, grad, work)
}

/// |gpu − cpu| ≤ 1e-5·(1 + Σ|terms|) elementwise, every element finite.
fn assert_close(what: &str, gpu: &[f32], cpu: &[f64], scale: &[f64]) {
    gpu_common::Worst::default().check(what, gpu, cpu, scale, 1e-5, None);
}

#[test]
fn template_product_matches_cpu_on_odd_shapes() {
    let ctx = gpu_common::context();
    let mut rng = Rng::new(15);
    for kernels in tables(&ctx) {
        let tiling = kernels.tiling();
        for (m, n, k) in
            [(1, 1, 1), (1, 37, 3), (29, 1, 2), (67, 131, 5), (9, 70, 41), (64, 64, 16), (65, 63, 33), (128, 32, 8)]
        {
            let a = random(&mut rng, m * k);
            let b = random(&mut rng, n * k);
            // work = [A | C (NaN) | guard]
            let mut work = a.clone();
            work.extend(std::iter::repeat_n(f32::NAN, m * n));
            work.extend(std::iter::repeat_n(SENTINEL, GUARD));
            let args = InputGradArgs {
                batch: m as u32,
                cols: n as u32,
                k1: k as u32,
                g1: 0,
                w1: 0,
                out: (m * k) as u32,
                add: NONE,
                ..Default::default()
            };
            let (_, out) = launch(&ctx, &kernels, "bench_matmul", &args, (m, n, 1), &b, &[0.0], &work);
            let mut cpu = vec![0.0; m * n];
            let mut scale = vec![0.0; m * n];
            for r in 0..m {
                for c in 0..n {
                    for i in 0..k {
                        let t = a[r * k + i] as f64 * b[c * k + i] as f64;
                        cpu[r * n + c] += t;
                        scale[r * n + c] += t.abs();
                    }
                }
            }
            let what = format!("bench_matmul {m}x{n}x{k} ({tiling})");
            assert_close(&what, &out[m * k..m * k + m * n], &cpu, &scale);
            assert_guard(&what, &out[m * k + m * n..]);
        }
    }
}

/// ∇W[o, i] = Σ_b G[b, o]·[P ; Q ; 1][b, i] over the samples of `range`.
fn weight_grad_cpu(
    g: &[f32],
    x: &[f32],
    q: &[f32],
    (rows, pw, qw): (usize, usize, usize),
    range: std::ops::Range<usize>,
) -> (Vec<f64>, Vec<f64>) {
    let cols = pw + qw + 1;
    let mut out = vec![0.0; rows * cols];
    let mut scale = vec![0.0; rows * cols];
    for b in range {
        for o in 0..rows {
            for i in 0..cols {
                let v = if i < pw {
                    x[b * pw + i]
                } else if i < pw + qw {
                    q[b * qw + i - pw]
                } else {
                    1.0
                };
                let t = g[b * rows + o] as f64 * v as f64;
                out[o * cols + i] += t;
                scale[o * cols + i] += t.abs();
            }
        }
    }
    (out, scale)
}

#[test]
fn weight_grad_matches_cpu_whole_batch_and_split_partials() {
    let ctx = gpu_common::context();
    let mut rng = Rng::new(16);
    for kernels in tables(&ctx) {
        let tiling = kernels.tiling();
        for (batch, rows, pw, qw) in [(1, 1, 1, 0), (7, 67, 5, 3), (33, 9, 130, 0), (20, 3, 2, 2)] {
            let cols = pw + qw + 1;
            let g = random(&mut rng, batch * rows);
            let x = random(&mut rng, batch * pw);
            let q = random(&mut rng, batch * qw);
            // work = [G | P | Q | partials (NaN) | guard]
            let (p_off, q_off) = (batch * rows, batch * rows + batch * pw);
            let partials = q_off + batch * qw;
            for split in [1usize, 3, 8] {
                let mut work = [g.clone(), x.clone(), q.clone()].concat();
                work.extend(std::iter::repeat_n(f32::NAN, split * rows * cols));
                work.extend(std::iter::repeat_n(SENTINEL, GUARD));
                // grad = [W (NaN, or ones to add to) | bias | guard]
                for accumulate in [0u32, 1] {
                    let start = if accumulate == 1 { 1.0 } else { f32::NAN };
                    let mut grad = vec![start; rows * (pw + qw) + rows];
                    grad.extend(std::iter::repeat_n(SENTINEL, GUARD));
                    let args = WeightGradArgs {
                        batch: batch as u32,
                        rows: rows as u32,
                        p_width: pw as u32,
                        q_width: qw as u32,
                        g: 0,
                        p: p_off as u32,
                        q: if qw > 0 { q_off as u32 } else { NONE },
                        out: 0,
                        bias: (rows * (pw + qw)) as u32,
                        accumulate,
                        split: split as u32,
                        partials: partials as u32,
                    };
                    let (gout, wout) = launch(
                        &ctx,
                        &kernels,
                        "weight_grad",
                        &WeightGradJobs::new(&[args]),
                        (rows, cols, split),
                        &[0.0],
                        &grad,
                        &work,
                    );
                    let what = format!(
                        "weight_grad B={batch} {rows}x{pw}+{qw} split {split} accumulate {accumulate} ({tiling})"
                    );
                    if split == 1 {
                        let (full, scale) = weight_grad_cpu(&g, &x, &q, (rows, pw, qw), 0..batch);
                        let add = if accumulate == 1 { 1.0 } else { 0.0 };
                        let mut cpu_w = Vec::new();
                        let mut cpu_b = Vec::new();
                        for o in 0..rows {
                            cpu_w.extend(full[o * cols..o * cols + pw + qw].iter().map(|v| v + add));
                            cpu_b.push(full[o * cols + pw + qw] + add);
                        }
                        let scale_w: Vec<f64> =
                            (0..rows).flat_map(|o| scale[o * cols..o * cols + pw + qw].to_vec()).collect();
                        let scale_b: Vec<f64> = (0..rows).map(|o| scale[o * cols + pw + qw]).collect();
                        let nw = rows * (pw + qw);
                        assert_close(&what, &gout[..nw], &cpu_w, &scale_w);
                        assert_close(&what, &gout[nw..nw + rows], &cpu_b, &scale_b);
                        assert_guard(&what, &gout[nw + rows..]);
                    } else {
                        let chunk = batch.div_ceil(split);
                        for s in 0..split {
                            let lo = (s * chunk).min(batch);
                            let (cpu, scale) = weight_grad_cpu(&g, &x, &q, (rows, pw, qw), lo..(lo + chunk).min(batch));
                            let at = partials + s * rows * cols;
                            assert_close(&format!("{what} partial {s}"), &wout[at..at + rows * cols], &cpu, &scale);
                        }
                        assert!(
                            gout[..rows * (pw + qw) + rows].iter().all(|v| v.to_bits() == start.to_bits()),
                            "{what}: grad touched"
                        );
                    }
                    assert_guard(&what, &wout[partials + split * rows * cols..]);
                }
            }
        }
    }
}

#[test]
fn weight_grad_without_bias_leaves_it_alone() {
    let ctx = gpu_common::context();
    let kernels = KernelTable::new(&ctx);
    let (batch, rows, pw) = (5, 6, 7);
    let mut rng = Rng::new(17);
    let work = [random(&mut rng, batch * rows), random(&mut rng, batch * pw)].concat();
    let mut grad = vec![f32::NAN; rows * pw];
    grad.extend(std::iter::repeat_n(SENTINEL, GUARD));
    let args = WeightGradArgs {
        batch: batch as u32,
        rows: rows as u32,
        p_width: pw as u32,
        p: (batch * rows) as u32,
        q: NONE,
        bias: NONE,
        ..Default::default()
    };
    let (gout, _) =
        launch(&ctx, &kernels, "weight_grad", &WeightGradJobs::new(&[args]), (rows, pw + 1, 1), &[0.0], &grad, &work);
    let (full, scale) = weight_grad_cpu(&work[..batch * rows], &work[batch * rows..], &[], (rows, pw, 0), 0..batch);
    let pick =
        |v: &[f64]| -> Vec<f64> { (0..rows).flat_map(|o| v[o * (pw + 1)..o * (pw + 1) + pw].to_vec()).collect() };
    assert_close("weight_grad without bias", &gout[..rows * pw], &pick(&full), &pick(&scale));
    assert_guard("weight_grad without bias", &gout[rows * pw..]);
}

/// One weight_grad dispatch with several jobs (matrices of different shapes with and without
/// bias and accumulation, and dot jobs, the gate-slope gradients) matches the CPU, job by job.
#[test]
fn weight_grad_jobs_in_one_dispatch_match_cpu() {
    let ctx = gpu_common::context();
    let mut rng = Rng::new(21);
    for kernels in tables(&ctx) {
        let tiling = kernels.tiling();
        // (batch, rows, p_width, q_width, bias, accumulate); rows = 0: a dot of `batch` terms.
        let shapes = [
            (7, 3, 5, 2, true, 0),
            (1000, 0, 0, 0, false, 0),
            (4, 17, 9, 0, false, 1),
            (1, 0, 0, 0, false, 1),
            (13, 1, 1, 0, true, 0),
        ];
        let mut work = Vec::new();
        let mut grad = Vec::new();
        let mut jobs = Vec::new();
        let mut expected = Vec::new();
        for &(batch, rows, pw, qw, bias, accumulate) in &shapes {
            let start = if accumulate == 1 { 0.5 } else { f32::NAN };
            if rows == 0 {
                let (a, b) = (random(&mut rng, batch), random(&mut rng, batch));
                let job = WeightGradArgs {
                    batch: batch as u32,
                    g: work.len() as u32,
                    p: (work.len() + batch) as u32,
                    q: NONE,
                    out: grad.len() as u32,
                    bias: NONE,
                    accumulate,
                    ..Default::default()
                };
                work.extend(&a);
                work.extend(&b);
                let dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
                let scale: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
                expected.push((grad.len(), vec![dot + if accumulate == 1 { 0.5 } else { 0.0 }], vec![scale]));
                grad.push(start);
                jobs.push(job);
                continue;
            }
            let g = random(&mut rng, batch * rows);
            let x = random(&mut rng, batch * pw);
            let q = random(&mut rng, batch * qw);
            let g_off = work.len();
            work.extend(&g);
            let p_off = work.len();
            work.extend(&x);
            let q_off = work.len();
            work.extend(&q);
            let out = grad.len();
            let width = pw + qw;
            let len = rows * width + if bias { rows } else { 0 };
            grad.extend(std::iter::repeat_n(start, len));
            jobs.push(WeightGradArgs {
                batch: batch as u32,
                rows: rows as u32,
                p_width: pw as u32,
                q_width: qw as u32,
                g: g_off as u32,
                p: p_off as u32,
                q: if qw > 0 { q_off as u32 } else { NONE },
                out: out as u32,
                bias: if bias { (out + rows * width) as u32 } else { NONE },
                accumulate,
                ..Default::default()
            });
            let (full, scale) = weight_grad_cpu(&g, &x, &q, (rows, pw, qw), 0..batch);
            let add = if accumulate == 1 { 0.5 } else { 0.0 };
            let cols = width + 1;
            let pick = |v: &[f64], add: f64| -> Vec<f64> {
                let mut w: Vec<f64> =
                    (0..rows).flat_map(|o| v[o * cols..o * cols + width].iter().map(move |x| x + add)).collect();
                if bias {
                    w.extend((0..rows).map(|o| v[o * cols + width] + add));
                }
                w
            };
            expected.push((out, pick(&full, add), pick(&scale, 0.0)));
        }
        grad.extend(std::iter::repeat_n(SENTINEL, GUARD));
        let groups: u32 =
            jobs.iter()
                .map(|j| {
                    if j.rows == 0 {
                        1
                    } else {
                        tiling.groups(j.rows as usize, (j.p_width + j.q_width + 1) as usize, 1)
                    }
                })
                .sum();
        let args = WeightGradJobs::new(&jobs);
        let (gout, _) = launch_groups(&ctx, &kernels, "weight_grad", &args, groups, &[0.0], &grad, &work);
        for (j, (at, cpu, scale)) in expected.iter().enumerate() {
            let what = format!("weight_grad job {j} of {} ({tiling})", jobs.len());
            assert_close(&what, &gout[*at..at + cpu.len()], cpu, scale);
        }
        assert_guard("weight_grad jobs", &gout[gout.len() - GUARD..]);
    }
}
