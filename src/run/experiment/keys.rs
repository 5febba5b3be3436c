//! The one declaration of every experiment key: its section and name, the kind of value it takes
//! (which the parser checks and names in its messages), its default (which the parser fills in),
//! and the range and meaning that `experiments/README.md` shows. The parser, the resolved
//! `config.toml` writer (key order) and the README's key tables all read this table; a test
//! checks that the README's rows are exactly [`Key::readme_row`] of every key.

use toml::Value;

use crate::settings::{AuxTargets, Optimizer};

use super::{LrSchedule, Membrane, ResetPolicy, Task, WeightSet};

/// What values a key takes, as far as one key alone decides it. Checks that involve other keys
/// (a chunk no longer than T, the batch norm's batch ≥ 2, a threshold that fits the neuron) are
/// made by the parser next to where it reads the key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A TOML integer ≥ `min`.
    Int {
        min: i64,
    },
    /// A finite number (an integer is accepted) in `bound`.
    Number(Bound),
    Bool,
    /// One of these strings.
    Keyword(&'static [&'static str]),
    /// An array of integers ≥ `min`.
    IntArray {
        min: i64,
        non_empty: bool,
    },
    /// A non-empty string naming a directory.
    Path,
    /// Read by hand in the parser (the range text says what it accepts).
    Custom,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Finite,
    Positive,
    /// (0, 1]
    UnitInterval,
}

impl Bound {
    pub fn holds(self, x: f64) -> bool {
        match self {
            Bound::Finite => true,
            Bound::Positive => x > 0.0,
            Bound::UnitInterval => x > 0.0 && x <= 1.0,
        }
    }
}

impl Kind {
    /// What the parser's messages say was expected: `…: expected {this}, found …`.
    pub fn expected(self) -> String {
        match self {
            Kind::Int { min } => format!("an integer ≥ {min}"),
            Kind::Number(Bound::Finite) => "a finite number".into(),
            Kind::Number(Bound::Positive) => "a number > 0".into(),
            Kind::Number(Bound::UnitInterval) => "a number in (0, 1]".into(),
            Kind::Bool => "true or false".into(),
            Kind::Keyword(names) => format!("one of {}", names.join(", ")),
            Kind::IntArray { min, non_empty } => {
                format!("{}array of integers ≥ {min}", if non_empty { "a non-empty " } else { "an " })
            }
            Kind::Path => "a directory path".into(),
            Kind::Custom => String::new(),
        }
    }

    /// How the README's range column must begin for this kind (`None`: free text).
    fn readme_range_start(self) -> Option<String> {
        match self {
            Kind::Int { min } => Some(format!("integer ≥ {min}")),
            Kind::Number(Bound::Finite) => Some("a finite number".into()),
            Kind::Number(Bound::Positive) => Some("number > 0".into()),
            Kind::Number(Bound::UnitInterval) => Some("number in (0, 1]".into()),
            Kind::Bool => Some("true, false".into()),
            Kind::Keyword(names) => Some(names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
            Kind::IntArray { min, non_empty: true } => Some(format!("non-empty array of integers ≥ {min}")),
            Kind::IntArray { non_empty: false, .. } => None,
            Kind::Path => Some("a directory".into()),
            Kind::Custom => None,
        }
    }
}

/// A key's default when the experiment leaves it out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDefault {
    /// One TOML value (as TOML text) for every task.
    Same(&'static str),
    /// One TOML value for the adding task, another for the image tasks.
    ByTask { adding: &'static str, images: &'static str },
    /// Follows from other keys; the parser computes it, the README says how.
    Derived(&'static str),
    /// The key must be given.
    Required,
}

impl KeyDefault {
    /// The default as a TOML value for `task` (`None` for derived and required keys).
    pub fn value(self, task: Option<Task>) -> Option<Value> {
        let text = match (self, task) {
            (KeyDefault::Same(v), _) => v,
            (KeyDefault::ByTask { adding, .. }, Some(Task::Adding)) => adding,
            (KeyDefault::ByTask { images, .. }, Some(_)) => images,
            _ => return None,
        };
        let parsed = format!("v = {text}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v"));
        Some(parsed.unwrap_or_else(|| panic!("the key table's default {text:?} is not a TOML value")))
    }

    /// The README's default column.
    fn readme(self) -> String {
        fn literal(text: &str) -> String {
            match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                Some(word) => format!("`{word}`"),
                None if text.starts_with('[') => format!("`{text}`"),
                None => text.to_string(),
            }
        }
        match self {
            KeyDefault::Same(v) => literal(v),
            KeyDefault::ByTask { adding, images } => {
                format!("{} (adding), {} (images)", literal(adding), literal(images))
            }
            KeyDefault::Derived(text) => text.to_string(),
            KeyDefault::Required => "(required)".to_string(),
        }
    }
}

/// One experiment key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Key {
    /// `""` for the top level.
    pub section: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    pub default: KeyDefault,
    /// The README's range column.
    pub range: &'static str,
    /// The README's meaning column.
    pub meaning: &'static str,
}

impl Key {
    /// `section.name` (or `name` at the top level), as messages and the README write it.
    pub fn full_name(&self) -> String {
        if self.section.is_empty() {
            self.name.to_string()
        } else {
            format!("{}.{}", self.section, self.name)
        }
    }

    /// This key's row of the README's table for its section.
    pub fn readme_row(&self) -> String {
        format!("| `{}` | {} | {} | {} |", self.full_name(), self.default.readme(), self.range, self.meaning)
    }

    /// Whether the range text agrees with the kind the parser checks (see the README test).
    pub fn range_fits_kind(&self) -> bool {
        self.kind.readme_range_start().is_none_or(|start| self.range.starts_with(&start))
    }
}

/// The key `name` of `section`. Panics on a key the table does not declare: the parser and the
/// writer ask only for declared keys, and every test that parses an experiment would fail.
pub fn key(section: &str, name: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.section == section && k.name == name)
        .unwrap_or_else(|| panic!("`{section}.{name}` is not in the key table"))
}

/// The keyword names of enum values, shared by the parser and the writer.
pub const MEMBRANES: [(&str, Membrane); 2] = [("uniform", Membrane::Uniform), ("zero", Membrane::Zero)];
pub const THRESHOLDS: [(&str, bool); 2] = [("adaptive", true), ("fixed", false)];
pub const OPTIMIZERS: [(&str, Optimizer); 2] = [("adam", Optimizer::Adam), ("adamax", Optimizer::Adamax)];
pub const AUX_TARGETS: [(&str, AuxTargets); 3] =
    [("table", AuxTargets::Table), ("uniform", AuxTargets::Uniform), ("off", AuxTargets::Off)];
pub const RESETS: [(&str, ResetPolicy); 3] =
    [("epoch", ResetPolicy::Epoch), ("sequence", ResetPolicy::Sequence), ("never", ResetPolicy::Never)];
pub const WEIGHT_SETS: [(&str, WeightSet); 2] =
    [("running_mean", WeightSet::RunningMean), ("current", WeightSet::Current)];
pub const EVAL_NORMS: [(&str, bool); 2] = [("running", false), ("batch", true)];
pub const LR_SCHEDULES: [(&str, LrSchedule); 3] =
    [("none", LrSchedule::None), ("step", LrSchedule::Step), ("cosine", LrSchedule::Cosine)];
/// `train.eprop_update`: whether e-prop updates after every step.
pub const EPROP_UPDATES: [(&str, bool); 2] = [("sequence", false), ("step", true)];
/// `train.eprop_feedback`: whether the feedback matrix is random.
pub const EPROP_FEEDBACKS: [(&str, bool); 2] = [("symmetric", false), ("random", true)];

/// The name of `value` in `options`.
pub fn name_of<T: PartialEq>(options: &[(&'static str, T)], value: T) -> &'static str {
    options.iter().find(|(_, v)| *v == value).map(|(n, _)| *n).expect("every value has a keyword")
}

/// The names of `options`, for checking them against a key's [`Kind::Keyword`].
pub fn names<T>(options: &[(&'static str, T)]) -> Vec<&'static str> {
    options.iter().map(|(n, _)| *n).collect()
}

/// Declares every key once and derives [`KEYS`] and [`SCHEMA`] (the key names by section, in
/// the order `config.toml` writes them) from that one list.
macro_rules! key_table {
    ($( $section:literal => [ $( $name:literal : $kind:expr, $default:expr, $range:literal, $meaning:literal; )* ] )*) => {
        /// Every experiment key, section by section, in the order `config.toml` writes them.
        pub const KEYS: &[Key] = &[ $( $(
            Key { section: $section, name: $name, kind: $kind, default: $default, range: $range, meaning: $meaning },
        )* )* ];

        /// The keys of every section, in the order `config.toml` writes them. `[run]` is written
        /// by `fptt train` into `config.toml` (engine version, adapter, command line) and ignored
        /// on reading.
        pub const SCHEMA: &[(&str, &[&str])] = &[ $( ($section, &[ $( $name ),* ]) ),* ];
    };
}

use KeyDefault::{ByTask, Derived, Required, Same};
use Kind::{Bool, Custom, Int, IntArray, Keyword, Number, Path};

key_table! {
    "" => [
        "name": Custom, Derived("the file's stem"), "letters, digits, `-`, `_`, `.`",
            "the run's name: the `run` column of `metrics.csv` and the default output directory";
        "seed": Int { min: 0 }, Same("1"), "integer ≥ 0",
            "the seed of every random stream: initialisation, data order and adding batches, initial membranes, evaluation data";
    ]
    "data" => [
        "task": Keyword(&["adding", "smnist", "psmnist", "fashion-mnist", "nmnist-synth", "dvs-gesture", "events"]), Required,
            "`adding`, `smnist`, `psmnist`, `fashion-mnist`, `nmnist-synth`, `dvs-gesture`, `events`",
            "the task (docs/method.md §8); `nmnist-synth`, `dvs-gesture` and `events` (a directory of `.npz`/`.npy` event files, one folder per class) are event-camera tasks (README, \"Event-camera data\"): one frame of 2·H'·W' event counts per step";
        "dir": Path, Derived("`data/mnist-subset` (`data/fashion-mnist` for fashion-mnist; required for dvs-gesture and events)"), "a directory",
            "where the IDX files are (image tasks and nmnist-synth, which turns the digits into events), where DvsGesture.tar.gz was unpacked (dvs-gesture), or the directory holding `train/<class>/` and `test/<class>/` folders of `.npz`/`.npy` event files (events: SpikingJelly's `events_np`); relative to the working directory";
        "steps": Custom, Derived("200 (adding); 784 / `pixels_per_step` (images); `frames` (events)"),
            "integer ≥ 2 (adding); must equal 784 / `pixels_per_step` (images) or `frames` (events) if given", "sequence length T";
        "pixels_per_step": Custom, Same("1"), "a divisor of 784 (image tasks only)",
            "k pixels per step (image tasks): T = 784 / k inputs of k pixels";
        "permutation_seed": Int { min: 0 }, Derived("`seed`"), "integer ≥ 0",
            "seed of the fixed PS-MNIST permutation (used by psmnist; recorded for every task)";
        "shuffle": Bool, Same("true"), "true, false", "shuffle the training split every epoch (from the seed)";
        "max_train_samples": Int { min: 0 }, Same("0"), "integer ≥ 0 (0 = all)",
            "use the first N training samples only";
        "max_test_samples": Int { min: 0 }, Same("0"), "integer ≥ 0 (0 = all)",
            "evaluate on the first N test samples only";
        "initial_membrane": Keyword(&["uniform", "zero"]), ByTask { adding: "\"zero\"", images: "\"uniform\"" },
            "`uniform`, `zero`", "initial membrane per sequence: U[0,1) from a seeded stream (docs/method.md §1), or 0";
        "frames": Int { min: 1 }, Same("20"), "integer ≥ 1 (event tasks only)",
            "event tasks: frames per sample, one per time step (T = frames)";
        "split_by": Keyword(&["number", "time"]), Same("\"number\""), "`number`, `time` (event tasks only)",
            "event tasks: equal event counts per frame (SpikingJelly's default; the remainder goes to the last frame) or equal time spans";
        "downsample": Int { min: 1 }, Same("1"), "integer ≥ 1 (event tasks only)",
            "event tasks: sum-pool d×d pixel blocks: frames of 2·⌈H/d⌉·⌈W/d⌉ inputs (nmnist-synth 34×34, dvs-gesture 128×128, events `sensor`)";
        "sensor": Custom, Derived("(required for events)"), "`[W, H]`, integers from 1 to 65535 (events only)",
            "events: the sensor's width and height in pixels (N-MNIST `[34, 34]`, DVS128 Gesture `[128, 128]`, CIFAR10-DVS `[128, 128]`); an event outside it is refused, naming its file";
        "classes": Int { min: 2 }, Derived("the number of class folders"), "integer ≥ 2 (events only)",
            "events: the number of classes; left out, training counts the class folders (and `config.toml` records it); given, the folders must number as many. `--dry-run` reads no folders: without this key it shows the readout for 2 classes";
        "cache_dir": Path, Derived("`runs/cache`"), "a directory (nmnist-synth only)",
            "where nmnist-synth keeps its generated splits (one checksummed file per seed, parameters and split; a damaged one is regenerated); the seed is the run's `seed`";
    ]
    "model" => [
        "hidden": IntArray { min: 1, non_empty: true }, Same("[128]"), "non-empty array of integers ≥ 1",
            "sizes of the hidden LTC layers, bottom first";
        "neuron": Keyword(&["ltc", "alif", "lif"]), Same("\"ltc\""), "`ltc`, `alif`, `lif`",
            "the hidden layers' neuron (docs/method.md §7): LTC gates `τm`, `τa`; ALIF with per-neuron trainable `τm = σ(ρ_m)`, `τa = σ(ρ_a)` and the adaptive threshold; LIF with a per-neuron `τm` and a fixed threshold.";
        "threshold": Keyword(&["adaptive", "fixed"]),
            Derived("`fixed` (adding), `adaptive` (images); `adaptive` with `neuron = \"alif\"`, `fixed` with `neuron = \"lif\"`"),
            "`adaptive`, `fixed` (must agree with `alif` / `lif`)", "adaptive threshold θ = b0 + β_a·b', or a constant";
        "fixed_threshold": Number(Bound::Finite), Same("0.5"), "a finite number",
            "the constant threshold when `threshold = \"fixed\"`";
        "fused_recurrent": Bool, ByTask { adding: "true", images: "false" }, "true, false",
            "d = W_x·[x ; s] + c_x (one map) instead of separate input and recurrent maps";
        "trainable_slopes": Bool, Same("true"), "true, false",
            "train the gate slopes a_m, a_a, a_o (else fixed at 1)";
        "batch_norm": Bool, Same("false"), "true, false",
            "per-step batch norm of the input currents and the readout; needs `fused_recurrent = false` and `train.batch ≥ 2`";
        "conv_channels": IntArray { min: 1, non_empty: false }, Same("[]"), "array of integers ≥ 1 (event tasks only)",
            "convolutional LTC cells before the dense layer (docs/method.md §9), bottom first: each cell's output channels; `[]`: none. With cells, `hidden` is the one dense LTC layer after the flatten. They train with one-step FPTT, chunks (`train.chunk`) or BPTT, not e-prop. `fptt train --dry-run` shows such a network, its parameters and its GPU memory";
        "conv_kernels": IntArray { min: 1, non_empty: false }, Derived("3 for every cell"), "odd integers ≥ 1, one per cell",
            "each cell's square kernel (stride 1, padding k/2; the gates use the same kernel)";
        "conv_pool": Bool, Same("true"), "true, false (conv cells only)",
            "a 2×2 max-pool (stride 2, floor) in every cell, after the input convolution's batch norm";
        "dropout": Custom, Same("0.0"), "number in [0, 1) (conv cells only)",
            "dropout on the last cell's spikes before the flatten (training only)";
    ]
    "train" => [
        "rule": Custom, Same("\"fptt\""), "`fptt`, `bptt`, `eprop` (or `e-prop`)",
            "`fptt`: an update after every `chunk` steps, backpropagating through the chunk (docs/method.md §5); `bptt`: one plain optimizer update per sequence with the gradient of Σ_t ℓ_t through all T steps (no W̄, no λ; `alpha`, `beta` unused; its GPU memory grows with T); `eprop`: e-prop (Bellec et al. 2020, docs/method.md §7), per-synapse eligibility traces times a learning signal from the readout error, then a plain optimizer update like `bptt` (no W̄, no λ; `alpha`, `beta` unused; memory independent of T). e-prop needs `model.neuron = \"lif\"` or `\"alif\"`, one hidden layer, no batch norm and no conv cells (below)";
        "chunk": Custom, Same("1"), "integer from 1 to T (`fptt` only)",
            "FPTT's chunk length K: steps per update. 1 is online FPTT; the authors' adding runs use 10 chunks per sequence (K = T/10)";
        "eprop_update": Keyword(&["sequence", "step"]), Same("\"sequence\""), "`sequence`, `step` (`eprop` only)",
            "`sequence`: one update per sequence with the gradient summed over its steps; `step`: an update after every step (online: the weights change within the sequence, the traces carry on)";
        "eprop_feedback": Keyword(&["symmetric", "random"]), Same("\"symmetric\""),
            "`symmetric`, `random` (`eprop` only)",
            "what carries the readout error back to the hidden neurons: the readout weights `W_o` (symmetric e-prop) or a fixed random matrix of `W_o`'s shape, Xavier-normal, drawn from `eprop_feedback_seed` (random e-prop)";
        "eprop_feedback_seed": Int { min: 0 }, Derived("`seed`"),
            "integer ≥ 0 (`eprop` with `eprop_feedback = \"random\"` only)",
            "seed of the random feedback matrix; written to `config.toml` only with random feedback";
        "eprop_readout_filter": Bool, Same("true"), "true, false (`eprop` only)",
            "filter the eligibility by the readout's own leak and gate, so the error at step t also reaches the spikes of earlier steps (the paper's low-pass filter `F_κ`); false: the learning signal of step t meets the eligibility of step t only";
        "eprop_reset_in_trace": Bool, Same("true"), "true, false (`eprop` only)",
            "keep the reset's derivative `−u·∂s'/∂θ` in the membrane trace, as FPTT's and BPTT's backward do (with it, e-prop equals BPTT for a network without recurrent weights); false: drop it, as Bellec et al. do";
        "optimizer": Keyword(&["adam", "adamax"]), ByTask { adding: "\"adam\"", images: "\"adamax\"" }, "`adam`, `adamax`",
            "PyTorch semantics, β1 0.9, β2 0.999, ε 1e-8";
        "lr": Number(Bound::Positive), Same("0.001"), "number > 0", "learning rate (before the schedule)";
        "alpha": Number(Bound::Positive), ByTask { adding: "0.5", images: "0.1" }, "number > 0", "FPTT α";
        "beta": Number(Bound::UnitInterval), Same("0.5"), "number in (0, 1]", "FPTT β";
        "clip": Number(Bound::Positive), Same("1.0"), "number > 0", "global gradient-norm clip c";
        "batch": Int { min: 1 }, Same("64"), "integer ≥ 1 (≥ 2 with batch norm)",
            "sequences per batch; the last partial training batch of an epoch is dropped";
        "epochs": Int { min: 1 }, Same("1"), "integer ≥ 1",
            "epochs: passes over the training split, or `eval_every` iterations (adding)";
        "max_iterations": Int { min: 0 }, Same("0"), "integer ≥ 0 (0 = unlimited)",
            "stop after this many iterations in all; the epoch in progress then ends early (evaluation, reset, checkpoint)";
        "aux": Keyword(&["table", "uniform", "off"]), Same("\"table\""), "`table`, `uniform`, `off`",
            "auxiliary targets of the classification loss (docs/method.md §4)";
        "aux_uniform_epochs": Int { min: 0 }, Same("0"), "integer ≥ 0",
            "use uniform targets for the first E epochs, then `aux` (no effect with `aux = \"off\"`)";
        "reset": Keyword(&["epoch", "sequence", "never"]), Derived("`epoch` (`never` with `bptt`, `eprop`)"),
            "`epoch`, `sequence`, `never`",
            "when W ← W̄: at each epoch end, after the evaluation of both W and W̄ (docs/method.md §5), after every training sequence, or never; `bptt` and `eprop` have no W̄ and accept only `never` (an FPTT file's `epoch` becomes `never` when `--set train.rule` switches it to them)";
        "report_weights": Keyword(&["running_mean", "current"]),
            Derived("`running_mean` with `reset = \"epoch\"`, else `current`"), "`running_mean`, `current` (`current` only with `bptt`, `eprop`)",
            "which weights' test metrics are the run's result (the console summary, `fptt summarize`'s final and best): FPTT evaluates both the running mean W̄ and the current W at every evaluation, before the reset (the `weights` column of `metrics.csv`); the default reports the weights the epoch-end reset installs";
        "eval_batch_norm": Keyword(&["running", "batch"]), Same("\"running\""), "`running`, `batch` (`batch` needs `model.batch_norm`)",
            "the statistics batch norm uses at evaluation: `running`, the running statistics of each step (docs/method.md §1); `batch`, each test batch's own (over its real samples, the test split in a fixed shuffled order so batches mix the classes; the running statistics are not touched). A diagnostic: see the README's reset study";
        "eval_train_samples": Int { min: 0 }, Same("0"), "integer ≥ 0 (image tasks)",
            "at every evaluation, also evaluate the first N training samples with the weights frozen, for each weight set (`train_frozen` rows): the training accuracy without the adaptation within each sequence that the `train` rows include (one-step FPTT updates at every step, each with the sequence's label)";
        "lr_schedule": Keyword(&["none", "step", "cosine"]), Same("\"none\""), "`none`, `step`, `cosine`",
            "per-epoch learning-rate schedule";
        "lr_decay_epochs": IntArray { min: 1, non_empty: false }, Same("[]"),
            "strictly increasing integers ≥ 1",
            "`step`: multiply by `lr_decay_factor` after each of these epochs (after epoch 30: from the 31st on)";
        "lr_decay_factor": Number(Bound::UnitInterval), Same("0.1"), "number in (0, 1]", "the `step` factor";
        "eval_every": Int { min: 1 }, Same("100"), "integer ≥ 1",
            "adding task: iterations per epoch (each ends with evaluation, reset, checkpoint)";
        "eval_batches": Int { min: 1 }, Same("4"), "integer ≥ 1",
            "adding task: fresh batches per evaluation, from a fixed stream (the same batches every time)";
        "checkpoint_every": Int { min: 0 }, Same("0"), "integer ≥ 0 (0 = epoch ends only)",
            "also write a checkpoint every N iterations";
    ]
    "output" => [
        "dir": Path, Derived("`runs/<name>-<UTC yyyymmdd-hhmmss>`"), "a directory",
            "the run directory (`--out` overrides it)";
        "report_every": Int { min: 1 }, Same("10"), "integer ≥ 1",
            "write a `train` row every N iterations (and at each epoch end)";
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's key rows (`| \`key\` | … |` in the tables under "## Keys"), by key.
    fn readme_rows() -> Vec<(String, String)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let keys = readme.split("\n## Keys").nth(1).expect("experiments/README.md has a ## Keys part");
        let keys = keys.split("\n## ").next().unwrap();
        keys.lines()
            .filter_map(|line| {
                let key = line.strip_prefix("| `")?.split('`').next()?;
                Some((key.to_string(), line.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_readme_key_tables_are_the_key_table() {
        let rows = readme_rows();
        let documented: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        let declared: Vec<String> = KEYS.iter().map(Key::full_name).collect();
        assert_eq!(documented, declared, "experiments/README.md lists other keys (or in another order) than KEYS");
        for ((_, line), key) in rows.iter().zip(KEYS) {
            assert_eq!(
                line,
                &key.readme_row(),
                "experiments/README.md's row of `{}` differs from the key table (default, range or meaning)",
                key.full_name()
            );
        }
    }

    #[test]
    fn ranges_fit_kinds_and_defaults_are_values_of_their_kind() {
        for key in KEYS {
            assert!(key.range_fits_kind(), "`{}`: range {:?} does not fit {:?}", key.full_name(), key.range, key.kind);
            for task in [Task::Adding, Task::Smnist] {
                let Some(value) = key.default.value(Some(task)) else { continue };
                let fits = match (key.kind, &value) {
                    (Kind::Int { min }, Value::Integer(i)) => *i >= min,
                    (Kind::Number(bound), Value::Float(x)) => bound.holds(*x),
                    (Kind::Bool, Value::Boolean(_)) => true,
                    (Kind::Keyword(names), Value::String(s)) => names.contains(&s.as_str()),
                    (Kind::IntArray { .. }, Value::Array(_)) => true,
                    (Kind::Custom, _) => true,
                    _ => false,
                };
                assert!(fits, "`{}`: default {value} is not {}", key.full_name(), key.kind.expected());
            }
        }
    }
}
