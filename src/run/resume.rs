//! Resuming a run, in one place: the experiment from the run directory's `config.toml`, the
//! `[run]` record carried over, and the position the checkpoint's metadata holds (epoch, batch,
//! iteration, update count, generator states, the open report window) — written by
//! [`Position::to_meta`] and read back by [`Position::from_meta`], so the two cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;

use toml::{Table, Value};

use super::experiment::{Experiment, RUN_SECTION};
use super::trainer::{CHECKPOINT_FILE, CONFIG_FILE};
use super::RunError;
use crate::learn::SequenceMetrics;
use crate::rng::Rng;

/// Metadata keys of a run checkpoint.
mod meta {
    pub const FORMAT: &str = "fptt.format";
    pub const FORMAT_VALUE: &str = "fptt-run-1";
    pub const NAME: &str = "fptt.experiment";
    pub const VERSION: &str = "fptt.version";
    pub const EPOCH: &str = "fptt.epochs_done";
    pub const BATCH: &str = "fptt.batch_in_epoch";
    pub const ITERATION: &str = "fptt.iteration";
    pub const UPDATES: &str = "fptt.updates";
    pub const LR: &str = "fptt.lr";
    pub const ELAPSED: &str = "fptt.elapsed_s";
    pub const RNG_DATA: &str = "fptt.rng.data";
    pub const RNG_EPOCH_START: &str = "fptt.rng.epoch_start";
    pub const RNG_MEMBRANE: &str = "fptt.rng.membrane";
    pub const WINDOW: &str = "fptt.report_window";
}

/// The experiment of a run directory (its `config.toml`), with `--set` overrides.
pub fn resume_experiment(dir: &Path, sets: &[String]) -> Result<Experiment, RunError> {
    let path = dir.join(CONFIG_FILE);
    if !path.is_file() {
        return Err(RunError::Resume {
            dir: dir.to_path_buf(),
            message: format!("{} not found (is this a run directory written by `fptt train`?)", path.display()),
        });
    }
    let exp = Experiment::load(&path, sets)?;
    check_resume_sets(dir, &path, sets, &exp)?;
    Ok(exp)
}

/// The keys `--set` may change on `--resume`: they extend a run (or change how often it reports
/// and checkpoints), never what it computes.
pub const RESUME_KEYS: [&str; 4] =
    ["train.epochs", "train.max_iterations", "train.checkpoint_every", "output.report_every"];

/// The value of `section.key` (or a top-level `key`) in an experiment's table.
fn lookup<'a>(table: &'a Table, key: &str) -> Option<&'a Value> {
    match key.split_once('.') {
        Some((section, k)) => table.get(section)?.as_table()?.get(k),
        None => table.get(key),
    }
}

/// Refuse a `--set` on resume that would change the run's record (the seed, the batch, the
/// learning rate, …): only [`RESUME_KEYS`] may differ from `config.toml`.
fn check_resume_sets(dir: &Path, config: &Path, sets: &[String], exp: &Experiment) -> Result<(), RunError> {
    if sets.is_empty() {
        return Ok(());
    }
    let recorded = Experiment::load(config, &[])?.to_table();
    let asked = exp.to_table();
    for arg in sets {
        let key = arg.split_once('=').map_or(arg.as_str(), |(k, _)| k).trim();
        if RESUME_KEYS.contains(&key) || lookup(&recorded, key) == lookup(&asked, key) {
            continue;
        }
        return Err(RunError::Resume {
            dir: dir.to_path_buf(),
            message: format!(
                "--set {arg}: `{key}` is part of the run's record and cannot change mid-run; on --resume only {} \
                 may change. To train on with other settings, start a new run from its weights: \
                 --init {}",
                RESUME_KEYS.join(", "),
                dir.join(CHECKPOINT_FILE).display()
            ),
        });
    }
    Ok(())
}

fn rng_to_string(r: &Rng) -> String {
    r.state().iter().map(|x| format!("{x:016x}")).collect::<Vec<_>>().join(",")
}

fn rng_from_string(s: &str) -> Option<Rng> {
    let parts: Vec<u64> = s.split(',').map(|p| u64::from_str_radix(p, 16).ok()).collect::<Option<_>>()?;
    let arr: [u64; 4] = parts.try_into().ok()?;
    Some(Rng::from_state(arr))
}

/// Where a run stands: fresh, or as a checkpoint left it.
pub(super) struct Position {
    pub epochs_done: usize,
    pub batch_in_epoch: usize,
    /// Training sequences so far.
    pub iteration: u64,
    pub data_rng: Rng,
    /// The data generator at the start of the current epoch (the image tasks' order is drawn
    /// from it, so a resumed epoch redraws the same order).
    pub epoch_start: Rng,
    pub membrane_rng: Rng,
    /// Seconds the run had trained before this process started.
    pub elapsed_before: f64,
    /// The report window still open.
    pub window: Tally,
}

/// Sums over the sequences of a report window or an evaluation.
#[derive(Default)]
pub(super) struct Tally {
    pub sequences: usize,
    pub samples: usize,
    pub loss: f64,
    pub correct: usize,
    pub sqerr: f64,
    pub spikes: f64,
}

impl Tally {
    /// Exact text form (f64 bit patterns), so a resumed run reports the same window sums.
    fn to_meta(&self) -> String {
        format!(
            "{},{},{:016x},{},{:016x},{:016x}",
            self.sequences,
            self.samples,
            self.loss.to_bits(),
            self.correct,
            self.sqerr.to_bits(),
            self.spikes.to_bits()
        )
    }

    fn from_meta(s: &str) -> Option<Tally> {
        let p: Vec<&str> = s.split(',').collect();
        if p.len() != 6 {
            return None;
        }
        let bits = |x: &str| u64::from_str_radix(x, 16).ok().map(f64::from_bits);
        Some(Tally {
            sequences: p[0].parse().ok()?,
            samples: p[1].parse().ok()?,
            loss: bits(p[2])?,
            correct: p[3].parse().ok()?,
            sqerr: bits(p[4])?,
            spikes: bits(p[5])?,
        })
    }

    pub fn add(&mut self, m: &SequenceMetrics) {
        self.sequences += 1;
        self.samples += m.samples;
        self.loss += m.loss() * m.samples as f64;
        self.correct += m.correct();
        self.sqerr += m.last_sqerr();
        self.spikes += m.spikes();
    }
}

fn meta_get<'a>(dir: &Path, m: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, RunError> {
    m.get(key).map(|s| s.as_str()).ok_or_else(|| RunError::Resume {
        dir: dir.to_path_buf(),
        message: format!("{CHECKPOINT_FILE} has no `{key}` entry (not a run checkpoint of this version)"),
    })
}

fn meta_parse<T: std::str::FromStr>(dir: &Path, m: &BTreeMap<String, String>, key: &str) -> Result<T, RunError> {
    let s = meta_get(dir, m, key)?;
    s.parse().map_err(|_| RunError::Resume {
        dir: dir.to_path_buf(),
        message: format!("{CHECKPOINT_FILE}: `{key}` = {s:?} is not valid"),
    })
}

fn meta_rng(dir: &Path, m: &BTreeMap<String, String>, key: &str) -> Result<Rng, RunError> {
    let s = meta_get(dir, m, key)?;
    rng_from_string(s).ok_or_else(|| RunError::Resume {
        dir: dir.to_path_buf(),
        message: format!("{CHECKPOINT_FILE}: `{key}` = {s:?} is not a generator state"),
    })
}

impl Position {
    /// A fresh run: nothing done, every generator derived from the seed.
    pub fn fresh(seed: u64) -> Position {
        Position {
            epochs_done: 0,
            batch_in_epoch: 0,
            iteration: 0,
            data_rng: Rng::derive(seed, "data"),
            epoch_start: Rng::derive(seed, "data"),
            membrane_rng: Rng::derive(seed, "membrane"),
            elapsed_before: 0.0,
            window: Tally::default(),
        }
    }

    /// The checkpoint metadata of this position, for experiment `name` after `updates` engine
    /// updates, at learning rate `lr` and `elapsed` seconds in all.
    pub fn to_meta(&self, name: &str, updates: u64, lr: f64, elapsed: f64) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(meta::FORMAT.to_string(), meta::FORMAT_VALUE.to_string());
        m.insert(meta::NAME.to_string(), name.to_string());
        m.insert(meta::VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string());
        m.insert(meta::EPOCH.to_string(), self.epochs_done.to_string());
        m.insert(meta::BATCH.to_string(), self.batch_in_epoch.to_string());
        m.insert(meta::ITERATION.to_string(), self.iteration.to_string());
        m.insert(meta::UPDATES.to_string(), updates.to_string());
        m.insert(meta::LR.to_string(), lr.to_string());
        m.insert(meta::ELAPSED.to_string(), elapsed.to_string());
        m.insert(meta::RNG_DATA.to_string(), rng_to_string(&self.data_rng));
        m.insert(meta::RNG_EPOCH_START.to_string(), rng_to_string(&self.epoch_start));
        m.insert(meta::RNG_MEMBRANE.to_string(), rng_to_string(&self.membrane_rng));
        m.insert(meta::WINDOW.to_string(), self.window.to_meta());
        m
    }

    /// The position and engine update count a run checkpoint of `dir` records, for epochs of
    /// `batches_per_epoch` batches.
    pub fn from_meta(
        dir: &Path,
        m: &BTreeMap<String, String>,
        batches_per_epoch: usize,
    ) -> Result<(Position, u64), RunError> {
        if m.get(meta::FORMAT).map(|s| s.as_str()) != Some(meta::FORMAT_VALUE) {
            return Err(RunError::Resume {
                dir: dir.to_path_buf(),
                message: format!(
                    "{CHECKPOINT_FILE} is not a run checkpoint (no {} = {})",
                    meta::FORMAT,
                    meta::FORMAT_VALUE
                ),
            });
        }
        let updates = meta_parse(dir, m, meta::UPDATES)?;
        let pos = Position {
            epochs_done: meta_parse(dir, m, meta::EPOCH)?,
            batch_in_epoch: meta_parse(dir, m, meta::BATCH)?,
            iteration: meta_parse(dir, m, meta::ITERATION)?,
            data_rng: meta_rng(dir, m, meta::RNG_DATA)?,
            epoch_start: meta_rng(dir, m, meta::RNG_EPOCH_START)?,
            membrane_rng: meta_rng(dir, m, meta::RNG_MEMBRANE)?,
            elapsed_before: meta_parse(dir, m, meta::ELAPSED)?,
            window: m.get(meta::WINDOW).and_then(|w| Tally::from_meta(w)).unwrap_or_default(),
        };
        if pos.batch_in_epoch > batches_per_epoch {
            return Err(RunError::Resume {
                dir: dir.to_path_buf(),
                message: format!(
                    "the checkpoint is at batch {} of an epoch, but an epoch now has {batches_per_epoch} batches \
                     (was the data or batch size changed?)",
                    pos.batch_in_epoch
                ),
            });
        }
        Ok((pos, updates))
    }
}

/// Whether `dir` can continue: with a checkpoint, from it; without one (stopped before its first
/// checkpoint), from the beginning with its recorded configuration — unless it started from
/// `--init` weights, which `config.toml` does not hold.
pub(super) fn check_resumable(dir: &Path) -> Result<(), RunError> {
    if dir.join(CHECKPOINT_FILE).is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap_or_default();
    let command = text
        .parse::<Table>()
        .ok()
        .and_then(|t| t.get(RUN_SECTION)?.get("command")?.as_str().map(str::to_string))
        .unwrap_or_default();
    if command.split_whitespace().any(|a| a == "--init" || a.starts_with("--init=")) {
        return Err(RunError::Resume {
            dir: dir.to_path_buf(),
            message: format!(
                "no {CHECKPOINT_FILE} yet (the run stopped before its first checkpoint), and it started from \
                 --init weights; start it again with its command and a new --out: {command}"
            ),
        });
    }
    Ok(())
}

/// The `[run]` record of a resumed run: the one its `config.toml` holds, with this resume added
/// to `resumed` (its command line, the iteration it continues from and the adapter).
pub(super) fn resumed_run_record(config: &Path, command_line: &str, iteration: u64, adapter: &str) -> Table {
    let mut run = Table::new();
    if let Ok(old) = std::fs::read_to_string(config).unwrap_or_default().parse::<Table>() {
        if let Some(Value::Table(r)) = old.get(RUN_SECTION) {
            run = r.clone();
        }
    }
    let mut resumes = match run.remove("resumed") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    resumes.push(Value::String(format!("{command_line} (at iteration {iteration}, on {adapter})")));
    run.insert("resumed".into(), Value::Array(resumes));
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_states_round_trip_through_text() {
        let mut r = Rng::derive(5, "x");
        r.next_u64();
        assert_eq!(rng_from_string(&rng_to_string(&r)), Some(r));
        assert_eq!(rng_from_string("1,2,3"), None);
    }

    #[test]
    fn positions_round_trip_through_checkpoint_metadata() {
        let mut pos = Position::fresh(3);
        pos.epochs_done = 2;
        pos.batch_in_epoch = 5;
        pos.iteration = 77;
        pos.membrane_rng.next_u64();
        pos.window = Tally { sequences: 2, samples: 8, loss: 0.1, correct: 3, sqerr: 0.0, spikes: 12.5 };
        let m = pos.to_meta("x", 99, 0.01, 1.5);
        let (back, updates) = Position::from_meta(Path::new("d"), &m, 5).unwrap();
        assert_eq!(updates, 99);
        assert_eq!((back.epochs_done, back.batch_in_epoch, back.iteration), (2, 5, 77));
        assert_eq!((back.membrane_rng, back.elapsed_before), (pos.membrane_rng, 1.5));
        assert_eq!(back.window.to_meta(), pos.window.to_meta());
        let err = Position::from_meta(Path::new("d"), &m, 4).err().unwrap().to_string();
        assert!(err.contains("an epoch now has 4 batches"), "{err}");
    }
}
