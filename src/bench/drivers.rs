//! The `fptt bench` commands end to end: open the adapter, sweep, print each row of the table on
//! stdout and append it to the CSV (flushed per row, so an interrupted sweep keeps what it
//! measured). The command line only fills in [`GridSweep`], [`MemorySweep`], [`ConvMemorySweep`],
//! [`ConvSweep`] or [`PeerCheck`].

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::conv::{network_layers, time_layer, CONV_CSV_HEADER};
use super::{ceilings, conv_memory_row, export_peer_check, measure, measured_conv_memory, memory_row, PeerCheckError};
use super::{estimate_parts, CONV_ESTIMATE_NOTE, CONV_MEMORY_RULES};
use super::{CSV_HEADER, KERNELS_CSV_HEADER, MEMORY_CSV_HEADER};
use crate::gpu::{DeviceChoice, GpuContext, GpuError, KernelTable};
use crate::learn::EngineError;
use crate::model::conv::MemoryRule;
use crate::model::ConvNetSpec;
use crate::model::NeuronKind;
use crate::settings::LearningRule;

/// Why a bench command stopped. Each message names what it was doing (the file, the shape).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Arguments out of range.
    #[error("{0}")]
    Arguments(String),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    PeerCheck(#[from] PeerCheckError),
    #[error(transparent)]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("creating {}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("writing {}", path.display())]
    OpenCsv { path: PathBuf, source: csv::Error },
    /// One shape (or rule and length) of a sweep failed.
    #[error("{what}")]
    Row { what: String, source: EngineError },
}

pub(super) type Result<T> = std::result::Result<T, BenchError>;

/// `fptt bench`: throughput over a grid of shapes.
#[derive(Debug, Clone)]
pub struct GridSweep {
    pub hidden: Vec<usize>,
    pub batch: Vec<usize>,
    pub layers: Vec<usize>,
    /// Models stepped together in one set of dispatches.
    pub replicas: Vec<usize>,
    pub steps: usize,
    pub reps: usize,
    pub device: DeviceChoice,
    pub copy_mib: usize,
    pub matmul: usize,
    pub out: PathBuf,
    pub profile: bool,
}

/// `fptt bench memory`: GPU bytes per rule and sequence length.
#[derive(Debug, Clone)]
pub struct MemorySweep {
    pub hidden: usize,
    pub batch: usize,
    pub steps: Vec<usize>,
    pub chunks: usize,
    pub neuron: NeuronKind,
    pub device: DeviceChoice,
    pub out: PathBuf,
}

/// `fptt bench memory --experiment FILE`: the GPU bytes of a convolutional experiment's network
/// per rule (one-step FPTT, BPTT) and number of frames, estimated and (`measure`) measured. Filled
/// in from the experiment file by `run::dry_run::conv_memory_sweep` (this module reads no
/// experiment files).
#[derive(Debug, Clone)]
pub struct ConvMemorySweep {
    /// The experiment's name (the CSV's `network` column).
    pub network: String,
    /// The line printed above the table: the experiment file and its network.
    pub heading: String,
    pub spec: ConvNetSpec,
    pub batch: usize,
    /// Frames per sample T, each replacing the spec's own `steps`.
    pub steps: Vec<usize>,
    pub device: DeviceChoice,
    pub out: PathBuf,
    /// Build an engine per row to measure its bytes (where it fits); false: estimates only.
    pub measure: bool,
}

/// `fptt bench conv`: the convolution kernels alone on the DVS network's layer shapes.
#[derive(Debug, Clone)]
pub struct ConvSweep {
    /// 1-based cells of the DVS Gesture network.
    pub cells: Vec<usize>,
    pub batch: usize,
    pub reps: usize,
    pub device: DeviceChoice,
    pub out: PathBuf,
}

/// `fptt bench peer-check`: the files a peer implementation replays.
#[derive(Debug, Clone)]
pub struct PeerCheck {
    pub hidden: usize,
    pub batch: usize,
    pub steps: usize,
    pub device: DeviceChoice,
    pub out: PathBuf,
}

pub(super) fn open_adapter(device: DeviceChoice) -> Result<Rc<GpuContext>> {
    let ctx = Rc::new(GpuContext::new(device)?);
    println!("adapter: {} ({}, {})", ctx.adapter_name(), ctx.backend_name(), ctx.device_type_name());
    Ok(ctx)
}

/// A CSV writer at `path` (its directory created) with `header` written and flushed.
pub(super) fn create_csv(path: &Path, header: &[&str]) -> Result<csv::Writer<std::fs::File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::CreateDir { path: dir.to_path_buf(), source })?;
    }
    let mut csv = csv::Writer::from_path(path).map_err(|source| BenchError::OpenCsv { path: path.into(), source })?;
    csv.write_record(header)?;
    csv.flush()?;
    Ok(csv)
}

pub fn run_peer_check(args: &PeerCheck) -> Result<()> {
    if args.hidden == 0 || args.batch == 0 || args.steps == 0 {
        return Err(BenchError::Arguments("--hidden, --batch and --steps must all be at least 1".into()));
    }
    let ctx = open_adapter(args.device)?;
    export_peer_check(&ctx, args.hidden, args.batch, args.steps, &args.out)?;
    println!(
        "wrote {dir}/start.safetensors, data.safetensors, after.safetensors ({} FPTT steps, N = {}, B = {})",
        args.steps,
        args.hidden,
        args.batch,
        dir = args.out.display()
    );
    Ok(())
}

pub fn run_memory(args: &MemorySweep) -> Result<()> {
    if args.hidden == 0 || args.batch == 0 || args.chunks == 0 || args.steps.iter().any(|&t| t < 2) {
        return Err(BenchError::Arguments(
            "--hidden, --batch and --chunks must be at least 1, and every --steps at least 2".into(),
        ));
    }
    // The adapter first: a machine without one fails before any file is created.
    let ctx = Rc::new(GpuContext::new(args.device)?);
    let mut csv = create_csv(&args.out, &MEMORY_CSV_HEADER)?;
    println!("adapter: {} ({}, {})", ctx.adapter_name(), ctx.backend_name(), ctx.device_type_name());
    println!(
        "adding-task network, {} neurons, N = {}, B = {}; learning bytes exclude the sequence's own data",
        args.neuron.name(),
        args.hidden,
        args.batch
    );
    println!("{:>6} {:>6} {:>6} {:>14} {:>16}", "rule", "K", "T", "GPU MiB", "learning MiB");
    let mib = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.2}", b as f64 / (1 << 20) as f64));
    for &steps in &args.steps {
        let chunked = (steps / args.chunks).max(1);
        let mut rules =
            vec![LearningRule::Fptt { chunk: 1 }, LearningRule::Fptt { chunk: chunked }, LearningRule::Bptt];
        if args.neuron != NeuronKind::Ltc {
            rules.push(LearningRule::Eprop(Default::default()));
        }
        for rule in rules {
            let row = memory_row(&ctx, rule, args.neuron, args.hidden, args.batch, steps)
                .map_err(|source| BenchError::Row { what: format!("{rule:?} at T = {steps}"), source })?;
            println!(
                "{:>6} {:>6} {:>6} {:>14} {:>16} {}",
                row.rule,
                row.chunk,
                steps,
                mib(row.gpu_bytes),
                mib(row.learning_bytes),
                row.note
            );
            csv.write_record(row.csv_record(&ctx))?;
            csv.flush()?;
        }
    }
    println!("csv: {}", args.out.display());
    Ok(())
}

pub fn run_conv_memory(args: &ConvMemorySweep) -> Result<()> {
    if args.batch == 0 || args.steps.is_empty() || args.steps.contains(&0) {
        return Err(BenchError::Arguments("--batch and every --steps must be at least 1".into()));
    }
    // Nothing is allocated, but every bench CSV records its adapter.
    let ctx = open_adapter(args.device)?;
    let mut csv = create_csv(&args.out, &MEMORY_CSV_HEADER)?;
    println!("{}", args.heading);
    println!(
        "GPU bytes at B = {} estimated from the shapes (ConvNetSpec::memory, as `fptt train --dry-run`){}",
        args.batch,
        if args.measure {
            ", and measured on an engine built for each row where it fits this adapter and host"
        } else {
            "; nothing is allocated (--estimate-only)"
        }
    );
    println!("{:>6} {:>6} {:>6} {:>14} {:>10} {:>14}", "rule", "K", "T", "estimated MiB", "GiB", "measured MiB");
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let mut totals: Vec<(usize, MemoryRule, u64)> = Vec::new();
    for &t in &args.steps {
        let at_t = ConvNetSpec { steps: t, ..args.spec.clone() };
        for rule in CONV_MEMORY_RULES {
            let mut row = conv_memory_row(&args.network, &args.spec, args.batch, t, rule);
            if args.measure {
                match measured_conv_memory(&ctx, &at_t, args.batch, rule)
                    .map_err(|source| BenchError::Row { what: format!("{rule:?} at T = {t}"), source })?
                {
                    Ok(m) => row.set_measured(m),
                    Err(why) => row.note = format!("{CONV_ESTIMATE_NOTE}; not measured: {why}"),
                }
            }
            let total = row.estimated_bytes().unwrap_or(0);
            println!(
                "{:>6} {:>6} {:>6} {:>14.1} {:>10.2} {:>14}",
                row.rule,
                row.chunk,
                t,
                mib(total),
                gib(total),
                row.gpu_bytes.map_or("-".to_string(), |b| format!("{:.1}", mib(b)))
            );
            if let Some(estimate) = &row.estimate {
                print!("{}", estimate_parts(estimate, "         "));
            }
            totals.push((t, rule, total));
            csv.write_record(row.csv_record(&ctx))?;
            csv.flush()?;
        }
    }
    // The comparison issue #18 asks for: what BPTT keeps against one-step FPTT at each T.
    for &t in &args.steps {
        let at = |r: MemoryRule| totals.iter().find(|(s, rule, _)| *s == t && *rule == r).map(|x| x.2);
        if let (Some(fptt), Some(bptt)) = (at(MemoryRule::Fptt { chunk: 1 }), at(MemoryRule::Bptt)) {
            println!(
                "T = {t}: BPTT {:.2} GiB, one-step FPTT {:.2} GiB ({:.1}×)",
                gib(bptt),
                gib(fptt),
                bptt as f64 / fptt as f64
            );
        }
    }
    println!("csv: {}", args.out.display());
    Ok(())
}

pub fn run_grid(args: &GridSweep) -> Result<()> {
    if args.steps == 0
        || args.reps == 0
        || args.copy_mib == 0
        || args.matmul == 0
        || [&args.hidden, &args.batch, &args.layers, &args.replicas].iter().any(|v| v.contains(&0))
    {
        return Err(BenchError::Arguments(
            "--hidden, --batch, --layers, --replicas, --steps, --reps, --copy-mib and --matmul must all be at least 1"
                .into(),
        ));
    }
    let ctx = Rc::new(GpuContext::new(args.device)?);
    let mut csv = create_csv(&args.out, &CSV_HEADER)?;
    // FILE-kernels.csv next to FILE.csv.
    let kernels_path = args.out.with_file_name(format!(
        "{}-kernels.csv",
        args.out.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default()
    ));
    let mut kernels_csv = if args.profile {
        if !ctx.timestamps_inside_passes() {
            eprintln!("note: this adapter has no timestamp queries inside passes; kernels are not timed");
        }
        Some(create_csv(&kernels_path, &KERNELS_CSV_HEADER)?)
    } else {
        None
    };
    println!("adapter: {} ({}, {})", ctx.adapter_name(), ctx.backend_name(), ctx.device_type_name());
    let ceilings = ceilings(&ctx, args.copy_mib, args.matmul)?;
    println!(
        "ceilings: copy {:.2} GB/s ({} MiB), matrix product {:.3} GFLOP/s ({n}×{n}×{n})",
        ceilings.copy_gb_per_s,
        args.copy_mib,
        ceilings.matmul_gflop_per_s,
        n = ceilings.matmul_size
    );
    println!(
        "{:>7} {:>6} {:>6} {:>8} {:>12} {:>16} {:>10} {:>12} {:>10} {:>10} {:>8} {:>8}",
        "hidden",
        "layers",
        "batch",
        "replicas",
        "ms/step",
        "sample-steps/s",
        "dispatches",
        "GPU MiB",
        "GFLOP/s",
        "of matmul",
        "GB/s",
        "of copy"
    );
    for &layers in &args.layers {
        for &hidden in &args.hidden {
            for &batch in &args.batch {
                for &replicas in &args.replicas {
                    let row = measure(&ctx, hidden, layers, batch, replicas, args.steps, args.reps, args.profile)
                        .map_err(|source| BenchError::Row {
                            what: format!("hidden {hidden}, layers {layers}, batch {batch}, replicas {replicas}"),
                            source,
                        })?;
                    println!(
                        "{:>7} {:>6} {:>6} {:>8} {:>12.3} {:>16.0} {:>10} {:>12.1} {:>10.3} {:>9.0}% {:>8.2} {:>7.0}%",
                        hidden,
                        layers,
                        batch,
                        replicas,
                        row.ms_per_step,
                        row.sample_steps_per_s,
                        row.dispatches_per_step,
                        row.gpu_bytes as f64 / (1 << 20) as f64,
                        row.gflop_per_s,
                        100.0 * row.gflop_per_s / ceilings.matmul_gflop_per_s,
                        row.gb_per_s,
                        100.0 * row.gb_per_s / ceilings.copy_gb_per_s
                    );
                    csv.write_record(row.csv_record(&ctx, &ceilings))?;
                    csv.flush()?;
                    if let Some(kcsv) = kernels_csv.as_mut() {
                        for record in row.kernel_records(&ctx) {
                            kcsv.write_record(record)?;
                        }
                        kcsv.flush()?;
                    }
                }
            }
        }
    }
    println!("csv: {}", args.out.display());
    if args.profile {
        println!("kernels: {}", kernels_path.display());
    }
    Ok(())
}

pub fn run_conv(args: &ConvSweep) -> Result<()> {
    let spec = ConvNetSpec::dvs_gesture();
    if args.batch == 0 || args.reps == 0 || args.cells.iter().any(|&c| c == 0 || c > spec.cells.len()) {
        return Err(BenchError::Arguments(format!(
            "--batch and --reps must be at least 1 and every --cells one of 1..={}",
            spec.cells.len()
        )));
    }
    let ctx = open_adapter(args.device)?;
    let kernels = KernelTable::new(&ctx);
    let mut csv = create_csv(&args.out, &CONV_CSV_HEADER)?;
    println!("DVS Gesture convolutions, B = {}, tiling {}", args.batch, kernels.tiling());
    println!(
        "{:>4} {:>4} {:>9} {:>9} {:>3} {:>17} {:>5} {:>10} {:>10}",
        "cell", "conv", "channels", "image", "k", "kernel", "split", "ms", "GFLOP/s"
    );
    for layer in network_layers(&spec, &args.cells, args.batch) {
        let rows = time_layer(&ctx, &kernels, &layer, args.reps)
            .map_err(|source| BenchError::Row { what: format!("cell {} conv {}", layer.cell, layer.conv), source })?;
        for t in rows {
            println!(
                "{:>4} {:>4} {:>9} {:>9} {:>3} {:>17} {:>5} {:>10.3} {:>10.2}",
                layer.cell,
                layer.conv,
                format!("{}→{}", layer.in_c, layer.out_c),
                format!("{}×{}", layer.h, layer.w),
                layer.k,
                t.kernel,
                t.split,
                t.ms,
                t.gflop_per_s
            );
            csv.write_record(t.csv_record(&ctx, &kernels))?;
            csv.flush()?;
        }
    }
    println!("csv: {}", args.out.display());
    Ok(())
}
