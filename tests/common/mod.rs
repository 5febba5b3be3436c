//! Shared test support: the golden fixtures of `tests/fixtures/` (see its README) loaded into the
//! crate's types, and the tensor-map comparison the fixture tests use. The GPU tests reuse this.
//!
//! Files are read with the crate's own readers (`checkpoint::load`, `data::read_images` / `read_labels`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fptt::model::{ModelConfig, NeuronKind, ParamLayout, ThresholdMode};
use fptt::reference::{LayerState, NetState, Params};
use fptt::rng::Rng;
use fptt::settings::{
    AuxTargets, InitialState, LearningRule, LossKind, Optimizer, SequenceBatch, StepLoss, Targets, TrainingSettings,
};
use fptt::tensor::TensorMap;

/// One golden trajectory: what to train on, from where, and what must come out.
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    /// Inputs 1, hidden [16], outputs 10, steps 20, adaptive, not fused, trainable slopes,
    /// batch norm as the fixture says.
    pub cfg: ModelConfig,
    pub settings: TrainingSettings,
    /// The 8 training images, one pixel per step (row-major), pixel/255, with their labels.
    pub batch: SequenceBatch,
    /// m = 0 (the fixtures' deterministic start; s = 0, b = 0.1, o = 0 are implied).
    pub initial: InitialState,
    /// Parameters (and, with batch norm, the running statistics of steps 0…19).
    pub init: TensorMap,
    /// The full state after 1, 2 and 20 updates, keyed by the number of updates.
    pub after_step: BTreeMap<usize, TensorMap>,
    /// The state after the epoch-end reset `W ← W̄` that follows the 20 updates.
    pub after_reset: TensorMap,
    /// The per-step losses of `fixture.json`.
    pub losses: Vec<StepLoss>,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// Loads `tests/fixtures/{name}` (`"adam-aux"` or `"bn-adamax"`).
pub fn load_fixture(name: &str) -> Fixture {
    let dir = fixtures_dir().join(name);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("fixture.json")).expect("read fixture.json"))
            .expect("parse fixture.json");
    let num = |k: &str| json[k].as_f64().unwrap_or_else(|| panic!("fixture.json: {k}"));
    let int = |k: &str| json[k].as_u64().unwrap_or_else(|| panic!("fixture.json: {k}")) as usize;
    let flag = |k: &str| json[k].as_bool().unwrap_or_else(|| panic!("fixture.json: {k}"));

    let (hidden, batch, inputs, steps, classes) =
        (int("hidden"), int("batch"), int("inputs_per_step"), int("steps"), int("classes"));
    let cfg = ModelConfig {
        inputs,
        hidden: vec![hidden],
        outputs: classes,
        steps,
        threshold: ThresholdMode::Adaptive,
        fused_recurrent: false,
        trainable_slopes: true,
        batch_norm: flag("batch_norm"),
        neuron: NeuronKind::Ltc,
        conv: None,
    };
    let optimizer = match json["optimizer"].as_str().expect("fixture.json: optimizer") {
        "adam" => Optimizer::Adam,
        "adamax" => Optimizer::Adamax,
        other => panic!("fixture.json: unknown optimizer {other}"),
    };
    let aux = if flag("aux_loss") { AuxTargets::Table } else { AuxTargets::Off };
    let settings = TrainingSettings {
        optimizer,
        lr: num("lr") as f32,
        alpha: num("alpha") as f32,
        beta: num("beta") as f32,
        clip: num("clip") as f32,
        loss: LossKind::Classification { aux },
        // The fixtures are the authors' online rule: an update after every step.
        rule: LearningRule::Fptt { chunk: 1 },
    };
    let init_state = &json["initial_state"];
    assert_eq!(init_state["s"].as_f64(), Some(0.0), "the engine starts with s = 0");
    assert_eq!(init_state["b"].as_f64(), Some(0.1), "the engine starts with b = b0");
    assert_eq!(init_state["o"].as_f64(), Some(0.0), "the engine starts with o = 0");
    let m0 = init_state["m"].as_f64().expect("initial m") as f32;
    let initial = InitialState { membrane: vec![vec![m0; batch * hidden]] };

    // The fixture's data: the `train-*` files (the `t10k-*` ones hold the same 8 images).
    let data = dir.join("data");
    let images = fptt::data::read_images(&data.join("train-images-idx3-ubyte.gz")).expect("fixture images");
    let labels = fptt::data::read_labels(&data.join("train-labels-idx1-ubyte.gz")).expect("fixture labels");
    assert_eq!(images.count, batch, "one batch of the whole fixture set");
    assert_eq!(labels.len(), batch);
    assert_eq!(images.pixels_per_image(), steps * inputs, "one pixel per step");
    // Time-major [T, B, I], pixel/255, pixels in row-major order.
    let mut seq = vec![0.0f32; steps * batch * inputs];
    for b in 0..batch {
        let img = images.image(b);
        for t in 0..steps {
            for i in 0..inputs {
                seq[(t * batch + b) * inputs + i] = img[t * inputs + i] as f32 / 255.0;
            }
        }
    }
    let batch_data = SequenceBatch {
        steps,
        batch,
        inputs_per_step: inputs,
        inputs: seq,
        targets: Targets::Labels(labels.iter().map(|&l| l as u32).collect()),
    };

    let losses = json["loss_per_step"]
        .as_array()
        .expect("loss_per_step")
        .iter()
        .enumerate()
        .map(|(t, e)| {
            assert_eq!(e["step"].as_u64(), Some(t as u64));
            StepLoss { task_loss: e["task_loss"].as_f64().unwrap(), total_loss: e["total_loss"].as_f64().unwrap() }
        })
        .collect();

    let after_step = [1, 2, 20]
        .into_iter()
        .map(|n| (n, read_safetensors(&dir.join(format!("after-step-{n}.safetensors")))))
        .collect();
    Fixture {
        name: name.to_string(),
        init: read_safetensors(&dir.join("init.safetensors")),
        after_reset: read_safetensors(&dir.join("after-reset.safetensors")),
        after_step,
        dir,
        cfg,
        settings,
        batch: batch_data,
        initial,
        losses,
    }
}

/// All tensors of a safetensors file (the crate's checkpoint reader; metadata ignored).
pub fn read_safetensors(path: &Path) -> TensorMap {
    fptt::checkpoint::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).0
}

/// The biases whose loss gradient is exactly zero because they feed a batch norm (fixture README:
/// compared loosely, each moved by no more than 20·lr from its initial value). Empty without
/// batch norm.
pub fn bn_fed_biases(fx: &Fixture) -> Vec<&'static str> {
    if fx.cfg.batch_norm {
        vec!["layer1_x.bias", "layer1_r.bias", "layer3_x.bias"]
    } else {
        vec![]
    }
}

/// The batch norm each bias of [`bn_fed_biases`] feeds.
pub fn bn_fed_by(bias: &str) -> &'static str {
    match bias {
        "layer1_x.bias" => "bn1a",
        "layer1_r.bias" => "bn1b",
        "layer3_x.bias" => "bn2",
        other => panic!("{other} does not feed a batch norm"),
    }
}

/// `NAME` of `NAME`, `NAME.wbar`, `NAME.lambda`, `NAME.exp_avg`, `NAME.exp_avg_sq`, `NAME.exp_inf`.
pub fn base_name(key: &str) -> &str {
    for suffix in [".wbar", ".lambda", ".exp_avg_sq", ".exp_avg", ".exp_inf"] {
        if let Some(b) = key.strip_suffix(suffix) {
            return b;
        }
    }
    key
}

/// One tensor's measured agreement with a fixture and what it was allowed.
#[derive(Debug, Clone)]
pub struct Agreement {
    pub name: String,
    pub max_abs_err: f64,
    /// The scale the relative tolerance applies to (see [`check_state`]).
    pub scale: f64,
    pub tol: f64,
}

impl Agreement {
    /// `max_abs_err / scale`: the measured relative error.
    pub fn relative(&self) -> f64 {
        if self.scale > 0.0 {
            self.max_abs_err / self.scale
        } else {
            self.max_abs_err
        }
    }
}

/// Compares a full state (trainer `state()` naming) with a fixture state after `updates` updates,
/// per tensor `max|got − want| ≤ rel·scale + floor`, and panics listing every tensor beyond it.
/// Returns every tensor's agreement (the bn-fed biases' own tensors are not in it).
///
/// - `scale = max|want|`, except for `NAME.lambda`: `max|λ| + α·max|W|`. λ accumulates
///   `−α·(W − W̄)`, a small difference of f32 numbers of W's size, so λ is as accurate as W
///   allows (W's own tolerance and f32 rounding enter λ multiplied by α).
/// - `NAME.exp_avg_sq` (∝ g²) gets twice the relative tolerance of the gradient and no floor;
///   everything else a floor of 1e-9.
/// - With batch norm (README exception): the biases of [`bn_fed_biases`] and their W̄ must stay
///   within 20·lr of their initial value (both `got` and `want`); their λ and moments are noise
///   and only checked to be finite. The running means of the batch norms those biases feed
///   contain 0.1·(bias at step t): they are allowed an extra `0.1·2·t·lr`, since each of the two
///   bias trajectories moves by at most lr per update.
pub fn check_state(
    fx: &Fixture,
    got: &TensorMap,
    want: &TensorMap,
    updates: usize,
    rel: f64,
    what: &str,
) -> Vec<Agreement> {
    let got_keys: Vec<&String> = got.keys().collect();
    let want_keys: Vec<&String> = want.keys().collect();
    assert_eq!(got_keys, want_keys, "{what}: the tensor names differ");
    let lr = fx.settings.lr as f64;
    let alpha = fx.settings.alpha as f64;
    let exceptions = bn_fed_biases(fx);
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (key, w) in want {
        let g = &got[key];
        assert_eq!(g.shape, w.shape, "{what}: shape of {key}");
        let base = base_name(key);
        if exceptions.contains(&base) {
            assert!(g.data.iter().all(|v| v.is_finite()), "{what}: {key} is not finite");
            if key == base || key.ends_with(".wbar") {
                let init = &fx.init[base];
                for (label, t) in [("got", g), ("fixture", w)] {
                    let moved = t.max_abs_diff(init) as f64;
                    if moved > 20.0 * lr {
                        bad.push(format!("{key} ({label}) moved {moved:.3e} > 20·lr from its initial value"));
                    }
                }
            }
            continue;
        }
        let err = g.max_abs_diff(w) as f64;
        let mut scale = w.max_abs() as f64;
        let mut tol_rel = rel;
        let mut floor = 1e-9;
        if key.ends_with(".lambda") {
            scale += alpha * want[base].max_abs() as f64;
        }
        if key.ends_with(".exp_avg_sq") {
            tol_rel = 2.0 * rel;
            floor = 0.0;
        }
        if let Some((bn, t)) = key.split_once(".running_mean_") {
            let t: usize = t.parse().expect("step index");
            if exceptions.iter().any(|b| bn_fed_by(b) == bn) && t < updates {
                floor += 0.1 * 2.0 * t as f64 * lr;
            }
        }
        let tol = tol_rel * scale + floor;
        if err > tol {
            bad.push(format!("{key}: max err {err:.3e} > tol {tol:.3e} (scale {scale:.3e}, rel {:.3e})", err / scale));
        }
        out.push(Agreement { name: key.clone(), max_abs_err: err, scale, tol });
    }
    assert!(bad.is_empty(), "{what}: {} tensors disagree:\n{}", bad.len(), bad.join("\n"));
    out
}

/// `−Σ⟨W, λ⟩ + α/2·Σ‖W − W̄‖²` over the given parameter names, from a state map.
pub fn regulariser(state: &TensorMap, names: &[&str], alpha: f64) -> f64 {
    names
        .iter()
        .map(|n| {
            let (w, wbar, l) =
                (&state[*n].data, &state[&format!("{n}.wbar")].data, &state[&format!("{n}.lambda")].data);
            (0..w.len())
                .map(|i| {
                    let (w, wbar, l) = (w[i] as f64, wbar[i] as f64, l[i] as f64);
                    -w * l + 0.5 * alpha * (w - wbar).powi(2)
                })
                .sum::<f64>()
        })
        .sum()
}

// Random networks and states for the reference's gradient tests.

/// A random parameter map for `cfg` (gate weights kept moderate so the gates are not saturated).
pub fn random_params(cfg: &ModelConfig, rng: &mut Rng) -> Params {
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

/// A random incoming state: m, s, b, o all non-zero so that the recurrent and gate paths matter.
pub fn random_state(cfg: &ModelConfig, batch: usize, rng: &mut Rng) -> NetState {
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
