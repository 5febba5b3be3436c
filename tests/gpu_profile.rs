//! Per-kernel profiling: every dispatch of a sequence is timed and attributed to its kernel.

mod gpu_common;

use fptt::learn::Engine;
use fptt::model::{init_params, ModelConfig};
use fptt::rng::Rng;
use fptt::settings::{AuxTargets, InitialState, Optimizer, SequenceBatch, Targets, TrainingSettings};
use std::collections::BTreeMap;

#[test]
fn profiling_times_every_dispatch_of_a_sequence() {
    let ctx = gpu_common::context();
    let mut cfg = ModelConfig::classifier(2, 9, 3, 4);
    cfg.batch_norm = true;
    let settings = TrainingSettings::classification(Optimizer::Adam, 1e-3, AuxTargets::Table);
    let mut engine = Engine::new(ctx.clone(), &cfg, &settings, 4, &init_params(&cfg, 1)).unwrap();
    assert!(engine.kernel_times().0.is_empty(), "off by default");
    if !engine.enable_profiling() {
        eprintln!("adapter cannot write timestamps inside passes: nothing to check");
        return;
    }
    let mut rng = Rng::new(1);
    let data = SequenceBatch {
        steps: 4,
        batch: 4,
        inputs_per_step: 2,
        inputs: (0..32).map(|_| rng.uniform() as f32).collect(),
        targets: Targets::Labels(vec![0, 1, 2, 1]),
    };
    let init = InitialState::uniform(&cfg.hidden, 4, &mut rng);
    engine.train_sequence(&data, &init).unwrap();
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for k in engine.step_kernels() {
        *expected.entry(k).or_default() += 4;
    }
    let (times, unmeasured) = engine.kernel_times();
    assert_eq!(unmeasured, 0);
    let got: BTreeMap<&str, u64> = times.iter().map(|t| (t.kernel.as_str(), t.dispatches)).collect();
    assert_eq!(got, expected, "dispatches per kernel");
    let share: f64 = times.iter().map(|t| t.share).sum();
    assert!((share - 1.0).abs() < 1e-9, "shares add up to 1, got {share}");
    assert!(times.iter().all(|t| t.total_ms >= 0.0 && t.mean_us >= 0.0));
    assert!(times.iter().map(|t| t.total_ms).sum::<f64>() > 0.0, "some time was measured");
}

/// The one-layer step `fptt bench` times (adaptive LTC classifier, Adamax, the auxiliary table, no
/// batch norm) runs in ten dispatches, whatever N and B: the kernels are fused so that a step
/// pays few per-dispatch costs (about 0.1 ms each on a software adapter, several µs on a GPU).
#[test]
fn a_one_layer_fptt_step_is_ten_dispatches() {
    let ctx = gpu_common::context();
    let settings = TrainingSettings::classification(Optimizer::Adamax, 1e-3, AuxTargets::Table);
    for (hidden, batch) in [(3, 1), (37, 5)] {
        let cfg = ModelConfig::classifier(1, hidden, 10, 4);
        let engine = Engine::new(ctx.clone(), &cfg, &settings, batch, &init_params(&cfg, 1)).unwrap();
        assert_eq!(
            engine.step_kernels(),
            [
                "layer_current",
                "layer_neuron",
                "readout_step",
                "loss_finalize",
                "layer_backward_neuron",
                "input_grad",
                "weight_grad",
                "weight_grad",
                "fptt_norm",
                "fptt_update"
            ],
            "N = {hidden}, B = {batch}"
        );
        assert_eq!(engine.dispatches_per_step(), 10);
    }
}
