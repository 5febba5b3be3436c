//! `metrics.csv`: one row per report (`train`) and per evaluation (`test`), flushed after every
//! row so that a killed run leaves every row it reported. Empty cells where a column does not
//! apply (accuracy for regression, mse for classification).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::RunError;

/// The columns, in order.
pub const COLUMNS: [&str; 15] = [
    "run",
    "epoch",
    "iteration",
    "split",
    "loss",
    "accuracy",
    "mse",
    "firing_rate",
    "lr",
    "samples_per_s",
    "elapsed_s",
    "gpu_bytes",
    "adapter",
    "backend",
    "device_type",
];

/// Which rows a CSV line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    Train,
    Test,
}

impl SplitKind {
    pub fn name(self) -> &'static str {
        match self {
            SplitKind::Train => "train",
            SplitKind::Test => "test",
        }
    }
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub epoch: usize,
    pub iteration: u64,
    pub split: SplitKind,
    /// Mean over samples of the sequence loss `Σ_t ℓ_t`.
    pub loss: f64,
    pub accuracy: Option<f64>,
    pub mse: Option<f64>,
    pub firing_rate: f64,
    pub lr: f64,
    pub samples_per_s: f64,
    pub elapsed_s: f64,
}

/// The per-run constants of every row.
#[derive(Debug, Clone)]
pub struct RowContext {
    pub run: String,
    pub gpu_bytes: u64,
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
}

pub struct MetricsWriter {
    path: PathBuf,
    writer: csv::Writer<File>,
    ctx: RowContext,
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> RunError + '_ {
    move |e| RunError::Output { path: path.to_path_buf(), message: e.to_string() }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |e| RunError::Output { path: path.to_path_buf(), message: e.to_string() }
}

impl MetricsWriter {
    /// A new file with the header.
    pub fn create(path: &Path, ctx: RowContext) -> Result<Self, RunError> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut writer = csv::Writer::from_writer(file);
        writer.write_record(COLUMNS).map_err(csv_err(path))?;
        writer.flush().map_err(io_err(path))?;
        Ok(MetricsWriter { path: path.to_path_buf(), writer, ctx })
    }

    /// Continue a resumed run's file: rows past `iteration` (written after the checkpoint the run
    /// resumes from, by the process that was stopped) are dropped, the rest kept.
    pub fn resume(path: &Path, iteration: u64, ctx: RowContext) -> Result<Self, RunError> {
        let mut kept: Vec<csv::StringRecord> = Vec::new();
        if path.exists() {
            let mut reader = csv::Reader::from_path(path).map_err(csv_err(path))?;
            let it = COLUMNS.iter().position(|c| *c == "iteration").unwrap_or(2);
            for record in reader.records() {
                // A line cut short by a kill is dropped along with anything after it.
                let Ok(record) = record else { break };
                if record.len() != COLUMNS.len() {
                    break;
                }
                match record.get(it).and_then(|s| s.parse::<u64>().ok()) {
                    Some(i) if i <= iteration => kept.push(record),
                    _ => {}
                }
            }
        }
        // The kept rows replace the file atomically (a kill while rewriting keeps the old
        // file), then the writer appends.
        let mut text = csv::Writer::from_writer(Vec::new());
        text.write_record(COLUMNS).map_err(csv_err(path))?;
        for r in &kept {
            text.write_record(r).map_err(csv_err(path))?;
        }
        let bytes = text.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
        crate::files::write_atomic(path, &bytes, "metrics").map_err(io_err(path))?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(io_err(path))?;
        Ok(MetricsWriter { path: path.to_path_buf(), writer: csv::Writer::from_writer(file), ctx })
    }

    pub fn set_gpu_bytes(&mut self, bytes: u64) {
        self.ctx.gpu_bytes = bytes;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, row: &Row) -> Result<(), RunError> {
        let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        let record = [
            self.ctx.run.clone(),
            row.epoch.to_string(),
            row.iteration.to_string(),
            row.split.name().to_string(),
            row.loss.to_string(),
            opt(row.accuracy),
            opt(row.mse),
            row.firing_rate.to_string(),
            // The engine runs in f32: print that value, shortest form (0.003, not 0.0030000000261).
            (row.lr as f32).to_string(),
            format!("{:.3}", row.samples_per_s),
            format!("{:.3}", row.elapsed_s),
            self.ctx.gpu_bytes.to_string(),
            self.ctx.adapter.clone(),
            self.ctx.backend.clone(),
            self.ctx.device_type.clone(),
        ];
        self.writer.write_record(&record).map_err(csv_err(&self.path))?;
        self.writer.flush().map_err(io_err(&self.path))
    }
}
