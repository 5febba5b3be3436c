//! `fptt train --dry-run`: what an experiment would build, from its shapes alone, without opening
//! the GPU or reading the data: the network layer by layer with its parameters, the learning rule,
//! and the GPU memory at the experiment's batch. For dense networks the memory is exactly what the
//! engine allocates (the size check's own figures, `learn::engine_buffers`); for convolutional
//! networks, which the engine does not run yet, it is the estimate of `model::conv`.

use crate::learn::engine_buffers;
use crate::model::conv::{ConvNetSpec, MemoryRule};
use crate::model::ParamLayout;
use crate::settings::LearningRule;

use super::experiment::Experiment;
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
        "GPU memory at batch {batch}, estimated from the shapes (docs/method.md §9; the training engine does not run convolutional cells yet):\n"
    ));
    let rules: Vec<(String, MemoryRule)> = match exp.train.rule {
        LearningRule::Fptt { chunk } => vec![
            (rule_text(LearningRule::Fptt { chunk }, net.steps), MemoryRule::Fptt { chunk }),
            (rule_text(LearningRule::Bptt, net.steps), MemoryRule::Bptt),
        ],
        rule => vec![(rule_text(rule, net.steps), MemoryRule::Bptt)],
    };
    for (name, rule) in rules {
        let m = net.memory(batch, rule);
        out.push_str(&format!("  {name}: {}\n", mib(m.total as u128)));
        for (part, bytes) in &m.parts {
            out.push_str(&format!("    {:<72} {}\n", part, mib(*bytes as u128)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(14_116_051), "14,116,051");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(0), "0");
    }
}
