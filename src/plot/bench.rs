//! Figures of `fptt bench`'s CSVs: GPU time per kernel (`FILE-kernels.csv`, also a training run's
//! `kernels.csv`), time per step and achieved GFLOP/s against the hidden size with the PyTorch
//! peer and the measured ceilings (`FILE.csv`, `benchmarks/pytorch_reference.py`'s CSV), and GPU
//! memory against the sequence length per learning rule (`fptt bench memory`).

use std::path::{Path, PathBuf};

use super::{adapters_of, default_out, format_number, Bar, BarChart, Figure, HLine, LinePanel, Panel, PlotError};
use super::{Series, Stroke, Table};

fn title(custom: Option<&str>, default: &str, adapters: &str) -> String {
    let head = custom.unwrap_or(default);
    if adapters.is_empty() {
        head.to_string()
    } else {
        format!("{head}, on {adapters}")
    }
}

/// "N=256, B=64" (", 2 layers" when deeper).
fn shape_label(hidden: f64, layers: Option<f64>, batch: f64) -> String {
    let mut s = format!("N={hidden}, B={batch}");
    if let Some(l) = layers.filter(|l| *l != 1.0) {
        s.push_str(&format!(", {l} layers"));
    }
    s
}

/// GPU time per kernel as its share of the step; one bar per kernel for one shape, one stacked
/// bar per shape (`hidden`, `layers`, `batch` columns) when the file holds several.
pub fn plot_kernels(file: &Path, out: Option<&Path>, custom_title: Option<&str>) -> Result<PathBuf, PlotError> {
    let t = Table::read(file)?;
    let (c_kernel, c_share) = (t.col("kernel")?, t.col("share")?);
    let shape_cols = match (t.col("hidden"), t.col("batch")) {
        (Ok(h), Ok(b)) => Some((h, t.col("layers").ok(), b)),
        _ => None,
    };
    let mut shapes: Vec<String> = Vec::new();
    let mut kernels: Vec<(String, f64)> = Vec::new();
    let mut cells: Vec<(usize, usize, f64)> = Vec::new();
    for r in 0..t.rows.len() {
        let shape = match shape_cols {
            Some((h, l, b)) => {
                let layers = match l {
                    Some(l) => Some(t.num(r, l)?),
                    None => None,
                };
                shape_label(t.num(r, h)?, layers, t.num(r, b)?)
            }
            None => String::new(),
        };
        let s = shapes.iter().position(|x| *x == shape).unwrap_or_else(|| {
            shapes.push(shape);
            shapes.len() - 1
        });
        let share = 100.0 * t.num(r, c_share)?;
        let name = t.text(r, c_kernel).to_string();
        let k = match kernels.iter().position(|(n, _)| *n == name) {
            Some(k) => k,
            None => {
                kernels.push((name, 0.0));
                kernels.len() - 1
            }
        };
        kernels[k].1 += share;
        cells.push((s, k, share));
    }
    // Busiest kernels first (over all shapes), the same colour for a kernel everywhere.
    let mut order: Vec<usize> = (0..kernels.len()).collect();
    order.sort_by(|a, b| kernels[*b].1.total_cmp(&kernels[*a].1));
    let rank = |k: usize| order.iter().position(|o| *o == k).unwrap_or(0);
    let mut chart = BarChart { x_label: "share of the step's GPU time (%)".into(), ..Default::default() };
    if shapes.len() == 1 {
        chart.title = if shapes[0].is_empty() { "per kernel".into() } else { shapes[0].clone() };
        chart.rows = order.iter().map(|k| kernels[*k].0.clone()).collect();
        for (_, k, share) in &cells {
            chart.bars.push(Bar { row: rank(*k), start: 0.0, end: *share, color: 0 });
        }
    } else {
        chart.title = "one bar per shape (N hidden neurons, batch B), kernels stacked".into();
        chart.rows = shapes.clone();
        let mut filled = vec![0.0; shapes.len()];
        let mut sorted = cells.clone();
        sorted.sort_by_key(|(s, k, _)| (*s, rank(*k)));
        for (s, k, share) in sorted {
            chart.bars.push(Bar { row: s, start: filled[s], end: filled[s] + share, color: rank(k) });
            filled[s] += share;
        }
        chart.legend = order.iter().enumerate().map(|(i, k)| (kernels[*k].0.clone(), i)).collect();
    }
    let rows = chart.rows.len() as u32;
    let figure = Figure {
        title: title(custom_title, "GPU time per kernel", &adapters_of(&t)),
        panels: vec![Panel::Bars(chart)],
        columns: 1,
        panel_size: (1000, 130 + 30 * rows.max(4)),
    };
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| default_out(file));
    figure.render(&out)?;
    Ok(out)
}

/// Time per step and achieved GFLOP/s against the hidden size, one line per batch size (and layer
/// count), the peer dashed, the measured matrix-product ceilings as horizontal lines.
pub fn plot_bench(
    file: &Path,
    peer: Option<&Path>,
    out: Option<&Path>,
    custom_title: Option<&str>,
) -> Result<PathBuf, PlotError> {
    let t = Table::read(file)?;
    let (c_h, c_b, c_ms) = (t.col("hidden")?, t.col("batch")?, t.col("ms_per_step")?);
    let (c_rate, c_work, c_ceiling) =
        (t.col("gflop_per_s")?, t.col("gflop_per_step")?, t.col("matmul_ceiling_gflop_per_s")?);
    let c_l = t.col("layers").ok();
    let layers = |t: &Table, c: Option<usize>, r: usize| -> Result<f64, PlotError> {
        match c {
            Some(c) => t.num(r, c),
            None => Ok(1.0),
        }
    };
    let mut deep = false;
    for r in 0..t.rows.len() {
        deep |= layers(&t, c_l, r)? != 1.0;
    }
    let key_label = |l: f64, b: f64| {
        if deep {
            format!("B={b}, {l} layer{}", if l == 1.0 { "" } else { "s" })
        } else {
            format!("B={b}")
        }
    };

    // (layers, batch) → colour, in order of appearance; points sorted by hidden size.
    let mut keys: Vec<(f64, f64)> = Vec::new();
    let mut time: Vec<Series> = Vec::new();
    let mut rate: Vec<Series> = Vec::new();
    let mut work: Vec<((f64, f64, f64), f64)> = Vec::new();
    let mut ceilings: Vec<f64> = Vec::new();
    let series_for =
        |keys: &mut Vec<(f64, f64)>, list: &mut Vec<Series>, key: (f64, f64), label: String, dashed: bool| {
            let color = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                keys.push(key);
                keys.len() - 1
            });
            match list.iter().position(|s| s.color == color) {
                Some(i) => i,
                None => {
                    list.push(Series {
                        label,
                        points: Vec::new(),
                        band: Vec::new(),
                        stroke: Stroke::dashed_if(dashed),
                        color,
                        markers: true,
                        hide_label: false,
                    });
                    list.len() - 1
                }
            }
        };
    for r in 0..t.rows.len() {
        let (h, l, b) = (t.num(r, c_h)?, layers(&t, c_l, r)?, t.num(r, c_b)?);
        let label = key_label(l, b);
        let i = series_for(&mut keys, &mut time, (l, b), label.clone(), false);
        time[i].points.push((h, t.num(r, c_ms)?));
        let i = series_for(&mut keys, &mut rate, (l, b), label, false);
        rate[i].points.push((h, t.num(r, c_rate)?));
        work.push(((h, l, b), t.num(r, c_work)?));
        if let Some(c) = t.opt_num(r, c_ceiling)? {
            ceilings.push(c);
        }
    }
    let mut hlines = Vec::new();
    if let Some(c) = median(&mut ceilings) {
        hlines.push(HLine {
            label: format!("fptt matrix-product ceiling ({} GFLOP/s)", format_number(c)),
            y: c,
            color: 0,
        });
    }

    let mut head = "fptt bench: one FPTT training step".to_string();
    let mut adapters = adapters_of(&t);
    if let Some(peer) = peer {
        let p = Table::read(peer)?;
        let (p_h, p_b, p_ms) = (p.col("hidden")?, p.col("batch")?, p.col("ms_per_step")?);
        let p_l = p.col("layers").ok();
        let (mut peer_time, mut peer_rate) = (Vec::new(), Vec::new());
        let mut vendor = Vec::new();
        for r in 0..p.rows.len() {
            let (h, l, b) = (p.num(r, p_h)?, layers(&p, p_l, r)?, p.num(r, p_b)?);
            let ms = p.num(r, p_ms)?;
            let label = format!("PyTorch {}", key_label(l, b));
            // The peer shares its batch's colour; the title says it is the dashed line.
            let i = series_for(&mut keys, &mut peer_time, (l, b), label.clone(), true);
            peer_time[i].points.push((h, ms));
            // The peer runs the same network: the engine's count of the step's work, per the peer's time.
            if let Some((_, gflop)) = work.iter().find(|(k, _)| *k == (h, l, b)) {
                let i = series_for(&mut keys, &mut peer_rate, (l, b), label, true);
                peer_rate[i].points.push((h, gflop / (ms / 1e3)));
            }
            if let Ok(c) = p.col("vendor_matmul_gflop_per_s") {
                if let Some(v) = p.opt_num(r, c)? {
                    vendor.push(v);
                }
            }
        }
        for s in peer_time.iter_mut().chain(peer_rate.iter_mut()) {
            s.hide_label = time.iter().any(|t| t.color == s.color);
        }
        time.extend(peer_time);
        rate.extend(peer_rate);
        if let Some(v) = median(&mut vendor) {
            hlines.push(HLine {
                label: format!("vendor f32 matrix product, peer ({} GFLOP/s)", format_number(v)),
                y: v,
                color: 1,
            });
        }
        head.push_str(" (solid) against the PyTorch peer (dashed)");
        if let Ok(c) = p.col("device") {
            let devices = p.distinct(c).join(", ");
            adapters = format!("{adapters}; PyTorch on {devices}");
        }
    }
    for s in time.iter_mut().chain(rate.iter_mut()) {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let x_label = "hidden neurons N".to_string();
    let panels = vec![
        Panel::Lines(LinePanel {
            title: "time per step".into(),
            x_label: x_label.clone(),
            y_label: "ms per step".into(),
            log_x: true,
            log_y: true,
            series: time,
            hlines: Vec::new(),
        }),
        Panel::Lines(LinePanel {
            title: "achieved rate of the step's matrix work".into(),
            x_label,
            y_label: "GFLOP/s".into(),
            log_x: true,
            log_y: true,
            series: rate,
            hlines,
        }),
    ];
    let figure = Figure { title: title(custom_title, &head, &adapters), panels, columns: 2, panel_size: (640, 500) };
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| default_out(file));
    figure.render(&out)?;
    Ok(out)
}

fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied()
}

/// GPU memory against the sequence length T, one line per learning rule (and neuron, and
/// network when the file holds several). Measured rows (`gpu_bytes`) are drawn solid and dashed;
/// rows with only an estimate from the shapes (`estimated_bytes`, the conv rows of `fptt bench
/// memory --experiment`) dotted, labelled as estimates; rows with neither (a shape the adapter
/// could not hold, its note says why) are left out.
pub fn plot_memory(file: &Path, out: Option<&Path>, custom_title: Option<&str>) -> Result<PathBuf, PlotError> {
    let t = Table::read(file)?;
    let (c_rule, c_chunk, c_steps, c_bytes) = (t.col("rule")?, t.col("chunk")?, t.col("steps")?, t.col("gpu_bytes")?);
    let c_neuron = t.col("neuron").ok();
    let c_learning = t.col("learning_bytes").ok();
    // Files written before these columns existed have neither.
    let c_estimated = t.col("estimated_bytes").ok();
    let c_network = t.col("network").ok();
    let neurons = c_neuron.map(|c| t.distinct(c)).unwrap_or_default();
    let networks = c_network.map(|c| t.distinct(c)).unwrap_or_default();
    let (mut any_measured, mut any_estimated) = (false, false);
    let mut series: Vec<Series> = Vec::new();
    for r in 0..t.rows.len() {
        let (chunk, steps) = (t.num(r, c_chunk)?, t.num(r, c_steps)?);
        let mut label = match t.text(r, c_rule) {
            "fptt" if chunk <= 1.0 => "one-step FPTT".to_string(),
            "fptt" => format!("FPTT, {} chunks", format_number(steps / chunk)),
            "bptt" => "BPTT".to_string(),
            "eprop" => "e-prop".to_string(),
            other => other.to_string(),
        };
        if neurons.len() > 1 {
            if let Some(c) = c_neuron {
                label = format!("{label}, {}", t.text(r, c));
            }
        }
        if networks.len() > 1 {
            if let Some(c) = c_network {
                label = format!("{}: {label}", t.text(r, c));
            }
        }
        let opt = |c: Option<usize>| -> Result<Option<f64>, PlotError> {
            match c {
                Some(c) => t.opt_num(r, c),
                None => Ok(None),
            }
        };
        let (measured, learning, estimated) = (t.opt_num(r, c_bytes)?, opt(c_learning)?, opt(c_estimated)?);
        // Solid: what the rule keeps (`learning_bytes`) where the file has it; dashed: every buffer.
        let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
        let mut add = |label: &str, stroke: Stroke, y: f64| {
            let i = match series.iter().position(|s| s.label == label && s.stroke == stroke) {
                Some(i) => i,
                None => {
                    let mut labels: Vec<&str> = Vec::new();
                    for s in &series {
                        if !labels.contains(&s.label.as_str()) {
                            labels.push(&s.label);
                        }
                    }
                    let color = labels.iter().position(|l| *l == label).unwrap_or(labels.len());
                    series.push(Series {
                        label: label.to_string(),
                        points: Vec::new(),
                        band: Vec::new(),
                        stroke,
                        color,
                        markers: true,
                        hide_label: stroke == Stroke::Dashed && c_learning.is_some(),
                    });
                    series.len() - 1
                }
            };
            series[i].points.push((steps, y));
        };
        if let Some(gpu) = measured {
            any_measured = true;
            if let Some(kept) = learning {
                add(&label, Stroke::Solid, mib(kept));
            }
            add(&label, Stroke::dashed_if(c_learning.is_some()), mib(gpu));
        } else if let Some(estimate) = estimated {
            any_estimated = true;
            add(&format!("{label}, estimated"), Stroke::Dotted, mib(estimate));
        }
    }
    if series.is_empty() {
        return Err(PlotError::NothingToPlot {
            path: file.to_path_buf(),
            message: "no row has gpu_bytes or estimated_bytes (rows the adapter could not hold say why in `note`)"
                .into(),
        });
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut what = Vec::new();
    for (col, name) in [("hidden", "N"), ("batch", "B")] {
        if let Ok(c) = t.col(col) {
            let values = t.distinct(c);
            if values.len() == 1 {
                what.push(format!("{name}={}", values[0]));
            }
        }
    }
    let mut head = "GPU memory against sequence length".to_string();
    if neurons.len() == 1 {
        what.insert(0, format!("{} neurons", neurons[0]));
    }
    if networks.len() == 1 {
        what.insert(0, format!("{} network", networks[0]));
    }
    if !what.is_empty() {
        head.push_str(&format!(" ({})", what.join(", ")));
    }
    let mut legend = Vec::new();
    if any_measured {
        legend.push(if c_learning.is_some() {
            "solid: kept by the learning rule (learning_bytes); dashed: every GPU buffer (gpu_bytes)"
        } else {
            "every GPU buffer (gpu_bytes)"
        });
    }
    if any_estimated {
        legend.push("dotted: estimated from the shapes (estimated_bytes), nothing allocated");
    }
    let panel = LinePanel {
        title: legend.join("; "),
        x_label: "sequence length T (steps)".into(),
        y_label: "GPU memory (MiB)".into(),
        log_x: true,
        log_y: true,
        series,
        hlines: Vec::new(),
    };
    let figure = Figure {
        title: title(custom_title, &head, &adapters_of(&t)),
        panels: vec![Panel::Lines(panel)],
        columns: 1,
        panel_size: (860, 520),
    };
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| default_out(file));
    figure.render(&out)?;
    Ok(out)
}
