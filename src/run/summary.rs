//! `fptt summarize`: one line per finished (or stopped) run directory, read from its
//! `config.toml` and `metrics.csv`, so that runs of different rules, neurons and lengths line up in
//! one table (printed as Markdown) and one CSV (for plotting). Reads files only; no GPU.

use std::path::{Path, PathBuf};

use super::{RunError, CONFIG_FILE, METRICS_FILE};

/// The summary CSV's columns, in order.
pub const SUMMARY_COLUMNS: [&str; 20] = [
    "run_dir",
    "task",
    "neuron",
    "hidden",
    "rule",
    "steps",
    "batch",
    "iterations",
    "sequences",
    "metric",
    "weights",
    "final_test",
    "best_test",
    "best_iteration",
    "test_evaluations",
    "elapsed_s",
    "gpu_bytes",
    "adapter",
    "backend",
    "device_type",
];

/// What one run reached.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummaryRow {
    pub dir: PathBuf,
    pub task: String,
    pub neuron: String,
    /// Hidden sizes joined by `x` ("64", "64x32").
    pub hidden: String,
    /// `fptt` (K = 1), `fptt K=20`, `bptt`, `eprop` (per sequence) or `eprop per step`.
    pub rule: String,
    pub steps: u64,
    pub batch: u64,
    /// The last iteration in `metrics.csv`.
    pub iterations: u64,
    /// `mse` (regression) or `accuracy` (classification): what `final_test`, `best_test` hold.
    pub metric: &'static str,
    /// Whose test rows `final_test` and `best_test` are: `running_mean` or `current` (the run's
    /// `train.report_weights`); empty for a run written before both were evaluated.
    pub weights: String,
    pub final_test: Option<f64>,
    /// The lowest test MSE or the highest test accuracy, and the iteration it was measured at.
    pub best_test: Option<(f64, u64)>,
    pub test_evaluations: usize,
    pub elapsed_s: f64,
    pub gpu_bytes: u64,
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
}

fn bad(path: &Path, message: impl Into<String>) -> RunError {
    RunError::Output { path: path.to_path_buf(), message: message.into() }
}

/// Reads `dir/config.toml` and `dir/metrics.csv`.
pub fn summarize(dir: &Path) -> Result<RunSummaryRow, RunError> {
    let config_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(|e| bad(&config_path, e.to_string()))?;
    let config: toml::Table = toml::from_str(&text).map_err(|e| bad(&config_path, e.to_string()))?;
    let get = |section: &str, key: &str| config.get(section).and_then(|s| s.get(key));
    let string = |section: &str, key: &str| get(section, key).and_then(|v| v.as_str()).map(str::to_string);
    let integer = |section: &str, key: &str| -> Result<u64, RunError> {
        get(section, key).and_then(|v| v.as_integer()).map(|v| v as u64).ok_or_else(|| {
            bad(&config_path, format!("{section}.{key}: missing (not a config.toml written by fptt train?)"))
        })
    };
    let task = string("data", "task").ok_or_else(|| bad(&config_path, "data.task: missing"))?;
    let hidden = get("model", "hidden")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_integer()).map(|n| n.to_string()).collect::<Vec<_>>().join("x"))
        .ok_or_else(|| bad(&config_path, "model.hidden: missing"))?;
    let rule = match string("train", "rule").as_deref().unwrap_or("fptt") {
        "fptt" => match integer("train", "chunk").unwrap_or(1) {
            1 => "fptt".to_string(),
            k => format!("fptt K={k}"),
        },
        "eprop" => match string("train", "eprop_update").as_deref() {
            Some("step") => "eprop per step".to_string(),
            _ => "eprop".to_string(),
        },
        other => other.to_string(),
    };
    let metric = if task == "adding" { "mse" } else { "accuracy" };
    let weights = string("train", "report_weights").unwrap_or_default();

    let metrics_path = dir.join(METRICS_FILE);
    let mut reader = csv::Reader::from_path(&metrics_path).map_err(|e| bad(&metrics_path, e.to_string()))?;
    let header = reader.headers().map_err(|e| bad(&metrics_path, e.to_string()))?.clone();
    let column = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| bad(&metrics_path, format!("no column {name}")))
    };
    let (c_iter, c_split, c_metric) = (column("iteration")?, column("split")?, column(metric)?);
    let (c_elapsed, c_bytes) = (column("elapsed_s")?, column("gpu_bytes")?);
    let (c_adapter, c_backend, c_device) = (column("adapter")?, column("backend")?, column("device_type")?);
    // Earlier versions wrote one test row per evaluation and no `weights` column.
    let c_weights = column("weights").ok();
    let mut row = RunSummaryRow {
        dir: dir.to_path_buf(),
        task,
        neuron: string("model", "neuron").unwrap_or_else(|| "ltc".into()),
        hidden,
        rule,
        steps: integer("data", "steps")?,
        batch: integer("train", "batch")?,
        iterations: 0,
        metric,
        weights: weights.clone(),
        final_test: None,
        best_test: None,
        test_evaluations: 0,
        elapsed_s: 0.0,
        gpu_bytes: 0,
        adapter: String::new(),
        backend: String::new(),
        device_type: String::new(),
    };
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(&metrics_path, e.to_string()))?;
        let number = |c: usize| -> Result<f64, RunError> {
            record[c].parse::<f64>().map_err(|_| {
                bad(&metrics_path, format!("row {}: {} = {:?} is not a number", line + 2, &header[c], &record[c]))
            })
        };
        let iteration = number(c_iter)? as u64;
        row.iterations = row.iterations.max(iteration);
        row.elapsed_s = row.elapsed_s.max(number(c_elapsed)?);
        row.gpu_bytes = row.gpu_bytes.max(number(c_bytes)? as u64);
        row.adapter = record[c_adapter].to_string();
        row.backend = record[c_backend].to_string();
        row.device_type = record[c_device].to_string();
        let reported = c_weights.is_none_or(|c| record[c].is_empty() || record[c] == weights);
        if &record[c_split] == "test" && reported {
            let value = number(c_metric)?;
            row.test_evaluations += 1;
            row.final_test = Some(value);
            let better = match row.best_test {
                None => true,
                Some((best, _)) if metric == "mse" => value < best,
                Some((best, _)) => value > best,
            };
            if better {
                row.best_test = Some((value, iteration));
            }
        }
    }
    Ok(row)
}

impl RunSummaryRow {
    pub fn csv_record(&self) -> Vec<String> {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
        vec![
            self.dir.display().to_string(),
            self.task.clone(),
            self.neuron.clone(),
            self.hidden.clone(),
            self.rule.clone(),
            self.steps.to_string(),
            self.batch.to_string(),
            self.iterations.to_string(),
            (self.iterations * self.batch).to_string(),
            self.metric.to_string(),
            self.weights.clone(),
            opt(self.final_test),
            opt(self.best_test.map(|b| b.0)),
            self.best_test.map_or(String::new(), |b| b.1.to_string()),
            self.test_evaluations.to_string(),
            format!("{:.1}", self.elapsed_s),
            self.gpu_bytes.to_string(),
            self.adapter.clone(),
            self.backend.clone(),
            self.device_type.clone(),
        ]
    }

    /// One Markdown table row: run, neuron, rule, T, batch, iterations, final and best test
    /// metric (with the weight set: W̄ or W), wall time, GPU MB.
    pub fn markdown(&self) -> String {
        let set = match self.weights.as_str() {
            "running_mean" => " (W̄)",
            "current" => " (W)",
            _ => "",
        };
        let value =
            |v: f64| if self.metric == "mse" { format!("{v:.4}{set}") } else { format!("{:.1} %{set}", 100.0 * v) };
        format!(
            "| {} | {} {} | {} | {} | {} | {} | {} | {} | {:.0} s | {:.2} MB |",
            self.dir.display(),
            self.hidden,
            self.neuron,
            self.rule,
            self.steps,
            self.batch,
            self.iterations,
            self.final_test.map_or("-".into(), value),
            self.best_test.map_or("-".into(), |(v, it)| format!("{} (it {it})", value(v))),
            self.elapsed_s,
            self.gpu_bytes as f64 / 1e6,
        )
    }

    pub const MARKDOWN_HEADER: &'static str = "| run | network | rule | T | batch | iterations | final test | best test | wall time | GPU |\n|---|---|---|---|---|---|---|---|---|---|";
}
