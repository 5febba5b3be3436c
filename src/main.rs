//! The `fptt` command line: `fptt devices` lists the adapters, `fptt train EXPERIMENT.toml` runs an
//! experiment (see `experiments/README.md` for every key).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use fptt::gpu::{list_adapters, DeviceChoice};
use fptt::run::{self, ProgressMode, TrainOptions};

#[derive(Parser)]
#[command(
    name = "fptt",
    version,
    about = "Online training of LTC spiking networks with Forward Propagation Through Time, on the GPU",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter wgpu can see, with the limits that matter here.
    Devices,
    /// Train an experiment (or continue one with --resume).
    #[command(after_help = "Examples:\n  \
        fptt train experiments/quick.toml\n  \
        fptt train experiments/adding-200.toml --set train.lr=0.003 --set model.hidden=[64]\n  \
        fptt train --resume results/adding-200-20250101-120000\n\n\
        Every experiment key is documented in experiments/README.md.")]
    Train(TrainArgs),
    /// Training throughput over a grid of shapes: time per FPTT step, sample-steps/s, dispatches,
    /// GPU bytes, achieved GFLOP/s and GB/s against the adapter's measured ceilings (table on
    /// stdout, CSV written after every row).
    #[command(after_help = "Examples:\n  \
        fptt bench --hidden 64,256,1024 --batch 1,64,512 --out results/bench.csv\n  \
        fptt bench peer-check --hidden 256 --batch 64 --out /tmp/peer   (then benchmarks/pytorch_reference.py)")]
    Bench(BenchArgs),
    /// One line per run directory (from its config.toml and metrics.csv): rule, neuron, length,
    /// iterations, final and best test metric, wall time, GPU bytes, adapter. Markdown table on
    /// stdout; with --out, a CSV for plotting.
    #[command(
        after_help = "Example:\n  fptt summarize results/compare-adding/T200/* --out results/compare-adding/summary.csv"
    )]
    Summarize(SummarizeArgs),
}

#[derive(clap::Args)]
struct SummarizeArgs {
    /// Run directories (each with config.toml and metrics.csv).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Also write the summary as CSV.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchCommand>,
    #[command(flatten)]
    grid: GridArgs,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Write the benchmark network's start, data and the engine's state after one sequence, for
    /// benchmarks/pytorch_reference.py to replay and compare.
    PeerCheck(PeerCheckArgs),
    /// GPU bytes against the sequence length T for each learning rule (one-step FPTT, chunked
    /// FPTT with a fixed number of chunks per sequence, BPTT, e-prop) at a fixed adding-task
    /// network and batch: table on stdout, CSV written after every row.
    Memory(MemoryArgs),
}

#[derive(clap::Args)]
struct MemoryArgs {
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Sequence lengths T (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "100,200,500,1000,2000")]
    steps: Vec<usize>,
    /// Chunks per sequence of the chunked-FPTT row (K = T / chunks, the authors' 10).
    #[arg(long, default_value_t = 10)]
    chunks: usize,
    /// The hidden neurons: lif (the default: every rule, e-prop included, on one network), alif,
    /// or ltc (e-prop does not apply: its row is left out).
    #[arg(long, default_value = "lif", value_parser = parse_neuron)]
    neuron: fptt::model::NeuronKind,
    /// The adapter: auto, gpu, cpu, or an index from `fptt devices`.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    #[arg(long, value_name = "FILE", default_value = "results/memory.csv")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct PeerCheckArgs {
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Time steps (= FPTT updates) of the sequence.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// The adapter: auto, gpu, cpu, or an index from `fptt devices`.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    /// The directory to write start.safetensors, data.safetensors and after.safetensors to.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct GridArgs {
    /// Hidden sizes to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    hidden: Vec<usize>,
    /// Batch sizes to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,64,512")]
    batch: Vec<usize>,
    /// Hidden-layer counts to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    layers: Vec<usize>,
    /// Time steps per timed sequence.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Timed sequences per shape (after one warm-up sequence).
    #[arg(long, default_value_t = 2)]
    reps: usize,
    /// The adapter: auto, gpu, cpu, or an index from `fptt devices`.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    /// Size of the copy that measures the adapter's bandwidth ceiling (MiB).
    #[arg(long, default_value_t = 64)]
    copy_mib: usize,
    /// Size n of the n×n×n matrix product that measures the arithmetic ceiling.
    #[arg(long, default_value_t = 512)]
    matmul: usize,
    /// Where to write the CSV.
    #[arg(long, value_name = "FILE", default_value = "results/bench.csv")]
    out: PathBuf,
    /// Also time every kernel (one extra, profiled sequence per shape) into FILE-kernels.csv:
    /// hidden, layers, batch, kernel, dispatches, total_ms, mean_us, share, adapter, backend,
    /// device_type. The timed sequences always run unprofiled.
    #[arg(long)]
    profile: bool,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// The experiment file (TOML). Optional with --resume, which reads DIR/config.toml.
    #[arg(value_name = "EXPERIMENT.toml", required_unless_present = "resume")]
    experiment: Option<PathBuf>,
    /// Override a key: --set section.key=value (the value is parsed as TOML, else a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The run directory (default: output.dir, else results/<name>-<UTC time>).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// The adapter: auto, gpu, cpu, or an index from `fptt devices`.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    /// Continue the run in DIR from its checkpoint (exactly where it stopped).
    #[arg(long, value_name = "DIR", conflicts_with = "init")]
    resume: Option<PathBuf>,
    /// Start from the weights of a checkpoint instead of a fresh initialisation.
    #[arg(long, value_name = "CHECKPOINT")]
    init: Option<PathBuf>,
    /// Time every kernel with GPU timestamps; writes kernels.csv (kernel, dispatches, total_ms,
    /// mean_us, share, adapter, backend, device_type) with each checkpoint. Off: no cost.
    #[arg(long)]
    profile: bool,
    /// Progress display on stderr: auto (a bar on a terminal, log lines otherwise), bar, log, quiet.
    #[arg(long, default_value = "auto", value_parser = parse_progress)]
    progress: ProgressMode,
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

fn parse_neuron(s: &str) -> Result<fptt::model::NeuronKind, String> {
    let kinds = fptt::model::NeuronKind::ALL;
    kinds.iter().find(|(name, _)| *name == s).map(|(_, k)| *k).ok_or_else(|| {
        let names: Vec<&str> = kinds.iter().map(|(n, _)| *n).collect();
        format!("expected one of {}, found {s:?}", names.join(", "))
    })
}

fn parse_progress(s: &str) -> Result<ProgressMode, String> {
    match s {
        "auto" => Ok(ProgressMode::Auto),
        "bar" => Ok(ProgressMode::Bar),
        "log" => Ok(ProgressMode::Log),
        "quiet" => Ok(ProgressMode::Quiet),
        _ => Err(format!("expected auto, bar, log or quiet, found {s:?}")),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn devices() -> Result<()> {
    let adapters = list_adapters();
    if adapters.is_empty() {
        anyhow::bail!(
            "no GPU adapter found. On a machine without a GPU, install a software Vulkan driver: \
             `apt-get install -y mesa-vulkan-drivers libvulkan1` (Debian/Ubuntu)"
        );
    }
    let header = [
        "#",
        "name",
        "backend",
        "type",
        "driver",
        "storage binding MiB",
        "buffer MiB",
        "workgroup storage KiB",
        "invocations/workgroup",
        "timestamps",
        "timestamps in passes",
        "subgroups",
        "f16",
    ];
    let rows: Vec<Vec<String>> = adapters
        .iter()
        .map(|a| {
            vec![
                a.index.to_string(),
                a.name.clone(),
                a.backend.clone(),
                a.device_type.clone(),
                a.driver.clone(),
                a.max_storage_binding_mib.to_string(),
                a.max_buffer_mib.to_string(),
                a.max_workgroup_storage_kib.to_string(),
                a.max_invocations_per_workgroup.to_string(),
                yes_no(a.timestamps),
                yes_no(a.timestamps_in_passes),
                yes_no(a.subgroups),
                yes_no(a.f16),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).chain([header[c].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    println!("{}", line(header.to_vec()));
    for r in &rows {
        println!("{}", line(r.iter().map(|s| s.as_str()).collect()));
    }
    println!("\n--device auto picks a discrete GPU, then integrated, then software; --device N picks row N.");
    Ok(())
}

fn train(args: TrainArgs) -> Result<ExitCode> {
    let (experiment, out, resume) = match (&args.resume, &args.experiment) {
        (Some(dir), None) => (run::resume_experiment(dir, &args.set)?, Some(dir.clone()), true),
        (Some(_), Some(_)) => anyhow::bail!(
            "--resume DIR reads the experiment from DIR/config.toml; leave out the experiment file \
             (--set overrides still apply)"
        ),
        (None, Some(path)) => (fptt::run::Experiment::load(path, &args.set)?, args.out.clone(), false),
        (None, None) => anyhow::bail!("name an experiment file, or --resume DIR"),
    };

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: stopping after the current sequence (press again to quit at once)");
        })
        .context("installing the Ctrl-C handler")?;
    }

    let opts = TrainOptions {
        out,
        resume,
        device: args.device,
        init: args.init.clone(),
        command_line: run::command_line(),
        progress: args.progress,
        stop,
        context: None,
        profile: args.profile,
    };
    let summary = run::train(&experiment, &opts).with_context(|| format!("experiment `{}` failed", experiment.name))?;
    let score = match &summary.last_test {
        Some(row) => match (row.accuracy, row.mse) {
            (Some(a), _) => format!(", test accuracy {:.2}%", 100.0 * a),
            (_, Some(m)) => format!(", test mse {m:.4}"),
            _ => String::new(),
        },
        None => String::new(),
    };
    if summary.interrupted {
        eprintln!(
            "stopped at iteration {} ({:.1} s); resume with: fptt train --resume {}",
            summary.iterations,
            summary.elapsed_s,
            summary.dir.display()
        );
        println!("metrics: {}", summary.metrics.display());
        return Ok(ExitCode::from(130));
    }
    eprintln!(
        "done: {} iterations, {} epochs in {:.1} s on {}{score}",
        summary.iterations, summary.epochs_done, summary.elapsed_s, summary.adapter
    );
    println!("metrics: {}", summary.metrics.display());
    println!("checkpoint: {}", summary.checkpoint.display());
    Ok(ExitCode::SUCCESS)
}

fn bench(args: BenchArgs) -> Result<ExitCode> {
    match args.what {
        Some(BenchCommand::PeerCheck(peer)) => peer_check(peer),
        Some(BenchCommand::Memory(memory)) => bench_memory(memory),
        None => bench_grid(args.grid),
    }
}

fn peer_check(args: PeerCheckArgs) -> Result<ExitCode> {
    if args.hidden == 0 || args.batch == 0 || args.steps == 0 {
        anyhow::bail!("--hidden, --batch and --steps must all be at least 1");
    }
    let ctx = std::rc::Rc::new(fptt::gpu::GpuContext::new(args.device)?);
    println!("adapter: {} ({}, {})", ctx.adapter_name(), ctx.backend_name(), ctx.device_type_name());
    fptt::bench::export_peer_check(&ctx, args.hidden, args.batch, args.steps, &args.out)?;
    println!(
        "wrote {dir}/start.safetensors, data.safetensors, after.safetensors ({} FPTT steps, N = {}, B = {})",
        args.steps,
        args.hidden,
        args.batch,
        dir = args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn summarize(args: SummarizeArgs) -> Result<ExitCode> {
    use fptt::run::summary::{summarize, RunSummaryRow, SUMMARY_COLUMNS};
    let rows = args.dirs.iter().map(|dir| summarize(dir)).collect::<Result<Vec<_>, _>>()?;
    println!("{}", RunSummaryRow::MARKDOWN_HEADER);
    for row in &rows {
        println!("{}", row.markdown());
    }
    if let Some(out) = &args.out {
        let mut csv = csv::Writer::from_path(out).with_context(|| format!("writing {}", out.display()))?;
        csv.write_record(SUMMARY_COLUMNS)?;
        for row in &rows {
            csv.write_record(row.csv_record())?;
        }
        csv.flush()?;
        println!("csv: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_memory(args: MemoryArgs) -> Result<ExitCode> {
    use fptt::settings::LearningRule;
    if args.hidden == 0 || args.batch == 0 || args.chunks == 0 || args.steps.iter().any(|&t| t < 2) {
        anyhow::bail!("--hidden, --batch and --chunks must be at least 1, and every --steps at least 2");
    }
    let ctx = std::rc::Rc::new(fptt::gpu::GpuContext::new(args.device)?);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut csv = csv::Writer::from_path(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
    csv.write_record(fptt::bench::MEMORY_CSV_HEADER)?;
    csv.flush()?;
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
        if args.neuron != fptt::model::NeuronKind::Ltc {
            rules.push(LearningRule::Eprop(Default::default()));
        }
        for rule in rules {
            let row = fptt::bench::memory_row(&ctx, rule, args.neuron, args.hidden, args.batch, steps)
                .with_context(|| format!("{rule:?} at T = {steps}"))?;
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
    Ok(ExitCode::SUCCESS)
}

fn bench_grid(args: GridArgs) -> Result<ExitCode> {
    use fptt::bench::{measure, CSV_HEADER};
    if args.steps == 0
        || args.reps == 0
        || args.copy_mib == 0
        || args.matmul == 0
        || [&args.hidden, &args.batch, &args.layers].iter().any(|v| v.contains(&0))
    {
        anyhow::bail!("--hidden, --batch, --layers, --steps, --reps, --copy-mib and --matmul must all be at least 1");
    }
    let ctx = std::rc::Rc::new(fptt::gpu::GpuContext::new(args.device)?);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut csv = csv::Writer::from_path(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
    csv.write_record(CSV_HEADER)?;
    csv.flush()?;
    let kernels_path = args.out.with_file_name(format!(
        "{}-kernels.csv",
        args.out.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default()
    ));
    let mut kernels_csv = if args.profile {
        if !ctx.timestamps_inside_passes() {
            eprintln!("note: this adapter has no timestamp queries inside passes; kernels are not timed");
        }
        let mut w =
            csv::Writer::from_path(&kernels_path).with_context(|| format!("writing {}", kernels_path.display()))?;
        w.write_record(fptt::bench::KERNELS_CSV_HEADER)?;
        w.flush()?;
        Some(w)
    } else {
        None
    };
    println!("adapter: {} ({}, {})", ctx.adapter_name(), ctx.backend_name(), ctx.device_type_name());
    let ceilings = fptt::bench::ceilings(&ctx, args.copy_mib, args.matmul)?;
    println!(
        "ceilings: copy {:.2} GB/s ({} MiB), matrix product {:.3} GFLOP/s ({n}×{n}×{n})",
        ceilings.copy_gb_per_s,
        args.copy_mib,
        ceilings.matmul_gflop_per_s,
        n = ceilings.matmul_size
    );
    println!(
        "{:>7} {:>6} {:>6} {:>12} {:>16} {:>10} {:>12} {:>10} {:>10} {:>8} {:>8}",
        "hidden",
        "layers",
        "batch",
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
                let row = measure(&ctx, hidden, layers, batch, args.steps, args.reps, args.profile)
                    .with_context(|| format!("hidden {hidden}, layers {layers}, batch {batch}"))?;
                println!(
                    "{:>7} {:>6} {:>6} {:>12.3} {:>16.0} {:>10} {:>12.1} {:>10.3} {:>9.0}% {:>8.2} {:>7.0}%",
                    hidden,
                    layers,
                    batch,
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
    println!("csv: {}", args.out.display());
    if args.profile {
        println!("kernels: {}", kernels_path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices => devices().map(|_| ExitCode::SUCCESS),
        Command::Train(args) => train(args),
        Command::Bench(args) => bench(args),
        Command::Summarize(args) => summarize(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
