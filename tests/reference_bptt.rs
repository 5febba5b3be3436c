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

use fptt::model::{ModelConfig, ParamLayout, ThresholdMode};
use fptt::reference::{Grads, LayerState, Net, NetState, Params, SpikeFn};
use fptt::rng::Rng;
use fptt::settings::{AuxTargets, LossKind, SequenceBatch, Targets};

// ---------------------------------------------------------------------------------------------
// Random networks, states and data (the same recipe as `tests/reference_spec.rs`).

/// A random parameter map for `cfg` (gate weights kept moderate so the gates are not saturated).
fn random_params(cfg: &ModelConfig, rng: &mut Rng) -> Params {
    ParamLayout::new(cfg)
        .slots
        .iter()
        .map(|s| {
            let data = if s.name.ends_with(".alpha") {
                vec![rng.uniform_range(0.7, 1.5)]
            } else if s.name.starts_with("bn") || s.name.starts_with("readout_bn") {
                if s.name.ends_with(".weight") {
                    (0..s.len()).map(|_| rng.uniform_range(0.5, 1.5)).collect()
                } else {
                    (0..s.len()).map(|_| rng.uniform_range(-0.3, 0.3)).collect()
                }
            } else {
                (0..s.len()).map(|_| rng.uniform_range(-0.8, 0.8)).collect()
            };
            (s.name.clone(), data)
        })
        .collect()
}

/// A random start state: m, s, b, o all non-zero so that every state path matters from step one.
fn random_state(cfg: &ModelConfig, batch: usize, rng: &mut Rng) -> NetState {
    let layers = cfg
        .hidden
        .iter()
        .map(|&n| LayerState {
            m: (0..batch * n).map(|_| rng.uniform_range(-0.5, 1.0)).collect(),
            s: (0..batch * n).map(|_| rng.uniform()).collect(),
            b: (0..batch * n).map(|_| rng.uniform_range(0.05, 0.6)).collect(),
        })
        .collect();
    NetState { layers, o: (0..batch * cfg.outputs).map(|_| rng.uniform_range(-1.0, 1.0)).collect() }
}

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
        self.net.chunk_loss(p, start, &self.inputs, &self.targets, self.loss, self.t0, &self.q)
    }

    fn gradient(&self) -> (f64, Grads) {
        self.net.chunk_gradient(&self.p, &self.start, &self.inputs, &self.targets, self.loss, self.t0, &self.q)
    }

    /// The gradient with the chunk's cross-step terms dropped: the sum of one-step gradients, each
    /// from the state the chunk's forward reached (a constant), as truncation 1 would compute.
    fn sum_of_one_step_gradients(&self) -> Grads {
        let caches = self.net.chunk_forward(&self.p, &self.start, &self.inputs);
        let mut sum = Grads::new();
        for (j, x) in self.inputs.iter().enumerate() {
            let state = if j == 0 { self.start.clone() } else { caches[j - 1].next_state() };
            let (_, g) = self.net.step_gradient(&self.p, &state, x, &self.targets, self.loss, self.t0 + j, &self.q);
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
    // exercises every state path of spec §3's chain directly.
    let caches = pb.net.chunk_forward(&pb.p, &pb.start, &pb.inputs);
    let g_outputs: Vec<Vec<f64>> = caches
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let batch = pb.start.o.len() / pb.net.cfg.outputs;
            let (_, g) = fptt::reference::loss::task_loss(
                pb.loss,
                c.output(),
                batch,
                pb.net.cfg.outputs,
                &pb.targets,
                pb.t0 + j,
                pb.net.cfg.steps,
                &pb.q,
            );
            g
        })
        .collect();
    let (grads_again, g_start) = pb.net.chunk_backward(&pb.p, &caches, &g_outputs);
    assert_eq!(grads_again, grads, "{what}: chunk_backward is what chunk_gradient returns");
    let mut worst_state = 0.0f64;
    let mut state_nonzero = 0;
    let mut state_checked = 0;
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
    // With a fixed threshold b is unused (its gradient is 0): then m, s, o must carry gradient.
    assert!(
        state_nonzero * 2 > state_checked,
        "{what}: only {state_nonzero} of {state_checked} start-state gradients are non-zero"
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
            let (l_step, g_step) =
                pb.net.step_gradient(&pb.p, &pb.start, &pb.inputs[0], &pb.targets, pb.loss, t0, &pb.q);
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
