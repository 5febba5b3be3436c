//! The stream experiment file (`fptt stream EXPERIMENT.toml`): every key declared once in
//! [`STREAM_KEYS`] (default, range, meaning), which the parser reads, the resolved `config.toml`
//! repeats and a test holds `experiments/README.md`'s stream table to. Errors name the file, the
//! key and what was expected, like `fptt train`'s.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::model::{ModelConfig, NeuronKind, ThresholdMode};
use crate::settings::{LearningRule, LossKind, Optimizer, TrainingSettings};

/// One key: `section.name`, its default (TOML text), its range and meaning (the README's columns).
pub struct StreamKey {
    pub key: &'static str,
    pub default: &'static str,
    pub range: &'static str,
    pub meaning: &'static str,
}

impl StreamKey {
    /// This key's row of the README's stream table.
    pub fn readme_row(&self) -> String {
        format!("| `{}` | {} | {} | {} |", self.key, self.default, self.range, self.meaning)
    }
}

/// Every key of a stream experiment, in the README's order.
pub const STREAM_KEYS: &[StreamKey] = &[
    StreamKey { key: "name", default: "the file's stem", range: "letters, digits, `-`, `_`, `.`", meaning: "the run's name: the `run` column of `metrics.csv` and the default output directory" },
    StreamKey { key: "seed", default: "1", range: "integer ≥ 0", meaning: "the seed of the initialisation and of the generators" },
    StreamKey { key: "source.kind", default: "(required)", range: "`switching`, `sine`, `adding`, `csv`, `f32`", meaning: "built-in generators (deterministic from the seed): `switching`, a two-sine signal to predict one step ahead whose frequencies and sign change every `period` steps; `sine`, the same without switches; `adding`, values and markers with the sum of the last two marked values as target, never reset. Files: `csv` rows or raw little-endian `f32` frames" },
    StreamKey { key: "source.path", default: "(required for files)", range: "a file, or `-` for standard input", meaning: "where `csv` and `f32` frames come from (read ahead on a thread into a bounded queue)" },
    StreamKey { key: "source.targets", default: "(required for files)", range: "non-empty array of column names (csv with a header) or indices (as strings)", meaning: "the target columns; with `classes` > 0 one column holding the class" },
    StreamKey { key: "source.inputs", default: "`[]`", range: "array of column names or indices", meaning: "the input columns; empty: every column that is not a target" },
    StreamKey { key: "source.header", default: "true", range: "true, false", meaning: "`csv`: the first line names the columns" },
    StreamKey { key: "source.columns", default: "0", range: "integer ≥ 0 (≥ 1 for `f32`)", meaning: "`f32`: values per frame" },
    StreamKey { key: "source.classes", default: "0", range: "integer ≥ 0", meaning: "0: regression (mean squared error at every step); C ≥ 2: the target column is a class 0 … C−1 (cross-entropy at every step)" },
    StreamKey { key: "source.on_malformed", default: "`fail`", range: "`fail`, `skip`", meaning: "a row that does not parse (or a label out of range): stop with its line number, or skip it (counted in `skipped_rows`). NaN and infinity are always refused with the line number" },
    StreamKey { key: "source.period", default: "500 (switching), 20 (adding)", range: "integer ≥ 2", meaning: "`switching`: steps per regime; `adding`: one marker per block of this many steps" },
    StreamKey { key: "source.noise", default: "0.05", range: "number ≥ 0", meaning: "`sine`, `switching`: uniform noise on the input (the target is the clean next value)" },
    StreamKey { key: "model.hidden", default: "`[32]`", range: "non-empty array of integers ≥ 1", meaning: "hidden LTC layer sizes, bottom first" },
    StreamKey { key: "model.neuron", default: "`ltc`", range: "`ltc`, `alif`, `lif`", meaning: "as in `fptt train`" },
    StreamKey { key: "model.threshold", default: "`adaptive` (`fixed` for `lif`)", range: "`adaptive`, `fixed`", meaning: "adaptive threshold, or the constant 0.5" },
    StreamKey { key: "model.fused_recurrent", default: "true", range: "true, false", meaning: "one map of `[x ; s]` instead of separate input and recurrent maps" },
    StreamKey { key: "train.batch", default: "4", range: "integer ≥ 1", meaning: "B parallel streams (generators: B independent streams; files: row r is stream r mod B)" },
    StreamKey { key: "train.chunk", default: "1", range: "integer ≥ 1", meaning: "an FPTT update every K steps (1: fully online)" },
    StreamKey { key: "train.window", default: "50", range: "integer ≥ 1, a multiple of `chunk`", meaning: "steps per GPU submission: inputs go up and metrics come back once per window; the state is carried across" },
    StreamKey { key: "train.optimizer", default: "`adam`", range: "`adam`, `adamax`", meaning: "PyTorch semantics" },
    StreamKey { key: "train.lr", default: "0.003", range: "number > 0", meaning: "learning rate (constant)" },
    StreamKey { key: "train.alpha", default: "0.5", range: "number > 0", meaning: "FPTT α" },
    StreamKey { key: "train.beta", default: "0.5", range: "number in (0, 1]", meaning: "FPTT β" },
    StreamKey { key: "train.clip", default: "1.0", range: "number > 0", meaning: "global gradient-norm clip" },
    StreamKey { key: "train.reset_every", default: "0", range: "integer ≥ 0, a multiple of `window`", meaning: "W ← W̄ every this many steps; 0: never (W̄ and λ are carried for ever either way)" },
    StreamKey { key: "stream.max_steps", default: "0", range: "integer ≥ 0, a multiple of `window`", meaning: "stop after this many steps; 0: when the source ends (generators: never, until Ctrl-C)" },
    StreamKey { key: "stream.report_every", default: "500", range: "integer ≥ 1, a multiple of `window`", meaning: "steps per `metrics.csv` row" },
    StreamKey { key: "stream.checkpoint_every", default: "0", range: "integer ≥ 0, a multiple of `report_every`", meaning: "steps between checkpoints; 0: only at the end and on Ctrl-C/SIGTERM" },
    StreamKey { key: "output.dir", default: "`runs/<name>-<UTC time>`", range: "a directory", meaning: "the run directory (`--out` overrides it)" },
    StreamKey { key: "output.predictions", default: "`none`", range: "`none`, `csv`, `stdout`", meaning: "every step's prediction and target: not kept, `predictions.csv` in the run directory, or CSV on standard output (`step, stream`, then `prediction_k`, `target_k` per output; classes: `predicted`, `label`)" },
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generator {
    Adding { period: usize },
    Sine { noise: f64 },
    Switching { period: usize, noise: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    F32 { columns: usize },
}

/// Where every step's prediction goes (`output.predictions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predictions {
    None,
    Csv,
    Stdout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMalformed {
    Fail,
    Skip,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Generator(Generator),
    File { path: PathBuf, format: FileFormat },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub kind: SourceKind,
    pub targets: Vec<String>,
    pub inputs: Vec<String>,
    pub header: bool,
    pub classes: usize,
    pub on_malformed: OnMalformed,
}

/// A parsed stream experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamExperiment {
    pub name: String,
    pub seed: u64,
    pub source: SourceConfig,
    pub hidden: Vec<usize>,
    pub neuron: NeuronKind,
    pub adaptive: bool,
    pub fused_recurrent: bool,
    pub batch: usize,
    pub chunk: usize,
    pub window: usize,
    pub optimizer: Optimizer,
    pub lr: f64,
    pub alpha: f64,
    pub beta: f64,
    pub clip: f64,
    pub reset_every: u64,
    pub max_steps: u64,
    pub report_every: u64,
    pub checkpoint_every: u64,
    pub out: Option<PathBuf>,
    pub predictions: Predictions,
    /// The file as given (with overrides), written into the run's `config.toml`.
    pub text: String,
}

/// A refused stream experiment: file, key, and what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}{}{message}", if key.is_empty() { "" } else { ": " })]
pub struct StreamConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

struct Reader<'a> {
    file: &'a str,
    table: Table,
}

impl Reader<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> StreamConfigError {
        StreamConfigError { file: self.file.to_string(), key: key.to_string(), message: message.into() }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        match key.split_once('.') {
            Some((section, name)) => self.table.get(section).and_then(|s| s.as_table()).and_then(|s| s.get(name)),
            None => self.table.get(key),
        }
    }

    fn int(&self, key: &str, default: i64, min: i64) -> Result<i64, StreamConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Integer(i)) if *i >= min => Ok(*i),
            Some(v) => Err(self.err(key, format!("expected an integer ≥ {min}, found {v}"))),
        }
    }

    fn number(&self, key: &str, default: f64, ok: impl Fn(f64) -> bool, what: &str) -> Result<f64, StreamConfigError> {
        let v = match self.get(key) {
            None => return Ok(default),
            Some(Value::Integer(i)) => *i as f64,
            Some(Value::Float(f)) => *f,
            Some(v) => return Err(self.err(key, format!("expected {what}, found {v}"))),
        };
        if v.is_finite() && ok(v) {
            Ok(v)
        } else {
            Err(self.err(key, format!("expected {what}, found {v}")))
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, StreamConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(v) => Err(self.err(key, format!("expected true or false, found {v}"))),
        }
    }

    fn keyword<T: Copy>(&self, key: &str, default: T, options: &[(&str, T)]) -> Result<T, StreamConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::String(s)) => options.iter().find(|(n, _)| n == s).map(|(_, v)| *v).ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.err(key, format!("expected one of {}, found {s:?}", names.join(", ")))
            }),
            Some(v) => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                Err(self.err(key, format!("expected one of {}, found {v}", names.join(", "))))
            }
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, StreamConfigError> {
        match self.get(key) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Integer(i) if *i >= 0 => Ok(i.to_string()),
                    v => Err(self.err(key, format!("expected column names or indices, found {v}"))),
                })
                .collect(),
            Some(v) => Err(self.err(key, format!("expected an array of column names or indices, found {v}"))),
        }
    }
}

impl StreamExperiment {
    /// Read `path`, with `--set section.key=value` overrides applied first.
    pub fn load(path: &Path, sets: &[String]) -> Result<Self, StreamConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| StreamConfigError {
            file: file.clone(),
            key: String::new(),
            message: e.to_string(),
        })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "stream".into());
        Self::parse(&text, &file, &stem, sets)
    }

    pub fn parse(text: &str, file: &str, stem: &str, sets: &[String]) -> Result<Self, StreamConfigError> {
        let fail = |key: &str, message: String| StreamConfigError { file: file.into(), key: key.into(), message };
        let mut table: Table = text.parse().map_err(|e: toml::de::Error| fail("", e.to_string()))?;
        for set in sets {
            let (key, value) =
                set.split_once('=').ok_or_else(|| fail("", format!("--set {set}: expected section.key=value")))?;
            let value = format!("v = {value}")
                .parse::<Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| Value::String(value.to_string()));
            match key.split_once('.') {
                Some((section, name)) => {
                    let s = table.entry(section).or_insert_with(|| Value::Table(Table::new()));
                    let Value::Table(s) = s else { return Err(fail(section, "expected a section".into())) };
                    s.insert(name.to_string(), value);
                }
                None => {
                    table.insert(key.to_string(), value);
                }
            }
        }
        // Unknown keys and sections, before anything else.
        for (k, v) in &table {
            match v {
                Value::Table(t) => {
                    for name in t.keys() {
                        let full = format!("{k}.{name}");
                        if !STREAM_KEYS.iter().any(|sk| sk.key == full) {
                            return Err(fail(
                                &full,
                                "unknown key (experiments/README.md lists the stream keys)".into(),
                            ));
                        }
                    }
                }
                _ if STREAM_KEYS.iter().any(|sk| sk.key == k) => {}
                _ => return Err(fail(k, "unknown key (experiments/README.md lists the stream keys)".into())),
            }
        }
        let r = Reader { file, table };
        let name = match r.get("name") {
            None => stem.to_string(),
            Some(Value::String(s))
                if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                s.clone()
            }
            Some(v) => return Err(r.err("name", format!("expected letters, digits, -, _ or ., found {v}"))),
        };
        let seed = r.int("seed", 1, 0)? as u64;
        let kinds = [("switching", 0), ("sine", 1), ("adding", 2), ("csv", 3), ("f32", 4)];
        if r.get("source.kind").is_none() {
            return Err(r.err("source.kind", "required: one of switching, sine, adding, csv, f32"));
        }
        let kind = r.keyword("source.kind", 0, &kinds)?;
        let noise = r.number("source.noise", 0.05, |x| x >= 0.0, "a number ≥ 0")?;
        let period = r.int("source.period", if kind == 2 { 20 } else { 500 }, 2)? as usize;
        let classes = r.int("source.classes", 0, 0)? as usize;
        if classes == 1 {
            return Err(r.err("source.classes", "expected 0 (regression) or at least 2 classes, found 1"));
        }
        let targets = r.strings("source.targets")?;
        let inputs = r.strings("source.inputs")?;
        let header = r.boolean("source.header", true)?;
        let columns = r.int("source.columns", 0, 0)? as usize;
        let on_malformed = r.keyword(
            "source.on_malformed",
            OnMalformed::Fail,
            &[("fail", OnMalformed::Fail), ("skip", OnMalformed::Skip)],
        )?;
        let file_only = [
            "source.path",
            "source.targets",
            "source.inputs",
            "source.header",
            "source.columns",
            "source.classes",
            "source.on_malformed",
        ];
        let source_kind = if kind <= 2 {
            if let Some(k) = file_only.iter().find(|k| r.get(k).is_some()) {
                return Err(r.err(k, "applies to file sources (source.kind = \"csv\" or \"f32\") only"));
            }
            SourceKind::Generator(match kind {
                0 => Generator::Switching { period, noise },
                1 => Generator::Sine { noise },
                _ => Generator::Adding { period },
            })
        } else {
            for k in ["source.period", "source.noise"] {
                if r.get(k).is_some() {
                    return Err(r.err(k, "applies to the generators only"));
                }
            }
            let path = match r.get("source.path") {
                Some(Value::String(s)) if !s.is_empty() => PathBuf::from(s),
                Some(v) => return Err(r.err("source.path", format!("expected a file path or \"-\", found {v}"))),
                None => {
                    return Err(r.err("source.path", "required for file sources: a file, or \"-\" for standard input"))
                }
            };
            if targets.is_empty() {
                return Err(r.err("source.targets", "required for file sources: the target column(s)"));
            }
            if classes > 0 && targets.len() != 1 {
                return Err(r.err(
                    "source.targets",
                    format!("with classes = {classes}, one column holds the class; found {}", targets.len()),
                ));
            }
            let format = if kind == 3 {
                if r.get("source.columns").is_some() {
                    return Err(r.err(
                        "source.columns",
                        "applies to source.kind = \"f32\" only (a CSV row says how many it has)",
                    ));
                }
                FileFormat::Csv
            } else {
                if columns == 0 {
                    return Err(
                        r.err("source.columns", "required for f32 frames: an integer ≥ 1, the values per frame")
                    );
                }
                if r.get("source.header").is_some() {
                    return Err(r.err("source.header", "applies to source.kind = \"csv\" only"));
                }
                FileFormat::F32 { columns }
            };
            if kind == 3 && !header && inputs.is_empty() {
                // Without a header the row width is unknown until a row arrives; inputs must be said.
                return Err(r.err("source.inputs", "required for CSV files without a header: the input column indices"));
            }
            SourceKind::File { path, format }
        };
        let source =
            SourceConfig { kind: source_kind, targets, inputs, header: kind != 4 && header, classes, on_malformed };

        let hidden = match r.get("model.hidden") {
            None => vec![32],
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| match v {
                    Value::Integer(i) if *i >= 1 => Ok(*i as usize),
                    v => Err(r.err("model.hidden", format!("expected a non-empty array of integers ≥ 1, found {v}"))),
                })
                .collect::<Result<_, _>>()?,
            Some(v) => {
                return Err(r.err("model.hidden", format!("expected a non-empty array of integers ≥ 1, found {v}")))
            }
        };
        let neuron = r.keyword("model.neuron", NeuronKind::Ltc, &NeuronKind::ALL)?;
        let adaptive =
            r.keyword("model.threshold", neuron != NeuronKind::Lif, &[("adaptive", true), ("fixed", false)])?;
        if (neuron == NeuronKind::Lif && adaptive) || (neuron == NeuronKind::Alif && !adaptive) {
            return Err(r.err("model.threshold", "LIF neurons take a fixed threshold, ALIF an adaptive one"));
        }
        let fused_recurrent = r.boolean("model.fused_recurrent", true)?;
        let batch = r.int("train.batch", 4, 1)? as usize;
        let chunk = r.int("train.chunk", 1, 1)? as usize;
        let window = r.int("train.window", 50, 1)? as usize;
        if !window.is_multiple_of(chunk) {
            return Err(r.err("train.window", format!("expected a multiple of train.chunk = {chunk}, found {window}")));
        }
        let optimizer =
            r.keyword("train.optimizer", Optimizer::Adam, &[("adam", Optimizer::Adam), ("adamax", Optimizer::Adamax)])?;
        let lr = r.number("train.lr", 0.003, |x| x > 0.0, "a number > 0")?;
        let alpha = r.number("train.alpha", 0.5, |x| x > 0.0, "a number > 0")?;
        let beta = r.number("train.beta", 0.5, |x| x > 0.0 && x <= 1.0, "a number in (0, 1]")?;
        let clip = r.number("train.clip", 1.0, |x| x > 0.0, "a number > 0")?;
        let multiple = |key: &str, v: u64, of: u64, of_name: &str| {
            if !v.is_multiple_of(of) {
                Err(r.err(key, format!("expected a multiple of {of_name} = {of}, found {v}")))
            } else {
                Ok(v)
            }
        };
        let w = window as u64;
        let reset_every = multiple("train.reset_every", r.int("train.reset_every", 0, 0)? as u64, w, "train.window")?;
        let max_steps = multiple("stream.max_steps", r.int("stream.max_steps", 0, 0)? as u64, w, "train.window")?;
        let report_every = multiple(
            "stream.report_every",
            r.int("stream.report_every", 500.max(w as i64), 1)? as u64,
            w,
            "train.window",
        )?;
        let checkpoint_every = multiple(
            "stream.checkpoint_every",
            r.int("stream.checkpoint_every", 0, 0)? as u64,
            report_every,
            "stream.report_every",
        )?;
        let out = match r.get("output.dir") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(PathBuf::from(s)),
            Some(v) => return Err(r.err("output.dir", format!("expected a directory path, found {v}"))),
        };
        let predictions = r.keyword(
            "output.predictions",
            Predictions::None,
            &[("none", Predictions::None), ("csv", Predictions::Csv), ("stdout", Predictions::Stdout)],
        )?;
        let text = toml::to_string(&r.table).unwrap_or_default();
        Ok(StreamExperiment {
            name,
            seed,
            source,
            hidden,
            neuron,
            adaptive,
            fused_recurrent,
            batch,
            chunk,
            window,
            optimizer,
            lr,
            alpha,
            beta,
            clip,
            reset_every,
            max_steps,
            report_every,
            checkpoint_every,
            out,
            predictions,
            text,
        })
    }

    /// Inputs and outputs per step: the generator's, or the file's columns (outputs: the target
    /// columns, or the classes).
    pub fn io(&self) -> Result<(usize, usize), String> {
        let outputs = if self.source.classes > 0 { self.source.classes } else { self.source.targets.len() };
        match &self.source.kind {
            SourceKind::Generator(g) => Ok(g.shape()),
            SourceKind::File { format: FileFormat::F32 { columns }, .. } => {
                let inputs = if self.source.inputs.is_empty() {
                    columns - self.source.targets.len()
                } else {
                    self.source.inputs.len()
                };
                Ok((inputs, outputs))
            }
            SourceKind::File { path, format: FileFormat::Csv } => {
                if !self.source.inputs.is_empty() {
                    return Ok((self.source.inputs.len(), outputs));
                }
                // The header says how many columns there are (standard input: read by the
                // reader thread; the other columns must then be listed).
                if path.as_os_str() == "-" {
                    return Err("source.inputs: required when a CSV comes from standard input (its header cannot be read twice)".into());
                }
                let text = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let mut line = String::new();
                std::io::BufRead::read_line(&mut std::io::BufReader::new(text), &mut line)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let width = line.trim_end().split(',').count();
                if width <= self.source.targets.len() {
                    return Err(format!("{}: line 1: {width} columns leave no inputs", path.display()));
                }
                Ok((width - self.source.targets.len(), outputs))
            }
        }
    }

    pub fn model_config(&self, inputs: usize, outputs: usize) -> ModelConfig {
        ModelConfig {
            inputs,
            hidden: self.hidden.clone(),
            outputs,
            steps: self.window,
            threshold: if self.adaptive { ThresholdMode::Adaptive } else { ThresholdMode::Fixed(0.5) },
            fused_recurrent: self.fused_recurrent,
            trainable_slopes: true,
            batch_norm: false,
            neuron: self.neuron,
            conv: None,
        }
    }

    pub fn settings(&self) -> TrainingSettings {
        let loss = if self.source.classes > 0 {
            LossKind::Classification { aux: crate::settings::AuxTargets::Off }
        } else {
            LossKind::Regression
        };
        TrainingSettings {
            optimizer: self.optimizer,
            lr: self.lr as f32,
            alpha: self.alpha as f32,
            beta: self.beta as f32,
            clip: self.clip as f32,
            loss,
            rule: LearningRule::Fptt { chunk: self.chunk },
        }
    }
}
