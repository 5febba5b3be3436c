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

/// Kernels tested alone, outside the engine: what a test fills its guard regions with (a kernel
/// that writes past its outputs changes it).
pub const SENTINEL: f32 = 12345.0;

/// One launch of `kernel` outside the engine with `workgroups` workgroups times `replicas` (the
/// dispatch's z), its arguments `args` and step info `step` (the replica strides), over fresh
/// buffers holding `params`, `grad` and `work` (opt: one zero); returns (grad, work) after it.
#[allow(clippy::too_many_arguments)]
pub fn launch<T: bytemuck::Pod>(
    ctx: &GpuContext,
    kernels: &fptt::gpu::KernelTable,
    kernel: &str,
    args: &T,
    workgroups: u32,
    replicas: u32,
    step: &fptt::learn::kernel_args::StepInfo,
    params: &[f32],
    grad: &[f32],
    work: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    use fptt::gpu::{ArgArena, GpuBuffer, MemoryLedger};
    let ledger = MemoryLedger::default();
    let buffer = |label, data: &[f32]| {
        let b = GpuBuffer::storage(ctx, &ledger, label, data.len()).unwrap();
        b.write(ctx, 0, data);
        b
    };
    let (p, g, o, w) = (buffer("params", params), buffer("grad", grad), buffer("opt", &[0.0]), buffer("work", work));
    let mut arena = ArgArena::default();
    let dispatch = kernels.groups(kernel, arena.push(args), workgroups);
    let args_buffer = arena.upload(ctx, &ledger, "args");
    let mut steps = ArgArena::default();
    steps.push(step);
    let steps_buffer = steps.upload(ctx, &ledger, "step");
    let storage = kernels.storage_bind_group(ctx, "storage", [&p, &g, &o, &w]);
    let arguments = kernels.argument_bind_group(ctx, "arguments", &args_buffer, &steps_buffer);
    let mut encoder =
        ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("kernel alone") });
    {
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("kernel alone"), timestamp_writes: None });
        pass.set_bind_group(0, &storage, &[]);
        kernels.record(&mut pass, &arguments, &[dispatch], 0, replicas, None);
    }
    ctx.queue.submit([encoder.finish()]);
    (g.read(ctx, 0, grad.len()).unwrap(), w.read(ctx, 0, work.len()).unwrap())
}

/// The worst error a kernel test saw: the largest |gpu − cpu| and the largest share of its
/// tolerance.
#[derive(Default)]
pub struct Worst {
    pub abs: f64,
    pub ratio: f64,
}

impl Worst {
    pub fn report(&self, test: &str) {
        eprintln!("{test}: worst |gpu − cpu| = {:.3e}, {:.3} of the tolerance", self.abs, self.ratio);
    }

    /// |gpu − cpu| ≤ rel·(1 + scale[i]) for every element not in `skip` (scale: the magnitudes
    /// that enter the element, e.g. Σ|terms| of its reduction), every element finite.
    pub fn check(&mut self, what: &str, gpu: &[f32], cpu: &[f64], scale: &[f64], rel: f64, skip: Option<&[bool]>) {
        assert_eq!(gpu.len(), cpu.len(), "{what}: length");
        assert_eq!(scale.len(), cpu.len(), "{what}: scale length");
        for (i, ((&g, &c), &s)) in gpu.iter().zip(cpu).zip(scale).enumerate() {
            assert!(g.is_finite(), "{what}: element {i} not written (or not finite): {g}");
            if skip.is_some_and(|skip| skip[i]) {
                continue;
            }
            let tol = rel * (1.0 + s);
            let err = (g as f64 - c).abs();
            assert!(err <= tol, "{what}: element {i}: gpu {g} cpu {c} (tolerance {tol:e})");
            self.abs = self.abs.max(err);
            self.ratio = self.ratio.max(err / tol);
        }
    }
}

/// A guard region after an output still holds [`SENTINEL`] everywhere.
pub fn assert_guard(what: &str, guard: &[f32]) {
    assert!(guard.iter().all(|&v| v == SENTINEL), "{what}: wrote past the output");
}
