//! Streams on the GPU against the CPU reference: windows of steps with a target at every step
//! (loss weight 1) and every step's prediction kept, the neuron state carried from one window to the next on the GPU (no initial
//! state uploaded after the first window), W̄ and λ carried throughout. Every scratch region is
//! poisoned with NaN before the first window, and again before the last one after the carried
//! state was saved and restored (the checkpoint path), so an element a kernel or the carry failed
//! to write shows up as NaN.

mod gpu_common;

use fptt::learn::Engine;
use fptt::model::{init_params, ModelConfig, NeuronKind, ThresholdMode};
use fptt::reference::ReferenceTrainer;
use fptt::rng::Rng;
use fptt::settings::{
    AuxTargets, InitialState, LearningRule, LossKind, Optimizer, SequenceBatch, Targets, TrainingSettings,
};

fn regression_net(hidden: usize, window: usize) -> ModelConfig {
    ModelConfig {
        inputs: 2,
        hidden: vec![hidden],
        outputs: 2,
        steps: window,
        threshold: ThresholdMode::Fixed(0.5),
        fused_recurrent: true,
        trainable_slopes: true,
        batch_norm: false,
        neuron: NeuronKind::Ltc,
        conv: None,
    }
}

/// Window `k` of a random stream: inputs in [0, 1.5), a target per step (values or labels).
fn window(cfg: &ModelConfig, batch: usize, loss: LossKind, seed: u64) -> SequenceBatch {
    let mut rng = Rng::new(seed);
    let t = cfg.steps;
    let inputs = (0..t * batch * cfg.inputs).map(|_| rng.uniform_range(0.0, 1.5) as f32).collect();
    let targets = match loss {
        LossKind::Classification { .. } => {
            Targets::StepLabels((0..t * batch).map(|_| rng.below(cfg.outputs) as u32).collect())
        }
        LossKind::Regression => {
            Targets::StepValues((0..t * batch * cfg.outputs).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect())
        }
    };
    SequenceBatch { steps: t, batch, inputs_per_step: cfg.inputs, inputs, targets }
}

#[test]
fn stream_windows_match_the_reference() {
    let ctx = gpu_common::context();
    let reg = |chunk| TrainingSettings {
        rule: LearningRule::Fptt { chunk },
        ..TrainingSettings::regression(Optimizer::Adam, 3e-3)
    };
    let cls = |chunk| TrainingSettings {
        rule: LearningRule::Fptt { chunk },
        ..TrainingSettings::classification(Optimizer::Adamax, 3e-3, AuxTargets::Table)
    };
    let mut classifier = ModelConfig::classifier(3, 20, 4, 6);
    classifier.hidden = vec![20, 9];
    let cases = [
        // One-step FPTT on an odd window: the last state is in slot 1, the carry copies it.
        (regression_net(16, 5), reg(1)),
        // Chunks of 2 in windows of 6: the chunk schedule ends in slot 0.
        (regression_net(12, 6), reg(2)),
        // Per-step labels, two layers, the auxiliary table asked for but off in a stream.
        (classifier, cls(3)),
    ];
    for (i, (cfg, settings)) in cases.into_iter().enumerate() {
        let batch = 3;
        let what = format!("{:?} {:?} window {}", settings.rule, cfg.hidden, cfg.steps);
        let init = init_params(&cfg, 40 + i as u64);
        let mut engine = Engine::new_stream(ctx.clone(), &cfg, &settings, batch, &init).unwrap();
        let mut reference = ReferenceTrainer::new(&cfg, &settings, batch, &init);
        let initial = InitialState::uniform(&cfg.hidden, batch, &mut Rng::new(90 + i as u64));
        engine.poison_scratch().unwrap();
        for k in 0..4u64 {
            let data = window(&cfg, batch, settings.loss, 500 + 10 * i as u64 + k);
            let first = (k == 0).then_some(&initial);
            if k == 3 {
                // What a checkpoint saves and a resume restores, with everything else poisoned.
                let carried = engine.carried_state().unwrap();
                // m, s, b of every layer, then o; a fixed threshold never writes b (method (1.9)).
                let h: usize = batch * cfg.hidden.iter().sum::<usize>();
                let adaptive = cfg.threshold == ThresholdMode::Adaptive;
                let written = |i: usize| adaptive || !(2 * h..3 * h).contains(&i);
                assert!(
                    carried.iter().enumerate().all(|(i, v)| !written(i) || v.is_finite()),
                    "{what}: carried state not finite"
                );
                engine.poison_scratch().unwrap();
                engine.load_carried_state(&carried).unwrap();
            }
            let m = engine.train_window(&data, first).unwrap();
            let losses = reference.train_window(&data, first);
            assert_eq!(m.step_loss.len(), cfg.steps);
            // Every step's o', kept on the GPU for the predictions output.
            let got = engine.window_predictions().unwrap();
            let want = reference.last_outputs();
            assert_eq!(got.len(), want.len(), "{what}: predictions [T, B, C]");
            for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g as f64 - w).abs() <= 1e-4 * w.abs().max(1.0),
                    "{what}: window {k}, prediction {i}: {g} vs {w}"
                );
            }
            for (t, l) in losses.iter().enumerate() {
                let g = m.step_loss[t] as f64;
                assert!(
                    (g - l.task_loss).abs() <= 1e-4 * l.task_loss.abs().max(1.0),
                    "{what}: window {k}, loss of step {t}: {g} vs {}",
                    l.task_loss
                );
            }
        }
        assert_eq!(engine.updates(), reference.updates(), "{what}: updates");
        let (got, want) = (engine.state().unwrap(), reference.state());
        let mut worst = 0.0f32;
        for (name, w) in want.iter().filter(|(n, _)| *n != "q") {
            let g = &got[name];
            assert!(g.data.iter().all(|x| x.is_finite()), "{what}: {name} not finite");
            let base = name.trim_end_matches(".lambda").trim_end_matches(".wbar");
            let parent = if base != name { want.get(base).map_or(0.0, |p| p.max_abs()) } else { 0.0 };
            let floor = if name.contains(".exp_") { 1e-5 } else { 1e-6 };
            let err = (g.max_abs_diff(w) - 16.0 * f32::EPSILON * parent).max(0.0) / w.max_abs().max(floor);
            assert!(err < 1e-3, "{what}: {name} off by {err:e} relative");
            worst = worst.max(err);
        }
        eprintln!("{what}: 4 windows, {} updates, worst relative error {worst:e}", engine.updates());
    }
}

#[test]
fn stream_engines_refuse_what_a_stream_cannot_do() {
    let ctx = gpu_common::context();
    let cfg = regression_net(8, 4);
    let init = init_params(&cfg, 1);
    let bptt = TrainingSettings { rule: LearningRule::Bptt, ..TrainingSettings::regression(Optimizer::Adam, 1e-3) };
    let err = Engine::new_stream(ctx.clone(), &cfg, &bptt, 2, &init).err().expect("BPTT refused");
    assert!(err.to_string().contains("FPTT"), "{err}");
    let fptt = TrainingSettings::regression(Optimizer::Adam, 1e-3);
    let mut engine = Engine::new_stream(ctx.clone(), &cfg, &fptt, 2, &init).unwrap();
    // One target per sequence is not a stream.
    let mut data = window(&cfg, 2, LossKind::Regression, 3);
    data.targets = Targets::Values(vec![0.0; 2 * cfg.outputs]);
    let err = engine.train_window(&data, None).expect_err("per-sequence targets refused");
    assert!(err.to_string().contains("every step"), "{err}");
    // A sequence engine does not take windows.
    let mut plain = Engine::new(ctx, &cfg, &fptt, 2, &init).unwrap();
    let data = window(&cfg, 2, LossKind::Regression, 3);
    assert!(plain.train_window(&data, None).is_err());
}
