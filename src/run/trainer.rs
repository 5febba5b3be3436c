//! The training loop. Per iteration: build the batch on the host, one `train_sequence` (one GPU
//! submit, one metrics read), accumulate. Per epoch (classification: one pass over the training
//! split; adding: `train.eval_every` iterations): evaluation of W and W̄ (`test` rows), the reset policy and a
//! checkpoint. Everything random comes from named streams of the run's seed, and their states go
//! into every checkpoint with the data position, so `--resume` continues bit-identically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use toml::{Table, Value};

use super::diagnostics::{layer_norms, LayerNorms};
use super::experiment::WeightSet;
use super::experiment::{Experiment, Membrane, ResetPolicy, Task, IMAGE_CLASSES, IMAGE_PIXELS};
use super::metrics::{MetricsWriter, NormsWriter, Row, RowContext, SplitKind};
use super::progress::{Progress, ProgressMode};
use super::resume::{self, Position, Tally};
use super::run_dir::{
    check_run_dir, claim_config, config_toml, create_run_dir, engine_run_record, run_dir, write_file,
};
use super::RunError;
use crate::checkpoint;
use crate::data::events::{CacheOutcome, DvsGesture, EventFolders, Events, FrameSet, NmnistSynth, SynthParams};
use crate::data::{adding_batch, epoch_order, DataError, ImageDataset, SequenceView, Split};
use crate::gpu::{DeviceChoice, GpuContext};
use crate::learn::{check_fits, Engine, ReplicaHyper, SequenceMetrics, SizeLimits};
use crate::model::{init_params, ModelConfig, ParamLayout, StatLayout};
use crate::rng::Rng;
use crate::settings::{InitialState, LearningRule, SequenceBatch};
use crate::tensor::TensorMap;

pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.csv";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const KERNELS_FILE: &str = "kernels.csv";
pub const NORMS_FILE: &str = "norms.csv";

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
    /// Stop at the first sequence or epoch end after this instant, with a checkpoint, as a stop
    /// request does (`fptt train --time-limit`). Evaluations are not cut short by it, so the
    /// stopping points are those of Ctrl-C between sequences, and a resume continues exactly.
    pub deadline: Option<Instant>,
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
            deadline: None,
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
    /// Stopped at `TrainOptions::deadline` (with a checkpoint; resumable).
    pub time_limited: bool,
    pub elapsed_s: f64,
    pub adapter: String,
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// Ctrl-C, SIGTERM or SIGHUP (`TrainOptions::stop`).
    Signal,
    /// `TrainOptions::deadline` passed.
    TimeLimit,
}

enum TaskData {
    Adding,
    /// A classification task: its samples (images or event frames) and how many of each split
    /// are used.
    Images {
        train: Box<Samples>,
        test: Box<Samples>,
        n_train: usize,
        n_test: usize,
    },
}

/// The samples of one split of a classification task.
enum Samples {
    Images {
        ds: ImageDataset,
        view: SequenceView,
    },
    /// Event frames `[T, 2, H', W']` per sample (event tasks).
    Frames(FrameSet),
}

impl Samples {
    fn batch(&self, indices: &[usize]) -> SequenceBatch {
        match self {
            Samples::Images { ds, view } => view.batch(ds, indices),
            Samples::Frames(set) => set.batch(indices),
        }
    }
}

fn load_data(exp: &Experiment) -> Result<TaskData, RunError> {
    let d = &exp.data;
    if d.task == Task::Adding {
        return Ok(TaskData::Adding);
    }
    if d.task.is_events() {
        let (train, test) = if d.task == Task::Events {
            load_event_folders(exp)?
        } else {
            (load_frames(exp, Split::Train, d.max_train_samples)?, load_frames(exp, Split::Test, d.max_test_samples)?)
        };
        for (set, split) in [(&train, Split::Train), (&test, Split::Test)] {
            if set.is_empty() {
                return Err(RunError::Setup(format!(
                    "{}: the {} split of {} holds no samples",
                    d.dir.display(),
                    split.prefix(),
                    d.task.name()
                )));
            }
        }
        let (n_train, n_test) = (train.len(), test.len());
        return Ok(TaskData::Images {
            train: Box::new(Samples::Frames(train)),
            test: Box::new(Samples::Frames(test)),
            n_train,
            n_test,
        });
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
    Ok(TaskData::Images {
        train: Box::new(Samples::Images { ds: train, view: view.clone() }),
        test: Box::new(Samples::Images { ds: test, view }),
        n_train,
        n_test,
    })
}

/// One split of an event task binned into frames: only the first `max` samples (0 = all) are
/// generated or read. nmnist-synth says on stderr whether it read its cache.
fn load_frames(exp: &Experiment, split: Split, max: usize) -> Result<FrameSet, RunError> {
    let d = &exp.data;
    let Some(((w, h), classes)) = d.sensor_and_classes() else {
        return Err(RunError::Setup(format!("{} is not an event task", d.task.name())));
    };
    let mut set = FrameSet::new(d.frame_spec(), w, h).map_err(DataError::from)?;
    let started = Instant::now();
    let mut push = |ev: &Events, label: u32| set.push(ev, label);
    match d.task {
        Task::NmnistSynth => {
            let gen = NmnistSynth::new(SynthParams::default(), exp.seed).map_err(DataError::from)?;
            let outcome = gen.for_each_sample(&d.dir, split, max, Some(&d.cache_dir), &mut push)?;
            let what = match outcome {
                CacheOutcome::Hit(p) => format!("read from {}", p.display()),
                CacheOutcome::Generated(p) => {
                    format!("generated{}", p.map(|p| format!(", cached in {}", p.display())).unwrap_or_default())
                }
                CacheOutcome::Regenerated(p, why) => format!("regenerated ({}: {why})", p.display()),
            };
            eprintln!("nmnist-synth {} split: {what} ({:.1} s)", split.prefix(), started.elapsed().as_secs_f64());
        }
        Task::DvsGesture => {
            let ds = DvsGesture::open(&d.dir, split == Split::Train).map_err(DataError::from)?;
            ds.for_each_sample(max, &mut push).map_err(DataError::from)?;
        }
        task => return Err(RunError::Setup(format!("{} is not read sample by sample", task.name()))),
    }
    if set.classes() > classes {
        return Err(RunError::Setup(format!(
            "{}: label {} out of range for the {classes} classes of {}",
            d.dir.display(),
            set.classes() - 1,
            d.task.name()
        )));
    }
    Ok(set)
}

/// Both splits of an `events` experiment: the class folders listed once, each split's files read
/// and binned on all cores (the frames do not depend on how many). The experiment's classes were
/// counted by [`with_event_classes`]; folders that changed since are refused.
fn load_event_folders(exp: &Experiment) -> Result<(FrameSet, FrameSet), RunError> {
    let d = &exp.data;
    let Some((sensor, classes)) = d.sensor_and_classes() else {
        return Err(RunError::Setup("an events experiment without data.sensor".into()));
    };
    let folders = EventFolders::open(&d.dir).map_err(DataError::from)?;
    if folders.classes.len() != classes {
        return Err(RunError::Setup(format!(
            "{}: {} class folders, but the experiment has {classes} classes",
            d.dir.display(),
            folders.classes.len()
        )));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let read = |split: Split, max: usize| -> Result<FrameSet, RunError> {
        let started = Instant::now();
        let set = folders.read(split, d.frame_spec(), sensor, max, threads).map_err(DataError::from)?;
        eprintln!(
            "events {} split: {} of {} files in {} classes read from {} ({:.1} s, {:.1} MB of frames)",
            if split == Split::Train { "train" } else { "test" },
            set.len(),
            folders.files(split).len(),
            classes,
            d.dir.display(),
            started.elapsed().as_secs_f64(),
            set.bytes() as f64 / 1e6
        );
        Ok(set)
    };
    Ok((read(Split::Train, d.max_train_samples)?, read(Split::Test, d.max_test_samples)?))
}

/// `exp` with the classes of an `events` experiment counted from its class folders (listed, not
/// read): the network's readout has one output per folder. A `data.classes` that disagrees with
/// the folders is refused. Other experiments come back as they are.
fn with_event_classes(exp: &Experiment) -> Result<Experiment, RunError> {
    let mut exp = exp.clone();
    if exp.data.task != Task::Events {
        return Ok(exp);
    }
    let names = EventFolders::class_names(&exp.data.dir).map_err(DataError::from)?;
    match exp.data.classes {
        Some(c) if c != names.len() => {
            return Err(RunError::Setup(format!(
                "data.classes = {c}, but {} holds {} class folders ({}): set data.classes = {} or leave it out \
                 (a resumed run keeps the classes its config.toml records)",
                exp.data.dir.join("train").display(),
                names.len(),
                names.join(", "),
                names.len()
            )))
        }
        _ => exp.data.classes = Some(names.len()),
    }
    Ok(exp)
}

/// One run of a pack: its experiment, data, files and position. The engine is the pack's; this
/// run is replica `replica` of it.
struct RunLoop<'a> {
    exp: &'a Experiment,
    opts: &'a TrainOptions,
    replica: usize,
    /// Set in packs of several runs: console lines start with it.
    label: Option<String>,
    /// Shared by the runs of a pack that read the same data.
    data: Rc<TaskData>,
    dir: PathBuf,
    csv: MetricsWriter,
    /// FPTT runs: per-layer `‖W − W̄‖`, `‖λ‖` at every evaluation.
    norms: Option<NormsWriter>,
    progress: Progress,
    /// Spike-count denominator per sample: every spiking neuron (conv cells' C·H'·W', then the
    /// hidden layers) · T, as the engine counts the spikes of every state block.
    neuron_steps: f64,
    batches_per_epoch: usize,
    /// Where the run stands (all of it goes into checkpoints).
    pos: Position,
    /// When this process started training (`pos.elapsed_before` counts the time before).
    started: Instant,
    last_checkpoint: Option<u64>,
    last_test: Option<Row>,
    /// Where this run diverged (its replica is frozen; the pack's others go on).
    failed: Option<RunError>,
}

impl RunLoop<'_> {
    fn elapsed(&self) -> f64 {
        self.pos.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    fn live(&self) -> bool {
        self.failed.is_none()
    }

    fn classification(&self) -> bool {
        self.exp.data.task.is_classification()
    }

    /// The membranes a sequence starts from: one block per conv cell (if any), then per layer.
    fn initial_state(&self, batch: usize, rng: &mut Rng) -> InitialState {
        let blocks = self.exp.model_config().state_blocks();
        match self.exp.data.initial_membrane {
            Membrane::Uniform => InitialState::uniform(&blocks, batch, rng),
            Membrane::Zero => InitialState::zeros(&blocks, batch),
        }
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    fn save_checkpoint(&mut self, engine: &Engine) -> Result<(), RunError> {
        let state = engine.replica_state(self.replica)?;
        let m = self.pos.to_meta(&self.exp.name, engine.updates(), self.lr(), self.elapsed());
        checkpoint::save(&self.checkpoint_path(), &state, &m)?;
        self.last_checkpoint = Some(self.pos.iteration);
        self.write_kernel_times(engine)
    }

    /// `kernels.csv`: GPU time per kernel so far (only when profiling), rewritten whole.
    fn write_kernel_times(&self, engine: &Engine) -> Result<(), RunError> {
        let (rows, _) = engine.kernel_times();
        if rows.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(KERNELS_FILE);
        let fail = |e: &dyn std::fmt::Display| RunError::Output { path: path.clone(), message: e.to_string() };
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["kernel", "dispatches", "total_ms", "mean_us", "share", "adapter", "backend", "device_type"])
            .map_err(|e| fail(&e))?;
        let ctx = engine.context();
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
        let bytes = w.into_inner().map_err(|e| fail(&e.into_error()))?;
        write_file(&path, &String::from_utf8_lossy(&bytes), "kernels")
    }

    /// The schedule's learning rate of the current epoch (the engine holds it as f32).
    fn lr(&self) -> f64 {
        self.exp.lr_at_epoch(self.pos.epochs_done.min(self.exp.train.epochs.saturating_sub(1)))
    }

    /// A row of `weights`' metrics (norms left empty: [`Pack::evaluate_both`] adds them).
    fn row(&self, split: SplitKind, weights: WeightSet, epoch: usize, tally: &Tally, seconds: f64) -> Row {
        let samples = tally.samples.max(1) as f64;
        Row {
            epoch,
            iteration: self.pos.iteration,
            split,
            weights,
            loss: tally.loss / samples,
            accuracy: self.classification().then(|| tally.correct as f64 / samples),
            mse: (!self.classification()).then(|| tally.sqerr / samples),
            firing_rate: tally.spikes / (samples * self.neuron_steps),
            w_minus_wbar_norm: None,
            lambda_norm: None,
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
        let weights = match (row.split, row.weights) {
            (SplitKind::Train, _) => "",
            (_, WeightSet::Current) => " (W)",
            (_, WeightSet::RunningMean) => " (W̄)",
        };
        let norms = match (row.w_minus_wbar_norm, row.lambda_norm) {
            (Some(d), Some(l)) if row.weights == WeightSet::RunningMean => format!(" · ‖W−W̄‖ {d:.3} · ‖λ‖ {l:.3}"),
            _ => String::new(),
        };
        format!(
            "{}{}{weights} epoch {} it {}: loss {:.4} · {score} · rate {:.3} · {:.0} samples/s{norms}",
            self.label.as_ref().map(|l| format!("[{l}] ")).unwrap_or_default(),
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
        match &*self.data {
            TaskData::Adding => adding_batch(&mut self.pos.data_rng, bsz, self.exp.data.steps),
            TaskData::Images { train, .. } => train.batch(&order[b * bsz..(b + 1) * bsz]),
        }
    }

    /// This epoch's order of the training samples (image tasks), drawn from the data stream as it
    /// stood at the epoch's start.
    fn epoch_order(&mut self) -> Vec<usize> {
        if self.pos.batch_in_epoch == 0 {
            self.pos.epoch_start = self.pos.data_rng.clone();
        }
        match &*self.data {
            TaskData::Adding => Vec::new(),
            TaskData::Images { n_train, .. } => {
                let mut r = self.pos.epoch_start.clone();
                let order = epoch_order(*n_train, self.exp.data.shuffle, &mut r);
                self.pos.data_rng = r;
                order
            }
        }
    }

    /// The next training sequence and its initial state.
    fn next_sequence(&mut self, order: &[usize]) -> (SequenceBatch, InitialState) {
        let batch = self.train_batch(order, self.pos.batch_in_epoch);
        let mut membrane_rng = self.pos.membrane_rng.clone();
        let init = self.initial_state(self.exp.train.batch, &mut membrane_rng);
        self.pos.membrane_rng = membrane_rng;
        (batch, init)
    }

    /// One trained sequence's metrics into the report window (a row every `report_every`).
    fn trained(&mut self, epoch: usize, metrics: &SequenceMetrics, window_start: Instant) -> Result<(), RunError> {
        self.pos.iteration += 1;
        self.pos.batch_in_epoch += 1;
        self.pos.window.add(metrics);
        self.progress.tick(self.pos.iteration);
        if self.pos.iteration.is_multiple_of(self.exp.output.report_every) {
            let window = std::mem::take(&mut self.pos.window);
            let row = self.train_row(epoch, &window, window_start);
            self.csv.write(&row)?;
            let text = self.describe(&row);
            let short = self.describe_short(&row);
            self.progress.report(self.pos.iteration, &text, &short);
        }
        Ok(())
    }

    /// What evaluating `split` runs through: how many batches, and the samples in their order.
    fn evaluation_plan(&self, split: SplitKind) -> (usize, Vec<usize>) {
        let seed = self.exp.seed;
        let bsz = self.exp.train.batch;
        let frozen = split == SplitKind::TrainFrozen;
        let n_eval = match &*self.data {
            TaskData::Images { n_train, .. } if frozen => self.exp.train.eval_train_samples.min(*n_train),
            TaskData::Images { n_test, .. } => *n_test,
            TaskData::Adding => 0,
        };
        let count = match &*self.data {
            TaskData::Adding => self.exp.train.eval_batches,
            TaskData::Images { .. } => n_eval.div_ceil(bsz),
        };
        // Batch statistics need batches that mix the classes (test files are often sorted):
        // then the samples go in a fixed order shuffled from the seed.
        let order: Vec<usize> = if self.exp.train.eval_batch_stats {
            epoch_order(n_eval, true, &mut Rng::derive(seed, "eval-order"))
        } else {
            (0..n_eval).collect()
        };
        (count, order)
    }

    /// Evaluation batch `i` of `split` (the adding task draws it from `adding_rng`).
    fn evaluation_batch(&self, split: SplitKind, i: usize, order: &[usize], adding_rng: &mut Rng) -> SequenceBatch {
        let bsz = self.exp.train.batch;
        match &*self.data {
            TaskData::Adding => adding_batch(adding_rng, bsz, self.exp.data.steps),
            TaskData::Images { test, train, .. } => {
                let frozen = split == SplitKind::TrainFrozen;
                (if frozen { train } else { test }).batch(&order[i * bsz..((i + 1) * bsz).min(order.len())])
            }
        }
    }

    fn train_row(&self, epoch: usize, window: &Tally, window_start: Instant) -> Row {
        self.row(SplitKind::Train, WeightSet::Current, epoch + 1, window, window_start.elapsed().as_secs_f64())
    }

    fn diverged(&self, update: u64, step: usize, loss: f32) -> RunError {
        let kept = match self.last_checkpoint {
            Some(it) => format!(
                "the last good checkpoint (iteration {it}) is kept in {}; try a smaller train.lr or train.clip",
                self.checkpoint_path().display()
            ),
            None => "no checkpoint was written yet; try a smaller train.lr or train.clip".to_string(),
        };
        RunError::Diverged { update, iteration: self.pos.iteration + 1, step, loss, kept }
    }
}

/// Runs that step together as replicas of one engine (one run: an ordinary `fptt train`). They
/// share every setting that shapes the loop (the packing key of `fptt sweep`): model, data,
/// batch, epochs, schedule shape, evaluation; they differ in seed and scalar hyperparameters.
/// All of them start at the same position and move in lockstep: the same iteration, the same
/// epoch ends, the same checkpoints and stops.
struct Pack<'a> {
    engine: Engine,
    runs: Vec<RunLoop<'a>>,
}

impl Pack<'_> {
    fn live(&self) -> impl Iterator<Item = &RunLoop<'_>> {
        self.runs.iter().filter(|r| r.live())
    }

    /// The first live run: its position is every live run's.
    fn lead(&self) -> Option<&RunLoop<'_>> {
        self.live().next()
    }

    fn save_checkpoints(&mut self) -> Result<(), RunError> {
        for run in self.runs.iter_mut().filter(|r| r.live()) {
            run.save_checkpoint(&self.engine)?;
        }
        Ok(())
    }

    /// Evaluate `split` on every live run in lockstep: each its own batches and initial states
    /// (from fixed streams of its seed, so evaluations are deterministic). `None` when a stop
    /// request cut it short.
    fn evaluate(&mut self, split: SplitKind) -> Result<Option<Vec<(Tally, f64)>>, RunError> {
        let started = Instant::now();
        let plans: Vec<_> = self.runs.iter().map(|r| r.evaluation_plan(split)).collect();
        let count = plans[0].0;
        let mut membranes: Vec<Rng> = self.runs.iter().map(|r| Rng::derive(r.exp.seed, "eval-membrane")).collect();
        let mut adding: Vec<Rng> = self.runs.iter().map(|r| Rng::derive(r.exp.seed, "eval-data")).collect();
        let mut tallies: Vec<Tally> = self.runs.iter().map(|_| Tally::default()).collect();
        let stop = self.runs[0].opts.stop.clone();
        for i in 0..count {
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let mut batches = Vec::with_capacity(self.runs.len());
            let mut inits = Vec::with_capacity(self.runs.len());
            for (r, run) in self.runs.iter().enumerate() {
                let batch = run.evaluation_batch(split, i, &plans[r].1, &mut adding[r]);
                inits.push(run.initial_state(batch.batch, &mut membranes[r]));
                batches.push(batch);
            }
            let outcomes = self
                .engine
                .evaluate_replicas(&batches.iter().collect::<Vec<_>>(), &inits.iter().collect::<Vec<_>>())?;
            for (r, outcome) in outcomes.into_iter().enumerate() {
                if let Ok(m) = outcome {
                    tallies[r].add(&m);
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(Some(tallies.into_iter().map(|t| (t, seconds)).collect()))
    }

    /// The evaluation of an epoch's end: the current weights W and (FPTT) the running mean W̄,
    /// each a `test` row with the network's `‖W − W̄‖` and `‖λ‖` (and a `train_frozen` row when
    /// `eval_train_samples` asks), and `norms.csv` per layer, for every live run. Neither weight
    /// set changes. Returns false when a stop request cut it short.
    fn evaluate_both(&mut self, epoch: usize) -> Result<bool, RunError> {
        let fptt = self.runs[0].norms.is_some();
        let mut norms = Vec::with_capacity(self.runs.len());
        for run in &self.runs {
            norms.push(match (fptt, run.live()) {
                (true, true) => layer_norms(&self.engine.replica_state(run.replica)?, run.exp.model.hidden.len()),
                _ => None,
            });
        }
        let totals: Vec<_> = norms.iter().map(|n| n.as_deref().map(LayerNorms::total)).collect();
        // BPTT and e-prop keep no W̄ (and so no norms).
        let sets: &[WeightSet] =
            if fptt { &[WeightSet::Current, WeightSet::RunningMean] } else { &[WeightSet::Current] };
        let mut rows: Vec<Vec<Row>> = self.runs.iter().map(|_| Vec::new()).collect();
        for &weights in sets {
            if weights == WeightSet::RunningMean {
                self.engine.load_running_mean_for_evaluation()?;
            }
            let measured = self.evaluate_splits(weights, epoch);
            // W goes back whatever happened (a no-op when W was evaluated).
            self.engine.restore_current_weights()?;
            let Some(measured) = measured? else { return Ok(false) };
            for (r, run_rows) in measured.into_iter().enumerate() {
                for mut row in run_rows {
                    row.w_minus_wbar_norm = totals[r].as_ref().map(|n| n.w_minus_wbar);
                    row.lambda_norm = totals[r].as_ref().map(|n| n.lambda);
                    rows[r].push(row);
                }
            }
        }
        for ((run, run_rows), norms) in self.runs.iter_mut().zip(rows).zip(&norms) {
            if !run.live() {
                continue;
            }
            for row in &run_rows {
                run.csv.write(row)?;
                let text = run.describe(row);
                run.progress.line(&text);
            }
            if let (Some(writer), Some(norms)) = (&mut run.norms, norms) {
                writer.write(epoch, run.pos.iteration, norms)?;
            }
            let report = run.exp.train.report_weights;
            run.last_test = run_rows.into_iter().find(|r| r.split == SplitKind::Test && r.weights == report);
        }
        Ok(true)
    }

    /// The test split and (`eval_train_samples`) the frozen training samples through the weights
    /// the engine holds, per run; `None` when a stop request cut it short.
    fn evaluate_splits(&mut self, weights: WeightSet, epoch: usize) -> Result<Option<Vec<Vec<Row>>>, RunError> {
        let mut splits = vec![SplitKind::Test];
        if self.runs[0].exp.train.eval_train_samples > 0 {
            splits.push(SplitKind::TrainFrozen);
        }
        let mut rows: Vec<Vec<Row>> = self.runs.iter().map(|_| Vec::new()).collect();
        for split in splits {
            let Some(measured) = self.evaluate(split)? else { return Ok(None) };
            for (r, (tally, seconds)) in measured.into_iter().enumerate() {
                rows[r].push(self.runs[r].row(split, weights, epoch, &tally, seconds));
            }
        }
        Ok(Some(rows))
    }

    /// Stop on request (or at the deadline, when `more` work is left): checkpoint every live run
    /// at the current position, and say so.
    fn interrupted(&mut self, more: bool) -> Result<Option<Stop>, RunError> {
        let opts = self.runs[0].opts;
        let stop = if opts.stop.load(Ordering::SeqCst) {
            Stop::Signal
        } else if more && opts.deadline.is_some_and(|d| Instant::now() >= d) {
            Stop::TimeLimit
        } else {
            return Ok(None);
        };
        self.save_checkpoints()?;
        let why = match stop {
            Stop::Signal => "interrupted",
            Stop::TimeLimit => "time limit reached",
        };
        for run in self.runs.iter_mut().filter(|r| r.live()) {
            let text = format!(
                "{why} at iteration {}: checkpoint written to {}; continue with --resume {}",
                run.pos.iteration,
                run.checkpoint_path().display(),
                run.dir.display()
            );
            run.progress.line(&text);
        }
        Ok(Some(stop))
    }

    /// Returns why the pack stopped early, if it did. A run that diverges leaves the pack (its
    /// error in `RunLoop::failed`); the others go on.
    fn run(&mut self) -> Result<Option<Stop>, RunError> {
        let t = &self.runs[0].exp.train;
        let cap = if t.max_iterations == 0 { u64::MAX } else { t.max_iterations };
        let (epochs, reset) = (t.epochs, t.reset);
        let checkpoint_every = t.checkpoint_every;
        let mut window_start = Instant::now();
        // An epoch stopped after its last sequence (at the cap, say) still owes its end: the reset,
        // evaluation and checkpoint an uninterrupted run makes there.
        loop {
            let Some(lead) = self.lead() else { return Ok(None) };
            let (epoch, batches_per_epoch) = (lead.pos.epochs_done, lead.batches_per_epoch);
            if !(epoch < epochs && (lead.pos.iteration < cap || lead.pos.batch_in_epoch > 0)) {
                return Ok(None);
            }
            for run in &self.runs {
                self.engine.set_replica_lr(run.replica, run.exp.lr_at_epoch(epoch) as f32);
            }
            self.engine.set_aux_targets(self.runs[0].exp.aux_at_epoch(epoch));
            let orders: Vec<Vec<usize>> =
                self.runs.iter_mut().map(|r| if r.live() { r.epoch_order() } else { Vec::new() }).collect();
            loop {
                let Some(lead) = self.lead() else { return Ok(None) };
                if !(lead.pos.batch_in_epoch < batches_per_epoch && lead.pos.iteration < cap) {
                    break;
                }
                let mut sequences: Vec<Option<(SequenceBatch, InitialState)>> = Vec::with_capacity(self.runs.len());
                for (run, order) in self.runs.iter_mut().zip(&orders) {
                    sequences.push(run.live().then(|| run.next_sequence(order)));
                }
                // A diverged (frozen) replica still takes part in the dispatches: any live run's
                // sequence will do for it.
                let stand_in = sequences.iter().flatten().next().expect("a live run");
                let batches: Vec<&SequenceBatch> =
                    sequences.iter().map(|s| &s.as_ref().unwrap_or(stand_in).0).collect();
                let inits: Vec<&InitialState> = sequences.iter().map(|s| &s.as_ref().unwrap_or(stand_in).1).collect();
                let outcomes = self.engine.train_replicas(&batches, &inits)?;
                for (run, outcome) in self.runs.iter_mut().zip(outcomes) {
                    if !run.live() {
                        continue;
                    }
                    match outcome {
                        Ok(metrics) => run.trained(epoch, &metrics, window_start)?,
                        Err(d) => {
                            let error = run.diverged(d.update, d.step, d.loss);
                            run.progress.line(&format!(
                                "{}diverged: {error}",
                                run.label.as_ref().map(|l| format!("[{l}] ")).unwrap_or_default()
                            ));
                            run.failed = Some(error);
                        }
                    }
                }
                if reset == ResetPolicy::Sequence {
                    self.engine.reset_to_running_mean()?;
                }
                let Some(lead) = self.lead() else { return Ok(None) };
                let (iteration, batch_in_epoch) = (lead.pos.iteration, lead.pos.batch_in_epoch);
                if iteration.is_multiple_of(self.runs[0].exp.output.report_every) {
                    window_start = Instant::now();
                }
                // The epoch's end (evaluation, checkpoint) is still to come.
                if let Some(stop) = self.interrupted(true)? {
                    return Ok(Some(stop));
                }
                if checkpoint_every > 0
                    && iteration.is_multiple_of(checkpoint_every)
                    && batch_in_epoch < batches_per_epoch
                {
                    self.save_checkpoints()?;
                }
            }
            // Epoch end: the rest of the report window, evaluation, the reset, checkpoint.
            for run in self.runs.iter_mut().filter(|r| r.live()) {
                if run.pos.window.sequences > 0 {
                    let window = std::mem::take(&mut run.pos.window);
                    let row = run.train_row(epoch, &window, window_start);
                    run.csv.write(&row)?;
                }
            }
            // Both weight sets are measured before the reset replaces W.
            if !self.evaluate_both(epoch + 1)? {
                self.interrupted(true)?;
                return Ok(Some(Stop::Signal));
            }
            if reset == ResetPolicy::Epoch {
                self.engine.reset_to_running_mean()?;
            }
            for run in self.runs.iter_mut().filter(|r| r.live()) {
                run.pos.epochs_done += 1;
                run.pos.batch_in_epoch = 0;
            }
            self.save_checkpoints()?;
            window_start = Instant::now();
            let Some(lead) = self.lead() else { return Ok(None) };
            let more = lead.pos.epochs_done < epochs && lead.pos.iteration < cap;
            if let Some(stop) = self.interrupted(more)? {
                return Ok(Some(stop));
            }
        }
    }
}

/// A setting whose test figures are known to mislead (the README's reset study).
fn evaluation_warning(exp: &Experiment) -> Option<String> {
    (exp.model.batch_norm && exp.data.initial_membrane == Membrane::Zero && !exp.train.eval_batch_stats).then(|| {
        "per-step batch norm with data.initial_membrane = \"zero\": the first steps' features are the same \
         for every sample, their running variance goes to ~0 and evaluation with running statistics \
         amplifies any offset ~300×; test accuracy tends to collapse to one class (README, reset study). \
         \"uniform\" (the image tasks' default) avoids it"
            .to_string()
    })
}

/// Training batches per epoch: `eval_every` iterations (adding), else the full batches of the
/// training split (the last partial batch is dropped).
fn batches_per_epoch(exp: &Experiment, data: &TaskData) -> Result<usize, RunError> {
    let bsz = exp.train.batch;
    match data {
        TaskData::Adding => Ok(exp.train.eval_every as usize),
        TaskData::Images { n_train, .. } => {
            if *n_train < bsz {
                return Err(RunError::Setup(format!(
                    "train.batch = {bsz} is larger than the {n_train} training samples (data.max_train_samples, {})",
                    exp.data.dir.display()
                )));
            }
            Ok(n_train / bsz)
        }
    }
}

/// The starting state: the checkpoint being resumed (with its metadata), `--init`'s weights
/// (parameters and running statistics only), or a fresh initialisation.
fn starting_tensors(
    exp: &Experiment,
    opts: &TrainOptions,
    cfg: &ModelConfig,
    layout: &ParamLayout,
    checkpoint_path: &Path,
    restore: bool,
) -> Result<(TensorMap, Option<BTreeMap<String, String>>), RunError> {
    if restore {
        let (tensors, meta) = checkpoint::load(checkpoint_path)?;
        checkpoint::check_params(checkpoint_path, &tensors, layout, true)?;
        checkpoint::check_finite(checkpoint_path, &tensors)?;
        Ok((tensors, Some(meta)))
    } else if let Some(path) = &opts.init {
        let (tensors, _) = checkpoint::load(path)?;
        checkpoint::check_params(path, &tensors, layout, true)?;
        let stats = StatLayout::new(cfg);
        let kept: TensorMap =
            tensors.into_iter().filter(|(name, _)| layout.get(name).is_some() || stats.get(name).is_some()).collect();
        checkpoint::check_finite(path, &kept)?;
        Ok((kept, None))
    } else {
        Ok((init_params(cfg, exp.seed), None))
    }
}

/// The `[run]` record of a fresh run: engine, adapter, command, sizes.
fn fresh_run_record(
    cfg: &ModelConfig,
    layout: &ParamLayout,
    engine: &Engine,
    data: &TaskData,
    command_line: &str,
) -> Table {
    let mut run = engine_run_record(engine, command_line);
    run.insert("inputs".into(), Value::Integer(cfg.inputs as i64));
    run.insert("outputs".into(), Value::Integer(cfg.outputs as i64));
    run.insert("steps".into(), Value::Integer(cfg.steps as i64));
    run.insert("parameters".into(), Value::Integer(layout.total_len as i64));
    run.insert("trainable_parameters".into(), Value::Integer(layout.trainable_len as i64));
    if let TaskData::Images { n_train, n_test, .. } = data {
        run.insert("train_samples".into(), Value::Integer(*n_train as i64));
        run.insert("test_samples".into(), Value::Integer(*n_test as i64));
    }
    run
}

/// Train `exp` (or continue the run in `opts.out` when `opts.resume`).
pub fn train(exp: &Experiment, opts: &TrainOptions) -> Result<RunSummary, RunError> {
    train_pack(&[(exp, opts)])?.pop().expect("one result per run")
}

/// One run's set-up before the engine exists: its directory, data and starting tensors.
struct Prepared {
    dir: PathBuf,
    numbered: bool,
    restore: bool,
    data: Rc<TaskData>,
    batches_per_epoch: usize,
    init: TensorMap,
    resumed: Option<BTreeMap<String, String>>,
}

/// The data a run reads, told apart so that the runs of a pack share what they read alike (a pack
/// of 16 seeds holds its dataset once): the data section, and the seed where the data follow from it
/// (nmnist-synth generates its events from the run's seed).
type DataKey = (super::experiment::DataSection, Option<u64>);

fn prepare(
    exp: &Experiment,
    opts: &TrainOptions,
    ctx: &GpuContext,
    replicas: usize,
    loaded: &mut Vec<(DataKey, Rc<TaskData>)>,
) -> Result<Prepared, RunError> {
    if let Some(warning) = evaluation_warning(exp) {
        eprintln!("warning: {warning}");
    }
    let (dir, numbered) = run_dir(exp, opts);
    check_run_dir(&dir, opts)?;
    // A resume of a run stopped before its first checkpoint starts it again from the beginning,
    // with its recorded configuration, in its directory.
    let restore = opts.resume && dir.join(CHECKPOINT_FILE).is_file();
    // Data before the GPU: a missing file fails fast.
    let key: DataKey = (exp.data.clone(), (exp.data.task == Task::NmnistSynth).then_some(exp.seed));
    let data = match loaded.iter().find(|(k, _)| *k == key) {
        Some((_, data)) => data.clone(),
        None => {
            let data = Rc::new(load_data(exp)?);
            loaded.push((key, data.clone()));
            data
        }
    };
    let cfg = exp.model_config();
    let batches_per_epoch = batches_per_epoch(exp, &data)?;
    // Sizes from the shapes, before anything is initialised or allocated.
    check_fits(&SizeLimits::of(ctx), &cfg, &exp.settings(), exp.train.batch, replicas)?;
    let layout = ParamLayout::new(&cfg);
    let (init, resumed) = starting_tensors(exp, opts, &cfg, &layout, &dir.join(CHECKPOINT_FILE), restore)?;
    Ok(Prepared { dir, numbered, restore, data, batches_per_epoch, init, resumed })
}

/// Train several runs as replicas of one engine, in lockstep (`fptt sweep` packs runs that
/// differ only in seed, learning rate, α, β and clip; see [`pack_key`]). Every run keeps its own
/// directory, metrics, checkpoints and data order exactly as `fptt train` alone would write
/// them, and trains bit for bit as it would alone. A run that diverges stops alone (its `Err`);
/// the outer error is one that ends them all (the GPU, a file that cannot be written).
pub fn train_pack(runs: &[(&Experiment, &TrainOptions)]) -> Result<Vec<Result<RunSummary, RunError>>, RunError> {
    // Before the GPU, so that a dataset laid out wrongly fails fast; config.toml records the count.
    let resolved = runs.iter().map(|(exp, _)| with_event_classes(exp)).collect::<Result<Vec<_>, _>>()?;
    let runs: Vec<(&Experiment, &TrainOptions)> =
        resolved.iter().zip(runs).map(|(exp, (_, opts))| (exp, *opts)).collect();
    let runs = runs.as_slice();
    let (exp0, opts0) = runs[0];
    let ctx = match &opts0.context {
        Some(c) => c.clone(),
        None => Rc::new(GpuContext::new(opts0.device)?),
    };
    let key = pack_key(exp0);
    if let Some((exp, _)) = runs.iter().find(|(e, _)| pack_key(e) != key) {
        return Err(RunError::Setup(format!(
            "runs `{}` and `{}` differ in more than seed, lr, α, β and clip: they cannot share an engine",
            exp0.name, exp.name
        )));
    }
    let replicas = runs.len();
    let mut prepared = Vec::with_capacity(replicas);
    let mut loaded = Vec::new();
    for (exp, opts) in runs {
        prepared.push(prepare(exp, opts, &ctx, replicas, &mut loaded)?);
    }
    let cfg = exp0.model_config();
    let layout = ParamLayout::new(&cfg);
    let settings = exp0.settings();
    let inits: Vec<(&TensorMap, ReplicaHyper)> =
        prepared.iter().zip(runs).map(|(p, (exp, _))| (&p.init, ReplicaHyper::of(&exp.settings()))).collect();
    let mut engine = Engine::with_replicas(ctx.clone(), &cfg, &settings, exp0.train.batch, &inits)?;
    for (r, (exp, _)) in runs.iter().enumerate() {
        // A conv network's dropout masks follow the run's seed and the update count (resumable).
        engine.set_dropout_seed(r, exp.seed);
    }
    engine.set_evaluation_batch_statistics(exp0.train.eval_batch_stats);
    if opts0.profile && !engine.enable_profiling() {
        eprintln!(
            "warning: {} cannot write timestamps inside compute passes; --profile is off for this run",
            ctx.adapter_name()
        );
    }
    let mut loops = Vec::with_capacity(replicas);
    let mut updates = None;
    for (r, (p, (exp, opts))) in prepared.into_iter().zip(runs).enumerate() {
        let Prepared { mut dir, numbered, restore, data, batches_per_epoch, init: _, resumed } = p;
        let pos = match &resumed {
            Some(meta) => {
                let (pos, n) = Position::from_meta(&dir, meta, batches_per_epoch)?;
                if updates.is_some_and(|u| u != n) {
                    return Err(RunError::Setup(format!(
                        "{}: its checkpoint stands at update {n}, the pack's other runs elsewhere; \
                         packed runs must resume from the same point",
                        dir.display()
                    )));
                }
                updates = Some(n);
                pos
            }
            None => {
                if updates.is_some_and(|u| u != 0) {
                    return Err(RunError::Setup(format!(
                        "{}: a fresh run cannot join a pack of resumed runs",
                        dir.display()
                    )));
                }
                updates = Some(0);
                Position::fresh(exp.seed)
            }
        };
        let iteration = pos.iteration;

        // The run directory (a fresh one created exclusively), config.toml, metrics.csv.
        if !opts.resume {
            dir = create_run_dir(&dir, numbered)?;
        }
        // What a kill between a write and its rename left behind.
        crate::files::remove_stale_temporaries(
            &dir,
            &[CHECKPOINT_FILE, METRICS_FILE, CONFIG_FILE, KERNELS_FILE, NORMS_FILE],
        );
        let metrics_path = dir.join(METRICS_FILE);
        let config_path = dir.join(CONFIG_FILE);
        if opts.resume {
            let run = resume::resumed_run_record(&config_path, &opts.command_line, iteration, ctx.adapter_name());
            write_file(&config_path, &config_toml(exp, &dir, run), "config")?;
        } else {
            let mut run = fresh_run_record(&cfg, &layout, &engine, &data, &opts.command_line);
            if replicas > 1 {
                // The engine's bytes are the pack's: a run's share is what it would need alone.
                run.insert("gpu_bytes".into(), Value::Integer(engine.gpu_bytes_per_replica() as i64));
                run.insert("packed_replicas".into(), Value::Integer(replicas as i64));
                run.insert("replica".into(), Value::Integer(r as i64));
            }
            claim_config(&dir, &config_toml(exp, &dir, run))?;
        }
        let row_ctx = RowContext {
            run: exp.name.clone(),
            gpu_bytes: engine.gpu_bytes_per_replica(),
            adapter: ctx.adapter_name().to_string(),
            backend: ctx.backend_name(),
            device_type: ctx.device_type_name().to_string(),
        };
        let norms_path = dir.join(NORMS_FILE);
        let fptt = matches!(exp.train.rule, LearningRule::Fptt { .. });
        let norms = match (fptt, opts.resume) {
            (false, _) => None,
            (true, true) => Some(NormsWriter::resume(&norms_path, iteration, row_ctx.clone())?),
            (true, false) => Some(NormsWriter::create(&norms_path, row_ctx.clone())?),
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
        // One bar at most: the other runs of a pack log lines.
        let mode = if r > 0 && opts.progress != ProgressMode::Quiet { ProgressMode::Log } else { opts.progress };
        let mut progress = Progress::new(mode, planned, iteration);
        if opts.resume && !restore {
            progress.line(&format!(
                "restarting {} from the beginning: it stopped before its first checkpoint",
                dir.display()
            ));
        } else if opts.resume {
            progress.line(&format!(
                "resuming {} at epoch {}, iteration {} of {planned}",
                dir.display(),
                pos.epochs_done + 1,
                iteration
            ));
        }
        loops.push(RunLoop {
            exp,
            opts,
            replica: r,
            // The run directories of a sweep tell its points apart; the experiment names do not.
            label: (replicas > 1)
                .then(|| dir.file_name().map_or(exp.name.clone(), |n| n.to_string_lossy().into_owned())),
            data,
            dir,
            csv,
            norms,
            progress,
            neuron_steps: (cfg.state_blocks().iter().sum::<usize>() * cfg.steps) as f64,
            batches_per_epoch,
            pos,
            started: Instant::now(),
            last_checkpoint: restore.then_some(iteration),
            last_test: None,
            failed: None,
        });
    }
    engine.set_updates(updates.unwrap_or(0));
    let mut pack = Pack { engine, runs: loops };
    let stopped = pack.run()?;
    Ok(pack
        .runs
        .into_iter()
        .map(|mut run| {
            run.progress.finish();
            if let Some(error) = run.failed.take() {
                return Err(error);
            }
            Ok(RunSummary {
                metrics: run.dir.join(METRICS_FILE),
                checkpoint: run.checkpoint_path(),
                iterations: run.pos.iteration,
                epochs_done: run.pos.epochs_done,
                last_test: run.last_test.clone(),
                interrupted: stopped == Some(Stop::Signal),
                time_limited: stopped == Some(Stop::TimeLimit),
                elapsed_s: run.elapsed(),
                adapter: ctx.adapter_name().to_string(),
                dir: run.dir,
            })
        })
        .collect())
}

/// What runs packed as replicas must share: the experiment with its seed, learning rate, α, β,
/// clip, name and output directory set aside (everything that shapes the training loop, the
/// data and the network stays). Two runs with equal keys step together bit for bit as alone.
pub fn pack_key(exp: &Experiment) -> Experiment {
    let mut e = exp.clone();
    e.seed = 0;
    e.name = String::new();
    e.output.dir = None;
    e.train.lr = 0.0;
    e.train.alpha = 0.0;
    e.train.beta = 0.0;
    e.train.clip = 0.0;
    // A run's own seed draws its data (adding batches, image order, permutation): a different
    // permutation of PS-MNIST is a different input, but the same shapes, so it may pack.
    e.data.permutation_seed = 0;
    e
}
