//! Learning curves of run directories (`config.toml` + `metrics.csv`, as `fptt train` writes
//! them): loss and the test metric (MSE or accuracy) against iteration or wall time, one line per
//! run; runs whose configs differ only in the seed are drawn as their mean with a min–max band.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Figure, LinePanel, Panel, PlotError, Series, Stroke, Table};

/// The run directory's files (the names `crate::run` writes; a test holds them equal, so this
/// module needs nothing from the training side).
pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.csv";

/// What the curves run along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XAxis {
    /// Training iterations (batches).
    #[default]
    Iteration,
    /// Seconds since the run started (`elapsed_s`).
    Time,
}

#[derive(Debug, Clone, Default)]
pub struct RunPlotOptions {
    pub x: XAxis,
    /// The figure (default: `DIR/curves.svg`, or `curves.svg` in the runs' common parent).
    pub out: Option<PathBuf>,
    /// The title's first part (default: "Learning curves: " and the runs' names).
    pub title: Option<String>,
}

/// One run directory, read.
struct Run {
    dir: PathBuf,
    config: Option<toml::Table>,
    /// The config without what differs between seeds of one sweep: `seed`, `[run]`, `output.dir`.
    key: String,
    metrics: Table,
}

fn read_run(dir: &Path) -> Result<Run, PlotError> {
    let metrics_path = dir.join(METRICS_FILE);
    if !metrics_path.is_file() {
        return Err(PlotError::NotARun { dir: dir.to_path_buf(), file: METRICS_FILE });
    }
    let metrics = Table::read(&metrics_path)?;
    for column in ["iteration", "split", "loss", "elapsed_s"] {
        metrics.col(column)?;
    }
    let config_path = dir.join(CONFIG_FILE);
    let config = if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| PlotError::Config { path: config_path.clone(), message: e.to_string() })?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| PlotError::Config { path: config_path.clone(), message: e.to_string() })?;
        Some(table)
    } else {
        None
    };
    let key = match &config {
        Some(c) => {
            let mut c = c.clone();
            c.remove("seed");
            c.remove("run");
            if let Some(toml::Value::Table(out)) = c.get_mut("output") {
                out.remove("dir");
            }
            c.to_string()
        }
        None => format!("dir:{}", dir.display()),
    };
    Ok(Run { dir: dir.to_path_buf(), config, key, metrics })
}

fn get<'a>(config: &'a toml::Table, section: &str, key: &str) -> Option<&'a toml::Value> {
    config.get(section).and_then(|s| s.get(key))
}

fn rule_desc(c: &toml::Table) -> String {
    let s = |k: &str| get(c, "train", k).and_then(|v| v.as_str()).map(str::to_string);
    match s("rule").as_deref().unwrap_or("fptt") {
        "fptt" => match get(c, "train", "chunk").and_then(|v| v.as_integer()).unwrap_or(1) {
            1 => "one-step FPTT".to_string(),
            k => format!("FPTT K={k}"),
        },
        "bptt" => "BPTT".to_string(),
        "eprop" => match s("eprop_update").as_deref() {
            Some("step") => "e-prop per step".to_string(),
            _ => "e-prop".to_string(),
        },
        other => other.to_string(),
    }
}

/// The label fields of a run, each `(name, text)`.
fn label_fields(run: &Run) -> Vec<(&'static str, String)> {
    let Some(c) = &run.config else {
        return vec![("dir", run.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())];
    };
    let value = |section: &str, key: &str| get(c, section, key).map(|v| v.to_string().trim_matches('"').to_string());
    let hidden = get(c, "model", "hidden")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("x"));
    let mut fields = vec![
        ("name", c.get("name").and_then(|v| v.as_str()).unwrap_or("").to_string()),
        ("task", value("data", "task").unwrap_or_default()),
        ("T", value("data", "steps").map(|t| format!("T={t}")).unwrap_or_default()),
        // Configs written before `model.neuron` existed are LTC networks.
        ("neuron", value("model", "neuron").unwrap_or_else(|| "ltc".into())),
        ("hidden", hidden.map(|h| format!("N={h}")).unwrap_or_default()),
        ("rule", rule_desc(c)),
        ("optimizer", value("train", "optimizer").unwrap_or_default()),
        ("lr", value("train", "lr").map(|v| format!("lr={v}")).unwrap_or_default()),
        ("batch", value("train", "batch").map(|v| format!("B={v}")).unwrap_or_default()),
        (
            "max_train_samples",
            value("data", "max_train_samples")
                .map(|v| match v.as_str() {
                    "0" => "all training samples".to_string(),
                    v => format!("{v} training samples"),
                })
                .unwrap_or_default(),
        ),
    ];
    fields.retain(|f| !f.1.is_empty());
    fields
}

/// Labels from the config fields that differ between groups (the rule always), then the
/// directory name where two would still read the same.
fn labels(groups: &[Vec<&Run>]) -> Vec<String> {
    let fields: Vec<Vec<(&str, String)>> = groups.iter().map(|g| label_fields(g[0])).collect();
    let varies = |name: &str| {
        let values: Vec<Option<&String>> =
            fields.iter().map(|f| f.iter().find(|(n, _)| *n == name).map(|(_, v)| v)).collect();
        values.iter().any(|v| *v != values[0])
    };
    let mut out: Vec<String> = fields
        .iter()
        .map(|f| {
            let parts: Vec<&str> = f
                .iter()
                .filter(|(n, _)| *n == "rule" || *n == "dir" || (groups.len() == 1 && *n == "name") || varies(n))
                .map(|(_, v)| v.as_str())
                .collect();
            parts.join(", ")
        })
        .collect();
    for i in 0..out.len() {
        if out.iter().filter(|l| **l == out[i]).count() > 1 {
            let name = groups[i][0].dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out[i] = format!("{} ({name})", out[i]);
        }
    }
    for (label, g) in out.iter_mut().zip(groups) {
        if g.len() > 1 {
            label.push_str(&format!(" (mean of {} seeds)", g.len()));
        }
    }
    out
}

/// Which rows a curve draws: the `split`, and for test rows the weight set (`running_mean` also
/// takes the test rows of files written before the `weights` column, which had one per evaluation).
#[derive(Debug, Clone, Copy)]
struct Rows {
    split: &'static str,
    weights: &'static str,
}

/// The curves of one run: training solid, the test of W̄ dashed, the test of W dotted.
const CURVES: [(Rows, Stroke); 3] = [
    (Rows { split: "train", weights: "current" }, Stroke::Solid),
    (Rows { split: "test", weights: "running_mean" }, Stroke::Dashed),
    (Rows { split: "test", weights: "current" }, Stroke::Dotted),
];

/// `(iteration, x, y)` of one run's `rows` in column `column` (empty cells skipped).
fn points(run: &Run, rows: Rows, column: &str, x: XAxis, scale: f64) -> Result<Vec<(u64, f64, f64)>, PlotError> {
    let t = &run.metrics;
    let (c_it, c_split, c_time) = (t.col("iteration")?, t.col("split")?, t.col("elapsed_s")?);
    let c_weights = t.col("weights").ok();
    let Ok(c) = t.col(column) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for r in 0..t.rows.len() {
        if t.text(r, c_split) != rows.split {
            continue;
        }
        let weights = c_weights.map(|c| t.text(r, c)).unwrap_or("");
        let legacy = weights.is_empty() && (rows.split == "train" || rows.weights == "running_mean");
        if weights != rows.weights && !legacy {
            continue;
        }
        let Some(y) = t.opt_num(r, c)? else { continue };
        let it = t.num(r, c_it)?;
        let xv = match x {
            XAxis::Iteration => it,
            XAxis::Time => t.num(r, c_time)?,
        };
        out.push((it as u64, xv, y * scale));
    }
    Ok(out)
}

/// A line `(x, y)` and its band `(x, low, high)` (empty for a single run).
type Curve = (Vec<(f64, f64)>, Vec<(f64, f64, f64)>);

/// The mean over the group's runs at the iterations all of them reported, with the min–max band.
fn group_curve(group: &[&Run], rows: Rows, column: &str, x: XAxis, scale: f64) -> Result<Curve, PlotError> {
    let mut at: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    for run in group {
        for (it, xv, y) in points(run, rows, column, x, scale)? {
            at.entry(it).or_default().push((xv, y));
        }
    }
    let mut line = Vec::new();
    let mut band = Vec::new();
    for values in at.values().filter(|v| v.len() == group.len()) {
        let n = values.len() as f64;
        let xm = values.iter().map(|v| v.0).sum::<f64>() / n;
        let ym = values.iter().map(|v| v.1).sum::<f64>() / n;
        line.push((xm, ym));
        if group.len() > 1 {
            let lo = values.iter().map(|v| v.1).fold(f64::INFINITY, f64::min);
            let hi = values.iter().map(|v| v.1).fold(f64::NEG_INFINITY, f64::max);
            band.push((xm, lo, hi));
        }
    }
    Ok((line, band))
}

/// The deepest directory holding every path.
fn common_parent(dirs: &[PathBuf]) -> PathBuf {
    let mut common: Vec<_> = dirs[0].components().collect();
    for d in &dirs[1..] {
        let n = common.iter().zip(d.components()).take_while(|(a, b)| **a == *b).count();
        common.truncate(n);
    }
    common.iter().collect()
}

/// Draws the learning curves of `dirs`; returns the figure's path.
pub fn plot_runs(dirs: &[PathBuf], opts: &RunPlotOptions) -> Result<PathBuf, PlotError> {
    let Some(first) = dirs.first() else {
        return Err(PlotError::NothingToPlot { path: PathBuf::from("."), message: "no run directory given".into() });
    };
    let runs = dirs.iter().map(|d| read_run(d)).collect::<Result<Vec<_>, _>>()?;
    let mut groups: Vec<Vec<&Run>> = Vec::new();
    for run in &runs {
        match groups.iter_mut().find(|g| g[0].key == run.key) {
            Some(g) => g.push(run),
            None => groups.push(vec![run]),
        }
    }
    let labels = labels(&groups);

    let x_label = match opts.x {
        XAxis::Iteration => "iteration (training batches)",
        XAxis::Time => "wall time (s)",
    };
    let mut loss = LinePanel {
        title: "loss (solid: training, dashed: test of W̄, dotted: test of W)".into(),
        x_label: x_label.into(),
        y_label: "loss per sequence".into(),
        log_y: true,
        ..Default::default()
    };
    let mut mse = LinePanel {
        title: "MSE (solid: training, dashed: test of W̄, dotted: test of W)".into(),
        x_label: x_label.into(),
        y_label: "mean squared error".into(),
        log_y: true,
        ..Default::default()
    };
    let mut accuracy = LinePanel {
        title: "accuracy (solid: training, dashed: test of W̄, dotted: test of W)".into(),
        x_label: x_label.into(),
        y_label: "accuracy (%)".into(),
        ..Default::default()
    };
    for (i, (group, label)) in groups.iter().zip(&labels).enumerate() {
        for (panel, column, scale) in
            [(&mut loss, "loss", 1.0), (&mut mse, "mse", 1.0), (&mut accuracy, "accuracy", 100.0)]
        {
            let mut labelled = false;
            for (rows, stroke) in CURVES {
                let (line, band) = group_curve(group, rows, column, opts.x, scale)?;
                if line.is_empty() {
                    continue;
                }
                panel.series.push(Series {
                    label: label.clone(),
                    markers: rows.split == "test",
                    stroke,
                    points: line,
                    band,
                    color: i,
                    hide_label: labelled,
                });
                labelled = true;
            }
        }
    }
    for p in [&mut loss, &mut mse] {
        // A log axis where the values are positive and span a decade or more.
        let ys = || p.series.iter().flat_map(|s| s.points.iter().map(|q| q.1));
        let (lo, hi) = (ys().fold(f64::INFINITY, f64::min), ys().fold(f64::NEG_INFINITY, f64::max));
        p.log_y = lo > 0.0 && hi >= 10.0 * lo;
    }
    let panels: Vec<Panel> =
        [loss, mse, accuracy].into_iter().filter(|p| !p.series.is_empty()).map(Panel::Lines).collect();
    if panels.is_empty() {
        let path = dirs[0].join(METRICS_FILE);
        return Err(PlotError::NothingToPlot { path, message: "no train or test rows with a loss".into() });
    }

    let mut names: Vec<String> = Vec::new();
    let mut adapters: Vec<String> = Vec::new();
    for run in &runs {
        let name = run.config.as_ref().and_then(|c| c.get("name")).and_then(|v| v.as_str()).map(str::to_string);
        if let Some(n) = name.filter(|n| !names.contains(n)) {
            names.push(n);
        }
        let from_config = run.config.as_ref().and_then(|c| {
            let a = get(c, "run", "adapter")?.as_str()?;
            Some(super::adapter_name(a, get(c, "run", "backend").and_then(|b| b.as_str()).unwrap_or("")))
        });
        let adapter = from_config.unwrap_or_else(|| super::adapters_of(&run.metrics));
        if !adapter.is_empty() && !adapters.contains(&adapter) {
            adapters.push(adapter);
        }
    }
    let mut title = match &opts.title {
        Some(t) => t.clone(),
        None => format!("Learning curves: {}", if names.is_empty() { "runs".into() } else { names.join(", ") }),
    };
    if !adapters.is_empty() {
        title.push_str(&format!(", on {}", adapters.join(", ")));
    }
    let out = match &opts.out {
        Some(out) => out.clone(),
        None if dirs.len() == 1 => first.join("curves.svg"),
        None => common_parent(dirs).join("curves.svg"),
    };
    let columns = panels.len();
    Figure { title, panels, columns, panel_size: (620, 460) }.render(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_are_the_runners() {
        assert_eq!(super::CONFIG_FILE, crate::run::CONFIG_FILE);
        assert_eq!(super::METRICS_FILE, crate::run::METRICS_FILE);
    }
}
