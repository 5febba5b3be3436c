//! Shared GPU test support: one device per test binary, and in CI the check that it really is the
//! software adapter (so a silently missing driver cannot turn the GPU tests into no-ops).
#![allow(dead_code)]

use fptt::gpu::{DeviceChoice, GpuContext};
use fptt::model::{ModelConfig, NeuronKind};
use fptt::rng::Rng;
use fptt::settings::{AuxTargets, InitialState, Optimizer, SequenceBatch, Targets, TrainingSettings};
use std::rc::Rc;

pub fn context() -> Rc<GpuContext> {
    let ctx =
        GpuContext::new(DeviceChoice::Auto).expect("a GPU adapter (install mesa-vulkan-drivers for the software one)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        eprintln!("adapter: {} ({}, {})", ctx.adapter_name(), ctx.backend_name(), ctx.device_type_name());
    }
    Rc::new(ctx)
}

/// A batch of `b` random sequences for `cfg`: inputs `U(0,1)`, random labels, from `seed`.
pub fn random_batch(cfg: &ModelConfig, b: usize, seed: u64) -> SequenceBatch {
    let mut rng = Rng::new(seed);
    SequenceBatch {
        steps: cfg.steps,
        batch: b,
        inputs_per_step: cfg.inputs,
        inputs: (0..cfg.steps * b * cfg.inputs).map(|_| rng.uniform() as f32).collect(),
        targets: Targets::Labels((0..b).map(|_| rng.below(cfg.outputs) as u32).collect()),
    }
}

/// A small classifier (3 inputs, 6 classes, 5 steps, the auxiliary table, lr 3e-3) with random
/// inputs, labels `(b·label_stride) mod 6` and a random initial membrane from `seed`.
pub fn small_classifier(
    hidden: &[usize],
    neuron: NeuronKind,
    batch: usize,
    opt: Optimizer,
    seed: u64,
    label_stride: u32,
) -> (ModelConfig, TrainingSettings, SequenceBatch, InitialState) {
    let mut cfg = ModelConfig::classifier(3, hidden[0], 6, 5);
    cfg.hidden = hidden.to_vec();
    cfg.neuron = neuron;
    let settings = TrainingSettings::classification(opt, 3e-3, AuxTargets::Table);
    let mut rng = Rng::new(seed);
    let data = SequenceBatch {
        steps: cfg.steps,
        batch,
        inputs_per_step: 3,
        inputs: (0..cfg.steps * batch * 3).map(|_| rng.uniform() as f32).collect(),
        targets: Targets::Labels((0..batch as u32).map(|b| (b * label_stride) % 6).collect()),
    };
    let initial = InitialState::uniform(&cfg.hidden, batch, &mut rng);
    (cfg, settings, data, initial)
}
