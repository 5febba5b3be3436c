//! A run's directory: where it goes (`--out`, `output.dir` or `runs/<name>-<UTC time>`), creating
//! it exclusively so that two runs never share one, claiming it with `config.toml`, refusing a
//! directory that already holds a run, the resolved `config.toml` itself, the command line it
//! records, and atomic rewrites of its files.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::experiment::{Experiment, RUN_SECTION};
use super::resume;
use super::trainer::{TrainOptions, CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE};
use super::RunError;

/// `YYYYMMDD-HHMMSS` in UTC.
/// The start of a run's `[run]` record, the same for `fptt train` and `fptt stream`: engine version,
/// adapter, backend and device type (so software-adapter numbers are never taken for GPU ones),
/// the command, the start time, GPU bytes and how the kernels were built.
pub(super) fn engine_run_record(engine: &crate::learn::Engine, command_line: &str) -> Table {
    let ctx = engine.context();
    let mut run = Table::new();
    run.insert("engine_version".into(), Value::String(env!("CARGO_PKG_VERSION").into()));
    run.insert("adapter".into(), Value::String(ctx.adapter_name().into()));
    run.insert("backend".into(), Value::String(ctx.backend_name()));
    run.insert("device_type".into(), Value::String(ctx.device_type_name().into()));
    run.insert("command".into(), Value::String(command_line.to_string()));
    run.insert("started_utc".into(), Value::String(utc_stamp()));
    run.insert("gpu_bytes".into(), Value::Integer(engine.gpu_bytes() as i64));
    // How the kernels were built: a run can be repeated with the same shape (FPTT_MATMUL_TILING).
    run.insert("matmul_tiling".into(), Value::String(engine.matmul_tiling().code()));
    run.insert("dispatches_per_step".into(), Value::Integer(engine.dispatches_per_step() as i64));
    // Which reduction path ran (subgroup operations, or the workgroup-memory tree where the
    // device lacks them or FPTT_NO_SUBGROUPS=1): the two agree to the last bits only.
    run.insert("subgroup_reductions".into(), Value::Boolean(engine.subgroup_reductions()));
    run
}

pub(super) fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Where the run writes: `--out`, else `output.dir`, else `runs/<name>-<UTC timestamp>`; and
/// whether that is the default name (which [`create_run_dir`] numbers on a collision).
pub(super) fn run_dir(exp: &Experiment, opts: &TrainOptions) -> (PathBuf, bool) {
    match opts.out.clone().or_else(|| exp.output.dir.clone()) {
        Some(dir) => (dir, false),
        None => (PathBuf::from("runs").join(format!("{}-{}", exp.name, utc_stamp())), true),
    }
}

/// Create a fresh run's directory exclusively (`create_dir` on the leaf, so two runs can never
/// both create it). A default name already taken (another run started in the same second) gets
/// the next free suffix `-2`, `-3`, …; a named directory may exist already, and is claimed by
/// [`claim_config`].
pub(super) fn create_run_dir(dir: &Path, numbered: bool) -> Result<PathBuf, RunError> {
    let fail = |path: &Path, e: std::io::Error| RunError::Output { path: path.to_path_buf(), message: e.to_string() };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| fail(parent, e))?;
    }
    let mut n = 1;
    loop {
        let candidate = if n == 1 { dir.to_path_buf() } else { PathBuf::from(format!("{}-{n}", dir.display())) };
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && numbered => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && candidate.is_dir() => return Ok(candidate),
            Err(e) => return Err(fail(&candidate, e)),
        }
    }
}

/// Write a fresh run's `config.toml`, creating it exclusively: of two runs started into the same
/// directory, the second is refused here.
pub(super) fn claim_config(dir: &Path, text: &str) -> Result<(), RunError> {
    use std::io::Write;
    let path = dir.join(CONFIG_FILE);
    let fail = |e: std::io::Error| RunError::Output { path: path.clone(), message: e.to_string() };
    let mut f = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(taken(dir, CONFIG_FILE)),
        Err(e) => return Err(fail(e)),
    };
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)
}

fn taken(dir: &Path, file: &str) -> RunError {
    RunError::Setup(format!(
        "{} already holds a run ({file} exists); continue it with --resume {}, or choose another --out",
        dir.display(),
        dir.display()
    ))
}

fn quote_arg(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// A path as one shell word.
pub(super) fn quote_path(p: &Path) -> String {
    quote_arg(&p.to_string_lossy())
}

/// The command line of this process, shell-quoted.
pub fn command_line() -> String {
    std::env::args().map(|a| quote_arg(&a)).collect::<Vec<_>>().join(" ")
}

pub(super) fn config_toml(exp: &Experiment, dir: &Path, run: Table) -> String {
    let mut table = exp.to_table();
    if let Some(Value::Table(out)) = table.get_mut("output") {
        out.insert("dir".into(), Value::String(dir.to_string_lossy().to_string()));
    }
    table.insert(RUN_SECTION.into(), Value::Table(run));
    format!(
        "# The fully resolved experiment of this run (every default filled in), written by `fptt train`.\n\
         # [run] records where and how it ran; it is ignored when this file is read back (--resume).\n\n{}",
        toml::to_string(&table).expect("a table of plain values serialises")
    )
}

/// Replace `path` atomically (a kill while writing keeps the old file).
pub(super) fn write_file(path: &Path, text: &str, point: &str) -> Result<(), RunError> {
    crate::files::write_atomic(path, text.as_bytes(), point)
        .map_err(|e| RunError::Output { path: path.to_path_buf(), message: e.to_string() })
}

/// Refuse to start where a run already is (a fresh start) or cannot continue (a resume).
pub(super) fn check_run_dir(dir: &Path, opts: &TrainOptions) -> Result<(), RunError> {
    if opts.resume {
        if opts.init.is_some() {
            return Err(RunError::Setup("--init and --resume exclude each other".into()));
        }
        return resume::check_resumable(dir);
    }
    for f in [CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE] {
        if dir.join(f).exists() {
            return Err(taken(dir, f));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_and_quoting() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15, "{s}");
        assert_eq!(quote_arg("train.lr=0.1"), "train.lr=0.1");
        assert_eq!(quote_arg("a b"), "'a b'");
    }
}
