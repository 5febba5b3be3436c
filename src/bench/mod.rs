//! `fptt bench`: training throughput over a grid of network shapes on one adapter, as a table on
//! stdout and a CSV written after every row (so an interrupted sweep keeps what it measured).
//!
//! The arithmetic of one FPTT step is counted from the shapes, multiply-adds of the matrix-shaped
//! work only (element-wise work is O(B·N) and left out), FLOP = 2·MAC. For hidden layer k with
//! input width I_k and N_k neurons (adaptive threshold, separate input and recurrent maps), and the
//! readout with C outputs on top of N_L:
//!
//!   forward   B·N_k·(I_k + N_k)                 input currents W_x·x, W_r·s
//!             2·B·N_k·2N_k                      the two gates over [d ; m] and [d ; b]
//!             B·C·N_L + B·C·2C                  readout current and gate
//!   backward  2·B·N_k·N_k                       ḡ_d from ḡ_zm·W_m and ḡ_za·W_a
//!             2·N_k·2N_k·B + N_k·(I_k + N_k)·B  weight gradients of W_m, W_a, W_x, W_r
//!             B·I_k·N_k (k > 1)                 ḡ passed to the layer below
//!             C·2C·B + C·N_L·B + B·N_L·C        readout weight gradients and ḡ_s of the top layer
//!
//! A fixed threshold drops the W_a terms; the fused map has the same count as separate maps.
//!
//! Memory traffic is modelled the same way, in f32 elements moved to or from GPU memory, for P
//! trainable parameters, assuming every kernel reads each operand once (perfect tiling):
//!
//!   parameters  2·P        weights read by the forward and by the backward products
//!               P          the gradient written
//!               4·P        the norm pass reads g, W, W̄, λ
//!               11·P       the update reads W, g, W̄, λ, m, v and writes W, W̄, λ, m, v
//!   activations B·(2·I_k + 24·N_k) per layer: the input read twice (forward, weight gradient);
//!               state m, s, b read and written, the tape (d, u, τm, τa and their pre-activations)
//!               written and read back, and the backward's ḡ_u, ḡ_d, ḡ_zm, ḡ_za written and read
//!               B·(2·N_L + 16·C) for the readout, likewise
//!
//! so large layers at small batch are bound by the 18·P term: the parameters and optimizer state
//! cross memory about 18 times per step, whatever the batch.
//!
//! Against the adapter's own ceilings, measured once per sweep: a large buffer copy (bytes read
//! plus written per second) and `bench_matmul`, a square product through the training kernels'
//! matrix-product template (`shaders/shared/matmul.wgsl`), with the same tile shape.
//!
//! This module owns the measurements and their CSV records; [`drivers`] runs the `fptt bench`
//! commands (adapter, sweep, table on stdout, CSV files).

pub mod conv;
mod drivers;
mod network;

pub use drivers::{
    run_conv, run_conv_memory, run_grid, run_memory, run_peer_check, BenchError, ConvMemorySweep, ConvSweep, GridSweep,
    MemorySweep, PeerCheck,
};
pub use network::{run_network, NetworkBench, NETWORK_CSV_HEADER, NETWORK_KERNELS_CSV_HEADER};

use crate::gpu::GpuContext;
use crate::learn::{check_fits, Engine, EngineError, SizeLimits};
use crate::model::conv::{ConvNetSpec, MemoryEstimate, MemoryRule};
use crate::model::{init_params, ModelConfig};
use crate::rng::Rng;
use crate::settings::{AuxTargets, InitialState, Optimizer, SequenceBatch, Targets, TrainingSettings};
use std::rc::Rc;
use std::time::Instant;

/// Multiply-adds of the matrix-shaped work of one training step (see the module comment).
pub fn step_macs(cfg: &ModelConfig, batch: usize) -> u64 {
    let b = batch as u64;
    let gates = if cfg.adaptive() { 2 } else { 1 };
    let mut macs = 0u64;
    for k in 0..cfg.layers() {
        let (i, n) = (cfg.layer_input(k) as u64, cfg.hidden[k] as u64);
        macs += b * n * (i + n) + gates * b * n * 2 * n; // forward
        macs += gates * b * n * n + gates * n * 2 * n * b + n * (i + n) * b; // backward
        if k > 0 {
            macs += b * i * n;
        }
    }
    let (c, top) = (cfg.outputs as u64, cfg.top_hidden() as u64);
    macs += b * c * top + b * c * 2 * c; // readout forward
    macs += c * 2 * c * b + c * top * b + b * top * c; // readout backward
    macs
}

/// f32 elements moved to or from GPU memory by one training step (see the module comment).
pub fn step_traffic_floats(cfg: &ModelConfig, batch: usize) -> u64 {
    let b = batch as u64;
    let params = crate::model::ParamLayout::new(cfg).trainable_len as u64;
    let mut floats = 18 * params;
    for k in 0..cfg.layers() {
        let (i, n) = (cfg.layer_input(k) as u64, cfg.hidden[k] as u64);
        floats += b * (2 * i + 24 * n);
    }
    floats + b * (2 * cfg.top_hidden() as u64 + 16 * cfg.outputs as u64)
}

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct BenchRow {
    pub hidden: usize,
    pub layers: usize,
    pub batch: usize,
    /// Models stepped together; the rates below count all of them.
    pub replicas: usize,
    pub steps: usize,
    pub ms_per_step: f64,
    pub sample_steps_per_s: f64,
    pub dispatches_per_step: usize,
    pub gpu_bytes: u64,
    pub gflop_per_step: f64,
    pub gflop_per_s: f64,
    pub gb_per_step: f64,
    pub gb_per_s: f64,
    /// The matrix-product tile shape (`MatmulTiling::code`).
    pub matmul_tiling: String,
    /// Whether the reductions ran on subgroup operations (`Engine::subgroup_reductions`).
    pub subgroup_reductions: bool,
    /// GPU time per kernel over one profiled sequence (empty without profiling, or where the
    /// adapter has no timestamp queries).
    pub kernels: Vec<crate::gpu::KernelTime>,
}

/// The benchmark's network: a classifier with `layers` hidden layers of `hidden` adaptive LTC
/// neurons (separate input and recurrent maps), one input per step and 10 classes, trained with
/// Adamax (lr 1e-3), α = 0.1, β = 0.5, clip 1 and the auxiliary table: the S-MNIST recipe.
pub fn bench_network(hidden: usize, layers: usize, steps: usize) -> (ModelConfig, TrainingSettings) {
    let mut cfg = ModelConfig::classifier(1, hidden, 10, steps);
    cfg.hidden = vec![hidden; layers];
    (cfg, TrainingSettings::classification(Optimizer::Adamax, 1e-3, AuxTargets::Table))
}

/// The benchmark's data: inputs `U(0,1)`, random labels and membranes `U(0,1)`, from a fixed seed.
pub fn bench_data(cfg: &ModelConfig, batch: usize) -> (SequenceBatch, InitialState) {
    let steps = cfg.steps;
    let mut rng = Rng::new(2);
    let data = SequenceBatch {
        steps,
        batch,
        inputs_per_step: 1,
        inputs: (0..steps * batch).map(|_| rng.uniform() as f32).collect(),
        targets: Targets::Labels((0..batch).map(|_| rng.below(10) as u32).collect()),
    };
    let init = InitialState::uniform(&cfg.hidden, batch, &mut rng);
    (data, init)
}

/// Time `reps` sequences of `steps` FPTT steps (after one warm-up sequence) of [`bench_network`],
/// `replicas` models stepped together (each from its own initial weights, on the same data).
/// With `profile`, one more sequence then runs with a timestamp around every dispatch, and its
/// per-kernel times come back in [`BenchRow::kernels`] (the timed sequences run unprofiled).
/// Rates count every replica's work: sample-steps, FLOP and bytes are R times one model's.
#[allow(clippy::too_many_arguments)]
pub fn measure(
    ctx: &Rc<GpuContext>,
    hidden: usize,
    layers: usize,
    batch: usize,
    replicas: usize,
    steps: usize,
    reps: usize,
    profile: bool,
) -> Result<BenchRow, EngineError> {
    let (cfg, settings) = bench_network(hidden, layers, steps);
    check_fits(&SizeLimits::of(ctx), &cfg, &settings, batch, replicas)?;
    let inits: Vec<_> = (0..replicas).map(|r| init_params(&cfg, 1 + r as u64)).collect();
    let hyper = crate::learn::ReplicaHyper::of(&settings);
    let packed: Vec<_> = inits.iter().map(|init| (init, hyper)).collect();
    let mut engine = Engine::with_replicas(ctx.clone(), &cfg, &settings, batch, &packed)?;
    let (data, init) = bench_data(&cfg, batch);
    let (batches, states) = (vec![&data; replicas], vec![&init; replicas]);
    let train = |engine: &mut Engine| -> Result<(), EngineError> {
        for outcome in engine.train_replicas(&batches, &states)? {
            outcome?;
        }
        Ok(())
    };
    train(&mut engine)?;
    let start = Instant::now();
    for _ in 0..reps {
        train(&mut engine)?;
    }
    let seconds = start.elapsed().as_secs_f64() / (reps * steps) as f64;
    let mut kernels = Vec::new();
    if profile && engine.enable_profiling() {
        train(&mut engine)?;
        kernels = engine.kernel_times().0;
    }
    let r = replicas as f64;
    let gflop = r * 2.0 * step_macs(&cfg, batch) as f64 / 1e9;
    let gb = r * 4.0 * step_traffic_floats(&cfg, batch) as f64 / 1e9;
    Ok(BenchRow {
        kernels,
        hidden,
        layers,
        batch,
        replicas,
        steps,
        ms_per_step: seconds * 1e3,
        sample_steps_per_s: r * batch as f64 / seconds,
        dispatches_per_step: engine.dispatches_per_step(),
        matmul_tiling: engine.matmul_tiling().code(),
        subgroup_reductions: engine.subgroup_reductions(),
        gpu_bytes: engine.gpu_bytes(),
        gflop_per_step: gflop,
        gflop_per_s: gflop / seconds,
        gb_per_step: gb,
        gb_per_s: gb / seconds,
    })
}

/// What a peer implementation needs to replay one sequence of [`bench_network`] training and
/// compare: the start (`start.safetensors`: every parameter), the data (`data.safetensors`:
/// `inputs [T, B, 1]`, `labels [B]` as f32, `membrane [B, N]`), and the engine's state after the
/// sequence's T updates (`after.safetensors`: parameters, `.wbar`, `.lambda`, `.exp_avg`,
/// `.exp_inf`, `q`). Metadata of each file records the settings and the adapter.
pub fn export_peer_check(
    ctx: &Rc<GpuContext>,
    hidden: usize,
    batch: usize,
    steps: usize,
    dir: &std::path::Path,
) -> Result<(), PeerCheckError> {
    use crate::checkpoint::save;
    use crate::tensor::{Tensor, TensorMap};
    let (cfg, settings) = bench_network(hidden, 1, steps);
    check_fits(&SizeLimits::of(ctx), &cfg, &settings, batch, 1)?;
    let params = init_params(&cfg, 1);
    let mut engine = Engine::new(ctx.clone(), &cfg, &settings, batch, &params)?;
    let (data, init) = bench_data(&cfg, batch);
    let mut meta = std::collections::BTreeMap::new();
    for (k, v) in [
        ("hidden", hidden.to_string()),
        ("batch", batch.to_string()),
        ("steps", steps.to_string()),
        ("optimizer", "adamax".to_string()),
        ("lr", settings.lr.to_string()),
        ("alpha", settings.alpha.to_string()),
        ("beta", settings.beta.to_string()),
        ("clip", settings.clip.to_string()),
        ("aux", "table".to_string()),
        ("adapter", ctx.adapter_name().to_string()),
        ("backend", ctx.backend_name()),
        ("device_type", ctx.device_type_name().to_string()),
    ] {
        meta.insert(k.to_string(), v);
    }
    std::fs::create_dir_all(dir).map_err(|source| PeerCheckError::Io { path: dir.to_path_buf(), source })?;
    save(&dir.join("start.safetensors"), &params, &meta)?;
    let labels = match &data.targets {
        Targets::Labels(l) => l.iter().map(|&y| y as f32).collect(),
        Targets::Values(_) | Targets::StepValues(_) | Targets::StepLabels(_) => {
            unreachable!("the benchmark network is a classifier")
        }
    };
    let mut inputs = TensorMap::new();
    inputs.insert("inputs".into(), Tensor::new(vec![steps, batch, 1], data.inputs.clone()));
    inputs.insert("labels".into(), Tensor::new(vec![batch], labels));
    inputs.insert("membrane".into(), Tensor::new(vec![batch, hidden], init.membrane[0].clone()));
    save(&dir.join("data.safetensors"), &inputs, &meta)?;
    engine.train_sequence(&data, &init)?;
    save(&dir.join("after.safetensors"), &engine.state()?, &meta)?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum PeerCheckError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("creating {}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

pub const CSV_HEADER: [&str; 22] = [
    "hidden",
    "layers",
    "batch",
    "steps",
    "ms_per_step",
    "sample_steps_per_s",
    "dispatches_per_step",
    "gpu_bytes",
    "gflop_per_step",
    "gflop_per_s",
    "matmul_ceiling_gflop_per_s",
    "share_of_matmul_ceiling",
    "gb_per_step",
    "gb_per_s",
    "copy_ceiling_gb_per_s",
    "share_of_copy_ceiling",
    "adapter",
    "backend",
    "device_type",
    "matmul_tiling",
    "subgroup_reductions",
    // Last, so that files from before replicas keep their column positions.
    "replicas",
];

pub const KERNELS_CSV_HEADER: [&str; 11] = [
    "hidden",
    "layers",
    "batch",
    "kernel",
    "dispatches",
    "total_ms",
    "mean_us",
    "share",
    "adapter",
    "backend",
    "device_type",
];

impl BenchRow {
    /// One `KERNELS_CSV_HEADER` record per profiled kernel, busiest first.
    pub fn kernel_records(&self, ctx: &GpuContext) -> Vec<Vec<String>> {
        self.kernels
            .iter()
            .map(|k| {
                vec![
                    self.hidden.to_string(),
                    self.layers.to_string(),
                    self.batch.to_string(),
                    k.kernel.clone(),
                    k.dispatches.to_string(),
                    format!("{:.3}", k.total_ms),
                    format!("{:.3}", k.mean_us),
                    format!("{:.4}", k.share),
                    ctx.adapter_name().to_string(),
                    ctx.backend_name(),
                    ctx.device_type_name().to_string(),
                ]
            })
            .collect()
    }

    pub fn csv_record(&self, ctx: &GpuContext, ceilings: &Ceilings) -> Vec<String> {
        vec![
            self.hidden.to_string(),
            self.layers.to_string(),
            self.batch.to_string(),
            self.steps.to_string(),
            format!("{:.3}", self.ms_per_step),
            format!("{:.1}", self.sample_steps_per_s),
            self.dispatches_per_step.to_string(),
            self.gpu_bytes.to_string(),
            format!("{:.6}", self.gflop_per_step),
            format!("{:.3}", self.gflop_per_s),
            format!("{:.3}", ceilings.matmul_gflop_per_s),
            format!("{:.3}", self.gflop_per_s / ceilings.matmul_gflop_per_s),
            format!("{:.6}", self.gb_per_step),
            format!("{:.3}", self.gb_per_s),
            format!("{:.3}", ceilings.copy_gb_per_s),
            format!("{:.3}", self.gb_per_s / ceilings.copy_gb_per_s),
            ctx.adapter_name().to_string(),
            ctx.backend_name(),
            ctx.device_type_name().to_string(),
            self.matmul_tiling.clone(),
            self.subgroup_reductions.to_string(),
            self.replicas.to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_macs_counts_the_matrix_work_of_one_layer() {
        let cfg = ModelConfig::classifier(1, 4, 2, 3);
        // forward 1·4·(1+4) + 2·1·4·8 = 84; backward 2·16 + 2·4·8 + 4·5 = 116;
        // readout 2·4 + 2·4 + 2·4 + 4·2 + 4·2 = 40, all at batch 1.
        assert_eq!(step_macs(&cfg, 1), 84 + 116 + 40);
        assert_eq!(step_macs(&cfg, 3), 3 * (84 + 116 + 40));
    }

    #[test]
    fn step_traffic_counts_parameters_eighteen_times_plus_activations() {
        let cfg = ModelConfig::classifier(1, 4, 2, 3);
        let params: u64 = crate::model::ParamLayout::new(&cfg).trainable().map(|s| s.len() as u64).sum();
        // W_x 4 + c_x 4, W_r 16 + c_r 4, W_m 32 + c_m 4, W_a 32 + c_a 4, W_o 8 + c_o 2, W_om 8 + c_om 2,
        // three slopes: 123 trainable floats.
        assert_eq!(params, 123);
        let activations = |b: u64| b * (2 + 24 * 4) + b * (2 * 4 + 16 * 2);
        assert_eq!(step_traffic_floats(&cfg, 1), 18 * 123 + activations(1));
        assert_eq!(step_traffic_floats(&cfg, 5), 18 * 123 + activations(5));
    }

    /// One-step FPTT and BPTT at every T, each row `ConvNetSpec::memory`'s estimate at that T.
    /// No adapter: nothing here needs a GPU (the DVS file's rows: `run::dry_run`'s tests).
    #[test]
    fn conv_rows_are_the_specs_estimates_at_each_length() {
        let spec = ConvNetSpec::dvs_gesture();
        let rows = conv_memory_rows("dvs-gesture", &spec, 16, &[20, 100]);
        let keys: Vec<(&str, usize, usize)> = rows.iter().map(|r| (r.rule.as_str(), r.chunk, r.steps)).collect();
        assert_eq!(keys, vec![("fptt", 1, 20), ("bptt", 20, 20), ("fptt", 1, 100), ("bptt", 100, 100)]);
        for row in &rows {
            let rule = if row.rule == "bptt" { MemoryRule::Bptt } else { MemoryRule::Fptt { chunk: 1 } };
            let at_t = ConvNetSpec { steps: row.steps, ..spec.clone() };
            assert_eq!(row.estimate.as_ref(), Some(&at_t.memory(16, rule)), "{} at T = {}", row.rule, row.steps);
            // Not measured: the CSV's gpu_bytes and learning_bytes stay empty, the note says why.
            assert_eq!((row.gpu_bytes, row.learning_bytes), (None, None));
            assert!(row.note.contains("estimated from the shapes"), "{}", row.note);
            assert_eq!(row.neuron, crate::model::NeuronKind::Ltc);
            assert_eq!((row.network.as_str(), row.hidden, row.batch), ("dvs-gesture", 512, 16));
        }
        assert_eq!(conv_memory_default_steps(20), vec![20, 100]);
        assert_eq!(conv_memory_default_steps(100), vec![100]);
        assert_eq!(conv_memory_default_steps(300), vec![100, 300]);
        // The parts, one line each, in MiB as the dry run prints them.
        let text = estimate_parts(rows[0].estimate.as_ref().unwrap(), "  ");
        assert_eq!(text.lines().count(), 7);
        assert!(text.lines().all(|l| l.starts_with("  ") && l.ends_with(" MiB")), "{text}");
    }
}

/// The adapter's own ceilings, measured once per `fptt bench`.
#[derive(Debug, Clone, Copy)]
pub struct Ceilings {
    /// A large buffer-to-buffer copy, bytes read plus written per second.
    pub copy_gb_per_s: f64,
    /// `bench_matmul` (the matrix-product template, `KernelTable::tiling`) on a square product of `matmul_size`.
    pub matmul_gflop_per_s: f64,
    pub matmul_size: usize,
}

/// Measure the copy bandwidth (`copy_mib` MiB, 4 copies) and the rate of a `size`³ matrix product
/// (3 dispatches), after one warm-up of each. Wall time around a waited submission.
pub fn ceilings(ctx: &Rc<GpuContext>, copy_mib: usize, size: usize) -> Result<Ceilings, EngineError> {
    use crate::gpu::{ArgArena, Dispatch, GpuBuffer, KernelTable, MemoryLedger};
    use crate::learn::kernel_args::{InputGradArgs, StepInfo};
    let ledger = MemoryLedger::default();
    let floats = copy_mib << 18;
    let src = GpuBuffer::storage(ctx, &ledger, "bench copy source", floats)?;
    let dst = GpuBuffer::storage(ctx, &ledger, "bench copy destination", floats)?;
    let copies = |n: usize| -> Result<f64, EngineError> {
        let mut encoder =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bench copy") });
        for _ in 0..n {
            encoder.copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, 0, (floats * 4) as u64);
        }
        let start = Instant::now();
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()?;
        Ok(start.elapsed().as_secs_f64())
    };
    copies(1)?;
    let reps = 4;
    let copy_gb_per_s = (2 * floats * 4 * reps) as f64 / copies(reps)? / 1e9;

    let kernels = KernelTable::new(ctx);
    let n = size;
    let b = GpuBuffer::storage(ctx, &ledger, "bench matmul B", n * n)?;
    let ac = GpuBuffer::storage(ctx, &ledger, "bench matmul A, C", 2 * n * n)?;
    let mut rng = Rng::new(3);
    b.write(ctx, 0, &(0..n * n).map(|_| rng.uniform() as f32).collect::<Vec<_>>());
    ac.write(ctx, 0, &(0..n * n).map(|_| rng.uniform() as f32).collect::<Vec<_>>());
    let mut arena = ArgArena::default();
    let args = InputGradArgs {
        batch: n as u32,
        cols: n as u32,
        k1: n as u32,
        g1: 0,
        w1: 0,
        out: (n * n) as u32,
        ..Default::default()
    };
    let dispatch: Dispatch = kernels.matmul("bench_matmul", arena.push(&args), n, n, 1);
    let args_buffer = arena.upload(ctx, &ledger, "bench args");
    let mut steps = ArgArena::default();
    steps.push(&StepInfo::default());
    let steps_buffer = steps.upload(ctx, &ledger, "bench step");
    let storage = kernels.storage_bind_group(ctx, "bench storage", [&b, &b, &b, &ac]);
    let arguments = kernels.argument_bind_group(ctx, "bench arguments", &args_buffer, &steps_buffer);
    let products = |n_products: usize| -> Result<f64, EngineError> {
        let mut encoder =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bench matmul") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("bench matmul"),
                timestamp_writes: None,
            });
            pass.set_bind_group(0, &storage, &[]);
            for _ in 0..n_products {
                kernels.record(&mut pass, &arguments, &[dispatch], 0, 1, None);
            }
        }
        let start = Instant::now();
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()?;
        Ok(start.elapsed().as_secs_f64())
    };
    products(1)?;
    let reps = 3;
    let matmul_gflop_per_s = (2 * n * n * n * reps) as f64 / products(reps)? / 1e9;
    Ok(Ceilings { copy_gb_per_s, matmul_gflop_per_s, matmul_size: n })
}

/// One row of `fptt bench memory`: what an engine for the adding-task network holds on the GPU
/// for one learning rule and sequence length, or for a convolutional experiment's network what
/// its shapes say it would hold ([`conv_memory_rows`]).
#[derive(Debug, Clone)]
pub struct MemoryRow {
    /// `adding` for the adding-task network, else the experiment's name (`dvs-gesture`): the
    /// neuron and hidden columns alone do not tell a conv network from a dense one.
    pub network: String,
    pub rule: String,
    /// Steps per update (T for BPTT and per-sequence e-prop).
    pub chunk: usize,
    pub neuron: crate::model::NeuronKind,
    /// Hidden neurons (of a conv network, its dense layer after the flatten).
    pub hidden: usize,
    pub batch: usize,
    pub steps: usize,
    /// Every buffer the engine holds; `None` when the adapter cannot bind one of them, or when
    /// no engine was built (a conv network: see `estimate`).
    pub gpu_bytes: Option<u64>,
    /// Without the sequence's own data (inputs, per-step infos, statistics): what the rule keeps.
    pub learning_bytes: Option<u64>,
    /// The bytes counted from the shapes (`ConvNetSpec::memory`) and their parts; `None` for
    /// the dense network, whose engine is measured instead.
    pub estimate: Option<MemoryEstimate>,
    pub note: String,
}

pub const MEMORY_CSV_HEADER: [&str; 14] = [
    "network",
    "rule",
    "chunk",
    "neuron",
    "hidden",
    "batch",
    "steps",
    "gpu_bytes",
    "learning_bytes",
    "estimated_bytes",
    "note",
    "adapter",
    "backend",
    "device_type",
];

/// Sequence lengths of `fptt bench memory` on the adding-task network when `--steps` is not given.
pub const ADDING_MEMORY_STEPS: [usize; 5] = [100, 200, 500, 1000, 2000];
/// Its batch when `--batch` is not given.
pub const ADDING_MEMORY_BATCH: usize = 16;

/// Sequence lengths of `fptt bench memory --experiment` when `--steps` is not given: the
/// experiment's own frames and 100 (for DVS Gesture the 20 frames it trains on and the 100 that
/// issue #18 compares BPTT at), ascending, once each.
pub fn conv_memory_default_steps(frames: usize) -> Vec<usize> {
    let mut steps = vec![frames, 100];
    steps.sort_unstable();
    steps.dedup();
    steps
}

/// The rules a conv network is estimated for: one-step FPTT, which keeps no per-step history,
/// and BPTT, which keeps every frame's state and tape.
pub const CONV_MEMORY_RULES: [MemoryRule; 2] = [MemoryRule::Fptt { chunk: 1 }, MemoryRule::Bptt];

/// The note of a conv row without a measurement.
pub const CONV_ESTIMATE_NOTE: &str = "estimated from the shapes (ConvNetSpec::memory)";

/// `fptt bench memory --experiment`'s rows for the conv network `spec` of experiment `network`:
/// for every length T of `steps`, one row per rule of [`CONV_MEMORY_RULES`] ([`conv_memory_row`]).
pub fn conv_memory_rows(network: &str, spec: &ConvNetSpec, batch: usize, steps: &[usize]) -> Vec<MemoryRow> {
    steps.iter().flat_map(|&t| CONV_MEMORY_RULES.map(|rule| conv_memory_row(network, spec, batch, t, rule))).collect()
}

/// One row of `fptt bench memory --experiment`: `ConvNetSpec::memory`'s estimate for `rule` at
/// `batch` with the spec's own `steps` replaced by T = `steps`. Nothing is allocated and no adapter
/// is needed; `gpu_bytes` and `learning_bytes` stay empty until [`measured_conv_memory`] can fill
/// them in.
pub fn conv_memory_row(network: &str, spec: &ConvNetSpec, batch: usize, steps: usize, rule: MemoryRule) -> MemoryRow {
    let at_t = ConvNetSpec { steps, ..spec.clone() };
    let (name, chunk) = match rule {
        MemoryRule::Fptt { chunk } => ("fptt", chunk),
        MemoryRule::Bptt => ("bptt", steps),
    };
    MemoryRow {
        network: network.to_string(),
        rule: name.to_string(),
        chunk,
        // The conv cells, the dense layer and the readout are all LTC neurons.
        neuron: crate::model::NeuronKind::Ltc,
        hidden: spec.hidden,
        batch,
        steps,
        gpu_bytes: None,
        learning_bytes: None,
        estimate: Some(at_t.memory(batch, rule)),
        note: CONV_ESTIMATE_NOTE.to_string(),
    }
}

/// The parts of a conv memory estimate, one line each (`indent`, what it holds, MiB): the
/// breakdown `fptt bench memory --experiment` prints under each row and `fptt train --dry-run`
/// under each rule, the same text in both.
pub fn estimate_parts(m: &MemoryEstimate, indent: &str) -> String {
    let mib = |bytes: u64| bytes as f64 / (1u64 << 20) as f64;
    // Padded by what a terminal shows: a combining mark (the bar of W̄) takes no column.
    let shown = |text: &str| text.chars().filter(|c| !('\u{300}'..='\u{36f}').contains(c)).count();
    let width = m.parts.iter().map(|(part, _)| shown(part)).max().unwrap_or(0);
    m.parts
        .iter()
        .map(|(part, bytes)| {
            let pad = " ".repeat(width - shown(part));
            format!("{indent}{part}{pad}  {:>9.1} MiB\n", mib(*bytes))
        })
        .collect()
}

/// What an engine for a conv network holds, as [`memory_row`] measures it for the dense network:
/// `(gpu_bytes, learning_bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasuredBytes {
    pub gpu_bytes: u64,
    pub learning_bytes: u64,
}

/// The bytes of an engine built for `spec` (at `spec.steps` frames), `batch` and `rule`, as
/// [`memory_row`] measures the dense network: `Ok(Err(why))` where the shapes do not fit this
/// adapter's limits or this host's free memory (checked before anything is allocated).
pub fn measured_conv_memory(
    ctx: &Rc<GpuContext>,
    spec: &ConvNetSpec,
    batch: usize,
    rule: MemoryRule,
) -> Result<Result<MeasuredBytes, String>, EngineError> {
    use crate::settings::{AuxTargets, LearningRule};
    let cfg = ModelConfig::convolutional(spec.clone());
    let rule = match rule {
        MemoryRule::Fptt { chunk } => LearningRule::Fptt { chunk },
        MemoryRule::Bptt => LearningRule::Bptt,
    };
    let settings =
        TrainingSettings { rule, ..TrainingSettings::classification(Optimizer::Adamax, 3e-3, AuxTargets::Uniform) };
    match check_fits(&SizeLimits::of(ctx), &cfg, &settings, batch, 1) {
        Ok(_) => {}
        Err(EngineError::Gpu(crate::gpu::GpuError::Limit(message))) => return Ok(Err(message)),
        Err(e) => return Err(e),
    }
    let engine = Engine::new(ctx.clone(), &cfg, &settings, batch, &init_params(&cfg, 1))?;
    Ok(Ok(MeasuredBytes { gpu_bytes: engine.gpu_bytes(), learning_bytes: engine.learning_bytes() }))
}

/// The adding-task network (method §8: two inputs, one output, fused map) with one hidden layer of
/// `hidden` `neuron`s (threshold 0.5, or adaptive for ALIF), built for `rule` at length `steps`;
/// nothing is trained.
pub fn memory_row(
    ctx: &Rc<GpuContext>,
    rule: crate::settings::LearningRule,
    neuron: crate::model::NeuronKind,
    hidden: usize,
    batch: usize,
    steps: usize,
) -> Result<MemoryRow, EngineError> {
    use crate::settings::LearningRule;
    let cfg = ModelConfig {
        inputs: 2,
        hidden: vec![hidden],
        outputs: 1,
        steps,
        threshold: if neuron == crate::model::NeuronKind::Alif {
            crate::model::ThresholdMode::Adaptive
        } else {
            crate::model::ThresholdMode::Fixed(0.5)
        },
        fused_recurrent: true,
        trainable_slopes: true,
        batch_norm: false,
        neuron,
        conv: None,
    };
    let settings = TrainingSettings { rule, ..TrainingSettings::regression(Optimizer::Adam, 1e-3) };
    let (name, chunk) = match rule {
        LearningRule::Fptt { chunk } => ("fptt", chunk),
        LearningRule::Bptt => ("bptt", steps),
        LearningRule::Eprop(e) => ("eprop", if e.update_every_step { 1 } else { steps }),
    };
    let mut row = MemoryRow {
        network: "adding".to_string(),
        rule: name.to_string(),
        chunk,
        neuron,
        hidden,
        batch,
        steps,
        gpu_bytes: None,
        learning_bytes: None,
        estimate: None,
        note: String::new(),
    };
    let fits = check_fits(&SizeLimits::of(ctx), &cfg, &settings, batch, 1);
    match fits.and_then(|_| Engine::new(ctx.clone(), &cfg, &settings, batch, &init_params(&cfg, 1))) {
        Ok(engine) => {
            row.gpu_bytes = Some(engine.gpu_bytes());
            row.learning_bytes = Some(engine.learning_bytes());
        }
        Err(EngineError::Gpu(crate::gpu::GpuError::Limit(message))) => row.note = message,
        Err(e) => return Err(e),
    }
    Ok(row)
}

impl MemoryRow {
    /// A conv row's measurement, from [`measured_conv_memory`]: the note then says which column is which.
    pub fn set_measured(&mut self, m: MeasuredBytes) {
        self.gpu_bytes = Some(m.gpu_bytes);
        self.learning_bytes = Some(m.learning_bytes);
        self.note = "gpu_bytes measured on the engine, estimated_bytes from the shapes".to_string();
    }

    /// The estimate's total (the CSV's `estimated_bytes`).
    pub fn estimated_bytes(&self) -> Option<u64> {
        self.estimate.as_ref().map(|e| e.total)
    }

    pub fn csv_record(&self, ctx: &GpuContext) -> Vec<String> {
        let opt = |v: Option<u64>| v.map_or(String::new(), |b| b.to_string());
        vec![
            self.network.clone(),
            self.rule.clone(),
            self.chunk.to_string(),
            self.neuron.name().to_string(),
            self.hidden.to_string(),
            self.batch.to_string(),
            self.steps.to_string(),
            opt(self.gpu_bytes),
            opt(self.learning_bytes),
            opt(self.estimated_bytes()),
            self.note.clone(),
            ctx.adapter_name().to_string(),
            ctx.backend_name(),
            ctx.device_type_name().to_string(),
        ]
    }
}
