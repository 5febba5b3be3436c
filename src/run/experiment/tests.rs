//! Unit tests of the experiment parser: the neuron kinds and e-prop keys, what e-prop refuses,
//! the learning-rate schedules.

use super::parse::EPROP_KEYS;
use super::*;
use crate::model::NeuronKind;
use crate::settings::{EpropSettings, Feedback, LearningRule};

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

const EPROP_LIF: &str = "seed = 7\n[data]\ntask = \"adding\"\nsteps = 20\n[model]\nhidden = [16]\nneuron = \"lif\"\n";

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
        ("eprop_update = \"step\"\n", vec![], EpropSettings { update_every_step: true, ..EpropSettings::default() }),
        ("eprop_update = \"sequence\"\n", vec![], EpropSettings::default()),
        ("eprop_feedback = \"symmetric\"\n", vec![], EpropSettings::default()),
        ("eprop_feedback = \"random\"\n", vec![], EpropSettings { feedback: random(7), ..EpropSettings::default() }),
        (
            "eprop_feedback = \"random\"\neprop_feedback_seed = 0\n",
            vec![],
            EpropSettings { feedback: random(0), ..EpropSettings::default() },
        ),
        ("eprop_readout_filter = false\n", vec![], EpropSettings { readout_filter: false, ..EpropSettings::default() }),
        ("eprop_reset_in_trace = false\n", vec![], EpropSettings { reset_in_trace: false, ..EpropSettings::default() }),
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
    // Conv cells are LTC: the conv key is named, not model.neuron (which, set to "lif" beside conv
    // cells, is refused as a contradiction of its own).
    let conv = "[data]\ntask = \"nmnist-synth\"\ndownsample = 4\n[model]\nconv_channels = [2]\nhidden = [8]\n\
                [train]\nrule = \"eprop\"\n";
    let err = refused(conv.into(), &[]);
    assert!(
        err.starts_with("x.toml: model.conv_channels: ") && err.contains("convolutional cells are not supported"),
        "{err}"
    );

    // Keys that do not apply.
    let err = refused(format!("{eprop}chunk = 4\n"), &[]);
    assert!(err.starts_with("x.toml: train.chunk: applies to rule = \"fptt\" only: e-prop"), "{err}");
    let err = refused(format!("{eprop}reset = \"epoch\"\n"), &[]);
    assert_eq!(err, "x.toml: train.reset: e-prop keeps no running mean W̄ to reset to: leave it out or set \"never\"");
    // An FPTT file's reset = "epoch" gives way to --set train.rule (README's BPTT example); a
    // --set reset does not.
    let fptt_file = "[data]\ntask = \"adding\"\n[train]\nreset = \"epoch\"\n";
    let sets = vec!["train.rule=\"bptt\"".to_string()];
    let e = Experiment::parse(fptt_file, "x.toml", "x", &sets).unwrap();
    assert_eq!(e.train.reset, ResetPolicy::Never);
    let err = refused(fptt_file.into(), &["train.rule=\"bptt\"", "train.reset=\"epoch\""]);
    assert!(err.contains("train.reset") && err.contains("BPTT keeps no running mean"), "{err}");
    let err = refused(format!("{eprop}eprop_feedback_seed = 3\n"), &[]);
    assert!(err.starts_with("x.toml: train.eprop_feedback_seed: applies to eprop_feedback = \"random\""), "{err}");
    for key in EPROP_KEYS {
        for (rule, title) in [("", "FPTT"), ("rule = \"fptt\"\n", "FPTT"), ("rule = \"bptt\"\n", "BPTT")] {
            let err = refused(format!("{EPROP_LIF}[train]\n{rule}{key} = true\n"), &[]);
            assert_eq!(
                err,
                format!("x.toml: train.{key}: applies to rule = \"eprop\" only; this experiment trains with {title}")
            );
        }
    }
    let err = refused(EPROP_LIF.into(), &["train.eprop_update=step"]);
    assert!(err.starts_with("x.toml (--set train.eprop_update=step): train.eprop_update: applies to"), "{err}");

    // Values out of range.
    for (keys, want) in [
        ("eprop_update = \"online\"\n", "x.toml: train.eprop_update: expected one of sequence, step, found \"online\""),
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

#[test]
fn event_tasks_parse_with_their_frame_keys_and_round_trip() {
    use crate::data::events::SplitBy;
    let parse = |text: &str| Experiment::parse(text, "x.toml", "x", &[]);
    let e = parse("[data]\ntask = \"nmnist-synth\"\nframes = 10\ndownsample = 2\n").unwrap();
    assert_eq!((e.data.steps, e.data.frames, e.data.split_by, e.data.downsample), (10, 10, SplitBy::Number, 2));
    assert_eq!(e.data.cache_dir, std::path::PathBuf::from("runs/cache"));
    let m = e.model_config();
    // One frame of 2 × 17 × 17 counts per step, 10 classes.
    assert_eq!((m.inputs, m.outputs, m.steps), (578, 10, 10));
    assert_eq!(parse(&e.to_toml()).unwrap(), e, "config.toml parses back");
    assert!(!e.to_toml().contains("pixels_per_step"));
    let g = parse("[data]\ntask = \"dvs-gesture\"\ndir = \"d\"\nsplit_by = \"time\"\ndownsample = 4\n").unwrap();
    assert_eq!((g.model_config().inputs, g.model_config().outputs, g.data.steps), (2 * 32 * 32, 11, 20));
    assert_eq!(g.data.split_by, SplitBy::Time);
    assert!(!g.to_toml().contains("cache_dir"));
    assert_eq!(parse(&g.to_toml()).unwrap(), g);
    // Image tasks write no event keys.
    assert!(!parse("[data]\ntask = \"smnist\"\n").unwrap().to_toml().contains("frames"));
}

#[test]
fn event_keys_are_refused_with_file_key_and_expectation() {
    let err = |text: &str| Experiment::parse(text, "x.toml", "x", &[]).unwrap_err().to_string();
    let cases = [
        ("[data]\ntask = \"nmnist-synth\"\nframes = 0\n", "x.toml: data.frames: expected an integer ≥ 1, found 0"),
        (
            "[data]\ntask = \"nmnist-synth\"\nsplit_by = \"count\"\n",
            "x.toml: data.split_by: expected one of number, time, found \"count\"",
        ),
        (
            "[data]\ntask = \"nmnist-synth\"\ndownsample = 0\n",
            "x.toml: data.downsample: expected an integer ≥ 1, found 0",
        ),
        (
            "[data]\ntask = \"nmnist-synth\"\ndownsample = 35\n",
            "x.toml: data.downsample: expected an integer from 1 to 34",
        ),
        ("[data]\ntask = \"nmnist-synth\"\nframes = 10\nsteps = 12\n", "x.toml: data.steps: expected data.frames = 10"),
        (
            "[data]\ntask = \"nmnist-synth\"\npixels_per_step = 4\n",
            "x.toml: data.pixels_per_step: applies to image tasks only",
        ),
        ("[data]\ntask = \"smnist\"\nframes = 10\n", "x.toml: data.frames: applies to event tasks only"),
        ("[data]\ntask = \"adding\"\ndownsample = 2\n", "x.toml: data.downsample: applies to event tasks only"),
        (
            "[data]\ntask = \"dvs-gesture\"\ndir = \"d\"\ncache_dir = \"c\"\n",
            "x.toml: data.cache_dir: applies to nmnist-synth only",
        ),
        (
            "[data]\ntask = \"dvs-gesture\"\n",
            "x.toml: data.dir: missing; dvs-gesture needs the directory where DvsGesture.tar.gz",
        ),
        (
            "[data]\ntask = \"nmnist-synth\"\nframe = 10\n",
            "x.toml: data.frame: unknown key; did you mean `data.frames`?",
        ),
        (
            "[data]\ntask = \"nmnist-synth\"\ncache_dir = 3\n",
            "x.toml: data.cache_dir: expected a directory path, found 3",
        ),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert!(got.starts_with(want), "{text:?}:\n got  {got}\n want {want}…");
    }
    // --set names its argument.
    let sets = vec!["data.frames=0".to_string()];
    let got = Experiment::parse("[data]\ntask = \"nmnist-synth\"\n", "x.toml", "x", &sets).unwrap_err().to_string();
    assert!(got.starts_with("x.toml (--set data.frames=0): data.frames: expected an integer ≥ 1"), "{got}");
}

#[test]
fn the_events_task_takes_its_sensor_and_classes_and_round_trips() {
    let parse = |text: &str| Experiment::parse(text, "x.toml", "x", &[]);
    let base = "[data]\ntask = \"events\"\ndir = \"data/events\"\nsensor = [34, 30]\nframes = 10\ndownsample = 2\n";
    let e = parse(base).unwrap();
    assert_eq!((e.data.sensor, e.data.classes, e.data.steps), (Some((34, 30)), None, 10));
    // One frame of 2 × 15 × 17 counts per step; the readout is shaped for the assumed 2 classes
    // until training counts the folders.
    let m = e.model_config();
    assert_eq!((m.inputs, m.outputs, m.steps), (2 * 15 * 17, ASSUMED_EVENT_CLASSES, 10));
    let text = e.to_toml();
    assert!(text.contains("sensor = [34, 30]") && !text.contains("classes") && !text.contains("cache_dir"), "{text}");
    assert_eq!(parse(&text).unwrap(), e, "config.toml parses back");
    let c = parse(&format!("{base}classes = 11\n[model]\nconv_channels = [4]\nhidden = [16]\n")).unwrap();
    assert_eq!(c.data.classes, Some(11));
    let net = c.conv_net().expect("conv cells on the events frames");
    assert_eq!((net.height, net.width, net.classes), (15, 17, 11));
    assert!(c.to_toml().contains("classes = 11"));
    assert_eq!(parse(&c.to_toml()).unwrap(), c);
    // The other tasks write neither key.
    let g = parse("[data]\ntask = \"dvs-gesture\"\ndir = \"d\"\n").unwrap().to_toml();
    assert!(!g.contains("sensor") && !g.contains("classes"), "{g}");
}

#[test]
fn the_events_task_refuses_a_missing_or_wrong_sensor_and_keys_of_other_tasks() {
    let err = |text: &str| Experiment::parse(text, "x.toml", "x", &[]).unwrap_err().to_string();
    let events = "[data]\ntask = \"events\"\ndir = \"d\"\n";
    let sensor_what = "x.toml: data.sensor: expected [W, H]: the sensor's width and height, integers from 1 to 65535";
    let cases = [
        ("[data]\ntask = \"events\"\nsensor = [34, 34]\n".to_string(), "x.toml: data.dir: missing; events needs the directory holding train/<class>/".to_string()),
        (events.to_string(), "x.toml: data.sensor: missing; events needs [W, H]".to_string()),
        (format!("{events}sensor = [34]\n"), format!("{sensor_what}, found [34]")),
        (format!("{events}sensor = [0, 34]\n"), format!("{sensor_what}, found [0, 34]")),
        (format!("{events}sensor = [65536, 2]\n"), format!("{sensor_what}, found [65536, 2]")),
        (format!("{events}sensor = \"34x34\"\n"), format!("{sensor_what}, found \"34x34\"")),
        (format!("{events}sensor = [34, 34.0]\n"), format!("{sensor_what}, found [34, 34.0]")),
        (format!("{events}sensor = [34, 20]\nclasses = 1\n"), "x.toml: data.classes: expected an integer ≥ 2, found 1".to_string()),
        (
            format!("{events}sensor = [34, 20]\ndownsample = 35\n"),
            "x.toml: data.downsample: expected an integer from 1 to 34 (the 34×20 sensor of events)".to_string(),
        ),
        (format!("{events}sensor = [34, 20]\ncache_dir = \"c\"\n"), "x.toml: data.cache_dir: applies to nmnist-synth only".to_string()),
        (
            "[data]\ntask = \"nmnist-synth\"\nsensor = [34, 34]\n".to_string(),
            "x.toml: data.sensor: applies to data.task = \"events\" only; nmnist-synth has a 34×34 sensor and 10 classes".to_string(),
        ),
        ("[data]\ntask = \"smnist\"\nclasses = 10\n".to_string(), "x.toml: data.classes: applies to data.task = \"events\" only".to_string()),
    ];
    for (text, want) in cases {
        let got = err(&text);
        assert!(got.starts_with(&want), "{text:?}:\n got  {got}\n want {want}…");
    }
}

#[test]
fn conv_cells_parse_count_the_authors_network_and_round_trip() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/dvs-gesture.toml");
    let exp = Experiment::load(&path, &[]).unwrap();
    let net = exp.conv_net().expect("the file has conv cells");
    assert_eq!(net.param_count(), 14_116_051, "the authors' logged count");
    assert_eq!((net.in_channels, net.height, net.width, net.steps), (2, 128, 128, 20));
    // The resolved TOML reads back to the same experiment.
    let text = toml::to_string(&exp.to_table()).unwrap();
    let again = Experiment::parse(&text, "config.toml", "x", &[]).unwrap();
    assert_eq!(again.model, exp.model);
    // Without cells the keys are not written, and the network is dense.
    let dense = Experiment::parse("[data]\ntask = \"nmnist-synth\"\n", "x.toml", "x", &[]).unwrap();
    assert!(dense.conv_net().is_none());
    assert!(!toml::to_string(&dense.to_table()).unwrap().contains("conv_"));
    // Kernels default to 3; down-sampling shrinks the frames the cells read.
    let small = Experiment::parse(
        "[data]\ntask = \"nmnist-synth\"\ndownsample = 2\n[model]\nconv_channels = [4, 8]\nhidden = [16]\n",
        "x.toml",
        "x",
        &[],
    )
    .unwrap();
    let net = small.conv_net().unwrap();
    assert_eq!((net.height, net.width, net.cells[1].kernel, net.flat_features()), (17, 17, 3, 8 * 4 * 4));
}

#[test]
fn conv_keys_are_refused_with_file_key_and_expectation() {
    let err = |text: &str| Experiment::parse(text, "x.toml", "x", &[]).unwrap_err().to_string();
    let events = "[data]\ntask = \"nmnist-synth\"\n[model]\nhidden = [16]\n";
    let cases = [
        (
            "[data]\ntask = \"smnist\"\n[model]\nconv_channels = [4]\n".to_string(),
            "x.toml: model.conv_channels: convolutional cells read frames: they need an event task",
        ),
        (
            format!("{events}conv_channels = [4, 8]\nconv_kernels = [3]\n"),
            "x.toml: model.conv_kernels: expected 2 odd integers",
        ),
        (
            format!("{events}conv_channels = [4]\nconv_kernels = [4]\n"),
            "x.toml: model.conv_kernels: expected 1 odd integers",
        ),
        (format!("{events}dropout = 0.1\n"), "x.toml: model.dropout: applies to convolutional cells only"),
        (
            format!("{events}conv_channels = [4]\ndropout = 1.0\n"),
            "x.toml: model.dropout: expected a number in [0, 1), found 1.0",
        ),
        (format!("{events}conv_channels = [0]\n"), "x.toml: model.conv_channels: expected an array of integers ≥ 1"),
        (
            "[data]\ntask = \"nmnist-synth\"\n[model]\nconv_channels = [4]\nhidden = [16, 8]\n".to_string(),
            "x.toml: model.hidden: with convolutional cells, hidden is the one dense LTC layer",
        ),
        (format!("{events}conv_channels = [4, 4, 4, 4, 4, 4]\n"), "x.toml: model.conv_channels:"),
        (
            format!("{events}conv_channels = [4]\nneuron = \"alif\"\n"),
            "x.toml: model.neuron: with convolutional cells (model.conv_channels) the network has LTC neurons",
        ),
        (
            format!("{events}conv_channels = [4]\nbatch_norm = true\n"),
            "x.toml: model.batch_norm: with convolutional cells",
        ),
        (
            format!("{events}conv_channels = [4]\nthreshold = \"fixed\"\n"),
            "x.toml: model.threshold: with convolutional",
        ),
    ];
    for (text, want) in cases {
        let got = err(&text);
        assert!(got.starts_with(want), "{text}\ngot:  {got}\nwant: {want}…");
    }
}
