//! The CPU reference against docs/method.md itself: the check values and test vectors of method §2 and
//! §6, and finite differences of the full one-step gradient on small smooth networks (every
//! parameter element, with batch norm, with the fixed-threshold fused variant, with two layers).
#![allow(clippy::needless_range_loop)]

mod common;

use common::{random_params, random_state};
use fptt::model::{LayerNames, ModelConfig, NeuronKind, ParamLayout, ThresholdMode};
use fptt::reference::batchnorm::Norm;
use fptt::reference::optim::{fptt_after_step, fptt_gradient, sgd_step};
use fptt::reference::{neuron, surrogate, LayerSpec, LayerState, LossContext, Net, Params, ReferenceTrainer, SpikeFn};
use fptt::rng::Rng;
use fptt::settings::{AuxTargets, InitialState, LossKind, Optimizer, SequenceBatch, Targets, TrainingSettings};

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol * want.abs().max(1.0), "{what}: got {got:.17}, method {want:.17}");
}

#[test]
fn surrogate_check_values_of_spec_section_2() {
    // ψ(0) is given in f32; the others to 6 decimals.
    close(surrogate(0.0), 0.73185277, 5e-8, "ψ(0)");
    for (v, want) in [(0.1, 0.690580), (0.3, 0.431430), (0.5, 0.159085), (1.0, -0.025263), (2.0, -0.017989)] {
        close(surrogate(v), want, 6e-7, &format!("ψ({v})"));
        close(surrogate(-v), want, 6e-7, &format!("ψ(−{v})"));
    }
    assert_eq!(SpikeFn::Heaviside.forward(0.0), 0.0, "H is strict");
    assert_eq!(SpikeFn::Heaviside.forward(1e-12), 1.0);
}

/// The single neuron of method §6: non-recurrent (W_r = 0, c_r = 0), gate slopes 1.
fn spec_neuron() -> (LayerSpec, Params, LayerState) {
    let cfg = ModelConfig::classifier(1, 1, 1, 1);
    let spec = LayerSpec::of(&cfg, 0);
    let p: Params = [
        ("layer1_x.weight", vec![0.8]),
        ("layer1_x.bias", vec![0.1]),
        ("layer1_r.weight", vec![0.0]),
        ("layer1_r.bias", vec![0.0]),
        ("layer1_tauM.weight", vec![0.5, -0.3]),
        ("layer1_tauM.bias", vec![0.2]),
        ("layer1_tauAdp.weight", vec![0.4, 0.6]),
        ("layer1_tauAdp.bias", vec![-0.1]),
        ("act1.alpha", vec![1.0]),
        ("act2.alpha", vec![1.0]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let state = LayerState { m: vec![0.3], s: vec![1.0], b: vec![0.1] };
    (spec, p, state)
}

#[test]
fn forward_vector_of_spec_section_6() {
    let (spec, p, state) = spec_neuron();
    let c = neuron::forward(&spec, &p, &[1.0], &state, 1, Norm::Batch, SpikeFn::Heaviside);
    let tol = 1e-12;
    close(c.d[0], 0.9, tol, "d");
    close(c.tau_m[0], 0.6364525402815664, tol, "τm");
    close(c.tau_a[0], 0.5793242521487495, tol, "τa");
    close(c.next.b[0], 0.47860817306612546, tol, "b'");
    close(c.theta[0], 0.9614947115190259, tol, "θ");
    close(c.u[0], 0.6818715241689399, tol, "u");
    close(c.u[0] - c.theta[0], -0.27962318735008596, tol, "u − θ");
    assert_eq!(c.next.s[0], 0.0, "s'");
    close(c.next.m[0], 0.6818715241689399, tol, "m'");
    close(surrogate(c.u[0] - c.theta[0]), 0.46282472864942714, tol, "ψ(u − θ)");
}

#[test]
fn backward_vectors_of_spec_section_6() {
    let (spec, p, state) = spec_neuron();
    let c = neuron::forward(&spec, &p, &[1.0], &state, 1, Norm::Batch, SpikeFn::Heaviside);
    let tol = 1e-12;
    // L = s': ḡ_s = 1, ḡ_m = 0.
    let (g, _) = neuron::backward(&spec, &p, &c, 1, SpikeFn::Heaviside, &[1.0], None, None);
    close(g["layer1_x.weight"][0], 0.39978305634077843, tol, "L=s' ∇W_x");
    close(g["layer1_x.bias"][0], 0.39978305634077843, tol, "L=s' ∇c_x");
    close(g["layer1_tauM.weight"][0], 0.057827904296155426, tol, "L=s' ∇W_m[0]");
    close(g["layer1_tauM.weight"][1], 0.019275968098718472, tol, "L=s' ∇W_m[1]");
    close(g["layer1_tauM.bias"][0], 0.06425322699572825, tol, "L=s' ∇c_m");
    close(g["layer1_tauAdp.weight"][0], 0.16445355432493447, tol, "L=s' ∇W_a[0]");
    close(g["layer1_tauAdp.weight"][1], 0.01827261714721494, tol, "L=s' ∇W_a[1]");
    close(g["layer1_tauAdp.bias"][0], 0.1827261714721494, tol, "L=s' ∇c_a");
    // L = m': ḡ_s = 0, ḡ_m = 1.
    let (g, _) = neuron::backward(&spec, &p, &c, 1, SpikeFn::Heaviside, &[0.0], Some(&[1.0]), None);
    close(g["layer1_x.weight"][0], 0.4332660695927748, tol, "L=m' ∇W_x");
    close(g["layer1_tauM.weight"][0], 0.08551437905346697, tol, "L=m' ∇W_m[0]");
    close(g["layer1_tauM.weight"][1], 0.02850479301782232, tol, "L=m' ∇W_m[1]");
    close(g["layer1_tauM.bias"][0], 0.09501597672607441, tol, "L=m' ∇c_m");
    close(g["layer1_tauAdp.weight"][0], -0.11213619574254263, tol, "L=m' ∇W_a[0]");
    close(g["layer1_tauAdp.weight"][1], -0.012459577304726958, tol, "L=m' ∇W_a[1]");
    close(g["layer1_tauAdp.bias"][0], -0.12459577304726958, tol, "L=m' ∇c_a");
}

#[test]
fn fptt_trace_of_spec_section_6() {
    // Scalar W₀ = 1, plain SGD lr 0.1, α = β = 0.5, no clipping, ℓ_t = ½(W − c_t)².
    let (alpha, beta, lr) = (0.5, 0.5, 0.1);
    let (mut w, mut wbar, mut lambda) = (vec![1.0], vec![1.0], vec![0.0]);
    let table =
        [(0.0, 1.0, 0.9, 0.05, 0.9), (2.0, -1.15, 1.015, -0.0075, 0.965), (-1.0, 2.0475, 0.81025, 0.069875, 0.81775)];
    for (t, &(c, g_want, w_want, l_want, wbar_want)) in table.iter().enumerate() {
        let grad = vec![w[0] - c];
        let g = fptt_gradient(&grad, &w, &wbar, &lambda, alpha);
        close(g[0], g_want, 1e-14, &format!("t={t} g"));
        sgd_step(&mut w, &g, lr);
        fptt_after_step(&w, &mut wbar, &mut lambda, alpha, beta);
        close(w[0], w_want, 1e-14, &format!("t={t} W"));
        close(lambda[0], l_want, 1e-14, &format!("t={t} λ"));
        close(wbar[0], wbar_want, 1e-14, &format!("t={t} W̄"));
    }
    // Epoch-end reset W ← W̄.
    w = wbar.clone();
    close(w[0], 0.81775, 1e-14, "reset W");
}

// ---------------------------------------------------------------------------------------------
// Finite differences of the full one-step gradient.

/// Checks every element of every parameter: analytic vs central differences.
fn check_gradient(cfg: &ModelConfig, batch: usize, loss: LossKind, seed: u64) {
    let mut rng = Rng::new(seed);
    let net = Net::new(cfg, SpikeFn::Smooth(5.0));
    let p = random_params(cfg, &mut rng);
    let state = random_state(cfg, batch, &mut rng);
    let x: Vec<f64> = (0..batch * cfg.inputs).map(|_| rng.uniform_range(-1.0, 1.0)).collect();
    let c = cfg.outputs;
    let targets = match loss {
        LossKind::Classification { .. } => Targets::Labels((0..batch).map(|b| (b % c) as u32).collect()),
        LossKind::Regression => Targets::Values((0..batch * c).map(|_| rng.uniform() as f32).collect()),
    };
    let q: Vec<f64> = (0..c * cfg.steps * c).map(|_| rng.uniform()).collect();
    let t = 1;
    let (l0, grads) = net.step_gradient(&p, &state, &x, LossContext::new(loss, &targets, t, &q));
    assert!(l0.is_finite());
    let h = 1e-6;
    let mut checked = 0;
    let mut worst = 0.0f64;
    for slot in &net.layout.slots {
        for i in 0..slot.len() {
            let mut pp = p.clone();
            pp.get_mut(&slot.name).unwrap()[i] += h;
            let mut pm = p.clone();
            pm.get_mut(&slot.name).unwrap()[i] -= h;
            let fd = (net.step_loss(&pp, &state, &x, LossContext::new(loss, &targets, t, &q))
                - net.step_loss(&pm, &state, &x, LossContext::new(loss, &targets, t, &q)))
                / (2.0 * h);
            let an = grads[&slot.name][i];
            let err = (fd - an).abs();
            let tol = 1e-5 * fd.abs().max(an.abs()) + 1e-8;
            assert!(err <= tol, "{}[{i}]: analytic {an:.10e}, finite differences {fd:.10e}", slot.name);
            if an.abs() > 1e-4 {
                worst = worst.max(err / an.abs());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, net.layout.total_len);
    // The smooth network is not trivially flat: most gradients are clearly non-zero.
    let nonzero = grads.values().flatten().filter(|g| g.abs() > 1e-6).count();
    assert!(nonzero * 2 > checked, "only {nonzero} of {checked} gradient elements are non-zero");
    eprintln!("{checked} elements, worst relative error where |∇| > 1e-4: {worst:.2e}");
}

fn tiny(hidden: Vec<usize>) -> ModelConfig {
    ModelConfig {
        inputs: 3,
        hidden,
        outputs: 3,
        steps: 4,
        threshold: ThresholdMode::Adaptive,
        fused_recurrent: false,
        trainable_slopes: true,
        batch_norm: false,
        neuron: NeuronKind::Ltc,
        conv: None,
    }
}

#[test]
fn finite_differences_one_layer_with_the_auxiliary_table() {
    check_gradient(&tiny(vec![4]), 2, LossKind::Classification { aux: AuxTargets::Table }, 1);
    check_gradient(&tiny(vec![4]), 2, LossKind::Classification { aux: AuxTargets::Uniform }, 2);
}

#[test]
fn finite_differences_with_batch_norm() {
    let mut cfg = tiny(vec![4]);
    cfg.batch_norm = true;
    // B = 2 normalises every feature to ±1; B = 3 exercises the batch statistics more.
    check_gradient(&cfg, 2, LossKind::Classification { aux: AuxTargets::Off }, 3);
    check_gradient(&cfg, 3, LossKind::Classification { aux: AuxTargets::Table }, 4);
}

#[test]
fn finite_differences_fixed_threshold_fused_regression() {
    let mut cfg = tiny(vec![4]);
    cfg.threshold = ThresholdMode::Fixed(0.5);
    cfg.fused_recurrent = true;
    cfg.outputs = 2;
    check_gradient(&cfg, 2, LossKind::Regression, 5);
    cfg.trainable_slopes = false;
    check_gradient(&cfg, 2, LossKind::Regression, 6);
}

#[test]
fn finite_differences_two_hidden_layers() {
    check_gradient(&tiny(vec![4, 3]), 2, LossKind::Classification { aux: AuxTargets::Table }, 7);
    let mut cfg = tiny(vec![4, 3]);
    cfg.batch_norm = true;
    check_gradient(&cfg, 3, LossKind::Classification { aux: AuxTargets::Uniform }, 8);
}

// ---------------------------------------------------------------------------------------------
// The trainer's bookkeeping.

fn small_setup(cfg: &ModelConfig, batch: usize, seed: u64) -> (SequenceBatch, InitialState) {
    let mut rng = Rng::new(seed);
    let seq = SequenceBatch {
        steps: cfg.steps,
        batch,
        inputs_per_step: cfg.inputs,
        inputs: (0..cfg.steps * batch * cfg.inputs).map(|_| rng.uniform() as f32).collect(),
        targets: Targets::Labels((0..batch).map(|b| (b % cfg.outputs) as u32).collect()),
    };
    (seq, InitialState::uniform(&cfg.hidden, batch, &mut rng))
}

#[test]
fn trainer_state_names_updates_reset_and_evaluation() {
    let mut cfg = tiny(vec![5, 4]);
    cfg.batch_norm = true;
    cfg.trainable_slopes = false;
    let settings = TrainingSettings::classification(Optimizer::Adamax, 1e-2, AuxTargets::Table);
    let init = fptt::model::init_params(&cfg, 3);
    let (seq, m0) = small_setup(&cfg, 3, 9);
    let mut tr = ReferenceTrainer::new(&cfg, &settings, 3, &init);
    let before = tr.state();
    assert!(before.contains_key("layer2_r.weight.exp_inf"));
    assert!(!before.contains_key("act1m.alpha.wbar"), "frozen slopes carry no FPTT state");
    assert_eq!(before["q"].shape, vec![3, 4, 3]);
    assert_eq!(before["readout_bn.running_var_3"].data, vec![1.0; 3]);

    let (eval0, out0) = tr.evaluate_sequence(&seq, &m0);
    assert_eq!(eval0.len(), 4);
    assert_eq!(out0.len(), 9);
    assert_eq!(tr.state(), before, "evaluation changes nothing");

    let losses = tr.train_sequence(&seq, &m0);
    assert_eq!(losses.len(), 4);
    assert_eq!(tr.updates(), 4);
    assert_eq!(losses[0].task_loss, losses[0].total_loss, "no regulariser before the first update");
    let after = tr.state();
    assert_eq!(after["act1m.alpha"], before["act1m.alpha"], "frozen slopes do not move");
    assert_ne!(after["layer1_x.weight"], before["layer1_x.weight"]);
    assert_ne!(after["bn1a.running_mean_2"], before["bn1a.running_mean_2"]);

    tr.reset_to_running_mean();
    let reset = tr.state();
    for slot in ParamLayout::new(&cfg).trainable() {
        assert_eq!(reset[&slot.name], reset[&format!("{}.wbar", slot.name)], "{}", slot.name);
    }
    assert_eq!(reset["layer1_x.weight.lambda"], after["layer1_x.weight.lambda"], "λ is kept");
    let names = LayerNames::hidden(0, 2);
    assert_eq!(reset[&format!("{}.running_var_1", names.bn_b)], after[&format!("{}.running_var_1", names.bn_b)]);
}

#[test]
fn trainer_regression_runs_the_adding_variant() {
    let mut cfg = ModelConfig::classifier(2, 6, 1, 5);
    cfg.threshold = ThresholdMode::Fixed(0.5);
    cfg.fused_recurrent = true;
    cfg.trainable_slopes = false;
    let settings = TrainingSettings::regression(Optimizer::Adam, 1e-2);
    let init = fptt::model::init_params(&cfg, 1);
    let (mut seq, _) = small_setup(&cfg, 4, 2);
    seq.targets = Targets::Values(vec![0.5, 1.0, 1.5, 0.2]);
    let mut tr = ReferenceTrainer::new(&cfg, &settings, 4, &init);
    let losses = tr.train_sequence(&seq, &InitialState::zeros(&cfg.hidden, 4));
    assert!(losses.iter().all(|l| l.task_loss.is_finite() && l.total_loss.is_finite()));
    assert!(!tr.state().contains_key("layer1_r.weight"));
    assert!(tr.state()["q"].data.iter().all(|&v| v == 0.0), "regression leaves q alone");
}

/// The neuron constants the kernels use (shaders/shared/neuron.wgsl) are the reference's.
#[test]
fn shader_neuron_constants_are_the_references() {
    use fptt::reference::{B0, BETA_ADAPT, SURROGATE_GAMMA, SURROGATE_HEIGHT, SURROGATE_SCALE, SURROGATE_WIDTH};
    let wgsl = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/shared/neuron.wgsl")).unwrap();
    for (name, value) in [
        ("B0", B0),
        ("CONV_B0", fptt::model::conv::CONV_B0 as f64),
        ("BETA_ADAPT", BETA_ADAPT),
        ("SURROGATE_GAMMA", SURROGATE_GAMMA),
        ("SURROGATE_WIDTH", SURROGATE_WIDTH),
        ("SURROGATE_HEIGHT", SURROGATE_HEIGHT),
        ("SURROGATE_SCALE", SURROGATE_SCALE),
    ] {
        let line = wgsl
            .lines()
            .find_map(|l| l.strip_prefix(&format!("const {name}: f32 = ")))
            .unwrap_or_else(|| panic!("neuron.wgsl has no const {name}"));
        let wgsl_value: f64 = line.trim_end_matches(';').parse().unwrap();
        assert_eq!(wgsl_value, value, "{name}");
    }
}
