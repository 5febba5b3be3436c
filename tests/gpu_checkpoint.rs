//! Checkpoints of the GPU engine: everything it keeps survives a save/load round trip bit for bit
//! (and training continues identically from it); mismatched tensors are refused by name.

mod gpu_common;

use fptt::checkpoint;
use fptt::learn::Engine;
use fptt::model::{init_params, ModelConfig, ParamLayout};
use fptt::rng::Rng;
use fptt::settings::{AuxTargets, InitialState, Optimizer, TrainingSettings};
use fptt::tensor::Tensor;
use std::collections::BTreeMap;

use gpu_common::random_batch as batch;

fn bits(t: &Tensor) -> Vec<u32> {
    t.data.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn engine_state_round_trips_through_a_checkpoint_and_training_continues_identically() {
    let ctx = gpu_common::context();
    let mut cfg = ModelConfig::classifier(2, 12, 4, 6);
    cfg.batch_norm = true;
    let settings = TrainingSettings::classification(Optimizer::Adam, 3e-3, AuxTargets::Table);
    let mut a = Engine::new(ctx.clone(), &cfg, &settings, 4, &init_params(&cfg, 3)).unwrap();
    let init = InitialState::uniform(&cfg.hidden, 4, &mut Rng::new(9));
    a.train_sequence(&batch(&cfg, 4, 1), &init).unwrap();
    let saved = a.state().unwrap();
    let dir = std::env::temp_dir().join(format!("fptt-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("checkpoint.safetensors");
    let meta = BTreeMap::from([("updates".to_string(), a.updates().to_string())]);
    checkpoint::save(&path, &saved, &meta).unwrap();
    let (loaded, meta_back) = checkpoint::load(&path).unwrap();
    assert_eq!(meta, meta_back);
    assert_eq!(saved.keys().collect::<Vec<_>>(), loaded.keys().collect::<Vec<_>>());
    let mut b = Engine::new(ctx.clone(), &cfg, &settings, 4, &loaded).unwrap();
    b.set_updates(meta_back["updates"].parse().unwrap());
    for (name, t) in &b.state().unwrap() {
        assert_eq!(bits(t), bits(&saved[name]), "{name} changed in the round trip");
    }
    // Both continue identically: moments, W̄, λ, q and statistics all came back.
    a.train_sequence(&batch(&cfg, 4, 2), &init).unwrap();
    b.train_sequence(&batch(&cfg, 4, 2), &init).unwrap();
    let (sa, sb) = (a.state().unwrap(), b.state().unwrap());
    for (name, t) in &sa {
        assert_eq!(bits(t), bits(&sb[name]), "{name} differs after training on from the checkpoint");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mismatched_tensors_are_refused_by_name() {
    let ctx = gpu_common::context();
    let cfg = ModelConfig::classifier(2, 12, 4, 6);
    let settings = TrainingSettings::classification(Optimizer::Adamax, 3e-3, AuxTargets::Off);
    let good = init_params(&cfg, 3);

    let mut wrong_shape = good.clone();
    wrong_shape.insert("layer1_r.weight".into(), Tensor::zeros(vec![12, 11]));
    let err = Engine::new(ctx.clone(), &cfg, &settings, 4, &wrong_shape).err().expect("refused").to_string();
    assert!(err.contains("layer1_r.weight") && err.contains("[12, 11]"), "{err}");

    let mut missing = good.clone();
    missing.remove("layer1_tauM.bias");
    let err = Engine::new(ctx.clone(), &cfg, &settings, 4, &missing).err().expect("refused").to_string();
    assert!(err.contains("layer1_tauM.bias"), "{err}");

    let mut bad_moment = good.clone();
    bad_moment.insert("layer3_x.weight.exp_avg".into(), Tensor::zeros(vec![3]));
    let err = Engine::new(ctx.clone(), &cfg, &settings, 4, &bad_moment).err().expect("refused").to_string();
    assert!(err.contains("layer3_x.weight.exp_avg"), "{err}");

    // On disk: an unknown tensor name is named by check_params.
    let mut extra = good.clone();
    extra.insert("layer9_x.weight".into(), Tensor::zeros(vec![1]));
    let Err(err) =
        checkpoint::check_params(std::path::Path::new("x.safetensors"), &extra, &ParamLayout::new(&cfg), false)
    else {
        panic!("an unknown tensor was accepted");
    };
    let err = err.to_string();
    assert!(err.contains("layer9_x.weight"), "{err}");
}

/// Evaluating the running mean W̄ with W set aside gives exactly what the reset W ← W̄ followed by
/// an evaluation gives, and leaves every tensor of the engine as it was, bit for bit; training,
/// a reset or a state read in between is refused.
#[test]
fn evaluating_the_running_mean_disturbs_neither_weight_set() {
    let ctx = gpu_common::context();
    let mut cfg = ModelConfig::classifier(2, 12, 4, 6);
    cfg.batch_norm = true;
    let settings = TrainingSettings::classification(Optimizer::Adamax, 3e-2, AuxTargets::Table);
    let mut a = Engine::new(ctx.clone(), &cfg, &settings, 4, &init_params(&cfg, 5)).unwrap();
    let init = InitialState::uniform(&cfg.hidden, 4, &mut Rng::new(9));
    for seed in 1..4 {
        a.train_sequence(&batch(&cfg, 4, seed), &init).unwrap();
    }
    let before = a.state().unwrap();
    let (w, wbar) = (&before["layer1_x.weight"], &before["layer1_x.weight.wbar"]);
    assert_ne!(bits(w), bits(wbar), "the test needs W ≠ W̄ after training");
    let test = batch(&cfg, 3, 77);
    let current = a.evaluate_sequence(&test, &init).unwrap();

    a.load_running_mean_for_evaluation().unwrap();
    let of_mean = a.evaluate_sequence(&test, &init).unwrap();
    assert!(a.train_sequence(&batch(&cfg, 4, 5), &init).is_err(), "training on W̄ swapped in is refused");
    assert!(a.reset_to_running_mean().is_err());
    assert!(a.state().is_err());
    a.restore_current_weights().unwrap();
    for (name, t) in &a.state().unwrap() {
        assert_eq!(bits(t), bits(&before[name]), "{name} changed by evaluating W̄");
    }
    assert_eq!(a.evaluate_sequence(&test, &init).unwrap(), current, "W evaluates as before");

    // The same figures as the reset followed by an evaluation.
    a.reset_to_running_mean().unwrap();
    assert_eq!(a.evaluate_sequence(&test, &init).unwrap(), of_mean);
    assert_ne!(of_mean, current, "W and W̄ differ, so their evaluations should");
}

#[test]
fn only_fptt_keeps_a_running_mean_to_evaluate() {
    let ctx = gpu_common::context();
    let cfg = ModelConfig::classifier(2, 12, 4, 6);
    let mut settings = TrainingSettings::classification(Optimizer::Adam, 3e-3, AuxTargets::Table);
    settings.rule = fptt::settings::LearningRule::Bptt;
    let mut e = Engine::new(ctx, &cfg, &settings, 4, &init_params(&cfg, 5)).unwrap();
    let err = e.load_running_mean_for_evaluation().unwrap_err().to_string();
    assert!(err.contains("only FPTT"), "{err}");
}
