//! The CPU oracle of backpropagation through a chunk of K steps (chunked FPTT, BPTT) against
//! central finite differences on small smooth networks (every parameter element and every element
//! of the chunk's start state), against the one-step gradient (K = 1), against the whole-sequence
//! entry point (t0 = 0, K = T), and the reference trainer's learning rules.
//!
//! Finite differences follow `tests/reference_spec.rs`: spike `σ(5v)` (smooth, so the analytic
//! gradient is exact and the reset path `m' = (1 − s')u` always carries gradient), h = 1e-6,
//! tolerance `1e-5·max(|fd|, |∇|) + 1e-8`. Central differences err by `O(h²·L''')` plus rounding
//! `~ε·|L|/h ≈ 1e-10` here, far below the tolerance; a wrong sign or a dropped path is off by the
//! size of the term itself, far above it. The measured worst errors are printed
//! (`cargo test --test reference_bptt -- --nocapture`).
#![allow(clippy::needless_range_loop)]

mod common;

use common::{random_params, random_state};
use fptt::model::{init_params, ModelConfig, NeuronKind, ParamLayout, StatLayout, ThresholdMode};
use fptt::reference::batchnorm::{self, Norm};
use fptt::reference::loss::{task_loss, update_table, LossContext};
use fptt::reference::optim::{adam_step, adamax_step, clip_factor, fptt_after_step, fptt_gradient, regulariser};
use fptt::reference::{params_from_map, to_f32, to_f64, Grads, Net, NetState, Params, ReferenceTrainer, SpikeFn};
use fptt::rng::Rng;
use fptt::settings::{
    AuxTargets, InitialState, LearningRule, LossKind, Optimizer, SequenceBatch, StepLoss, Targets, TrainingSettings,
};

// ---------------------------------------------------------------------------------------------
// Random networks, states and data (the same recipe as `tests/reference_spec.rs`).

/// One layer of 4 neurons (or the given stack), 3 inputs, 3 classes, T = 8, adaptive threshold,
/// separate input and recurrent maps, trainable slopes, no batch norm.
fn tiny(hidden: Vec<usize>) -> ModelConfig {
    ModelConfig {
        inputs: 3,
        hidden,
        outputs: 3,
        steps: 8,
        threshold: ThresholdMode::Adaptive,
        fused_recurrent: false,
        trainable_slopes: true,
        batch_norm: false,
        neuron: NeuronKind::Ltc,
        conv: None,
    }
}

/// The fused, fixed-threshold variant of the adding task with 2 regression outputs.
fn fused_fixed(trainable_slopes: bool) -> ModelConfig {
    let mut cfg = tiny(vec![4]);
    cfg.threshold = ThresholdMode::Fixed(0.5);
    cfg.fused_recurrent = true;
    cfg.outputs = 2;
    cfg.trainable_slopes = trainable_slopes;
    cfg
}

/// Everything a chunk's loss depends on besides the parameters.
struct Problem {
    net: Net,
    p: Params,
    start: NetState,
    inputs: Vec<Vec<f64>>,
    targets: Targets,
    loss: LossKind,
    t0: usize,
    /// The auxiliary table, uniform in [0, 1): non-zero, so the auxiliary term contributes.
    q: Vec<f64>,
}

impl Problem {
    fn new(cfg: &ModelConfig, batch: usize, loss: LossKind, t0: usize, k: usize, seed: u64) -> Self {
        assert!(t0 + k <= cfg.steps);
        let mut rng = Rng::new(seed);
        let net = Net::new(cfg, SpikeFn::Smooth(5.0));
        let p = random_params(cfg, &mut rng);
        let start = random_state(cfg, batch, &mut rng);
        let inputs = (0..k).map(|_| (0..batch * cfg.inputs).map(|_| rng.uniform_range(-1.0, 1.0)).collect()).collect();
        let c = cfg.outputs;
        let targets = match loss {
            LossKind::Classification { .. } => {
                Targets::Labels((0..batch).map(|b| ((b + seed as usize) % c) as u32).collect())
            }
            LossKind::Regression => Targets::Values((0..batch * c).map(|_| rng.uniform() as f32).collect()),
        };
        let q = (0..c * cfg.steps * c).map(|_| rng.uniform()).collect();
        Problem { net, p, start, inputs, targets, loss, t0, q }
    }

    fn loss_at(&self, p: &Params, start: &NetState) -> f64 {
        self.net.chunk_loss(p, start, &self.inputs, LossContext::new(self.loss, &self.targets, self.t0, &self.q))
    }

    fn gradient(&self) -> (f64, Grads) {
        self.net.chunk_gradient(
            &self.p,
            &self.start,
            &self.inputs,
            LossContext::new(self.loss, &self.targets, self.t0, &self.q),
        )
    }

    /// The gradient with the chunk's cross-step terms dropped: the sum of one-step gradients, each
    /// from the state the chunk's forward reached (a constant), as truncation 1 would compute.
    fn sum_of_one_step_gradients(&self) -> Grads {
        let caches = self.net.chunk_forward(&self.p, &self.start, &self.inputs);
        let mut sum = Grads::new();
        for (j, x) in self.inputs.iter().enumerate() {
            let state = if j == 0 { self.start.clone() } else { caches[j - 1].next_state() };
            let (_, g) = self.net.step_gradient(
                &self.p,
                &state,
                x,
                LossContext::new(self.loss, &self.targets, self.t0 + j, &self.q),
            );
            for (name, v) in g {
                let acc = sum.entry(name).or_insert_with(|| vec![0.0; v.len()]);
                for (a, b) in acc.iter_mut().zip(&v) {
                    *a += b;
                }
            }
        }
        sum
    }
}

const H: f64 = 1e-6;

fn tolerance(fd: f64, an: f64) -> f64 {
    1e-5 * fd.abs().max(an.abs()) + 1e-8
}

/// Central differences of `f` at `x ± h` (in place on a copy).
fn central<T: Clone>(base: &T, perturb: impl Fn(&mut T, f64), f: impl Fn(&T) -> f64) -> f64 {
    let mut plus = base.clone();
    perturb(&mut plus, H);
    let mut minus = base.clone();
    perturb(&mut minus, -H);
    (f(&plus) - f(&minus)) / (2.0 * H)
}

/// Checks every parameter element and every start-state element of `pb` against central
/// differences, and that the chunk's cross-step terms matter.
fn check_chunk(what: &str, pb: &Problem) {
    let (l0, grads) = pb.gradient();
    assert!(l0.is_finite());
    assert_eq!(l0, pb.loss_at(&pb.p, &pb.start), "{what}: chunk_gradient and chunk_loss agree on the loss");

    // Every parameter element.
    let mut checked = 0;
    let mut worst_param = 0.0f64;
    for slot in &pb.net.layout.slots {
        for i in 0..slot.len() {
            let fd = central(&pb.p, |p, h| p.get_mut(&slot.name).unwrap()[i] += h, |p| pb.loss_at(p, &pb.start));
            let an = grads[&slot.name][i];
            let err = (fd - an).abs();
            assert!(
                err <= tolerance(fd, an),
                "{what}: {}[{i}]: analytic {an:.10e}, finite differences {fd:.10e}",
                slot.name
            );
            if an.abs() > 1e-4 {
                worst_param = worst_param.max(err / an.abs());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, pb.net.layout.total_len);
    let nonzero = grads.values().flatten().filter(|g| g.abs() > 1e-6).count();
    assert!(nonzero * 2 > checked, "{what}: only {nonzero} of {checked} gradient elements are non-zero");

    // Every start-state element: the gradient on the previous m, s, b, o of the first step, which
    // exercises every state path of method §3's chain directly.
    let caches = pb.net.chunk_forward(&pb.p, &pb.start, &pb.inputs);
    let g_outputs: Vec<Vec<f64>> = caches
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let batch = pb.start.o.len() / pb.net.cfg.outputs;
            let loss = LossContext::new(pb.loss, &pb.targets, pb.t0 + j, &pb.q);
            let (_, g) = task_loss(c.output(), batch, pb.net.cfg.outputs, pb.net.cfg.steps, loss);
            g
        })
        .collect();
    let (grads_again, g_start) = pb.net.chunk_backward(&pb.p, &caches, &g_outputs);
    assert_eq!(grads_again, grads, "{what}: chunk_backward is what chunk_gradient returns");
    let mut worst_state = 0.0f64;
    let mut state_nonzero = 0;
    let mut state_checked = 0;
    // A start element that must carry gradient: m and o always; s and b when the threshold adapts
    // (b' = τa⊙b + (1 − τa)⊙s). Without adaptation s matters only through a recurrence, which the
    // non-recurrent problems zero, and b not at all; finite differences still check them (as 0).
    let adaptive = pb.net.cfg.adaptive();
    let mut live_nonzero = 0;
    let mut live_checked = 0;
    let mut check_state = |field: &str, an: f64, perturb: &dyn Fn(&mut NetState, f64)| {
        let fd = central(&pb.start, perturb, |s| pb.loss_at(&pb.p, s));
        let err = (fd - an).abs();
        assert!(err <= tolerance(fd, an), "{what}: start {field}: analytic {an:.10e}, finite differences {fd:.10e}");
        if an.abs() > 1e-4 {
            worst_state = worst_state.max(err / an.abs());
        }
        if an.abs() > 1e-6 {
            state_nonzero += 1;
        }
        state_checked += 1;
        let live = adaptive || field.contains(" m[") || field.starts_with("o[");
        if live {
            live_checked += 1;
            live_nonzero += usize::from(an.abs() > 1e-6);
        }
    };
    for k in 0..pb.start.layers.len() {
        for i in 0..pb.start.layers[k].m.len() {
            check_state(&format!("layer {k} m[{i}]"), g_start.layers[k].m[i], &|s, h| s.layers[k].m[i] += h);
            check_state(&format!("layer {k} s[{i}]"), g_start.layers[k].s[i], &|s, h| s.layers[k].s[i] += h);
            check_state(&format!("layer {k} b[{i}]"), g_start.layers[k].b[i], &|s, h| s.layers[k].b[i] += h);
        }
    }
    for i in 0..pb.start.o.len() {
        check_state(&format!("o[{i}]"), g_start.o[i], &|s, h| s.o[i] += h);
    }
    assert!(
        live_nonzero * 4 > live_checked * 3,
        "{what}: only {live_nonzero} of the {live_checked} start-state gradients that must carry gradient are \
         non-zero ({state_nonzero} of {state_checked} in all)"
    );

    // The cross-step terms matter: dropping them (truncation 1 within the chunk) changes the
    // gradient by far more than the tolerance, so a chunk backward that forgot the state chain
    // could not pass the check above.
    let one_step = pb.sum_of_one_step_gradients();
    let (mut diff2, mut norm2) = (0.0, 0.0);
    let mut one_step_fails = 0;
    for slot in &pb.net.layout.slots {
        for i in 0..slot.len() {
            let (a, b) = (grads[&slot.name][i], one_step[&slot.name][i]);
            diff2 += (a - b) * (a - b);
            norm2 += a * a;
            if (a - b).abs() > tolerance(a, b) {
                one_step_fails += 1;
            }
        }
    }
    let cross_step_share = (diff2 / norm2).sqrt();
    assert!(
        cross_step_share > 0.05,
        "{what}: the chunk gradient is almost the sum of one-step gradients ({cross_step_share:.2e})"
    );
    assert!(
        one_step_fails * 2 > nonzero,
        "{what}: only {one_step_fails} elements tell the chunk gradient from the sum of one-step gradients"
    );
    eprintln!(
        "{what}: {checked} parameter elements, worst relative error {worst_param:.2e}; {state_checked} start-state \
         elements, worst {worst_state:.2e}; cross-step share of the gradient {cross_step_share:.2}"
    );
}

// ---------------------------------------------------------------------------------------------
// Finite differences of the chunk gradient.

#[test]
fn chunk_adaptive_threshold_separate_maps_with_the_auxiliary_table() {
    let table = LossKind::Classification { aux: AuxTargets::Table };
    check_chunk("adaptive, table, t0 2, K 5", &Problem::new(&tiny(vec![4]), 2, table, 2, 5, 11));
    // A chunk that ends at the last step (where the auxiliary weight is 0) with N = 3.
    check_chunk("adaptive N 3, table, t0 4, K 4", &Problem::new(&tiny(vec![3]), 2, table, 4, 4, 12));
    let uniform = LossKind::Classification { aux: AuxTargets::Uniform };
    check_chunk("adaptive, uniform, t0 0, K 4", &Problem::new(&tiny(vec![4]), 2, uniform, 0, 4, 13));
}

#[test]
fn chunk_fused_map_fixed_threshold_regression() {
    check_chunk(
        "fused fixed, regression, t0 1, K 5",
        &Problem::new(&fused_fixed(true), 2, LossKind::Regression, 1, 5, 21),
    );
    check_chunk(
        "fused fixed, frozen slopes, regression, t0 3, K 5",
        &Problem::new(&fused_fixed(false), 2, LossKind::Regression, 3, 5, 22),
    );
}

#[test]
fn chunk_with_batch_norm() {
    let mut cfg = tiny(vec![4]);
    cfg.batch_norm = true;
    // B = 2 normalises every feature to ±1; B = 3 exercises the batch statistics more.
    check_chunk(
        "batch norm B 2, aux off, t0 1, K 4",
        &Problem::new(&cfg, 2, LossKind::Classification { aux: AuxTargets::Off }, 1, 4, 31),
    );
    check_chunk(
        "batch norm B 3, table, t0 2, K 5",
        &Problem::new(&cfg, 3, LossKind::Classification { aux: AuxTargets::Table }, 2, 5, 32),
    );
}

#[test]
fn chunk_two_hidden_layers() {
    let table = LossKind::Classification { aux: AuxTargets::Table };
    check_chunk("two layers, table, t0 1, K 5", &Problem::new(&tiny(vec![4, 3]), 2, table, 1, 5, 41));
    let mut cfg = tiny(vec![4, 3]);
    cfg.batch_norm = true;
    let uniform = LossKind::Classification { aux: AuxTargets::Uniform };
    check_chunk("two layers, batch norm B 3, uniform, t0 3, K 4", &Problem::new(&cfg, 3, uniform, 3, 4, 42));
    let mut cfg = fused_fixed(true);
    cfg.hidden = vec![3, 4];
    check_chunk(
        "two layers fused fixed, regression, t0 0, K 4",
        &Problem::new(&cfg, 2, LossKind::Regression, 0, 4, 43),
    );
}

/// `cfg` with LIF neurons (fixed threshold 0.5) or ALIF neurons (adaptive threshold).
fn with_neuron(mut cfg: ModelConfig, neuron: NeuronKind) -> ModelConfig {
    cfg.neuron = neuron;
    cfg.threshold = match neuron {
        NeuronKind::Lif => ThresholdMode::Fixed(0.5),
        _ => ThresholdMode::Adaptive,
    };
    cfg
}

/// `pb` with the recurrent weights zeroed: `W_r = 0` (separate maps) or the `s` columns of the
/// fused `W_x`. The layer then reads its own past only through its state `m, s, b`.
fn without_recurrence(mut pb: Problem) -> Problem {
    let cfg = &pb.net.cfg;
    for (k, spec) in pb.net.layers.iter().enumerate() {
        let (n, i) = (cfg.hidden[k], cfg.layer_input(k));
        if cfg.fused_recurrent {
            let w = pb.p.get_mut(&format!("{}.weight", spec.names.x)).unwrap();
            for j in 0..n {
                w[j * (i + n) + i..(j + 1) * (i + n)].iter_mut().for_each(|v| *v = 0.0);
            }
        } else {
            pb.p.get_mut(&format!("{}.weight", spec.names.r)).unwrap().iter_mut().for_each(|v| *v = 0.0);
        }
    }
    pb
}

#[test]
fn chunk_lif_and_alif_neurons() {
    // ∇ρ_m, ∇ρ_a are among the parameters check_chunk compares element by element.
    let table = LossKind::Classification { aux: AuxTargets::Table };
    for neuron in [NeuronKind::Lif, NeuronKind::Alif] {
        let cfg = with_neuron(tiny(vec![4]), neuron);
        assert!(ParamLayout::new(&cfg).get("layer1_tauM.weight").is_some_and(|s| s.shape == vec![4]));
        check_chunk(&format!("{neuron:?}, table, t0 1, K 6"), &Problem::new(&cfg, 2, table, 1, 6, 111));
        check_chunk(
            &format!("{neuron:?} without recurrence, table, t0 0, K 6"),
            &without_recurrence(Problem::new(&cfg, 2, table, 0, 6, 112)),
        );
        let mut fused = with_neuron(fused_fixed(true), neuron);
        fused.hidden = vec![4, 3];
        check_chunk(
            &format!("{neuron:?} two layers fused, regression, t0 2, K 5"),
            &Problem::new(&fused, 2, LossKind::Regression, 2, 5, 113),
        );
        check_chunk(
            &format!("{neuron:?} fused without recurrence, regression, t0 0, K 5"),
            &without_recurrence(Problem::new(
                &with_neuron(fused_fixed(false), neuron),
                2,
                LossKind::Regression,
                0,
                5,
                114,
            )),
        );
        let mut bn = cfg.clone();
        bn.batch_norm = true;
        check_chunk(&format!("{neuron:?} batch norm B 3, table, t0 2, K 5"), &Problem::new(&bn, 3, table, 2, 5, 115));
    }
}

#[test]
fn lif_and_alif_chunks_of_one_step_are_the_one_step_gradient() {
    let table = LossKind::Classification { aux: AuxTargets::Table };
    for neuron in [NeuronKind::Lif, NeuronKind::Alif] {
        let cfg = with_neuron(tiny(vec![4, 3]), neuron);
        let pb = Problem::new(&cfg, 2, table, 3, 1, 120);
        let (l_chunk, g_chunk) = pb.gradient();
        let (l_step, g_step) =
            pb.net.step_gradient(&pb.p, &pb.start, &pb.inputs[0], LossContext::new(pb.loss, &pb.targets, 3, &pb.q));
        assert_eq!((l_chunk, &g_chunk), (l_step, &g_step), "{neuron:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Equalities with the one-step gradient and the whole-sequence entry point.

#[test]
fn a_chunk_of_one_step_is_the_one_step_gradient() {
    let table = LossKind::Classification { aux: AuxTargets::Table };
    let mut bn2 = tiny(vec![4, 3]);
    bn2.batch_norm = true;
    for (what, cfg, batch, loss) in [
        ("adaptive", tiny(vec![4]), 2, table),
        ("fused fixed", fused_fixed(true), 2, LossKind::Regression),
        ("two layers with batch norm", bn2, 3, table),
    ] {
        for t0 in [0, 3, cfg.steps - 1] {
            let pb = Problem::new(&cfg, batch, loss, t0, 1, 50 + t0 as u64);
            let (l_chunk, g_chunk) = pb.gradient();
            let (l_step, g_step) = pb.net.step_gradient(
                &pb.p,
                &pb.start,
                &pb.inputs[0],
                LossContext::new(pb.loss, &pb.targets, t0, &pb.q),
            );
            // Adding the zero gradient from beyond the chunk is exact: the same numbers, bit for bit.
            assert_eq!(l_chunk, l_step, "{what} t0 {t0}: loss");
            assert_eq!(g_chunk, g_step, "{what} t0 {t0}: gradient");
        }
    }
}

fn sequence_of(pb: &Problem) -> SequenceBatch {
    let batch = pb.start.o.len() / pb.net.cfg.outputs;
    SequenceBatch {
        steps: pb.inputs.len(),
        batch,
        inputs_per_step: pb.net.cfg.inputs,
        inputs: pb.inputs.iter().flatten().map(|&v| v as f32).collect(),
        targets: pb.targets.clone(),
    }
}

#[test]
fn the_whole_sequence_is_the_chunk_from_zero_of_length_t() {
    let mut cfg = tiny(vec![4, 3]);
    cfg.steps = 5;
    cfg.batch_norm = true;
    let mut pb = Problem::new(&cfg, 3, LossKind::Classification { aux: AuxTargets::Table }, 0, 5, 61);
    // The sequence carries f32 data: make the chunk's data exactly those values.
    for x in &mut pb.inputs {
        x.iter_mut().for_each(|v| *v = *v as f32 as f64);
    }
    let seq = sequence_of(&pb);
    let (l_seq, g_seq) = pb.net.sequence_gradient(&pb.p, &pb.start, &seq, pb.loss, &pb.q);
    let (l_chunk, g_chunk) = pb.gradient();
    assert_eq!(l_seq, l_chunk);
    assert_eq!(g_seq, g_chunk);
    assert_eq!(pb.net.sequence_loss(&pb.p, &pb.start, &seq, pb.loss, &pb.q), l_seq);
    // And the BPTT gradient of the whole sequence against finite differences.
    check_chunk("BPTT, two layers with batch norm, T 5", &pb);
}

// ---------------------------------------------------------------------------------------------
// The reference trainer's learning rules.

/// A sequence of uniform data with labels (or regression values) and a uniform initial membrane.
fn training_sequence(cfg: &ModelConfig, batch: usize, seed: u64) -> (SequenceBatch, InitialState) {
    let mut rng = Rng::new(seed);
    let inputs = (0..cfg.steps * batch * cfg.inputs).map(|_| rng.uniform() as f32).collect();
    let targets = if cfg.fused_recurrent {
        Targets::Values((0..batch * cfg.outputs).map(|_| rng.uniform() as f32).collect())
    } else {
        Targets::Labels((0..batch).map(|b| ((b * 7 + seed as usize) % cfg.outputs) as u32).collect())
    };
    let seq = SequenceBatch { steps: cfg.steps, batch, inputs_per_step: cfg.inputs, inputs, targets };
    (seq, InitialState::uniform(&cfg.hidden, batch, &mut rng))
}

fn with_rule(mut settings: TrainingSettings, rule: LearningRule) -> TrainingSettings {
    settings.rule = rule;
    settings
}

/// The online rule (truncation 1) written out from the one-step functions, in the order the trainer
/// used before chunks existed: forward, ℓ_t, table write, one-step backward, total loss, FPTT update.
struct OnlineRule {
    net: Net,
    settings: TrainingSettings,
    params: Params,
    wbar: Params,
    lambda: Params,
    moment1: Params,
    moment2: Params,
    q: Vec<f64>,
    updates: u64,
}

impl OnlineRule {
    fn new(net: &Net, settings: &TrainingSettings, init: &fptt::tensor::TensorMap) -> Self {
        let params = params_from_map(&net.layout, init);
        let wbar: Params = net.layout.trainable().map(|s| (s.name.clone(), params[&s.name].clone())).collect();
        let zeros: Params = wbar.iter().map(|(k, v)| (k.clone(), vec![0.0; v.len()])).collect();
        let c = net.cfg.outputs;
        OnlineRule {
            net: net.clone(),
            settings: *settings,
            params,
            wbar,
            lambda: zeros.clone(),
            moment1: zeros.clone(),
            moment2: zeros,
            q: vec![0.0; c * net.cfg.steps * c],
            updates: 0,
        }
    }

    fn train_sequence(&mut self, seq: &SequenceBatch, init: &InitialState) -> Vec<StepLoss> {
        let (nb, nc, steps) = (seq.batch, self.net.cfg.outputs, self.net.cfg.steps);
        let (alpha, beta) = (self.settings.alpha as f64, self.settings.beta as f64);
        let mut state = NetState::start(&self.net.cfg, init, nb);
        let mut losses = Vec::new();
        for t in 0..steps {
            let x: Vec<f64> = seq.step(t).iter().map(|&v| v as f64).collect();
            let cache = self.net.forward(&self.params, &x, &state, nb, Norm::Batch);
            let (task, g_o) = task_loss(
                cache.output(),
                nb,
                nc,
                steps,
                LossContext::new(self.settings.loss, &seq.targets, t, &self.q),
            );
            if let Targets::Labels(labels) = &seq.targets {
                update_table(&mut self.q, cache.output(), labels, nc, t, steps);
            }
            let grads = self.net.backward(&self.params, &cache, nb, &g_o);
            let reg: f64 =
                self.wbar.keys().map(|k| regulariser(&self.params[k], &self.wbar[k], &self.lambda[k], alpha)).sum();
            let mut g: Params = self
                .wbar
                .keys()
                .map(|k| (k.clone(), fptt_gradient(&grads[k], &self.params[k], &self.wbar[k], &self.lambda[k], alpha)))
                .collect();
            let norm = g.values().flatten().map(|x| x * x).sum::<f64>().sqrt();
            let factor = clip_factor(norm, self.settings.clip as f64);
            g.values_mut().flatten().for_each(|x| *x *= factor);
            self.updates += 1;
            for (k, gk) in &g {
                let w = self.params.get_mut(k).unwrap();
                let (m1, m2) = (self.moment1.get_mut(k).unwrap(), self.moment2.get_mut(k).unwrap());
                match self.settings.optimizer {
                    Optimizer::Adam => adam_step(w, gk, m1, m2, self.settings.lr as f64, self.updates),
                    Optimizer::Adamax => adamax_step(w, gk, m1, m2, self.settings.lr as f64, self.updates),
                }
                fptt_after_step(w, self.wbar.get_mut(k).unwrap(), self.lambda.get_mut(k).unwrap(), alpha, beta);
            }
            losses.push(StepLoss { task_loss: task, total_loss: task + reg });
            state = cache.next_state();
        }
        losses
    }
}

#[test]
fn trainer_with_chunks_of_one_step_is_the_online_rule_bit_for_bit() {
    // (tests/reference_fixtures.rs checks the same rule against the authors' trajectories.)
    let mut bn2 = tiny(vec![5, 4]);
    bn2.batch_norm = true;
    bn2.steps = 6;
    let mut fused = fused_fixed(false);
    fused.steps = 6;
    for (what, cfg, settings) in [
        (
            "two layers, batch norm, Adamax, table",
            bn2,
            TrainingSettings::classification(Optimizer::Adamax, 1e-2, AuxTargets::Table),
        ),
        ("fused fixed regression, Adam", fused, TrainingSettings::regression(Optimizer::Adam, 1e-2)),
    ] {
        assert_eq!(settings.rule, LearningRule::Fptt { chunk: 1 }, "the constructors keep the online rule");
        let init = init_params(&cfg, 5);
        let mut tr = ReferenceTrainer::new(&cfg, &settings, 3, &init);
        let mut online = OnlineRule::new(tr.net(), &settings, &init);
        for s in 0..3 {
            let (seq, m0) = training_sequence(&cfg, 3, 70 + s);
            let got = tr.train_sequence(&seq, &m0);
            let want = online.train_sequence(&seq, &m0);
            assert_eq!(got, want, "{what}, sequence {s}: losses");
            assert_eq!(tr.params(), &online.params, "{what}, sequence {s}: W");
            assert_eq!(tr.q(), &online.q[..], "{what}, sequence {s}: q");
            let state = tr.state();
            for (k, wbar) in &online.wbar {
                assert_eq!(state[&format!("{k}.wbar")].data, to_f32(wbar), "{what}: {k} W̄");
                assert_eq!(state[&format!("{k}.lambda")].data, to_f32(&online.lambda[k]), "{what}: {k} λ");
            }
        }
        assert_eq!(tr.updates(), online.updates);
    }
}

#[test]
fn trainer_fptt_with_one_chunk_of_t_steps_makes_the_bptt_update() {
    // On the first update λ = 0 and W̄ = W, so FPTT's g = ∇ − λ + α(W − W̄) adds an exact +0.0 to
    // the chunk gradient: the first update is the BPTT update bit for bit (tolerance 0; α = 1e-9
    // keeps the regulariser negligible on later updates, where this exactness no longer holds).
    let mut cfg = tiny(vec![4, 3]);
    cfg.batch_norm = true;
    cfg.steps = 6;
    let init = init_params(&cfg, 8);
    let (seq, m0) = training_sequence(&cfg, 3, 81);
    for optimizer in [Optimizer::Adam, Optimizer::Adamax] {
        let mut settings = TrainingSettings::classification(optimizer, 1e-2, AuxTargets::Uniform);
        settings.alpha = 1e-9;
        let mut fptt =
            ReferenceTrainer::new(&cfg, &with_rule(settings, LearningRule::Fptt { chunk: cfg.steps }), 3, &init);
        let mut bptt = ReferenceTrainer::new(&cfg, &with_rule(settings, LearningRule::Bptt), 3, &init);
        let l_fptt = fptt.train_sequence(&seq, &m0);
        let l_bptt = bptt.train_sequence(&seq, &m0);
        assert_eq!((fptt.updates(), bptt.updates()), (1, 1));
        assert_eq!(fptt.params(), bptt.params(), "{optimizer:?}: W after the first update");
        assert_eq!(l_fptt, l_bptt, "{optimizer:?}: the regulariser is 0 before the first update");
        assert_ne!(fptt.params(), &params_from_map(&fptt.net().layout, &init), "the update moved W");
        let (sf, sb) = (fptt.state(), bptt.state());
        for (k, t) in &sb {
            if k.ends_with(".wbar") || k.ends_with(".lambda") {
                continue;
            }
            assert_eq!(&sf[k], t, "{optimizer:?}: {k}");
        }
        // Only the FPTT bookkeeping differs: λ = −α(W − W̄) is no longer 0.
        assert!(sf["layer1_x.weight.lambda"].data.iter().any(|&v| v != 0.0));
    }
}

#[test]
fn trainer_bptt_is_one_plain_update_per_sequence_and_leaves_wbar_and_lambda() {
    let mut cfg = tiny(vec![4, 3]);
    cfg.batch_norm = true;
    cfg.steps = 5;
    let settings =
        with_rule(TrainingSettings::classification(Optimizer::Adamax, 1e-2, AuxTargets::Table), LearningRule::Bptt);
    let init = init_params(&cfg, 9);
    let mut tr = ReferenceTrainer::new(&cfg, &settings, 3, &init);
    let net = tr.net().clone();
    let w0 = tr.params().clone();
    let (seq, m0) = training_sequence(&cfg, 3, 91);
    let losses = tr.train_sequence(&seq, &m0);
    assert_eq!(tr.updates(), 1, "one update per sequence");
    assert_eq!(losses.len(), cfg.steps);
    assert!(losses.iter().all(|l| l.total_loss == l.task_loss), "BPTT's total loss is the task loss");

    // The update is the clipped BPTT gradient of the whole sequence and one Adamax step.
    let start = NetState::start(&cfg, &m0, 3);
    let q0 = vec![0.0; cfg.outputs * cfg.steps * cfg.outputs];
    let (l, grads) = net.sequence_gradient(&w0, &start, &seq, settings.loss, &q0);
    assert_eq!(l, losses.iter().map(|s| s.task_loss).sum::<f64>(), "the reported losses sum to the BPTT loss");
    let mut g: Params = net.layout.trainable().map(|s| (s.name.clone(), grads[&s.name].clone())).collect();
    let norm = g.values().flatten().map(|x| x * x).sum::<f64>().sqrt();
    assert!(norm > settings.clip as f64, "the clip is exercised (‖g‖ = {norm})");
    let factor = clip_factor(norm, settings.clip as f64);
    g.values_mut().flatten().for_each(|x| *x *= factor);
    let mut want = w0.clone();
    for (k, gk) in &g {
        let (mut m1, mut u) = (vec![0.0; gk.len()], vec![0.0; gk.len()]);
        adamax_step(want.get_mut(k).unwrap(), gk, &mut m1, &mut u, settings.lr as f64, 1);
    }
    assert_eq!(tr.params(), &want, "W after the BPTT update");

    // q and the running statistics are written at every step in forward order, from the forward
    // with the weights the sequence started with.
    let caches = net.chunk_forward(&w0, &start, &(0..cfg.steps).map(|t| to_f64(seq.step(t))).collect::<Vec<_>>());
    let mut q = q0.clone();
    let Targets::Labels(labels) = &seq.targets else { unreachable!() };
    let mut stats: Params = StatLayout::new(&cfg)
        .slots
        .iter()
        .map(|s| (s.name.clone(), vec![if s.name.contains("running_var") { 1.0 } else { 0.0 }; s.len()]))
        .collect();
    for (t, c) in caches.iter().enumerate() {
        update_table(&mut q, c.output(), labels, cfg.outputs, t, cfg.steps);
        for (spec, lc) in net.layers.iter().zip(&c.layers) {
            batchnorm::update_running(&mut stats, &spec.names.bn_a, t, lc.bn_a.as_ref().unwrap(), 3);
            batchnorm::update_running(&mut stats, &spec.names.bn_b, t, lc.bn_b.as_ref().unwrap(), 3);
        }
        batchnorm::update_running(&mut stats, &net.readout.bn, t, c.readout.bn.as_ref().unwrap(), 3);
    }
    assert!(q.iter().any(|&v| v != 0.0), "the table was written");
    assert_eq!(tr.q(), &q[..]);
    let state = tr.state();
    for (k, v) in &stats {
        assert_eq!(state[k].data, to_f32(v), "running statistic {k}");
    }

    // W̄ and λ stay as they started, also over a second sequence (which reads the table).
    let (seq2, m2) = training_sequence(&cfg, 3, 92);
    let losses2 = tr.train_sequence(&seq2, &m2);
    assert_eq!(tr.updates(), 2);
    // Now W ≠ W̄, so a regulariser would show: the total loss is still the task loss.
    assert!(losses2.iter().all(|l| l.total_loss == l.task_loss), "BPTT's total loss is the task loss");
    let state = tr.state();
    for slot in net.layout.trainable() {
        let k = &slot.name;
        assert_eq!(state[&format!("{k}.wbar")], init[k], "{k}: W̄ is the initial W");
        assert!(state[&format!("{k}.lambda")].data.iter().all(|&v| v == 0.0), "{k}: λ stays 0");
    }
    assert_ne!(state["layer2_r.weight"], init["layer2_r.weight"], "W moved");
}

#[test]
fn trainer_chunked_fptt_updates_after_every_chunk_from_the_state_after_the_previous_one() {
    let mut cfg = tiny(vec![4]);
    cfg.steps = 7;
    let chunk = 3;
    let settings = with_rule(
        TrainingSettings::classification(Optimizer::Adamax, 1e-2, AuxTargets::Table),
        LearningRule::Fptt { chunk },
    );
    let init = init_params(&cfg, 10);
    let (seq_a, m_a) = training_sequence(&cfg, 3, 101);
    let (seq_b, m_b) = training_sequence(&cfg, 3, 102);
    let inputs_b: Vec<Vec<f64>> = (0..cfg.steps).map(|t| to_f64(seq_b.step(t))).collect();

    // Chunks of 3, 3 and 1 steps: three updates per sequence; a prefix of 5 steps: chunks 3 and 2.
    let mut tr = ReferenceTrainer::new(&cfg, &settings, 3, &init);
    let net = tr.net().clone();
    let w0 = tr.params().clone();
    let mut first = tr.clone();
    first.train_prefix(&seq_a, &m_a, chunk);
    assert_eq!(first.updates(), 1);
    let mut prefix = tr.clone();
    assert_eq!(prefix.train_prefix(&seq_a, &m_a, 5).len(), 5);
    assert_eq!(prefix.updates(), 2);
    let losses_a = tr.train_sequence(&seq_a, &m_a);
    assert_eq!((losses_a.len(), tr.updates()), (7, 3));

    // The first update is the FPTT update (method §5) of the chunk gradient of steps 0–2.
    let start_a = NetState::start(&cfg, &m_a, 3);
    let inputs_a: Vec<Vec<f64>> = (0..chunk).map(|t| to_f64(seq_a.step(t))).collect();
    let q0 = vec![0.0; cfg.outputs * cfg.steps * cfg.outputs];
    let (_, grads) =
        net.chunk_gradient(&w0, &start_a, &inputs_a, LossContext::new(settings.loss, &seq_a.targets, 0, &q0));
    let (alpha, beta) = (settings.alpha as f64, settings.beta as f64);
    let mut g: Params = net
        .layout
        .trainable()
        .map(|s| {
            (s.name.clone(), fptt_gradient(&grads[&s.name], &w0[&s.name], &w0[&s.name], &vec![0.0; s.len()], alpha))
        })
        .collect();
    let factor = clip_factor(g.values().flatten().map(|x| x * x).sum::<f64>().sqrt(), settings.clip as f64);
    g.values_mut().flatten().for_each(|x| *x *= factor);
    let mut want = w0.clone();
    let state = first.state();
    for (k, gk) in &g {
        let (mut m1, mut u) = (vec![0.0; gk.len()], vec![0.0; gk.len()]);
        adamax_step(want.get_mut(k).unwrap(), gk, &mut m1, &mut u, settings.lr as f64, 1);
        let (mut wbar, mut lambda) = (w0[k].clone(), vec![0.0; gk.len()]);
        fptt_after_step(&want[k], &mut wbar, &mut lambda, alpha, beta);
        assert_eq!(state[&format!("{k}.wbar")].data, to_f32(&wbar), "{k}: W̄");
        assert_eq!(state[&format!("{k}.lambda")].data, to_f32(&lambda), "{k}: λ");
    }
    assert_eq!(first.params(), &want, "W after the first chunk");

    // Sequence B, whose losses read the table sequence A wrote. Its first chunk's losses are those
    // of the chunk from B's start with the table as B began (row t is written by step t only after
    // ℓ_t read it); its second chunk starts from the state after the first chunk, computed with the
    // weights before the first chunk's update, and runs with the weights after it.
    let (w_before_b, q_before_b) = (tr.params().clone(), tr.q().to_vec());
    assert!(q_before_b.iter().any(|&v| v != 0.0), "sequence A wrote the table");
    let mut after_one_chunk = tr.clone();
    after_one_chunk.train_prefix(&seq_b, &m_b, chunk);
    let losses_b = tr.train_sequence(&seq_b, &m_b);
    let sum = |from: usize, to: usize| losses_b[from..to].iter().map(|l| l.task_loss).sum::<f64>();
    let start_b = NetState::start(&cfg, &m_b, 3);
    let chunk_loss = |p: &Params, start: &NetState, t0: usize, len: usize| {
        net.chunk_loss(
            p,
            start,
            &inputs_b[t0..t0 + len],
            LossContext::new(settings.loss, &seq_b.targets, t0, &q_before_b),
        )
    };
    assert_eq!(sum(0, 3), chunk_loss(&w_before_b, &start_b, 0, 3), "first chunk of B");
    let caches = net.chunk_forward(&w_before_b, &start_b, &inputs_b[0..3]);
    let state_after_first = caches[2].next_state();
    assert_eq!(sum(3, 6), chunk_loss(after_one_chunk.params(), &state_after_first, 3, 3), "second chunk of B");
    // Within a chunk every step reports the same regulariser (W, λ, W̄ before the chunk's update).
    let reg: Vec<f64> = losses_b.iter().map(|l| l.total_loss - l.task_loss).collect();
    assert!((reg[0] - reg[2]).abs() <= 1e-12 * reg[0].abs().max(1e-12), "{reg:?}");
    assert!((reg[3] - reg[0]).abs() > 1e-12 * reg[0].abs(), "a new chunk, a new regulariser: {reg:?}");
}

#[test]
fn trainer_runs_lif_and_alif_networks_with_every_rule() {
    // FPTT (online and chunked) and BPTT need nothing neuron-specific: the trainer reaches the
    // layer only through the one-step forward/backward. ρ_m (and ρ_a) are trained like any weight.
    for neuron in [NeuronKind::Lif, NeuronKind::Alif] {
        let mut cfg = with_neuron(tiny(vec![5]), neuron);
        cfg.steps = 6;
        let init = init_params(&cfg, 12);
        for rule in [LearningRule::Fptt { chunk: 1 }, LearningRule::Fptt { chunk: 4 }, LearningRule::Bptt] {
            let settings = with_rule(TrainingSettings::classification(Optimizer::Adam, 1e-2, AuxTargets::Table), rule);
            let mut tr = ReferenceTrainer::new(&cfg, &settings, 3, &init);
            let (seq, m0) = training_sequence(&cfg, 3, 130);
            let losses = tr.train_sequence(&seq, &m0);
            assert!(losses.iter().all(|l| l.task_loss.is_finite()), "{neuron:?} {rule:?}");
            let moved = |name: &str| to_f32(&tr.params()[name]) != init[name].data;
            assert!(moved("layer1_tauM.weight") && moved("layer1_x.weight"), "{neuron:?} {rule:?}: ρ_m and W_x move");
            if neuron == NeuronKind::Alif {
                assert!(moved("layer1_tauAdp.weight"), "{neuron:?} {rule:?}: ρ_a moves");
            }
        }
    }
}
