//! Runs: experiment files (with `--set` overrides), the training loop over epochs with evaluation,
//! the reset policy and LR schedule, `metrics.csv`, `config.toml`, checkpoints and exact resume.
//! This is the one module that sees everything else (data, model, engine, checkpoints).
//!
//! - [`experiment`]: the typed experiment and its TOML form (every key declared once in
//!   [`experiment::keys`], which `experiments/README.md` is checked against).
//! - [`metrics`]: the CSV writers: `metrics.csv` (columns [`metrics::COLUMNS`]) and `norms.csv`.
//! - [`diagnostics`]: per-layer norms of `W`, `W̄`, `W − W̄` and `λ` at an evaluation.
//! - [`progress`]: the progress bar or log lines on stderr.
//! - `trainer`: [`train`], the loop itself; [`train_pack`], several runs as replicas of one engine.
//! - `resume`: continuing a run: its `config.toml`, `[run]` record and checkpoint position.
//! - `run_dir`: the run's directory: its name, exclusive creation, `config.toml`, atomic rewrites.
//! - [`stream`]: `fptt stream`, online training on an endless stream (its own experiment file).
//! - [`summary`]: `fptt summarize`, one line per run directory.
//! - [`sweep`]: `fptt sweep`, a grid of runs (points of `--set` overrides) with an index, resume
//!   and slices; runs that differ only in seed and scalar hyperparameters train as replicas.
//! - [`dry_run`]: `fptt train --dry-run`, the network, its parameters and GPU memory from the
//!   shapes alone; the experiment file of `fptt bench memory --experiment`, read for `bench`.

pub mod diagnostics;
pub mod dry_run;
pub mod experiment;
pub mod metrics;
pub mod progress;
mod resume;
mod run_dir;
pub mod stream;
pub mod summary;
pub mod sweep;
mod trainer;

use std::path::PathBuf;

pub use experiment::{Experiment, ExperimentError, LrSchedule, Membrane, ResetPolicy, Task, WeightSet};
pub use metrics::{MetricsWriter, Row, SplitKind, COLUMNS};
pub use progress::ProgressMode;
pub use resume::resume_experiment;
pub use run_dir::command_line;
pub use trainer::{
    pack_key, train, train_pack, RunSummary, TrainOptions, CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, NORMS_FILE,
};

use crate::checkpoint::CheckpointError;
use crate::data::DataError;
use crate::gpu::GpuError;
use crate::learn::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    StreamConfig(#[from] stream::StreamConfigError),
    /// A stream's source failed: the file and line, and why.
    #[error("stream source: {0}")]
    Source(String),
    /// Writing into the run directory failed.
    #[error("{}: {message}", path.display())]
    Output { path: PathBuf, message: String },
    /// The run cannot start as asked (output directory taken, batch larger than the data, …).
    #[error("{0}")]
    Setup(String),
    #[error("cannot resume from {}: {message}", dir.display())]
    Resume { dir: PathBuf, message: String },
    #[error("training diverged at update {update} (iteration {iteration}, time step {step}: loss {loss}); {kept}")]
    Diverged { update: u64, iteration: u64, step: usize, loss: f32, kept: String },
}
