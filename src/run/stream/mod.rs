//! `fptt stream`: online training on an endless stream. B parallel streams are cut into windows
//! of `train.window` steps; each window is one GPU submission (inputs and per-step targets up,
//! the window's per-step metrics back, one read) running an FPTT update every `train.chunk` steps,
//! and continues from the neuron state the last window ended in (a copy on the GPU,
//! `Engine::train_window`). W̄ and λ are carried for ever (or W ← W̄ every `reset_every` steps).
//! Nothing grows with the number of steps: the engine's buffers are sized by the window, the
//! host reuses one window's buffers, and a file source is read ahead into a bounded queue.
//!
//! - [`config`]: the experiment file and its key table (`experiments/README.md`, "Streams").
//! - [`source`]: generators and file/stdin readers.
//!
//! The run directory holds `config.toml` (the experiment with a `[run]` record), `metrics.csv`
//! (a row every `report_every` steps) and `checkpoint.safetensors` (the engine's state, the
//! carried neuron state and, in its metadata, the stream position), written atomically.

pub mod config;
pub mod source;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use toml::{Table, Value};

use super::run_dir::{create_run_dir, engine_run_record, utc_stamp, write_file};
use super::RunError;
use crate::checkpoint;
use crate::gpu::{DeviceChoice, GpuContext};
use crate::learn::{check_fits, Engine, EngineError, SizeLimits};
use crate::model::{init_params, ParamLayout};
use crate::settings::{InitialState, SequenceBatch, Targets};
use crate::tensor::Tensor;

pub use config::{Predictions, StreamConfigError, StreamExperiment, STREAM_KEYS};
use source::{Next, Source};

pub const STREAM_COLUMNS: [&str; 14] = [
    "run",
    "step",
    "loss",
    "accuracy",
    "mse",
    "firing_rate",
    "lr",
    "steps_per_s",
    "elapsed_s",
    "skipped_rows",
    "gpu_bytes",
    "adapter",
    "backend",
    "device_type",
];

const CONFIG_FILE: &str = "config.toml";
const METRICS_FILE: &str = "metrics.csv";
const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const PREDICTIONS_FILE: &str = "predictions.csv";
/// The checkpoint's tensor holding the carried neuron and readout state.
const STATE_TENSOR: &str = "stream.state";
/// The checkpoint metadata's format tag (a `fptt train` checkpoint cannot be resumed as a stream).
const FORMAT: &str = "fptt-stream-1";

/// How `stream` runs, beyond the experiment.
pub struct StreamOptions {
    /// The run directory (overrides `output.dir`); with `resume`, the directory to continue.
    pub out: Option<PathBuf>,
    pub resume: bool,
    pub device: DeviceChoice,
    pub command_line: String,
    /// Set (Ctrl-C, SIGTERM) to stop after the current window with a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Use this device instead of opening one (tests).
    pub context: Option<Rc<GpuContext>>,
    /// Log a line per report on stderr.
    pub verbose: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            out: None,
            resume: false,
            device: DeviceChoice::Auto,
            command_line: String::new(),
            stop: Arc::new(AtomicBool::new(false)),
            context: None,
            verbose: false,
        }
    }
}

/// What a finished (or interrupted) stream leaves, with the figures that show its memory is flat.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    pub dir: PathBuf,
    pub metrics: PathBuf,
    pub checkpoint: PathBuf,
    /// Steps trained in all (every stream), resumed ones included.
    pub steps: u64,
    pub skipped_rows: u64,
    pub interrupted: bool,
    /// Frames left over at the end of the source (less than one window; not trained on).
    pub dropped_frames: u64,
    pub elapsed_s: f64,
    /// Steps per second of this process's loop (source, uploads, GPU, metrics, files together).
    pub steps_per_s: f64,
    /// Seconds spent in `train_window` (upload, GPU, the metrics read).
    pub gpu_seconds: f64,
    pub adapter: String,
    pub gpu_bytes: u64,
    /// Capacity of the host buffers the loop reuses (one window's inputs and targets).
    pub host_window_bytes: usize,
}

/// Sums over a report window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    steps: u64,
    loss: f64,
    correct: f64,
    sqerr: f64,
    spikes: f64,
}

impl Tally {
    fn to_meta(self) -> String {
        format!(
            "{} {} {} {} {}",
            self.steps,
            self.loss.to_bits(),
            self.correct.to_bits(),
            self.sqerr.to_bits(),
            self.spikes.to_bits()
        )
    }

    fn from_meta(s: &str) -> Option<Tally> {
        let p: Vec<u64> = s.split(' ').map(|x| x.parse().ok()).collect::<Option<_>>()?;
        (p.len() == 5).then(|| Tally {
            steps: p[0],
            loss: f64::from_bits(p[1]),
            correct: f64::from_bits(p[2]),
            sqerr: f64::from_bits(p[3]),
            spikes: f64::from_bits(p[4]),
        })
    }
}

/// Where the stream stands; all of it goes into checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Position {
    /// Steps trained (per stream).
    step: u64,
    /// Frames consumed from the source (generators: step·B; files: data rows).
    frames: u64,
    skipped: u64,
    elapsed_before: f64,
    window: Tally,
}

fn output_err(path: &Path) -> impl Fn(String) -> RunError + '_ {
    move |message| RunError::Output { path: path.to_path_buf(), message }
}

/// `metrics.csv` of a stream: a row per report, flushed after each.
struct StreamCsv {
    path: PathBuf,
    writer: csv::Writer<File>,
    fixed: [String; 4],
}

impl StreamCsv {
    /// A new file, or (resume) the old one without the rows past `step`, then appending.
    fn open(path: &Path, resume_at: Option<u64>, fixed: [String; 4]) -> Result<Self, RunError> {
        let fail = output_err(path);
        let mut text = csv::Writer::from_writer(Vec::new());
        text.write_record(STREAM_COLUMNS).map_err(|e| fail(e.to_string()))?;
        if let (Some(step), true) = (resume_at, path.exists()) {
            let mut reader = csv::Reader::from_path(path).map_err(|e| fail(e.to_string()))?;
            for record in reader.records() {
                // A line cut short by a kill ends what is kept.
                let Ok(record) = record else { break };
                if record.len() != STREAM_COLUMNS.len() {
                    break;
                }
                if record.get(1).and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s <= step) {
                    text.write_record(&record).map_err(|e| fail(e.to_string()))?;
                }
            }
        }
        let bytes = text.into_inner().map_err(|e| fail(e.to_string()))?;
        crate::files::write_atomic(path, &bytes, "metrics").map_err(|e| fail(e.to_string()))?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(|e| fail(e.to_string()))?;
        Ok(StreamCsv { path: path.to_path_buf(), writer: csv::Writer::from_writer(file), fixed })
    }

    /// `values`: the columns from `step` to `gpu_bytes`; the run's name and adapter are added.
    fn write(&mut self, values: [String; 10]) -> Result<(), RunError> {
        let record = self.fixed[..1].iter().chain(&values).chain(&self.fixed[1..]);
        let fail = output_err(&self.path);
        self.writer.write_record(record).map_err(|e| fail(e.to_string()))?;
        self.writer.flush().map_err(|e| fail(e.to_string()))
    }
}

/// Read a stream run's experiment back from its `config.toml` (the `[run]` record dropped),
/// with `--set` overrides.
pub fn resume_stream_experiment(dir: &Path, sets: &[String]) -> Result<StreamExperiment, RunError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RunError::Resume { dir: dir.to_path_buf(), message: format!("{CONFIG_FILE}: {e}") })?;
    let mut table: Table = text.parse().map_err(|e: toml::de::Error| RunError::Resume {
        dir: dir.to_path_buf(),
        message: format!("{CONFIG_FILE}: {e}"),
    })?;
    table.remove("run");
    let text = toml::to_string(&table).unwrap_or_default();
    Ok(StreamExperiment::parse(&text, &path.display().to_string(), "stream", sets)?)
}

struct Loop<'a> {
    exp: &'a StreamExperiment,
    opts: &'a StreamOptions,
    engine: Engine,
    source: Source,
    csv: StreamCsv,
    dir: PathBuf,
    pos: Position,
    started: Instant,
    /// The window's host buffers, reused (cleared, never shrunk or regrown past one window).
    batch: SequenceBatch,
    outputs: usize,
    hidden_total: usize,
    trained_here: u64,
    train_seconds: f64,
    /// `output.predictions`: every step's o' (one read per window) and target.
    predictions: Option<csv::Writer<Box<dyn std::io::Write>>>,
}

impl Loop<'_> {
    fn elapsed(&self) -> f64 {
        self.pos.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    fn save_checkpoint(&mut self) -> Result<(), RunError> {
        let mut state = self.engine.state()?;
        let carried = self.engine.carried_state()?;
        state.insert(STATE_TENSOR.into(), Tensor::new(vec![carried.len()], carried));
        let mut m = BTreeMap::new();
        m.insert("format".to_string(), FORMAT.to_string());
        m.insert("name".to_string(), self.exp.name.clone());
        m.insert("step".to_string(), self.pos.step.to_string());
        m.insert("frames".to_string(), self.pos.frames.to_string());
        m.insert("skipped".to_string(), self.pos.skipped.to_string());
        m.insert("updates".to_string(), self.engine.updates().to_string());
        m.insert("elapsed_s".to_string(), self.elapsed().to_string());
        m.insert("window".to_string(), self.pos.window.to_meta());
        checkpoint::save(&self.dir.join(CHECKPOINT_FILE), &state, &m)?;
        Ok(())
    }

    /// Fill the window's buffers from the source: Ok(true) when full, Ok(false) when the source
    /// ended (the frames read are dropped and counted) or a stop was requested while waiting.
    fn fill_window(&mut self, dropped: &mut u64) -> Result<bool, RunError> {
        let (t_len, bsz) = (self.exp.window, self.exp.batch);
        let classes = self.exp.source.classes;
        self.batch.inputs.clear();
        // The window's target buffer is taken out and put back, keeping its capacity.
        let (mut values, mut labels) = match std::mem::replace(&mut self.batch.targets, Targets::StepValues(Vec::new()))
        {
            Targets::StepValues(v) => (v, Vec::new()),
            Targets::StepLabels(l) => (Vec::new(), l),
            _ => (Vec::new(), Vec::new()),
        };
        values.clear();
        labels.clear();
        let mut got = 0u64;
        let mut skipped = 0u64;
        let inputs_per_step = self.batch.inputs_per_step;
        let full = 'fill: {
            while got < (t_len * bsz) as u64 {
                match self.source.next(Duration::from_millis(200)).map_err(RunError::Source)? {
                    Next::Frame(f) => {
                        if f.inputs.len() != inputs_per_step
                            || f.targets.len() != if classes > 0 { 1 } else { self.outputs }
                        {
                            return Err(RunError::Source(format!(
                                "a frame with {} inputs and {} targets; the stream was set up for {inputs_per_step} and {}",
                                f.inputs.len(),
                                f.targets.len(),
                                if classes > 0 { 1 } else { self.outputs }
                            )));
                        }
                        self.batch.inputs.extend_from_slice(&f.inputs);
                        if classes > 0 {
                            labels.push(f.targets[0] as u32);
                        } else {
                            values.extend_from_slice(&f.targets);
                        }
                        got += 1;
                    }
                    Next::Skipped { line: _, reason } => {
                        skipped += 1;
                        if self.opts.verbose {
                            eprintln!("skipped: {reason}");
                        }
                    }
                    Next::End => {
                        *dropped = got;
                        break 'fill false;
                    }
                    Next::Waiting => {
                        if self.opts.stop.load(Ordering::SeqCst) {
                            break 'fill false;
                        }
                    }
                }
            }
            true
        };
        self.pos.skipped += skipped;
        self.batch.targets = if classes > 0 { Targets::StepLabels(labels) } else { Targets::StepValues(values) };
        Ok(full)
    }

    /// The window's predictions and targets, a row per step and stream (steps count from the
    /// stream's start).
    fn write_predictions(&mut self) -> Result<(), RunError> {
        let Some(w) = self.predictions.as_mut() else { return Ok(()) };
        let o = self.engine.window_predictions()?;
        let (bsz, c) = (self.exp.batch, self.outputs);
        let first = self.pos.step;
        let fail = |e: csv::Error| RunError::Output { path: PathBuf::from(PREDICTIONS_FILE), message: e.to_string() };
        let mut record: Vec<String> = Vec::with_capacity(2 + 2 * c);
        for t in 0..self.exp.window {
            for b in 0..bsz {
                let row = &o[(t * bsz + b) * c..(t * bsz + b + 1) * c];
                record.clear();
                record.push((first + t as u64).to_string());
                record.push(b.to_string());
                match &self.batch.targets {
                    Targets::StepLabels(l) => {
                        let best = (0..c).fold(0, |best, k| if row[k] > row[best] { k } else { best });
                        record.push(best.to_string());
                        record.push(l[t * bsz + b].to_string());
                    }
                    Targets::StepValues(v) => {
                        record.extend(row.iter().map(|x| x.to_string()));
                        record.extend(v[(t * bsz + b) * c..(t * bsz + b + 1) * c].iter().map(|x| x.to_string()));
                    }
                    _ => {}
                }
                w.write_record(&record).map_err(fail)?;
            }
        }
        w.flush().map_err(|e| RunError::Output { path: PathBuf::from(PREDICTIONS_FILE), message: e.to_string() })
    }

    fn write_row(&mut self, seconds: f64) -> Result<(), RunError> {
        let w = std::mem::take(&mut self.pos.window);
        let steps = w.steps.max(1) as f64;
        let samples = steps * self.exp.batch as f64;
        let classification = self.exp.source.classes > 0;
        let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        let row = [
            self.pos.step.to_string(),
            (w.loss / steps).to_string(),
            opt(classification.then(|| w.correct / samples)),
            opt((!classification).then(|| w.sqerr / (samples * self.outputs as f64))),
            (w.spikes / (samples * self.hidden_total as f64)).to_string(),
            (self.exp.lr as f32).to_string(),
            format!("{:.3}", if seconds > 0.0 { w.steps as f64 / seconds } else { 0.0 }),
            format!("{:.3}", self.elapsed()),
            self.pos.skipped.to_string(),
            self.engine.gpu_bytes().to_string(),
        ];
        if self.opts.verbose {
            eprintln!(
                "step {}: loss {:.5} · {} · rate {:.3} · {:.0} steps/s",
                row[0],
                w.loss / steps,
                if classification {
                    format!("accuracy {:.3}", w.correct / samples)
                } else {
                    format!("mse {:.5}", w.sqerr / (samples * self.outputs as f64))
                },
                w.spikes / (samples * self.hidden_total as f64),
                if seconds > 0.0 { w.steps as f64 / seconds } else { 0.0 }
            );
        }
        self.csv.write(row)
    }

    /// Returns (interrupted, dropped frames).
    fn run(&mut self) -> Result<(bool, u64), RunError> {
        let exp = self.exp;
        let t_len = exp.window as u64;
        let mut report_start = Instant::now();
        let mut dropped = 0;
        while exp.max_steps == 0 || self.pos.step < exp.max_steps {
            if self.opts.stop.load(Ordering::SeqCst) {
                self.save_checkpoint()?;
                return Ok((true, 0));
            }
            if !self.fill_window(&mut dropped)? {
                if self.opts.stop.load(Ordering::SeqCst) {
                    self.save_checkpoint()?;
                    return Ok((true, 0));
                }
                break;
            }
            let first = self.pos.step == 0;
            let init = first.then(|| InitialState::zeros(&exp.hidden, exp.batch));
            let window_start = Instant::now();
            let m = match self.engine.train_window(&self.batch, init.as_ref()) {
                Ok(m) => m,
                Err(EngineError::Diverged { update, step, loss }) => {
                    return Err(RunError::Diverged {
                        update,
                        iteration: self.pos.step / t_len + 1,
                        step,
                        loss,
                        kept: "the last checkpoint is kept; try a smaller train.lr or train.clip".into(),
                    })
                }
                Err(e) => return Err(e.into()),
            };
            self.train_seconds += window_start.elapsed().as_secs_f64();
            self.write_predictions()?;
            self.trained_here += t_len;
            self.pos.step += t_len;
            self.pos.frames += t_len * exp.batch as u64;
            let w = &mut self.pos.window;
            w.steps += t_len;
            w.loss += m.loss();
            w.correct += m.step_correct.iter().map(|&x| x as f64).sum::<f64>();
            w.sqerr += m.step_sqerr.iter().map(|&x| x as f64).sum::<f64>();
            w.spikes += m.spikes();
            if exp.reset_every > 0 && self.pos.step.is_multiple_of(exp.reset_every) {
                self.engine.reset_to_running_mean()?;
            }
            if self.pos.step.is_multiple_of(exp.report_every) {
                self.write_row(report_start.elapsed().as_secs_f64())?;
                report_start = Instant::now();
            }
            if exp.checkpoint_every > 0 && self.pos.step.is_multiple_of(exp.checkpoint_every) {
                self.save_checkpoint()?;
            }
        }
        if self.pos.window.steps > 0 {
            self.write_row(report_start.elapsed().as_secs_f64())?;
        }
        self.save_checkpoint()?;
        Ok((false, dropped))
    }
}

/// The predictions writer of `output.predictions`: `predictions.csv` (on resume without the rows
/// of steps at or past `resume_at`, rewritten atomically, then appended to) or standard output.
fn open_predictions(
    exp: &StreamExperiment,
    dir: &Path,
    resume_at: Option<u64>,
    outputs: usize,
) -> Result<Option<csv::Writer<Box<dyn std::io::Write>>>, RunError> {
    let header: Vec<String> = if exp.source.classes > 0 {
        ["step", "stream", "predicted", "label"].map(String::from).to_vec()
    } else {
        let mut h = vec!["step".to_string(), "stream".to_string()];
        h.extend((0..outputs).map(|k| format!("prediction_{k}")));
        h.extend((0..outputs).map(|k| format!("target_{k}")));
        h
    };
    let sink: Box<dyn std::io::Write> = match exp.predictions {
        Predictions::None => return Ok(None),
        Predictions::Stdout => Box::new(std::io::stdout()),
        Predictions::Csv => {
            let path = dir.join(PREDICTIONS_FILE);
            let fail = output_err(&path);
            let mut kept = csv::Writer::from_writer(Vec::new());
            kept.write_record(&header).map_err(|e| fail(e.to_string()))?;
            if let (Some(step), true) = (resume_at, path.exists()) {
                let mut reader = csv::Reader::from_path(&path).map_err(|e| fail(e.to_string()))?;
                for record in reader.records() {
                    let Ok(record) = record else { break };
                    if record.len() != header.len() {
                        break;
                    }
                    if record.get(0).and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s < step) {
                        kept.write_record(&record).map_err(|e| fail(e.to_string()))?;
                    }
                }
            }
            let bytes = kept.into_inner().map_err(|e| fail(e.to_string()))?;
            crate::files::write_atomic(&path, &bytes, "predictions").map_err(|e| fail(e.to_string()))?;
            let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| fail(e.to_string()))?;
            let mut w =
                csv::WriterBuilder::new().has_headers(false).from_writer(Box::new(file) as Box<dyn std::io::Write>);
            w.flush().map_err(|e| fail(e.to_string()))?;
            return Ok(Some(w));
        }
    };
    let mut w = csv::Writer::from_writer(sink);
    w.write_record(&header)
        .map_err(|e| RunError::Output { path: PathBuf::from("<stdout>"), message: e.to_string() })?;
    Ok(Some(w))
}

/// Train on the stream `exp` (or continue the run in `opts.out` when `opts.resume`).
pub fn stream(exp: &StreamExperiment, opts: &StreamOptions) -> Result<StreamSummary, RunError> {
    let (dir, numbered) = match opts.out.clone().or_else(|| exp.out.clone()) {
        Some(d) => (d, false),
        None => (PathBuf::from("runs").join(format!("{}-{}", exp.name, utc_stamp())), true),
    };
    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    if !opts.resume {
        for f in [CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE] {
            if dir.join(f).exists() {
                return Err(RunError::Setup(format!(
                    "{} already holds a run ({f} exists); continue it with --resume {}, or choose another --out",
                    dir.display(),
                    dir.display()
                )));
            }
        }
    }
    let restore = opts.resume && checkpoint_path.is_file();
    let (inputs, outputs) = exp.io().map_err(RunError::Source)?;
    let cfg = exp.model_config(inputs, outputs);
    let settings = exp.settings();
    let ctx = match &opts.context {
        Some(c) => c.clone(),
        None => Rc::new(GpuContext::new(opts.device)?),
    };
    check_fits(&SizeLimits::of(&ctx), &cfg, &settings, exp.batch, 1)?;
    let layout = ParamLayout::new(&cfg);
    let (mut tensors, meta) = if restore {
        let (t, m) = checkpoint::load(&checkpoint_path)?;
        checkpoint::check_params(&checkpoint_path, &t, &layout, true)?;
        (t, Some(m))
    } else {
        (init_params(&cfg, exp.seed), None)
    };
    let carried = tensors.remove(STATE_TENSOR);
    let mut engine = Engine::new_stream(ctx.clone(), &cfg, &settings, exp.batch, &tensors)?;
    let mut pos = Position::default();
    if let Some(m) = &meta {
        let bad = |message: String| RunError::Resume { dir: dir.clone(), message };
        if m.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!("{CHECKPOINT_FILE} is not a stream checkpoint (format {FORMAT})")));
        }
        let num = |key: &str| -> Result<u64, RunError> {
            m.get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("{CHECKPOINT_FILE}: no {key} in its metadata")))
        };
        pos.step = num("step")?;
        pos.frames = num("frames")?;
        pos.skipped = num("skipped")?;
        engine.set_updates(num("updates")?);
        pos.elapsed_before = m.get("elapsed_s").and_then(|v| v.parse().ok()).unwrap_or(0.0);
        pos.window = m.get("window").and_then(|w| Tally::from_meta(w)).unwrap_or_default();
        let Some(state) = carried else {
            return Err(bad(format!("{CHECKPOINT_FILE} holds no {STATE_TENSOR}")));
        };
        if pos.step > 0 {
            engine.load_carried_state(&state.data)?;
        }
        if let config::SourceKind::File { path, .. } = &exp.source.kind {
            if path.as_os_str() == "-" {
                eprintln!(
                    "warning: resuming a stream from standard input: the first {} rows it sends now are skipped \
                     as already trained on; send the same stream again",
                    pos.frames
                );
            }
        }
    }
    let dir = if opts.resume { dir } else { create_run_dir(&dir, numbered)? };
    crate::files::remove_stale_temporaries(&dir, &[CHECKPOINT_FILE, METRICS_FILE, CONFIG_FILE, PREDICTIONS_FILE]);
    let config_path = dir.join(CONFIG_FILE);
    if !opts.resume || !config_path.exists() {
        let mut table: Table = exp.text.parse().unwrap_or_default();
        let out = table.entry("output").or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(out) = out {
            out.insert("dir".into(), Value::String(dir.to_string_lossy().into()));
        }
        table.insert("run".into(), Value::Table(engine_run_record(&engine, &opts.command_line)));
        let text = format!(
            "# The stream experiment of this run, written by `fptt stream`; [run] records where it ran.\n\n{}",
            toml::to_string(&table).unwrap_or_default()
        );
        write_file(&config_path, &text, "config")?;
    }
    let capacity = 2 * exp.window * exp.batch;
    let source = Source::open(&exp.source, exp.seed, exp.batch, pos.frames, capacity).map_err(RunError::Source)?;
    let fixed =
        [exp.name.clone(), ctx.adapter_name().to_string(), ctx.backend_name(), ctx.device_type_name().to_string()];
    let csv = StreamCsv::open(&dir.join(METRICS_FILE), opts.resume.then_some(pos.step), fixed)?;
    let predictions = open_predictions(exp, &dir, opts.resume.then_some(pos.step), outputs)?;
    let t_len = exp.window;
    let batch = SequenceBatch {
        steps: t_len,
        batch: exp.batch,
        inputs_per_step: inputs,
        inputs: Vec::with_capacity(t_len * exp.batch * inputs),
        targets: if exp.source.classes > 0 {
            Targets::StepLabels(Vec::with_capacity(t_len * exp.batch))
        } else {
            Targets::StepValues(Vec::with_capacity(t_len * exp.batch * outputs))
        },
    };
    let mut lp = Loop {
        exp,
        opts,
        engine,
        source,
        csv,
        dir: dir.clone(),
        pos,
        started: Instant::now(),
        batch,
        outputs,
        hidden_total: exp.hidden.iter().sum(),
        trained_here: 0,
        train_seconds: 0.0,
        predictions,
    };
    let loop_start = Instant::now();
    let (interrupted, dropped) = lp.run()?;
    let loop_seconds = loop_start.elapsed().as_secs_f64();
    let host_window_bytes = 4 * lp.batch.inputs.capacity()
        + 4 * match &lp.batch.targets {
            Targets::StepValues(v) => v.capacity(),
            Targets::StepLabels(l) => l.capacity(),
            _ => 0,
        };
    Ok(StreamSummary {
        dir: dir.clone(),
        metrics: dir.join(METRICS_FILE),
        checkpoint: dir.join(CHECKPOINT_FILE),
        steps: lp.pos.step,
        skipped_rows: lp.pos.skipped,
        interrupted,
        dropped_frames: dropped,
        elapsed_s: lp.elapsed(),
        steps_per_s: if loop_seconds > 0.0 { lp.trained_here as f64 / loop_seconds } else { 0.0 },
        gpu_seconds: lp.train_seconds,
        adapter: ctx.adapter_name().to_string(),
        gpu_bytes: lp.engine.gpu_bytes(),
        host_window_bytes,
    })
}
