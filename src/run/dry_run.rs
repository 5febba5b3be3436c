//! `fptt train --dry-run`: what an experiment would build, from its shapes alone, without opening
//! the GPU or reading the data: the network layer by layer with its parameters, the learning rule,
//! and the GPU memory at the experiment's batch. For dense networks the memory is exactly what the
//! engine allocates (the size check's own figures, `learn::engine_buffers`); for convolutional
//! networks, the engine's planned buffers beside the estimate of `model::conv` and its parts.
//!
//! The same estimates per number of frames are `fptt bench memory --experiment FILE`'s rows:
//! [`conv_memory_sweep`] reads the file for `bench`, which reads no experiment files itself.

use std::path::{Path, PathBuf};

use crate::bench::{conv_memory_default_steps, estimate_parts, ConvMemorySweep};
use crate::gpu::DeviceChoice;
use crate::learn::engine_buffers;
use crate::model::conv::{ConvNetSpec, MemoryRule};
use crate::model::ParamLayout;
use crate::settings::LearningRule;

use super::experiment::{Experiment, Task, ASSUMED_EVENT_CLASSES};
use super::RunError;

fn mib(bytes: u128) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Thousands separated by commas (14,116,051), as parameter counts are quoted.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rule_text(rule: LearningRule, steps: usize) -> String {
    match rule {
        LearningRule::Fptt { chunk: 1 } => "one-step FPTT (an update after every step)".into(),
        LearningRule::Fptt { chunk } => {
            format!("FPTT in chunks of {chunk} steps ({} updates per sequence)", steps.div_ceil(chunk))
        }
        LearningRule::Bptt => format!("BPTT through all {steps} steps"),
        LearningRule::Eprop(_) => "e-prop".into(),
    }
}

/// The report `fptt train --dry-run` prints for `exp`.
pub fn describe(exp: &Experiment) -> Result<String, RunError> {
    let t = &exp.train;
    let mut out = format!(
        "experiment `{}`: task {}, T = {}, batch {}, {}, {:?} lr {}\n",
        exp.name,
        exp.data.task.name(),
        exp.data.steps,
        t.batch,
        rule_text(t.rule, exp.data.steps),
        t.optimizer,
        t.lr
    );
    match exp.conv_net() {
        Some(net) => describe_conv(&net, exp, &mut out),
        None => describe_dense(exp, &mut out)?,
    }
    if exp.data.task == Task::Events && exp.data.classes.is_none() {
        // The folders are not listed here (a dry run reads no data): say what was assumed.
        out.push_str(&format!(
            "note: data.classes is not given, so the readout is shown for {ASSUMED_EVENT_CLASSES} classes; \
             training gives it one output per class folder of {} (set data.classes for the exact network)\n",
            exp.data.dir.join("train").display()
        ));
    }
    Ok(out)
}

fn describe_dense(exp: &Experiment, out: &mut String) -> Result<(), RunError> {
    let cfg = exp.model_config();
    let layout = ParamLayout::new(&cfg);
    let m = &exp.model;
    let mut traits = vec![if cfg.adaptive() { "adaptive threshold" } else { "fixed threshold" }];
    traits.push(if m.fused_recurrent { "one fused map" } else { "separate input and recurrent maps" });
    if m.batch_norm {
        traits.push("per-step batch norm");
    }
    let plural = if cfg.inputs == 1 { "" } else { "s" };
    out.push_str(&format!("network: {} input{plural} per step\n", cfg.inputs));
    for (k, &n) in cfg.hidden.iter().enumerate() {
        let prefix = format!("layer{}_", k + 1);
        let params: usize = layout.slots.iter().filter(|s| s.name.starts_with(&prefix)).map(|s| s.len()).sum();
        out.push_str(&format!(
            "  hidden {}: {} {} ({}): {} parameters\n",
            k + 1,
            m.neuron.name().to_uppercase(),
            n,
            traits.join(", "),
            grouped(params as u64)
        ));
    }
    let readout: usize = layout.slots.iter().filter(|s| s.name.starts_with("layer3_")).map(|s| s.len()).sum();
    out.push_str(&format!("  readout: LTC {}: {} parameters\n", cfg.outputs, grouped(readout as u64)));
    out.push_str(&format!(
        "parameters: {} ({} trainable)\n",
        grouped(layout.total_len as u64),
        grouped(layout.trainable_len as u64)
    ));
    let buffers = engine_buffers(&cfg, &exp.settings(), exp.train.batch, 1)?;
    let total: u128 = buffers.iter().map(|(_, n)| 4 * n).sum();
    out.push_str(&format!(
        "GPU memory at batch {}: {} in storage buffers (what fptt train allocates, besides a few KiB of dispatch arguments)\n",
        exp.train.batch,
        mib(total)
    ));
    for (name, n) in buffers {
        out.push_str(&format!("  {:<28} {}\n", name, mib(4 * n)));
    }
    Ok(())
}

fn describe_conv(net: &ConvNetSpec, exp: &Experiment, out: &mut String) {
    let tensors = net.tensors();
    let sum =
        |prefix: &str| -> u64 { tensors.iter().filter(|t| t.name.starts_with(prefix)).map(|t| t.len() as u64).sum() };
    out.push_str(&format!(
        "network: frames of {}×{}×{} (polarity × rows × columns), one per step\n",
        net.in_channels, net.height, net.width
    ));
    for (k, cell) in net.cells.iter().enumerate() {
        let (ci, _, _) = net.cell_input(k);
        let (c, h, w) = net.cell_output(k);
        let names = crate::model::conv::ConvCellNames::cell(k);
        let prefix = names.x.split('.').next().unwrap_or_default().to_string();
        out.push_str(&format!(
            "  conv cell {}: {ci}→{} {k2}×{k2}{} → {c}×{h}×{w}: {} parameters\n",
            k + 1,
            cell.out_channels,
            if net.pool { ", 2×2 max-pool" } else { "" },
            grouped(sum(&format!("{prefix}."))),
            k2 = cell.kernel,
        ));
    }
    if net.dropout > 0.0 {
        out.push_str(&format!("  dropout {} (training only)\n", net.dropout));
    }
    out.push_str(&format!("  flatten: {} features\n", net.flat_features()));
    out.push_str(&format!("  dense LTC {}: {} parameters\n", net.hidden, grouped(sum("snn_rec."))));
    let readout: u64 = sum("layer3_") + sum("tau_m_o");
    out.push_str(&format!("  readout: LTC {}: {} parameters\n", net.classes, grouped(readout)));
    out.push_str(&format!("parameters: {}\n", grouped(net.param_count())));
    let batch = exp.train.batch;
    out.push_str(&format!(
        "GPU memory at batch {batch}: the storage buffers fptt train allocates (planned exactly, nothing is \
         allocated), and the estimate from the shapes of docs/method.md §9 with its parts:\n"
    ));
    let rules: Vec<LearningRule> = match exp.train.rule {
        LearningRule::Bptt => vec![LearningRule::Bptt],
        rule => vec![rule, LearningRule::Bptt],
    };
    let cfg = crate::model::ModelConfig::convolutional(net.clone());
    for rule in rules {
        let estimate_rule = match rule {
            LearningRule::Fptt { chunk } => MemoryRule::Fptt { chunk },
            _ => MemoryRule::Bptt,
        };
        let settings = crate::settings::TrainingSettings { rule, ..exp.settings() };
        let planned = match engine_buffers(&cfg, &settings, batch, 1) {
            Ok(buffers) => mib(buffers.iter().map(|(_, n)| 4 * n).sum()),
            Err(e) => format!("not planned: {e}"),
        };
        let m = net.memory(batch, estimate_rule);
        out.push_str(&format!("  {}: {planned} (estimate {})\n", rule_text(rule, net.steps), mib(m.total as u128)));
        out.push_str(&estimate_parts(&m, "    "));
    }
}

/// `fptt bench network --experiment FILE`'s settings: the experiment's network, rule and
/// optimizer at `batch` (the file's `train.batch` if `None`). A missing or invalid file is refused
/// naming it; the data are not read (the bench trains on synthetic frames of the same shapes).
pub fn network_bench(
    path: &Path,
    batch: Option<usize>,
    reps: usize,
    profile: bool,
    device: DeviceChoice,
    out: PathBuf,
) -> Result<crate::bench::NetworkBench, RunError> {
    let exp = Experiment::load(path, &[])?;
    let cfg = exp.model_config();
    let params = ParamLayout::new(&cfg).total_len as u64;
    let shape = match exp.conv_net() {
        Some(net) => format!(
            "{} conv cells on {}×{}×{} frames, dense LTC {}",
            net.cells.len(),
            net.in_channels,
            net.height,
            net.width,
            net.hidden
        ),
        None => format!("{} inputs per step, hidden {:?}", cfg.inputs, cfg.hidden),
    };
    let heading = format!(
        "{} ({}): {shape}, {} outputs, {} parameters; synthetic data of its shapes",
        exp.name,
        path.display(),
        cfg.outputs,
        grouped(params)
    );
    Ok(crate::bench::NetworkBench {
        network: exp.name.clone(),
        heading,
        batch: batch.unwrap_or(exp.train.batch),
        settings: exp.settings(),
        cfg,
        reps,
        profile,
        device,
        out,
    })
}

/// `fptt bench memory --experiment FILE`'s sweep: the experiment's conv network at `batch` (the
/// file's `train.batch` if `None`) and at each of `steps` frames (the file's own frames and 100 if
/// `None`). A missing or invalid file, or one without conv cells, is refused naming it; no GPU.
pub fn conv_memory_sweep(
    path: &Path,
    batch: Option<usize>,
    steps: Option<Vec<usize>>,
    device: DeviceChoice,
    out: PathBuf,
) -> Result<ConvMemorySweep, RunError> {
    let exp = Experiment::load(path, &[])?;
    let Some(spec) = exp.conv_net() else {
        return Err(RunError::Setup(format!(
            "{}: not a convolutional experiment (no model.conv_channels): `fptt bench memory --experiment` \
             measures conv networks; leave out --experiment to measure the dense adding-task \
             network (--hidden, --neuron)",
            path.display()
        )));
    };
    let heading = format!(
        "{} ({}): {} conv cells on {}×{}×{} frames, dense LTC {}, {} classes, {} parameters",
        exp.name,
        path.display(),
        spec.cells.len(),
        spec.in_channels,
        spec.height,
        spec.width,
        spec.hidden,
        spec.classes,
        grouped(spec.param_count())
    );
    Ok(ConvMemorySweep {
        network: exp.name.clone(),
        heading,
        batch: batch.unwrap_or(exp.train.batch),
        steps: steps.unwrap_or_else(|| conv_memory_default_steps(spec.steps)),
        spec,
        device,
        out,
        measure: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(file: &str, batch: Option<usize>, steps: Option<Vec<usize>>) -> Result<ConvMemorySweep, RunError> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        conv_memory_sweep(&path, batch, steps, DeviceChoice::Auto, "unused.csv".into())
    }

    /// `fptt bench memory --experiment experiments/dvs-gesture.toml`: the file's batch 16 and its
    /// 20 frames and 100; one-step FPTT and BPTT at each, every estimate `ConvNetSpec::memory`'s
    /// own. No adapter: nothing here needs a GPU.
    #[test]
    fn bench_memory_of_the_dvs_file_is_its_networks_estimate_at_20_and_100_frames() {
        use crate::bench::{conv_memory_rows, MemoryRow};
        let s = sweep("experiments/dvs-gesture.toml", None, None).unwrap();
        assert_eq!((s.network.as_str(), s.batch, s.steps.clone()), ("dvs-gesture", 16, vec![20, 100]));
        let spec = ConvNetSpec::dvs_gesture();
        assert_eq!(s.spec, spec, "the file is the authors' network");
        assert!(s.heading.contains("14,116,051 parameters"), "{}", s.heading);
        let rows = conv_memory_rows(&s.network, &s.spec, s.batch, &s.steps);
        let find =
            |rule: &str, t: usize| -> &MemoryRow { rows.iter().find(|r| r.rule == rule && r.steps == t).unwrap() };
        for t in [20, 100] {
            let at_t = ConvNetSpec { steps: t, ..spec.clone() };
            assert_eq!(find("fptt", t).estimate, Some(at_t.memory(16, MemoryRule::Fptt { chunk: 1 })));
            assert_eq!(find("bptt", t).estimate, Some(at_t.memory(16, MemoryRule::Bptt)));
        }
        let total = |rule: &str, t: usize| find(rule, t).estimated_bytes().unwrap();
        // BPTT keeps every frame's state and tape; one-step FPTT only stores the longer sequence.
        assert!(total("bptt", 20) > 5 * total("fptt", 20));
        assert!(total("bptt", 100) > 4 * total("bptt", 20));
        let growth = total("fptt", 100) - total("fptt", 20);
        // 80 more frames and dropout masks (2048 features) of one sequence, and 80 more steps'
        // running statistics (mean and variance of three batch norms per cell channel), q
        // (11 × 11 per step), metrics (4) and step sizes (1).
        let channels: u64 = 64 + 128 + 128 + 256 + 256 + 512;
        let per_step = 16 * (2 * 128 * 128 + 2048) + 6 * channels + 11 * 11 + 4 + 1;
        assert_eq!(growth, 4 * 80 * per_step, "only per-step data");
        assert!((growth as f64) < 0.2 * total("fptt", 20) as f64, "one-step FPTT nearly flat in T");

        // --batch and --steps replace the file's.
        let s = sweep("experiments/dvs-gesture.toml", Some(4), Some(vec![7])).unwrap();
        assert_eq!((s.batch, s.steps), (4, vec![7]));
    }

    #[test]
    fn bench_memory_refuses_a_dense_or_missing_experiment_naming_the_file() {
        let dense = sweep("experiments/adding-quick.toml", None, None).unwrap_err().to_string();
        assert!(dense.contains("adding-quick.toml") && dense.contains("not a convolutional experiment"), "{dense}");
        let missing = sweep("experiments/no-such.toml", None, None).unwrap_err().to_string();
        assert!(missing.contains("no-such.toml") && missing.contains("cannot read"), "{missing}");
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(14_116_051), "14,116,051");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(0), "0");
    }
}
