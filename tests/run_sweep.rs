//! `fptt sweep` end to end on tiny adding runs: an invalid axis value refused before anything is
//! written; a sweep's run directories (its runs packed as replicas of one engine) the same as
//! `fptt train --set` of their points; a packed sweep stopped by SIGTERM continued with `--resume`
//! to exactly where uninterrupted runs end; the Slurm script's array task running its slice;
//! `--jobs 2` sharing one sweep directory; a diverged replica recorded while the others go on,
//! unaffected.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod cli_common;

use cli_common::{assert_refused, bin, fptt, scratch, stderr, write, TINY_ADDING};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `base.toml` (TINY_ADDING) and `grid.toml` with `body` after its `base` line.
fn grid(dir: &Path, body: &str) -> PathBuf {
    write(dir, "base.toml", TINY_ADDING);
    write(dir, "grid.toml", &format!("base = \"base.toml\"\n{body}"))
}

/// The index file's rows as (run, status).
fn index(path: &Path) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (run, status) = (col("run"), col("status"));
    r.records().map(|x| x.unwrap()).map(|x| (x[run].to_string(), x[status].to_string())).collect()
}

/// `config.toml` without what differs between any two runs: `[run]` and `output.dir`.
fn config(dir: &Path) -> toml::Table {
    let mut t: toml::Table = std::fs::read_to_string(dir.join("config.toml")).unwrap().parse().unwrap();
    t.remove("run");
    t["output"].as_table_mut().unwrap().remove("dir");
    t
}

/// metrics.csv without its timing columns.
fn metrics(dir: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let keep: Vec<usize> = (0..h.len()).filter(|&i| &h[i] != "samples_per_s" && &h[i] != "elapsed_s").collect();
    r.records().map(|x| x.unwrap()).map(|x| keep.iter().map(|&i| x[i].to_string()).collect()).collect()
}

fn train_point(base: &Path, out: &Path, sets: &[&str]) {
    let mut c = bin();
    c.args(["train", s(base), "--out", s(out), "--progress", "quiet"]);
    for set in sets {
        c.args(["--set", set]);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "fptt train: {}", stderr(&o));
}

#[test]
fn an_invalid_axis_value_is_refused_before_anything_is_written() {
    let dir = scratch("sweep-invalid");
    let g = grid(&dir, "[axes]\nseed = [1, 2]\n\"train.lr\" = [0.01, -1]\n");
    let out = dir.join("out");
    let o = fptt(&["sweep", s(&g), "--out", s(&out)]);
    assert_refused(&o, &[s(&g), "axis `train.lr` = -1", "expected a number > 0"]);
    assert!(!out.exists(), "nothing may be written before the grid is checked");
    // A usage error, reported by the argument parser (status 2).
    let o = fptt(&["sweep", s(&g), "--out", s(&out), "--slice", "2/2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--slice") && stderr(&o).contains("0 ≤ I < N"), "{}", stderr(&o));
    let o = fptt(&["sweep", s(&g), "--out", s(&out), "--device", "0,1"]);
    assert_refused(&o, &["needs --jobs"]);
    let o = fptt(&["sweep", "--status", s(&dir)]);
    assert_refused(&o, &["sweep.toml not found", "fptt sweep"]);
}

#[test]
fn the_shipped_grids_check_and_are_named_after_their_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/sweeps");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let grid = fptt::run::sweep::Grid::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let points = grid.check().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(grid.name, path.file_stem().unwrap().to_string_lossy(), "{}", path.display());
        assert!(!points.is_empty());
        seen += 1;
    }
    assert!(seen >= 1);
}

/// A run's checkpoint tensors equal another's, bit for bit.
fn same_checkpoints(a: &Path, b: &Path) {
    let (a, _) = fptt::checkpoint::load(&a.join("checkpoint.safetensors")).unwrap();
    let (b, _) = fptt::checkpoint::load(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, x) in &a {
        assert!(x.data.iter().zip(&b[name].data).all(|(p, q)| p.to_bits() == q.to_bits()), "tensor {name}");
    }
}

#[test]
fn a_sweep_writes_each_point_as_fptt_train_would_and_indexes_it() {
    let dir = scratch("sweep-two");
    let g = grid(&dir, "[set]\n\"train.epochs\" = 1\n[axes]\nseed = [1, 2]\n\"train.lr\" = [0.01, 0.003]\n");
    let out = dir.join("out");
    let o = fptt(&["sweep", s(&g), "--out", s(&out), "--progress", "quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("replica 4 of 4"), "the four runs train as replicas of one engine: {}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("| train.lr0.01 | 8 ltc | fptt | 6 | 8 | 2 |"), "the seed summary: {stdout}");
    let runs = ["seed1-train.lr0.01", "seed1-train.lr0.003", "seed2-train.lr0.01", "seed2-train.lr0.003"];
    let done: Vec<(String, String)> = runs.iter().map(|r| (r.to_string(), "done".to_string())).collect();
    assert_eq!(index(&out.join("index.csv")), done);
    // Every replica's directory is exactly what `fptt train` of its point writes alone.
    for (run, sets) in runs.iter().zip([
        ["seed=1", "train.lr=0.01"],
        ["seed=1", "train.lr=0.003"],
        ["seed=2", "train.lr=0.01"],
        ["seed=2", "train.lr=0.003"],
    ]) {
        let reference = dir.join(format!("reference-{run}"));
        train_point(&dir.join("base.toml"), &reference, &["train.epochs=1", sets[0], sets[1]]);
        assert_eq!(config(&out.join(run)), config(&reference), "{run}");
        assert_eq!(metrics(&out.join(run)), metrics(&reference), "{run}");
        same_checkpoints(&out.join(run), &reference);
    }
    // A fresh sweep into the same directory is refused; --status reads it.
    assert_refused(&fptt(&["sweep", s(&g), "--out", s(&out)]), &["already holds a sweep", "--resume"]);
    let o = fptt(&["sweep", "--status", s(&out)]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("(4 done)"), "{}", stderr(&o));
}

#[test]
fn a_stopped_packed_sweep_resumes_and_its_interrupted_runs_continue_exactly() {
    let dir = scratch("sweep-resume");
    let body = "[set]\n\"train.epochs\" = 30\n\"output.report_every\" = 1\n[axes]\nseed = [1, 2]\n";
    let g = grid(&dir, body);
    let out = dir.join("out");
    let child = bin()
        .args(["sweep", s(&g), "--out", s(&out), "--progress", "quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = out.join("seed1").join("metrics.csv");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&first).unwrap_or_default().lines().count() <= 2 {
        assert!(Instant::now() < deadline, "the first run never started training");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("fptt sweep --resume"), "{}", stderr(&o));
    // Both seeds train as replicas of one engine: both stop, each with its checkpoint.
    assert_eq!(
        index(&out.join("index.csv")),
        [("seed1".into(), "interrupted".into()), ("seed2".into(), "interrupted".into())]
    );
    assert!(out.join("seed1/checkpoint.safetensors").is_file() && out.join("seed2/checkpoint.safetensors").is_file());

    let o = fptt(&["sweep", "--resume", s(&out), "--progress", "quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming, replica 2 of 2"), "they resume as one pack: {}", stderr(&o));
    assert_eq!(index(&out.join("index.csv")), [("seed1".into(), "done".into()), ("seed2".into(), "done".into())]);
    for seed in ["1", "2"] {
        let reference = dir.join(format!("reference{seed}"));
        let set = format!("seed={seed}");
        train_point(&dir.join("base.toml"), &reference, &["train.epochs=30", "output.report_every=1", &set]);
        let run = out.join(format!("seed{seed}"));
        assert_eq!(metrics(&run), metrics(&reference), "the resumed run {seed}'s rows");
        same_checkpoints(&run, &reference);
    }
    // Everything is done: a further resume trains nothing.
    let o = fptt(&["sweep", "--resume", s(&out), "--progress", "quiet"]);
    assert!(o.status.success() && stderr(&o).contains("0 runs trained"), "{}", stderr(&o));
}

#[test]
fn the_slurm_script_runs_its_array_tasks_slice() {
    let dir = scratch("sweep-slurm");
    let g = grid(&dir, "[set]\n\"train.epochs\" = 1\n[axes]\nseed = [1, 2, 3]\n");
    let out = dir.join("out");
    let o = fptt(&["sweep", s(&g), "--out", s(&out), "--slurm", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("sbatch"));
    let script = std::fs::read_to_string(out.join("sweep.slurm")).unwrap();
    for wanted in [
        "#!/bin/bash\n",
        "#SBATCH --array=0-2\n",
        "#SBATCH --gres=gpu:1\n",
        "#SBATCH --time=",
        "cd \"$SLURM_SUBMIT_DIR\"",
        &format!("sweep --resume {} --slice \"${{SLURM_ARRAY_TASK_ID}}/3\"", out.display()),
    ] {
        assert!(script.contains(wanted), "lacks {wanted:?}:\n{script}");
    }
    assert!(!out.join("seed1").exists(), "--slurm trains nothing");
    // What array task 1 does: slice 1/3, the second point only, in its own index file.
    let o = Command::new("bash")
        .arg(out.join("sweep.slurm"))
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_SUBMIT_DIR", env!("CARGO_MANIFEST_DIR"))
        .env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(index(&out.join("index-1-of-3.csv")), [("seed2".into(), "done".into())]);
    assert!(!out.join("seed1").exists() && !out.join("seed3").exists() && !out.join("index.csv").exists());
}

#[test]
fn jobs_run_slices_in_parallel_and_merge_the_index() {
    let dir = scratch("sweep-jobs");
    let g = grid(&dir, "[set]\n\"train.epochs\" = 1\n[axes]\n\"train.lr\" = [0.01, 0.02]\n");
    let out = dir.join("out");
    let o = fptt(&["sweep", s(&g), "--out", s(&out), "--jobs", "2", "--device", "auto,cpu", "--progress", "quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(index(&out.join("index-0-of-2.csv")), [("train.lr0.01".into(), "done".into())]);
    assert_eq!(index(&out.join("index-1-of-2.csv")), [("train.lr0.02".into(), "done".into())]);
    let merged = index(&out.join("index.csv"));
    assert_eq!(merged, [("train.lr0.01".into(), "done".into()), ("train.lr0.02".into(), "done".into())]);
    assert!(out.join("jobs-1-of-2.log").is_file());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("| train.lr0.01 |") && stdout.contains("| train.lr0.02 |"), "{stdout}");
}

#[test]
fn a_diverged_run_is_recorded_and_the_sweep_goes_on() {
    let dir = scratch("sweep-diverged");
    let g = grid(&dir, "[set]\n\"train.epochs\" = 1\n[axes]\n\"train.lr\" = [1e30, 0.01]\n");
    let out = dir.join("out");
    let o = fptt(&["sweep", s(&g), "--out", s(&out), "--progress", "quiet"]);
    assert!(o.status.success(), "divergence is a result, not a failure: {}", stderr(&o));
    let rows = index(&out.join("index.csv"));
    assert_eq!((rows[0].1.as_str(), rows[1].1.as_str()), ("diverged", "done"), "{rows:?}");
    assert!(stderr(&o).contains("replica 2 of 2"), "they train as replicas of one engine: {}", stderr(&o));
    let text = std::fs::read_to_string(out.join("index.csv")).unwrap();
    assert!(text.contains("training diverged at update"), "the note says why: {text}");
    // The diverged replica stopped alone: the other trained exactly as it does alone.
    let reference = dir.join("reference");
    train_point(&dir.join("base.toml"), &reference, &["train.epochs=1", "train.lr=0.01"]);
    assert_eq!(metrics(&out.join(&rows[1].0)), metrics(&reference));
    same_checkpoints(&out.join(&rows[1].0), &reference);
    // A resume does not run it again (it would diverge again).
    let o = fptt(&["sweep", "--resume", s(&out), "--progress", "quiet"]);
    assert!(o.status.success() && stderr(&o).contains("0 runs trained"), "{}", stderr(&o));
}

/// An image task packs too: its runs share the dataset in memory, each with its own order and
/// initial state, and each writes exactly what `fptt train` of its point writes alone.
#[test]
fn a_packed_image_sweep_shares_its_data_and_matches_runs_alone() {
    let dir = scratch("sweep-images");
    let base = write(
        &dir,
        "base.toml",
        "name = \"img\"\n[data]\ntask = \"smnist\"\npixels_per_step = 112\nmax_train_samples = 64\n\
         max_test_samples = 24\n[model]\nhidden = [8]\n[train]\nbatch = 16\nepochs = 2\n",
    );
    let g = write(&dir, "grid.toml", "base = \"base.toml\"\n[axes]\nseed = [1, 2, 3]\n");
    let out = dir.join("out");
    let o = fptt(&["sweep", s(&g), "--out", s(&out), "--progress", "quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("replica 3 of 3"), "{}", stderr(&o));
    for seed in ["2", "3"] {
        let reference = dir.join(format!("reference{seed}"));
        train_point(&base, &reference, &[&format!("seed={seed}")]);
        let run = out.join(format!("seed{seed}"));
        assert_eq!(metrics(&run), metrics(&reference), "seed {seed}");
        same_checkpoints(&run, &reference);
    }
}
