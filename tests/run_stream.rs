//! `fptt stream` end to end at tiny sizes: a file source resumed from a checkpoint gives the same
//! metrics rows as an uninterrupted run; malformed rows are skipped (counted) or fatal with their
//! line number; NaN is refused with its line number; memory does not grow with the steps; the
//! binary reads a CSV from standard input; the README's stream table is the key table.

mod cli_common;
mod gpu_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use cli_common::{bin, scratch};
use fptt::run::stream::{stream, StreamExperiment, StreamOptions, StreamSummary, STREAM_KEYS};
use fptt::run::RunError;

/// A CSV of `rows` steps: two inputs, a target that is the next step's first input.
fn csv_text(rows: usize, malformed_at: &[usize]) -> String {
    let x = |t: usize| ((t as f64) * 0.37).sin() * 0.8;
    let mut s = String::from("a,b,y\n");
    for t in 0..rows {
        if malformed_at.contains(&t) {
            s.push_str("0.1,oops,0.2\n");
        }
        s.push_str(&format!("{:.6},{:.6},{:.6}\n", x(t), ((t % 7) as f64) / 7.0, x(t + 1)));
    }
    s
}

fn experiment(text: &str, sets: &[&str]) -> StreamExperiment {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    StreamExperiment::parse(text, "test.toml", "test", &sets).unwrap()
}

fn file_source(path: &Path, extra: &str) -> String {
    format!(
        "name = \"s\"\n[source]\nkind = \"csv\"\npath = \"{}\"\ntargets = [\"y\"]\n{extra}\n\
         [model]\nhidden = [6]\n[train]\nbatch = 2\nwindow = 10\nchunk = 2\n[stream]\nreport_every = 20\n",
        path.display()
    )
}

fn run(
    ctx: &std::rc::Rc<fptt::gpu::GpuContext>,
    exp: &StreamExperiment,
    out: &Path,
    resume: bool,
) -> Result<StreamSummary, RunError> {
    let opts = StreamOptions { out: Some(out.to_path_buf()), resume, context: Some(ctx.clone()), ..Default::default() };
    stream(exp, &opts)
}

/// The rows of a metrics.csv without the wall-clock columns (steps_per_s, elapsed_s).
fn deterministic_rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .zip(rec.iter())
                .filter(|(h, _)| !matches!(h.as_str(), "steps_per_s" | "elapsed_s"))
                .map(|(_, v)| v.to_string())
                .collect()
        })
        .collect()
}

#[test]
fn a_resumed_file_stream_continues_exactly() {
    let ctx = gpu_common::context();
    let dir = scratch("stream-resume");
    let data = dir.join("data.csv");
    // 300 data rows (150 steps of 2 streams) with malformed rows before the stop, right after it
    // (reported by the resumed run, not the stopped one) and later.
    std::fs::write(&data, csv_text(300, &[17, 120, 250])).unwrap();
    let text = file_source(&data, "on_malformed = \"skip\"") + "[output]\npredictions = \"csv\"\n";
    let whole = run(&ctx, &experiment(&text, &[]), &dir.join("whole"), false).unwrap();
    assert_eq!((whole.steps, whole.skipped_rows, whole.dropped_frames), (150, 3, 0));

    // Stopped at step 60 (a checkpoint), then resumed to the end.
    let part = dir.join("part");
    let first = run(&ctx, &experiment(&text, &["stream.max_steps=60"]), &part, false).unwrap();
    assert_eq!((first.steps, first.skipped_rows), (60, 1));
    let resumed = fptt::run::stream::resume_stream_experiment(&part, &["stream.max_steps=0".into()]).unwrap();
    let rest = run(&ctx, &resumed, &part, true).unwrap();
    assert_eq!((rest.steps, rest.skipped_rows), (150, 3));
    let (a, b) = (deterministic_rows(&whole.metrics), deterministic_rows(&rest.metrics));
    assert_eq!(a.len(), 8, "rows every 20 steps and the last 10: {a:?}");
    assert_eq!(a, b, "metrics after the resume differ from the uninterrupted run");
    let predictions = |run: &Path| std::fs::read_to_string(run.join("predictions.csv")).unwrap();
    let (pa, pb) = (predictions(&dir.join("whole")), predictions(&part));
    assert_eq!(pa.lines().count(), 1 + 150 * 2, "a row per step and stream");
    assert_eq!(pa, pb, "predictions after the resume differ");
    let (wa, _) = fptt::checkpoint::load(&whole.checkpoint).unwrap();
    let (wb, _) = fptt::checkpoint::load(&rest.checkpoint).unwrap();
    assert_eq!(wa, wb, "final checkpoints differ");
}

#[test]
fn malformed_rows_are_skipped_or_fatal_and_nan_is_refused_with_the_line() {
    let ctx = gpu_common::context();
    let dir = scratch("stream-faults");
    let data = dir.join("data.csv");
    // Data row 30 is preceded by a malformed row: header line 1, rows 0‥29 on lines 2‥31, so the
    // malformed row is line 32.
    std::fs::write(&data, csv_text(80, &[30])).unwrap();
    let fatal = experiment(&file_source(&data, ""), &[]);
    let err = run(&ctx, &fatal, &dir.join("fatal"), false).unwrap_err().to_string();
    assert!(err.contains("line 32") && err.contains("\"oops\" is not a number") && err.contains("skip"), "{err}");
    let skip = experiment(&file_source(&data, "on_malformed = \"skip\""), &[]);
    let s = run(&ctx, &skip, &dir.join("skip"), false).unwrap();
    assert_eq!((s.steps, s.skipped_rows), (40, 1));
    let rows = deterministic_rows(&s.metrics);
    assert_eq!(rows.last().unwrap()[7], "1", "skipped_rows column: {rows:?}");

    let mut text = csv_text(40, &[]);
    text = text.replacen("\n0.", "\nNaN,0.0,0.\n0.", 1).replacen("NaN,0.0,0.\n", "0.5,NaN,0.1\n", 1);
    std::fs::write(&data, &text).unwrap();
    for policy in ["", "on_malformed = \"skip\""] {
        let exp = experiment(&file_source(&data, policy), &[]);
        let err = run(&ctx, &exp, &dir.join(format!("nan{}", policy.len())), false).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("NaN") && err.contains("refused"), "{err}");
    }
}

#[test]
fn memory_does_not_grow_with_the_steps() {
    let ctx = gpu_common::context();
    let dir = scratch("stream-memory");
    let text = "[source]\nkind = \"switching\"\nperiod = 100\n[model]\nhidden = [4]\n\
                [train]\nbatch = 1\nwindow = 50\n[stream]\nreport_every = 500\n";
    let short = run(&ctx, &experiment(text, &["stream.max_steps=500"]), &dir.join("a"), false).unwrap();
    let long = run(&ctx, &experiment(text, &["stream.max_steps=5000"]), &dir.join("b"), false).unwrap();
    assert_eq!(long.steps, 5000);
    assert_eq!(short.gpu_bytes, long.gpu_bytes, "GPU bytes");
    assert_eq!(short.host_window_bytes, long.host_window_bytes, "host window buffers");
    eprintln!(
        "500 vs 5000 steps: GPU {} vs {} bytes, host window {} vs {} bytes; {:.0} steps/s",
        short.gpu_bytes, long.gpu_bytes, short.host_window_bytes, long.host_window_bytes, long.steps_per_s
    );
}

#[test]
fn the_binary_trains_on_a_csv_from_standard_input() {
    let dir = scratch("stream-stdin");
    let exp = dir.join("stdin.toml");
    let text = file_source(Path::new("-"), "inputs = [\"a\", \"b\"]") + "[output]\npredictions = \"stdout\"\n";
    std::fs::write(&exp, text).unwrap();
    let out = dir.join("run");
    let mut child = bin()
        .args(["stream", exp.to_str().unwrap(), "--quiet", "--out", out.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(csv_text(100, &[]).as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("done: 50 steps"), "{err}");
    let rows = deterministic_rows(&out.join("metrics.csv"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    // output.predictions = "stdout": a CSV of every step's prediction and target on stdout.
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("step,stream,prediction_0,target_0"), "{text}");
    assert_eq!(lines.clone().count(), 100, "50 steps of 2 streams: {text}");
    let last: Vec<&str> = lines.last().unwrap().split(',').collect();
    assert_eq!((last[0], last[1]), ("49", "1"));
    assert!(last[2].parse::<f32>().is_ok_and(f32::is_finite), "{last:?}");
    assert!(rows.iter().all(|r| r[4].parse::<f64>().is_ok_and(f64::is_finite)), "mse column: {rows:?}");

    // A mistake in the file names the file, the key and what was expected.
    std::fs::write(&exp, "[source]\nkind = \"csv\"\nperiod = 3\n").unwrap();
    let o = bin().args(["stream", exp.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("stdin.toml: source.period: applies to the generators only"), "{err}");
}

#[test]
fn the_readme_documents_every_stream_key() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments/README.md")).unwrap();
    let section = readme.split("\n## Streams").nth(1).expect("experiments/README.md has a \"## Streams\" section");
    let section = section.split("\n## ").next().unwrap();
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
    let want: Vec<String> = STREAM_KEYS.iter().map(|k| k.readme_row()).collect();
    assert_eq!(rows, want, "experiments/README.md's stream table must be the key table's rows, in order");
}
