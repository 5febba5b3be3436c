//! Experiment files: TOML with `name`, `seed` and the sections `[data]`, `[model]`, `[train]`,
//! `[output]`, parsed into a typed [`Experiment`] with every default filled in. `--set
//! section.key=value` overrides are merged before parsing. Unknown keys, wrong types and
//! out-of-range values are refused before any work, naming the file (and the `--set` argument),
//! the key and what was expected. [`Experiment::to_toml`] writes the fully resolved experiment,
//! which parses back to the same value (that is what `config.toml` in a run directory holds).
//!
//! - [`keys`]: the one declaration of every key (kind, default, range, meaning), from which the
//!   parser, the writer's key order and `experiments/README.md`'s key tables all follow.
//! - `parse`: text (and `--set`) to [`Experiment`], every check and its message.
//! - here: the typed experiment, what it derives (the network, the engine settings, the LR of an
//!   epoch) and its resolved TOML form.

pub mod keys;
mod parse;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use toml::{Table, Value};

pub use keys::{KEYS, SCHEMA};

use crate::data::events::{FrameSpec, SplitBy, DVS128_SIZE, GESTURE_CLASSES, NMNIST_SIZE};
use crate::model::{ModelConfig, NeuronKind, ThresholdMode};
use crate::settings::{AuxTargets, Feedback, LearningRule, LossKind, Optimizer, TrainingSettings};

/// Pixels of one MNIST / Fashion-MNIST image (28 × 28).
pub const IMAGE_PIXELS: usize = 784;
/// Classes of the image tasks.
pub const IMAGE_CLASSES: usize = 10;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExperimentError {
    #[error("{origin}: cannot read the experiment file: {message}")]
    Io { origin: String, message: String },
    #[error("{origin}: not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    /// A key that is unknown, of the wrong type or out of range.
    #[error("{origin}: {key}: {message}")]
    Key { origin: String, key: String, message: String },
    #[error("--set {arg}: {message}")]
    Set { arg: String, message: String },
}

type Result<T> = std::result::Result<T, ExperimentError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Adding,
    Smnist,
    Psmnist,
    FashionMnist,
    /// MNIST digits as synthetic event streams (`data::events`, nmnist-synth), one frame per step.
    NmnistSynth,
    /// DVS128 Gesture as distributed, one frame per step.
    DvsGesture,
    /// A directory of `.npz`/`.npy` event files in class folders (`data.dir`, `data.sensor`),
    /// one frame per step; the classes are the folders.
    Events,
}

impl Task {
    pub const ALL: [(&'static str, Task); 7] = [
        ("adding", Task::Adding),
        ("smnist", Task::Smnist),
        ("psmnist", Task::Psmnist),
        ("fashion-mnist", Task::FashionMnist),
        ("nmnist-synth", Task::NmnistSynth),
        ("dvs-gesture", Task::DvsGesture),
        ("events", Task::Events),
    ];

    pub fn name(self) -> &'static str {
        Task::ALL.iter().find(|(_, t)| *t == self).map(|(n, _)| *n).unwrap_or("?")
    }

    pub fn is_classification(self) -> bool {
        self != Task::Adding
    }

    /// Event-camera tasks: inputs are frames of `2·H'·W'` event counts, `data.frames` steps.
    pub fn is_events(self) -> bool {
        matches!(self, Task::NmnistSynth | Task::DvsGesture | Task::Events)
    }

    /// The sensor `(width, height)` and classes of an event task that fixes them (not `events`,
    /// whose experiment names its sensor and whose folders are its classes:
    /// [`DataSection::sensor_and_classes`]).
    pub fn sensor_and_classes(self) -> Option<((u16, u16), usize)> {
        match self {
            Task::NmnistSynth => Some((NMNIST_SIZE, IMAGE_CLASSES)),
            Task::DvsGesture => Some((DVS128_SIZE, GESTURE_CLASSES)),
            _ => None,
        }
    }
}

/// The classes an `events` network is shaped for while its class folders are not counted and
/// `data.classes` is not given: in the parser's checks, `--dry-run` and `fptt bench`, which read
/// no data. Training counts the folders first (`run::trainer`), so it never trains this guess.
pub const ASSUMED_EVENT_CLASSES: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membrane {
    /// `m ~ U[0,1)` from a dedicated seeded stream (method §1).
    Uniform,
    /// `m = 0` (the authors' adding task).
    Zero,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPolicy {
    /// `W ← W̄` at the end of every epoch, after both weight sets are evaluated (method §5).
    Epoch,
    /// After every training sequence.
    Sequence,
    Never,
}

/// Which weight set's test metrics are the run's result. FPTT evaluates both at every
/// evaluation (the `weights` column of `metrics.csv`); this picks the one the console summary and
/// `fptt summarize` (final and best) report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightSet {
    /// The weights training is at, `W`.
    Current,
    /// FPTT's running mean `W̄` (what the reset `W ← W̄` installs).
    RunningMean,
}

impl WeightSet {
    /// The name in `metrics.csv` and in experiment files.
    pub fn name(self) -> &'static str {
        match self {
            WeightSet::Current => "current",
            WeightSet::RunningMean => "running_mean",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrSchedule {
    None,
    /// Multiply by `lr_decay_factor` after each epoch listed in `lr_decay_epochs`.
    Step,
    /// Cosine annealing from `lr` to 0 over `epochs` (per epoch).
    Cosine,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataSection {
    pub task: Task,
    /// Directory of the IDX files (image tasks).
    pub dir: PathBuf,
    /// Sequence length `T`: the adding problem's length; `784 / pixels_per_step` for images.
    pub steps: usize,
    pub pixels_per_step: usize,
    /// Seed of the PS-MNIST permutation (recorded for every task, used by psmnist only).
    pub permutation_seed: u64,
    pub shuffle: bool,
    /// 0 = the whole split.
    pub max_train_samples: usize,
    pub max_test_samples: usize,
    pub initial_membrane: Membrane,
    /// Event tasks: frames per sample (= `steps`), how events are split into them, the spatial
    /// down-sampling factor, and (nmnist-synth) where generated splits are cached.
    pub frames: usize,
    pub split_by: SplitBy,
    pub downsample: usize,
    pub cache_dir: PathBuf,
    /// `events`: the sensor `(width, height)` (`None` for the other tasks).
    pub sensor: Option<(u16, u16)>,
    /// `events`: the number of classes, if given or counted from the folders (`None` otherwise).
    pub classes: Option<usize>,
}

impl DataSection {
    /// An event task's sensor `(width, height)` and classes (`events` without a class count:
    /// [`ASSUMED_EVENT_CLASSES`]); `None` for the other tasks.
    pub fn sensor_and_classes(&self) -> Option<((u16, u16), usize)> {
        match self.task {
            Task::Events => Some((self.sensor?, self.classes.unwrap_or(ASSUMED_EVENT_CLASSES))),
            task => task.sensor_and_classes(),
        }
    }

    /// The frame binning of an event task.
    pub fn frame_spec(&self) -> FrameSpec {
        FrameSpec { frames: self.frames, split_by: self.split_by, downsample: self.downsample }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSection {
    pub hidden: Vec<usize>,
    /// The hidden layers' neuron: LTC (the default), ALIF or LIF (method §7).
    pub neuron: NeuronKind,
    pub adaptive_threshold: bool,
    pub fixed_threshold: f64,
    pub fused_recurrent: bool,
    pub trainable_slopes: bool,
    pub batch_norm: bool,
    /// Convolutional cells before the dense layer (event tasks; empty: none).
    pub conv: Vec<crate::model::conv::ConvCell>,
    pub conv_pool: bool,
    pub dropout: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainSection {
    /// FPTT with its `chunk`, BPTT, or e-prop with its options (the `eprop_*` keys). BPTT and
    /// e-prop update with a plain optimizer step: their `reset` is always `Never`.
    pub rule: LearningRule,
    pub optimizer: Optimizer,
    pub lr: f64,
    pub alpha: f64,
    pub beta: f64,
    pub clip: f64,
    pub batch: usize,
    pub epochs: usize,
    /// 0 = unlimited.
    pub max_iterations: u64,
    pub aux: AuxTargets,
    pub aux_uniform_epochs: usize,
    pub reset: ResetPolicy,
    /// The result's weight set (always `Current` for BPTT and e-prop).
    pub report_weights: WeightSet,
    /// Evaluate with each test batch's own batch-norm statistics instead of the running ones.
    pub eval_batch_stats: bool,
    /// Also evaluate this many training samples with frozen weights (image tasks; 0 = none).
    pub eval_train_samples: usize,
    pub lr_schedule: LrSchedule,
    pub lr_decay_epochs: Vec<usize>,
    pub lr_decay_factor: f64,
    /// Adding task: iterations per epoch (evaluation, reset and checkpoint after each).
    pub eval_every: u64,
    /// Adding task: fresh batches per evaluation.
    pub eval_batches: usize,
    /// Extra checkpoints every N iterations (0 = only at epoch ends).
    pub checkpoint_every: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputSection {
    /// `None`: `results/<name>-<UTC timestamp>`.
    pub dir: Option<PathBuf>,
    pub report_every: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: String,
    pub seed: u64,
    pub data: DataSection,
    pub model: ModelSection,
    pub train: TrainSection,
    pub output: OutputSection,
}

/// The section `fptt train` adds to `config.toml`; read back without checks.
pub const RUN_SECTION: &str = "run";

impl Experiment {
    /// The network this experiment trains.
    pub fn model_config(&self) -> ModelConfig {
        if let Some(spec) = self.conv_net() {
            return ModelConfig::convolutional(spec);
        }
        let (inputs, outputs) = match self.data.sensor_and_classes() {
            // One frame per step, flattened: 2·H'·W' inputs.
            Some(((w, h), classes)) => (self.data.frame_spec().frame_len(w, h), classes),
            None if self.data.task == Task::Adding => (2, 1),
            None => (self.data.pixels_per_step, IMAGE_CLASSES),
        };
        ModelConfig {
            inputs,
            hidden: self.model.hidden.clone(),
            outputs,
            steps: self.data.steps,
            threshold: if self.model.adaptive_threshold {
                ThresholdMode::Adaptive
            } else {
                ThresholdMode::Fixed(self.model.fixed_threshold as f32)
            },
            fused_recurrent: self.model.fused_recurrent,
            trainable_slopes: self.model.trainable_slopes,
            batch_norm: self.model.batch_norm,
            neuron: self.model.neuron,
            conv: None,
        }
    }

    /// The convolutional network of an experiment with conv cells (event tasks): input frames of
    /// 2 × H' × W', the cells, the dense layer `hidden[0]`, the task's classes. The readout
    /// carries the authors' `tau_m_o` so that checkpoints move both ways (docs/method.md §9).
    pub fn conv_net(&self) -> Option<crate::model::conv::ConvNetSpec> {
        if self.model.conv.is_empty() {
            return None;
        }
        let ((w, h), classes) = self.data.sensor_and_classes()?;
        let (height, width) = self.data.frame_spec().pooled(w, h);
        Some(crate::model::conv::ConvNetSpec {
            in_channels: 2,
            height,
            width,
            cells: self.model.conv.clone(),
            pool: self.model.conv_pool,
            dropout: self.model.dropout as f32,
            hidden: self.model.hidden[0],
            dense_recurrent: false,
            classes,
            tau_m_o: true,
            steps: self.data.steps,
        })
    }

    /// The engine's settings for this experiment (the loss starts with epoch 0's auxiliary
    /// targets; the training loop changes them and the learning rate per epoch).
    pub fn settings(&self) -> TrainingSettings {
        let t = &self.train;
        let loss = if self.data.task.is_classification() {
            LossKind::Classification { aux: self.aux_at_epoch(0) }
        } else {
            LossKind::Regression
        };
        TrainingSettings {
            optimizer: t.optimizer,
            lr: t.lr as f32,
            alpha: t.alpha as f32,
            beta: t.beta as f32,
            clip: t.clip as f32,
            loss,
            rule: t.rule,
        }
    }

    /// The resolved experiment as a TOML table: every key of [`KEYS`] that applies (`chunk` with
    /// FPTT only, the `eprop_*` keys with e-prop only), in the table's order, defaults filled in.
    pub fn to_table(&self) -> Table {
        let mut root = Table::new();
        for key in KEYS {
            let Some(value) = self.resolved(key.section, key.name) else { continue };
            if key.section.is_empty() {
                root.insert(key.name.into(), value);
            } else if let Value::Table(section) = root.entry(key.section).or_insert_with(|| Value::Table(Table::new()))
            {
                section.insert(key.name.into(), value);
            }
        }
        root
    }

    /// The value of one key as `config.toml` writes it; `None` where the key does not apply.
    fn resolved(&self, section: &str, name: &str) -> Option<Value> {
        use keys::name_of;
        let int = |x: u64| Value::Integer(x as i64);
        let s = |x: &str| Value::String(x.to_string());
        let ints = |v: &[usize]| Value::Array(v.iter().map(|&x| int(x as u64)).collect());
        let (d, m, t) = (&self.data, &self.model, &self.train);
        let eprop = match t.rule {
            LearningRule::Eprop(e) => Some(e),
            _ => None,
        };
        Some(match (section, name) {
            ("", "name") => s(&self.name),
            ("", "seed") => int(self.seed),
            ("data", "task") => s(d.task.name()),
            ("data", "dir") => s(&d.dir.to_string_lossy()),
            ("data", "steps") => int(d.steps as u64),
            ("data", "pixels_per_step") if !d.task.is_events() => int(d.pixels_per_step as u64),
            ("data", "frames" | "split_by" | "downsample") if !d.task.is_events() => return None,
            ("data", "pixels_per_step") => return None,
            ("data", "frames") => int(d.frames as u64),
            ("data", "split_by") => s(keys::name_of(&SplitBy::ALL, d.split_by)),
            ("data", "downsample") => int(d.downsample as u64),
            ("data", "cache_dir") if d.task == Task::NmnistSynth => s(&d.cache_dir.to_string_lossy()),
            ("data", "cache_dir") => return None,
            ("data", "sensor") => {
                let (w, h) = d.sensor?;
                Value::Array(vec![int(w as u64), int(h as u64)])
            }
            ("data", "classes") => int(d.classes? as u64),
            ("data", "permutation_seed") => int(d.permutation_seed),
            ("data", "shuffle") => Value::Boolean(d.shuffle),
            ("data", "max_train_samples") => int(d.max_train_samples as u64),
            ("data", "max_test_samples") => int(d.max_test_samples as u64),
            ("data", "initial_membrane") => s(name_of(&keys::MEMBRANES, d.initial_membrane)),
            ("model", "hidden") => ints(&m.hidden),
            ("model", "neuron") => s(m.neuron.name()),
            ("model", "threshold") => s(name_of(&keys::THRESHOLDS, m.adaptive_threshold)),
            ("model", "fixed_threshold") => Value::Float(m.fixed_threshold),
            ("model", "fused_recurrent") => Value::Boolean(m.fused_recurrent),
            ("model", "trainable_slopes") => Value::Boolean(m.trainable_slopes),
            ("model", "batch_norm") => Value::Boolean(m.batch_norm),
            ("model", "conv_channels" | "conv_kernels" | "conv_pool" | "dropout") if m.conv.is_empty() => return None,
            ("model", "conv_channels") => Value::Array(m.conv.iter().map(|c| int(c.out_channels as u64)).collect()),
            ("model", "conv_kernels") => Value::Array(m.conv.iter().map(|c| int(c.kernel as u64)).collect()),
            ("model", "conv_pool") => Value::Boolean(m.conv_pool),
            ("model", "dropout") => Value::Float(m.dropout),
            ("train", "rule") => s(match t.rule {
                LearningRule::Fptt { .. } => "fptt",
                LearningRule::Bptt => "bptt",
                LearningRule::Eprop(_) => "eprop",
            }),
            ("train", "chunk") => match t.rule {
                LearningRule::Fptt { chunk } => int(chunk as u64),
                _ => return None,
            },
            ("train", "eprop_update") => s(name_of(&keys::EPROP_UPDATES, eprop?.update_every_step)),
            ("train", "eprop_feedback") => {
                s(name_of(&keys::EPROP_FEEDBACKS, matches!(eprop?.feedback, Feedback::Random { .. })))
            }
            ("train", "eprop_feedback_seed") => match eprop?.feedback {
                Feedback::Random { seed } => int(seed),
                Feedback::Symmetric => return None,
            },
            ("train", "eprop_readout_filter") => Value::Boolean(eprop?.readout_filter),
            ("train", "eprop_reset_in_trace") => Value::Boolean(eprop?.reset_in_trace),
            ("train", "optimizer") => s(name_of(&keys::OPTIMIZERS, t.optimizer)),
            ("train", "lr") => Value::Float(t.lr),
            ("train", "alpha") => Value::Float(t.alpha),
            ("train", "beta") => Value::Float(t.beta),
            ("train", "clip") => Value::Float(t.clip),
            ("train", "batch") => int(t.batch as u64),
            ("train", "epochs") => int(t.epochs as u64),
            ("train", "max_iterations") => int(t.max_iterations),
            ("train", "aux") => s(name_of(&keys::AUX_TARGETS, t.aux)),
            ("train", "aux_uniform_epochs") => int(t.aux_uniform_epochs as u64),
            ("train", "reset") => s(name_of(&keys::RESETS, t.reset)),
            ("train", "report_weights") => s(name_of(&keys::WEIGHT_SETS, t.report_weights)),
            ("train", "eval_batch_norm") => s(name_of(&keys::EVAL_NORMS, t.eval_batch_stats)),
            ("train", "eval_train_samples") => int(t.eval_train_samples as u64),
            ("train", "lr_schedule") => s(name_of(&keys::LR_SCHEDULES, t.lr_schedule)),
            ("train", "lr_decay_epochs") => ints(&t.lr_decay_epochs),
            ("train", "lr_decay_factor") => Value::Float(t.lr_decay_factor),
            ("train", "eval_every") => int(t.eval_every),
            ("train", "eval_batches") => int(t.eval_batches as u64),
            ("train", "checkpoint_every") => int(t.checkpoint_every),
            ("output", "dir") => s(&self.output.dir.as_ref()?.to_string_lossy()),
            ("output", "report_every") => int(self.output.report_every),
            // A key declared in the table but not written here: every to_table call (and so
            // every round-trip test) stops on it.
            _ => panic!("`{section}.{name}` has no resolved value in Experiment::resolved"),
        })
    }

    /// [`Experiment::to_table`] as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.to_table()).expect("a table of plain values serialises")
    }

    /// The learning rate of (0-based) epoch `epoch` under the schedule.
    pub fn lr_at_epoch(&self, epoch: usize) -> f64 {
        let t = &self.train;
        match t.lr_schedule {
            LrSchedule::None => t.lr,
            LrSchedule::Step => {
                let decays = t.lr_decay_epochs.iter().filter(|&&m| m <= epoch).count();
                t.lr * t.lr_decay_factor.powi(decays as i32)
            }
            LrSchedule::Cosine => {
                let e = epoch.min(t.epochs) as f64;
                t.lr * 0.5 * (1.0 + (std::f64::consts::PI * e / t.epochs as f64).cos())
            }
        }
    }

    /// The auxiliary targets during (0-based) epoch `epoch`.
    pub fn aux_at_epoch(&self, epoch: usize) -> AuxTargets {
        if epoch < self.train.aux_uniform_epochs && self.train.aux != AuxTargets::Off {
            AuxTargets::Uniform
        } else {
            self.train.aux
        }
    }
}
