//! `fptt plot`: pictures of the CSVs the other commands write. The CSVs stay the source of
//! truth; this module only reads them (and a run directory's `config.toml`) and draws SVG or PNG
//! files with `plotters`, text set in the bundled DejaVu Sans (`assets/fonts/`), so a figure looks
//! the same on every machine and needs no system font library.
//!
//! It owns: reading CSV tables by column name with errors that name the file and the column
//! ([`Table`], [`PlotError`]); a small figure description ([`Figure`]: panels of lines with
//! optional bands and dashes, horizontal reference lines, or horizontal bars) and its renderer;
//! and the four plots built on them: learning curves of run directories ([`runs`]), GPU time per
//! kernel, time and GFLOP/s per shape against a PyTorch peer, and memory against T ([`bench`]).
//! It depends on nothing else in the crate (no GPU code): it reads CSV and TOML only.

pub mod bench;
mod png_text;
mod render;
pub mod runs;

use std::path::{Path, PathBuf};

pub use bench::{plot_bench, plot_kernels, plot_memory};
pub use render::{Bar, BarChart, Figure, HLine, LinePanel, Panel, Series, Stroke};
pub use runs::{plot_runs, RunPlotOptions, XAxis};

/// Everything that can go wrong reading the inputs or writing a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: no column `{column}` (its columns: {found})")]
    MissingColumn { path: PathBuf, column: String, found: String },
    #[error("{path}: no data rows (only a header, or an empty file)")]
    Empty { path: PathBuf },
    #[error("{path}, line {line}: column `{column}` = {value:?} is not a number")]
    NotANumber { path: PathBuf, line: usize, column: String, value: String },
    #[error("{dir}: not a run directory (no {file} in it)")]
    NotARun { dir: PathBuf, file: &'static str },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    NothingToPlot { path: PathBuf, message: String },
    #[error("{path}: cannot tell the figure format from the extension (use .svg or .png)")]
    Format { path: PathBuf },
    #[error("writing {path}: {message}")]
    Draw { path: PathBuf, message: String },
}

/// The output format, from the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    pub fn from_path(path: &Path) -> Result<Format, PlotError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err(PlotError::Format { path: path.to_path_buf() }),
        }
    }
}

/// `FILE.csv` → `FILE.svg`: the default figure next to its input.
pub fn default_out(input: &Path) -> PathBuf {
    input.with_extension("svg")
}

/// A CSV file read whole, its columns looked up by name.
#[derive(Debug, Clone)]
pub struct Table {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<csv::StringRecord>,
}

impl Table {
    /// Reads `path`; a file without data rows, or with a short line before the last, is refused.
    pub fn read(path: &Path) -> Result<Table, PlotError> {
        let read_err = |e: &dyn std::fmt::Display| PlotError::Read { path: path.to_path_buf(), message: e.to_string() };
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(|e| read_err(&e))?;
        let header: Vec<String> = reader.headers().map_err(|e| read_err(&e))?.iter().map(str::to_string).collect();
        let mut rows = reader.records().collect::<Result<Vec<_>, _>>().map_err(|e| read_err(&e))?;
        // A last line cut short (a run killed mid-write, or one still running) is left out; a
        // short line anywhere else is an error.
        if rows.last().is_some_and(|r| r.len() != header.len()) {
            rows.pop();
        }
        if let Some(i) = rows.iter().position(|r| r.len() != header.len()) {
            let message = format!("line {}: {} fields, the header has {}", i + 2, rows[i].len(), header.len());
            return Err(PlotError::Read { path: path.to_path_buf(), message });
        }
        if rows.is_empty() || header.iter().all(|h| h.is_empty()) {
            return Err(PlotError::Empty { path: path.to_path_buf() });
        }
        Ok(Table { path: path.to_path_buf(), header, rows })
    }

    pub fn has(&self, column: &str) -> bool {
        self.header.iter().any(|h| h == column)
    }

    /// The index of `column`, or an error naming the file, the column and the columns it has.
    pub fn col(&self, column: &str) -> Result<usize, PlotError> {
        self.header.iter().position(|h| h == column).ok_or_else(|| PlotError::MissingColumn {
            path: self.path.clone(),
            column: column.to_string(),
            found: self.header.join(", "),
        })
    }

    /// Row `row`'s value in column `c` as a number (an empty cell is an error).
    pub fn num(&self, row: usize, c: usize) -> Result<f64, PlotError> {
        self.opt_num(row, c)?.ok_or_else(|| self.not_a_number(row, c))
    }

    /// Row `row`'s value in column `c`: `None` for an empty cell.
    pub fn opt_num(&self, row: usize, c: usize) -> Result<Option<f64>, PlotError> {
        let cell = self.rows[row].get(c).unwrap_or("").trim();
        if cell.is_empty() {
            return Ok(None);
        }
        cell.parse::<f64>().map(Some).map_err(|_| self.not_a_number(row, c))
    }

    pub fn text(&self, row: usize, c: usize) -> &str {
        self.rows[row].get(c).unwrap_or("")
    }

    /// The distinct values of a text column, in order of appearance.
    pub fn distinct(&self, c: usize) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for r in 0..self.rows.len() {
            let v = self.text(r, c);
            if !v.is_empty() && !seen.iter().any(|s| s == v) {
                seen.push(v.to_string());
            }
        }
        seen
    }

    fn not_a_number(&self, row: usize, c: usize) -> PlotError {
        PlotError::NotANumber {
            path: self.path.clone(),
            // Line 1 is the header.
            line: row + 2,
            column: self.header[c].clone(),
            value: self.text(row, c).to_string(),
        }
    }
}

/// "adapter (backend)" for every distinct adapter of a table, joined: the title's "on …".
fn adapters_of(table: &Table) -> String {
    let Ok(a) = table.col("adapter") else { return String::new() };
    let backend = table.col("backend").ok();
    let mut names: Vec<String> = Vec::new();
    for r in 0..table.rows.len() {
        let name = adapter_name(table.text(r, a), backend.map(|b| table.text(r, b)).unwrap_or(""));
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(", ")
}

/// "NVIDIA H200 (Vulkan)", "llvmpipe (LLVM 15.0.6, 256 bits), Vulkan".
fn adapter_name(adapter: &str, backend: &str) -> String {
    let backend = match backend {
        "vulkan" => "Vulkan",
        "metal" => "Metal",
        "dx12" => "DX12",
        "gl" => "GL",
        other => other,
    };
    match (adapter, backend) {
        (a, "") => a.to_string(),
        ("", b) => b.to_string(),
        (a, b) if a.ends_with(')') => format!("{a}, {b}"),
        (a, b) => format!("{a} ({b})"),
    }
}

/// Numbers for tick labels and legends: short, no trailing zeros, powers of ten compact.
pub fn format_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.0e}");
        return if (v / s.parse::<f64>().unwrap_or(v) - 1.0).abs() < 1e-9 { s } else { format!("{v:.1e}") };
    }
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}
