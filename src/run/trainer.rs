//! The training loop. Per iteration: build the batch on the host, one `train_sequence` (one GPU
//! submit, one metrics read), accumulate. Per epoch (classification: one pass over the training
//! split; adding: `train.eval_every` iterations): the reset policy, evaluation, a `test` row and a
//! checkpoint. Everything random comes from named streams of the run's seed, and their states go
//! into every checkpoint with the data position, so `--resume` continues bit-identically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use toml::{Table, Value};

use super::experiment::{Experiment, Membrane, ResetPolicy, Task, IMAGE_CLASSES, IMAGE_PIXELS, RUN_SECTION};
use super::metrics::{MetricsWriter, Row, RowContext, SplitKind};
use super::progress::{Progress, ProgressMode};
use super::RunError;
use crate::checkpoint;
use crate::data::{adding_batch, epoch_order, ImageDataset, SequenceView, Split};
use crate::gpu::{DeviceChoice, GpuContext};
use crate::learn::{EngineError, FpttEngine, SequenceMetrics};
use crate::model::{init_params, NeuronKind, ParamLayout, StatLayout};
use crate::rng::Rng;
use crate::settings::{FpttSettings, InitialState, LearningRule, LossKind, SequenceBatch};
use crate::tensor::TensorMap;

pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.csv";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const KERNELS_FILE: &str = "kernels.csv";

/// Metadata keys of a run checkpoint.
mod meta {
    pub const FORMAT: &str = "fptt.format";
    pub const FORMAT_VALUE: &str = "fptt-run-1";
    pub const NAME: &str = "fptt.experiment";
    pub const VERSION: &str = "fptt.version";
    pub const EPOCH: &str = "fptt.epochs_done";
    pub const BATCH: &str = "fptt.batch_in_epoch";
    pub const ITERATION: &str = "fptt.iteration";
    pub const UPDATES: &str = "fptt.updates";
    pub const LR: &str = "fptt.lr";
    pub const ELAPSED: &str = "fptt.elapsed_s";
    pub const RNG_DATA: &str = "fptt.rng.data";
    pub const RNG_EPOCH_START: &str = "fptt.rng.epoch_start";
    pub const RNG_MEMBRANE: &str = "fptt.rng.membrane";
    pub const WINDOW: &str = "fptt.report_window";
}

/// How `train` runs, beyond the experiment itself.
pub struct TrainOptions {
    /// The run directory (overrides `output.dir`); with `resume`, the directory to continue.
    pub out: Option<PathBuf>,
    pub resume: bool,
    pub device: DeviceChoice,
    /// Starting weights from a checkpoint (parameters only; `W̄ = W`, `λ = 0`, fresh moments).
    pub init: Option<PathBuf>,
    /// Recorded in `config.toml`.
    pub command_line: String,
    pub progress: ProgressMode,
    /// Set (e.g. by Ctrl-C) to stop after the current sequence with a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Use this device instead of opening one (tests share one per process).
    pub context: Option<Rc<GpuContext>>,
    /// Time every kernel with GPU timestamps and write `kernels.csv` with each checkpoint.
    pub profile: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            out: None,
            resume: false,
            device: DeviceChoice::Auto,
            init: None,
            command_line: String::new(),
            progress: ProgressMode::Auto,
            stop: Arc::new(AtomicBool::new(false)),
            context: None,
            profile: false,
        }
    }
}

/// What a finished (or interrupted) run leaves.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub metrics: PathBuf,
    pub checkpoint: PathBuf,
    pub iterations: u64,
    pub epochs_done: usize,
    pub last_test: Option<Row>,
    pub interrupted: bool,
    pub elapsed_s: f64,
    pub adapter: String,
}

/// The experiment of a run directory (its `config.toml`), with `--set` overrides.
pub fn resume_experiment(dir: &Path, sets: &[String]) -> Result<Experiment, RunError> {
    let path = dir.join(CONFIG_FILE);
    if !path.is_file() {
        return Err(RunError::Resume {
            dir: dir.to_path_buf(),
            message: format!("{} not found (is this a run directory written by `fptt train`?)", path.display()),
        });
    }
    Ok(Experiment::load(&path, sets)?)
}

enum TaskData {
    Adding,
    Images { train: ImageDataset, test: ImageDataset, view: SequenceView, n_train: usize, n_test: usize },
}

fn load_data(exp: &Experiment) -> Result<TaskData, RunError> {
    let d = &exp.data;
    if d.task == Task::Adding {
        return Ok(TaskData::Adding);
    }
    let train = ImageDataset::load(&d.dir, Split::Train)?;
    let test = ImageDataset::load(&d.dir, Split::Test)?;
    for (ds, split) in [(&train, Split::Train), (&test, Split::Test)] {
        let what = format!("{}/{}-images-idx3-ubyte", d.dir.display(), split.prefix());
        if ds.images.pixels_per_image() != IMAGE_PIXELS {
            return Err(RunError::Setup(format!(
                "{what}: images of {}×{} pixels; the image tasks expect 28×28",
                ds.images.rows, ds.images.cols
            )));
        }
        if ds.classes() > IMAGE_CLASSES {
            return Err(RunError::Setup(format!(
                "{}/{}-labels-idx1-ubyte: label {} out of range for {IMAGE_CLASSES} classes",
                d.dir.display(),
                split.prefix(),
                ds.classes() - 1
            )));
        }
        if ds.is_empty() {
            return Err(RunError::Setup(format!("{what}: the file holds no images")));
        }
    }
    let permute = (d.task == Task::Psmnist).then_some(d.permutation_seed);
    let view = SequenceView::new(d.pixels_per_step, permute, IMAGE_PIXELS)?;
    let cap = |n: usize, max: usize| if max == 0 { n } else { n.min(max) };
    let n_train = cap(train.len(), d.max_train_samples);
    let n_test = cap(test.len(), d.max_test_samples);
    Ok(TaskData::Images { train, test, view, n_train, n_test })
}

fn rng_to_string(r: &Rng) -> String {
    r.state().iter().map(|x| format!("{x:016x}")).collect::<Vec<_>>().join(",")
}

fn rng_from_string(s: &str) -> Option<Rng> {
    let parts: Vec<u64> = s.split(',').map(|p| u64::from_str_radix(p, 16).ok()).collect::<Option<_>>()?;
    let arr: [u64; 4] = parts.try_into().ok()?;
    Some(Rng::from_state(arr))
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Where the run writes: `--out`, else `output.dir`, else `results/<name>-<UTC timestamp>`.
fn run_dir(exp: &Experiment, opts: &TrainOptions) -> PathBuf {
    opts.out
        .clone()
        .or_else(|| exp.output.dir.clone())
        .unwrap_or_else(|| PathBuf::from("results").join(format!("{}-{}", exp.name, utc_stamp())))
}

/// Where a run stands: fresh, or as a checkpoint left it.
struct Position {
    epochs_done: usize,
    batch_in_epoch: usize,
    iteration: u64,
    data_rng: Rng,
    epoch_start: Rng,
    membrane_rng: Rng,
    elapsed: f64,
    window: Tally,
}

/// Sums over the sequences of a report window or an evaluation.
#[derive(Default)]
struct Tally {
    sequences: usize,
    samples: usize,
    loss: f64,
    correct: usize,
    sqerr: f64,
    spikes: f64,
}

impl Tally {
    /// Exact text form (f64 bit patterns), so a resumed run reports the same window sums.
    fn to_meta(&self) -> String {
        format!(
            "{},{},{:016x},{},{:016x},{:016x}",
            self.sequences,
            self.samples,
            self.loss.to_bits(),
            self.correct,
            self.sqerr.to_bits(),
            self.spikes.to_bits()
        )
    }

    fn from_meta(s: &str) -> Option<Tally> {
        let p: Vec<&str> = s.split(',').collect();
        if p.len() != 6 {
            return None;
        }
        let bits = |x: &str| u64::from_str_radix(x, 16).ok().map(f64::from_bits);
        Some(Tally {
            sequences: p[0].parse().ok()?,
            samples: p[1].parse().ok()?,
            loss: bits(p[2])?,
            correct: p[3].parse().ok()?,
            sqerr: bits(p[4])?,
            spikes: bits(p[5])?,
        })
    }

    fn add(&mut self, m: &SequenceMetrics) {
        self.sequences += 1;
        self.samples += m.samples;
        self.loss += m.loss() * m.samples as f64;
        self.correct += m.correct();
        self.sqerr += m.last_sqerr();
        self.spikes += m.spikes();
    }
}

struct Loop<'a> {
    exp: &'a Experiment,
    opts: &'a TrainOptions,
    engine: FpttEngine,
    data: TaskData,
    dir: PathBuf,
    csv: MetricsWriter,
    progress: Progress,
    /// Spike-count denominator per sample: Σ hidden · T.
    neuron_steps: f64,
    batches_per_epoch: usize,
    // Position and generator states (all of it goes into checkpoints).
    epochs_done: usize,
    batch_in_epoch: usize,
    iteration: u64,
    data_rng: Rng,
    epoch_start: Rng,
    membrane_rng: Rng,
    // Timing.
    elapsed_before: f64,
    started: Instant,
    last_checkpoint: Option<u64>,
    last_test: Option<Row>,
    /// The sequences since the last `train` row.
    window: Tally,
}

impl Loop<'_> {
    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    fn classification(&self) -> bool {
        self.exp.data.task.is_classification()
    }

    fn initial_state(&self, batch: usize, rng: &mut Rng) -> InitialState {
        match self.exp.data.initial_membrane {
            Membrane::Uniform => InitialState::uniform(&self.exp.model.hidden, batch, rng),
            Membrane::Zero => InitialState::zeros(&self.exp.model.hidden, batch),
        }
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    fn save_checkpoint(&mut self) -> Result<(), RunError> {
        let state = self.engine.state()?;
        let mut m = BTreeMap::new();
        m.insert(meta::FORMAT.to_string(), meta::FORMAT_VALUE.to_string());
        m.insert(meta::NAME.to_string(), self.exp.name.clone());
        m.insert(meta::VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string());
        m.insert(meta::EPOCH.to_string(), self.epochs_done.to_string());
        m.insert(meta::BATCH.to_string(), self.batch_in_epoch.to_string());
        m.insert(meta::ITERATION.to_string(), self.iteration.to_string());
        m.insert(meta::UPDATES.to_string(), self.engine.updates().to_string());
        m.insert(meta::LR.to_string(), self.lr().to_string());
        m.insert(meta::ELAPSED.to_string(), self.elapsed().to_string());
        m.insert(meta::RNG_DATA.to_string(), rng_to_string(&self.data_rng));
        m.insert(meta::RNG_EPOCH_START.to_string(), rng_to_string(&self.epoch_start));
        m.insert(meta::RNG_MEMBRANE.to_string(), rng_to_string(&self.membrane_rng));
        m.insert(meta::WINDOW.to_string(), self.window.to_meta());
        checkpoint::save(&self.checkpoint_path(), &state, &m)?;
        self.last_checkpoint = Some(self.iteration);
        self.write_kernel_times()
    }

    /// `kernels.csv`: GPU time per kernel so far (only when profiling), rewritten whole.
    fn write_kernel_times(&self) -> Result<(), RunError> {
        let (rows, _) = self.engine.kernel_times();
        if rows.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(KERNELS_FILE);
        let fail = |e: &dyn std::fmt::Display| RunError::Output { path: path.clone(), message: e.to_string() };
        let mut w = csv::Writer::from_path(&path).map_err(|e| fail(&e))?;
        w.write_record(["kernel", "dispatches", "total_ms", "mean_us", "share", "adapter", "backend", "device_type"])
            .map_err(|e| fail(&e))?;
        let ctx = self.engine.context();
        for r in rows {
            w.write_record([
                r.kernel,
                r.dispatches.to_string(),
                format!("{:.3}", r.total_ms),
                format!("{:.3}", r.mean_us),
                format!("{:.4}", r.share),
                ctx.adapter_name().to_string(),
                ctx.backend_name(),
                ctx.device_type_name().to_string(),
            ])
            .map_err(|e| fail(&e))?;
        }
        w.flush().map_err(|e| fail(&e))
    }

    /// The schedule's learning rate of the current epoch (the engine holds it as f32).
    fn lr(&self) -> f64 {
        self.exp.lr_at_epoch(self.epochs_done.min(self.exp.train.epochs.saturating_sub(1)))
    }

    fn row(&self, split: SplitKind, epoch: usize, tally: &Tally, seconds: f64) -> Row {
        let samples = tally.samples.max(1) as f64;
        Row {
            epoch,
            iteration: self.iteration,
            split,
            loss: tally.loss / samples,
            accuracy: self.classification().then(|| tally.correct as f64 / samples),
            mse: (!self.classification()).then(|| tally.sqerr / samples),
            firing_rate: tally.spikes / (samples * self.neuron_steps),
            lr: self.lr(),
            samples_per_s: if seconds > 0.0 { tally.samples as f64 / seconds } else { 0.0 },
            elapsed_s: self.elapsed(),
        }
    }

    fn describe(&self, row: &Row) -> String {
        let score = match (row.accuracy, row.mse) {
            (Some(a), _) => format!("accuracy {:.2}%", 100.0 * a),
            (_, Some(m)) => format!("mse {:.4}", m),
            _ => String::new(),
        };
        format!(
            "{} epoch {} it {}: loss {:.4} · {score} · rate {:.3} · {:.0} samples/s",
            row.split.name(),
            row.epoch,
            row.iteration,
            row.loss,
            row.firing_rate,
            row.samples_per_s
        )
    }

    /// The progress bar's message: the score only.
    fn describe_short(&self, row: &Row) -> String {
        match (row.accuracy, row.mse) {
            (Some(a), _) => format!("epoch {} · loss {:.3} · acc {:.1}%", row.epoch, row.loss, 100.0 * a),
            (_, Some(m)) => format!("epoch {} · loss {:.3} · mse {:.4}", row.epoch, row.loss, m),
            _ => format!("epoch {}", row.epoch),
        }
    }

    fn train_batch(&mut self, order: &[usize], b: usize) -> SequenceBatch {
        let bsz = self.exp.train.batch;
        match &self.data {
            TaskData::Adding => adding_batch(&mut self.data_rng, bsz, self.exp.data.steps),
            TaskData::Images { train, view, .. } => view.batch(train, &order[b * bsz..(b + 1) * bsz]),
        }
    }

    /// The test split (classification) or `eval_batches` fresh adding batches from a fixed
    /// stream; initial membranes from a fixed stream too, so evaluations are deterministic.
    fn evaluate(&mut self) -> Result<Option<(Tally, f64)>, RunError> {
        let started = Instant::now();
        let seed = self.exp.seed;
        let mut membrane = Rng::derive(seed, "eval-membrane");
        let mut tally = Tally::default();
        let bsz = self.exp.train.batch;
        let count = match &self.data {
            TaskData::Adding => self.exp.train.eval_batches,
            TaskData::Images { n_test, .. } => n_test.div_ceil(bsz),
        };
        let mut adding_rng = Rng::derive(seed, "eval-data");
        for i in 0..count {
            if self.opts.stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let batch = match &self.data {
                TaskData::Adding => adding_batch(&mut adding_rng, bsz, self.exp.data.steps),
                TaskData::Images { test, view, n_test, .. } => {
                    let idx: Vec<usize> = (i * bsz..((i + 1) * bsz).min(*n_test)).collect();
                    view.batch(test, &idx)
                }
            };
            let init = self.initial_state(batch.batch, &mut membrane);
            let m = self.engine.evaluate_sequence(&batch, &init)?;
            tally.add(&m);
        }
        Ok(Some((tally, started.elapsed().as_secs_f64())))
    }

    fn diverged(&self, update: u64, step: usize, loss: f32) -> RunError {
        let kept = match self.last_checkpoint {
            Some(it) => format!(
                "the last good checkpoint (iteration {it}) is kept in {}; try a smaller train.lr or train.clip",
                self.checkpoint_path().display()
            ),
            None => "no checkpoint was written yet; try a smaller train.lr or train.clip".to_string(),
        };
        RunError::Diverged { update, iteration: self.iteration + 1, step, loss, kept }
    }

    /// Stop on request: checkpoint at the current position, and say so.
    fn interrupted(&mut self) -> Result<bool, RunError> {
        if !self.opts.stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.save_checkpoint()?;
        self.progress.line(&format!(
            "interrupted at iteration {}: checkpoint written to {}; continue with --resume {}",
            self.iteration,
            self.checkpoint_path().display(),
            self.dir.display()
        ));
        Ok(true)
    }

    /// Returns whether the run was interrupted.
    fn run(&mut self) -> Result<bool, RunError> {
        let t = &self.exp.train;
        let cap = if t.max_iterations == 0 { u64::MAX } else { t.max_iterations };
        let bsz = t.batch;
        let report_every = self.exp.output.report_every;
        let mut window_start = Instant::now();
        while self.epochs_done < t.epochs && self.iteration < cap {
            let epoch = self.epochs_done;
            self.engine.set_lr(self.exp.lr_at_epoch(epoch) as f32);
            self.engine.set_aux_targets(self.exp.aux_at_epoch(epoch));
            if self.batch_in_epoch == 0 {
                self.epoch_start = self.data_rng.clone();
            }
            let order = match &self.data {
                TaskData::Adding => Vec::new(),
                TaskData::Images { n_train, .. } => {
                    let mut r = self.epoch_start.clone();
                    let order = epoch_order(*n_train, self.exp.data.shuffle, &mut r);
                    self.data_rng = r;
                    order
                }
            };
            while self.batch_in_epoch < self.batches_per_epoch && self.iteration < cap {
                let batch = self.train_batch(&order, self.batch_in_epoch);
                let mut membrane_rng = self.membrane_rng.clone();
                let init = self.initial_state(bsz, &mut membrane_rng);
                self.membrane_rng = membrane_rng;
                let metrics = match self.engine.train_sequence(&batch, &init) {
                    Ok(m) => m,
                    Err(EngineError::Diverged { update, step, loss }) => return Err(self.diverged(update, step, loss)),
                    Err(e) => return Err(e.into()),
                };
                self.iteration += 1;
                self.batch_in_epoch += 1;
                if t.reset == ResetPolicy::Sequence {
                    self.engine.reset_to_running_mean()?;
                }
                self.window.add(&metrics);
                self.progress.tick(self.iteration);
                if self.iteration.is_multiple_of(report_every) {
                    let window = std::mem::take(&mut self.window);
                    let row = self.row(SplitKind::Train, epoch + 1, &window, window_start.elapsed().as_secs_f64());
                    self.csv.write(&row)?;
                    let text = self.describe(&row);
                    let short = self.describe_short(&row);
                    self.progress.report(self.iteration, &text, &short);
                    window_start = Instant::now();
                }
                if self.interrupted()? {
                    return Ok(true);
                }
                if t.checkpoint_every > 0
                    && self.iteration.is_multiple_of(t.checkpoint_every)
                    && self.batch_in_epoch < self.batches_per_epoch
                {
                    self.save_checkpoint()?;
                }
            }
            // Epoch end: the rest of the report window, the reset, evaluation, checkpoint.
            if self.window.sequences > 0 {
                let window = std::mem::take(&mut self.window);
                let row = self.row(SplitKind::Train, epoch + 1, &window, window_start.elapsed().as_secs_f64());
                self.csv.write(&row)?;
            }
            if t.reset == ResetPolicy::Epoch {
                self.engine.reset_to_running_mean()?;
            }
            let Some((tally, seconds)) = self.evaluate()? else {
                self.interrupted()?;
                return Ok(true);
            };
            let row = self.row(SplitKind::Test, epoch + 1, &tally, seconds);
            self.csv.write(&row)?;
            let text = self.describe(&row);
            self.progress.line(&text);
            self.last_test = Some(row);
            self.epochs_done += 1;
            self.batch_in_epoch = 0;
            self.save_checkpoint()?;
            window_start = Instant::now();
            if self.interrupted()? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn quote_arg(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The command line of this process, shell-quoted.
pub fn command_line() -> String {
    std::env::args().map(|a| quote_arg(&a)).collect::<Vec<_>>().join(" ")
}

fn meta_get<'a>(dir: &Path, m: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, RunError> {
    m.get(key).map(|s| s.as_str()).ok_or_else(|| RunError::Resume {
        dir: dir.to_path_buf(),
        message: format!("{CHECKPOINT_FILE} has no `{key}` entry (not a run checkpoint of this version)"),
    })
}

fn meta_parse<T: std::str::FromStr>(dir: &Path, m: &BTreeMap<String, String>, key: &str) -> Result<T, RunError> {
    let s = meta_get(dir, m, key)?;
    s.parse().map_err(|_| RunError::Resume {
        dir: dir.to_path_buf(),
        message: format!("{CHECKPOINT_FILE}: `{key}` = {s:?} is not valid"),
    })
}

fn meta_rng(dir: &Path, m: &BTreeMap<String, String>, key: &str) -> Result<Rng, RunError> {
    let s = meta_get(dir, m, key)?;
    rng_from_string(s).ok_or_else(|| RunError::Resume {
        dir: dir.to_path_buf(),
        message: format!("{CHECKPOINT_FILE}: `{key}` = {s:?} is not a generator state"),
    })
}

fn config_toml(exp: &Experiment, dir: &Path, run: Table) -> String {
    let mut table = exp.to_table();
    if let Some(Value::Table(out)) = table.get_mut("output") {
        out.insert("dir".into(), Value::String(dir.to_string_lossy().to_string()));
    }
    table.insert(RUN_SECTION.into(), Value::Table(run));
    format!(
        "# The fully resolved experiment of this run (every default filled in), written by `fptt train`.\n\
         # [run] records where and how it ran; it is ignored when this file is read back (--resume).\n\n{}",
        toml::to_string(&table).expect("a table of plain values serialises")
    )
}

fn write_file(path: &Path, text: &str) -> Result<(), RunError> {
    std::fs::write(path, text).map_err(|e| RunError::Output { path: path.to_path_buf(), message: e.to_string() })
}

/// Train `exp` (or continue the run in `opts.out` when `opts.resume`).
pub fn train(exp: &Experiment, opts: &TrainOptions) -> Result<RunSummary, RunError> {
    // The GPU engine implements LTC layers only (spec §1); LIF/ALIF (spec §7), and e-prop, which
    // needs them, exist in the CPU reference so far. Refused before anything else; this check goes
    // when the engine trains LIF/ALIF layers (it refuses them itself too).
    if exp.model.neuron != NeuronKind::Ltc {
        if let LearningRule::Eprop(_) = exp.train.rule {
            return Err(RunError::Setup(format!(
                "experiment `{}`: train.rule = \"eprop\" (with model.neuron = \"{}\") runs on the CPU reference \
                 only for now (fptt::reference); the GPU engine of `fptt train` trains LTC neurons with \
                 rule = \"fptt\" or \"bptt\"",
                exp.name,
                exp.model.neuron.name()
            )));
        }
        return Err(RunError::Setup(format!(
            "experiment `{}`: model.neuron = \"{}\" runs on the CPU reference only for now (fptt::reference); \
             the GPU engine of `fptt train` implements LTC neurons: set model.neuron = \"ltc\" or leave the key out",
            exp.name,
            exp.model.neuron.name()
        )));
    }

    let dir = run_dir(exp, opts);
    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    let metrics_path = dir.join(METRICS_FILE);
    let config_path = dir.join(CONFIG_FILE);
    if opts.resume {
        if opts.init.is_some() {
            return Err(RunError::Setup("--init and --resume exclude each other".into()));
        }
        if !checkpoint_path.is_file() {
            return Err(RunError::Resume {
                dir: dir.clone(),
                message: format!(
                    "no {CHECKPOINT_FILE} yet (the run stopped before its first checkpoint); start it again"
                ),
            });
        }
    } else {
        for f in [&metrics_path, &checkpoint_path] {
            if f.exists() {
                return Err(RunError::Setup(format!(
                    "{} already holds a run ({} exists); continue it with --resume {}, or choose another --out",
                    dir.display(),
                    f.file_name().unwrap_or_default().to_string_lossy(),
                    dir.display()
                )));
            }
        }
    }

    // Data before the GPU: a missing file fails fast.
    let data = load_data(exp)?;
    let cfg = exp.model_config();
    let bsz = exp.train.batch;
    let batches_per_epoch = match &data {
        TaskData::Adding => exp.train.eval_every as usize,
        TaskData::Images { n_train, .. } => {
            if *n_train < bsz {
                return Err(RunError::Setup(format!(
                    "train.batch = {bsz} is larger than the {n_train} training samples (data.max_train_samples, {})",
                    exp.data.dir.display()
                )));
            }
            n_train / bsz
        }
    };

    let ctx = match &opts.context {
        Some(c) => c.clone(),
        None => Rc::new(GpuContext::new(opts.device)?),
    };
    let loss = if exp.data.task.is_classification() {
        LossKind::Classification { aux: exp.aux_at_epoch(0) }
    } else {
        LossKind::Regression
    };
    let settings = FpttSettings {
        optimizer: exp.train.optimizer,
        lr: exp.train.lr as f32,
        alpha: exp.train.alpha as f32,
        beta: exp.train.beta as f32,
        clip: exp.train.clip as f32,
        loss,
        rule: exp.train.rule,
    };
    let layout = ParamLayout::new(&cfg);

    // Starting state: fresh, --init weights, or the checkpoint being resumed.
    let mut resumed: Option<BTreeMap<String, String>> = None;
    let init: TensorMap = if opts.resume {
        let (tensors, m) = checkpoint::load(&checkpoint_path)?;
        checkpoint::check_params(&checkpoint_path, &tensors, &layout, true)?;
        resumed = Some(m);
        tensors
    } else if let Some(path) = &opts.init {
        let (tensors, _) = checkpoint::load(path)?;
        checkpoint::check_params(path, &tensors, &layout, true)?;
        let stats = StatLayout::new(&cfg);
        tensors.into_iter().filter(|(name, _)| layout.get(name).is_some() || stats.get(name).is_some()).collect()
    } else {
        init_params(&cfg, exp.seed)
    };
    let mut engine = FpttEngine::new(ctx.clone(), &cfg, &settings, bsz, &init)?;
    if opts.profile && !engine.enable_profiling() {
        eprintln!(
            "warning: {} cannot write timestamps inside compute passes; --profile is off for this run",
            ctx.adapter_name()
        );
    }

    let seed = exp.seed;
    let mut pos = Position {
        epochs_done: 0,
        batch_in_epoch: 0,
        iteration: 0,
        data_rng: Rng::derive(seed, "data"),
        epoch_start: Rng::derive(seed, "data"),
        membrane_rng: Rng::derive(seed, "membrane"),
        elapsed: 0.0,
        window: Tally::default(),
    };
    if let Some(m) = &resumed {
        if m.get(meta::FORMAT).map(|s| s.as_str()) != Some(meta::FORMAT_VALUE) {
            return Err(RunError::Resume {
                dir: dir.clone(),
                message: format!(
                    "{CHECKPOINT_FILE} is not a run checkpoint (no {} = {})",
                    meta::FORMAT,
                    meta::FORMAT_VALUE
                ),
            });
        }
        engine.set_updates(meta_parse(&dir, m, meta::UPDATES)?);
        pos = Position {
            epochs_done: meta_parse(&dir, m, meta::EPOCH)?,
            batch_in_epoch: meta_parse(&dir, m, meta::BATCH)?,
            iteration: meta_parse(&dir, m, meta::ITERATION)?,
            data_rng: meta_rng(&dir, m, meta::RNG_DATA)?,
            epoch_start: meta_rng(&dir, m, meta::RNG_EPOCH_START)?,
            membrane_rng: meta_rng(&dir, m, meta::RNG_MEMBRANE)?,
            elapsed: meta_parse(&dir, m, meta::ELAPSED)?,
            window: m.get(meta::WINDOW).and_then(|w| Tally::from_meta(w)).unwrap_or_default(),
        };
        if pos.batch_in_epoch > batches_per_epoch {
            return Err(RunError::Resume {
                dir: dir.clone(),
                message: format!(
                    "the checkpoint is at batch {} of an epoch, but an epoch now has {batches_per_epoch} batches \
                     (was the data or batch size changed?)",
                    pos.batch_in_epoch
                ),
            });
        }
    }
    let iteration = pos.iteration;

    // The run directory, config.toml, metrics.csv.
    std::fs::create_dir_all(&dir).map_err(|e| RunError::Output { path: dir.clone(), message: e.to_string() })?;
    let mut run = Table::new();
    if opts.resume {
        if let Ok(old) = std::fs::read_to_string(&config_path).unwrap_or_default().parse::<Table>() {
            if let Some(Value::Table(r)) = old.get(RUN_SECTION) {
                run = r.clone();
            }
        }
        let mut resumes = match run.remove("resumed") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        resumes.push(Value::String(format!(
            "{} (at iteration {iteration}, on {})",
            opts.command_line,
            ctx.adapter_name()
        )));
        run.insert("resumed".into(), Value::Array(resumes));
    } else {
        run.insert("engine_version".into(), Value::String(env!("CARGO_PKG_VERSION").into()));
        run.insert("adapter".into(), Value::String(ctx.adapter_name().into()));
        run.insert("backend".into(), Value::String(ctx.backend_name()));
        run.insert("device_type".into(), Value::String(ctx.device_type_name().into()));
        run.insert("command".into(), Value::String(opts.command_line.clone()));
        run.insert("started_utc".into(), Value::String(utc_stamp()));
        run.insert("inputs".into(), Value::Integer(cfg.inputs as i64));
        run.insert("outputs".into(), Value::Integer(cfg.outputs as i64));
        run.insert("steps".into(), Value::Integer(cfg.steps as i64));
        run.insert("parameters".into(), Value::Integer(layout.total_len as i64));
        run.insert("trainable_parameters".into(), Value::Integer(layout.trainable_len as i64));
        run.insert("gpu_bytes".into(), Value::Integer(engine.gpu_bytes() as i64));
        if let TaskData::Images { n_train, n_test, .. } = &data {
            run.insert("train_samples".into(), Value::Integer(*n_train as i64));
            run.insert("test_samples".into(), Value::Integer(*n_test as i64));
        }
    }
    write_file(&config_path, &config_toml(exp, &dir, run))?;
    let row_ctx = RowContext {
        run: exp.name.clone(),
        gpu_bytes: engine.gpu_bytes(),
        adapter: ctx.adapter_name().to_string(),
        backend: ctx.backend_name(),
        device_type: ctx.device_type_name().to_string(),
    };
    let csv = if opts.resume {
        MetricsWriter::resume(&metrics_path, iteration, row_ctx)?
    } else {
        MetricsWriter::create(&metrics_path, row_ctx)?
    };

    let planned = (exp.train.epochs as u64 * batches_per_epoch as u64).min(if exp.train.max_iterations == 0 {
        u64::MAX
    } else {
        exp.train.max_iterations
    });
    let progress = Progress::new(opts.progress, planned, iteration);
    let mut lp = Loop {
        exp,
        opts,
        engine,
        data,
        dir: dir.clone(),
        csv,
        progress,
        neuron_steps: (cfg.hidden.iter().sum::<usize>() * cfg.steps) as f64,
        batches_per_epoch,
        epochs_done: pos.epochs_done,
        batch_in_epoch: pos.batch_in_epoch,
        iteration,
        data_rng: pos.data_rng,
        epoch_start: pos.epoch_start,
        membrane_rng: pos.membrane_rng,
        elapsed_before: pos.elapsed,
        started: Instant::now(),
        last_checkpoint: opts.resume.then_some(iteration),
        last_test: None,
        window: pos.window,
    };
    if opts.resume {
        lp.progress.line(&format!(
            "resuming {} at epoch {}, iteration {} of {planned}",
            dir.display(),
            lp.epochs_done + 1,
            iteration
        ));
    }
    let interrupted = lp.run()?;
    lp.progress.finish();
    Ok(RunSummary {
        dir: dir.clone(),
        metrics: metrics_path,
        checkpoint: checkpoint_path,
        iterations: lp.iteration,
        epochs_done: lp.epochs_done,
        last_test: lp.last_test.clone(),
        interrupted,
        elapsed_s: lp.elapsed(),
        adapter: ctx.adapter_name().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_states_round_trip_through_text() {
        let mut r = Rng::derive(5, "x");
        r.next_u64();
        assert_eq!(rng_from_string(&rng_to_string(&r)), Some(r));
        assert_eq!(rng_from_string("1,2,3"), None);
    }

    #[test]
    fn stamp_and_quoting() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15, "{s}");
        assert_eq!(quote_arg("train.lr=0.1"), "train.lr=0.1");
        assert_eq!(quote_arg("a b"), "'a b'");
    }
}
