//! The `fptt` binary: `devices`, user mistakes (exit 1 with a message naming the file, never a
//! panic), missing and truncated IDX files, the metrics CSV (exact header, typed columns),
//! config.toml, event tasks (nmnist-synth and its cache, a tiny DVS Gesture directory), divergence
//! (the last good checkpoint kept), Ctrl-C (checkpoint, exit 130) and
//! `--init`.

use std::path::Path;

use fptt::run::experiment::Experiment;

mod cli_common;

use cli_common::{assert_refused, bin, fptt, scratch, signal_training_run, stderr, write, TINY_ADDING};

const TINY_SMNIST: &str = r#"
name = "tiny-smnist"
[data]
task = "smnist"
pixels_per_step = 196
max_train_samples = 40
max_test_samples = 21
[model]
hidden = [8]
[train]
batch = 8
epochs = 2
[output]
report_every = 2
"#;

#[test]
fn devices_lists_the_adapters_as_a_table() {
    let o = fptt(&["devices"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let header = out.lines().next().unwrap();
    for col in [
        "#",
        "name",
        "backend",
        "type",
        "driver",
        "storage binding MiB",
        "buffer MiB",
        "timestamps",
        "subgroups",
        "f16",
    ] {
        assert!(header.contains(col), "header lacks {col}: {header}");
    }
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with('0')), "no adapter row: {out}");
}

#[test]
fn user_mistakes_exit_1_with_a_message_naming_the_file() {
    let dir = scratch("cli-mistakes");
    assert_refused(&fptt(&["train", "no/such/experiment.toml"]), &["no/such/experiment.toml"]);

    let bad = write(&dir, "bad.toml", "[data]\ntask = \"adding\"\n[train]\nlr = \"abc\"\n");
    let o = fptt(&["train", bad.to_str().unwrap()]);
    assert_refused(&o, &["bad.toml: train.lr: expected a number > 0, found \"abc\""]);

    let ok = write(&dir, "ok.toml", TINY_ADDING);
    let o = fptt(&["train", ok.to_str().unwrap(), "--set", "model.hiden=[4]"]);
    assert_refused(&o, &["--set model.hiden=[4]", "unknown key", "model.hidden"]);

    let o = fptt(&["train", ok.to_str().unwrap(), "--set", "train.rule=eprop"]);
    assert_refused(&o, &["ok.toml: model.neuron", "(--set train.rule=eprop)", "LTC neurons", "\"lif\" or \"alif\""]);
    let o = fptt(&["train", ok.to_str().unwrap(), "--set", "train.rule=bptt", "--set", "train.chunk=2"]);
    assert_refused(&o, &["ok.toml", "train.chunk", "fptt\" only"]);

    let o = fptt(&["train", "--resume", dir.join("nothing-here").to_str().unwrap()]);
    assert_refused(&o, &["config.toml not found"]);

    // A directory that already holds a run is not overwritten.
    let out = dir.join("taken");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("metrics.csv"), "x").unwrap();
    let o = fptt(&["train", ok.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_refused(&o, &["already holds a run", "--resume"]);

    // clap's own usage errors exit 2.
    let o = fptt(&["train", ok.to_str().unwrap(), "--device", "fast"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn missing_and_truncated_idx_files_are_refused_naming_the_file() {
    let dir = scratch("cli-idx");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let exp = write(&dir, "s.toml", &format!("{TINY_SMNIST}\n"));
    let o = fptt(&["train", exp.to_str().unwrap(), "--set", &format!("data.dir={}", empty.display())]);
    assert_refused(&o, &["train-images-idx3-ubyte.gz", "not found", empty.to_str().unwrap()]);

    // A copy of the subset with the training images cut in half.
    let cut = dir.join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-subset");
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(src.join(f), cut.join(f)).unwrap();
    }
    let images = cut.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    let o = fptt(&["train", exp.to_str().unwrap(), "--set", &format!("data.dir={}", cut.display())]);
    assert_refused(&o, &[images.to_str().unwrap()]);

    // An uncompressed file whose header promises more images than it holds.
    std::fs::remove_file(&images).unwrap();
    let mut raw = vec![0u8, 0, 8, 3, 0, 0, 0, 100, 0, 0, 0, 28, 0, 0, 0, 28];
    raw.extend(vec![0u8; 28 * 28 * 10]);
    let raw_path = cut.join("train-images-idx3-ubyte");
    std::fs::write(&raw_path, raw).unwrap();
    let o = fptt(&["train", exp.to_str().unwrap(), "--set", &format!("data.dir={}", cut.display())]);
    assert_refused(&o, &[raw_path.to_str().unwrap(), "truncated"]);
}

fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(|s| s.to_string()).collect();
    let rows = r.records().map(|x| x.unwrap().iter().map(|s| s.to_string()).collect()).collect();
    (header, rows)
}

/// Header exact; every cell of the right type; empty exactly where a column does not apply.
fn check_metrics(path: &Path, run: &str, classification: bool) -> Vec<Vec<String>> {
    let (header, rows) = csv_rows(path);
    assert_eq!(
        header.join(","),
        "run,epoch,iteration,split,weights,loss,accuracy,mse,firing_rate,w_minus_wbar_norm,lambda_norm,lr,\
         samples_per_s,elapsed_s,gpu_bytes,adapter,backend,device_type"
    );
    assert!(rows.iter().any(|r| r[3] == "train") && rows.iter().any(|r| r[3] == "test"));
    for r in &rows {
        assert_eq!(r.len(), 18);
        assert_eq!(r[0], run);
        r[1].parse::<u64>().unwrap();
        r[2].parse::<u64>().unwrap();
        assert!(r[3] == "train" || r[3] == "test", "{r:?}");
        let num = |i: usize| -> f64 {
            r[i].parse::<f64>().unwrap_or_else(|_| panic!("column {} = {:?} in {r:?}", header[i], r[i]))
        };
        for i in [5, 8, 11, 12, 13] {
            assert!(num(i).is_finite(), "{r:?}");
        }
        let rate = num(8);
        assert!((0.0..=1.0).contains(&rate), "firing rate {rate}");
        r[14].parse::<u64>().unwrap();
        if classification {
            assert!((0.0..=1.0).contains(&num(6)), "{r:?}");
            assert_eq!(r[7], "", "mse is empty for classification");
        } else {
            assert!(num(7) >= 0.0);
            assert_eq!(r[6], "", "accuracy is empty for regression");
        }
        // Training rows measure the current weights; the FPTT test rows, both weight sets, with
        // the norms the reset would jump.
        if r[3] == "train" {
            assert_eq!((r[4].as_str(), r[9].as_str(), r[10].as_str()), ("current", "", ""), "{r:?}");
        } else {
            assert!(r[4] == "current" || r[4] == "running_mean", "{r:?}");
            assert!(num(9) >= 0.0 && num(10) >= 0.0, "{r:?}");
        }
        assert!(!r[15].is_empty() && !r[16].is_empty() && !r[17].is_empty());
    }
    rows
}

#[test]
fn metrics_csv_and_config_toml_of_short_runs() {
    let dir = scratch("cli-csv");
    for (toml, run, classification) in [(TINY_ADDING, "tiny-adding", false), (TINY_SMNIST, "tiny-smnist", true)] {
        let exp = write(&dir, &format!("{run}.toml"), toml);
        let out = dir.join(run);
        let o = bin()
            .args(["train", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--progress", "log"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains(&format!("metrics: {}", out.join("metrics.csv").display())), "{stdout}");
        let rows = check_metrics(&out.join("metrics.csv"), run, classification);
        let tests: Vec<_> = rows.iter().filter(|r| r[3] == "test").collect();
        let weights: Vec<&str> = tests.iter().map(|r| r[4].as_str()).collect();
        assert_eq!(weights, ["current", "running_mean", "current", "running_mean"], "W and W̄ at every epoch's end");
        // Per layer in norms.csv, whose whole-network figure is the test rows' column.
        let (norm_header, norms) = csv_rows(&out.join("norms.csv"));
        assert_eq!(norm_header, fptt::run::metrics::NORM_COLUMNS.map(String::from));
        let layers: Vec<&str> = norms.iter().map(|r| r[3].as_str()).collect();
        assert_eq!(layers, ["hidden1", "readout", "hidden1", "readout"]);
        for (epoch, test) in [(0, tests[0]), (1, tests[2])] {
            let of_layers: f64 = norms[2 * epoch..2 * epoch + 2]
                .iter()
                .map(|r| r[6].parse::<f64>().unwrap().powi(2))
                .sum::<f64>()
                .sqrt();
            let total: f64 = test[9].parse().unwrap();
            assert!(total > 0.0, "W and W̄ differ after an epoch of one-step FPTT");
            assert!((of_layers - total).abs() <= 1e-9 * total, "{of_layers} vs {total}");
            assert_eq!(norms[2 * epoch][2], test[2], "the same iteration");
        }
        let tests = [tests[1], tests[3]];
        if classification {
            // 40 training samples in batches of 8: 5 iterations per epoch; train rows every 2
            // iterations and at each epoch end.
            assert_eq!(tests[1][2], "10");
            let iters: Vec<&str> = rows.iter().filter(|r| r[3] == "train").map(|r| r[2].as_str()).collect();
            assert_eq!(iters, ["2", "4", "5", "6", "8", "10"]);
        } else {
            assert_eq!(tests[1][2], "20");
        }
        assert!(out.join("checkpoint.safetensors").is_file());

        // config.toml: the resolved experiment (parses back to the same one) and [run].
        let config = out.join("config.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        for key in [
            "[run]",
            "engine_version = ",
            "adapter = ",
            "backend = ",
            "device_type = ",
            "command = ",
            "permutation_seed = ",
            "subgroup_reductions = ",
        ] {
            assert!(text.contains(key), "config.toml lacks {key}:\n{text}");
        }
        let resolved = Experiment::load(&config, &[]).unwrap();
        let mut original = Experiment::load(&exp, &[]).unwrap();
        original.output.dir = Some(out.clone());
        assert_eq!(resolved, original);
    }
}

#[test]
fn divergence_stops_naming_the_update_and_keeps_the_last_good_checkpoint() {
    let dir = scratch("cli-diverge");
    let exp = write(&dir, "a.toml", TINY_ADDING);
    let out = dir.join("run");
    let o = fptt(&["train", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--set", "train.epochs=1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ckpt = out.join("checkpoint.safetensors");
    let good = std::fs::read(&ckpt).unwrap();
    // Continue with an absurd learning rate: the loss overflows within a sequence or two. (--set
    // may not change the learning rate on resume; an edit of the run's record by hand can.)
    let config = out.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nlr = 0.01\n"), "{text}");
    std::fs::write(&config, text.replacen("\nlr = 0.01\n", "\nlr = 1e30\n", 1)).unwrap();
    let o = fptt(&["train", "--resume", out.to_str().unwrap(), "--set", "train.epochs=3"]);
    assert_refused(&o, &["diverged at update", "last good checkpoint (iteration 10)"]);
    assert_eq!(std::fs::read(&ckpt).unwrap(), good, "the checkpoint was overwritten");
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_exits_130() {
    // Once training runs (a train row is written), SIGINT.
    let (o, out) = signal_training_run(&scratch("cli-ctrlc"), "INT");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let (_, meta) = fptt::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let it: u64 = meta["fptt.iteration"].parse().unwrap();
    assert!(it >= 1);
    // The CSV is complete up to the checkpoint.
    let (_, rows) = csv_rows(&out.join("metrics.csv"));
    assert_eq!(rows.last().unwrap()[2], it.to_string());
}

#[test]
fn init_takes_the_weights_of_a_checkpoint_with_matching_names() {
    let dir = scratch("cli-init");
    let exp = write(&dir, "a.toml", TINY_ADDING);
    let first = dir.join("first");
    assert!(fptt(&["train", exp.to_str().unwrap(), "--out", first.to_str().unwrap()]).status.success());
    let ckpt = first.join("checkpoint.safetensors");
    let second = dir.join("second");
    let o =
        fptt(&["train", exp.to_str().unwrap(), "--out", second.to_str().unwrap(), "--init", ckpt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A checkpoint of another shape is refused naming the tensor.
    let o = fptt(&["train", exp.to_str().unwrap(), "--init", ckpt.to_str().unwrap(), "--set", "model.hidden=[9]"]);
    assert_refused(&o, &["checkpoint.safetensors", "layer1_x.weight", "expected"]);
}

#[test]
fn bench_writes_one_csv_row_per_shape() {
    let dir = scratch("cli-bench");
    let csv = dir.join("bench.csv");
    let o = fptt(&[
        "bench",
        "--hidden",
        "8,13",
        "--batch",
        "2",
        "--steps",
        "2",
        "--reps",
        "1",
        "--copy-mib",
        "4",
        "--matmul",
        "64",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = csv_rows(&csv);
    assert_eq!(header, fptt::bench::CSV_HEADER.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(rows.len(), 2);
    for row in &rows {
        for (name, cell) in header.iter().zip(row).take(16) {
            assert!(cell.parse::<f64>().is_ok_and(|v| v >= 0.0), "{name} = {cell:?} is not a number");
        }
        assert!(!row[16].is_empty(), "the adapter is named");
        assert!(["cpu", "discrete", "integrated", "virtual", "other"].contains(&row[18].as_str()), "{}", row[18]);
    }
    let o = fptt(&["bench", "--hidden", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("at least 1"), "{}", stderr(&o));
}

#[test]
fn profile_writes_kernels_csv_next_to_the_metrics() {
    let dir = scratch("cli-profile");
    let exp = write(&dir, "tiny-adding.toml", TINY_ADDING);
    let out = dir.join("run");
    let o = bin()
        .args(["train", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--progress", "quiet", "--profile"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let path = out.join("kernels.csv");
    if !path.exists() {
        // Adapters without timestamps inside passes run unprofiled, with a warning.
        assert!(stderr(&o).contains("--profile is off"), "{}", stderr(&o));
        return;
    }
    let (header, rows) = csv_rows(&path);
    assert_eq!(header, ["kernel", "dispatches", "total_ms", "mean_us", "share", "adapter", "backend", "device_type"]);
    let kernels: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    for k in ["layer_current", "layer_neuron", "weight_grad", "fptt_update"] {
        assert!(kernels.contains(&k), "{k} missing from {kernels:?}");
    }
    let share: f64 = rows.iter().map(|r| r[4].parse::<f64>().unwrap()).sum();
    assert!((share - 1.0).abs() < 0.01, "shares add to {share}");
    // Without --profile there is no kernels.csv.
    let plain = dir.join("plain");
    let o = bin()
        .args(["train", exp.to_str().unwrap(), "--out", plain.to_str().unwrap(), "--progress", "quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!plain.join("kernels.csv").exists());
}

#[test]
fn bench_memory_writes_bytes_per_rule_and_length() {
    let dir = scratch("bench-memory");
    let csv = dir.join("memory.csv");
    let o =
        fptt(&["bench", "memory", "--hidden", "4", "--batch", "2", "--steps", "20,40", "--out", csv.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = csv_rows(&csv);
    assert_eq!(header, fptt::bench::MEMORY_CSV_HEADER.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (rule, chunk, steps, learning) = (col("rule"), col("chunk"), col("steps"), col("learning_bytes"));
    assert_eq!(rows.len(), 8, "four rules at two lengths");
    assert!(rows.iter().all(|r| r[col("neuron")] == "lif"), "the default network is LIF (every rule applies)");
    assert!(rows.iter().all(|r| r[col("network")] == "adding" && r[col("estimated_bytes")].is_empty()), "measured");
    let learning = |name: &str, t: &str| -> u64 {
        let row =
            rows.iter().find(|r| r[rule] == name && r[steps] == t && (name != "fptt" || r[chunk] == "1")).unwrap();
        row[learning].parse().unwrap()
    };
    assert_eq!(learning("fptt", "20"), learning("fptt", "40"), "one-step FPTT keeps the same bytes");
    assert_eq!(learning("eprop", "20"), learning("eprop", "40"), "e-prop keeps the same bytes");
    assert!(learning("bptt", "40") > learning("bptt", "20"), "BPTT keeps more for a longer sequence");
}

/// `--experiment` with the DVS file: the file's batch and its 20 frames and 100, one-step FPTT and
/// BPTT, estimates only (nothing allocated), in the same CSV header; a dense file or a missing one
/// is refused naming it, before any CSV is written.
#[test]
fn bench_memory_estimates_a_conv_experiment_and_refuses_a_dense_one() {
    let dir = scratch("bench-memory-conv");
    let csv = dir.join("dvs.csv");
    // Estimates only: measuring would build engines of 1.3 and 13.5 GiB on a GPU that has room.
    let o = fptt(&[
        "bench",
        "memory",
        "--experiment",
        "experiments/dvs-gesture.toml",
        "--estimate-only",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for wanted in
        ["14,116,051 parameters", "at B = 16", "the tapes (one per step of a chunk)", "T = 20: BPTT", "T = 100: BPTT"]
    {
        assert!(out.contains(wanted), "lacks {wanted:?}:\n{out}");
    }
    let (header, rows) = csv_rows(&csv);
    assert_eq!(header, fptt::bench::MEMORY_CSV_HEADER.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let keys: Vec<(String, String, String)> =
        rows.iter().map(|r| (r[col("rule")].clone(), r[col("steps")].clone(), r[col("batch")].clone())).collect();
    let key = |a: &str, b: &str| (a.to_string(), b.to_string(), "16".to_string());
    assert_eq!(keys, vec![key("fptt", "20"), key("bptt", "20"), key("fptt", "100"), key("bptt", "100")]);
    let spec = fptt::model::ConvNetSpec::dvs_gesture();
    for r in &rows {
        assert!(r[col("gpu_bytes")].is_empty() && r[col("learning_bytes")].is_empty(), "{r:?}");
        assert!(r[col("note")].contains("estimated from the shapes"), "{r:?}");
        let t: usize = r[col("steps")].parse().unwrap();
        let rule = if r[col("rule")] == "bptt" {
            fptt::model::conv::MemoryRule::Bptt
        } else {
            fptt::model::conv::MemoryRule::Fptt { chunk: 1 }
        };
        let expected = fptt::model::ConvNetSpec { steps: t, ..spec.clone() }.memory(16, rule).total;
        assert_eq!(r[col("estimated_bytes")], expected.to_string(), "{r:?}");
    }

    // A small conv network is measured on an engine per row: the estimate is its storage buffers,
    // the engine adds only the dispatch arguments and step infos.
    let small = dir.join("small.csv");
    let o = fptt(&[
        "bench",
        "memory",
        "--experiment",
        "experiments/nmnist-synth-quick.toml",
        "--steps",
        "10",
        "--out",
        small.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = csv_rows(&small);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let measured: u64 = r[col("gpu_bytes")].parse().unwrap_or_else(|_| panic!("not measured: {r:?}"));
        let estimated: u64 = r[col("estimated_bytes")].parse().unwrap();
        assert!(measured >= estimated && measured - estimated < 1 << 20, "{r:?}");
        assert!(r[col("note")].contains("measured on the engine"), "{r:?}");
    }

    let refused = dir.join("refused.csv");
    let o =
        fptt(&["bench", "memory", "--experiment", "experiments/adding-quick.toml", "--out", refused.to_str().unwrap()]);
    assert_refused(&o, &["experiments/adding-quick.toml", "not a convolutional experiment"]);
    let o = fptt(&["bench", "memory", "--experiment", "no/such.toml", "--out", refused.to_str().unwrap()]);
    assert_refused(&o, &["no/such.toml", "cannot read"]);
    assert!(!refused.exists(), "refused before the CSV is created");
}

#[test]
fn bench_network_times_an_experiments_own_network_on_synthetic_frames() {
    // A tiny conv network (its data are never read: the bench makes frames of their shape).
    let dir = scratch("bench-network");
    let exp = write(
        &dir,
        "tiny-conv.toml",
        "name = \"tiny-conv\"\n[data]\ntask = \"nmnist-synth\"\nframes = 3\ndownsample = 4\ndir = \"nowhere\"\n\
         [model]\nconv_channels = [2]\nhidden = [6]\ndropout = 0.2\n[train]\nbatch = 4\n",
    );
    let csv = dir.join("net.csv");
    let o = fptt(&[
        "bench",
        "network",
        "--experiment",
        exp.to_str().unwrap(),
        "--reps",
        "1",
        "--profile",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("fptt at B = 4, T = 3:") && out.contains("ms per step"), "{out}");
    let (header, rows) = csv_rows(&csv);
    assert_eq!(header, fptt::bench::NETWORK_CSV_HEADER.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(rows.len(), 1);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = &rows[0];
    assert_eq!(
        (row[col("network")].as_str(), row[col("batch")].as_str(), row[col("steps")].as_str()),
        ("tiny-conv", "4", "3")
    );
    for name in ["ms_per_step", "ms_per_sequence", "sample_steps_per_s", "dispatches_per_step", "gpu_bytes"] {
        assert!(row[col(name)].parse::<f64>().is_ok_and(|v| v > 0.0), "{name} = {:?}", row[col(name)]);
    }
    assert!(!row[col("adapter")].is_empty() && !row[col("device_type")].is_empty());
    // --profile: the kernels of a training step beside it, where the adapter has timestamps.
    let kernels = dir.join("net-kernels.csv");
    if kernels.exists() {
        let (_, rows) = csv_rows(&kernels);
        assert!(rows.iter().any(|r| r[1] == "conv_forward"), "{rows:?}");
    }
    // A missing experiment is refused naming it, before any CSV.
    let refused = dir.join("refused.csv");
    let o = fptt(&["bench", "network", "--experiment", "no/such.toml", "--out", refused.to_str().unwrap()]);
    assert_refused(&o, &["no/such.toml"]);
    assert!(!refused.exists());
}

#[test]
fn bench_peer_check_writes_start_data_and_end_state() {
    let dir = scratch("bench-peer");
    let o =
        fptt(&["bench", "peer-check", "--hidden", "4", "--batch", "2", "--steps", "3", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (after, meta) = fptt::checkpoint::load(&dir.join("after.safetensors")).unwrap();
    assert_eq!(meta["steps"], "3");
    assert!(after.contains_key("layer1_x.weight.wbar") && after.contains_key("q"));
    let (data, _) = fptt::checkpoint::load(&dir.join("data.safetensors")).unwrap();
    assert_eq!(data["inputs"].shape, vec![3, 2, 1]);
    assert_eq!(data["membrane"].shape, vec![2, 4]);
}

#[test]
fn lif_alif_and_eprop_train_from_an_experiment_file() {
    let dir = scratch("cli-neurons");
    let ok = write(&dir, "ok.toml", TINY_ADDING);
    // Their kernels are checked against the reference in gpu_vs_reference; here the runner.
    for neuron in ["lif", "alif"] {
        let out = dir.join(format!("neuron-{neuron}"));
        let set = format!("model.neuron={neuron}");
        let o = fptt(&[
            "train",
            ok.to_str().unwrap(),
            "--set",
            &set,
            "--set",
            "train.epochs=1",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{neuron}: {}", stderr(&o));
        let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
        assert!(config.contains(&format!("neuron = \"{neuron}\"")), "{config}");
    }
    // e-prop, which needs them, trains from the experiment file too (one update per step here).
    let out = dir.join("eprop");
    let o = fptt(&[
        "train",
        ok.to_str().unwrap(),
        "--set",
        "model.neuron=alif",
        "--set",
        "train.rule=eprop",
        "--set",
        "train.eprop_update=step",
        "--set",
        "train.epochs=1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "eprop: {}", stderr(&o));
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("rule = \"eprop\"") && config.contains("eprop_update = \"step\""), "{config}");
    let (_, rows) = csv_rows(&out.join("metrics.csv"));
    assert!(rows.iter().any(|r| r[3] == "test"), "e-prop run evaluated");
}

#[test]
fn summarize_lines_up_runs_from_their_files() {
    let dir = scratch("cli-summarize");
    let exp = write(&dir, "a.toml", TINY_ADDING);
    let run = dir.join("run");
    let o = fptt(&["train", exp.to_str().unwrap(), "--out", run.to_str().unwrap(), "--progress", "quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = dir.join("summary.csv");
    let o = fptt(&["summarize", run.to_str().unwrap(), "--out", csv.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.starts_with("| run | network | rule |"), "{stdout}");
    let (header, rows) = csv_rows(&csv);
    assert_eq!(header, fptt::run::summary::SUMMARY_COLUMNS.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(rows.len(), 1);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = &rows[0];
    // What the run's own metrics say: the last test MSE, the lowest one, the last iteration.
    let (_, metrics) = csv_rows(&run.join("metrics.csv"));
    // The run reports W̄ (reset "epoch"): its test rows, not those of W.
    assert_eq!(row[col("weights")], "running_mean");
    let tests: Vec<f64> =
        metrics.iter().filter(|r| r[3] == "test" && r[4] == "running_mean").map(|r| r[7].parse().unwrap()).collect();
    assert_eq!(row[col("test_evaluations")], tests.len().to_string());
    assert_eq!(row[col("final_test")].parse::<f64>().unwrap(), *tests.last().unwrap());
    assert_eq!(row[col("best_test")].parse::<f64>().unwrap(), tests.iter().cloned().fold(f64::INFINITY, f64::min));
    assert_eq!(row[col("iterations")], "20");
    assert_eq!(
        (row[col("task")].as_str(), row[col("rule")].as_str(), row[col("metric")].as_str()),
        ("adding", "fptt", "mse")
    );
    assert_eq!(row[col("device_type")], metrics[0][17]);
    let trains: Vec<&Vec<String>> = metrics.iter().filter(|r| r[3] == "train").collect();
    assert_eq!(row[col("final_train")], trains.last().unwrap()[7]);

    // --group: the one run is a group of one, its values the run's own.
    let grouped = dir.join("groups.csv");
    let o = fptt(&["summarize", "--group", run.to_str().unwrap(), "--out", grouped.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("| network | rule | T |"));
    let (gheader, groups) = csv_rows(&grouped);
    assert_eq!(gheader, fptt::run::summary::GROUP_COLUMNS.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let gcol = |name: &str| gheader.iter().position(|h| h == name).unwrap();
    assert_eq!((groups.len(), groups[0][gcol("runs")].as_str()), (1, "1"));
    assert_eq!(groups[0][gcol("final_test_mean")].parse::<f64>().unwrap(), *tests.last().unwrap());
    assert_eq!(groups[0][gcol("final_test_std")], "", "no std of one run");

    let o = fptt(&["summarize", dir.join("no-run").to_str().unwrap()]);
    assert_refused(&o, &["config.toml"]);
}

/// What the weights column says where the two sets are one: with the reset after every sequence,
/// W = W̄ at the epoch's end (the same figures, no distance); BPTT keeps no W̄ (one test row of
/// W, no norms, no norms.csv).
#[test]
fn weight_sets_after_per_sequence_resets_and_without_a_running_mean() {
    let dir = scratch("cli-weights");
    let exp = write(&dir, "a.toml", TINY_ADDING);
    // One epoch into `dir/name` with `set`; its test rows.
    let test_rows = |name: &str, set: &str| {
        let out = dir.join(name);
        let o = fptt(&[
            "train",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            "train.epochs=1",
            "--set",
            set,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (_, rows) = csv_rows(&out.join("metrics.csv"));
        rows.into_iter().filter(|r| r[3] == "test").collect::<Vec<_>>()
    };
    let rows = test_rows("sequence", "train.reset=sequence");
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0][4].as_str(), rows[1][4].as_str()), ("current", "running_mean"));
    assert_eq!(rows[0][5..9], rows[1][5..9], "W = W̄ after a per-sequence reset: the same loss and MSE");
    assert_eq!(rows[0][9].parse::<f64>().unwrap(), 0.0, "‖W − W̄‖");
    assert!(rows[0][10].parse::<f64>().unwrap() > 0.0, "‖λ‖ after training");

    let bptt = dir.join("bptt");
    let rows = test_rows("bptt", "train.rule=bptt");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0][4].as_str(), rows[0][9].as_str(), rows[0][10].as_str()), ("current", "", ""));
    assert!(!bptt.join("norms.csv").exists());
    let o = fptt(&[
        "train",
        exp.to_str().unwrap(),
        "--set",
        "train.rule=bptt",
        "--set",
        "train.report_weights=running_mean",
    ]);
    assert_refused(&o, &["train.report_weights", "no running mean"]);
    let o = fptt(&["train", exp.to_str().unwrap(), "--set", "train.eval_batch_norm=batch"]);
    assert_refused(&o, &["train.eval_batch_norm", "model.batch_norm"]);
    let o = fptt(&["train", exp.to_str().unwrap(), "--set", "train.eval_train_samples=8"]);
    assert_refused(&o, &["train.eval_train_samples", "adding"]);
}

/// `train.eval_train_samples`: training samples evaluated with frozen weights, for W and W̄, as
/// `train_frozen` rows next to the test rows. With a learning rate too small to move an f32 weight,
/// no batch norm, no auxiliary loss and zero initial membranes, training is itself a frozen
/// forward pass, so the `train` row of the same 16 samples must agree with them.
#[test]
fn training_samples_evaluated_with_frozen_weights() {
    let dir = scratch("cli-frozen");
    let exp = write(&dir, "s.toml", TINY_SMNIST);
    let out = dir.join("run");
    let mut args = vec!["train", exp.to_str().unwrap(), "--out", out.to_str().unwrap()];
    for set in [
        "train.epochs=1",
        "train.eval_train_samples=16",
        "train.lr=1e-30",
        "train.aux=off",
        "data.max_train_samples=16",
        "data.initial_membrane=zero",
        "output.report_every=100",
    ] {
        args.extend(["--set", set]);
    }
    let o = fptt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, rows) = csv_rows(&out.join("metrics.csv"));
    let kinds: Vec<(&str, &str)> = rows.iter().map(|r| (r[3].as_str(), r[4].as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("train", "current"),
            ("test", "current"),
            ("train_frozen", "current"),
            ("test", "running_mean"),
            ("train_frozen", "running_mean")
        ]
    );
    let num = |r: usize, c: usize| rows[r][c].parse::<f64>().unwrap();
    for frozen in [2, 4] {
        assert_eq!(num(frozen, 6), num(0, 6), "accuracy of the same samples, frozen and in training");
        assert!((num(frozen, 5) - num(0, 5)).abs() <= 1e-4 * num(0, 5), "loss {} vs {}", num(frozen, 5), num(0, 5));
    }
}

/// An AEDAT 3.1 file of `n` polarity events, one every 1000 µs, spread over the 128×128 sensor.
fn aedat_file(n: u32) -> Vec<u8> {
    let mut b = b"#!AER-DAT3.1\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n".to_vec();
    for v in [1u16, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [8u32, 4, 0, n, n, n] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for i in 0..n {
        let (x, y, p) = ((i * 37) % 128, (i * 11) % 128, i % 2);
        b.extend_from_slice(&((x << 17) | (y << 2) | (p << 1) | 1).to_le_bytes());
        b.extend_from_slice(&(1000 * i).to_le_bytes());
    }
    b
}

#[test]
fn event_tasks_train_from_experiment_files_and_cache_or_refuse_their_data() {
    let dir = scratch("cli-events");
    let run = |exp: &Path, out: &Path| {
        let o = fptt(&["train", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--progress", "quiet"]);
        assert!(o.status.success(), "{}", stderr(&o));
        check_metrics(&out.join("metrics.csv"), &exp.file_stem().unwrap().to_string_lossy(), true);
        stderr(&o)
    };
    // nmnist-synth: generated into the cache on the first run, read from it on the second.
    let synth = write(
        &dir,
        "tiny-synth.toml",
        &format!(
            "name = \"tiny-synth\"\n[data]\ntask = \"nmnist-synth\"\nframes = 4\ndownsample = 4\nmax_train_samples = 16\n\
             max_test_samples = 8\ncache_dir = \"{}\"\n[model]\nhidden = [8]\n[train]\nbatch = 8\n[output]\nreport_every = 1\n",
            dir.join("cache").display()
        ),
    );
    assert!(run(&synth, &dir.join("synth-1")).contains("nmnist-synth train split: generated, cached in"));
    assert!(run(&synth, &dir.join("synth-2")).contains("nmnist-synth train split: read from"));
    let config = std::fs::read_to_string(dir.join("synth-1/config.toml")).unwrap();
    assert!(config.contains("frames = 4") && config.contains("steps = 4"), "{config}");

    // dvs-gesture: a directory laid out as DvsGesture.tar.gz unpacks, with one short recording
    // per split cut into labelled gestures.
    let gesture = dir.join("DvsGesture");
    std::fs::create_dir_all(&gesture).unwrap();
    for (split, name) in [("train", "user01_led"), ("test", "user24_led")] {
        std::fs::write(gesture.join(format!("{name}.aedat")), aedat_file(400)).unwrap();
        let mut labels = "class,startTime_usec,endTime_usec\n".to_string();
        for k in 0..8 {
            labels += &format!("{},{},{}\n", k % 11 + 1, 50_000 * k, 50_000 * (k + 1));
        }
        std::fs::write(gesture.join(format!("{name}_labels.csv")), labels).unwrap();
        std::fs::write(gesture.join(format!("trials_to_{split}.txt")), format!("{name}.aedat\n")).unwrap();
    }
    let text = format!(
        "name = \"tiny-gesture\"\n[data]\ntask = \"dvs-gesture\"\ndir = \"{}\"\nframes = 3\nsplit_by = \"time\"\n\
         downsample = 16\n[model]\nhidden = [8]\n[train]\nbatch = 4\n[output]\nreport_every = 1\n",
        dir.display()
    );
    let gesture_exp = write(&dir, "tiny-gesture.toml", &text);
    run(&gesture_exp, &dir.join("gesture"));
    // No DVS Gesture files: the message says which file and where they come from.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = fptt(&["train", gesture_exp.to_str().unwrap(), "--set", &format!("data.dir={}", empty.display())]);
    assert_refused(&o, &["trials_to_train.txt", "DvsGesture.tar.gz"]);
    // A damaged recording names the file.
    let rec = gesture.join("user01_led.aedat");
    let bytes = std::fs::read(&rec).unwrap();
    std::fs::write(&rec, &bytes[..bytes.len() - 5]).unwrap();
    let o = fptt(&["train", gesture_exp.to_str().unwrap(), "--out", dir.join("gesture-bad").to_str().unwrap()]);
    assert_refused(&o, &["user01_led.aedat", "truncated packet"]);
}

/// `--dry-run` describes without training: the authors' DVS network with its 14,116,051
/// parameters and memory per rule; a dense network with the engine's own buffer sizes; nothing
/// written. Training the convolutional file without its data is refused with a message, not a panic.
#[test]
fn dry_run_prints_the_network_its_parameters_and_memory_without_training() {
    let dir = scratch("dry-run");
    let out = dir.join("never");
    let o = fptt(&["train", "experiments/dvs-gesture.toml", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for wanted in [
        "conv cell 1: 2→64 7×7, 2×2 max-pool → 64×64×64: 408,256 parameters",
        "conv cell 6: 256→512 3×3, 2×2 max-pool → 512×2×2: 5,902,848 parameters",
        "flatten: 2048 features",
        "parameters: 14,116,051",
        "GPU memory at batch 16",
        "one-step FPTT",
        "BPTT through all 20 steps",
    ] {
        assert!(text.contains(wanted), "lacks {wanted:?}:\n{text}");
    }
    // A longer sequence grows BPTT's memory, not one-step FPTT's tape.
    let o = fptt(&["train", "experiments/dvs-gesture.toml", "--dry-run", "--set", "data.frames=100"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("BPTT through all 100 steps"));

    let o = fptt(&["train", "experiments/quick.toml", "--dry-run", "--set", &format!("output.dir={}", out.display())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("parameters: ") && text.contains("GPU memory at batch") && text.contains("work"), "{text}");
    assert!(!out.exists(), "a dry run writes nothing");

    // Without the recordings the run stops at once, naming the file it needs and where it comes from.
    assert_refused(
        &fptt(&["train", "experiments/dvs-gesture.toml", "--out", out.to_str().unwrap()]),
        &["data/DvsGesture/trials_to_train.txt", "DvsGesture.tar.gz"],
    );
    assert!(!out.exists(), "the refusal comes before the run directory");
}
