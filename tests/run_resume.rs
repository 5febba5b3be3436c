//! Exact resume: a run killed with SIGKILL after its first checkpoint and continued with
//! `fptt train --resume DIR` ends with bit-identical state (weights, W̄, λ, moments, q, running
//! statistics) and the same metrics rows as an uninterrupted run — for the adding task and for a
//! shuffled classification run stopped in the middle of an epoch.

use std::path::Path;
use std::time::{Duration, Instant};

use fptt::checkpoint;

mod cli_common;

use cli_common::{bin, kill, scratch, train_until_first_checkpoint};

fn run_to_end(experiment: &Path, out: &Path) {
    let o = bin()
        .args(["train", experiment.to_str().unwrap(), "--progress", "quiet", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "uninterrupted run failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// Start a run, SIGKILL it once its first checkpoint exists, and return whether it was still
/// running then (if not, the run was too short to test anything).
fn run_and_kill(experiment: &Path, out: &Path) -> bool {
    let (child, _) = train_until_first_checkpoint(experiment, out, &[]);
    // Let it go on a little past the checkpoint, so that the kill loses real work.
    std::thread::sleep(Duration::from_millis(300));
    kill(child)
}

fn resume(out: &Path) {
    let o = bin().args(["train", "--resume", out.to_str().unwrap(), "--progress", "quiet"]).output().unwrap();
    assert!(o.status.success(), "resume failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// Every tensor bit-identical; metadata equal except the wall clock.
fn assert_same_checkpoint(a: &Path, b: &Path) {
    let (ta, ma) = checkpoint::load(&a.join("checkpoint.safetensors")).unwrap();
    let (tb, mb) = checkpoint::load(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, x) in &ta {
        let y = &tb[name];
        assert_eq!(x.shape, y.shape, "{name}");
        let same = x.data.iter().zip(&y.data).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "tensor {name} differs after resume (max |Δ| = {})", x.max_abs_diff(y));
    }
    for (k, v) in &ma {
        if k != "fptt.elapsed_s" {
            assert_eq!(Some(v), mb.get(k), "checkpoint metadata {k}");
        }
    }
}

/// The same rows, ignoring the timing columns (samples_per_s, elapsed_s).
fn assert_same_metrics(a: &Path, b: &Path) {
    let rows = |p: &Path| -> Vec<Vec<String>> {
        let mut r = csv::Reader::from_path(p.join("metrics.csv")).unwrap();
        let header = r.headers().unwrap().clone();
        let skip: Vec<usize> = header
            .iter()
            .enumerate()
            .filter(|(_, h)| *h == "samples_per_s" || *h == "elapsed_s")
            .map(|(i, _)| i)
            .collect();
        r.records()
            .map(|rec| {
                rec.unwrap().iter().enumerate().filter(|(i, _)| !skip.contains(i)).map(|(_, s)| s.to_string()).collect()
            })
            .collect()
    };
    let (ra, rb) = (rows(a), rows(b));
    assert_eq!(ra.len(), rb.len(), "row count");
    for (i, (x, y)) in ra.iter().zip(&rb).enumerate() {
        assert_eq!(x, y, "metrics row {i}");
    }
}

fn check_resume(name: &str, toml: &str) {
    let dir = scratch(name);
    let exp = dir.join(format!("{name}.toml"));
    std::fs::write(&exp, toml).unwrap();
    let (a, b) = (dir.join("uninterrupted"), dir.join("killed"));
    run_to_end(&exp, &a);
    assert!(run_and_kill(&exp, &b), "the run finished before it could be killed; make it longer");
    resume(&b);
    assert_same_checkpoint(&a, &b);
    assert_same_metrics(&a, &b);
    let config = std::fs::read_to_string(b.join("config.toml")).unwrap();
    assert!(config.contains("resumed = ["), "config.toml records the resume:\n{config}");
}

#[test]
fn adding_run_killed_after_a_checkpoint_resumes_bit_identically() {
    check_resume(
        "resume-adding",
        r#"
name = "resume-adding"
seed = 11
[data]
task = "adding"
steps = 10
initial_membrane = "uniform"
[model]
hidden = [16]
[train]
lr = 0.01
batch = 16
epochs = 3
eval_every = 60
eval_batches = 2
checkpoint_every = 10
[output]
report_every = 7
"#,
    );
}

#[test]
fn shuffled_classification_run_killed_mid_epoch_resumes_bit_identically() {
    check_resume(
        "resume-smnist",
        r#"
name = "resume-smnist"
seed = 5
[data]
task = "psmnist"
pixels_per_step = 112
max_train_samples = 960
max_test_samples = 40
[model]
hidden = [16]
[train]
lr = 0.01
batch = 16
epochs = 3
aux_uniform_epochs = 1
lr_schedule = "step"
lr_decay_epochs = [2]
checkpoint_every = 4
[output]
report_every = 3
"#,
    );
}

/// `--time-limit` (the deadline of `TrainOptions`) passed before the run starts: every call stops
/// at the first point it may (after one sequence, or after one epoch end) with a checkpoint, and
/// the chain of resumes ends where an uninterrupted run does, bit for bit. In one process, with
/// one device, so the many stops cost no start-up.
#[test]
fn a_run_stopped_at_its_time_limit_again_and_again_resumes_bit_identically() {
    use std::rc::Rc;

    use fptt::gpu::{DeviceChoice, GpuContext};
    use fptt::run::{resume_experiment, train, Experiment, ProgressMode, TrainOptions};

    let dir = scratch("resume-time-limit");
    let toml = r#"
name = "resume-time-limit"
seed = 3
[data]
task = "adding"
steps = 8
[model]
hidden = [8]
[train]
lr = 0.01
batch = 8
epochs = 3
max_iterations = 8
eval_every = 5
eval_batches = 2
[output]
report_every = 2
"#;
    let exp = Experiment::parse(toml, "resume-time-limit.toml", "resume-time-limit", &[]).unwrap();
    let ctx = Rc::new(GpuContext::new(DeviceChoice::Auto).expect("a GPU adapter (mesa-vulkan-drivers for lavapipe)"));
    let (a, b) = (dir.join("uninterrupted"), dir.join("time-limited"));
    let opts = |out: &Path, resume: bool, deadline: Option<Instant>| TrainOptions {
        out: Some(out.to_path_buf()),
        resume,
        progress: ProgressMode::Quiet,
        context: Some(ctx.clone()),
        command_line: "test".into(),
        deadline,
        ..Default::default()
    };
    let whole = train(&exp, &opts(&a, false, None)).unwrap();
    assert!(!whole.time_limited && !whole.interrupted);
    // Epochs of 5 iterations; max_iterations ends the second after 3, with its reset and evaluation.
    assert_eq!((whole.iterations, whole.epochs_done), (8, 2));

    let first = train(&exp, &opts(&b, false, Some(Instant::now()))).unwrap();
    assert!(first.time_limited && !first.interrupted);
    assert_eq!(first.iterations, 1, "stops after its first sequence");
    let mut calls = 1;
    loop {
        let exp = resume_experiment(&b, &[]).unwrap();
        let s = train(&exp, &opts(&b, true, Some(Instant::now()))).unwrap();
        calls += 1;
        if !s.time_limited {
            assert_eq!((s.iterations, s.epochs_done), (8, 2), "the last epoch's end, after a stop at the cap");
            break;
        }
        assert!(calls < 30, "no progress after {calls} calls");
    }
    // One call per sequence and one per epoch end (the last one ends the run instead of stopping).
    assert_eq!(calls, 8 + 2);
    assert_same_checkpoint(&a, &b);
    assert_same_metrics(&a, &b);
}
