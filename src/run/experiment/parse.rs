//! Reading experiment text into an [`Experiment`]: `--set` overrides merged into the TOML, unknown
//! keys refused (with a suggestion), then every key taken out of its section and checked against
//! its declaration in [`super::keys`] (kind, default) plus the checks that involve several keys.
//! Every error names the file (and the `--set` argument), the key and what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::keys::{self, Kind, SCHEMA};
use super::{
    DataSection, Experiment, ExperimentError, Membrane, ModelSection, OutputSection, Result, Task, TrainSection,
    IMAGE_PIXELS, RUN_SECTION,
};
use crate::data::events::SplitBy;
use crate::model::conv::ConvCell;
use crate::model::NeuronKind;
use crate::settings::{EpropSettings, Feedback, LearningRule};

/// The keys of `[train]` that only `rule = "eprop"` reads.
pub(super) const EPROP_KEYS: [&str; 5] =
    ["eprop_update", "eprop_feedback", "eprop_feedback_seed", "eprop_readout_filter", "eprop_reset_in_trace"];

/// The rule's name in messages.
fn rule_title(rule: LearningRule) -> &'static str {
    match rule {
        LearningRule::Fptt { .. } => "FPTT",
        LearningRule::Bptt => "BPTT",
        LearningRule::Eprop(_) => "e-prop",
    }
}

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

/// One section's values being taken out one key at a time. A key the experiment leaves out gets
/// its default from the key table (for `task`, once the task is known).
struct Section<'a> {
    origins: &'a Origins,
    name: &'static str,
    table: Table,
    task: Option<Task>,
}

impl<'a> Section<'a> {
    fn key(&self, k: &str) -> String {
        if self.name.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.name)
        }
    }

    fn kind(&self, k: &str) -> Kind {
        keys::key(self.name, k).kind
    }

    fn expected(&self, k: &str, what: &str, found: &Value) -> ExperimentError {
        self.origins.key_err(&self.key(k), format!("expected {what}, found {}", describe(found)))
    }

    fn take(&mut self, k: &str) -> Option<Value> {
        self.table.remove(k)
    }

    /// The key table's default of `k` for this section's task.
    fn default(&self, k: &str) -> Option<Value> {
        keys::key(self.name, k).default.value(self.task)
    }

    /// The value given for `k`, else the table's default, else `derived` (for keys whose default
    /// follows from other keys). Panics when none is there: a declared default is missing.
    fn value(&mut self, k: &str, derived: Option<Value>) -> Value {
        let value = self.take(k).or_else(|| self.default(k)).or(derived);
        value.unwrap_or_else(|| panic!("`{}` has no default in the key table", self.key(k)))
    }

    fn int_at_least(&mut self, k: &str, min: i64, derived: Option<i64>) -> Result<i64> {
        match self.value(k, derived.map(Value::Integer)) {
            Value::Integer(i) if i >= min => Ok(i),
            v => Err(self.expected(k, &Kind::Int { min }.expected(), &v)),
        }
    }

    /// An integer key of kind [`Kind::Int`], at least its `min`.
    fn int(&mut self, k: &str, derived: Option<i64>) -> Result<i64> {
        let min = match self.kind(k) {
            Kind::Int { min } => min,
            other => panic!("`{}` is {other:?}, not an integer key", self.key(k)),
        };
        self.int_at_least(k, min, derived)
    }

    fn usize(&mut self, k: &str) -> Result<usize> {
        Ok(self.int(k, None)? as usize)
    }

    fn u64(&mut self, k: &str) -> Result<u64> {
        Ok(self.int(k, None)? as u64)
    }

    /// A finite number (integers accepted) within the key's bound.
    fn float(&mut self, k: &str) -> Result<f64> {
        let kind = self.kind(k);
        let Kind::Number(bound) = kind else { panic!("`{}` is {kind:?}, not a number key", self.key(k)) };
        let v = self.value(k, None);
        let x = match v {
            Value::Float(x) => x,
            Value::Integer(i) => i as f64,
            _ => return Err(self.expected(k, &kind.expected(), &v)),
        };
        if x.is_finite() && bound.holds(x) {
            Ok(x)
        } else {
            Err(self.expected(k, &kind.expected(), &v))
        }
    }

    fn bool(&mut self, k: &str, derived: Option<bool>) -> Result<bool> {
        match self.value(k, derived.map(Value::Boolean)) {
            Value::Boolean(b) => Ok(b),
            v => Err(self.expected(k, &Kind::Bool.expected(), &v)),
        }
    }

    fn string(&mut self, k: &str, what: &str) -> Result<Option<String>> {
        match self.take(k) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(v) => Err(self.expected(k, what, &v)),
        }
    }

    /// One of `options` by name; left out: the table's default, else `derived`, else an error
    /// (a required key).
    fn keyword<T: Copy>(&mut self, k: &str, options: &[(&str, T)], derived: Option<T>) -> Result<T> {
        let kind = self.kind(k);
        debug_assert!(
            matches!(kind, Kind::Keyword(names) if names.iter().eq(options.iter().map(|(n, _)| n))),
            "`{}`: the parser's names differ from the key table's {kind:?}",
            self.key(k)
        );
        let what = kind.expected();
        let lookup = |name: &str| options.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        match self.take(k) {
            None => match self.default(k) {
                Some(Value::String(s)) => Ok(lookup(&s).expect("the key table's default is one of the key's names")),
                _ => derived.ok_or_else(|| self.origins.key_err(&self.key(k), format!("missing; expected {what}"))),
            },
            Some(Value::String(s)) => match lookup(&s) {
                Some(t) => Ok(t),
                None => Err(self.expected(k, &what, &Value::String(s))),
            },
            Some(v) => Err(self.expected(k, &what, &v)),
        }
    }

    fn int_array(&mut self, k: &str) -> Result<Vec<usize>> {
        let kind = self.kind(k);
        let Kind::IntArray { min, non_empty } = kind else { panic!("`{}` is {kind:?}, not an array", self.key(k)) };
        let what = kind.expected();
        let v = self.value(k, None);
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
pub(super) fn parse_set_value(text: &str) -> Value {
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
        // A line break would let the value's TOML parse as several keys and drop all but one.
        if arg.contains(['\n', '\r']) {
            return Err(set_err("the argument holds a line break; give one KEY=VALUE per --set".into()));
        }
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
                let all: Vec<String> = keys::KEYS.iter().map(|k| k.full_name()).collect();
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

fn take_section<'a>(root: &mut Table, origins: &'a Origins, name: &'static str, task: Option<Task>) -> Section<'a> {
    let table = match root.remove(name) {
        Some(Value::Table(t)) => t,
        _ => Table::new(),
    };
    Section { origins, name, table, task }
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
        let mut top = Section { origins: o, name: "", table: Table::new(), task: None };
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
        let seed = top.u64("seed")?;

        let data = parse_data(take_section(&mut root, o, "data", None), seed)?;
        let model = parse_model(take_section(&mut root, o, "model", Some(data.task)))?;
        let train = parse_train(take_section(&mut root, o, "train", Some(data.task)), seed, &data, &model)?;

        // [output]
        let mut out = take_section(&mut root, o, "output", Some(data.task));
        let dir = out.string("dir", &Kind::Path.expected())?.map(PathBuf::from);
        let report_every = out.u64("report_every")?;
        let output = OutputSection { dir, report_every };

        let exp = Experiment { name, seed, data, model, train, output };
        // The conv cells first: their faults name the key (the whole model's check below would not).
        if let Some(net) = exp.conv_net() {
            if exp.model.hidden.len() != 1 {
                return Err(o.key_err(
                    "model.hidden",
                    "with convolutional cells, hidden is the one dense LTC layer after the flatten: [N]".into(),
                ));
            }
            net.validate().map_err(|e| o.key_err("model.conv_channels", e.to_string()))?;
        }
        exp.model_config().validate().map_err(|e| o.key_err("model", e.to_string()))?;
        if let LearningRule::Eprop(_) = exp.train.rule {
            // The model key to blame, in the order `check_model` tests them, and its fix.
            let m = &exp.model;
            let (key, fix) = if !m.conv.is_empty() {
                // Its cells are LTC whatever model.neuron says: only the rule can change.
                ("model.conv_channels", "choose rule = \"fptt\" or \"bptt\", or remove model.conv_channels")
            } else if m.neuron == NeuronKind::Ltc {
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
}

fn parse_data(mut d: Section, seed: u64) -> Result<DataSection> {
    let task = d.keyword("task", &Task::ALL, None)?;
    d.task = Some(task);
    let default_dir = match task {
        Task::FashionMnist => Some("data/fashion-mnist"),
        Task::DvsGesture | Task::Events => None,
        _ => Some("data/mnist-subset"),
    };
    let dir = match (d.string("dir", &Kind::Path.expected())?, default_dir) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => {
            let what = if task == Task::Events {
                "missing; events needs the directory holding train/<class>/ and test/<class>/ folders of .npz or \
                 .npy event files (SpikingJelly's events_np)"
            } else {
                "missing; dvs-gesture needs the directory where DvsGesture.tar.gz was unpacked (the one holding \
                 trials_to_train.txt)"
            };
            return Err(d.origins.key_err("data.dir", what.into()));
        }
    };
    let events = task.is_events();
    // Keys of the other kind of task are refused rather than silently ignored.
    let not_here = |d: &Section, k: &str, why: &str| d.origins.key_err(&d.key(k), why.to_string());
    let (frames, split_by, downsample) = if events {
        if d.table.contains_key("pixels_per_step") {
            return Err(not_here(
                &d,
                "pixels_per_step",
                "applies to image tasks only; an event task feeds one frame of 2·H'·W' inputs per step (data.frames, data.downsample)",
            ));
        }
        (d.usize("frames")?, d.keyword("split_by", &SplitBy::ALL, None)?, d.usize("downsample")?)
    } else {
        for k in ["frames", "split_by", "downsample"] {
            if d.table.contains_key(k) {
                return Err(not_here(&d, k, "applies to event tasks only (nmnist-synth, dvs-gesture, events)"));
            }
        }
        (20, SplitBy::Number, 1)
    };
    let cache_dir = if task == Task::NmnistSynth {
        PathBuf::from(d.string("cache_dir", &Kind::Path.expected())?.unwrap_or_else(|| "runs/cache".into()))
    } else {
        if d.table.contains_key("cache_dir") {
            return Err(not_here(
                &d,
                "cache_dir",
                "applies to nmnist-synth only (the generated event streams are cached)",
            ));
        }
        PathBuf::from("runs/cache")
    };
    let (sensor, classes) = parse_event_folders_keys(&mut d, task)?;
    let fixed = task.sensor_and_classes().map(|(sensor, _)| sensor);
    if let Some((w, h)) = fixed.or(sensor) {
        let largest = w.max(h) as usize;
        if downsample > largest {
            return Err(d.expected(
                "downsample",
                &format!("an integer from 1 to {largest} (the {w}×{h} sensor of {})", task.name()),
                &Value::Integer(downsample as i64),
            ));
        }
    }
    let pixels_per_step = if events { 1 } else { d.int_at_least("pixels_per_step", 1, None)? as usize };
    if !IMAGE_PIXELS.is_multiple_of(pixels_per_step) {
        return Err(d.expected(
            "pixels_per_step",
            "a divisor of 784 (1, 2, 4, 7, 8, 14, 16, 28, 49, 56, 98, 112, 196, 392, 784)",
            &Value::Integer(pixels_per_step as i64),
        ));
    }
    let steps = if task.is_classification() {
        let (t, what) = if events {
            (frames, format!("data.frames = {frames} for an event task (or leave it out)"))
        } else {
            let t = IMAGE_PIXELS / pixels_per_step;
            (t, format!("784 / pixels_per_step = {t} for an image task (or leave it out)"))
        };
        if let Some(v) = d.take("steps") {
            if v != Value::Integer(t as i64) {
                return Err(d.expected("steps", &what, &v));
            }
        }
        t
    } else {
        d.int_at_least("steps", 2, Some(200))? as usize
    };
    let permutation_seed = d.int("permutation_seed", Some(seed as i64))? as u64;
    let shuffle = d.bool("shuffle", None)?;
    let max_train_samples = d.usize("max_train_samples")?;
    let max_test_samples = d.usize("max_test_samples")?;
    let initial_membrane = d.keyword("initial_membrane", &keys::MEMBRANES, None::<Membrane>)?;
    Ok(DataSection {
        task,
        dir,
        steps,
        pixels_per_step,
        permutation_seed,
        shuffle,
        max_train_samples,
        max_test_samples,
        initial_membrane,
        frames,
        split_by,
        downsample,
        cache_dir,
        sensor,
        classes,
    })
}

/// `events`: its `(sensor, classes)`.
type EventFoldersKeys = (Option<(u16, u16)>, Option<usize>);

/// `data.sensor` and `data.classes`: the `events` task's own keys (the sensor required, the
/// classes optional), refused for every other task, whose sensor and classes are fixed.
fn parse_event_folders_keys(d: &mut Section, task: Task) -> Result<EventFoldersKeys> {
    if task != Task::Events {
        if let Some(k) = ["sensor", "classes"].into_iter().find(|k| d.table.contains_key(*k)) {
            let why = match task.sensor_and_classes() {
                Some(((w, h), c)) => {
                    format!(
                        "applies to data.task = \"events\" only; {} has a {w}×{h} sensor and {c} classes",
                        task.name()
                    )
                }
                None => "applies to data.task = \"events\" only".to_string(),
            };
            return Err(d.origins.key_err(&d.key(k), why));
        }
        return Ok((None, None));
    }
    let what = "[W, H]: the sensor's width and height, integers from 1 to 65535";
    let sensor = match d.take("sensor") {
        None => {
            return Err(d.origins.key_err(
                "data.sensor",
                format!("missing; events needs {what} (e.g. [34, 34] for N-MNIST, [128, 128] for DVS128 Gesture)"),
            ))
        }
        Some(v) => {
            let side = |x: &Value| match x {
                Value::Integer(i) => u16::try_from(*i).ok().filter(|&s| s >= 1),
                _ => None,
            };
            let parsed = match v.as_array().map(Vec::as_slice) {
                Some([w, h]) => side(w).zip(side(h)),
                _ => None,
            };
            parsed.ok_or_else(|| d.expected("sensor", what, &v))?
        }
    };
    // Left out: counted from the folders when a run reads them (the key's default is derived).
    let classes = if d.table.contains_key("classes") { Some(d.usize("classes")?) } else { None };
    Ok((Some(sensor), classes))
}

fn parse_model(mut m: Section) -> Result<ModelSection> {
    let o = m.origins;
    let adding = m.task == Some(Task::Adding);
    let hidden = m.int_array("hidden")?;
    let neuron = m.keyword("neuron", &NeuronKind::ALL, None)?;
    // LIF has no adaptation and ALIF is defined by it: their threshold follows from the neuron
    // unless the file says otherwise (and then it must agree).
    let default_adaptive = match neuron {
        NeuronKind::Ltc => !adding,
        NeuronKind::Alif => true,
        NeuronKind::Lif => false,
    };
    let adaptive_threshold = m.keyword("threshold", &keys::THRESHOLDS, Some(default_adaptive))?;
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
    let fixed_threshold = m.float("fixed_threshold")?;
    let fused_recurrent = m.bool("fused_recurrent", None)?;
    let trainable_slopes = m.bool("trainable_slopes", None)?;
    let batch_norm = m.bool("batch_norm", None)?;
    let (conv, conv_pool, dropout) = parse_conv(&mut m)?;
    if !conv.is_empty() {
        // A conv network's cells and dense layer are the DVS model's (docs/method.md §9): LTC
        // neurons, the adaptive threshold, no recurrent map and no batch norm of the dense layer.
        // A file that asks otherwise would train something else than it says.
        let contradiction = [
            ("model.neuron", neuron != NeuronKind::Ltc, "LTC neurons (leave model.neuron out)"),
            ("model.threshold", !adaptive_threshold, "the adaptive threshold (leave model.threshold out)"),
            ("model.fused_recurrent", fused_recurrent, "a dense layer reading only the cells' spikes"),
            ("model.batch_norm", batch_norm, "batch norm inside the cells only"),
        ]
        .into_iter()
        .find(|(_, contradicts, _)| *contradicts);
        if let Some((key, _, what)) = contradiction {
            return Err(o.key_err(
                key,
                format!("with convolutional cells (model.conv_channels) the network has {what} (docs/method.md §9)"),
            ));
        }
    }
    if fused_recurrent && batch_norm {
        return Err(o.key_err(
            "model.batch_norm",
            "batch_norm = true needs separate input and recurrent maps: set model.fused_recurrent = false".into(),
        ));
    }
    Ok(ModelSection {
        hidden,
        neuron,
        adaptive_threshold,
        fixed_threshold,
        fused_recurrent,
        trainable_slopes,
        batch_norm,
        conv,
        conv_pool,
        dropout,
    })
}

/// The convolutional cells (`conv_channels`, `conv_kernels`, `conv_pool`, `dropout`): event tasks
/// only, one odd kernel per cell, the other keys only with cells.
fn parse_conv(m: &mut Section) -> Result<(Vec<ConvCell>, bool, f64)> {
    let o = m.origins;
    let channels = m.int_array("conv_channels")?;
    if channels.is_empty() {
        if let Some(k) = ["conv_kernels", "conv_pool", "dropout"].into_iter().find(|k| m.table.contains_key(*k)) {
            return Err(o.key_err(&m.key(k), "applies to convolutional cells only: set model.conv_channels".into()));
        }
        return Ok((Vec::new(), true, 0.0));
    }
    if !m.task.is_some_and(Task::is_events) {
        return Err(o.key_err(
            "model.conv_channels",
            "convolutional cells read frames: they need an event task (data.task = \"nmnist-synth\", \"dvs-gesture\" or \"events\")"
                .into(),
        ));
    }
    let kernels = match m.take("conv_kernels") {
        None => vec![3; channels.len()],
        Some(v) => {
            m.table.insert("conv_kernels".into(), v);
            m.int_array("conv_kernels")?
        }
    };
    if kernels.len() != channels.len() || kernels.iter().any(|k| k % 2 == 0) {
        let what = format!("{} odd integers ≥ 1 (one per cell of conv_channels)", channels.len());
        let found = Value::Array(kernels.iter().map(|&k| Value::Integer(k as i64)).collect());
        return Err(m.expected("conv_kernels", &what, &found));
    }
    let conv_pool = m.bool("conv_pool", None)?;
    let dropout = match m.value("dropout", None) {
        Value::Float(x) if (0.0..1.0).contains(&x) => x,
        Value::Integer(0) => 0.0,
        v => return Err(m.expected("dropout", "a number in [0, 1)", &v)),
    };
    let cells =
        channels.into_iter().zip(kernels).map(|(out_channels, kernel)| ConvCell { out_channels, kernel }).collect();
    Ok((cells, conv_pool, dropout))
}

/// `train.rule` with its options: `chunk` for FPTT, the `eprop_*` keys for e-prop.
fn parse_rule(t: &mut Section, seed: u64, steps: usize) -> Result<LearningRule> {
    let o = t.origins;
    let rules = "\"fptt\", \"bptt\" or \"eprop\"";
    let chunk = t.take("chunk");
    let rule_name = match t.value("rule", None) {
        Value::String(s) => s,
        v => return Err(t.expected("rule", rules, &v)),
    };
    let rule = match rule_name.as_str() {
        "fptt" => match chunk.clone().or_else(|| t.default("chunk")) {
            Some(Value::Integer(k)) if k >= 1 && k as usize <= steps => LearningRule::Fptt { chunk: k as usize },
            v => {
                let what = format!("an integer from 1 to the sequence length T = {steps}");
                return Err(t.expected("chunk", &what, &v.unwrap_or(Value::Integer(0))));
            }
        },
        "bptt" => LearningRule::Bptt,
        "eprop" | "e-prop" => {
            let update_every_step = t.keyword("eprop_update", &keys::EPROP_UPDATES, None)?;
            let random = t.keyword("eprop_feedback", &keys::EPROP_FEEDBACKS, None)?;
            let feedback = if random {
                Feedback::Random { seed: t.int("eprop_feedback_seed", Some(seed as i64))? as u64 }
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
            let readout_filter = t.bool("eprop_readout_filter", None)?;
            let reset_in_trace = t.bool("eprop_reset_in_trace", None)?;
            LearningRule::Eprop(EpropSettings { update_every_step, feedback, readout_filter, reset_in_trace })
        }
        _ => return Err(t.expected("rule", rules, &Value::String(rule_name))),
    };
    // BPTT and e-prop: no chunks, no e-prop options elsewhere.
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
                format!("applies to rule = \"eprop\" only; this experiment trains with {}", rule_title(rule)),
            ));
        }
    }
    Ok(rule)
}

fn parse_train(mut t: Section, seed: u64, data: &DataSection, model: &ModelSection) -> Result<TrainSection> {
    let o = t.origins;
    let rule = parse_rule(&mut t, seed, data.steps)?;
    // A plain optimizer step (BPTT, e-prop): no W̄, no λ, α and β unused.
    let plain = matches!(rule, LearningRule::Bptt | LearningRule::Eprop(_));
    let optimizer = t.keyword("optimizer", &keys::OPTIMIZERS, None)?;
    let lr = t.float("lr")?;
    let alpha = t.float("alpha")?;
    let beta = t.float("beta")?;
    let clip = t.float("clip")?;
    // Batch norm needs two samples for its statistics.
    let batch = t.int_at_least("batch", if model.batch_norm { 2 } else { 1 }, None)? as usize;
    let epochs = t.usize("epochs")?;
    let max_iterations = t.u64("max_iterations")?;
    let aux = t.keyword("aux", &keys::AUX_TARGETS, None)?;
    let aux_uniform_epochs = t.usize("aux_uniform_epochs")?;
    let default_reset = if plain { super::ResetPolicy::Never } else { super::ResetPolicy::Epoch };
    let mut reset = t.keyword("reset", &keys::RESETS, Some(default_reset))?;
    // A file written for FPTT may say FPTT's default, reset = "epoch": switching it to BPTT or
    // e-prop with --set train.rule takes the plain rules' default, "never", instead of refusing
    // (a file that names the plain rule and a reset itself, or a --set reset, is still refused).
    let rule_from_set = o.set.contains_key("train.rule");
    if plain && rule_from_set && reset == super::ResetPolicy::Epoch && !o.set.contains_key("train.reset") {
        reset = super::ResetPolicy::Never;
    }
    if plain && reset != super::ResetPolicy::Never {
        return Err(o.key_err(
            "train.reset",
            format!("{} keeps no running mean W̄ to reset to: leave it out or set \"never\"", rule_title(rule)),
        ));
    }
    let default_weights =
        if reset == super::ResetPolicy::Epoch { super::WeightSet::RunningMean } else { super::WeightSet::Current };
    let report_weights = t.keyword("report_weights", &keys::WEIGHT_SETS, Some(default_weights))?;
    if plain && report_weights != super::WeightSet::Current {
        return Err(o.key_err(
            "train.report_weights",
            format!("{} keeps no running mean W̄ to evaluate: leave it out or set \"current\"", rule_title(rule)),
        ));
    }
    let eval_batch_stats = t.keyword("eval_batch_norm", &keys::EVAL_NORMS, None)?;
    if eval_batch_stats && !model.batch_norm {
        return Err(o.key_err(
            "train.eval_batch_norm",
            "\"batch\" needs model.batch_norm = true (without batch norm there are no statistics to choose)"
                .to_string(),
        ));
    }
    let eval_train_samples = t.usize("eval_train_samples")?;
    if eval_train_samples > 0 && data.task == super::Task::Adding {
        return Err(o.key_err(
            "train.eval_train_samples",
            "the adding task draws fresh batches for every evaluation already; leave it out".to_string(),
        ));
    }
    let lr_schedule = t.keyword("lr_schedule", &keys::LR_SCHEDULES, None)?;
    let lr_decay_epochs = t.int_array("lr_decay_epochs")?;
    if lr_decay_epochs.windows(2).any(|w| w[0] >= w[1]) {
        let v = Value::Array(lr_decay_epochs.iter().map(|&e| Value::Integer(e as i64)).collect());
        return Err(t.expected("lr_decay_epochs", "strictly increasing epoch numbers", &v));
    }
    let lr_decay_factor = t.float("lr_decay_factor")?;
    let eval_every = t.u64("eval_every")?;
    let eval_batches = t.usize("eval_batches")?;
    let checkpoint_every = t.u64("checkpoint_every")?;
    Ok(TrainSection {
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
        report_weights,
        eval_batch_stats,
        eval_train_samples,
        lr_schedule,
        lr_decay_epochs,
        lr_decay_factor,
        eval_every,
        eval_batches,
        checkpoint_every,
    })
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
}
