//! `fptt summarize`: one line per finished (or stopped) run directory, read from its
//! `config.toml` and `metrics.csv`, so that runs of different rules, neurons and lengths line up in
//! one table (printed as Markdown) and one CSV (for plotting); with `--group`, one line per group
//! of runs that differ only in what the table does not show (their seeds): the mean ± standard
//! deviation of each. Reads files only; no GPU.

use std::path::{Path, PathBuf};

use super::{RunError, CONFIG_FILE, METRICS_FILE};

/// The summary CSV's columns, in order.
pub const SUMMARY_COLUMNS: [&str; 21] = [
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
    "final_train",
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
    /// The metric of the last `train` row (the report window's, as the weights changed): what a
    /// run stopped before its first evaluation has.
    pub final_train: Option<f64>,
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
        final_train: None,
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
        if &record[c_split] == "train" && !record[c_metric].is_empty() {
            row.final_train = Some(number(c_metric)?);
        }
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
            opt(self.final_train),
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

/// Mean and sample standard deviation (n − 1; none for a single value) of the values present.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub std: Option<f64>,
    /// How many runs had a value.
    pub n: usize,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Some(Spread { mean, std, n })
    }
}

/// Runs with the same task, network, rule, T and batch (seeds of one configuration), as one line.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub task: String,
    pub neuron: String,
    pub hidden: String,
    pub rule: String,
    pub steps: u64,
    pub batch: u64,
    pub metric: &'static str,
    pub runs: usize,
    pub iterations: Spread,
    pub iterations_min: u64,
    pub iterations_max: u64,
    pub final_test: Option<Spread>,
    /// Over the runs' best test values (lowest MSE, highest accuracy).
    pub best_test: Option<Spread>,
    pub final_train: Option<Spread>,
    pub elapsed_s: Spread,
    /// The adapters the runs name, joined by `; ` when they differ.
    pub adapter: String,
}

/// The group CSV's columns, in order (`fptt summarize --group --out`).
pub const GROUP_COLUMNS: [&str; 22] = [
    "task",
    "neuron",
    "hidden",
    "rule",
    "steps",
    "batch",
    "metric",
    "runs",
    "iterations_mean",
    "iterations_min",
    "iterations_max",
    "final_test_mean",
    "final_test_std",
    "final_test_runs",
    "best_test_mean",
    "best_test_std",
    "final_train_mean",
    "final_train_std",
    "final_train_runs",
    "elapsed_s_mean",
    "elapsed_s_std",
    "adapter",
];

/// One line per (task, neuron, hidden, rule, T, batch), in the order of each group's first run.
/// Runs that differ in anything else the table does not show (a learning rate, say) are grouped
/// too: give `--group` the seeds of one configuration at a time.
pub fn group(rows: &[RunSummaryRow]) -> Vec<GroupRow> {
    let same = |a: &RunSummaryRow, b: &RunSummaryRow| {
        (&a.task, &a.neuron, &a.hidden, &a.rule, a.steps, a.batch)
            == (&b.task, &b.neuron, &b.hidden, &b.rule, b.steps, b.batch)
    };
    let mut groups: Vec<Vec<&RunSummaryRow>> = Vec::new();
    for row in rows {
        match groups.iter_mut().find(|g| same(g[0], row)) {
            Some(g) => g.push(row),
            None => groups.push(vec![row]),
        }
    }
    groups
        .into_iter()
        .map(|g| {
            let first = g[0];
            let mut adapters: Vec<&str> = Vec::new();
            for r in &g {
                if !adapters.contains(&r.adapter.as_str()) {
                    adapters.push(&r.adapter);
                }
            }
            let iterations = g.iter().map(|r| r.iterations);
            GroupRow {
                task: first.task.clone(),
                neuron: first.neuron.clone(),
                hidden: first.hidden.clone(),
                rule: first.rule.clone(),
                steps: first.steps,
                batch: first.batch,
                metric: first.metric,
                runs: g.len(),
                iterations: Spread::of(iterations.clone().map(|i| i as f64)).expect("a group has a run"),
                iterations_min: iterations.clone().min().unwrap_or(0),
                iterations_max: iterations.max().unwrap_or(0),
                final_test: Spread::of(g.iter().filter_map(|r| r.final_test)),
                best_test: Spread::of(g.iter().filter_map(|r| r.best_test.map(|b| b.0))),
                final_train: Spread::of(g.iter().filter_map(|r| r.final_train)),
                elapsed_s: Spread::of(g.iter().map(|r| r.elapsed_s)).expect("a group has a run"),
                adapter: adapters.join("; "),
            }
        })
        .collect()
}

impl GroupRow {
    pub fn csv_record(&self) -> Vec<String> {
        let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
        let mean = |s: Option<Spread>| num(s.map(|s| s.mean));
        let std = |s: Option<Spread>| num(s.and_then(|s| s.std));
        let n = |s: Option<Spread>| s.map_or(0, |s| s.n).to_string();
        vec![
            self.task.clone(),
            self.neuron.clone(),
            self.hidden.clone(),
            self.rule.clone(),
            self.steps.to_string(),
            self.batch.to_string(),
            self.metric.to_string(),
            self.runs.to_string(),
            format!("{}", self.iterations.mean),
            self.iterations_min.to_string(),
            self.iterations_max.to_string(),
            mean(self.final_test),
            std(self.final_test),
            n(self.final_test),
            mean(self.best_test),
            std(self.best_test),
            mean(self.final_train),
            std(self.final_train),
            n(self.final_train),
            format!("{:.1}", self.elapsed_s.mean),
            self.elapsed_s.std.map_or(String::new(), |s| format!("{s:.1}")),
            self.adapter.clone(),
        ]
    }

    /// One Markdown row: network, rule, T, batch, runs, iterations (mean, range), final, best and
    /// last training value as mean ± std (with how many runs had one when not all did), wall time.
    pub fn markdown(&self) -> String {
        let mse = self.metric == "mse";
        let value = |v: f64| if mse { format!("{v:.4}") } else { format!("{:.1} %", 100.0 * v) };
        let spread = |s: Option<Spread>| match s {
            None => "-".to_string(),
            Some(s) => {
                let mut text = value(s.mean);
                if let Some(sd) = s.std {
                    text.push_str(&format!(" ± {}", value(sd)));
                }
                if s.n < self.runs {
                    text.push_str(&format!(" ({} of {} runs)", s.n, self.runs));
                }
                text
            }
        };
        let iterations = if self.iterations_min == self.iterations_max {
            self.iterations_min.to_string()
        } else {
            format!("{:.0} ({}–{})", self.iterations.mean, self.iterations_min, self.iterations_max)
        };
        format!(
            "| {} {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |",
            self.hidden,
            self.neuron,
            self.rule,
            self.steps,
            self.batch,
            self.runs,
            iterations,
            spread(self.final_test),
            spread(self.best_test),
            spread(self.final_train),
            self.elapsed_s.mean,
        )
    }

    pub const MARKDOWN_HEADER: &'static str = "| network | rule | T | batch | runs | iterations | final test | best test | last train window | wall time (mean) |\n|---|---|---|---|---|---|---|---|---|---|";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rule: &str, steps: u64, iterations: u64, final_test: Option<f64>, best: Option<f64>) -> RunSummaryRow {
        RunSummaryRow {
            dir: PathBuf::from(format!("r-{rule}-{steps}-{iterations}")),
            task: "adding".into(),
            neuron: "ltc".into(),
            hidden: "128".into(),
            rule: rule.into(),
            steps,
            batch: 128,
            iterations,
            metric: "mse",
            weights: "running_mean".into(),
            final_test,
            best_test: best.map(|b| (b, iterations)),
            test_evaluations: usize::from(final_test.is_some()),
            final_train: Some(0.1),
            elapsed_s: 10.0,
            gpu_bytes: 0,
            adapter: "A".into(),
            backend: "vulkan".into(),
            device_type: "gpu".into(),
        }
    }

    #[test]
    fn seeds_of_one_configuration_become_one_line_with_mean_and_sample_std() {
        let rows = vec![
            row("fptt K=20", 200, 400, Some(0.1), Some(0.05)),
            row("bptt", 200, 300, None, None),
            row("fptt K=20", 200, 600, Some(0.3), Some(0.15)),
            row("fptt K=20", 500, 100, Some(0.2), Some(0.2)),
            row("fptt K=20", 200, 500, None, None),
        ];
        let g = group(&rows);
        assert_eq!(g.len(), 3, "(K=20, 200), (bptt, 200), (K=20, 500) in order of first appearance");
        assert_eq!((g[0].rule.as_str(), g[0].steps, g[0].runs), ("fptt K=20", 200, 3));
        assert_eq!((g[1].rule.as_str(), g[2].steps), ("bptt", 500));
        let f = g[0].final_test.unwrap();
        assert_eq!(f.n, 2);
        assert!((f.mean - 0.2).abs() < 1e-12);
        // Sample std of 0.1 and 0.3: sqrt(((−0.1)² + 0.1²) / 1).
        assert!((f.std.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!((g[0].iterations.mean, g[0].iterations_min, g[0].iterations_max), (500.0, 400, 600));
        assert_eq!(g[1].final_test, None);
        assert_eq!(g[2].final_test.unwrap().std, None, "one run: no std");
        let md = g[0].markdown();
        assert!(md.contains("0.2000 ± 0.1414 (2 of 3 runs)") && md.contains("500 (400–600)"), "{md}");
        assert!(g[1].markdown().contains("| - | - |"), "{}", g[1].markdown());
        assert_eq!(g[0].csv_record().len(), GROUP_COLUMNS.len());
    }
}
