//! Experiment files: TOML with `name`, `seed` and the sections `[data]`, `[model]`, `[train]`,
//! `[output]`, parsed into a typed [`Experiment`] with every default filled in. `--set
//! section.key=value` overrides are merged before parsing. Unknown keys, wrong types and
//! out-of-range values are refused before any work, naming the file (and the `--set` argument),
//! the key and what was expected. [`Experiment::to_toml`] writes the fully resolved experiment,
//! which parses back to the same value (that is what `config.toml` in a run directory holds).
//!
//! Every key, its default and its range are documented in `experiments/README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::model::{ModelConfig, NeuronKind, ThresholdMode};
use crate::settings::{AuxTargets, EpropSettings, Feedback, LearningRule, Optimizer};

/// Pixels of one MNIST / Fashion-MNIST image (28 × 28).
pub const IMAGE_PIXELS: usize = 784;
/// Classes of the image tasks.
pub const IMAGE_CLASSES: usize = 10;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExperimentError {
    #[error("{origin}: cannot read the experiment file: {message}")]
    Io { origin: String, message: String },
    #[error("{origin}: not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    /// A key that is unknown, of the wrong type or out of range.
    #[error("{origin}: {key}: {message}")]
    Key { origin: String, key: String, message: String },
    #[error("--set {arg}: {message}")]
    Set { arg: String, message: String },
}

type Result<T> = std::result::Result<T, ExperimentError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Adding,
    Smnist,
    Psmnist,
    FashionMnist,
}

impl Task {
    pub const ALL: [(&'static str, Task); 4] = [
        ("adding", Task::Adding),
        ("smnist", Task::Smnist),
        ("psmnist", Task::Psmnist),
        ("fashion-mnist", Task::FashionMnist),
    ];

    pub fn name(self) -> &'static str {
        Task::ALL.iter().find(|(_, t)| *t == self).map(|(n, _)| *n).unwrap_or("?")
    }

    pub fn is_classification(self) -> bool {
        self != Task::Adding
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membrane {
    /// `m ~ U[0,1)` from a dedicated seeded stream (spec §1).
    Uniform,
    /// `m = 0` (the authors' adding task).
    Zero,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPolicy {
    /// `W ← W̄` at the end of every epoch, before evaluation (spec §5).
    Epoch,
    /// After every training sequence.
    Sequence,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrSchedule {
    None,
    /// Multiply by `lr_decay_factor` after each epoch listed in `lr_decay_epochs`.
    Step,
    /// Cosine annealing from `lr` to 0 over `epochs` (per epoch).
    Cosine,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataSection {
    pub task: Task,
    /// Directory of the IDX files (image tasks).
    pub dir: PathBuf,
    /// Sequence length `T`: the adding problem's length; `784 / pixels_per_step` for images.
    pub steps: usize,
    pub pixels_per_step: usize,
    /// Seed of the PS-MNIST permutation (recorded for every task, used by psmnist only).
    pub permutation_seed: u64,
    pub shuffle: bool,
    /// 0 = the whole split.
    pub max_train_samples: usize,
    pub max_test_samples: usize,
    pub initial_membrane: Membrane,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSection {
    pub hidden: Vec<usize>,
    /// The hidden layers' neuron: LTC (the default), ALIF or LIF (spec §7).
    pub neuron: NeuronKind,
    pub adaptive_threshold: bool,
    pub fixed_threshold: f64,
    pub fused_recurrent: bool,
    pub trainable_slopes: bool,
    pub batch_norm: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainSection {
    /// FPTT with its `chunk`, BPTT, or e-prop with its options (the `eprop_*` keys). BPTT and
    /// e-prop update with a plain optimizer step: their `reset` is always `Never`.
    pub rule: LearningRule,
    pub optimizer: Optimizer,
    pub lr: f64,
    pub alpha: f64,
    pub beta: f64,
    pub clip: f64,
    pub batch: usize,
    pub epochs: usize,
    /// 0 = unlimited.
    pub max_iterations: u64,
    pub aux: AuxTargets,
    pub aux_uniform_epochs: usize,
    pub reset: ResetPolicy,
    pub lr_schedule: LrSchedule,
    pub lr_decay_epochs: Vec<usize>,
    pub lr_decay_factor: f64,
    /// Adding task: iterations per epoch (evaluation, reset and checkpoint after each).
    pub eval_every: u64,
    /// Adding task: fresh batches per evaluation.
    pub eval_batches: usize,
    /// Extra checkpoints every N iterations (0 = only at epoch ends).
    pub checkpoint_every: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputSection {
    /// `None`: `results/<name>-<UTC timestamp>`.
    pub dir: Option<PathBuf>,
    pub report_every: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: String,
    pub seed: u64,
    pub data: DataSection,
    pub model: ModelSection,
    pub train: TrainSection,
    pub output: OutputSection,
}

/// The keys of every section, in the order `config.toml` writes them. `[run]` is written by
/// `fptt train` into `config.toml` (engine version, adapter, command line) and ignored on reading.
pub const SCHEMA: &[(&str, &[&str])] = &[
    ("", &["name", "seed"]),
    (
        "data",
        &[
            "task",
            "dir",
            "steps",
            "pixels_per_step",
            "permutation_seed",
            "shuffle",
            "max_train_samples",
            "max_test_samples",
            "initial_membrane",
        ],
    ),
    (
        "model",
        &["hidden", "neuron", "threshold", "fixed_threshold", "fused_recurrent", "trainable_slopes", "batch_norm"],
    ),
    (
        "train",
        &[
            "rule",
            "chunk",
            "eprop_update",
            "eprop_feedback",
            "eprop_feedback_seed",
            "eprop_readout_filter",
            "eprop_reset_in_trace",
            "optimizer",
            "lr",
            "alpha",
            "beta",
            "clip",
            "batch",
            "epochs",
            "max_iterations",
            "aux",
            "aux_uniform_epochs",
            "reset",
            "lr_schedule",
            "lr_decay_epochs",
            "lr_decay_factor",
            "eval_every",
            "eval_batches",
            "checkpoint_every",
        ],
    ),
    ("output", &["dir", "report_every"]),
];

/// The keys of `[train]` that only `rule = "eprop"` reads.
const EPROP_KEYS: [&str; 5] =
    ["eprop_update", "eprop_feedback", "eprop_feedback_seed", "eprop_readout_filter", "eprop_reset_in_trace"];

/// The rule's name in messages.
fn rule_title(rule: LearningRule) -> &'static str {
    match rule {
        LearningRule::Fptt { .. } => "FPTT",
        LearningRule::Bptt => "BPTT",
        LearningRule::Eprop(_) => "e-prop",
    }
}

/// The section `fptt train` adds to `config.toml`; read back without checks.
pub const RUN_SECTION: &str = "run";

/// Where values came from, for messages: the file, and the `--set` arguments by key.
struct Origins {
    file: String,
    set: BTreeMap<String, String>,
}

impl Origins {
    fn of(&self, key: &str) -> String {
        match self.set.get(key) {
            Some(arg) => format!("{} (--set {arg})", self.file),
            None => self.file.clone(),
        }
    }

    fn key_err(&self, key: &str, message: String) -> ExperimentError {
        ExperimentError::Key { origin: self.of(key), key: key.to_string(), message }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Table(_) => "a table".to_string(),
        other => other.to_string(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// "did you mean `prefix.k`? " for the known key `k` closest to `word`, if close enough.
fn suggestion_in(prefix: &str, word: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!("did you mean `{prefix}{k}`? "))
        .unwrap_or_default()
}

fn suggestion(word: &str, known: &[&str]) -> String {
    suggestion_in("", word, known)
}

/// One section's values being taken out one key at a time.
struct Section<'a> {
    origins: &'a Origins,
    name: &'static str,
    table: Table,
}

impl<'a> Section<'a> {
    fn key(&self, k: &str) -> String {
        if self.name.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.name)
        }
    }

    fn expected(&self, k: &str, what: &str, found: &Value) -> ExperimentError {
        self.origins.key_err(&self.key(k), format!("expected {what}, found {}", describe(found)))
    }

    fn take(&mut self, k: &str) -> Option<Value> {
        self.table.remove(k)
    }

    fn int(&mut self, k: &str, min: i64, default: i64) -> Result<i64> {
        let what = format!("an integer ≥ {min}");
        match self.take(k) {
            None => Ok(default),
            Some(Value::Integer(i)) if i >= min => Ok(i),
            Some(v) => Err(self.expected(k, &what, &v)),
        }
    }

    fn usize(&mut self, k: &str, min: usize, default: usize) -> Result<usize> {
        Ok(self.int(k, min as i64, default as i64)? as usize)
    }

    fn u64(&mut self, k: &str, min: u64, default: u64) -> Result<u64> {
        Ok(self.int(k, min as i64, default as i64)? as u64)
    }

    /// A finite number (integers accepted) satisfying `ok`, described by `what`.
    fn float(&mut self, k: &str, what: &str, ok: impl Fn(f64) -> bool, default: f64) -> Result<f64> {
        let v = match self.take(k) {
            None => return Ok(default),
            Some(v) => v,
        };
        let x = match v {
            Value::Float(x) => x,
            Value::Integer(i) => i as f64,
            _ => return Err(self.expected(k, what, &v)),
        };
        if x.is_finite() && ok(x) {
            Ok(x)
        } else {
            Err(self.expected(k, what, &v))
        }
    }

    fn bool(&mut self, k: &str, default: bool) -> Result<bool> {
        match self.take(k) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(b),
            Some(v) => Err(self.expected(k, "true or false", &v)),
        }
    }

    fn string(&mut self, k: &str, what: &str) -> Result<Option<String>> {
        match self.take(k) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(v) => Err(self.expected(k, what, &v)),
        }
    }

    fn keyword<T: Copy>(&mut self, k: &str, options: &[(&str, T)], default: Option<T>) -> Result<T> {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let what = format!("one of {}", names.join(", "));
        match self.take(k) {
            None => default.ok_or_else(|| self.origins.key_err(&self.key(k), format!("missing; expected {what}"))),
            Some(Value::String(s)) => match options.iter().find(|(n, _)| *n == s) {
                Some((_, t)) => Ok(*t),
                None => Err(self.expected(k, &what, &Value::String(s))),
            },
            Some(v) => Err(self.expected(k, &what, &v)),
        }
    }

    fn int_array(&mut self, k: &str, min: i64, non_empty: bool, default: Vec<usize>) -> Result<Vec<usize>> {
        let what = format!("{}array of integers ≥ {min}", if non_empty { "a non-empty " } else { "an " });
        let v = match self.take(k) {
            None => return Ok(default),
            Some(v) => v,
        };
        let items = match &v {
            Value::Array(a) => a,
            _ => return Err(self.expected(k, &what, &v)),
        };
        if non_empty && items.is_empty() {
            return Err(self.expected(k, &what, &v));
        }
        items
            .iter()
            .map(|x| match x {
                Value::Integer(i) if *i >= min => Ok(*i as usize),
                _ => Err(self.expected(k, &what, &v)),
            })
            .collect()
    }
}

/// Parse the value of a `--set key=value`: a TOML value if it is one, else the text as a string.
fn parse_set_value(text: &str) -> Value {
    match format!("v = {text}").parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(text.to_string())),
        Err(_) => Value::String(text.to_string()),
    }
}

fn known_keys(section: &str) -> Option<&'static [&'static str]> {
    SCHEMA.iter().find(|(s, _)| *s == section).map(|(_, k)| *k)
}

fn section_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = SCHEMA.iter().map(|(s, _)| *s).filter(|s| !s.is_empty()).collect();
    v.push(RUN_SECTION);
    v
}

/// Merge `--set` arguments into the parsed file, remembering which keys they set.
fn apply_sets(root: &mut Table, sets: &[String], origins: &mut Origins) -> Result<()> {
    for arg in sets {
        let set_err = |message: String| ExperimentError::Set { arg: arg.clone(), message };
        let (key, text) =
            arg.split_once('=').ok_or_else(|| set_err("expected KEY=VALUE, e.g. --set train.lr=0.001".into()))?;
        let key = key.trim();
        let value = parse_set_value(text.trim());
        let parts: Vec<&str> = key.split('.').collect();
        match parts.as_slice() {
            [k] if known_keys("").is_some_and(|ks| ks.contains(k)) => {
                root.insert(k.to_string(), value);
            }
            [section, k] if known_keys(section).is_some() => {
                let entry = root.entry(section.to_string()).or_insert_with(|| Value::Table(Table::new()));
                match entry {
                    Value::Table(t) => {
                        t.insert(k.to_string(), value);
                    }
                    _ => return Err(set_err(format!("[{section}] in the file is not a table"))),
                }
            }
            _ => {
                let mut all: Vec<String> = Vec::new();
                for (s, ks) in SCHEMA {
                    all.extend(ks.iter().map(|k| if s.is_empty() { k.to_string() } else { format!("{s}.{k}") }));
                }
                let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
                return Err(set_err(format!(
                    "unknown key `{key}`; {}keys are written section.key (see experiments/README.md)",
                    suggestion(key, &refs)
                )));
            }
        }
        origins.set.insert(key.to_string(), arg.clone());
    }
    Ok(())
}

/// Refuse unknown sections and keys (before any type checks, so a typo is reported as such).
fn check_unknown(root: &Table, origins: &Origins) -> Result<()> {
    let top = known_keys("").unwrap_or(&[]);
    let sections = section_names();
    for (k, v) in root {
        if top.contains(&k.as_str()) {
            continue;
        }
        if sections.contains(&k.as_str()) {
            let t = match v {
                Value::Table(t) => t,
                other => return Err(origins.key_err(k, format!("expected a section [{k}], found {}", describe(other)))),
            };
            if k == RUN_SECTION {
                continue;
            }
            let known = known_keys(k).unwrap_or(&[]);
            for key in t.keys() {
                if !known.contains(&key.as_str()) {
                    return Err(origins.key_err(
                        &format!("{k}.{key}"),
                        format!(
                            "unknown key; {}the keys of [{k}] are: {}",
                            suggestion_in(&format!("{k}."), key, known),
                            known.join(", ")
                        ),
                    ));
                }
            }
            continue;
        }
        let mut all: Vec<&str> = top.to_vec();
        all.extend(sections.iter());
        return Err(origins.key_err(
            k,
            format!(
                "unknown key; {}the top level holds name, seed and the sections [data], [model], [train], [output]",
                suggestion(k, &all)
            ),
        ));
    }
    Ok(())
}

fn take_section<'a>(root: &mut Table, origins: &'a Origins, name: &'static str) -> Section<'a> {
    let table = match root.remove(name) {
        Some(Value::Table(t)) => t,
        _ => Table::new(),
    };
    Section { origins, name, table }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && !s.starts_with('.')
}

impl Experiment {
    /// Read and check an experiment file, with `--set` overrides applied.
    pub fn load(path: &Path, sets: &[String]) -> Result<Experiment> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ExperimentError::Io { origin: origin.clone(), message: e.to_string() })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "run".into());
        Experiment::parse(&text, &origin, &stem, sets)
    }

    /// Parse experiment text; `origin` names it in messages, `default_name` is the name when the
    /// text has none (the file's stem).
    pub fn parse(text: &str, origin: &str, default_name: &str, sets: &[String]) -> Result<Experiment> {
        let mut root: Table = text.parse::<Table>().map_err(|e| ExperimentError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim().replace('\n', "\n    "),
        })?;
        let mut origins = Origins { file: origin.to_string(), set: BTreeMap::new() };
        apply_sets(&mut root, sets, &mut origins)?;
        check_unknown(&root, &origins)?;
        let o = &origins;

        // Top level.
        let mut top = Section { origins: o, name: "", table: Table::new() };
        for k in ["name", "seed"] {
            if let Some(v) = root.remove(k) {
                top.table.insert(k.to_string(), v);
            }
        }
        let name_what = "a name of letters, digits, '-', '_' and '.' (it names the output directory)";
        let name = top.string("name", name_what)?.unwrap_or_else(|| default_name.to_string());
        if !valid_name(&name) {
            return Err(top.expected("name", name_what, &Value::String(name)));
        }
        let seed = top.u64("seed", 0, 1)?;

        // [data]
        let mut d = take_section(&mut root, o, "data");
        let task = d.keyword("task", &Task::ALL, None)?;
        let default_dir = match task {
            Task::FashionMnist => "data/fashion-mnist",
            _ => "data/mnist-subset",
        };
        let dir = PathBuf::from(d.string("dir", "a directory path")?.unwrap_or_else(|| default_dir.to_string()));
        let pixels_per_step = d.usize("pixels_per_step", 1, 1)?;
        if !IMAGE_PIXELS.is_multiple_of(pixels_per_step) {
            return Err(d.expected(
                "pixels_per_step",
                "a divisor of 784 (1, 2, 4, 7, 8, 14, 16, 28, 49, 56, 98, 112, 196, 392, 784)",
                &Value::Integer(pixels_per_step as i64),
            ));
        }
        let steps = if task.is_classification() {
            let t = IMAGE_PIXELS / pixels_per_step;
            if let Some(v) = d.take("steps") {
                if v != Value::Integer(t as i64) {
                    return Err(d.expected(
                        "steps",
                        &format!("784 / pixels_per_step = {t} for an image task (or leave it out)"),
                        &v,
                    ));
                }
            }
            t
        } else {
            d.usize("steps", 2, 200)?
        };
        let permutation_seed = d.u64("permutation_seed", 0, seed)?;
        let shuffle = d.bool("shuffle", true)?;
        let max_train_samples = d.usize("max_train_samples", 0, 0)?;
        let max_test_samples = d.usize("max_test_samples", 0, 0)?;
        let default_membrane = if task.is_classification() { Membrane::Uniform } else { Membrane::Zero };
        let initial_membrane = d.keyword(
            "initial_membrane",
            &[("uniform", Membrane::Uniform), ("zero", Membrane::Zero)],
            Some(default_membrane),
        )?;
        let data = DataSection {
            task,
            dir,
            steps,
            pixels_per_step,
            permutation_seed,
            shuffle,
            max_train_samples,
            max_test_samples,
            initial_membrane,
        };

        // [model]
        let adding = task == Task::Adding;
        let mut m = take_section(&mut root, o, "model");
        let hidden = m.int_array("hidden", 1, true, vec![128])?;
        let neuron = m.keyword("neuron", &NeuronKind::ALL, Some(NeuronKind::Ltc))?;
        // LIF has no adaptation and ALIF is defined by it: their threshold follows from the neuron
        // unless the file says otherwise (and then it must agree).
        let default_adaptive = match neuron {
            NeuronKind::Ltc => !adding,
            NeuronKind::Alif => true,
            NeuronKind::Lif => false,
        };
        let adaptive_threshold =
            m.keyword("threshold", &[("adaptive", true), ("fixed", false)], Some(default_adaptive))?;
        if neuron != NeuronKind::Ltc && adaptive_threshold != default_adaptive {
            let (given, needed) = if adaptive_threshold { ("adaptive", "fixed") } else { ("fixed", "adaptive") };
            return Err(o.key_err(
                "model.threshold",
                format!(
                    "threshold = \"{given}\" does not fit neuron = \"{}\": {} neurons need threshold = \"{needed}\" \
                     (the default for them; leave the key out)",
                    neuron.name(),
                    neuron.name().to_uppercase()
                ),
            ));
        }
        let fixed_threshold = m.float("fixed_threshold", "a finite number", |_| true, 0.5)?;
        let fused_recurrent = m.bool("fused_recurrent", adding)?;
        let trainable_slopes = m.bool("trainable_slopes", true)?;
        let batch_norm = m.bool("batch_norm", false)?;
        if fused_recurrent && batch_norm {
            return Err(o.key_err(
                "model.batch_norm",
                "batch_norm = true needs separate input and recurrent maps: set model.fused_recurrent = false".into(),
            ));
        }
        let model = ModelSection {
            hidden,
            neuron,
            adaptive_threshold,
            fixed_threshold,
            fused_recurrent,
            trainable_slopes,
            batch_norm,
        };

        // [train]
        let mut t = take_section(&mut root, o, "train");
        let rules = "\"fptt\", \"bptt\" or \"eprop\"";
        let chunk = t.take("chunk");
        let rule_name = match t.take("rule") {
            None => "fptt".to_string(),
            Some(Value::String(s)) => s,
            Some(v) => return Err(t.expected("rule", rules, &v)),
        };
        let rule = match rule_name.as_str() {
            "fptt" => match chunk {
                None => LearningRule::Fptt { chunk: 1 },
                Some(Value::Integer(k)) if k >= 1 && k as usize <= data.steps => {
                    LearningRule::Fptt { chunk: k as usize }
                }
                Some(v) => {
                    let what = format!("an integer from 1 to the sequence length T = {}", data.steps);
                    return Err(t.expected("chunk", &what, &v));
                }
            },
            "bptt" => LearningRule::Bptt,
            "eprop" | "e-prop" => {
                let update_every_step =
                    t.keyword("eprop_update", &[("sequence", false), ("step", true)], Some(false))?;
                let random = t.keyword("eprop_feedback", &[("symmetric", false), ("random", true)], Some(false))?;
                let feedback = if random {
                    Feedback::Random { seed: t.u64("eprop_feedback_seed", 0, seed)? }
                } else {
                    if t.take("eprop_feedback_seed").is_some() {
                        return Err(o.key_err(
                            "train.eprop_feedback_seed",
                            "applies to eprop_feedback = \"random\" only: symmetric feedback uses the readout \
                             weights W_o and draws nothing"
                                .into(),
                        ));
                    }
                    Feedback::Symmetric
                };
                let readout_filter = t.bool("eprop_readout_filter", true)?;
                let reset_in_trace = t.bool("eprop_reset_in_trace", true)?;
                LearningRule::Eprop(EpropSettings { update_every_step, feedback, readout_filter, reset_in_trace })
            }
            _ => return Err(t.expected("rule", rules, &Value::String(rule_name))),
        };
        // BPTT and e-prop: no chunks, no e-prop options elsewhere.
        let title = rule_title(rule);
        if chunk.is_some() && !matches!(rule, LearningRule::Fptt { .. }) {
            let why = match rule {
                LearningRule::Eprop(_) => "e-prop updates after every step or once per sequence (train.eprop_update)",
                _ => "BPTT backpropagates through the whole sequence",
            };
            return Err(o.key_err("train.chunk", format!("applies to rule = \"fptt\" only: {why}")));
        }
        if !matches!(rule, LearningRule::Eprop(_)) {
            if let Some(k) = EPROP_KEYS.iter().find(|k| t.table.contains_key(**k)) {
                return Err(o.key_err(
                    &t.key(k),
                    format!("applies to rule = \"eprop\" only; this experiment trains with {title}"),
                ));
            }
        }
        // A plain optimizer step (BPTT, e-prop): no W̄, no λ, α and β unused.
        let plain = matches!(rule, LearningRule::Bptt | LearningRule::Eprop(_));
        let optimizer = t.keyword(
            "optimizer",
            &[("adam", Optimizer::Adam), ("adamax", Optimizer::Adamax)],
            Some(if adding { Optimizer::Adam } else { Optimizer::Adamax }),
        )?;
        let positive = "a number > 0";
        let lr = t.float("lr", positive, |x| x > 0.0, 1e-3)?;
        let alpha = t.float("alpha", positive, |x| x > 0.0, if adding { 0.5 } else { 0.1 })?;
        let beta = t.float("beta", "a number in (0, 1]", |x| x > 0.0 && x <= 1.0, 0.5)?;
        let clip = t.float("clip", positive, |x| x > 0.0, 1.0)?;
        let batch = t.usize("batch", if batch_norm { 2 } else { 1 }, 64)?;
        let epochs = t.usize("epochs", 1, 1)?;
        let max_iterations = t.u64("max_iterations", 0, 0)?;
        let aux = t.keyword(
            "aux",
            &[("table", AuxTargets::Table), ("uniform", AuxTargets::Uniform), ("off", AuxTargets::Off)],
            Some(AuxTargets::Table),
        )?;
        let aux_uniform_epochs = t.usize("aux_uniform_epochs", 0, 0)?;
        let reset = t.keyword(
            "reset",
            &[("epoch", ResetPolicy::Epoch), ("sequence", ResetPolicy::Sequence), ("never", ResetPolicy::Never)],
            Some(if plain { ResetPolicy::Never } else { ResetPolicy::Epoch }),
        )?;
        if plain && reset != ResetPolicy::Never {
            return Err(o.key_err(
                "train.reset",
                format!("{title} keeps no running mean W̄ to reset to: leave it out or set \"never\""),
            ));
        }
        let lr_schedule = t.keyword(
            "lr_schedule",
            &[("none", LrSchedule::None), ("step", LrSchedule::Step), ("cosine", LrSchedule::Cosine)],
            Some(LrSchedule::None),
        )?;
        let lr_decay_epochs = t.int_array("lr_decay_epochs", 1, false, vec![])?;
        if lr_decay_epochs.windows(2).any(|w| w[0] >= w[1]) {
            let v = Value::Array(lr_decay_epochs.iter().map(|&e| Value::Integer(e as i64)).collect());
            return Err(t.expected("lr_decay_epochs", "strictly increasing epoch numbers", &v));
        }
        let lr_decay_factor = t.float("lr_decay_factor", "a number in (0, 1]", |x| x > 0.0 && x <= 1.0, 0.1)?;
        let eval_every = t.u64("eval_every", 1, 100)?;
        let eval_batches = t.usize("eval_batches", 1, 4)?;
        let checkpoint_every = t.u64("checkpoint_every", 0, 0)?;
        let train = TrainSection {
            rule,
            optimizer,
            lr,
            alpha,
            beta,
            clip,
            batch,
            epochs,
            max_iterations,
            aux,
            aux_uniform_epochs,
            reset,
            lr_schedule,
            lr_decay_epochs,
            lr_decay_factor,
            eval_every,
            eval_batches,
            checkpoint_every,
        };

        // [output]
        let mut out = take_section(&mut root, o, "output");
        let dir = out.string("dir", "a directory path")?.map(PathBuf::from);
        let report_every = out.u64("report_every", 1, 10)?;
        let output = OutputSection { dir, report_every };

        let exp = Experiment { name, seed, data, model, train, output };
        exp.model_config().validate().map_err(|e| o.key_err("model", e.to_string()))?;
        if let LearningRule::Eprop(_) = exp.train.rule {
            // The model key to blame, in the order `check_model` tests them, and its fix.
            let m = &exp.model;
            let (key, fix) = if m.neuron == NeuronKind::Ltc {
                ("model.neuron", "set model.neuron = \"lif\" or \"alif\"")
            } else if m.hidden.len() != 1 {
                ("model.hidden", "set model.hidden = [N], one layer")
            } else if m.batch_norm {
                ("model.batch_norm", "set model.batch_norm = false")
            } else {
                ("train.rule", "choose rule = \"fptt\" or \"bptt\"")
            };
            let via = o.set.get("train.rule").map(|a| format!(" (--set {a})")).unwrap_or_default();
            EpropSettings::check_model(&exp.model_config()).map_err(|e| {
                o.key_err(key, format!("train.rule = \"eprop\"{via} does not fit this model: {e} ({fix})"))
            })?;
        }
        Ok(exp)
    }

    /// The network this experiment trains.
    pub fn model_config(&self) -> ModelConfig {
        let (inputs, outputs) = match self.data.task {
            Task::Adding => (2, 1),
            _ => (self.data.pixels_per_step, IMAGE_CLASSES),
        };
        ModelConfig {
            inputs,
            hidden: self.model.hidden.clone(),
            outputs,
            steps: self.data.steps,
            threshold: if self.model.adaptive_threshold {
                ThresholdMode::Adaptive
            } else {
                ThresholdMode::Fixed(self.model.fixed_threshold as f32)
            },
            fused_recurrent: self.model.fused_recurrent,
            trainable_slopes: self.model.trainable_slopes,
            batch_norm: self.model.batch_norm,
            neuron: self.model.neuron,
        }
    }

    /// The resolved experiment as a TOML table: every key of [`SCHEMA`], defaults filled in.
    pub fn to_table(&self) -> Table {
        fn ints(v: &[usize]) -> Value {
            Value::Array(v.iter().map(|&x| Value::Integer(x as i64)).collect())
        }
        fn s(x: &str) -> Value {
            Value::String(x.to_string())
        }
        let mut root = Table::new();
        root.insert("name".into(), s(&self.name));
        root.insert("seed".into(), Value::Integer(self.seed as i64));

        let d = &self.data;
        let mut data = Table::new();
        data.insert("task".into(), s(d.task.name()));
        data.insert("dir".into(), s(&d.dir.to_string_lossy()));
        data.insert("steps".into(), Value::Integer(d.steps as i64));
        data.insert("pixels_per_step".into(), Value::Integer(d.pixels_per_step as i64));
        data.insert("permutation_seed".into(), Value::Integer(d.permutation_seed as i64));
        data.insert("shuffle".into(), Value::Boolean(d.shuffle));
        data.insert("max_train_samples".into(), Value::Integer(d.max_train_samples as i64));
        data.insert("max_test_samples".into(), Value::Integer(d.max_test_samples as i64));
        data.insert(
            "initial_membrane".into(),
            s(match d.initial_membrane {
                Membrane::Uniform => "uniform",
                Membrane::Zero => "zero",
            }),
        );
        root.insert("data".into(), Value::Table(data));

        let m = &self.model;
        let mut model = Table::new();
        model.insert("hidden".into(), ints(&m.hidden));
        model.insert("neuron".into(), s(m.neuron.name()));
        model.insert("threshold".into(), s(if m.adaptive_threshold { "adaptive" } else { "fixed" }));
        model.insert("fixed_threshold".into(), Value::Float(m.fixed_threshold));
        model.insert("fused_recurrent".into(), Value::Boolean(m.fused_recurrent));
        model.insert("trainable_slopes".into(), Value::Boolean(m.trainable_slopes));
        model.insert("batch_norm".into(), Value::Boolean(m.batch_norm));
        root.insert("model".into(), Value::Table(model));

        let t = &self.train;
        let mut train = Table::new();
        match t.rule {
            LearningRule::Fptt { chunk } => {
                train.insert("rule".into(), s("fptt"));
                train.insert("chunk".into(), Value::Integer(chunk as i64));
            }
            LearningRule::Bptt => {
                train.insert("rule".into(), s("bptt"));
            }
            LearningRule::Eprop(e) => {
                train.insert("rule".into(), s("eprop"));
                train.insert("eprop_update".into(), s(if e.update_every_step { "step" } else { "sequence" }));
                match e.feedback {
                    Feedback::Symmetric => {
                        train.insert("eprop_feedback".into(), s("symmetric"));
                    }
                    Feedback::Random { seed } => {
                        train.insert("eprop_feedback".into(), s("random"));
                        train.insert("eprop_feedback_seed".into(), Value::Integer(seed as i64));
                    }
                }
                train.insert("eprop_readout_filter".into(), Value::Boolean(e.readout_filter));
                train.insert("eprop_reset_in_trace".into(), Value::Boolean(e.reset_in_trace));
            }
        }
        train.insert(
            "optimizer".into(),
            s(match t.optimizer {
                Optimizer::Adam => "adam",
                Optimizer::Adamax => "adamax",
            }),
        );
        train.insert("lr".into(), Value::Float(t.lr));
        train.insert("alpha".into(), Value::Float(t.alpha));
        train.insert("beta".into(), Value::Float(t.beta));
        train.insert("clip".into(), Value::Float(t.clip));
        train.insert("batch".into(), Value::Integer(t.batch as i64));
        train.insert("epochs".into(), Value::Integer(t.epochs as i64));
        train.insert("max_iterations".into(), Value::Integer(t.max_iterations as i64));
        train.insert(
            "aux".into(),
            s(match t.aux {
                AuxTargets::Table => "table",
                AuxTargets::Uniform => "uniform",
                AuxTargets::Off => "off",
            }),
        );
        train.insert("aux_uniform_epochs".into(), Value::Integer(t.aux_uniform_epochs as i64));
        train.insert(
            "reset".into(),
            s(match t.reset {
                ResetPolicy::Epoch => "epoch",
                ResetPolicy::Sequence => "sequence",
                ResetPolicy::Never => "never",
            }),
        );
        train.insert(
            "lr_schedule".into(),
            s(match t.lr_schedule {
                LrSchedule::None => "none",
                LrSchedule::Step => "step",
                LrSchedule::Cosine => "cosine",
            }),
        );
        train.insert("lr_decay_epochs".into(), ints(&t.lr_decay_epochs));
        train.insert("lr_decay_factor".into(), Value::Float(t.lr_decay_factor));
        train.insert("eval_every".into(), Value::Integer(t.eval_every as i64));
        train.insert("eval_batches".into(), Value::Integer(t.eval_batches as i64));
        train.insert("checkpoint_every".into(), Value::Integer(t.checkpoint_every as i64));
        root.insert("train".into(), Value::Table(train));

        let mut output = Table::new();
        if let Some(dir) = &self.output.dir {
            output.insert("dir".into(), s(&dir.to_string_lossy()));
        }
        output.insert("report_every".into(), Value::Integer(self.output.report_every as i64));
        root.insert("output".into(), Value::Table(output));
        root
    }

    /// [`Experiment::to_table`] as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.to_table()).expect("a table of plain values serialises")
    }

    /// The learning rate of (0-based) epoch `epoch` under the schedule.
    pub fn lr_at_epoch(&self, epoch: usize) -> f64 {
        let t = &self.train;
        match t.lr_schedule {
            LrSchedule::None => t.lr,
            LrSchedule::Step => {
                let decays = t.lr_decay_epochs.iter().filter(|&&m| m <= epoch).count();
                t.lr * t.lr_decay_factor.powi(decays as i32)
            }
            LrSchedule::Cosine => {
                let e = epoch.min(t.epochs) as f64;
                t.lr * 0.5 * (1.0 + (std::f64::consts::PI * e / t.epochs as f64).cos())
            }
        }
    }

    /// The auxiliary targets during (0-based) epoch `epoch`.
    pub fn aux_at_epoch(&self, epoch: usize) -> AuxTargets {
        if epoch < self.train.aux_uniform_epochs && self.train.aux != AuxTargets::Off {
            AuxTargets::Uniform
        } else {
            self.train.aux
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_parse_as_toml_or_fall_back_to_strings() {
        assert_eq!(parse_set_value("1e-3"), Value::Float(1e-3));
        assert_eq!(parse_set_value("64"), Value::Integer(64));
        assert_eq!(parse_set_value("[64, 32]"), Value::Array(vec![Value::Integer(64), Value::Integer(32)]));
        assert_eq!(parse_set_value("adding"), Value::String("adding".into()));
        assert_eq!(parse_set_value("\"adding\""), Value::String("adding".into()));
        assert_eq!(parse_set_value("data/x"), Value::String("data/x".into()));
        assert_eq!(parse_set_value("true"), Value::Boolean(true));
    }

    #[test]
    fn suggestions_catch_small_typos() {
        assert_eq!(suggestion("lrr", &["lr", "alpha"]), "did you mean `lr`? ");
        assert_eq!(suggestion("zzzzzz", &["lr", "alpha"]), "");
    }

    #[test]
    fn neuron_kinds_parse_with_their_threshold_and_round_trip() {
        let parse = |text: &str| Experiment::parse(text, "x.toml", "x", &[]);
        let ltc = parse("[data]\ntask = \"smnist\"\n").unwrap();
        assert_eq!(ltc.model.neuron, NeuronKind::Ltc);
        for (name, kind, adaptive) in [("alif", NeuronKind::Alif, true), ("lif", NeuronKind::Lif, false)] {
            // The threshold follows the neuron on both tasks, whatever the task's default.
            for task in ["smnist", "adding"] {
                let e = parse(&format!("[data]\ntask = \"{task}\"\n[model]\nneuron = \"{name}\"\n")).unwrap();
                assert_eq!((e.model.neuron, e.model.adaptive_threshold), (kind, adaptive), "{name} {task}");
                assert_eq!(e.model_config().neuron, kind);
                assert_eq!(parse(&e.to_toml()).unwrap(), e, "{name} {task}: config.toml parses back");
            }
        }
        let err = parse("[data]\ntask = \"adding\"\n[model]\nneuron = \"lif\"\nthreshold = \"adaptive\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.toml: model.threshold: ") && err.contains("neuron = \"lif\""), "{err}");
        let err = parse("[data]\ntask = \"smnist\"\n[model]\nneuron = \"alif\"\nthreshold = \"fixed\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.threshold") && err.contains("\"adaptive\""), "{err}");
        let err = parse("[data]\ntask = \"smnist\"\n[model]\nneuron = \"izhikevich\"\n").unwrap_err().to_string();
        assert_eq!(err, "x.toml: model.neuron: expected one of ltc, alif, lif, found \"izhikevich\"");
    }

    const EPROP_LIF: &str =
        "seed = 7\n[data]\ntask = \"adding\"\nsteps = 20\n[model]\nhidden = [16]\nneuron = \"lif\"\n";

    #[test]
    fn eprop_parses_with_its_defaults_each_key_and_round_trips() {
        let parse = |text: &str, sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            Experiment::parse(text, "x.toml", "x", &sets)
        };
        let eprop = |e: &Experiment| match e.train.rule {
            LearningRule::Eprop(s) => s,
            other => panic!("expected e-prop, got {other:?}"),
        };
        // Defaults: one update per sequence, symmetric feedback, filter on, reset kept; like BPTT,
        // no running mean to reset to.
        for spelling in ["eprop", "e-prop"] {
            let e = parse(&format!("{EPROP_LIF}[train]\nrule = \"{spelling}\"\n"), &[]).unwrap();
            assert_eq!(eprop(&e), EpropSettings::default(), "{spelling}");
            assert_eq!(e.train.reset, ResetPolicy::Never);
            assert_eq!(parse(&e.to_toml(), &[]).unwrap(), e, "{spelling}: config.toml parses back");
        }
        let e = parse(EPROP_LIF, &["train.rule=eprop"]).unwrap();
        assert_eq!(eprop(&e), EpropSettings::default());
        let text = e.to_toml();
        for line in [
            "rule = \"eprop\"",
            "eprop_update = \"sequence\"",
            "eprop_feedback = \"symmetric\"",
            "eprop_readout_filter = true",
            "eprop_reset_in_trace = true",
        ] {
            assert!(text.contains(line), "config.toml lacks {line}:\n{text}");
        }
        assert!(!text.contains("eprop_feedback_seed") && !text.contains("chunk"), "{text}");

        // Every key, in the file and through --set; random feedback draws from `seed` unless told.
        let random = |seed| Feedback::Random { seed };
        let cases: Vec<(&str, Vec<&str>, EpropSettings)> = vec![
            (
                "eprop_update = \"step\"\n",
                vec![],
                EpropSettings { update_every_step: true, ..EpropSettings::default() },
            ),
            ("eprop_update = \"sequence\"\n", vec![], EpropSettings::default()),
            ("eprop_feedback = \"symmetric\"\n", vec![], EpropSettings::default()),
            (
                "eprop_feedback = \"random\"\n",
                vec![],
                EpropSettings { feedback: random(7), ..EpropSettings::default() },
            ),
            (
                "eprop_feedback = \"random\"\neprop_feedback_seed = 0\n",
                vec![],
                EpropSettings { feedback: random(0), ..EpropSettings::default() },
            ),
            (
                "eprop_readout_filter = false\n",
                vec![],
                EpropSettings { readout_filter: false, ..EpropSettings::default() },
            ),
            (
                "eprop_reset_in_trace = false\n",
                vec![],
                EpropSettings { reset_in_trace: false, ..EpropSettings::default() },
            ),
            (
                "reset = \"never\"\n",
                vec!["train.eprop_update=step", "train.eprop_feedback=random", "train.eprop_feedback_seed=42"],
                EpropSettings { update_every_step: true, feedback: random(42), ..EpropSettings::default() },
            ),
            (
                "",
                vec!["train.eprop_readout_filter=false", "train.eprop_reset_in_trace=false"],
                EpropSettings { readout_filter: false, reset_in_trace: false, ..EpropSettings::default() },
            ),
        ];
        for (keys, sets, want) in cases {
            let text = format!("{EPROP_LIF}[train]\nrule = \"eprop\"\n{keys}");
            let e = parse(&text, &sets).unwrap_or_else(|err| panic!("{keys} {sets:?}: {err}"));
            assert_eq!(eprop(&e), want, "{keys} {sets:?}");
            let written = e.to_toml();
            let back = parse(&written, &[]).unwrap_or_else(|err| panic!("{keys} {sets:?}: {err}\n{written}"));
            assert_eq!(back, e, "{keys} {sets:?}: config.toml parses back");
            if let Feedback::Random { seed } = want.feedback {
                assert!(written.contains(&format!("eprop_feedback_seed = {seed}")), "{written}");
            }
        }
        // ALIF (adaptive threshold) on an image task, where the rule's plain update ignores α and β.
        let alif = "[data]\ntask = \"smnist\"\npixels_per_step = 16\n[model]\nhidden = [8]\nneuron = \"alif\"\n\
                    [train]\nrule = \"eprop\"\n";
        let e = parse(alif, &[]).unwrap();
        assert_eq!((eprop(&e), e.train.reset), (EpropSettings::default(), ResetPolicy::Never));
        assert_eq!(parse(&e.to_toml(), &[]).unwrap(), e);
    }

    #[test]
    fn eprop_refuses_what_it_does_not_define() {
        let refused = |text: String, sets: &[&str]| -> String {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            Experiment::parse(&text, "x.toml", "x", &sets).unwrap_err().to_string()
        };
        let eprop = format!("{EPROP_LIF}[train]\nrule = \"eprop\"\n");

        // Models e-prop is not defined for: the model key named, eprop::check's reason, the fix.
        let err = refused("[data]\ntask = \"adding\"\n[train]\nrule = \"eprop\"\n".into(), &[]);
        assert!(
            err.starts_with("x.toml: model.neuron: train.rule = \"eprop\" does not fit this model: LTC neurons")
                && err.contains("model.neuron = \"lif\" or \"alif\""),
            "{err}"
        );
        let err = refused("[data]\ntask = \"adding\"\n".into(), &["train.rule=eprop"]);
        assert!(err.contains("model.neuron") && err.contains("(--set train.rule=eprop)"), "{err}");
        let err = refused(eprop.replace("hidden = [16]", "hidden = [16, 16]"), &[]);
        assert!(err.starts_with("x.toml: model.hidden: ") && err.contains("one hidden layer only"), "{err}");
        let bn = "[data]\ntask = \"smnist\"\npixels_per_step = 16\n[model]\nhidden = [8]\nneuron = \"lif\"\n\
                  batch_norm = true\n[train]\nrule = \"eprop\"\n";
        let err = refused(bn.into(), &[]);
        assert!(err.starts_with("x.toml: model.batch_norm: ") && err.contains("batch norm is not supported"), "{err}");

        // Keys that do not apply.
        let err = refused(format!("{eprop}chunk = 4\n"), &[]);
        assert!(err.starts_with("x.toml: train.chunk: applies to rule = \"fptt\" only: e-prop"), "{err}");
        let err = refused(format!("{eprop}reset = \"epoch\"\n"), &[]);
        assert_eq!(
            err,
            "x.toml: train.reset: e-prop keeps no running mean W̄ to reset to: leave it out or set \"never\""
        );
        let err = refused(format!("{eprop}eprop_feedback_seed = 3\n"), &[]);
        assert!(err.starts_with("x.toml: train.eprop_feedback_seed: applies to eprop_feedback = \"random\""), "{err}");
        for key in EPROP_KEYS {
            for (rule, title) in [("", "FPTT"), ("rule = \"fptt\"\n", "FPTT"), ("rule = \"bptt\"\n", "BPTT")] {
                let err = refused(format!("{EPROP_LIF}[train]\n{rule}{key} = true\n"), &[]);
                assert_eq!(
                    err,
                    format!(
                        "x.toml: train.{key}: applies to rule = \"eprop\" only; this experiment trains with {title}"
                    )
                );
            }
        }
        let err = refused(EPROP_LIF.into(), &["train.eprop_update=step"]);
        assert!(err.starts_with("x.toml (--set train.eprop_update=step): train.eprop_update: applies to"), "{err}");

        // Values out of range.
        for (keys, want) in [
            (
                "eprop_update = \"online\"\n",
                "x.toml: train.eprop_update: expected one of sequence, step, found \"online\"",
            ),
            (
                "eprop_feedback = \"fixed\"\n",
                "x.toml: train.eprop_feedback: expected one of symmetric, random, found \"fixed\"",
            ),
            (
                "eprop_feedback = \"random\"\neprop_feedback_seed = -1\n",
                "x.toml: train.eprop_feedback_seed: expected an integer ≥ 0, found -1",
            ),
            (
                "eprop_feedback = \"random\"\neprop_feedback_seed = 1.5\n",
                "x.toml: train.eprop_feedback_seed: expected an integer ≥ 0, found 1.5",
            ),
            (
                "eprop_readout_filter = \"yes\"\n",
                "x.toml: train.eprop_readout_filter: expected true or false, found \"yes\"",
            ),
            ("eprop_reset_in_trace = 1\n", "x.toml: train.eprop_reset_in_trace: expected true or false, found 1"),
        ] {
            assert_eq!(refused(format!("{eprop}{keys}"), &[]), want);
        }
        let err = refused(format!("{EPROP_LIF}[train]\nrule = \"rtrl\"\n"), &[]);
        assert_eq!(err, "x.toml: train.rule: expected \"fptt\", \"bptt\" or \"eprop\", found \"rtrl\"");
    }

    #[test]
    fn step_and_cosine_schedules() {
        let mut e = Experiment::parse("[data]\ntask = \"adding\"\n", "x.toml", "x", &[]).unwrap();
        e.train.lr = 1.0;
        e.train.lr_schedule = LrSchedule::Step;
        e.train.lr_decay_epochs = vec![2, 4];
        assert_eq!([0, 1, 2, 3, 4].map(|k| e.lr_at_epoch(k)), [1.0, 1.0, 0.1, 0.1, 0.1 * 0.1]);
        e.train.lr_schedule = LrSchedule::Cosine;
        e.train.epochs = 4;
        assert_eq!(e.lr_at_epoch(0), 1.0);
        assert!((e.lr_at_epoch(2) - 0.5).abs() < 1e-12);
    }
}
