//! Experiment files: every documented key round-trips through the resolved TOML (`config.toml`),
//! the shipped experiments parse, and mistakes are refused naming the file, the key and what was
//! expected. No GPU needed.

use std::path::Path;

use fptt::model::{NeuronKind, ThresholdMode};
use fptt::run::experiment::{Experiment, ExperimentError, SCHEMA};
use fptt::run::{LrSchedule, Membrane, ResetPolicy, Task};
use fptt::settings::{AuxTargets, EpropSettings, Feedback, LearningRule, Optimizer};

/// Every key, none at its default.
const ALL_KEYS: &str = r#"
name = "every-key"
seed = 77

[data]
task = "psmnist"
dir = "some/where"
steps = 49
pixels_per_step = 16
permutation_seed = 9
shuffle = false
max_train_samples = 100
max_test_samples = 50
initial_membrane = "zero"

[model]
hidden = [24, 12]
neuron = "lif"
threshold = "fixed"
fixed_threshold = 0.25
fused_recurrent = false
trainable_slopes = false
batch_norm = true

[train]
rule = "fptt"
optimizer = "adam"
lr = 0.0025
alpha = 0.3
beta = 0.75
clip = 2.5
batch = 16
epochs = 7
max_iterations = 123
aux = "uniform"
aux_uniform_epochs = 2
reset = "sequence"
lr_schedule = "step"
lr_decay_epochs = [3, 5]
lr_decay_factor = 0.5
eval_every = 17
eval_batches = 3
checkpoint_every = 11

[output]
dir = "out/here"
report_every = 5
"#;

fn parse(text: &str, sets: &[&str]) -> Result<Experiment, ExperimentError> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Experiment::parse(text, "experiments/x.toml", "x", &sets)
}

fn err(text: &str, sets: &[&str]) -> String {
    match parse(text, sets) {
        Ok(e) => panic!("accepted: {e:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_documented_key_round_trips_through_the_resolved_toml() {
    let e = parse(ALL_KEYS, &[]).unwrap();
    assert_eq!(e.name, "every-key");
    assert_eq!(e.seed, 77);
    assert_eq!(e.data.task, Task::Psmnist);
    assert_eq!(e.data.dir, Path::new("some/where"));
    assert_eq!((e.data.steps, e.data.pixels_per_step, e.data.permutation_seed), (49, 16, 9));
    assert!(!e.data.shuffle);
    assert_eq!((e.data.max_train_samples, e.data.max_test_samples), (100, 50));
    assert_eq!(e.data.initial_membrane, Membrane::Zero);
    assert_eq!(e.model.hidden, vec![24, 12]);
    assert_eq!(e.model.neuron, NeuronKind::Lif);
    assert!(!e.model.adaptive_threshold);
    assert_eq!(e.model.fixed_threshold, 0.25);
    assert!(!e.model.fused_recurrent && !e.model.trainable_slopes && e.model.batch_norm);
    let t = &e.train;
    assert_eq!(t.optimizer, Optimizer::Adam);
    assert_eq!((t.lr, t.alpha, t.beta, t.clip), (0.0025, 0.3, 0.75, 2.5));
    assert_eq!((t.batch, t.epochs, t.max_iterations), (16, 7, 123));
    assert_eq!((t.aux, t.aux_uniform_epochs), (AuxTargets::Uniform, 2));
    assert_eq!(t.reset, ResetPolicy::Sequence);
    assert_eq!(t.lr_schedule, LrSchedule::Step);
    assert_eq!((t.lr_decay_epochs.clone(), t.lr_decay_factor), (vec![3, 5], 0.5));
    assert_eq!((t.eval_every, t.eval_batches, t.checkpoint_every), (17, 3, 11));
    assert_eq!(e.output.dir.as_deref(), Some(Path::new("out/here")));
    assert_eq!(e.output.report_every, 5);

    // The same with e-prop and every one of its keys (one layer, no batch norm, no reset: what
    // e-prop accepts).
    let eprop_keys = ALL_KEYS
        .replace("hidden = [24, 12]", "hidden = [24]")
        .replace("batch_norm = true", "batch_norm = false")
        .replace("reset = \"sequence\"", "reset = \"never\"")
        .replace(
            "rule = \"fptt\"",
            "rule = \"eprop\"\neprop_update = \"step\"\neprop_feedback = \"random\"\neprop_feedback_seed = 5\n\
             eprop_readout_filter = false\neprop_reset_in_trace = false",
        );
    let ep = parse(&eprop_keys, &[]).unwrap();
    let settings = EpropSettings {
        update_every_step: true,
        feedback: Feedback::Random { seed: 5 },
        readout_filter: false,
        reset_in_trace: false,
    };
    assert_eq!((ep.train.rule, ep.train.reset), (LearningRule::Eprop(settings), ResetPolicy::Never));

    // An event task with every event key (they apply to event tasks only) and convolutional cells
    // with every conv key.
    let ev = parse(
        "[data]\ntask = \"nmnist-synth\"\nframes = 7\nsplit_by = \"time\"\ndownsample = 3\ncache_dir = \"c\"\n\
         [model]\nhidden = [12]\nconv_channels = [4, 6]\nconv_kernels = [5, 1]\nconv_pool = false\ndropout = 0.25\n",
        &[],
    )
    .unwrap();
    let cells: Vec<(usize, usize)> = ev.model.conv.iter().map(|c| (c.out_channels, c.kernel)).collect();
    assert_eq!((cells, ev.model.conv_pool, ev.model.dropout), (vec![(4, 5), (6, 1)], false, 0.25));
    assert_eq!(parse(&ev.to_toml(), &[]).unwrap(), ev);

    // The events task with its own keys (sensor, classes).
    let folders = parse("[data]\ntask = \"events\"\ndir = \"d\"\nsensor = [40, 30]\nclasses = 5\n", &[]).unwrap();
    assert_eq!((folders.data.sensor, folders.data.classes), (Some((40, 30)), Some(5)));
    assert_eq!(parse(&folders.to_toml(), &[]).unwrap(), folders);

    // The resolved forms hold every key of the schema (`chunk` with FPTT, the `eprop_*` keys with
    // e-prop, the frame and conv keys with event tasks) and parse back to the same experiment.
    let tables = [e.to_table(), ep.to_table(), ev.to_table(), folders.to_table()];
    for (section, keys) in SCHEMA {
        for key in *keys {
            let present = tables.iter().any(|table| {
                if section.is_empty() {
                    table.contains_key(*key)
                } else {
                    table.get(*section).and_then(|s| s.as_table()).is_some_and(|s| s.contains_key(*key))
                }
            });
            assert!(present, "resolved TOML lacks {section}.{key}");
        }
    }
    assert_eq!(parse(&e.to_toml(), &[]).unwrap(), e);
    assert_eq!(parse(&ep.to_toml(), &[]).unwrap(), ep);

    // Defaults round-trip too (the resolved file of a minimal experiment).
    // The data section of each task with only its required keys.
    for data in [
        "task = \"adding\"",
        "task = \"smnist\"",
        "task = \"psmnist\"",
        "task = \"fashion-mnist\"",
        "task = \"nmnist-synth\"",
        "task = \"dvs-gesture\"\ndir = \"d\"",
        "task = \"events\"\ndir = \"d\"\nsensor = [34, 34]",
    ] {
        let minimal = parse(&format!("[data]\n{data}\n"), &[]).unwrap();
        assert_eq!(parse(&minimal.to_toml(), &[]).unwrap(), minimal, "{data}");
    }
}

#[test]
fn every_key_is_documented_in_the_experiments_readme() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/README.md")).unwrap();
    for (section, keys) in SCHEMA {
        for key in *keys {
            let full = if section.is_empty() { key.to_string() } else { format!("{section}.{key}") };
            assert!(readme.contains(&format!("| `{full}` |")), "experiments/README.md has no row for `{full}`");
        }
    }
}

#[test]
fn the_shipped_experiments_parse_and_are_named_after_their_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            // `stream-*.toml` are `fptt stream` experiments, with their own keys.
            let name = if stem.starts_with("stream-") {
                fptt::run::stream::StreamExperiment::load(&path, &[]).unwrap_or_else(|err| panic!("{err}")).name
            } else {
                Experiment::load(&path, &[]).unwrap_or_else(|err| panic!("{err}")).name
            };
            assert_eq!(name, stem, "{}", path.display());
            seen += 1;
        }
    }
    for name in ["quick", "adding-200", "adding-500", "adding-1000", "smnist", "psmnist", "fashion-mnist"] {
        assert!(dir.join(format!("{name}.toml")).is_file(), "experiments/{name}.toml");
        if name != "quick" {
            assert!(dir.join(format!("{name}-quick.toml")).is_file(), "experiments/{name}-quick.toml");
        }
    }
    assert!(seen >= 13);
}

#[test]
fn task_defaults_follow_the_spec() {
    let adding = parse("[data]\ntask = \"adding\"\n", &[]).unwrap();
    assert_eq!((adding.train.alpha, adding.train.beta), (0.5, 0.5));
    assert_eq!(adding.data.initial_membrane, Membrane::Zero);
    let cfg = adding.model_config();
    assert_eq!((cfg.inputs, cfg.outputs, cfg.steps), (2, 1, 200));
    assert_eq!(cfg.threshold, ThresholdMode::Fixed(0.5));
    assert!(cfg.fused_recurrent);

    let s = parse("[data]\ntask = \"smnist\"\npixels_per_step = 28\n", &[]).unwrap();
    assert_eq!((s.train.alpha, s.train.beta), (0.1, 0.5));
    assert_eq!(s.data.initial_membrane, Membrane::Uniform);
    assert_eq!(s.data.dir, Path::new("data/mnist-subset"));
    let cfg = s.model_config();
    assert_eq!((cfg.inputs, cfg.outputs, cfg.steps), (28, 10, 28));
    assert_eq!(cfg.threshold, ThresholdMode::Adaptive);
    assert_eq!(s.data.permutation_seed, s.seed);
    assert_eq!(parse("[data]\ntask = \"fashion-mnist\"\n", &[]).unwrap().data.dir, Path::new("data/fashion-mnist"));
}

#[test]
fn set_overrides_are_parsed_as_toml_values_or_strings() {
    let e = parse(
        "[data]\ntask = \"adding\"\n",
        &["train.lr=3e-4", "model.hidden=[8, 4]", "data.task=smnist", "data.dir=/x/y", "seed=5", "data.shuffle=false"],
    )
    .unwrap();
    assert_eq!(e.train.lr, 3e-4);
    assert_eq!(e.model.hidden, vec![8, 4]);
    assert_eq!(e.data.task, Task::Smnist);
    assert_eq!(e.data.dir, Path::new("/x/y"));
    assert_eq!(e.seed, 5);
    assert!(!e.data.shuffle);
}

#[test]
fn mistakes_are_refused_naming_file_key_and_expectation() {
    let base = "[data]\ntask = \"adding\"\n";
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (
            format!("{base}[train]\nlr = \"abc\"\n"),
            vec![],
            vec!["experiments/x.toml: train.lr: expected a number > 0, found \"abc\""],
        ),
        (format!("{base}[train]\nlr = -1\n"), vec![], vec!["experiments/x.toml", "train.lr", "> 0", "-1"]),
        (
            format!("{base}[train]\nlrr = 0.1\n"),
            vec![],
            vec!["experiments/x.toml", "train.lrr", "unknown key", "`train.lr`"],
        ),
        (format!("{base}[trian]\nlr = 0.1\n"), vec![], vec!["experiments/x.toml", "trian", "unknown key"]),
        (format!("{base}[train]\nbatch = 64.0\n"), vec![], vec!["train.batch", "an integer ≥ 1", "64.0"]),
        (format!("{base}[train]\nbatch = 0\n"), vec![], vec!["train.batch", "an integer ≥ 1", "found 0"]),
        (format!("{base}[train]\nbeta = 1.5\n"), vec![], vec!["train.beta", "(0, 1]"]),
        (format!("{base}[train]\noptimizer = \"sgd\"\n"), vec![], vec!["train.optimizer", "adam, adamax", "\"sgd\""]),
        (
            format!("{base}[train]\nrule = \"rtrl\"\n"),
            vec![],
            vec!["train.rule", "\"fptt\", \"bptt\" or \"eprop\"", "\"rtrl\""],
        ),
        (
            format!("{base}[train]\nrule = \"eprop\"\n"),
            vec![],
            vec!["experiments/x.toml: model.neuron", "train.rule = \"eprop\"", "LTC neurons", "\"lif\" or \"alif\""],
        ),
        (
            format!("{base}[model]\nneuron = \"lif\"\n[train]\nrule = \"eprop\"\nchunk = 5\n"),
            vec![],
            vec!["train.chunk", "fptt\" only", "e-prop"],
        ),
        (
            format!("{base}[train]\neprop_update = \"step\"\n"),
            vec![],
            vec!["train.eprop_update", "rule = \"eprop\" only", "FPTT"],
        ),
        (format!("{base}[train]\nchunk = 0\n"), vec![], vec!["train.chunk", "from 1 to the sequence length T"]),
        (format!("{base}[train]\nchunk = 100000\n"), vec![], vec!["train.chunk", "T = ", "100000"]),
        (format!("{base}[train]\nrule = \"bptt\"\nchunk = 5\n"), vec![], vec!["train.chunk", "fptt\" only"]),
        (
            format!("{base}[train]\nrule = \"bptt\"\nreset = \"epoch\"\n"),
            vec![],
            vec!["train.reset", "no running mean"],
        ),
        (format!("{base}[train]\nlr_decay_epochs = [5, 3]\n"), vec![], vec!["train.lr_decay_epochs", "increasing"]),
        (format!("{base}[model]\nhidden = []\n"), vec![], vec!["model.hidden", "non-empty array"]),
        (format!("{base}[model]\nhidden = 64\n"), vec![], vec!["model.hidden", "array", "found 64"]),
        (format!("{base}[model]\nbatch_norm = true\n"), vec![], vec!["model.batch_norm", "fused_recurrent = false"]),
        (format!("{base}[model]\nbatch_norm = \"yes\"\n"), vec![], vec!["model.batch_norm", "true or false"]),
        (format!("{base}[data]\n"), vec![], vec!["experiments/x.toml", "not valid TOML"]),
        (
            "[data]\nsteps = 3\n".to_string(),
            vec![],
            vec!["data.task", "missing", "adding, smnist, psmnist, fashion-mnist"],
        ),
        ("[data]\ntask = \"mnist\"\n".to_string(), vec![], vec!["data.task", "\"mnist\""]),
        (
            "[data]\ntask = \"smnist\"\npixels_per_step = 5\n".to_string(),
            vec![],
            vec!["data.pixels_per_step", "divisor of 784"],
        ),
        (
            "[data]\ntask = \"smnist\"\nsteps = 100\n".to_string(),
            vec![],
            vec!["data.steps", "784 / pixels_per_step = 784"],
        ),
        ("[data]\ntask = \"adding\"\nsteps = 1\n".to_string(), vec![], vec!["data.steps", "≥ 2"]),
        ("name = \"a/b\"\n[data]\ntask = \"adding\"\n".to_string(), vec![], vec!["name", "\"a/b\""]),
        ("data = 3\n".to_string(), vec![], vec!["experiments/x.toml: data", "section [data]"]),
        (
            base.to_string(),
            vec!["train.lr=abc"],
            vec!["experiments/x.toml (--set train.lr=abc): train.lr: expected a number > 0, found \"abc\""],
        ),
        (base.to_string(), vec!["train.lrr=1"], vec!["--set train.lrr=1", "unknown key", "train.lr"]),
        (base.to_string(), vec!["lr"], vec!["--set lr", "KEY=VALUE"]),
    ];
    for (text, sets, wanted) in cases {
        let msg = err(&text, &sets);
        for w in wanted {
            assert!(msg.contains(w), "message {msg:?} lacks {w:?} (input {text:?} {sets:?})");
        }
    }
}

#[test]
fn a_missing_experiment_file_is_named() {
    let e = Experiment::load(Path::new("experiments/does-not-exist.toml"), &[]).unwrap_err().to_string();
    assert!(e.contains("experiments/does-not-exist.toml"), "{e}");
}

#[test]
fn schedules_and_aux_phases() {
    let e = parse(
        "[data]\ntask = \"smnist\"\n[train]\nlr = 1.0\nepochs = 4\nlr_schedule = \"step\"\nlr_decay_epochs = [1, 3]\naux_uniform_epochs = 2\n",
        &[],
    )
    .unwrap();
    assert_eq!([0, 1, 2, 3].map(|k| e.lr_at_epoch(k)), [1.0, 0.1, 0.1, 0.1 * 0.1]);
    assert_eq!([0, 1, 2].map(|k| e.aux_at_epoch(k)), [AuxTargets::Uniform, AuxTargets::Uniform, AuxTargets::Table]);
}
