//! `fptt sweep`: a grid of experiments run one after another in one process (sharing one GPU
//! context), each point an ordinary run directory. This module owns the grid file (`base`,
//! `name`, `[set]`, `[axes]`), its expansion into points and their `--set` overrides, the sweep
//! directory (`sweep.toml`, the base's copy, the index files), running a slice of the points with
//! resume, merging the index files and the per-point seed summary.
//!
//! Expansion order: the Cartesian product of the axes in the order the grid file lists them, the
//! first axis outermost and the last varying fastest; point `i` is the `i`-th of that order.
//!
//! Index files, race-free by construction: every process writes only its own file —
//! `index.csv` for a whole sweep (slice 0/1), `index-<i>-of-<n>.csv` for slice `i/n` — with one
//! row per run of its slice, rewritten atomically after every change. Each row carries the time
//! it was written (`updated_unix`); [`merged_index`] takes, per run, the latest row of any file,
//! so a sweep begun whole and continued in slices (or the other way round) reads consistently.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use toml::{Table, Value};

use super::experiment::{Experiment, ExperimentError};
use super::summary::{self, GroupRow};
use super::{pack_key, resume_experiment, train, train_pack, ProgressMode, RunError, TrainOptions, CONFIG_FILE};
use crate::gpu::{DeviceChoice, GpuContext};
use crate::learn::{check_fits, SizeLimits};

/// The grid as the sweep directory keeps it (a valid grid file itself).
pub const SWEEP_FILE: &str = "sweep.toml";
/// The index of a whole sweep (slice 0/1).
pub const INDEX_FILE: &str = "index.csv";
/// The Slurm job-array script `--slurm N` writes.
pub const SLURM_FILE: &str = "sweep.slurm";
/// The axis whose runs `summarize --group` folds into mean ± std.
pub const SEED_AXIS: &str = "seed";

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The grid file itself: unreadable, not TOML, an unknown or malformed key.
    #[error("{}: {message}", path.display())]
    Grid { path: PathBuf, message: String },
    /// One axis value the experiment parser refuses (checked alone on the base experiment).
    #[error("{}: axis `{axis}` = {value}: {source}", grid.display())]
    Axis { grid: PathBuf, axis: String, value: String, source: Box<ExperimentError> },
    /// A fixed override of `[set]` the experiment parser refuses.
    #[error("{}: [set] `{key}` = {value}: {source}", grid.display())]
    Fixed { grid: PathBuf, key: String, value: String, source: Box<ExperimentError> },
    /// A combination of values the parser refuses (each alone was fine).
    #[error("{}: run {index} ({run}): {source}", grid.display())]
    Point { grid: PathBuf, index: usize, run: String, source: Box<ExperimentError> },
    /// Writing or reading the sweep directory.
    #[error("{}: {message}", path.display())]
    Output { path: PathBuf, message: String },
    #[error("{0}")]
    Setup(String),
    /// The GPU could not be opened (before any run).
    #[error(transparent)]
    Run(#[from] RunError),
}

type Result<T> = std::result::Result<T, SweepError>;

/// One axis: the key as `--set` writes it and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<Value>,
}

/// A grid file, read and resolved.
#[derive(Debug, Clone)]
pub struct Grid {
    /// The grid file (named in every message).
    pub path: PathBuf,
    pub name: String,
    /// The base experiment's path, resolved against the grid file's directory.
    pub base: PathBuf,
    pub base_text: String,
    /// `[set]`: overrides every point gets, applied before the axes'.
    pub fixed: Vec<(String, Value)>,
    pub axes: Vec<Axis>,
}

/// One point of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Its position in the expansion order.
    pub index: usize,
    /// Its run directory's name under the sweep directory.
    pub name: String,
    /// One value per axis, in the axes' order.
    pub values: Vec<Value>,
}

/// Which points a process runs: those with `index % count == part`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub part: usize,
    pub count: usize,
}

impl Slice {
    pub const WHOLE: Slice = Slice { part: 0, count: 1 };

    pub fn holds(self, index: usize) -> bool {
        index % self.count == self.part
    }

    /// The index file this slice writes.
    pub fn index_file(self) -> String {
        if self.count == 1 {
            INDEX_FILE.to_string()
        } else {
            format!("index-{}-of-{}.csv", self.part, self.count)
        }
    }
}

impl std::str::FromStr for Slice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Slice, String> {
        let bad = || format!("expected I/N with 0 ≤ I < N (e.g. 0/4), found {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (part, count) =
            (i.trim().parse::<usize>().map_err(|_| bad())?, n.trim().parse::<usize>().map_err(|_| bad())?);
        if count == 0 || part >= count {
            return Err(bad());
        }
        Ok(Slice { part, count })
    }
}

/// A value as `--set` reads it back (TOML's inline form).
fn set_text(v: &Value) -> String {
    v.to_string()
}

/// A value's part of a run name: a string without quotes, an array joined by `x`.
fn name_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(name_text).collect::<Vec<_>>().join("x"),
        other => other.to_string(),
    }
}

/// Letters, digits, `-`, `_` and `.` kept, anything else `_` (a run name is a directory name).
fn sanitize(s: &str) -> String {
    let t: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    t.trim_start_matches('.').to_string()
}

fn grid_err(path: &Path, message: impl Into<String>) -> SweepError {
    SweepError::Grid { path: path.to_path_buf(), message: message.into() }
}

impl Grid {
    /// Read a grid file; `base` is resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Grid> {
        let text =
            std::fs::read_to_string(path).map_err(|e| grid_err(path, format!("cannot read the grid file: {e}")))?;
        let mut root: Table = text
            .parse()
            .map_err(|e: toml::de::Error| grid_err(path, format!("not valid TOML: {}", e.to_string().trim())))?;
        for k in root.keys() {
            if !["base", "name", "set", "axes"].contains(&k.as_str()) {
                return Err(grid_err(
                    path,
                    format!("{k}: unknown key; a grid file holds base, name, [set] and [axes] (experiments/README.md, \"Sweeps\")"),
                ));
            }
        }
        let base_rel = match root.remove("base") {
            Some(Value::String(s)) if !s.is_empty() => PathBuf::from(s),
            Some(v) => return Err(grid_err(path, format!("base: expected the path of an experiment file, found {v}"))),
            None => {
                return Err(grid_err(
                    path,
                    "base: missing; name the experiment file the grid varies (relative to the grid file)",
                ))
            }
        };
        let base = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() && base_rel.is_relative() => d.join(&base_rel),
            _ => base_rel,
        };
        let base_text = std::fs::read_to_string(&base)
            .map_err(|e| grid_err(path, format!("base: cannot read {}: {e}", base.display())))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "sweep".into());
        let name = match root.remove("name") {
            None => stem,
            Some(Value::String(s)) if !s.is_empty() && sanitize(&s) == s => s,
            Some(v) => {
                return Err(grid_err(
                    path,
                    format!("name: expected a name of letters, digits, '-', '_' and '.', found {v}"),
                ))
            }
        };
        let table = |key: &str, root: &mut Table| -> Result<Vec<(String, Value)>> {
            match root.remove(key) {
                None => Ok(Vec::new()),
                Some(Value::Table(t)) => Ok(t.into_iter().collect()),
                Some(v) => Err(grid_err(path, format!("{key}: expected a table [{key}], found {v}"))),
            }
        };
        let fixed = table("set", &mut root)?;
        let mut axes = Vec::new();
        for (key, v) in table("axes", &mut root)? {
            let values = match v {
                Value::Array(a) if !a.is_empty() => a,
                other => {
                    return Err(grid_err(
                        path,
                        format!("axes.\"{key}\": expected a non-empty array of values (e.g. [1, 2, 3]), found {other}"),
                    ))
                }
            };
            if let Some(t) = values.iter().find(|v| v.is_table()) {
                return Err(grid_err(path, format!("axes.\"{key}\": expected plain values, found a table {t}")));
            }
            if fixed.iter().any(|(k, _)| *k == key) {
                return Err(grid_err(
                    path,
                    format!("\"{key}\" is both in [set] and in [axes]; give it in one of them"),
                ));
            }
            axes.push(Axis { key, values });
        }
        Ok(Grid { path: path.to_path_buf(), name, base, base_text, fixed, axes })
    }

    /// Every point, in the expansion order (first axis outermost, last fastest).
    pub fn points(&self) -> Vec<Point> {
        let total: usize = self.axes.iter().map(|a| a.values.len()).product();
        let mut points: Vec<Point> = (0..total)
            .map(|index| {
                let mut rest = index;
                let mut values = vec![Value::Boolean(false); self.axes.len()];
                for (slot, axis) in values.iter_mut().zip(&self.axes).rev() {
                    *slot = axis.values[rest % axis.values.len()].clone();
                    rest /= axis.values.len();
                }
                let name = self.name_of(&values, |_| true);
                Point { index, name, values }
            })
            .collect();
        // Values that read alike (0.001 and "0.001") would share a directory: number the later.
        for i in 0..points.len() {
            if points[..i].iter().any(|p| p.name == points[i].name) {
                points[i].name = format!("{}-{}", points[i].name, i);
            }
        }
        points
    }

    /// `key` + value per axis kept by `keep`, joined by `-` (`seed1-train.lr0.003`); `run` when none.
    fn name_of(&self, values: &[Value], keep: impl Fn(&str) -> bool) -> String {
        let parts: Vec<String> = self
            .axes
            .iter()
            .zip(values)
            .filter(|(a, _)| keep(&a.key))
            .map(|(a, v)| sanitize(&format!("{}{}", a.key, name_text(v))))
            .collect();
        if parts.is_empty() {
            "run".to_string()
        } else {
            parts.join("-")
        }
    }

    /// The point's label without the seed: the runs one line of the summary folds together.
    pub fn label(&self, p: &Point) -> String {
        let label = self.name_of(&p.values, |k| k != SEED_AXIS);
        if label == "run" && self.axes.iter().any(|a| a.key == SEED_AXIS) {
            "all seeds".to_string()
        } else {
            label
        }
    }

    /// The `--set` arguments of a point: `[set]`, then one per axis.
    pub fn sets(&self, p: &Point) -> Vec<String> {
        let mut sets: Vec<String> = self.fixed.iter().map(|(k, v)| format!("{k}={}", set_text(v))).collect();
        sets.extend(self.axes.iter().zip(&p.values).map(|(a, v)| format!("{}={}", a.key, set_text(v))));
        sets
    }

    fn parse_with(&self, sets: &[String]) -> std::result::Result<Experiment, ExperimentError> {
        let origin = self.base.display().to_string();
        let stem = self.base.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "run".into());
        Experiment::parse(&self.base_text, &origin, &stem, sets)
    }

    /// The experiment of a point, exactly as `fptt train BASE --set …` would read it.
    pub fn experiment(&self, p: &Point) -> Result<Experiment> {
        self.parse_with(&self.sets(p)).map_err(|source| SweepError::Point {
            grid: self.path.clone(),
            index: p.index,
            run: p.name.clone(),
            source: Box::new(source),
        })
    }

    /// Check everything before any training: the base with `[set]`, every axis value alone on
    /// it (so an error names the axis and value), then every point.
    pub fn check(&self) -> Result<Vec<Point>> {
        let fixed: Vec<String> = self.fixed.iter().map(|(k, v)| format!("{k}={}", set_text(v))).collect();
        for (i, (k, v)) in self.fixed.iter().enumerate() {
            self.parse_with(&fixed[..=i]).map_err(|source| SweepError::Fixed {
                grid: self.path.clone(),
                key: k.clone(),
                value: set_text(v),
                source: Box::new(source),
            })?;
        }
        for axis in &self.axes {
            for v in &axis.values {
                let mut sets = fixed.clone();
                sets.push(format!("{}={}", axis.key, set_text(v)));
                self.parse_with(&sets).map_err(|source| SweepError::Axis {
                    grid: self.path.clone(),
                    axis: axis.key.clone(),
                    value: set_text(v),
                    source: Box::new(source),
                })?;
            }
        }
        let points = self.points();
        for p in &points {
            self.experiment(p)?;
        }
        Ok(points)
    }

    /// The grid as `sweep.toml` keeps it: `base` names the copy `base_file` beside it.
    fn to_toml(&self, base_file: &str) -> String {
        let mut t = Table::new();
        t.insert("name".into(), Value::String(self.name.clone()));
        t.insert("base".into(), Value::String(base_file.to_string()));
        if !self.fixed.is_empty() {
            t.insert("set".into(), Value::Table(self.fixed.iter().cloned().collect()));
        }
        let axes: Table = self.axes.iter().map(|a| (a.key.clone(), Value::Array(a.values.clone()))).collect();
        t.insert("axes".into(), Value::Table(axes));
        format!(
            "# The sweep's grid as `fptt sweep` read it from {}; `base` is the copy of {} beside this file.\n\
             # Points: the axes' Cartesian product, first axis outermost, last fastest.\n\n{}",
            self.path.display(),
            self.base.display(),
            toml::to_string(&t).expect("a table of plain values serialises")
        )
    }
}

fn out_err(path: &Path, e: impl std::fmt::Display) -> SweepError {
    SweepError::Output { path: path.to_path_buf(), message: e.to_string() }
}

/// The sweep directory when `--out` is not given: `runs/<grid name>-<UTC time>`.
pub fn default_out(grid: &Grid) -> PathBuf {
    PathBuf::from("runs").join(format!("{}-{}", grid.name, super::run_dir::utc_stamp()))
}

/// Write a file unless it exists with the same text; a different text is refused. The file
/// appears complete or not at all (a temporary file hard-linked into place, which fails if the
/// name exists), so processes preparing one sweep directory at once never read a half-written one.
fn write_once(path: &Path, text: &str, out: &Path) -> Result<()> {
    use std::io::Write;
    let tmp = out.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
        std::process::id()
    ));
    let linked = (|| -> std::io::Result<std::io::Result<()>> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        Ok(std::fs::hard_link(&tmp, path))
    })();
    let _ = std::fs::remove_file(&tmp);
    match linked.map_err(|e| out_err(path, e))? {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let old = std::fs::read_to_string(path).map_err(|e| out_err(path, e))?;
            if old == text {
                Ok(())
            } else {
                Err(SweepError::Setup(format!(
                    "{} already holds another sweep ({} differs); continue it with --resume {}, or choose another --out",
                    out.display(),
                    path.display(),
                    out.display()
                )))
            }
        }
        Err(e) => Err(out_err(path, e)),
    }
}

/// Create the sweep directory `out` for `grid`: `sweep.toml` and the base's copy. Several
/// processes may do so at once with the same grid; another grid there is refused.
pub fn prepare(grid: &Grid, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| out_err(out, e))?;
    let mut base_file = grid.base.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    if base_file.is_empty() || base_file == SWEEP_FILE {
        base_file = "base.toml".into();
    }
    write_once(&out.join(&base_file), &grid.base_text, out)?;
    write_once(&out.join(SWEEP_FILE), &grid.to_toml(&base_file), out)
}

/// The grid of a sweep directory (its `sweep.toml`).
pub fn open(out: &Path) -> Result<Grid> {
    let path = out.join(SWEEP_FILE);
    if !path.is_file() {
        return Err(SweepError::Setup(format!(
            "{} not found (is {} a directory written by `fptt sweep`?)",
            path.display(),
            out.display()
        )));
    }
    Grid::load(&path)
}

/// Where a run of the sweep stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    /// Training now; a `running` row whose process is gone is an interrupted run.
    Running,
    Done,
    Failed,
    Diverged,
    Interrupted,
}

impl Status {
    pub const ALL: [(&'static str, Status); 6] = [
        ("pending", Status::Pending),
        ("running", Status::Running),
        ("done", Status::Done),
        ("failed", Status::Failed),
        ("diverged", Status::Diverged),
        ("interrupted", Status::Interrupted),
    ];

    pub fn name(self) -> &'static str {
        Status::ALL.iter().find(|(_, s)| *s == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// Finished for good: a resume skips it (a diverged run would diverge again).
    pub fn is_final(self) -> bool {
        matches!(self, Status::Done | Status::Diverged)
    }
}

/// One run's line of an index file.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRow {
    pub index: usize,
    pub run: String,
    /// The axis values as `--set` writes them.
    pub values: Vec<String>,
    pub status: Status,
    /// `mse` or `accuracy`: what the test columns hold.
    pub metric: String,
    pub final_test: Option<f64>,
    pub best_test: Option<f64>,
    pub iterations: u64,
    pub elapsed_s: f64,
    /// When the row was written (seconds since the Unix epoch): the latest row of a run wins.
    pub updated_unix: f64,
    /// Why a run failed or diverged.
    pub note: String,
}

fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl IndexRow {
    fn pending(p: &Point) -> IndexRow {
        IndexRow {
            index: p.index,
            run: p.name.clone(),
            values: p.values.iter().map(set_text).collect(),
            status: Status::Pending,
            metric: String::new(),
            final_test: None,
            best_test: None,
            iterations: 0,
            elapsed_s: 0.0,
            updated_unix: 0.0,
            note: String::new(),
        }
    }
}

/// The index columns of a grid: index, run, one per axis, then the run's outcome.
pub fn index_columns(grid: &Grid) -> Vec<String> {
    let mut c = vec!["index".to_string(), "run".to_string()];
    c.extend(grid.axes.iter().map(|a| a.key.clone()));
    for k in ["status", "metric", "final_test", "best_test", "iterations", "elapsed_s", "updated_unix", "note"] {
        c.push(k.to_string());
    }
    c
}

/// Rewrite an index file atomically.
pub fn write_index(grid: &Grid, path: &Path, rows: &[IndexRow]) -> Result<()> {
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    let write = || -> std::result::Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(index_columns(grid))?;
        for r in rows {
            let mut rec = vec![r.index.to_string(), r.run.clone()];
            rec.extend(r.values.iter().cloned());
            rec.extend([
                r.status.name().to_string(),
                r.metric.clone(),
                num(r.final_test),
                num(r.best_test),
                r.iterations.to_string(),
                format!("{:.1}", r.elapsed_s),
                format!("{:.6}", r.updated_unix),
                r.note.clone(),
            ]);
            w.write_record(&rec)?;
        }
        Ok(w.into_inner()?)
    };
    let bytes = write().map_err(|e| out_err(path, e))?;
    crate::files::write_atomic(path, &bytes, "sweep-index").map_err(|e| out_err(path, e))
}

/// The rows of one index file (columns by name).
pub fn read_index(grid: &Grid, path: &Path) -> Result<Vec<IndexRow>> {
    let mut r = csv::Reader::from_path(path).map_err(|e| out_err(path, e))?;
    let header = r.headers().map_err(|e| out_err(path, e))?.clone();
    let col =
        |name: &str| header.iter().position(|h| h == name).ok_or_else(|| out_err(path, format!("no column {name}")));
    let c: Vec<usize> = [
        "index",
        "run",
        "status",
        "metric",
        "final_test",
        "best_test",
        "iterations",
        "elapsed_s",
        "updated_unix",
        "note",
    ]
    .iter()
    .map(|n| col(n))
    .collect::<Result<_>>()?;
    let axes: Vec<usize> = grid.axes.iter().map(|a| col(&a.key)).collect::<Result<_>>()?;
    let mut rows = Vec::new();
    for (line, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| out_err(path, e))?;
        let bad = |what: &str| out_err(path, format!("row {}: {what} is not valid", line + 1));
        let field = |i: usize| rec.get(i).unwrap_or("");
        let opt = |i: usize| -> Result<Option<f64>> {
            let s = field(i);
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse().map(Some).map_err(|_| bad(&header[i]))
            }
        };
        let status =
            Status::ALL.iter().find(|(n, _)| *n == field(c[2])).map(|(_, s)| *s).ok_or_else(|| bad("status"))?;
        rows.push(IndexRow {
            index: field(c[0]).parse().map_err(|_| bad("index"))?,
            run: field(c[1]).to_string(),
            values: axes.iter().map(|&i| field(i).to_string()).collect(),
            status,
            metric: field(c[3]).to_string(),
            final_test: opt(c[4])?,
            best_test: opt(c[5])?,
            iterations: field(c[6]).parse().map_err(|_| bad("iterations"))?,
            elapsed_s: field(c[7]).parse().map_err(|_| bad("elapsed_s"))?,
            updated_unix: field(c[8]).parse().map_err(|_| bad("updated_unix"))?,
            note: field(c[9]).to_string(),
        });
    }
    Ok(rows)
}

/// Whether a file name is one of the sweep's index files.
fn is_index_file(name: &str) -> bool {
    name == INDEX_FILE
        || name.strip_prefix("index-").and_then(|s| s.strip_suffix(".csv")).is_some_and(|s| {
            s.split_once("-of-").is_some_and(|(i, n)| i.parse::<usize>().is_ok() && n.parse::<usize>().is_ok())
        })
}

/// One row per point: per run, the latest row of any index file in `out`, else `pending`.
pub fn merged_index(grid: &Grid, out: &Path) -> Result<Vec<IndexRow>> {
    let points = grid.points();
    let mut rows: Vec<IndexRow> = points.iter().map(IndexRow::pending).collect();
    let entries = std::fs::read_dir(out).map_err(|e| out_err(out, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| is_index_file(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        for r in read_index(grid, &f)? {
            // A row of another grid's point (the grid was edited) is not this sweep's.
            let Some(slot) = rows.get_mut(r.index).filter(|s| s.run == r.run) else { continue };
            if r.updated_unix >= slot.updated_unix {
                *slot = r;
            }
        }
    }
    Ok(rows)
}

/// How a sweep process runs its slice.
pub struct SweepOptions {
    pub out: PathBuf,
    pub slice: Slice,
    pub device: DeviceChoice,
    pub progress: ProgressMode,
    /// Set by Ctrl-C/SIGTERM: the current run stops after its sequence with a checkpoint, and no
    /// further run starts.
    pub stop: Arc<AtomicBool>,
    /// Use this device instead of opening one (tests).
    pub context: Option<Rc<GpuContext>>,
    /// This process's command line, recorded in each run's `config.toml`.
    pub command_line: String,
    /// Runs that differ only in seed, lr, α, β and clip train together as replicas of one engine,
    /// up to this many at once (fewer where the adapter's buffers cannot hold them); 1 runs every
    /// run alone.
    pub max_replicas: usize,
}

/// What a sweep process did.
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// Every run of the sweep (all slices), merged.
    pub rows: Vec<IndexRow>,
    /// Runs this process trained (fresh or resumed).
    pub ran: usize,
    /// Runs of this slice that failed (an error other than divergence).
    pub failed: usize,
    pub interrupted: bool,
    pub elapsed_s: f64,
}

/// Fill a row's outcome from its run directory (what `fptt summarize` reads).
fn record_outcome(row: &mut IndexRow, dir: &Path) {
    if let Ok(s) = summary::summarize(dir) {
        row.metric = s.metric.to_string();
        row.final_test = s.final_test;
        row.best_test = s.best_test.map(|b| b.0);
        row.iterations = s.iterations;
        row.elapsed_s = s.elapsed_s;
    }
}

/// Where a run's checkpoint stands (its iteration), or `None` for a run that starts afresh.
fn checkpoint_iteration(dir: &Path) -> Option<u64> {
    let path = dir.join(super::CHECKPOINT_FILE);
    if !path.is_file() {
        return None;
    }
    let (_, meta) = crate::checkpoint::load(&path).ok()?;
    meta.get("fptt.iteration")?.parse().ok()
}

/// A run of this slice ready to train: its row, point, directory and experiment.
struct Pending {
    k: usize,
    dir: PathBuf,
    resume: bool,
    exp: Experiment,
    /// Where its checkpoint stands: runs pack only with runs at the same point.
    at: Option<u64>,
}

/// Split the pending runs into packs: runs with the same [`pack_key`] and the same checkpoint
/// position, in slice order, at most `max` to a pack, and no more than the adapter's buffers
/// hold.
fn packs(pending: Vec<Pending>, max: usize, ctx: &GpuContext) -> Vec<Vec<Pending>> {
    let mut groups: Vec<(super::Experiment, Option<u64>, Vec<Pending>)> = Vec::new();
    for p in pending {
        let key = pack_key(&p.exp);
        match groups.iter_mut().find(|(k, at, _)| *k == key && *at == p.at) {
            Some((_, _, members)) => members.push(p),
            None => groups.push((key, p.at, vec![p])),
        }
    }
    let mut out = Vec::new();
    for (_, _, members) in groups {
        let exp = &members[0].exp;
        let limits = SizeLimits { host_available: None, ..SizeLimits::of(ctx) };
        let fits = |r: usize| check_fits(&limits, &exp.model_config(), &exp.settings(), exp.train.batch, r).is_ok();
        let mut size = max.max(1).min(members.len());
        while size > 1 && !fits(size) {
            size /= 2;
        }
        let mut members = members.into_iter().peekable();
        while members.peek().is_some() {
            out.push(members.by_ref().take(size).collect());
        }
    }
    out
}

/// Run the points of `opts.slice` (skipping finished ones, resuming interrupted ones), packing
/// runs that differ only in seed and scalar hyperparameters as replicas of one engine
/// (`opts.max_replicas`), rewriting this slice's index file after every change.
pub fn run_sweep(grid: &Grid, opts: &SweepOptions) -> Result<SweepReport> {
    let started = Instant::now();
    let points = grid.check()?;
    let merged = merged_index(grid, &opts.out)?;
    let index_path = opts.out.join(opts.slice.index_file());
    let mut mine: Vec<IndexRow> = merged.iter().filter(|r| opts.slice.holds(r.index)).cloned().collect();
    // A `running` row here is a run whose process was killed: it continues.
    for r in &mut mine {
        if r.status == Status::Running {
            r.status = Status::Interrupted;
        }
    }
    write_index(grid, &index_path, &mine)?;
    let (mut ran, mut failed, mut interrupted) = (0, 0, false);
    let mut pending = Vec::new();
    for k in 0..mine.len() {
        if mine[k].status.is_final() {
            continue;
        }
        let point = &points[mine[k].index];
        let dir = opts.out.join(&point.name);
        let resume = dir.join(CONFIG_FILE).is_file();
        let exp = if resume {
            match resume_experiment(&dir, &[]) {
                Ok(e) => e,
                Err(e) => {
                    failed += 1;
                    mine[k].status = Status::Failed;
                    mine[k].note = e.to_string();
                    mine[k].updated_unix = now_unix();
                    write_index(grid, &index_path, &mine)?;
                    eprintln!("sweep: run {} ({}) failed: {e}", point.index, point.name);
                    continue;
                }
            }
        } else {
            grid.experiment(point)?
        };
        let at = if resume { checkpoint_iteration(&dir) } else { None };
        pending.push(Pending { k, dir, resume, exp, at });
    }
    if pending.is_empty() {
        return Ok(SweepReport {
            rows: merged_index(grid, &opts.out)?,
            ran,
            failed,
            interrupted,
            elapsed_s: started.elapsed().as_secs_f64(),
        });
    }
    if opts.stop.load(Ordering::SeqCst) {
        return Ok(SweepReport {
            rows: merged_index(grid, &opts.out)?,
            ran,
            failed,
            interrupted: true,
            elapsed_s: started.elapsed().as_secs_f64(),
        });
    }
    let ctx = match &opts.context {
        Some(c) => c.clone(),
        None => Rc::new(GpuContext::new(opts.device).map_err(RunError::from)?),
    };
    let total = pending.len();
    let mut done_so_far = 0;
    for pack in packs(pending, opts.max_replicas, &ctx) {
        if opts.stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        for (j, p) in pack.iter().enumerate() {
            let point = &points[mine[p.k].index];
            eprintln!(
                "sweep: run {} of {} in this slice: #{} {} ({}){}{}",
                done_so_far + j + 1,
                total,
                point.index,
                point.name,
                grid.sets(point).join(" "),
                if p.resume { ", resuming" } else { "" },
                if pack.len() > 1 { format!(", replica {} of {}", j + 1, pack.len()) } else { String::new() }
            );
            mine[p.k].status = Status::Running;
            mine[p.k].note.clear();
            mine[p.k].updated_unix = now_unix();
        }
        done_so_far += pack.len();
        write_index(grid, &index_path, &mine)?;
        let train_opts: Vec<TrainOptions> = pack
            .iter()
            .map(|p| {
                let point = &points[mine[p.k].index];
                TrainOptions {
                    out: Some(p.dir.clone()),
                    resume: p.resume,
                    device: opts.device,
                    init: None,
                    command_line: format!(
                        "{} (run {}: --set {})",
                        opts.command_line,
                        point.index,
                        grid.sets(point).join(" --set ")
                    ),
                    progress: opts.progress,
                    stop: opts.stop.clone(),
                    context: Some(ctx.clone()),
                    profile: false,
                    deadline: None,
                }
            })
            .collect();
        ran += pack.len();
        let runs: Vec<(&Experiment, &TrainOptions)> = pack.iter().map(|p| &p.exp).zip(&train_opts).collect();
        let results = match train_pack(&runs) {
            Ok(results) => results,
            // One failure that ends a pack (a run's setup, a file): each of its runs alone, so
            // that the failure is its own run's.
            Err(_) if runs.len() > 1 => runs.iter().map(|(exp, o)| train(exp, o)).collect(),
            Err(e) => vec![Err(e)],
        };
        for (p, result) in pack.iter().zip(results) {
            let point = &points[mine[p.k].index];
            let row = &mut mine[p.k];
            match result {
                Ok(s) if s.interrupted => {
                    row.status = Status::Interrupted;
                    interrupted = true;
                }
                Ok(_) => row.status = Status::Done,
                Err(e @ RunError::Diverged { .. }) => {
                    row.status = Status::Diverged;
                    row.note = e.to_string();
                    eprintln!("sweep: run {} ({}) diverged: {e}", point.index, point.name);
                }
                Err(e) => {
                    failed += 1;
                    row.status = Status::Failed;
                    row.note = e.to_string();
                    eprintln!("sweep: run {} ({}) failed: {e}", point.index, point.name);
                }
            }
            record_outcome(row, &p.dir);
            row.updated_unix = now_unix();
        }
        write_index(grid, &index_path, &mine)?;
        if interrupted {
            break;
        }
    }
    Ok(SweepReport {
        rows: merged_index(grid, &opts.out)?,
        ran,
        failed,
        interrupted,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The finished runs grouped by their non-seed axis values, each group as `summarize --group`'s
/// line (mean ± std over the seeds): `(label, line)` in the order of each label's first point.
pub fn seed_summary(grid: &Grid, out: &Path, rows: &[IndexRow]) -> Result<Vec<(String, GroupRow)>> {
    let points = grid.points();
    let mut labels: Vec<(String, Vec<summary::RunSummaryRow>)> = Vec::new();
    for r in rows.iter().filter(|r| r.status == Status::Done) {
        let label = grid.label(&points[r.index]);
        let s = summary::summarize(&out.join(&r.run)).map_err(SweepError::Run)?;
        match labels.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(s),
            None => labels.push((label, vec![s])),
        }
    }
    Ok(labels
        .into_iter()
        .flat_map(|(l, runs)| summary::group(&runs).into_iter().map(move |g| (l.clone(), g)))
        .collect())
}

/// `seed_summary` as a Markdown table: a `point` column before `summarize --group`'s.
pub fn seed_summary_markdown(groups: &[(String, GroupRow)]) -> String {
    let mut header = GroupRow::MARKDOWN_HEADER.lines();
    let mut text =
        format!("| point {}\n|---{}\n", header.next().unwrap_or_default(), header.next().unwrap_or_default());
    for (label, g) in groups {
        text.push_str(&format!("| {label} {}\n", g.markdown()));
    }
    text
}

/// The Slurm job-array script: task `i` runs slice `i/n` of the sweep in `out`, resumable when
/// requeued. `exe` is the `fptt` binary to run.
pub fn slurm_script(grid: &Grid, out: &Path, n: usize, max_replicas: usize, exe: &Path) -> String {
    let q = |p: &Path| super::run_dir::quote_path(p);
    format!(
        "#!/bin/bash\n\
         # Slurm job array for the sweep `{name}` ({runs} runs in {n} slices), written by `fptt sweep --slurm {n}`.\n\
         # Task I runs every run whose index ≡ I (mod {n}) with `fptt sweep --resume`, so a requeued or\n\
         # restarted task skips what is done and continues an interrupted run from its checkpoint.\n\
         # Submit from the directory fptt sweep ran in:  sbatch {script}\n\
         #SBATCH --job-name=fptt-{name}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --gres=gpu:1\n\
         #SBATCH --cpus-per-task=2\n\
         # EDIT the next line: the wall time one slice needs (its runs, one after another).\n\
         #SBATCH --time=01:00:00\n\
         #SBATCH --output={out_dir}/slurm-%A_%a.out\n\
         #SBATCH --requeue\n\
         # SIGTERM two minutes before the time limit: the current run checkpoints and stops.\n\
         #SBATCH --signal=B:TERM@120\n\n\
         cd \"$SLURM_SUBMIT_DIR\" || exit 1\n\
         exec {exe} sweep --resume {out_q} --slice \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --max-replicas {max_replicas} --progress log\n",
        name = grid.name,
        runs = grid.points().len(),
        script = q(&out.join(SLURM_FILE)),
        last = n - 1,
        out_dir = out.display(),
        exe = q(exe),
        out_q = q(out),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(text: &str) -> (PathBuf, Result<Grid>) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fptt-sweep-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("base.toml"),
            "name = \"b\"\n[data]\ntask = \"adding\"\nsteps = 6\n[model]\nhidden = [8]\n[train]\nbatch = 8\n",
        )
        .unwrap();
        let path = dir.join("grid.toml");
        std::fs::write(&path, text).unwrap();
        let g = Grid::load(&path);
        (path, g)
    }

    #[test]
    fn points_are_the_product_first_axis_outermost_with_readable_names() {
        let (_, g) = grid(
            "base = \"base.toml\"\n[set]\n\"train.epochs\" = 1\n[axes]\nseed = [1, 2]\n\"train.lr\" = [0.001, 0.003]\n\"model.neuron\" = [\"ltc\"]\n",
        );
        let g = g.unwrap();
        let names: Vec<String> = g.points().into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "seed1-train.lr0.001-model.neuronltc",
                "seed1-train.lr0.003-model.neuronltc",
                "seed2-train.lr0.001-model.neuronltc",
                "seed2-train.lr0.003-model.neuronltc"
            ]
        );
        let p = &g.points()[1];
        assert_eq!(g.sets(p), ["train.epochs=1", "seed=1", "train.lr=0.003", "model.neuron=\"ltc\""]);
        assert_eq!(g.label(p), "train.lr0.003-model.neuronltc");
        let exp = g.experiment(p).unwrap();
        assert_eq!((exp.seed, exp.train.lr, exp.train.epochs), (1, 0.003, 1));
        assert_eq!(g.check().unwrap().len(), 4);
    }

    #[test]
    fn an_invalid_axis_value_is_refused_naming_the_grid_the_axis_and_the_value() {
        let (path, g) = grid("base = \"base.toml\"\n[axes]\nseed = [1]\n\"train.lr\" = [0.01, -1.0]\n");
        let err = g.unwrap().check().unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("axis `train.lr` = -1.0") && err.contains("train.lr"), "{err}");
        let (_, g) = grid("base = \"base.toml\"\n[axes]\n\"train.lrr\" = [0.01]\n");
        let err = g.unwrap().check().unwrap_err().to_string();
        assert!(err.contains("axis `train.lrr`") && err.contains("unknown key"), "{err}");
        for (text, wanted) in [
            ("[axes]\nseed = [1]\n", "base: missing"),
            ("base = \"nope.toml\"\n", "cannot read"),
            ("base = \"base.toml\"\n[axes]\nseed = 1\n", "non-empty array"),
            ("base = \"base.toml\"\n[axes]\nseed = []\n", "non-empty array"),
            ("base = \"base.toml\"\nbases = 1\n", "bases: unknown key"),
            ("base = \"base.toml\"\n[set]\nseed = 1\n[axes]\nseed = [2]\n", "both in [set] and in [axes]"),
        ] {
            let err = grid(text).1.unwrap_err().to_string();
            assert!(err.contains("grid.toml") && err.contains(wanted), "{text}: {err}");
        }
    }

    #[test]
    fn slices_partition_the_points_and_refuse_nonsense() {
        let s: Slice = "1/3".parse().unwrap();
        let taken: Vec<usize> = (0..8).filter(|&i| s.holds(i)).collect();
        assert_eq!(taken, [1, 4, 7]);
        let all: usize = (0..3).map(|p| (0..8).filter(|&i| Slice { part: p, count: 3 }.holds(i)).count()).sum();
        assert_eq!(all, 8);
        assert_eq!(s.index_file(), "index-1-of-3.csv");
        assert_eq!(Slice::WHOLE.index_file(), INDEX_FILE);
        for bad in ["3/3", "0/0", "1", "-1/2", "a/b"] {
            assert!(bad.parse::<Slice>().unwrap_err().contains("0 ≤ I < N"), "{bad}");
        }
        assert!(is_index_file("index-0-of-2.csv") && is_index_file(INDEX_FILE) && !is_index_file("index-x.csv"));
    }

    #[test]
    fn the_latest_row_of_any_index_file_wins() {
        let (path, g) = grid("base = \"base.toml\"\n[axes]\nseed = [1, 2, 3]\n");
        let g = g.unwrap();
        let out = path.parent().unwrap().join("out");
        prepare(&g, &out).unwrap();
        prepare(&g, &out).unwrap();
        let points = g.points();
        let mut a = IndexRow::pending(&points[0]);
        a.status = Status::Interrupted;
        a.updated_unix = 10.0;
        let mut b = a.clone();
        b.status = Status::Done;
        b.updated_unix = 20.0;
        b.final_test = Some(0.5);
        write_index(&g, &out.join(INDEX_FILE), &[b.clone()]).unwrap();
        write_index(&g, &out.join("index-0-of-2.csv"), &[a]).unwrap();
        let rows = merged_index(&g, &out).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], b);
        assert_eq!(rows[1].status, Status::Pending);
        let again = open(&out).unwrap();
        assert_eq!((again.axes.clone(), again.base_text.clone()), (g.axes.clone(), g.base_text.clone()));
        let other = Grid { axes: vec![Axis { key: "seed".into(), values: vec![Value::Integer(9)] }], ..g };
        assert!(prepare(&other, &out).unwrap_err().to_string().contains("already holds another sweep"));
        let script = slurm_script(&again, &out, 4, 8, Path::new("/opt/fptt"));
        assert!(
            script.contains("#SBATCH --array=0-3")
                && script.contains("--slice \"${SLURM_ARRAY_TASK_ID}/4\" --max-replicas 8")
        );
    }
}
