//! Convolutional LTC experiments end to end through the `fptt` binary, on a tiny network that
//! trains in about a second on lavapipe: nmnist-synth events in 4 frames of 2×9×9 (34×34 pooled
//! 4×4), conv cells of 2 and 3 channels (3×3, each pooled 2×2: 12 features), a dense LTC layer
//! of 8, 64 training and 16 test digits. `fptt train` writes its run directory with the authors'
//! tensor names; a run killed after a checkpoint, or stopped at `--time-limit` again and again,
//! resumes bit-identically (the dropout masks follow the seed and the update count, not the
//! process); chunked FPTT and BPTT train; a sweep packs conv runs as replicas, each as it trains
//! alone; e-prop is refused with the key that causes it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fptt::checkpoint;

mod cli_common;

use cli_common::{assert_refused, bin, fptt, kill, scratch, stderr, train_until_first_checkpoint, write};

/// The tiny conv experiment; `CACHE` becomes the test's own nmnist-synth cache, so that tests
/// neither share nor leave files in the repository's runs/cache. Dropout 0.25 so that the masks
/// change what trains (the resume and sweep checks would not see them otherwise).
const TINY_CONV: &str = r#"
name = "tiny-conv"
seed = 3
[data]
task = "nmnist-synth"
frames = 4
downsample = 4
max_train_samples = 64
max_test_samples = 16
cache_dir = "CACHE"
[model]
conv_channels = [2, 3]
hidden = [8]
dropout = 0.25
[train]
lr = 0.01
batch = 8
epochs = 2
checkpoint_every = 3
[output]
report_every = 2
"#;

/// Iterations per epoch: 64 samples in batches of 8.
const BATCHES: u64 = 8;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `dir/conv.toml`: [`TINY_CONV`] with its cache in `dir/cache`.
fn experiment(dir: &Path) -> PathBuf {
    write(dir, "conv.toml", &TINY_CONV.replace("CACHE", s(&dir.join("cache"))))
}

/// `fptt train exp --out out` with `--set`s and other arguments, to its end.
fn train(exp: &Path, out: &Path, args: &[&str]) {
    let o = bin().args(["train", s(exp), "--out", s(out), "--progress", "quiet"]).args(args).output().unwrap();
    assert!(o.status.success(), "fptt train {args:?}: {}", stderr(&o));
}

fn config(dir: &Path) -> toml::Table {
    std::fs::read_to_string(dir.join("config.toml")).unwrap().parse().unwrap()
}

/// metrics.csv as header → value maps.
fn metric_rows(dir: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    r.records().map(|x| h.iter().map(String::from).zip(x.unwrap().iter().map(String::from)).collect()).collect()
}

/// Every row's loss finite and its firing rate a rate; returns the (train, test) row counts.
fn assert_sane_metrics(dir: &Path) -> (usize, usize) {
    let rows = metric_rows(dir);
    for row in &rows {
        let loss: f64 = row["loss"].parse().unwrap();
        assert!(loss.is_finite() && loss >= 0.0, "{}: loss {loss} in {row:?}", dir.display());
        let rate: f64 = row["firing_rate"].parse().unwrap();
        assert!((0.0..=1.0).contains(&rate), "{}: firing rate {rate} in {row:?}", dir.display());
    }
    let count = |split: &str| rows.iter().filter(|r| r["split"] == split).count();
    (count("train"), count("test"))
}

/// metrics.csv without its timing columns.
fn metrics(dir: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let keep: Vec<usize> = (0..h.len()).filter(|&i| &h[i] != "samples_per_s" && &h[i] != "elapsed_s").collect();
    r.records().map(|x| x.unwrap()).map(|x| keep.iter().map(|&i| x[i].to_string()).collect()).collect()
}

/// Every checkpoint tensor bit-identical, and the metadata but the wall clock.
fn assert_same_checkpoint(a: &Path, b: &Path) {
    let (ta, ma) = checkpoint::load(&a.join("checkpoint.safetensors")).unwrap();
    let (tb, mb) = checkpoint::load(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, x) in &ta {
        let y = &tb[name];
        assert_eq!(x.shape, y.shape, "{name}");
        let same = x.data.iter().zip(&y.data).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "tensor {name} of {} differs (max |Δ| = {})", b.display(), x.max_abs_diff(y));
    }
    for (k, v) in &ma {
        if k != "fptt.elapsed_s" {
            assert_eq!(Some(v), mb.get(k), "checkpoint metadata {k} of {}", b.display());
        }
    }
}

fn meta(dir: &Path, key: &str) -> u64 {
    let (_, m) = checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap();
    m[key].parse().unwrap()
}

#[test]
fn a_conv_experiment_trains_into_a_run_directory_with_the_authors_names() {
    let dir = scratch("conv-train");
    let exp = experiment(&dir);
    let out = dir.join("run");
    train(&exp, &out, &[]);

    // config.toml: the conv keys resolved (the kernels' default filled in) and the shapes.
    let c = config(&out);
    let ints =
        |v: &toml::Value| -> Vec<i64> { v.as_array().unwrap().iter().map(|x| x.as_integer().unwrap()).collect() };
    let model = c["model"].as_table().unwrap();
    assert_eq!(ints(&model["conv_channels"]), [2, 3]);
    assert_eq!(ints(&model["conv_kernels"]), [3, 3]);
    assert_eq!(model["conv_pool"].as_bool(), Some(true));
    assert_eq!(model["dropout"].as_float(), Some(0.25));
    let data = c["data"].as_table().unwrap();
    assert_eq!((data["frames"].as_integer(), data["downsample"].as_integer()), (Some(4), Some(4)));
    assert_eq!(data["steps"].as_integer(), Some(4), "T = frames");
    let run = c["run"].as_table().unwrap();
    assert_eq!(run["inputs"].as_integer(), Some(2 * 9 * 9), "ON/OFF frames of ⌈34/4⌉²");
    assert_eq!((run["train_samples"].as_integer(), run["test_samples"].as_integer()), (Some(64), Some(16)));

    // metrics.csv: 16 iterations with a train row every 2; W and W̄ test rows at both epoch ends.
    assert_eq!(assert_sane_metrics(&out), (8, 4));

    // The checkpoint: the authors' module names and shapes, every trained tensor with its W̄, λ
    // and moments; `tau_m_o` (which their forward never reads) frozen, without them.
    let (t, m) = checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    for (name, shape) in [
        ("conv_snn1.conv1_x.weight", vec![2, 2, 3, 3]),
        ("conv_snn1.conv_tauM.weight", vec![2, 2, 3, 3]),
        ("conv_snn1.BN.weight", vec![2]),
        ("conv_snn2.conv1_x.weight", vec![3, 2, 3, 3]),
        ("conv_snn2.conv_tauAdp.weight", vec![3, 3, 3, 3]),
        ("snn_rec.layer1_x.weight", vec![8, 3 * 2 * 2]),
        ("snn_rec.layer1_tauM.weight", vec![8, 16]),
        ("layer3_x.weight", vec![10, 8]),
        ("layer3_tauM.weight", vec![10, 20]),
    ] {
        for suffix in ["", ".wbar", ".lambda", ".exp_avg"] {
            let full = format!("{name}{suffix}");
            let x = t.get(&full).unwrap_or_else(|| panic!("no {full} in {:?}", t.keys().collect::<Vec<_>>()));
            assert_eq!(x.shape, shape, "{full}");
        }
    }
    assert_eq!(t["tau_m_o"].shape, [10]);
    assert!(!t.contains_key("tau_m_o.wbar") && !t.contains_key("tau_m_o.lambda"));
    assert!(!t.keys().any(|k| k.starts_with("layer1_") || k.starts_with("hidden")), "no dense-network names");
    for (name, x) in &t {
        assert!(x.data.iter().all(|v| v.is_finite()), "{name} is not finite");
    }
    assert_eq!(m["fptt.iteration"], (2 * BATCHES).to_string());
    assert_eq!(m["fptt.updates"], (2 * BATCHES * 4).to_string(), "one-step FPTT: an update per step");
}

/// Start a run, SIGKILL it once its first checkpoint exists and a little more has trained, and
/// return whether it was still running then (if not, the run was too short to test anything).
fn run_and_kill(exp: &Path, out: &Path, args: &[&str]) -> bool {
    let (mut child, deadline) = train_until_first_checkpoint(exp, out, args);
    // Until a metrics row newer than the checkpoint exists: the kill then loses sequences that
    // the resume must train again with the same dropout masks (and rows it must drop). Waiting
    // for a row rather than for a time keeps this short and independent of the device's speed.
    let rows = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
    let (metrics_csv, at_checkpoint) = (out.join("metrics.csv"), rows(&out.join("metrics.csv")));
    while rows(&metrics_csv) <= at_checkpoint && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no metrics row after the checkpoint in {}", out.display());
        std::thread::sleep(Duration::from_millis(2));
    }
    kill(child)
}

#[test]
fn a_conv_run_killed_or_time_limited_resumes_bit_identically() {
    let dir = scratch("conv-resume");
    let exp = experiment(&dir);
    // 6 epochs of 8 sequences: long enough to outlive the kill below.
    let epochs = ["--set", "train.epochs=6"];
    let whole = dir.join("uninterrupted");
    train(&exp, &whole, &epochs);
    assert_sane_metrics(&whole);

    let killed = dir.join("killed");
    assert!(run_and_kill(&exp, &killed, &epochs), "the run finished before it could be killed; make it longer");
    assert!(meta(&killed, "fptt.iteration") < 6 * BATCHES);
    let o = fptt(&["train", "--resume", s(&killed), "--progress", "quiet"]);
    assert!(o.status.success(), "resume: {}", stderr(&o));
    assert!(std::fs::read_to_string(killed.join("config.toml")).unwrap().contains("resumed = ["));
    assert_same_checkpoint(&whole, &killed);
    assert_eq!(metrics(&whole), metrics(&killed));

    // --time-limit stops at the first sequence after it (exit 75, a checkpoint): mid-epoch,
    // deterministically, twice, and the last resume runs to the end.
    let limited = dir.join("time-limited");
    let o = bin()
        .args(["train", s(&exp), "--out", s(&limited), "--progress", "quiet", "--time-limit", "0.001"])
        .args(epochs)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    assert_eq!(meta(&limited, "fptt.iteration"), 1);
    let o = fptt(&["train", "--resume", s(&limited), "--progress", "quiet", "--time-limit", "0.001"]);
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    assert_eq!(meta(&limited, "fptt.iteration"), 2);
    let o = fptt(&["train", "--resume", s(&limited), "--progress", "quiet"]);
    assert!(o.status.success(), "resume: {}", stderr(&o));
    assert_same_checkpoint(&whole, &limited);
    assert_eq!(metrics(&whole), metrics(&limited));

    // The masks do act: without dropout the same run ends elsewhere (else the checks above
    // could not tell masks drawn afresh on resume from the right ones).
    let no_dropout = dir.join("no-dropout");
    train(&exp, &no_dropout, &["--set", "train.epochs=6", "--set", "model.dropout=0.0"]);
    let (a, _) = checkpoint::load(&whole.join("checkpoint.safetensors")).unwrap();
    let (b, _) = checkpoint::load(&no_dropout.join("checkpoint.safetensors")).unwrap();
    assert!(a["snn_rec.layer1_x.weight"].max_abs_diff(&b["snn_rec.layer1_x.weight"]) > 0.0);
}

#[test]
fn conv_runs_train_with_chunked_fptt_and_bptt() {
    let dir = scratch("conv-rules");
    let exp = experiment(&dir);

    // Chunks of K = 2 of the T = 4 frames: two updates per sequence, carrying the cells' state
    // (and ḡ_s) across the chunk boundary.
    let chunked = dir.join("chunk2");
    train(&exp, &chunked, &["--set", "train.chunk=2"]);
    assert_eq!(assert_sane_metrics(&chunked), (BATCHES as usize, 4));
    assert_eq!(config(&chunked)["train"]["chunk"].as_integer(), Some(2));
    assert_eq!(meta(&chunked, "fptt.updates"), 2 * BATCHES * 2);
    assert!(dir.join("chunk2/norms.csv").is_file());

    // BPTT: one plain update per sequence through all 4 frames; no norms, and the checkpoint's λ
    // (which it keeps in the one format of every rule) never leave zero.
    let bptt = dir.join("bptt");
    train(&exp, &bptt, &["--set", "train.rule=bptt"]);
    assert_eq!(assert_sane_metrics(&bptt), (BATCHES as usize, 2), "test rows of the current W only");
    let c = config(&bptt);
    assert_eq!((c["train"]["rule"].as_str(), c["train"]["reset"].as_str()), (Some("bptt"), Some("never")));
    assert_eq!(meta(&bptt, "fptt.updates"), 2 * BATCHES);
    let (t, _) = checkpoint::load(&bptt.join("checkpoint.safetensors")).unwrap();
    assert!(t.contains_key("conv_snn1.conv1_x.weight.exp_avg"));
    let lambdas: Vec<_> = t.iter().filter(|(k, _)| k.ends_with(".lambda")).collect();
    assert!(lambdas.iter().any(|(k, _)| k.starts_with("conv_snn1.")), "{:?}", t.keys());
    for (name, x) in lambdas {
        assert!(x.data.iter().all(|&v| v == 0.0), "{name}: BPTT has no λ");
    }
    assert!(t.values().all(|x| x.data.iter().all(|v| v.is_finite())));
    assert!(!bptt.join("norms.csv").exists());
}

#[test]
fn a_conv_sweep_packs_its_seeds_as_replicas_each_as_it_trains_alone() {
    let dir = scratch("conv-sweep");
    let base = experiment(&dir);
    let grid = write(&dir, "grid.toml", "base = \"conv.toml\"\n[axes]\nseed = [1, 2]\n");
    let out = dir.join("out");
    let o = fptt(&["sweep", s(&grid), "--out", s(&out), "--progress", "quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("replica 2 of 2"), "the two seeds train as replicas of one engine: {}", stderr(&o));
    let index = std::fs::read_to_string(out.join("index.csv")).unwrap();
    assert_eq!(index.lines().filter(|l| l.contains(",done")).count(), 2, "{index}");
    // Each replica has its own data (nmnist-synth draws its events from the seed), init and
    // dropout masks: its directory is exactly what `fptt train` of its point writes alone.
    let strip = |mut t: toml::Table| {
        t.remove("run");
        t["output"].as_table_mut().unwrap().remove("dir");
        t
    };
    for seed in ["1", "2"] {
        let run = out.join(format!("seed{seed}"));
        let alone = dir.join(format!("alone{seed}"));
        train(&base, &alone, &["--set", &format!("seed={seed}")]);
        assert_sane_metrics(&run);
        assert_eq!(strip(config(&run)), strip(config(&alone)), "seed {seed}");
        assert_eq!(metrics(&run), metrics(&alone), "seed {seed}");
        assert_same_checkpoint(&alone, &run);
    }
}

#[test]
fn eprop_is_refused_for_conv_cells_before_a_run_directory_exists() {
    let dir = scratch("conv-eprop");
    let exp = experiment(&dir);
    let out = dir.join("run");
    let o = bin().args(["train", s(&exp), "--out", s(&out)]).args(["--set", "train.rule=eprop"]).output().unwrap();
    assert_refused(
        &o,
        &["model.conv_channels", "train.rule = \"eprop\"", "convolutional cells are not supported", "FPTT or BPTT"],
    );
    assert!(!stderr(&o).contains("set model.neuron"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing may be written before the experiment is checked");
    // With model.neuron = "lif" as well (what e-prop would need of a dense layer): the cells are
    // LTC whatever it says, so the file contradicts itself and model.neuron is named first.
    let sets = ["--set", "train.rule=eprop", "--set", "model.neuron=lif"];
    let o = bin().args(["train", s(&exp), "--out", s(&out)]).args(sets).output().unwrap();
    assert_refused(&o, &["model.neuron", "with convolutional cells", "LTC neurons"]);
    assert!(!out.exists(), "nothing may be written before the experiment is checked");
}
