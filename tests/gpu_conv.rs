//! The convolutional kernels (issue #18: conv_forward, conv_input_grad, conv_weight_grad,
//! maxpool_forward/backward, batch_norm2d_forward/backward) against the f64 reference of
//! `fptt::reference::conv` on fresh random inputs and odd shapes: one channel, kernels 1, 3 and 7
//! with padding 0 and k/2, images 5×7 and 9×6 (not divisible by the pool), batch 1 and 3, output
//! channels that are no multiple of any tile; the accumulate modes, the summed second input and the
//! split weight gradient too. Every output is NaN-poisoned first (an element left unwritten fails)
//! and followed by a guard region that must stay untouched. The convolutions run with the
//! adapter's tile shape, the GPU shape (workgroup memory and barriers, also on lavapipe) and a
//! ragged one. Each test prints the worst error it saw (`--nocapture`).

mod gpu_common;

use fptt::gpu::{GpuContext, KernelTable, MatmulTiling};
use fptt::learn::kernel_args::{Bn2dArgs, ConvArgs, PoolArgs, StepInfo};
use fptt::reference::batchnorm::{stat_names, Norm};
use fptt::reference::conv::{
    bn2d_backward, bn2d_forward, bn2d_update_running, conv2d, conv2d_backward, maxpool2, maxpool2_backward, ConvShape,
};
use fptt::reference::Params;
use fptt::rng::Rng;
use gpu_common::{assert_guard, Worst, SENTINEL};

const NONE: u32 = u32::MAX;
const GUARD: usize = 64;

fn tables(ctx: &GpuContext) -> Vec<KernelTable> {
    let ragged = MatmulTiling { wg_rows: 3, wg_cols: 5, reg_rows: 3, k_slice: 5 };
    vec![KernelTable::new(ctx), KernelTable::with_tiling(ctx, MatmulTiling::GPU), KernelTable::with_tiling(ctx, ragged)]
}

fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect()
}

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn abs(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| (x as f64).abs()).collect()
}

fn poison(n: usize) -> Vec<f32> {
    vec![f32::NAN; n]
}

fn guard() -> Vec<f32> {
    vec![SENTINEL; GUARD]
}

/// One launch of `kernel` with `workgroups` workgroups and step info `step`; returns (grad, work).
#[allow(clippy::too_many_arguments)]
fn launch<T: bytemuck::Pod>(
    ctx: &GpuContext,
    kernels: &KernelTable,
    kernel: &str,
    args: &T,
    workgroups: u32,
    step: &StepInfo,
    params: &[f32],
    grad: &[f32],
    work: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    gpu_common::launch(ctx, kernels, kernel, args, workgroups, 1, step, params, grad, work)
}

/// |gpu − cpu| ≤ rel·(1 + scale) elementwise (scale: Σ|terms| of the element's reduction), every
/// element finite.
fn assert_close(worst: &mut Worst, what: &str, gpu: &[f32], cpu: &[f64], scale: &[f64], rel: f64) {
    worst.check(what, gpu, cpu, scale, rel, None);
}

/// f32 against f64 over reductions of up to a few hundred terms (Σ|terms| as the scale).
const REL: f64 = 1e-5;

/// (batch, in, out, h, w, k, pad): one channel, kernels 1, 3 and 7 with padding 0 and k/2,
/// images 5×7 and 9×6 (and 9×8 for a 7×7 kernel without padding), batch 1 and 3, outputs that are
/// no multiple of any tile (67 across two 64-column blocks), K longer than several K-slices.
const SHAPES: [(usize, usize, usize, usize, usize, usize, usize); 8] = [
    (1, 1, 1, 5, 7, 1, 0),
    (3, 1, 5, 5, 7, 3, 1),
    (3, 2, 3, 5, 7, 3, 0),
    (1, 2, 3, 9, 6, 7, 3),
    (3, 3, 67, 9, 6, 3, 1),
    (2, 2, 4, 9, 8, 7, 0),
    (3, 5, 9, 9, 6, 1, 0),
    (1, 6, 33, 5, 7, 3, 1),
];

fn shape((batch, in_c, out_c, h, w, k, pad): (usize, usize, usize, usize, usize, usize, usize)) -> ConvShape {
    ConvShape { batch, in_c, out_c, h, w, k, pad }
}

fn conv_args(s: &ConvShape) -> ConvArgs {
    ConvArgs {
        batch: s.batch as u32,
        in_c: s.in_c as u32,
        out_c: s.out_c as u32,
        h: s.h as u32,
        w: s.w as u32,
        k: s.k as u32,
        pad: s.pad as u32,
        oh: s.oh() as u32,
        ow: s.ow() as u32,
        x2: NONE,
        bias: NONE,
        ..Default::default()
    }
}

#[test]
fn conv_forward_matches_reference() {
    let ctx = gpu_common::context();
    let mut rng = Rng::new(181);
    let mut worst = Worst::default();
    for kernels in tables(&ctx) {
        let tiling = kernels.tiling_of("conv_forward");
        for dims in SHAPES {
            let s = shape(dims);
            let (n_in, n_out) = (s.input_len(), s.output_len());
            let x = random(&mut rng, n_in);
            let x2 = random(&mut rng, n_in);
            let weight = random(&mut rng, s.weight_len());
            let bias = random(&mut rng, s.out_c);
            let start = random(&mut rng, n_out);
            // (second input, bias, accumulate)
            for (with_x2, with_bias, accumulate) in [(false, true, false), (true, true, true), (true, false, false)] {
                let input: Vec<f32> = if with_x2 { x.iter().zip(&x2).map(|(a, b)| a + b).collect() } else { x.clone() };
                let bias_used = if with_bias { bias.clone() } else { vec![0.0; s.out_c] };
                let mut cpu = conv2d(&wide(&input), &s, &wide(&weight), &wide(&bias_used));
                let in_abs: Vec<f64> = if with_x2 {
                    x.iter().zip(&x2).map(|(a, b)| (*a as f64).abs() + (*b as f64).abs()).collect()
                } else {
                    abs(&x)
                };
                let mut scale = conv2d(&in_abs, &s, &abs(&weight), &abs(&bias_used));
                if accumulate {
                    for ((c, sc), &v) in cpu.iter_mut().zip(&mut scale).zip(&start) {
                        *c += v as f64;
                        *sc += (v as f64).abs();
                    }
                }
                // work = [x | x2 | out (NaN, or the values to add to) | guard]; params = [W | bias]
                let out_at = 2 * n_in;
                let work =
                    [x.clone(), x2.clone(), if accumulate { start.clone() } else { poison(n_out) }, guard()].concat();
                let params = [weight.clone(), bias.clone()].concat();
                let args = ConvArgs {
                    x: 0,
                    x2: if with_x2 { n_in as u32 } else { NONE },
                    weight: 0,
                    bias: if with_bias { s.weight_len() as u32 } else { NONE },
                    out: out_at as u32,
                    accumulate: accumulate as u32,
                    ..conv_args(&s)
                };
                let groups = tiling.groups(s.batch * s.oh() * s.ow(), s.out_c, 1);
                let (_, out) =
                    launch(&ctx, &kernels, "conv_forward", &args, groups, &StepInfo::default(), &params, &[0.0], &work);
                let what =
                    format!("conv_forward {s:?} x2 {with_x2} bias {with_bias} accumulate {accumulate} ({tiling})");
                assert_close(&mut worst, &what, &out[out_at..out_at + n_out], &cpu, &scale, REL);
                assert_guard(&what, &out[out_at + n_out..]);
                assert_eq!(&out[..2 * n_in], &work[..2 * n_in], "{what}: inputs touched");
            }
        }
    }
    worst.report("conv_forward_matches_reference");
}

#[test]
fn conv_input_grad_matches_reference() {
    let ctx = gpu_common::context();
    let mut rng = Rng::new(182);
    let mut worst = Worst::default();
    for kernels in tables(&ctx) {
        let tiling = kernels.tiling_of("conv_input_grad");
        for dims in SHAPES {
            let s = shape(dims);
            let (n_in, n_out) = (s.input_len(), s.output_len());
            let x = random(&mut rng, n_in);
            let g = random(&mut rng, n_out);
            let weight = random(&mut rng, s.weight_len());
            let start = random(&mut rng, n_in);
            let (_, _, g_x) = conv2d_backward(&wide(&g), &wide(&x), &s, &wide(&weight));
            let (_, _, scale_x) = conv2d_backward(&abs(&g), &abs(&x), &s, &abs(&weight));
            for accumulate in [false, true] {
                let (mut cpu, mut scale) = (g_x.clone(), scale_x.clone());
                if accumulate {
                    for ((c, sc), &v) in cpu.iter_mut().zip(&mut scale).zip(&start) {
                        *c += v as f64;
                        *sc += (v as f64).abs();
                    }
                }
                // work = [g | out (NaN, or the values to add to) | guard]; params = [W]
                let work = [g.clone(), if accumulate { start.clone() } else { poison(n_in) }, guard()].concat();
                let args =
                    ConvArgs { g: 0, weight: 0, out: n_out as u32, accumulate: accumulate as u32, ..conv_args(&s) };
                let groups = tiling.groups(s.batch * s.h * s.w, s.in_c, 1);
                let (_, out) = launch(
                    &ctx,
                    &kernels,
                    "conv_input_grad",
                    &args,
                    groups,
                    &StepInfo::default(),
                    &weight,
                    &[0.0],
                    &work,
                );
                let what = format!("conv_input_grad {s:?} accumulate {accumulate} ({tiling})");
                assert_close(&mut worst, &what, &out[n_out..n_out + n_in], &cpu, &scale, REL);
                assert_guard(&what, &out[n_out + n_in..]);
            }
        }
    }
    worst.report("conv_input_grad_matches_reference");
}

#[test]
fn conv_weight_grad_matches_reference_whole_and_split() {
    let ctx = gpu_common::context();
    let mut rng = Rng::new(183);
    let mut worst = Worst::default();
    for kernels in tables(&ctx) {
        let tiling = kernels.tiling_of("conv_weight_grad");
        for dims in SHAPES {
            let s = shape(dims);
            let (n_in, n_out, n_w) = (s.input_len(), s.output_len(), s.weight_len());
            let width = s.in_c * s.k * s.k;
            let x = random(&mut rng, n_in);
            let x2 = random(&mut rng, n_in);
            let g = random(&mut rng, n_out);
            let start = random(&mut rng, n_w + s.out_c);
            let sum: Vec<f32> = x.iter().zip(&x2).map(|(a, b)| a + b).collect();
            let sum_abs: Vec<f64> = x.iter().zip(&x2).map(|(a, b)| (*a as f64).abs() + (*b as f64).abs()).collect();
            let dummy_w = vec![0.0; n_w];
            // (second input, bias, accumulate, split)
            for (with_x2, with_bias, accumulate, split) in
                [(false, true, false, 1usize), (true, true, true, 1), (false, false, false, 1), (true, true, false, 3)]
            {
                let input = if with_x2 { &sum } else { &x };
                let input_abs = if with_x2 { sum_abs.clone() } else { abs(&x) };
                let (gw, gc, _) = conv2d_backward(&wide(&g), &wide(input), &s, &dummy_w);
                let (sw, sc, _) = conv2d_backward(&abs(&g), &input_abs, &s, &dummy_w);
                // work = [x | x2 | g | partials (NaN) | guard]; grad = [∇W | ∇bias | guard]
                let g_at = 2 * n_in;
                let partials = g_at + n_out;
                let cols = width + 1;
                let work = [x.clone(), x2.clone(), g.clone(), poison(split * s.out_c * cols), guard()].concat();
                let grad0 = if accumulate { start.clone() } else { poison(n_w + s.out_c) };
                let grad = [grad0.clone(), guard()].concat();
                let args = ConvArgs {
                    x: 0,
                    x2: if with_x2 { n_in as u32 } else { NONE },
                    g: g_at as u32,
                    weight: 0,
                    bias: if with_bias { n_w as u32 } else { NONE },
                    accumulate: accumulate as u32,
                    split: split as u32,
                    partials: partials as u32,
                    ..conv_args(&s)
                };
                let groups = tiling.groups(s.out_c, cols, split);
                let (gout, wout) = launch(
                    &ctx,
                    &kernels,
                    "conv_weight_grad",
                    &args,
                    groups,
                    &StepInfo::default(),
                    &[0.0],
                    &grad,
                    &work,
                );
                let what = format!(
                    "conv_weight_grad {s:?} x2 {with_x2} bias {with_bias} accumulate {accumulate} split {split} ({tiling})"
                );
                assert_guard(&what, &gout[n_w + s.out_c..]);
                assert_guard(&what, &wout[partials + split * s.out_c * cols..]);
                if split == 1 {
                    let add = |v: &[f64], from: &[f32]| -> Vec<f64> {
                        v.iter().zip(from).map(|(a, &b)| if accumulate { a + b as f64 } else { *a }).collect()
                    };
                    let add_abs = |v: &[f64], from: &[f32]| -> Vec<f64> {
                        v.iter().zip(from).map(|(a, &b)| if accumulate { a + (b as f64).abs() } else { *a }).collect()
                    };
                    assert_close(&mut worst, &what, &gout[..n_w], &add(&gw, &start), &add_abs(&sw, &start), REL);
                    if with_bias {
                        let (cb, sb) = (add(&gc, &start[n_w..]), add_abs(&sc, &start[n_w..]));
                        assert_close(&mut worst, &what, &gout[n_w..n_w + s.out_c], &cb, &sb, REL);
                    } else {
                        assert!(gout[n_w..n_w + s.out_c].iter().all(|v| v.is_nan()), "{what}: bias written");
                    }
                    continue;
                }
                // Partial s reduces (sample, pixel) terms [s·⌈Q/S⌉, (s+1)·⌈Q/S⌉): the reference on
                // g zeroed outside that range.
                let terms = s.batch * s.oh() * s.ow();
                let chunk = terms.div_ceil(split);
                let opix = s.oh() * s.ow();
                for part in 0..split {
                    let range = (part * chunk).min(terms)..((part + 1) * chunk).min(terms);
                    let mut g_part = vec![0.0; n_out];
                    for q in range {
                        let (b, pix) = (q / opix, q % opix);
                        for o in 0..s.out_c {
                            let i = (b * s.out_c + o) * opix + pix;
                            g_part[i] = g[i] as f64;
                        }
                    }
                    let g_part_abs: Vec<f64> = g_part.iter().map(|v| v.abs()).collect();
                    let (pw, pc, _) = conv2d_backward(&g_part, &wide(input), &s, &dummy_w);
                    let (psw, psc, _) = conv2d_backward(&g_part_abs, &input_abs, &s, &dummy_w);
                    let mut cpu = Vec::new();
                    let mut scale = Vec::new();
                    for o in 0..s.out_c {
                        cpu.extend_from_slice(&pw[o * width..(o + 1) * width]);
                        cpu.push(pc[o]);
                        scale.extend_from_slice(&psw[o * width..(o + 1) * width]);
                        scale.push(psc[o]);
                    }
                    let at = partials + part * s.out_c * cols;
                    let w = &wout[at..at + s.out_c * cols];
                    assert_close(&mut worst, &format!("{what} partial {part}"), w, &cpu, &scale, REL);
                }
                assert!(gout[..n_w + s.out_c].iter().all(|v| v.is_nan()), "{what}: grad touched");
            }
        }
    }
    worst.report("conv_weight_grad_matches_reference_whole_and_split");
}

/// Inputs of three levels so that windows often tie (the first maximum must win).
fn tied(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (rng.uniform() * 3.0).floor() as f32 - 1.0).collect()
}

#[test]
fn maxpool_forward_and_backward_match_reference() {
    let ctx = gpu_common::context();
    let kernels = KernelTable::new(&ctx);
    let mut rng = Rng::new(184);
    // (planes = B·C, h, w)
    for (planes, h, w) in [(1, 2, 2), (1, 5, 7), (6, 5, 7), (12, 9, 6), (4, 3, 3), (3, 64, 65)] {
        let n = planes * h * w;
        let n_out = planes * (h / 2) * (w / 2);
        for x in [random(&mut rng, n), tied(&mut rng, n)] {
            let (y, arg) = maxpool2(&wide(&x), planes, h, w);
            // work = [x | y (NaN) | arg (NaN) | guard]
            let work = [x.clone(), poison(2 * n_out), guard()].concat();
            let args = PoolArgs {
                planes: planes as u32,
                h: h as u32,
                w: w as u32,
                x: 0,
                y: n as u32,
                arg: (n + n_out) as u32,
                ..Default::default()
            };
            let groups = n_out.div_ceil(64).max(1) as u32;
            let (_, out) =
                launch(&ctx, &kernels, "maxpool_forward", &args, groups, &StepInfo::default(), &[0.0], &[0.0], &work);
            let what = format!("maxpool_forward {planes}x{h}x{w}");
            let gy: Vec<f64> = out[n..n + n_out].iter().map(|&v| v as f64).collect();
            assert_eq!(gy, y, "{what}: values");
            for (o, &taken) in arg.iter().enumerate() {
                let (plane, oy, ox) = (o / ((h / 2) * (w / 2)), (o % ((h / 2) * (w / 2))) / (w / 2), o % (w / 2));
                let top = plane * h * w + 2 * oy * w + 2 * ox;
                let pos = [top, top + 1, top + w, top + w + 1].iter().position(|&i| i == taken).unwrap();
                assert_eq!(out[n + n_out + o], pos as f32, "{what}: argmax of output {o}");
            }
            assert_guard(&what, &out[n + 2 * n_out..]);

            // Backward from the kept positions: work = [g_y | arg | g_x (NaN, or values) | guard].
            let g_y = random(&mut rng, n_out);
            let start = random(&mut rng, n);
            let g_x = maxpool2_backward(&wide(&g_y), &arg, n);
            for accumulate in [false, true] {
                let work = [
                    g_y.clone(),
                    out[n + n_out..n + 2 * n_out].to_vec(),
                    if accumulate { start.clone() } else { poison(n) },
                    guard(),
                ]
                .concat();
                let args = PoolArgs {
                    planes: planes as u32,
                    h: h as u32,
                    w: w as u32,
                    arg: n_out as u32,
                    g_y: 0,
                    g_x: (2 * n_out) as u32,
                    accumulate: accumulate as u32,
                    ..Default::default()
                };
                let groups = n.div_ceil(64) as u32;
                let (_, back) = launch(
                    &ctx,
                    &kernels,
                    "maxpool_backward",
                    &args,
                    groups,
                    &StepInfo::default(),
                    &[0.0],
                    &[0.0],
                    &work,
                );
                let what = format!("maxpool_backward {planes}x{h}x{w} accumulate {accumulate}");
                for i in 0..n {
                    let expect = if accumulate { (g_x[i] as f32) + start[i] } else { g_x[i] as f32 };
                    assert_eq!(back[2 * n_out + i], expect, "{what}: element {i}");
                }
                assert_guard(&what, &back[2 * n_out + n..]);
            }
        }
    }
}

/// (batch, channels, h·w): one channel, batch 1, one pixel, and more values per channel than lanes.
const BN_SHAPES: [(usize, usize, usize); 5] = [(3, 1, 35), (1, 5, 54), (3, 7, 1), (2, 3, 300), (3, 4, 42)];

fn bn_params(gamma: &[f32], beta: &[f32]) -> Params {
    let mut p = Params::new();
    p.insert("bn.weight".into(), wide(gamma));
    p.insert("bn.bias".into(), wide(beta));
    p
}

fn bn_step(batch: usize, training: bool) -> StepInfo {
    StepInfo { t: 1, steps: 2, valid: batch as u32, training: training as u32, ..Default::default() }
}

#[test]
fn batch_norm2d_forward_matches_reference_in_training_and_evaluation() {
    let ctx = gpu_common::context();
    let kernels = KernelTable::new(&ctx);
    let mut rng = Rng::new(185);
    let mut worst = Worst::default();
    for (batch, c, hw) in BN_SHAPES {
        let n = batch * c * hw;
        let mut x = random(&mut rng, n);
        // Channel 0 constant: x̂ must be exactly 0 (Welford and the merge are exact there).
        for b in 0..batch {
            for p in 0..hw {
                x[b * c * hw + p] = 0.37;
            }
        }
        let gamma = random(&mut rng, c);
        let beta = random(&mut rng, c);
        // running = [mean of steps 0, 1 | var of steps 0, 1]
        let running: Vec<f32> =
            (0..4 * c).map(|i| if i < 2 * c { rng.uniform() as f32 } else { 0.5 + rng.uniform() as f32 }).collect();
        let p = bn_params(&gamma, &beta);
        let mut stats = Params::new();
        let (m1, v1) = stat_names("bn", 1);
        stats.insert(m1.clone(), wide(&running[c..2 * c]));
        stats.insert(v1.clone(), wide(&running[3 * c..4 * c]));
        // work = [x | xhat (NaN) | invstd (NaN) | running | guard]
        let (xhat_at, inv_at, run_at) = (n, 2 * n, 2 * n + c);
        let work = [x.clone(), poison(n + c), running.clone(), guard()].concat();
        let args = Bn2dArgs {
            batch: batch as u32,
            channels: c as u32,
            hw: hw as u32,
            x: 0,
            xhat: xhat_at as u32,
            invstd: inv_at as u32,
            gamma: 0,
            beta: c as u32,
            running: run_at as u32,
            ..Default::default()
        };
        let params = [gamma.clone(), beta.clone()].concat();
        for training in [true, false] {
            let what = format!("batch_norm2d_forward B={batch} C={c} hw={hw} training {training}");
            let (_, out) = launch(
                &ctx,
                &kernels,
                "batch_norm2d_forward",
                &args,
                c as u32,
                &bn_step(batch, training),
                &params,
                &[0.0],
                &work,
            );
            let norm = if training { Norm::Batch } else { Norm::Running { stats: &stats, t: 1 } };
            let (y, cache) = bn2d_forward(&wide(&x), batch, c, hw, &p, "bn", norm);
            // y = γ·x̂ + δ with |x̂| up to √(B·hw): the scale of its rounding is |γ|·|x̂| + |δ|.
            let scale: Vec<f64> = (0..n)
                .map(|i| {
                    let ch = (i / hw) % c;
                    let (b, pix) = (i / (c * hw), i % hw);
                    (gamma[ch] as f64).abs() * cache.xhat[(b * hw + pix) * c + ch].abs() + (beta[ch] as f64).abs()
                })
                .collect();
            assert_close(&mut worst, &what, &out[..n], &y, &scale, 1e-5);
            assert_guard(&what, &out[run_at + 4 * c..]);
            if !training {
                assert!(out[n..2 * n + c].iter().all(|v| v.is_nan()), "{what}: tape written in evaluation");
                assert_eq!(&out[run_at..run_at + 4 * c], &running[..], "{what}: running statistics touched");
                continue;
            }
            let xhat: Vec<f64> =
                (0..n).map(|i| cache.xhat[((i / (c * hw)) * hw + i % hw) * c + (i / hw) % c]).collect();
            let xhat_scale: Vec<f64> = xhat.iter().map(|v| v.abs()).collect();
            assert_close(&mut worst, &what, &out[xhat_at..xhat_at + n], &xhat, &xhat_scale, 1e-5);
            for b in 0..batch {
                for pix in 0..hw {
                    assert_eq!(out[xhat_at + b * c * hw + pix], 0.0, "{what}: constant channel's x̂");
                }
            }
            assert_close(&mut worst, &what, &out[inv_at..inv_at + c], &cache.inv_std, &cache.inv_std, 1e-5);
            let mut updated = stats.clone();
            bn2d_update_running(&mut updated, "bn", 1, &cache, batch, hw);
            let expect =
                [wide(&running[..c]), updated[&m1].clone(), wide(&running[2 * c..3 * c]), updated[&v1].clone()]
                    .concat();
            let scale: Vec<f64> = expect.iter().map(|v| v.abs()).collect();
            assert_close(&mut worst, &format!("{what} running"), &out[run_at..run_at + 4 * c], &expect, &scale, 1e-5);
        }
    }
    worst.report("batch_norm2d_forward_matches_reference_in_training_and_evaluation");
}

#[test]
fn batch_norm2d_backward_matches_reference() {
    let ctx = gpu_common::context();
    let kernels = KernelTable::new(&ctx);
    let mut rng = Rng::new(186);
    let mut worst = Worst::default();
    for (batch, c, hw) in BN_SHAPES {
        let n = batch * c * hw;
        let x = random(&mut rng, n);
        let g_y = random(&mut rng, n);
        let gamma = random(&mut rng, c);
        let beta = random(&mut rng, c);
        let p = bn_params(&gamma, &beta);
        let (_, cache) = bn2d_forward(&wide(&x), batch, c, hw, &p, "bn", Norm::Batch);
        let (g_x, g_gamma, g_beta) = bn2d_backward(&wide(&g_y), &cache, batch, c, hw, &p, "bn");
        // The tape as the forward keeps it: x̂ NCHW (f32), 1/σ.
        let xhat: Vec<f32> =
            (0..n).map(|i| cache.xhat[((i / (c * hw)) * hw + i % hw) * c + (i / hw) % c] as f32).collect();
        let inv: Vec<f32> = cache.inv_std.iter().map(|&v| v as f32).collect();
        let start = random(&mut rng, 2 * c);
        // work = [g_y | xhat | invstd | g_x (NaN) | guard]; grad = [∇γ | ∇δ | guard]
        let gx_at = 2 * n + c;
        let work = [g_y.clone(), xhat.clone(), inv.clone(), poison(n), guard()].concat();
        let params = [gamma.clone(), beta.clone()].concat();
        let args = Bn2dArgs {
            batch: batch as u32,
            channels: c as u32,
            hw: hw as u32,
            g_y: 0,
            xhat: n as u32,
            invstd: (2 * n) as u32,
            g_x: gx_at as u32,
            gamma: 0,
            beta: c as u32,
            ..Default::default()
        };
        // Scales: Σ|ḡ_y·x̂|, Σ|ḡ_y| per channel; ḡ_x's terms are |γ/σ|·(|ḡ_y| + Σ|ḡ_y|/n + |x̂|·Σ|ḡ_y·x̂|/n).
        let mut s_g = vec![0.0; c];
        let mut s_gx = vec![0.0; c];
        for i in 0..n {
            let ch = (i / hw) % c;
            s_g[ch] += (g_y[i] as f64).abs();
            s_gx[ch] += (g_y[i] as f64 * xhat[i] as f64).abs();
        }
        let total = (batch * hw) as f64;
        let gx_scale: Vec<f64> = (0..n)
            .map(|i| {
                let ch = (i / hw) % c;
                (gamma[ch] as f64 * cache.inv_std[ch]).abs()
                    * ((g_y[i] as f64).abs() + s_g[ch] / total + (xhat[i] as f64).abs() * s_gx[ch] / total)
            })
            .collect();
        for accumulate in [false, true] {
            let what = format!("batch_norm2d_backward B={batch} C={c} hw={hw} accumulate {accumulate}");
            let grad = [if accumulate { start.clone() } else { poison(2 * c) }, guard()].concat();
            let args = Bn2dArgs { accumulate: accumulate as u32, ..args };
            let (gout, wout) = launch(
                &ctx,
                &kernels,
                "batch_norm2d_backward",
                &args,
                c as u32,
                &bn_step(batch, true),
                &params,
                &grad,
                &work,
            );
            assert_close(&mut worst, &what, &wout[gx_at..gx_at + n], &g_x, &gx_scale, 1e-5);
            assert_guard(&what, &wout[gx_at + n..]);
            let base = |i: usize| if accumulate { start[i] as f64 } else { 0.0 };
            let cpu: Vec<f64> = (0..2 * c).map(|i| base(i) + if i < c { g_gamma[i] } else { g_beta[i - c] }).collect();
            let scale: Vec<f64> =
                (0..2 * c).map(|i| base(i).abs() + if i < c { s_gx[i] } else { s_g[i - c] }).collect();
            assert_close(&mut worst, &what, &gout[..2 * c], &cpu, &scale, 1e-5);
            assert_guard(&what, &gout[2 * c..]);
        }
    }
    worst.report("batch_norm2d_backward_matches_reference");
}
