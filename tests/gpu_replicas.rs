//! Replicas: R models of one shape stepped together by every dispatch (the replica index in the
//! dispatch's z, each replica's buffers at its own stride). Replica r must train exactly as the
//! same model trained alone, with its own initial weights, data and scalar hyperparameters, under
//! every learning rule; a replica that diverges stops alone.

// Replica r is compared with engine r: the index is the point.
#![allow(clippy::needless_range_loop)]

mod gpu_common;

use fptt::learn::{Engine, ReplicaHyper};
use fptt::model::{init_params, ModelConfig, NeuronKind};
use fptt::rng::Rng;
use fptt::settings::{
    AuxTargets, EpropSettings, InitialState, LearningRule, Optimizer, SequenceBatch, Targets, TrainingSettings,
};
use fptt::tensor::TensorMap;

fn batch(cfg: &ModelConfig, b: usize, seed: u64) -> SequenceBatch {
    let mut rng = Rng::new(seed);
    SequenceBatch {
        steps: cfg.steps,
        batch: b,
        inputs_per_step: cfg.inputs,
        inputs: (0..cfg.steps * b * cfg.inputs).map(|_| rng.uniform() as f32).collect(),
        targets: Targets::Labels((0..b).map(|_| rng.below(cfg.outputs) as u32).collect()),
    }
}

/// Two states hold the same tensors, bit for bit (NaN included).
fn assert_same(a: &TensorMap, b: &TensorMap, what: &str) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}");
    for (name, t) in a {
        let same = t.data.iter().zip(&b[name].data).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{what}: {name} differs");
    }
}

fn settings_with(base: &TrainingSettings, h: ReplicaHyper) -> TrainingSettings {
    TrainingSettings { lr: h.lr, alpha: h.alpha, beta: h.beta, clip: h.clip, ..*base }
}

/// Three replicas with their own seeds, data and hyperparameters, trained for three sequences,
/// evaluated on W and (FPTT) on W̄, against three engines trained alone: every figure and every
/// tensor must match bit for bit (the kernels run the same operations in the same order, only
/// at other offsets).
fn replicas_match_runs_alone(rule: LearningRule, neuron: NeuronKind, batch_norm: bool) {
    let ctx = gpu_common::context();
    let mut cfg = ModelConfig::classifier(3, 10, 4, 6);
    cfg.neuron = neuron;
    cfg.batch_norm = batch_norm;
    let mut base = TrainingSettings::classification(Optimizer::Adam, 3e-3, AuxTargets::Table);
    base.rule = rule;
    let hypers = [
        ReplicaHyper::of(&base),
        ReplicaHyper { lr: 1e-2, alpha: 0.3, ..ReplicaHyper::of(&base) },
        ReplicaHyper { lr: 7e-4, beta: 0.8, clip: 0.05, ..ReplicaHyper::of(&base) },
    ];
    let inits: Vec<TensorMap> = (0..3).map(|r| init_params(&cfg, 10 + r)).collect();
    let packed_inits: Vec<(&TensorMap, ReplicaHyper)> = inits.iter().zip(hypers).collect();
    let b = 4;
    let mut packed = Engine::with_replicas(ctx.clone(), &cfg, &base, b, &packed_inits).unwrap();
    assert_eq!(packed.replicas(), 3);
    let mut alone: Vec<Engine> = (0..3)
        .map(|r| Engine::new(ctx.clone(), &cfg, &settings_with(&base, hypers[r]), b, &inits[r]).unwrap())
        .collect();
    packed.poison_scratch().unwrap();
    let states: Vec<InitialState> =
        (0..3).map(|r| InitialState::uniform(&cfg.hidden, b, &mut Rng::new(50 + r as u64))).collect();
    let state_refs: Vec<&InitialState> = states.iter().collect();
    for seq in 0..3u64 {
        let data: Vec<SequenceBatch> = (0..3).map(|r| batch(&cfg, b, 100 * seq + r)).collect();
        let outcomes = packed.train_replicas(&data.iter().collect::<Vec<_>>(), &state_refs).unwrap();
        for r in 0..3 {
            let own = alone[r].train_sequence(&data[r], &states[r]).unwrap();
            let got = outcomes[r].as_ref().expect("no replica diverges here");
            assert_eq!(got, &own, "{rule:?}: replica {r}, sequence {seq}");
        }
    }
    assert_eq!(packed.updates(), alone[0].updates());
    for r in 0..3 {
        let (got, own) = (packed.replica_state(r).unwrap(), alone[r].state().unwrap());
        assert_same(&got, &own, &format!("{rule:?}: replica {r}"));
    }

    // Evaluation on one shared test batch, on W and (FPTT) on W̄ swapped in.
    let test = batch(&cfg, 3, 999);
    let evaluate_all = |packed: &mut Engine, alone: &mut [Engine]| {
        let got = packed.evaluate_replicas(&[&test; 3], &state_refs).unwrap();
        for r in 0..3 {
            let own = alone[r].evaluate_sequence(&test, &states[r]).unwrap();
            assert_eq!(got[r].as_ref().unwrap(), &own, "{rule:?}: replica {r}'s evaluation");
        }
    };
    evaluate_all(&mut packed, &mut alone);
    if matches!(rule, LearningRule::Fptt { .. }) {
        packed.load_running_mean_for_evaluation().unwrap();
        alone.iter_mut().for_each(|e| e.load_running_mean_for_evaluation().unwrap());
        evaluate_all(&mut packed, &mut alone);
        packed.restore_current_weights().unwrap();
        alone.iter_mut().for_each(|e| e.restore_current_weights().unwrap());
        packed.reset_to_running_mean().unwrap();
        alone.iter_mut().for_each(|e| e.reset_to_running_mean().unwrap());
        for r in 0..3 {
            let what = format!("{rule:?}: replica {r} after the reset");
            assert_same(&packed.replica_state(r).unwrap(), &alone[r].state().unwrap(), &what);
        }
    }
}

#[test]
fn replicas_match_one_step_fptt_runs_alone() {
    replicas_match_runs_alone(LearningRule::Fptt { chunk: 1 }, NeuronKind::Ltc, true);
}

#[test]
fn replicas_match_chunked_fptt_runs_alone() {
    replicas_match_runs_alone(LearningRule::Fptt { chunk: 4 }, NeuronKind::Ltc, false);
}

#[test]
fn replicas_match_bptt_runs_alone() {
    replicas_match_runs_alone(LearningRule::Bptt, NeuronKind::Ltc, true);
}

#[test]
fn replicas_match_eprop_runs_alone() {
    let es = EpropSettings { update_every_step: true, ..Default::default() };
    replicas_match_runs_alone(LearningRule::Eprop(es), NeuronKind::Alif, false);
}

/// A replica whose data turn its loss non-finite is reported with its update, frozen (nothing of
/// it changes again), and the others train on exactly as they would alone.
#[test]
fn a_diverging_replica_stops_alone() {
    let ctx = gpu_common::context();
    let cfg = ModelConfig::classifier(3, 8, 4, 5);
    let settings = TrainingSettings::classification(Optimizer::Adamax, 3e-3, AuxTargets::Table);
    let inits: Vec<TensorMap> = (0..2).map(|r| init_params(&cfg, 20 + r)).collect();
    // Replica 1's readout bias is NaN: its first loss is NaN.
    let mut broken = inits[1].clone();
    broken.get_mut("layer3_x.bias").unwrap().data[1] = f32::NAN;
    let h = ReplicaHyper::of(&settings);
    let mut packed = Engine::with_replicas(ctx.clone(), &cfg, &settings, 3, &[(&inits[0], h), (&broken, h)]).unwrap();
    let mut alone = Engine::new(ctx.clone(), &cfg, &settings, 3, &inits[0]).unwrap();
    let state = InitialState::zeros(&cfg.hidden, 3);
    let good = |seed| batch(&cfg, 3, seed);

    let first = packed.train_replicas(&[&good(1), &good(2)], &[&state, &state]).unwrap();
    assert_eq!(first[0], Ok(alone.train_sequence(&good(1), &state).unwrap()));
    let d = first[1].clone().expect_err("the broken replica diverges");
    assert_eq!((d.update, d.step), (1, 0), "its first step's loss is NaN: update 1");
    assert!(d.loss.is_nan());
    // (NaN ≠ NaN: divergences are compared by update and step.)
    let at = |d: Option<fptt::learn::Divergence>| d.map(|d| (d.update, d.step));
    assert_eq!(at(packed.divergence(1)), Some((1, 0)));
    let frozen = packed.replica_state(1).unwrap();

    for seed in 3..5 {
        let out = packed.train_replicas(&[&good(seed), &good(seed + 10)], &[&state, &state]).unwrap();
        assert_eq!(out[0], Ok(alone.train_sequence(&good(seed), &state).unwrap()), "replica 0 goes on");
        assert_eq!(at(out[1].clone().err()), Some((1, 0)), "replica 1 stays reported as diverged");
    }
    for (name, t) in &packed.replica_state(1).unwrap() {
        let same = t.data.iter().zip(&frozen[name].data).all(|(x, y)| x.to_bits() == y.to_bits());
        // q and the running statistics are not the update's: only trained tensors must hold still.
        if name != "q" {
            assert!(same, "the frozen replica's {name} changed");
        }
    }
    assert_same(&packed.replica_state(0).unwrap(), &alone.state().unwrap(), "replica 0");

    // Loading a state thaws it.
    packed.load_replica_state(1, &inits[1]).unwrap();
    assert_eq!(at(packed.divergence(1)), None);
    let out = packed.train_replicas(&[&good(8), &good(9)], &[&state, &state]).unwrap();
    assert!(out[1].is_ok(), "a reloaded replica trains again: {:?}", out[1]);
}

/// The one-model methods refuse an engine of several replicas instead of answering for replica 0.
#[test]
fn one_model_methods_refuse_replicas() {
    let ctx = gpu_common::context();
    let cfg = ModelConfig::classifier(3, 8, 4, 5);
    let settings = TrainingSettings::classification(Optimizer::Adam, 3e-3, AuxTargets::Off);
    let init = init_params(&cfg, 1);
    let h = ReplicaHyper::of(&settings);
    let mut packed = Engine::with_replicas(ctx, &cfg, &settings, 2, &[(&init, h), (&init, h)]).unwrap();
    let state = InitialState::zeros(&cfg.hidden, 2);
    assert!(packed.train_sequence(&batch(&cfg, 2, 1), &state).is_err());
    assert!(packed.state().is_err());
    assert!(packed.replica_state(2).is_err());
    let err = packed.train_replicas(&[&batch(&cfg, 2, 1)], &[&state]).unwrap_err().to_string();
    assert!(err.contains("2 replicas"), "{err}");
}
