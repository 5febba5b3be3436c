//! The reductions (shared/reduce.wgsl: the step's metrics in loss_finalize, the gradient norm's
//! partial sums in fptt_norm) run on subgroup operations where the device has
//! `wgpu::Features::SUBGROUP`, and on a workgroup-memory tree where it has not (or with
//! `FPTT_NO_SUBGROUPS=1`). Both paths train the same steps here: same metrics, same parameters,
//! no NaN from poisoned scratch, and each path bit-identical from run to run. In its own test binary
//! because the variable is process-wide.

mod gpu_common;

use fptt::gpu::GpuContext;
use fptt::learn::{Engine, SequenceMetrics};
use fptt::model::{init_params, ModelConfig, NeuronKind};
use fptt::settings::{InitialState, Optimizer, SequenceBatch, TrainingSettings};
use fptt::tensor::TensorMap;
use std::rc::Rc;

fn engine(
    ctx: &Rc<GpuContext>,
    subgroups: bool,
    cfg: &ModelConfig,
    settings: &TrainingSettings,
    batch: usize,
) -> Engine {
    if !subgroups {
        std::env::set_var("FPTT_NO_SUBGROUPS", "1");
    }
    let engine = Engine::new(ctx.clone(), cfg, settings, batch, &init_params(cfg, 5)).unwrap();
    std::env::remove_var("FPTT_NO_SUBGROUPS");
    engine
}

/// A few poisoned training steps: the per-step metrics and the state after them.
fn train(
    engine: &mut Engine,
    data: &SequenceBatch,
    initial: &InitialState,
    steps: usize,
) -> (SequenceMetrics, TensorMap) {
    engine.poison_scratch().unwrap();
    let metrics = engine.train_prefix(data, initial, steps).unwrap();
    (metrics, engine.state().unwrap())
}

#[test]
fn subgroup_and_workgroup_reductions_train_alike() {
    let ctx = gpu_common::context();
    let has = ctx.has_subgroups();
    if !has {
        eprintln!(
            "adapter {} lacks wgpu::Features::SUBGROUP: only the workgroup-memory path runs here",
            ctx.adapter_name()
        );
    }
    // Batches and layers large enough for several subgroups per reduction (8 lanes on lavapipe,
    // 32 or 64 on GPUs), and a trainable length over 256 so that fptt_norm runs several
    // workgroups.
    let cases = [
        (vec![40], NeuronKind::Ltc, 20, Optimizer::Adamax),
        (vec![24, 16], NeuronKind::Ltc, 37, Optimizer::Adam),
        (vec![9], NeuronKind::Alif, 5, Optimizer::Adamax),
    ];
    let steps = 3;
    for (i, (hidden, neuron, batch, opt)) in cases.into_iter().enumerate() {
        let (cfg, settings, data, initial) =
            gpu_common::small_classifier(&hidden, neuron, batch, opt, 70 + i as u64, 7);
        let what = format!("{neuron:?} {hidden:?} B = {batch}");

        let mut plain = engine(&ctx, false, &cfg, &settings, batch);
        let mut sub = engine(&ctx, true, &cfg, &settings, batch);
        assert!(!plain.subgroup_reductions(), "{what}: FPTT_NO_SUBGROUPS=1 selects the workgroup-memory path");
        assert_eq!(sub.subgroup_reductions(), has, "{what}: the subgroup path runs exactly where the device has it");

        let (m_plain, s_plain) = train(&mut plain, &data, &initial, steps);
        let (m_sub, s_sub) = train(&mut sub, &data, &initial, steps);
        for (path, m) in [("workgroup", &m_plain), ("subgroup", &m_sub)] {
            let all = m.step_loss.iter().chain(&m.step_correct).chain(&m.step_spikes);
            assert!(all.clone().all(|x| x.is_finite()), "{what}, {path} path: NaN leaked into the metrics {m:?}");
            assert_eq!(m.step_loss.len(), steps, "{what}, {path} path");
        }
        // Counts are sums of small integers: exact whatever the order. The loss only in its last bits.
        assert_eq!(m_plain.step_correct, m_sub.step_correct, "{what}: correct per step");
        assert_eq!(m_plain.step_spikes, m_sub.step_spikes, "{what}: spikes per step");
        for (t, (a, b)) in m_plain.step_loss.iter().zip(&m_sub.step_loss).enumerate() {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1e-3), "{what}: loss of step {t}: workgroup {a}, subgroup {b}");
        }
        // Everything the engine keeps after the updates (parameters, W̄, λ, moments, q).
        assert_eq!(s_plain.keys().collect::<Vec<_>>(), s_sub.keys().collect::<Vec<_>>());
        for (name, a) in &s_plain {
            let b = &s_sub[name];
            for (k, (x, y)) in a.data.iter().zip(&b.data).enumerate() {
                assert!(x.is_finite() && y.is_finite(), "{what}: {name}[{k}] not finite: {x} vs {y}");
                // Adam(ax)'s first step is about lr·sign(g): a gradient that rounds to the other
                // sign moves by up to 2·lr; anything else must agree closely.
                let tol = 1e-5 * x.abs() + 2.0 * settings.lr + 1e-6;
                assert!((x - y).abs() <= tol, "{what}: {name}[{k}]: workgroup {x}, subgroup {y}");
            }
        }

        // Each path is deterministic: a second engine on it gives bit-identical metrics and state.
        for (subgroups, m, s) in [(false, &m_plain, &s_plain), (true, &m_sub, &s_sub)] {
            let mut again = engine(&ctx, subgroups, &cfg, &settings, batch);
            let (m2, s2) = train(&mut again, &data, &initial, steps);
            assert_eq!(&m2, m, "{what}, subgroups = {subgroups}: metrics differ between two runs");
            for (name, a) in s {
                let same = a.data.iter().zip(&s2[name].data).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{what}, subgroups = {subgroups}: {name} differs between two runs");
            }
        }
    }
}
