//! The `fptt` command line: the clap definitions and dispatch to the library. `fptt devices`
//! lists the adapters, `fptt train EXPERIMENT.toml` runs an experiment (see
//! `experiments/README.md` for every key), `fptt stream EXPERIMENT.toml` trains online on an
//! endless stream ([`fptt::run::stream`]), `fptt sweep GRID.toml` runs a grid of experiments
//! ([`fptt::run::sweep`]; `--jobs` spawns slices of itself, `--slurm` writes a job array), `fptt bench` measures ([`fptt::bench`] runs the sweeps
//! and prints their tables), `fptt summarize` tabulates run directories, `fptt plot` draws them
//! and the bench CSVs ([`fptt::plot`]). Errors are `anyhow`
//! here, typed (`thiserror`) in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use fptt::bench;
use fptt::gpu::{adapter_table, list_adapters, DeviceChoice};
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
        fptt train --resume runs/adding-200-20250101-120000\n\n\
        Every experiment key is documented in experiments/README.md.")]
    Train(TrainArgs),
    /// Train online on an endless stream (a generator, a file or standard input): an FPTT update
    /// every train.chunk steps, the neuron state, W̄ and λ carried for ever, a metrics row every
    /// stream.report_every steps, checkpoints with the stream's position.
    #[command(after_help = "Examples:\n  \
        fptt stream experiments/stream-switching.toml\n  \
        some-sensor | fptt stream experiments/stream-csv.toml --set source.path=-\n  \
        fptt stream --resume runs/stream-switching-20250101-120000\n\n\
        The stream keys are documented in experiments/README.md (\"Streams\").")]
    Stream(StreamArgs),
    /// Run a grid of experiments (a base experiment and axes of --set values, see
    /// experiments/README.md, "Sweeps") one after another, each point a run directory under
    /// OUTDIR, with OUTDIR/index.csv; resumable, sliceable, or as a Slurm job array.
    #[command(after_help = "Examples:\n  \
        fptt sweep experiments/sweeps/adding-seeds-lr.toml --out runs/seeds-lr\n  \
        fptt sweep --resume runs/seeds-lr                      (skips finished runs, continues the interrupted one)\n  \
        fptt sweep --resume runs/seeds-lr --slice 1/4          (runs 1, 5, 9, …; writes index-1-of-4.csv)\n  \
        fptt sweep GRID.toml --out runs/x --jobs 2 --device 0,1 (two local processes, one per adapter)\n  \
        fptt sweep GRID.toml --out runs/x --slurm 8            (writes runs/x/sweep.slurm; then sbatch it)\n  \
        fptt sweep --status runs/x                             (the merged index and the seed summary)")]
    Sweep(SweepArgs),
    /// Training throughput over a grid of shapes: time per FPTT step, sample-steps/s, dispatches,
    /// GPU bytes, achieved GFLOP/s and GB/s against the adapter's measured ceilings (table on
    /// stdout, CSV written after every row).
    #[command(after_help = "Examples:\n  \
        fptt bench --hidden 64,256,1024 --batch 1,64,512 --out results/bench.csv\n  \
        fptt bench peer-check --hidden 256 --batch 64 --out /tmp/peer   (then benchmarks/pytorch_reference.py)\n  \
        fptt bench conv --cells 2,4 --batch 16 --out results/bench-conv.csv")]
    Bench(BenchArgs),
    /// One line per run directory (from its config.toml and metrics.csv): rule, neuron, length,
    /// iterations, final and best test metric, wall time, GPU bytes, adapter. Markdown table on
    /// stdout; with --out, a CSV for plotting.
    #[command(
        after_help = "Example:\n  fptt summarize results/compare-adding/T200/* --out results/compare-adding/summary.csv"
    )]
    Summarize(SummarizeArgs),
    /// Figures (SVG or PNG) of the CSVs: learning curves of run directories, or with a
    /// subcommand GPU time per kernel, speed against a PyTorch peer, memory against T.
    #[command(after_help = "Examples:\n  \
        fptt plot results/compare/adding-T200/*                (→ results/compare/adding-T200/curves.svg)\n  \
        fptt plot results/mine --x time --out mine.png\n  \
        fptt plot kernels results/bench-kernels.csv             (→ results/bench-kernels.svg)\n  \
        fptt plot bench results/bench.csv results/bench-pytorch.csv\n  \
        fptt plot memory results/memory.csv")]
    Plot(PlotArgs),
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct PlotArgs {
    #[command(subcommand)]
    what: Option<PlotCommand>,
    /// Run directories (each with metrics.csv and config.toml): training and test loss and
    /// MSE or accuracy, one line per run; runs that differ only in the seed as mean and band.
    #[arg(value_name = "RUN_DIR", required = true)]
    dirs: Vec<PathBuf>,
    /// The curves' x axis: iteration or time (wall time in seconds).
    #[arg(long, default_value = "iteration", value_parser = parse_x_axis)]
    x: fptt::plot::XAxis,
    #[command(flatten)]
    output: PlotOutput,
}

#[derive(clap::Args)]
struct PlotOutput {
    /// The figure, SVG or PNG by extension (default: next to the input, .svg).
    #[arg(long, value_name = "FILE.svg|FILE.png", global = true)]
    out: Option<PathBuf>,
    /// The title's first part (the adapter is appended).
    #[arg(long, value_name = "TEXT", global = true)]
    title: Option<String>,
}

#[derive(Subcommand)]
enum PlotCommand {
    /// GPU time per kernel as its share of the step (FILE-kernels.csv of `fptt bench --profile`, or
    /// a run's kernels.csv); one stacked bar per shape when the file holds several.
    Kernels {
        #[arg(value_name = "FILE-kernels.csv")]
        file: PathBuf,
    },
    /// Time per step and achieved GFLOP/s against the hidden size, one line per batch size, the
    /// PyTorch peer (benchmarks/pytorch_reference.py's CSV) dashed, measured ceilings as lines.
    Bench {
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
        #[arg(value_name = "PEER.csv")]
        peer: Option<PathBuf>,
    },
    /// GPU memory against the sequence length T per learning rule (`fptt bench memory`'s CSV).
    Memory {
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct SummarizeArgs {
    /// Run directories (each with config.toml and metrics.csv).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Also write the summary as CSV.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// One line per task, network, rule, T and batch (the seeds of one configuration): mean ±
    /// sample standard deviation over its runs of the final, best and last training value,
    /// iterations (mean and range) and wall time. Give it one configuration's seeds at a time:
    /// runs that differ in anything else not shown (say the learning rate) are grouped too.
    #[arg(long)]
    group: bool,
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
    /// network and batch, or with --experiment a convolutional experiment's estimated bytes
    /// (one-step FPTT and BPTT per number of frames): table on stdout, CSV written after every row.
    #[command(after_help = "Examples:\n  \
        fptt bench memory --out results/memory.csv                      (adding-task network, N = 64, B = 16)\n  \
        fptt bench memory --experiment experiments/dvs-gesture.toml --out results/memory-dvs-gesture.csv")]
    Memory(MemoryArgs),
    /// The training speed of an experiment's own network (dense or convolutional; its rule,
    /// optimizer and batch) on synthetic data of its shapes: time per step (a frame of an event
    /// task) and per sequence, sample-steps per second, dispatches per step and GPU bytes; with
    /// --profile the GPU time per kernel (FILE-kernels.csv beside the CSV).
    #[command(after_help = "Examples:\n  \
        fptt bench network --experiment experiments/dvs-gesture.toml --profile --out results/bench-dvs.csv   (a GPU)\n  \
        fptt bench network --experiment experiments/nmnist-synth-quick.toml --out results/bench-nmnist-synth-quick.csv")]
    Network(NetworkArgs),
    /// The convolution kernels (forward, input gradient, weight gradient) alone on the DVS Gesture
    /// network's layer shapes (each cell's input and gate convolutions): time and GFLOP/s per
    /// kernel, table on stdout, CSV written after every row.
    Conv(ConvBenchArgs),
}

#[derive(clap::Args)]
struct NetworkArgs {
    /// The experiment file whose network, rule, optimizer and batch to measure.
    #[arg(long, value_name = "FILE")]
    experiment: PathBuf,
    /// Samples per batch [default: the experiment's train.batch].
    #[arg(long)]
    batch: Option<usize>,
    /// Timed training sequences, after one warm-up.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also time every kernel (one more sequence, profiled).
    #[arg(long)]
    profile: bool,
    /// The adapter: auto, gpu, cpu, or an index from `fptt devices`.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    #[arg(long, value_name = "FILE", default_value = "results/bench-network.csv")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct ConvBenchArgs {
    /// Cells of the DVS network to measure, 1-based (comma-separated; 2: 64→128 7×7 at 64×64,
    /// 4: 128→256 3×3 at 16×16).
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    cells: Vec<usize>,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed dispatches per kernel (after one warm-up).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// The adapter: auto, gpu, cpu, or an index from `fptt devices`.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    #[arg(long, value_name = "FILE", default_value = "results/bench-conv.csv")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct MemoryArgs {
    /// A convolutional experiment file (e.g. experiments/dvs-gesture.toml) instead of the
    /// adding-task network: one-step FPTT and BPTT per --steps, the GPU bytes estimated from the
    /// network's shapes and measured on an engine where it fits the adapter and this host.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["hidden", "chunks", "neuron"])]
    experiment: Option<PathBuf>,
    /// With --experiment: estimates only, build no engine (a large network on a small machine).
    #[arg(long, requires = "experiment")]
    estimate_only: bool,
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Samples per batch [default: 16; with --experiment, the experiment's train.batch].
    #[arg(long)]
    batch: Option<usize>,
    /// Sequence lengths T (comma-separated) [default: 100,200,500,1000,2000; with --experiment,
    /// the experiment's frames and 100, i.e. 20,100 for dvs-gesture.toml].
    #[arg(long, value_delimiter = ',')]
    steps: Option<Vec<usize>>,
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
    /// Models stepped together in one set of dispatches (comma-separated): a row per count, its
    /// rates over all of them (sample-steps/s = replicas × batch / step time).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    replicas: Vec<usize>,
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
struct StreamArgs {
    /// The stream experiment (see experiments/README.md, "Streams").
    #[arg(value_name = "EXPERIMENT.toml", required_unless_present = "resume")]
    experiment: Option<PathBuf>,
    /// Override a key: --set section.key=value (the value is parsed as TOML, else a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The run directory (default: output.dir, else runs/<name>-<UTC time>); it must not hold a run.
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// The adapter: auto, gpu, cpu, or an index from `fptt devices`.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    /// Continue the stream run in DIR from its checkpoint (file sources and generators resume at
    /// the exact frame).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// No line per report on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct SweepArgs {
    /// The grid file (TOML: base, name, [set], [axes]).
    #[arg(value_name = "GRID.toml", required_unless_present_any = ["resume", "status"], conflicts_with_all = ["resume", "status"])]
    grid: Option<PathBuf>,
    /// The sweep directory (default: runs/<grid name>-<UTC time>).
    #[arg(long, value_name = "OUTDIR")]
    out: Option<PathBuf>,
    /// Continue the sweep in OUTDIR: finished runs are skipped, an interrupted one continues
    /// from its checkpoint, pending ones start.
    #[arg(long, value_name = "OUTDIR", conflicts_with_all = ["out", "status"])]
    resume: Option<PathBuf>,
    /// Print the merged index of OUTDIR and the seed summary of its finished runs; no training.
    #[arg(long, value_name = "OUTDIR", conflicts_with_all = ["out", "slice", "slurm", "jobs"])]
    status: Option<PathBuf>,
    /// Run only the runs whose index ≡ I (mod N) (0 ≤ I < N); writes OUTDIR/index-I-of-N.csv.
    #[arg(long, value_name = "I/N")]
    slice: Option<fptt::run::sweep::Slice>,
    /// Write OUTDIR/sweep.slurm, a Slurm job array of N tasks (task I runs --slice I/N), and exit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with_all = ["jobs", "slice"])]
    slurm: Option<u32>,
    /// Run K local processes at once (`fptt sweep --resume OUTDIR --slice I/K`), each with the
    /// next adapter of --device; logs in OUTDIR/jobs-I-of-K.log.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "slice")]
    jobs: Option<u32>,
    /// The adapter (auto, gpu, cpu, or an index from `fptt devices`); with --jobs a comma-separated
    /// list given to the processes in turn.
    #[arg(long, value_delimiter = ',', default_value = "auto", value_parser = parse_device_text)]
    device: Vec<String>,
    /// Progress display on stderr: auto, bar, log, quiet.
    #[arg(long, default_value = "auto", value_parser = parse_progress)]
    progress: ProgressMode,
    /// Train up to N runs that differ only in seed, lr, alpha, beta and clip together, as
    /// replicas of one engine (one set of dispatches for all; each run's results are exactly
    /// those it gets alone). Fewer where the adapter's buffers cannot hold N; 1: one run at a time.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    max_replicas: u32,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// The experiment file (TOML). Optional with --resume, which reads DIR/config.toml.
    #[arg(value_name = "EXPERIMENT.toml", required_unless_present = "resume")]
    experiment: Option<PathBuf>,
    /// Override a key: --set section.key=value (the value is parsed as TOML, else a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The run directory (default: output.dir, else runs/<name>-<UTC time>); it must not hold a run.
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
    /// Wall-clock seconds from this command's start: at the first sequence or epoch end after
    /// it, write a checkpoint and exit with status 75 (continue with --resume DIR, exactly as if
    /// never stopped). An evaluation in progress finishes first.
    #[arg(long, value_name = "SECONDS", value_parser = parse_time_limit)]
    time_limit: Option<f64>,
    /// Print the network (layer by layer, with its parameters), the learning rule and the GPU
    /// memory at the experiment's batch, from the shapes alone, and exit: no GPU, no data, no
    /// run directory.
    #[arg(long, conflicts_with_all = ["resume", "init", "out"])]
    dry_run: bool,
}

/// Signals this close to the first interrupt are the same interrupt delivered twice.
const SAME_INTERRUPT: Duration = Duration::from_secs(1);

/// The exit status of a run stopped at its `--time-limit` (sysexits' EX_TEMPFAIL: try again,
/// here with --resume).
const EXIT_TIME_LIMIT: u8 = 75;

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

/// A device as text (checked), passed on to the processes of `sweep --jobs` as it was written.
fn parse_device_text(s: &str) -> Result<String, String> {
    s.parse::<DeviceChoice>().map(|_| s.to_string())
}

fn parse_neuron(s: &str) -> Result<fptt::model::NeuronKind, String> {
    let kinds = fptt::model::NeuronKind::ALL;
    kinds.iter().find(|(name, _)| *name == s).map(|(_, k)| *k).ok_or_else(|| {
        let names: Vec<&str> = kinds.iter().map(|(n, _)| *n).collect();
        format!("expected one of {}, found {s:?}", names.join(", "))
    })
}

fn parse_x_axis(s: &str) -> Result<fptt::plot::XAxis, String> {
    match s {
        "iteration" => Ok(fptt::plot::XAxis::Iteration),
        "time" => Ok(fptt::plot::XAxis::Time),
        _ => Err(format!("expected iteration or time, found {s:?}")),
    }
}

fn parse_time_limit(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x < 1e9 => Ok(x),
        _ => Err(format!("expected a number of seconds > 0, found {s:?}")),
    }
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

fn devices() -> Result<()> {
    let adapters = list_adapters();
    if adapters.is_empty() {
        anyhow::bail!(
            "no GPU adapter found. On a machine without a GPU, install a software Vulkan driver: \
             `apt-get install -y mesa-vulkan-drivers libvulkan1` (Debian/Ubuntu)"
        );
    }
    print!("{}", adapter_table(&adapters));
    println!("\n--device auto picks a discrete GPU, then integrated, then software; --device N picks row N.");
    Ok(())
}

/// A flag that Ctrl-C, SIGTERM and SIGHUP set (ctrlc's `termination` feature: a batch
/// scheduler's or a closed terminal's stop keeps the run as Ctrl-C does); the run stops after the
/// current `unit` with a checkpoint, a second interrupt exits at once.
fn stop_flag(unit: &'static str) -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let first = std::sync::OnceLock::new();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // One stop can arrive twice at once: `timeout` signals the command and then its
            // process group, and a terminal's Ctrl-C reaches a wrapper that passes it on too.
            // Only a second interrupt a moment later means "quit now".
            if first.get().is_some_and(|t: &Instant| t.elapsed() < SAME_INTERRUPT) {
                return;
            }
            eprintln!("\nsecond interrupt: exiting without a checkpoint");
            std::process::exit(130);
        }
        let _ = first.set(Instant::now());
        eprintln!(
            "\ninterrupted (Ctrl-C, SIGTERM or SIGHUP): stopping after the current {unit} \
             (interrupt again to quit at once)"
        );
    })
    .context("installing the Ctrl-C/SIGTERM/SIGHUP handler")?;
    Ok(stop)
}

fn stream(args: StreamArgs) -> Result<ExitCode> {
    use fptt::run::stream::{resume_stream_experiment, stream, StreamExperiment, StreamOptions};
    let (experiment, out, resume) = match (&args.resume, &args.experiment) {
        (Some(dir), None) => (resume_stream_experiment(dir, &args.set)?, Some(dir.clone()), true),
        (Some(_), Some(_)) => anyhow::bail!(
            "--resume DIR reads the stream experiment from DIR/config.toml; leave out the experiment file \
             (--set overrides still apply)"
        ),
        (None, Some(path)) => (StreamExperiment::load(path, &args.set)?, args.out.clone(), false),
        (None, None) => anyhow::bail!("name a stream experiment file, or --resume DIR"),
    };
    let opts = StreamOptions {
        out,
        resume,
        device: args.device,
        command_line: run::command_line(),
        stop: stop_flag("window")?,
        context: None,
        verbose: !args.quiet,
    };
    let s = stream(&experiment, &opts).with_context(|| format!("stream `{}` failed", experiment.name))?;
    let skipped =
        if s.skipped_rows > 0 { format!(", {} malformed rows skipped", s.skipped_rows) } else { String::new() };
    let dropped = if s.dropped_frames > 0 {
        format!(", {} frames at the end (less than a window) left out", s.dropped_frames)
    } else {
        String::new()
    };
    eprintln!(
        "{}: {} steps in {:.1} s ({:.0} steps/s) on {}, {} GPU bytes{skipped}{dropped}",
        if s.interrupted { "stopped" } else { "done" },
        s.steps,
        s.elapsed_s,
        s.steps_per_s,
        s.adapter,
        s.gpu_bytes
    );
    // Standard output may carry the predictions; the paths then go to stderr.
    let paths = format!("metrics: {}\ncheckpoint: {}", s.metrics.display(), s.checkpoint.display());
    if experiment.predictions == fptt::run::stream::Predictions::Stdout {
        eprintln!("{paths}");
    } else {
        println!("{paths}");
    }
    if s.interrupted {
        eprintln!("resume with: fptt stream --resume {}", s.dir.display());
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

fn train(args: TrainArgs, started: Instant) -> Result<ExitCode> {
    let (experiment, out, resume) = match (&args.resume, &args.experiment) {
        (Some(dir), None) => (run::resume_experiment(dir, &args.set)?, Some(dir.clone()), true),
        (Some(_), Some(_)) => anyhow::bail!(
            "--resume DIR reads the experiment from DIR/config.toml; leave out the experiment file \
             (--set overrides still apply)"
        ),
        (None, Some(path)) => (fptt::run::Experiment::load(path, &args.set)?, args.out.clone(), false),
        (None, None) => anyhow::bail!("name an experiment file, or --resume DIR"),
    };
    if args.dry_run {
        print!("{}", run::dry_run::describe(&experiment)?);
        return Ok(ExitCode::SUCCESS);
    }

    let stop = stop_flag("sequence")?;

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
        deadline: args.time_limit.map(|s| started + Duration::from_secs_f64(s)),
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
    if summary.time_limited {
        eprintln!(
            "time limit reached at iteration {} ({:.1} s of the run so far){score}; resume with: fptt train --resume {}",
            summary.iterations,
            summary.elapsed_s,
            summary.dir.display()
        );
        println!("metrics: {}", summary.metrics.display());
        return Ok(ExitCode::from(EXIT_TIME_LIMIT));
    }
    eprintln!(
        "done: {} iterations, {} epochs in {:.1} s on {}{score}",
        summary.iterations, summary.epochs_done, summary.elapsed_s, summary.adapter
    );
    println!("metrics: {}", summary.metrics.display());
    println!("checkpoint: {}", summary.checkpoint.display());
    Ok(ExitCode::SUCCESS)
}

/// Print the sweep's merged index (one line per run) and the seed summary of its finished runs.
fn print_sweep(
    grid: &fptt::run::sweep::Grid,
    out: &std::path::Path,
    rows: &[fptt::run::sweep::IndexRow],
) -> Result<()> {
    use fptt::run::sweep::{seed_summary, seed_summary_markdown, Status};
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    println!("sweep `{}` in {}: {} runs", grid.name, out.display(), rows.len());
    for r in rows {
        let test = match (r.final_test, r.best_test) {
            (Some(f), Some(b)) => format!("final {} {f:.4}, best {b:.4}", r.metric),
            _ => String::new(),
        };
        println!("  {:>3} {:<12} {:<40} {test}", r.index, r.status.name(), r.run);
        if !r.note.is_empty() {
            println!("      {}", r.note);
        }
    }
    let summary: Vec<String> =
        Status::ALL.iter().filter(|(_, s)| count(*s) > 0).map(|(n, s)| format!("{} {n}", count(*s))).collect();
    println!("  ({})\n", summary.join(", "));
    let groups = seed_summary(grid, out, rows)?;
    if !groups.is_empty() {
        print!("{}", seed_summary_markdown(&groups));
    }
    Ok(())
}

/// `sweep --jobs K`: K child processes of this executable, one slice each, waited for; a stop
/// request is passed on to them (they checkpoint and stop as after Ctrl-C).
fn sweep_jobs(
    out: &std::path::Path,
    k: u32,
    devices: &[String],
    progress: &str,
    max_replicas: u32,
    stop: &AtomicBool,
) -> Result<bool> {
    let exe = std::env::current_exe().context("finding this executable for --jobs")?;
    let mut children = Vec::new();
    for i in 0..k {
        let log_path = out.join(format!("jobs-{i}-of-{k}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let device = &devices[i as usize % devices.len()];
        let child = std::process::Command::new(&exe)
            .args(["sweep", "--resume"])
            .arg(out)
            .args(["--slice", &format!("{i}/{k}"), "--device", device, "--progress", progress])
            .args(["--max-replicas", &max_replicas.to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        eprintln!("sweep: slice {i}/{k} on device {device} (pid {}), log {}", child.id(), log_path.display());
        children.push((i, child));
    }
    let mut ok = true;
    let mut forwarded = false;
    let mut running = children.len();
    while running > 0 {
        if stop.load(Ordering::SeqCst) && !forwarded {
            forwarded = true;
            for (_, c) in &children {
                // A terminal's Ctrl-C reaches them already; SIGTERM to this process alone does not.
                let _ = std::process::Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            }
        }
        running = 0;
        for (i, c) in &mut children {
            match c.try_wait()? {
                None => running += 1,
                Some(status) if status.code() == Some(0) => {}
                Some(status) => {
                    if ok {
                        eprintln!("sweep: slice {i}/{k} ended with {status} (see jobs-{i}-of-{k}.log)");
                    }
                    ok = false;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(ok)
}

fn sweep(args: SweepArgs) -> Result<ExitCode> {
    use fptt::run::sweep::{self, Grid, Slice, SweepOptions, INDEX_FILE, SLURM_FILE};
    if let Some(out) = &args.status {
        let grid = sweep::open(out)?;
        let rows = sweep::merged_index(&grid, out)?;
        print_sweep(&grid, out, &rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.device.len() > 1 && args.jobs.is_none() {
        anyhow::bail!(
            "--device {}: a list of adapters needs --jobs K (one process per adapter in turn)",
            args.device.join(",")
        );
    }
    let (grid, out) = match (&args.grid, &args.resume) {
        (Some(path), None) => {
            let grid = Grid::load(path)?;
            grid.check()?;
            let out = args.out.clone().unwrap_or_else(|| sweep::default_out(&grid));
            // A fresh sweep may not reuse a directory holding one (unless it is a slice of it).
            if out.join(sweep::SWEEP_FILE).exists() && args.slice.is_none() {
                anyhow::bail!(
                    "{} already holds a sweep ({} exists); continue it with --resume {}, or choose another --out",
                    out.display(),
                    sweep::SWEEP_FILE,
                    out.display()
                );
            }
            sweep::prepare(&grid, &out)?;
            (sweep::open(&out)?, out)
        }
        (None, Some(out)) => (sweep::open(out)?, out.clone()),
        _ => anyhow::bail!("name a grid file, or --resume OUTDIR"),
    };
    grid.check()?;
    let slice = args.slice.unwrap_or(Slice::WHOLE);

    if let Some(n) = args.slurm {
        let exe = std::env::current_exe().context("finding this executable for the Slurm script")?;
        let exe = exe.canonicalize().unwrap_or(exe);
        let path = out.join(SLURM_FILE);
        let text = sweep::slurm_script(&grid, &out, n as usize, args.max_replicas as usize, &exe);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("slurm script: {}", path.display());
        println!("edit its #SBATCH --time, then submit from this directory:  sbatch {}", path.display());
        println!("progress:  fptt sweep --status {}", out.display());
        return Ok(ExitCode::SUCCESS);
    }

    let stop = stop_flag("sequence")?;
    if let Some(k) = args.jobs {
        let progress = match args.progress {
            ProgressMode::Quiet => "quiet",
            _ => "log",
        };
        let ok = sweep_jobs(&out, k, &args.device, progress, args.max_replicas, &stop)?;
        let rows = sweep::merged_index(&grid, &out)?;
        // The children are done: this process is the index's only writer now.
        sweep::write_index(&grid, &out.join(INDEX_FILE), &rows)?;
        print_sweep(&grid, &out, &rows)?;
        if stop.load(Ordering::SeqCst) {
            eprintln!("stopped; continue with: fptt sweep --resume {} --jobs {k}", out.display());
            return Ok(ExitCode::from(130));
        }
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }

    let device: DeviceChoice = args.device[0].parse().map_err(|e: String| anyhow::anyhow!("--device: {e}"))?;
    let opts = SweepOptions {
        out: out.clone(),
        slice,
        device,
        progress: args.progress,
        stop,
        context: None,
        command_line: run::command_line(),
        max_replicas: args.max_replicas as usize,
    };
    let report = sweep::run_sweep(&grid, &opts)?;
    print_sweep(&grid, &out, &report.rows)?;
    eprintln!("sweep: {} runs trained by this process in {:.1} s", report.ran, report.elapsed_s);
    let resume = if slice == Slice::WHOLE {
        format!("fptt sweep --resume {}", out.display())
    } else {
        format!("fptt sweep --resume {} --slice {}/{}", out.display(), slice.part, slice.count)
    };
    if report.interrupted {
        eprintln!("stopped; continue with: {resume}");
        return Ok(ExitCode::from(130));
    }
    if report.failed > 0 {
        eprintln!(
            "{} runs failed (see the note column of {}); retry them with: {resume}",
            report.failed,
            out.join(slice.index_file()).display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(args: BenchArgs) -> Result<ExitCode> {
    match args.what {
        Some(BenchCommand::PeerCheck(a)) => bench::run_peer_check(&bench::PeerCheck {
            hidden: a.hidden,
            batch: a.batch,
            steps: a.steps,
            device: a.device,
            out: a.out,
        })?,
        Some(BenchCommand::Conv(a)) => bench::run_conv(&bench::ConvSweep {
            cells: a.cells,
            batch: a.batch,
            reps: a.reps,
            device: a.device,
            out: a.out,
        })?,
        Some(BenchCommand::Network(a)) => bench::run_network(&run::dry_run::network_bench(
            &a.experiment,
            a.batch,
            a.reps,
            a.profile,
            a.device,
            a.out,
        )?)?,
        Some(BenchCommand::Memory(a)) => match a.experiment {
            // The conv defaults (batch, lengths) come from the experiment file, which `run` reads.
            Some(experiment) => bench::run_conv_memory(&bench::ConvMemorySweep {
                measure: !a.estimate_only,
                ..run::dry_run::conv_memory_sweep(&experiment, a.batch, a.steps, a.device, a.out)?
            })?,
            None => bench::run_memory(&bench::MemorySweep {
                hidden: a.hidden,
                batch: a.batch.unwrap_or(bench::ADDING_MEMORY_BATCH),
                steps: a.steps.unwrap_or_else(|| bench::ADDING_MEMORY_STEPS.to_vec()),
                chunks: a.chunks,
                neuron: a.neuron,
                device: a.device,
                out: a.out,
            })?,
        },
        None => {
            let a = args.grid;
            bench::run_grid(&bench::GridSweep {
                hidden: a.hidden,
                batch: a.batch,
                layers: a.layers,
                replicas: a.replicas,
                steps: a.steps,
                reps: a.reps,
                device: a.device,
                copy_mib: a.copy_mib,
                matmul: a.matmul,
                out: a.out,
                profile: a.profile,
            })?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summarize(args: SummarizeArgs) -> Result<ExitCode> {
    use fptt::run::summary::{group, summarize, GroupRow, RunSummaryRow, GROUP_COLUMNS, SUMMARY_COLUMNS};
    let rows = args.dirs.iter().map(|dir| summarize(dir)).collect::<Result<Vec<_>, _>>()?;
    let (header, lines, columns, records): (_, Vec<String>, &[&str], Vec<Vec<String>>) = if args.group {
        let groups = group(&rows);
        (
            GroupRow::MARKDOWN_HEADER,
            groups.iter().map(|g| g.markdown()).collect(),
            &GROUP_COLUMNS,
            groups.iter().map(|g| g.csv_record()).collect(),
        )
    } else {
        (
            RunSummaryRow::MARKDOWN_HEADER,
            rows.iter().map(|r| r.markdown()).collect(),
            &SUMMARY_COLUMNS,
            rows.iter().map(|r| r.csv_record()).collect(),
        )
    };
    println!("{header}");
    for line in &lines {
        println!("{line}");
    }
    if let Some(out) = &args.out {
        let mut csv = csv::Writer::from_path(out).with_context(|| format!("writing {}", out.display()))?;
        csv.write_record(columns)?;
        for record in &records {
            csv.write_record(record)?;
        }
        csv.flush()?;
        println!("csv: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn plot(args: PlotArgs) -> Result<ExitCode> {
    use fptt::plot;
    let (out, title) = (args.output.out.as_deref(), args.output.title.as_deref());
    let written = match &args.what {
        Some(PlotCommand::Kernels { file }) => plot::plot_kernels(file, out, title)?,
        Some(PlotCommand::Bench { file, peer }) => plot::plot_bench(file, peer.as_deref(), out, title)?,
        Some(PlotCommand::Memory { file }) => plot::plot_memory(file, out, title)?,
        None => plot::plot_runs(
            &args.dirs,
            &plot::RunPlotOptions { x: args.x, out: args.output.out.clone(), title: args.output.title.clone() },
        )?,
    };
    println!("figure: {}", written.display());
    Ok(ExitCode::SUCCESS)
}

/// The error and its causes joined by `: ` as `{:#}` does, but a cause whose text its
/// predecessor already ends with (library errors that print their I/O source) said once.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn main() -> ExitCode {
    // --time-limit counts from here, so that it bounds the device setup too.
    let started = Instant::now();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices => devices().map(|_| ExitCode::SUCCESS),
        Command::Train(args) => train(args, started),
        Command::Stream(args) => stream(args),
        Command::Sweep(args) => sweep(args),
        Command::Bench(args) => bench(args),
        Command::Summarize(args) => summarize(args),
        Command::Plot(args) => plot(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
