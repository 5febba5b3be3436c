//! The training engine on convolutional networks (issue #18): whole sequences of one-step FPTT on
//! the GPU (every cell's kernels chained, dropout, the dense layer and the readout, the update)
//! against the f64 reference (`reference::conv_network::ConvNet` with `reference::optim`), step for
//! step; evaluation on running statistics; the dropout masks' dependence on seed and update count;
//! and the rules the engine refuses for conv cells. Small odd shapes: one input channel or two,
//! kernels 1, 3, 5 and 7, images not divisible by the pool, batch 1 and 4.

mod gpu_common;

use fptt::learn::Engine;
use fptt::model::conv::{ConvCell, ConvNetSpec};
use fptt::model::{init_params, ModelConfig};
use fptt::reference::batchnorm::Norm;
use fptt::reference::conv_network::{sequence_dropout_seed, ConvNet, ConvNetState};
use fptt::reference::loss::task_loss;
use fptt::reference::optim::{OptimState, UpdateSettings};
use fptt::reference::{LossContext, Params, SpikeFn};
use fptt::rng::Rng;
use fptt::settings::{AuxTargets, InitialState, LearningRule, Optimizer, SequenceBatch, Targets, TrainingSettings};
use fptt::tensor::TensorMap;

fn cell(out_channels: usize, kernel: usize) -> ConvCell {
    ConvCell { out_channels, kernel }
}

/// Three shapes: 2×9×7 frames, cells 2→3 (3×3) and 3→4 (1×1), pooled (states 3×4×3, 4×2×1: odd
/// images lose a row or column), dropout 0.25; 1×5×6 frames, one cell 1→2 (5×5) without pool,
/// no dropout, the dense layer reading `[x ; s]`; 2×6×6 frames, cells 2→2 (7×7, wider than the
/// image) and 2→3 (3×3), pooled, dropout 0.1.
fn spec(variant: usize) -> ConvNetSpec {
    let base = ConvNetSpec {
        in_channels: 2,
        height: 9,
        width: 7,
        cells: vec![cell(3, 3), cell(4, 1)],
        pool: true,
        dropout: 0.25,
        hidden: 6,
        dense_recurrent: false,
        classes: 3,
        tau_m_o: true,
        steps: 4,
    };
    match variant {
        0 => base,
        1 => ConvNetSpec {
            in_channels: 1,
            height: 5,
            width: 6,
            cells: vec![cell(2, 5)],
            pool: false,
            dropout: 0.0,
            hidden: 5,
            dense_recurrent: true,
            classes: 4,
            tau_m_o: false,
            steps: 3,
        },
        _ => ConvNetSpec { height: 6, width: 6, cells: vec![cell(2, 7), cell(3, 3)], dropout: 0.1, ..base },
    }
}

/// Frames of event counts (0, 1 or 2 per pixel, most 0) and random labels.
fn random_batch(cfg: &ModelConfig, batch: usize, seed: u64) -> SequenceBatch {
    let mut rng = Rng::new(seed);
    let inputs = (0..cfg.steps * batch * cfg.inputs)
        .map(|_| {
            let u = rng.uniform();
            if u < 0.6 {
                0.0
            } else if u < 0.9 {
                1.0
            } else {
                2.0
            }
        })
        .collect();
    let targets = Targets::Labels((0..batch).map(|_| rng.below(cfg.outputs) as u32).collect());
    SequenceBatch { steps: cfg.steps, batch, inputs_per_step: cfg.inputs, inputs, targets }
}

fn wide(map: &TensorMap, names: impl Iterator<Item = String>) -> Params {
    names.map(|n| (n.clone(), map[&n].data.iter().map(|&v| v as f64).collect())).collect()
}

/// The reference's training over one sequence from `start` by `settings.rule` (FPTT with chunks of
/// K steps, one-step FPTT as K = 1, or BPTT as one chunk of T): per chunk the forward of its steps
/// with the engine's dropout masks (and the running statistics after each), the gradient of the
/// chunk's losses through the state, and the update. Returns the per-step losses.
#[allow(clippy::too_many_arguments)]
fn reference_sequence(
    net: &ConvNet,
    p: &mut Params,
    stats: &mut Params,
    optim: &mut OptimState,
    settings: &TrainingSettings,
    data: &SequenceBatch,
    start: &InitialState,
    mask_seed: Option<u64>,
) -> Vec<f64> {
    let batch = data.batch;
    let cells: Vec<Vec<f64>> =
        start.membrane[..net.cells.len()].iter().map(|m| m.iter().map(|&v| v as f64).collect()).collect();
    let dense = start.membrane.last().unwrap().iter().map(|&v| v as f64).collect();
    let mut state = ConvNetState::start(net, cells, dense, batch);
    let q = vec![0.0; net.spec.classes * net.spec.steps * net.spec.classes];
    let (chunk, plain) = match settings.rule {
        LearningRule::Fptt { chunk } => (chunk, false),
        LearningRule::Bptt => (net.spec.steps, true),
        LearningRule::Eprop(_) => unreachable!("conv networks do not run e-prop"),
    };
    let mut losses = Vec::new();
    let steps = net.spec.steps;
    for t0 in (0..steps).step_by(chunk) {
        let (mut caches, mut g_outputs) = (Vec::new(), Vec::new());
        for t in t0..(t0 + chunk).min(steps) {
            let frame: Vec<f64> = data.step(t).iter().map(|&v| v as f64).collect();
            let mask = mask_seed.filter(|_| net.spec.dropout > 0.0).map(|seed| net.dropout_mask(batch, seed, t));
            let cache = net.forward(p, &frame, &state, batch, Norm::Batch, mask.as_deref());
            let ctx = LossContext::new(settings.loss, &data.targets, t, &q);
            let (l, g_o) = task_loss(cache.output(), batch, net.spec.classes, steps, ctx);
            net.update_running(stats, t, &cache, batch);
            state = cache.next_state();
            losses.push(l);
            caches.push(cache);
            g_outputs.push(g_o);
        }
        let (grads, _) = net.chunk_backward(p, &caches, &g_outputs);
        let update = UpdateSettings::of(settings, settings.lr as f64);
        if plain {
            optim.plain_update(p, &grads, update);
        } else {
            optim.fptt_update(p, &grads, update);
        }
    }
    losses
}

/// max |gpu − ref| ≤ rel·max(|ref|, floor) per tensor; the conv biases in front of a batch norm
/// (exactly zero gradient: rounding noise, scaled up by Adam, is all that moves them) and the
/// running means they feed are skipped. Returns the worst relative error.
fn assert_close(what: &str, got: &TensorMap, want: &Params, rel: f64) -> f64 {
    let mut worst: f64 = 0.0;
    let mut bad = Vec::new();
    for (name, w) in want {
        let bn_fed = name.starts_with("conv_snn") && !name.contains(".BN") && name.contains(".bias");
        if bn_fed || name.contains(".running_mean_") {
            continue;
        }
        let g = got.get(name).unwrap_or_else(|| panic!("{what}: the engine has no {name}"));
        assert_eq!(g.data.len(), w.len(), "{what}: length of {name}");
        assert!(g.data.iter().all(|v| v.is_finite()), "{what}: {name} has non-finite elements");
        let scale = w.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        let diff = g.data.iter().zip(w).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
        let err = diff / scale;
        worst = worst.max(err);
        if err > rel {
            bad.push(format!("{name}: {err:e} (max |ref| {scale:e})"));
        }
    }
    assert!(bad.is_empty(), "{what}: tensors outside {rel:e} relative:\n{}", bad.join("\n"));
    worst
}

#[test]
fn conv_networks_train_on_the_gpu_as_the_reference_step_for_step() {
    let ctx = gpu_common::context();
    // Batches of 4 for 3 classes: no class can hold exactly B/C labels, whose readout-bias gradient
    // would be 0 up to rounding at the first steps (uniform outputs) and which Adam would amplify.
    // One-step FPTT on every shape; chunks of 2 on the first, BPTT on the other two.
    let cases = [
        (0usize, 4usize, LearningRule::Fptt { chunk: 1 }),
        (1, 1, LearningRule::Fptt { chunk: 1 }),
        (2, 4, LearningRule::Fptt { chunk: 1 }),
        (0, 4, LearningRule::Fptt { chunk: 2 }),
        (1, 1, LearningRule::Bptt),
        (2, 4, LearningRule::Bptt),
    ];
    for (variant, batch, rule) in cases {
        let spec = spec(variant);
        let cfg = ModelConfig::convolutional(spec.clone());
        cfg.validate().unwrap();
        let net = ConvNet::new(&spec, SpikeFn::Heaviside);
        let aux = if variant == 1 { AuxTargets::Off } else { AuxTargets::Uniform };
        let optimizer = if variant == 2 { Optimizer::Adam } else { Optimizer::Adamax };
        let settings = TrainingSettings { rule, ..TrainingSettings::classification(optimizer, 2e-3, aux) };
        let what = format!("variant {variant} {rule:?}");
        let init = init_params(&cfg, 40 + variant as u64);
        let mut engine = Engine::new(ctx.clone(), &cfg, &settings, batch, &init).unwrap();
        // Every scratch region and the whole gradient NaN: an element no kernel writes fails.
        engine.poison_scratch().unwrap();
        let run_seed = 9 + variant as u64;
        engine.set_dropout_seed(0, run_seed);

        let names = || spec.tensors().into_iter().map(|t| t.name);
        let mut p = wide(&init, names());
        let mut stats = wide(&init, spec.running_stats(true).into_iter().map(|t| t.name));
        // tau_m_o (never read, gradient 0) never moves under FPTT: the engine keeps it frozen.
        let mut optim =
            OptimState::new(p.iter().filter(|(n, _)| *n != "tau_m_o").map(|(n, v)| (n.clone(), v.clone())).collect());
        let mut rng = Rng::new(100 + variant as u64);
        let mut worst_loss: f64 = 0.0;
        for sequence in 0..2u64 {
            let data = random_batch(&cfg, batch, 7 * sequence + variant as u64);
            let start = InitialState::uniform(&cfg.state_blocks(), batch, &mut rng);
            let mask_seed = sequence_dropout_seed(run_seed, engine.updates());
            let metrics = engine.train_sequence(&data, &start).unwrap();
            let losses =
                reference_sequence(&net, &mut p, &mut stats, &mut optim, &settings, &data, &start, Some(mask_seed));
            for (t, (&g, &r)) in metrics.step_loss.iter().zip(&losses).enumerate() {
                let err = (g as f64 - r).abs() / r.abs().max(1e-3);
                worst_loss = worst_loss.max(err);
                assert!(err < 1e-5, "{what} sequence {sequence} step {t}: loss {g} vs reference {r}");
            }
        }
        let per_sequence = match rule {
            LearningRule::Fptt { chunk } => spec.steps.div_ceil(chunk),
            _ => 1,
        };
        assert_eq!(engine.updates(), 2 * per_sequence as u64);
        let state = engine.state().unwrap();
        let mut want = p.clone();
        // BPTT keeps W̄ and λ where they started (its update is a plain optimizer step).
        for (suffix, part) in [("wbar", &optim.wbar), ("lambda", &optim.lambda)] {
            for (name, v) in part {
                want.insert(format!("{name}.{suffix}"), v.clone());
            }
        }
        want.extend(stats.clone());
        let worst = assert_close(&what, &state, &want, 1e-3);
        eprintln!("{what}: worst relative error {worst:.2e} (tensors), {worst_loss:.2e} (step losses)");
        // tau_m_o is never read: gradient 0 at every update, so it stays where it started.
        if spec.tau_m_o {
            assert_eq!(state["tau_m_o"].data, init["tau_m_o"].data);
        }
        // Something moved: the updates reached every cell.
        for k in 1..=spec.cells.len() {
            let w = format!("conv_snn{k}.conv1_x.weight");
            assert_ne!(state[&w].data, init[&w].data, "{what}: {w} never changed");
        }

        // Evaluation on the running statistics, no dropout: the reference forward with the
        // engine's own parameters and statistics (so that the drift of the BN-fed biases cancels).
        let data = random_batch(&cfg, batch, 1000 + variant as u64);
        let start = InitialState::uniform(&cfg.state_blocks(), batch, &mut rng);
        let metrics = engine.evaluate_sequence(&data, &start).unwrap();
        let p_gpu = wide(&state, names());
        let stats_gpu = wide(&state, spec.running_stats(true).into_iter().map(|t| t.name));
        let cells: Vec<Vec<f64>> =
            start.membrane[..spec.cells.len()].iter().map(|m| m.iter().map(|&v| v as f64).collect()).collect();
        let dense = start.membrane.last().unwrap().iter().map(|&v| v as f64).collect();
        let mut s = ConvNetState::start(&net, cells, dense, batch);
        let q = vec![0.0; spec.classes * spec.steps * spec.classes];
        for t in 0..spec.steps {
            let frame: Vec<f64> = data.step(t).iter().map(|&v| v as f64).collect();
            let cache = net.forward(&p_gpu, &frame, &s, batch, Norm::Running { stats: &stats_gpu, t }, None);
            let ctx = LossContext::new(settings.loss, &data.targets, t, &q);
            let (l, _) = task_loss(cache.output(), batch, spec.classes, spec.steps, ctx);
            let g = metrics.step_loss[t] as f64;
            assert!((g - l).abs() <= 1e-5 * l.abs().max(1e-3), "{what} evaluation step {t}: {g} vs {l}");
            s = cache.next_state();
        }
        // Evaluation changes nothing.
        assert_eq!(engine.state().unwrap()["conv_snn1.conv1_x.weight"].data, state["conv_snn1.conv1_x.weight"].data);
    }
}

#[test]
fn dropout_masks_follow_the_seed_and_the_update_count() {
    // Two engines with the same seed train identically; another seed drops other values.
    let ctx = gpu_common::context();
    let spec = spec(0);
    let cfg = ModelConfig::convolutional(spec);
    let settings = TrainingSettings::classification(Optimizer::Adamax, 3e-3, AuxTargets::Uniform);
    let init = init_params(&cfg, 3);
    let data = random_batch(&cfg, 3, 5);
    let start = InitialState::uniform(&cfg.state_blocks(), 3, &mut Rng::new(6));
    let run = |seed: u64| {
        let mut engine = Engine::new(ctx.clone(), &cfg, &settings, 3, &init).unwrap();
        engine.set_dropout_seed(0, seed);
        let first = engine.train_sequence(&data, &start).unwrap();
        let second = engine.train_sequence(&data, &start).unwrap();
        (first.step_loss, second.step_loss, engine.state().unwrap())
    };
    let (a1, a2, a) = run(1);
    let (b1, b2, b) = run(1);
    let (c1, _, _) = run(2);
    assert_eq!((a1.clone(), a2.clone()), (b1, b2), "the same seed, the same run");
    assert_eq!(a["snn_rec.layer1_x.weight"].data, b["snn_rec.layer1_x.weight"].data);
    // The first step's loss comes before any update, and the mask of step 0 enters it only through
    // the dense layer: with another seed (or another sequence) the losses of later steps differ.
    assert_ne!(a1[1..], c1[1..], "another seed, other masks");
    assert_ne!(sequence_dropout_seed(1, 0), sequence_dropout_seed(1, 4), "every sequence draws fresh masks");
}

#[test]
fn conv_networks_refuse_e_prop_and_streams() {
    let ctx = gpu_common::context();
    let cfg = ModelConfig::convolutional(spec(1));
    let init = init_params(&cfg, 1);
    let settings = TrainingSettings {
        rule: LearningRule::Eprop(Default::default()),
        ..TrainingSettings::classification(Optimizer::Adamax, 1e-3, AuxTargets::Off)
    };
    let err = Engine::new(ctx.clone(), &cfg, &settings, 2, &init).err().expect("refused");
    assert!(err.to_string().contains("e-prop"), "{err}");
    let settings = TrainingSettings::classification(Optimizer::Adamax, 1e-3, AuxTargets::Off);
    let err = Engine::new_stream(ctx.clone(), &cfg, &settings, 2, &init).err().expect("refused");
    assert!(err.to_string().contains("conv cells"), "{err}");
    // A configuration that disagrees with its spec is refused.
    let mut wrong = cfg.clone();
    wrong.hidden = vec![7];
    assert!(wrong.validate().is_err());
}
