//! Weight gradients whose batch reduction is split S ways (what a GPU gets for small layers, so
//! that enough workgroups run) equal the unsplit ones: the partial sums weight_grad writes and
//! fptt_norm gathers add up to the same gradient. Forced on the adapter at hand with
//! `FPTT_WEIGHT_GRAD_SPLIT`, in its own test binary because the variable is process-wide.

mod gpu_common;

use fptt::learn::Engine;
use fptt::model::{init_params, ModelConfig, NeuronKind};
use fptt::settings::{Optimizer, TrainingSettings};

/// The variable is process-wide and the tests of this binary run in parallel: one engine is built
/// under it at a time.
static SPLIT_VARIABLE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn engine_with_split(split: usize, cfg: &ModelConfig, settings: &TrainingSettings, batch: usize, seed: u64) -> Engine {
    let _only_one = SPLIT_VARIABLE.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("FPTT_WEIGHT_GRAD_SPLIT", split.to_string());
    let engine = Engine::new(gpu_common::context(), cfg, settings, batch, &init_params(cfg, seed)).unwrap();
    std::env::remove_var("FPTT_WEIGHT_GRAD_SPLIT");
    engine
}

#[test]
fn split_weight_gradients_equal_unsplit_ones() {
    let cases = [
        (vec![24], NeuronKind::Ltc, 16, Optimizer::Adamax),
        (vec![20, 12], NeuronKind::Ltc, 12, Optimizer::Adam),
        (vec![9], NeuronKind::Alif, 7, Optimizer::Adam),
    ];
    for (i, (hidden, neuron, batch, opt)) in cases.into_iter().enumerate() {
        let (cfg, settings, data, initial) =
            gpu_common::small_classifier(&hidden, neuron, batch, opt, 40 + i as u64, 1);
        let what = format!("{neuron:?} {hidden:?} B = {batch}");
        let mut plain = engine_with_split(1, &cfg, &settings, batch, 3);
        let mut split = engine_with_split(3, &cfg, &settings, batch, 3);
        assert_eq!(plain.plan().split_len, 0, "{what}: forced S = 1 splits nothing");
        assert!(split.plan().split_len > 0, "{what}: forced S = 3 splits");
        // One step from the same start: the gradient buffers agree element by element.
        for engine in [&mut plain, &mut split] {
            engine.poison_scratch().unwrap();
            engine.train_prefix(&data, &initial, 1).unwrap();
        }
        let (_, g_plain) = plain.debug_read().unwrap();
        let (_, g_split) = split.debug_read().unwrap();
        let trainable = plain.layout().trainable_len;
        let scale = g_plain[..trainable].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (k, (a, b)) in g_plain[..trainable].iter().zip(&g_split[..trainable]).enumerate() {
            assert!(b.is_finite(), "{what}: gradient {k} not written: {b}");
            assert!((a - b).abs() <= 1e-5 * (1.0 + scale), "{what}: gradient {k}: unsplit {a}, split {b}");
        }
        // And the parameters after that update.
        let (p_plain, p_split) = (plain.state().unwrap(), split.state().unwrap());
        for slot in &plain.layout().slots {
            let (a, b) = (&p_plain[&slot.name].data, &p_split[&slot.name].data);
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            // Adam(ax)'s first step is about lr·sign(g): a gradient that rounds to the other sign
            // moves by up to 2·lr; anything else must agree closely.
            assert!(worst <= 2.0 * settings.lr + 1e-6, "{what}: {} differs by {worst}", slot.name);
        }
    }
}

/// A convolutional network: every convolution's weight gradient (∇W, ∇c over batch and pixels)
/// split 3 ways and gathered by split_gather equals the unsplit one after a step. (Inside chunks
/// nothing splits, dense or conv: their gradients add up over the chunk's steps.)
#[test]
fn split_conv_weight_gradients_equal_unsplit_ones() {
    use fptt::model::conv::{ConvCell, ConvNetSpec};
    use fptt::rng::Rng;
    use fptt::settings::{AuxTargets, InitialState, LearningRule, SequenceBatch, Targets};
    let spec = ConvNetSpec {
        in_channels: 2,
        height: 9,
        width: 7,
        cells: vec![ConvCell { out_channels: 3, kernel: 3 }, ConvCell { out_channels: 4, kernel: 1 }],
        pool: true,
        dropout: 0.25,
        hidden: 6,
        dense_recurrent: false,
        classes: 3,
        tau_m_o: true,
        steps: 2,
    };
    let cfg = ModelConfig::convolutional(spec);
    let batch = 4;
    let mut rng = Rng::new(71);
    let inputs = (0..cfg.steps * batch * cfg.inputs).map(|_| (rng.uniform() * 2.5).floor() as f32).collect();
    let targets = Targets::Labels((0..batch).map(|_| rng.below(cfg.outputs) as u32).collect());
    let data = SequenceBatch { steps: cfg.steps, batch, inputs_per_step: cfg.inputs, inputs, targets };
    let initial = InitialState::uniform(&cfg.state_blocks(), batch, &mut rng);
    {
        let rule = LearningRule::Fptt { chunk: 1 };
        let settings =
            TrainingSettings { rule, ..TrainingSettings::classification(Optimizer::Adamax, 1e-3, AuxTargets::Uniform) };
        let mut plain = engine_with_split(1, &cfg, &settings, batch, 5);
        let mut split = engine_with_split(3, &cfg, &settings, batch, 5);
        assert_eq!(plain.plan().split_len, 0, "forced S = 1 splits nothing");
        assert!(split.plan().split_len > 0, "forced S = 3 splits the convolutions");
        let steps = 1;
        for engine in [&mut plain, &mut split] {
            engine.set_dropout_seed(0, 8);
            engine.poison_scratch().unwrap();
            engine.train_prefix(&data, &initial, steps).unwrap();
        }
        let (_, g_plain) = plain.debug_read().unwrap();
        let (_, g_split) = split.debug_read().unwrap();
        let layout = plain.layout();
        for slot in layout.slots.iter().filter(|s| s.offset < layout.trainable_len) {
            let (a, b) = (&g_plain[slot.range()], &g_split[slot.range()]);
            let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(y.is_finite(), "{rule:?} {}[{k}] not written: {y}", slot.name);
                assert!((x - y).abs() <= 1e-5 * (1.0 + scale), "{rule:?} {}[{k}]: unsplit {x}, split {y}", slot.name);
            }
        }
    }
}
