//! `fptt bench network`: the training speed of an experiment's own network (dense or
//! convolutional, its rule, optimizer and batch) on synthetic data of its shapes: time per step
//! (a frame, for event tasks) and per sequence, sample-steps per second, dispatches per step and
//! GPU bytes, and with `--profile` the GPU time per kernel. Nothing is read but the experiment
//! (by `run`, which fills in [`NetworkBench`]); the data are random event-like counts, since the
//! rate does not depend on their values.

use super::drivers::{create_csv, open_adapter, Result};
use crate::gpu::{DeviceChoice, KernelTime};
use crate::learn::{check_fits, Engine, EngineError, SizeLimits};
use crate::model::{init_params, ModelConfig};
use crate::rng::Rng;
use crate::settings::{InitialState, SequenceBatch, Targets, TrainingSettings};
use std::path::PathBuf;
use std::time::Instant;

/// `fptt bench network --experiment FILE`'s settings.
#[derive(Debug, Clone)]
pub struct NetworkBench {
    /// The experiment's name (the CSV's `network` column).
    pub network: String,
    /// The line printed above the table.
    pub heading: String,
    pub cfg: ModelConfig,
    pub settings: TrainingSettings,
    pub batch: usize,
    /// Timed training sequences (after one warm-up).
    pub reps: usize,
    pub profile: bool,
    pub device: DeviceChoice,
    pub out: PathBuf,
}

pub const NETWORK_CSV_HEADER: [&str; 13] = [
    "network",
    "rule",
    "batch",
    "steps",
    "ms_per_step",
    "ms_per_sequence",
    "sample_steps_per_s",
    "dispatches_per_step",
    "gpu_bytes",
    "matmul_tiling",
    "adapter",
    "backend",
    "device_type",
];

pub const NETWORK_KERNELS_CSV_HEADER: [&str; 9] =
    ["network", "kernel", "dispatches", "total_ms", "mean_us", "share", "adapter", "backend", "device_type"];

/// A batch of `batch` sequences for `cfg`: sparse counts 0, 1, 2 (most 0), as event frames are,
/// and random labels; the initial membranes `U[0, 1)`.
fn synthetic_batch(cfg: &ModelConfig, batch: usize) -> (SequenceBatch, InitialState) {
    let mut rng = Rng::new(7);
    let inputs = (0..cfg.steps * batch * cfg.inputs)
        .map(|_| match rng.uniform() {
            u if u < 0.8 => 0.0,
            u if u < 0.95 => 1.0,
            _ => 2.0,
        })
        .collect();
    let targets = Targets::Labels((0..batch).map(|_| rng.below(cfg.outputs) as u32).collect());
    let data = SequenceBatch { steps: cfg.steps, batch, inputs_per_step: cfg.inputs, inputs, targets };
    let init = InitialState::uniform(&cfg.state_blocks(), batch, &mut rng);
    (data, init)
}

/// What one measurement gave.
struct NetworkRow {
    ms_per_sequence: f64,
    dispatches_per_step: usize,
    gpu_bytes: u64,
    matmul_tiling: String,
    kernels: Vec<KernelTime>,
}

fn measure(
    args: &NetworkBench,
    ctx: &std::rc::Rc<crate::gpu::GpuContext>,
) -> std::result::Result<NetworkRow, EngineError> {
    let (cfg, settings) = (&args.cfg, &args.settings);
    check_fits(&SizeLimits::of(ctx), cfg, settings, args.batch, 1)?;
    let mut engine = Engine::new(ctx.clone(), cfg, settings, args.batch, &init_params(cfg, 1))?;
    engine.set_dropout_seed(0, 1);
    let (data, init) = synthetic_batch(cfg, args.batch);
    engine.train_sequence(&data, &init)?;
    let start = Instant::now();
    for _ in 0..args.reps {
        engine.train_sequence(&data, &init)?;
    }
    let seconds = start.elapsed().as_secs_f64() / args.reps as f64;
    let mut kernels = Vec::new();
    if args.profile {
        if engine.enable_profiling() {
            engine.train_sequence(&data, &init)?;
            kernels = engine.kernel_times().0;
        } else {
            eprintln!("note: this adapter has no timestamp queries inside passes; kernels are not timed");
        }
    }
    Ok(NetworkRow {
        ms_per_sequence: seconds * 1e3,
        dispatches_per_step: engine.dispatches_per_step(),
        gpu_bytes: engine.gpu_bytes(),
        matmul_tiling: engine.matmul_tiling().code(),
        kernels,
    })
}

/// `fptt bench network`: one row for the experiment's network, CSV written when it is measured.
pub fn run_network(args: &NetworkBench) -> Result<()> {
    if args.reps == 0 || args.batch == 0 {
        return Err(super::BenchError::Arguments("--reps and --batch must be at least 1".into()));
    }
    let ctx = open_adapter(args.device)?;
    let mut csv = create_csv(&args.out, &NETWORK_CSV_HEADER)?;
    println!("{}", args.heading);
    let steps = args.cfg.steps;
    let row = measure(args, &ctx)
        .map_err(|source| super::BenchError::Row { what: format!("{} at B = {}", args.network, args.batch), source })?;
    let ms_per_step = row.ms_per_sequence / steps as f64;
    let rate = args.batch as f64 * steps as f64 / (row.ms_per_sequence / 1e3);
    println!(
        "{} at B = {}, T = {}: {:.2} ms per step ({:.1} ms per sequence of {} steps), {:.0} sample-steps/s, \
         {} dispatches per step, {:.1} MiB on the GPU (tiling {})",
        rule_name(&args.settings),
        args.batch,
        steps,
        ms_per_step,
        row.ms_per_sequence,
        steps,
        rate,
        row.dispatches_per_step,
        row.gpu_bytes as f64 / (1u64 << 20) as f64,
        row.matmul_tiling
    );
    csv.write_record([
        args.network.clone(),
        rule_name(&args.settings),
        args.batch.to_string(),
        steps.to_string(),
        format!("{ms_per_step:.4}"),
        format!("{:.3}", row.ms_per_sequence),
        format!("{rate:.1}"),
        row.dispatches_per_step.to_string(),
        row.gpu_bytes.to_string(),
        row.matmul_tiling.clone(),
        ctx.adapter_name().to_string(),
        ctx.backend_name(),
        ctx.device_type_name().to_string(),
    ])?;
    csv.flush()?;
    println!("csv: {}", args.out.display());
    if !row.kernels.is_empty() {
        let path = args.out.with_file_name(format!(
            "{}-kernels.csv",
            args.out.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default()
        ));
        let mut kernels = create_csv(&path, &NETWORK_KERNELS_CSV_HEADER)?;
        println!("{:<24} {:>10} {:>12} {:>10} {:>7}", "kernel", "dispatches", "total ms", "mean µs", "share");
        for k in &row.kernels {
            println!(
                "{:<24} {:>10} {:>12.3} {:>10.1} {:>6.1}%",
                k.kernel,
                k.dispatches,
                k.total_ms,
                k.mean_us,
                100.0 * k.share
            );
            kernels.write_record([
                args.network.clone(),
                k.kernel.clone(),
                k.dispatches.to_string(),
                format!("{:.3}", k.total_ms),
                format!("{:.1}", k.mean_us),
                format!("{:.4}", k.share),
                ctx.adapter_name().to_string(),
                ctx.backend_name(),
                ctx.device_type_name().to_string(),
            ])?;
        }
        kernels.flush()?;
        println!("kernels: {}", path.display());
    }
    Ok(())
}

fn rule_name(settings: &TrainingSettings) -> String {
    use crate::settings::LearningRule;
    match settings.rule {
        LearningRule::Fptt { chunk: 1 } => "fptt".into(),
        LearningRule::Fptt { chunk } => format!("fptt-k{chunk}"),
        LearningRule::Bptt => "bptt".into(),
        LearningRule::Eprop(_) => "eprop".into(),
    }
}
