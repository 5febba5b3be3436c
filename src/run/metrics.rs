//! `metrics.csv`: one row per report (`train`) and per evaluation (`test`), flushed after every
//! row so that a killed run leaves every row it reported. Empty cells where a column does not
//! apply (accuracy for regression, mse for classification, the norms on `train` rows).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::diagnostics::LayerNorms;
use super::experiment::WeightSet;
use super::RunError;

/// The columns, in order.
pub const COLUMNS: [&str; 18] = [
    "run",
    "epoch",
    "iteration",
    "split",
    "weights",
    "loss",
    "accuracy",
    "mse",
    "firing_rate",
    "w_minus_wbar_norm",
    "lambda_norm",
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
    /// Training batches as they trained (the weights change within each sequence).
    Train,
    Test,
    /// The first `train.eval_train_samples` training samples, evaluated with frozen weights.
    TrainFrozen,
}

impl SplitKind {
    pub fn name(self) -> &'static str {
        match self {
            SplitKind::Train => "train",
            SplitKind::Test => "test",
            SplitKind::TrainFrozen => "train_frozen",
        }
    }
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub epoch: usize,
    pub iteration: u64,
    pub split: SplitKind,
    /// The weights the row measured: `current` (every `train` row) or `running_mean`.
    pub weights: WeightSet,
    /// Mean over samples of the sequence loss `Σ_t ℓ_t`.
    pub loss: f64,
    pub accuracy: Option<f64>,
    pub mse: Option<f64>,
    pub firing_rate: f64,
    /// FPTT's `‖W − W̄‖` and `‖λ‖` over the whole network at an evaluation, before any reset
    /// (`norms.csv` has them per layer).
    pub w_minus_wbar_norm: Option<f64>,
    pub lambda_norm: Option<f64>,
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

/// An append-only CSV of one run with a fixed header, flushed after every row; on resume, the rows
/// past the checkpoint are dropped.
struct CsvLog {
    path: PathBuf,
    writer: csv::Writer<File>,
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> RunError + '_ {
    move |e| RunError::Output { path: path.to_path_buf(), message: e.to_string() }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |e| RunError::Output { path: path.to_path_buf(), message: e.to_string() }
}

impl CsvLog {
    fn create(path: &Path, columns: &[&str]) -> Result<Self, RunError> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut writer = csv::Writer::from_writer(file);
        writer.write_record(columns).map_err(csv_err(path))?;
        writer.flush().map_err(io_err(path))?;
        Ok(CsvLog { path: path.to_path_buf(), writer })
    }

    /// Keep the rows up to `iteration` (later ones were written after the checkpoint the run
    /// resumes from, by the process that was stopped), then append. Columns are matched by
    /// name, so a file of an earlier version (fewer columns) carries over with the new ones
    /// empty; a missing file starts anew.
    fn resume(path: &Path, columns: &[&str], iteration: u64) -> Result<Self, RunError> {
        let mut kept: Vec<Vec<String>> = Vec::new();
        if path.exists() {
            let mut reader = csv::Reader::from_path(path).map_err(csv_err(path))?;
            let header = reader.headers().map_err(csv_err(path))?.clone();
            let source: Vec<Option<usize>> = columns.iter().map(|c| header.iter().position(|h| h == *c)).collect();
            let it = header.iter().position(|h| h == "iteration");
            for record in reader.records() {
                // A line cut short by a kill is dropped along with anything after it.
                let Ok(record) = record else { break };
                if record.len() != header.len() {
                    break;
                }
                match it.and_then(|c| record.get(c)).and_then(|s| s.parse::<u64>().ok()) {
                    Some(i) if i <= iteration => kept
                        .push(source.iter().map(|c| c.and_then(|c| record.get(c)).unwrap_or("").to_string()).collect()),
                    _ => {}
                }
            }
        }
        // The kept rows replace the file atomically (a kill while rewriting keeps the old
        // file), then the writer appends.
        let mut text = csv::Writer::from_writer(Vec::new());
        text.write_record(columns).map_err(csv_err(path))?;
        for r in &kept {
            text.write_record(r).map_err(csv_err(path))?;
        }
        let bytes = text.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
        // The kill point is the file's stem (`metrics`, `norms`).
        let point = path.file_stem().and_then(|s| s.to_str()).unwrap_or("csv");
        crate::files::write_atomic(path, &bytes, point).map_err(io_err(path))?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(io_err(path))?;
        Ok(CsvLog { path: path.to_path_buf(), writer: csv::Writer::from_writer(file) })
    }

    fn write(&mut self, record: &[String]) -> Result<(), RunError> {
        self.writer.write_record(record).map_err(csv_err(&self.path))?;
        self.writer.flush().map_err(io_err(&self.path))
    }
}

pub struct MetricsWriter {
    log: CsvLog,
    ctx: RowContext,
}

impl MetricsWriter {
    /// A new file with the header.
    pub fn create(path: &Path, ctx: RowContext) -> Result<Self, RunError> {
        Ok(MetricsWriter { log: CsvLog::create(path, &COLUMNS)?, ctx })
    }

    /// Continue a resumed run's file (rows past `iteration` dropped).
    pub fn resume(path: &Path, iteration: u64, ctx: RowContext) -> Result<Self, RunError> {
        Ok(MetricsWriter { log: CsvLog::resume(path, &COLUMNS, iteration)?, ctx })
    }

    pub fn set_gpu_bytes(&mut self, bytes: u64) {
        self.ctx.gpu_bytes = bytes;
    }

    pub fn path(&self) -> &Path {
        &self.log.path
    }

    pub fn write(&mut self, row: &Row) -> Result<(), RunError> {
        let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        let record = [
            self.ctx.run.clone(),
            row.epoch.to_string(),
            row.iteration.to_string(),
            row.split.name().to_string(),
            row.weights.name().to_string(),
            row.loss.to_string(),
            opt(row.accuracy),
            opt(row.mse),
            row.firing_rate.to_string(),
            opt(row.w_minus_wbar_norm),
            opt(row.lambda_norm),
            // The engine runs in f32: print that value, shortest form (0.003, not 0.0030000000261).
            (row.lr as f32).to_string(),
            format!("{:.3}", row.samples_per_s),
            format!("{:.3}", row.elapsed_s),
            self.ctx.gpu_bytes.to_string(),
            self.ctx.adapter.clone(),
            self.ctx.backend.clone(),
            self.ctx.device_type.clone(),
        ];
        self.log.write(&record)
    }
}

/// `norms.csv`'s columns: one row per layer and FPTT evaluation.
pub const NORM_COLUMNS: [&str; 11] = [
    "run",
    "epoch",
    "iteration",
    "layer",
    "w_norm",
    "wbar_norm",
    "w_minus_wbar_norm",
    "lambda_norm",
    "adapter",
    "backend",
    "device_type",
];

/// `norms.csv`: per layer, `‖W‖`, `‖W̄‖`, `‖W − W̄‖` and `‖λ‖` at every evaluation (FPTT runs).
pub struct NormsWriter {
    log: CsvLog,
    ctx: RowContext,
}

impl NormsWriter {
    pub fn create(path: &Path, ctx: RowContext) -> Result<Self, RunError> {
        Ok(NormsWriter { log: CsvLog::create(path, &NORM_COLUMNS)?, ctx })
    }

    pub fn resume(path: &Path, iteration: u64, ctx: RowContext) -> Result<Self, RunError> {
        Ok(NormsWriter { log: CsvLog::resume(path, &NORM_COLUMNS, iteration)?, ctx })
    }

    pub fn write(&mut self, epoch: usize, iteration: u64, layers: &[LayerNorms]) -> Result<(), RunError> {
        for l in layers {
            let record = [
                self.ctx.run.clone(),
                epoch.to_string(),
                iteration.to_string(),
                l.layer.clone(),
                l.w.to_string(),
                l.wbar.to_string(),
                l.w_minus_wbar.to_string(),
                l.lambda.to_string(),
                self.ctx.adapter.clone(),
                self.ctx.backend.clone(),
                self.ctx.device_type.clone(),
            ];
            self.log.write(&record)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RowContext {
        RowContext {
            run: "r".into(),
            gpu_bytes: 7,
            adapter: "A".into(),
            backend: "vulkan".into(),
            device_type: "cpu".into(),
        }
    }

    /// A `metrics.csv` of the version before the `weights` and norm columns resumes with its rows
    /// kept, by column name, the new cells empty, and the rows past the checkpoint dropped.
    #[test]
    fn an_earlier_versions_file_resumes_by_column_name() {
        let dir = std::env::temp_dir().join(format!("fptt-metrics-legacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        std::fs::write(
            &path,
            "run,epoch,iteration,split,loss,accuracy,mse,firing_rate,lr,samples_per_s,elapsed_s,gpu_bytes,adapter,backend,device_type\n\
             r,1,10,train,2.5,,0.1,0.2,0.003,100.000,1.000,7,A,vulkan,cpu\n\
             r,1,10,test,2.0,,0.09,0.2,0.003,90.000,1.500,7,A,vulkan,cpu\n\
             r,2,20,train,1.5,,0.05,0.2,0.003,100.000,2.000,7,A,vulkan,cpu\n",
        )
        .unwrap();
        let mut w = MetricsWriter::resume(&path, 10, ctx()).unwrap();
        w.write(&Row {
            epoch: 2,
            iteration: 11,
            split: SplitKind::Train,
            weights: WeightSet::Current,
            loss: 1.25,
            accuracy: None,
            mse: Some(0.04),
            firing_rate: 0.25,
            w_minus_wbar_norm: None,
            lambda_norm: None,
            lr: 0.003,
            samples_per_s: 50.0,
            elapsed_s: 3.0,
        })
        .unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], COLUMNS.join(","));
        assert_eq!(lines[1], "r,1,10,train,,2.5,,0.1,0.2,,,0.003,100.000,1.000,7,A,vulkan,cpu");
        assert_eq!(lines[2], "r,1,10,test,,2.0,,0.09,0.2,,,0.003,90.000,1.500,7,A,vulkan,cpu");
        assert_eq!(lines[3], "r,2,11,train,current,1.25,,0.04,0.25,,,0.003,50.000,3.000,7,A,vulkan,cpu");
        assert_eq!(lines.len(), 4, "the row past the checkpoint (iteration 20) is dropped");
        std::fs::remove_dir_all(&dir).ok();
    }
}
