//! Shared support for the tests that run the `fptt` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built binary, run from the crate root with Mesa's headless warning quieted.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fptt"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()));
    c
}

/// A fresh, empty directory under the target's test scratch space.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run the binary with `args` to completion.
pub fn fptt(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Exit status 1, an `error:` message containing every `wanted`, no panic.
pub fn assert_refused(o: &Output, wanted: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "exit status (stderr: {err})");
    assert!(!err.contains("panicked"), "a panic instead of a message: {err}");
    assert!(err.contains("error:"), "{err}");
    for w in wanted {
        assert!(err.contains(w), "stderr lacks {w:?}: {err}");
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A tiny adding-task experiment that trains in a second or two.
pub const TINY_ADDING: &str = r#"
name = "tiny-adding"
[data]
task = "adding"
steps = 6
[model]
hidden = [8]
[train]
lr = 0.01
batch = 8
epochs = 2
eval_every = 10
eval_batches = 2
[output]
report_every = 3
"#;

/// Start `TINY_ADDING` training for a long time into `dir/run`, wait until it writes training
/// rows, send it `SIG<signal>` and wait for it to end: its output and its run directory.
pub fn signal_training_run(dir: &Path, signal: &str) -> (Output, PathBuf) {
    let exp = write(dir, "a.toml", TINY_ADDING);
    let out = dir.join("run");
    let child = bin()
        .args(["train", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--progress", "log"])
        .args(["--set", "train.epochs=1000", "--set", "output.report_every=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(out.join("metrics.csv")).unwrap_or_default().lines().count() <= 2 {
        assert!(Instant::now() < deadline, "the run never started training");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    (child.wait_with_output().unwrap(), out)
}

/// Start `fptt train EXPERIMENT --progress quiet --out OUT ARGS…` and return it once its first
/// checkpoint exists, with the deadline (2 minutes from the start) for what the caller waits for
/// next. Panics if no checkpoint appears by then or the run ends before one.
pub fn train_until_first_checkpoint(experiment: &Path, out: &Path, args: &[&str]) -> (Child, Instant) {
    let mut child = bin()
        .args(["train", experiment.to_str().unwrap(), "--progress", "quiet", "--out", out.to_str().unwrap()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ckpt = out.join("checkpoint.safetensors");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ckpt.exists() {
        assert!(Instant::now() < deadline, "no checkpoint appeared in {}", out.display());
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before its first checkpoint");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, deadline)
}

/// SIGKILL `child` (on Unix) and return whether it was still running.
pub fn kill(mut child: Child) -> bool {
    let alive = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    alive
}
