//! Training settings shared by the CPU reference and the GPU learning rules (method §4, §5), and
//! the per-sequence inputs both consume. Plain data: no GPU types, no file formats.

use crate::model::{ModelConfig, NeuronKind};
use crate::rng::Rng;

/// Optimizer with PyTorch semantics (method §5); β1 = 0.9, β2 = 0.999, ε = 1e-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    Adam,
    Adamax,
}

pub const ADAM_BETA1: f64 = 0.9;
pub const ADAM_BETA2: f64 = 0.999;
pub const ADAM_EPS: f64 = 1e-8;

/// The auxiliary ("oracle") targets of the classification loss (method §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuxTargets {
    /// No auxiliary term: `ℓ_t = (t+1)/T · NLL` only.
    Off,
    /// The table `q`, read before and updated after every step t < T−1.
    Table,
    /// Uniform targets `1/C`; the table is neither read nor updated (the first E epochs).
    Uniform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Per-step weighted NLL plus the auxiliary term; `targets` are class labels.
    Classification { aux: AuxTargets },
    /// Per-step weighted MSE against the final target (adding task); `targets` are values.
    Regression,
}

/// When the weights are updated and how far back each update's gradient reaches (method §3, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearningRule {
    /// FPTT with an update after every `chunk` steps (the last chunk of a sequence may be
    /// shorter): the gradient of the chunk's summed task loss, backpropagated through the chunk's
    /// steps (the state entering the chunk is a constant), goes through the FPTT update of method §5
    /// (regulariser, λ, W̄). `chunk = 1` is the paper's online rule, truncation 1.
    Fptt { chunk: usize },
    /// BPTT, the offline baseline: one update per sequence with the gradient of `Σ_t ℓ_t` through
    /// all T steps, clipped by the global norm, then a plain optimizer step: no W̄, no λ, no
    /// regulariser (α and β are unused).
    Bptt,
    /// e-prop (Bellec et al. 2020; method §7), the online baseline for LIF/ALIF networks with one
    /// hidden layer: per-synapse eligibility traces combined with a learning signal from the
    /// readout error, clipped, then a plain optimizer step (no W̄, no λ, like BPTT). Both the CPU
    /// reference ([`crate::reference::eprop`]) and the GPU engine (`shaders/eprop_*.wgsl`) run it.
    Eprop(EpropSettings),
}

/// The options of e-prop. [`EpropSettings::default`] is one update per sequence, symmetric
/// feedback, the readout filter on and the reset kept in the trace: the variant that is exact
/// (equal to BPTT) for a network without recurrent weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpropSettings {
    /// An update after every step (online: the weights change within the sequence, the traces
    /// carry on), or one update per sequence with the gradient summed over its steps.
    pub update_every_step: bool,
    /// What carries the readout error back to the hidden neurons.
    pub feedback: Feedback,
    /// Filter the eligibility by the readout's own dynamics (its leak `1 − τo` and gate), so that
    /// the error at step t also reaches the spikes of earlier steps through the readout's memory,
    /// as the paper's low-pass filter `F_κ` does; off, the learning signal of step t meets the
    /// eligibility of step t only.
    pub readout_filter: bool,
    /// Keep the reset's derivative `−u·∂s'/∂θ` in the membrane trace (as the backward of method §3
    /// does), or drop it, as Bellec et al. do (the spike in `m' = (1 − s')⊙u` taken as a constant).
    pub reset_in_trace: bool,
}

impl Default for EpropSettings {
    fn default() -> Self {
        EpropSettings {
            update_every_step: false,
            feedback: Feedback::Symmetric,
            readout_filter: true,
            reset_in_trace: true,
        }
    }
}

impl EpropSettings {
    /// Whether e-prop is defined for `cfg` (the CPU reference and the GPU engine alike): one
    /// hidden LIF or ALIF layer without batch norm or conv cells. The error says why not.
    pub fn check_model(cfg: &ModelConfig) -> Result<(), String> {
        // First: a conv network's cells are LTC whatever `neuron` says, so the LTC message below
        // would send the user to a key that cannot help.
        if cfg.conv.is_some() {
            return Err("convolutional cells are not supported: e-prop's eligibility traces are defined here for \
                 one dense LIF or ALIF layer, and the cells of a convolutional network are LTC neurons, whose \
                 gates read the input current; train convolutional networks with FPTT or BPTT"
                .into());
        }
        if cfg.neuron == NeuronKind::Ltc {
            return Err("LTC neurons are not supported: their gates τm = σ(a_m·(W_m·[d ; m] + c_m)) and τa read the \
                 input current d, so every input and recurrent weight also acts on each neuron's decay and adaptation, \
                 and the eligibility trace would have to follow every weight through both gates, which e-prop does not \
                 define; use LIF or ALIF neurons, or train LTC networks with FPTT or BPTT"
                .into());
        }
        if cfg.layers() != 1 {
            return Err(format!(
                "one hidden layer only (this network has {}): the traces of a layer that reads another layer's \
                 spikes are not implemented",
                cfg.layers()
            ));
        }
        if cfg.batch_norm {
            return Err("batch norm is not supported: its statistics couple the samples of a batch, so per-sample \
                 eligibility traces are not its gradient"
                .into());
        }
        Ok(())
    }
}

/// e-prop's random feedback matrix `[C, N]`: Xavier-normal (as `W_o`'s initialisation) from `seed`.
pub fn random_feedback(seed: u64, outputs: usize, neurons: usize) -> Vec<f64> {
    let mut rng = Rng::derive(seed, "eprop-feedback");
    let std = (2.0 / (outputs + neurons) as f64).sqrt();
    (0..outputs * neurons).map(|_| rng.normal() * std).collect()
}

/// e-prop's feedback matrix `B` `[C, N]` (the shape of `W_o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// `B = W_o`, the current readout weights ("symmetric e-prop").
    Symmetric,
    /// A fixed random matrix, Xavier-normal like `W_o`'s initialisation, drawn from this seed
    /// ("random e-prop").
    Random { seed: u64 },
}

/// One update's hyper-parameters (method §5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingSettings {
    pub optimizer: Optimizer,
    pub lr: f32,
    pub alpha: f32,
    pub beta: f32,
    /// Global gradient-norm clip `c`.
    pub clip: f32,
    pub loss: LossKind,
    /// FPTT with chunks of K steps, BPTT or e-prop; the CPU reference and the GPU engine both
    /// follow it.
    pub rule: LearningRule,
}

impl TrainingSettings {
    /// The classification defaults: α = 0.1, β = 0.5, clip 1, online FPTT (an update after every step).
    pub fn classification(optimizer: Optimizer, lr: f32, aux: AuxTargets) -> Self {
        TrainingSettings {
            optimizer,
            lr,
            alpha: 0.1,
            beta: 0.5,
            clip: 1.0,
            loss: LossKind::Classification { aux },
            rule: LearningRule::Fptt { chunk: 1 },
        }
    }

    /// The adding-task defaults: α = 0.5, β = 0.5, clip 1, online FPTT (an update after every step).
    pub fn regression(optimizer: Optimizer, lr: f32) -> Self {
        TrainingSettings {
            optimizer,
            lr,
            alpha: 0.5,
            beta: 0.5,
            clip: 1.0,
            loss: LossKind::Regression,
            rule: LearningRule::Fptt { chunk: 1 },
        }
    }
}

/// What a sequence is trained on.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// One class per sample, `[B]`.
    Labels(Vec<u32>),
    /// Regression targets, `[B, C]`.
    Values(Vec<f32>),
    /// A class per sample and step, `[T, B]` (streams: the loss applies at every step with
    /// weight 1, no auxiliary term).
    StepLabels(Vec<u32>),
    /// A regression target per sample and step, `[T, B, C]` (streams: next-value prediction; the
    /// loss applies at every step with weight 1).
    StepValues(Vec<f32>),
}

impl Targets {
    /// Whether every step has its own targets (streams) rather than one per sequence.
    pub fn per_step(&self) -> bool {
        matches!(self, Targets::StepLabels(_) | Targets::StepValues(_))
    }
}

/// A batch of sequences: inputs `[T, B, I]` (time-major, so step t is one contiguous block).
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceBatch {
    pub steps: usize,
    pub batch: usize,
    pub inputs_per_step: usize,
    pub inputs: Vec<f32>,
    pub targets: Targets,
}

impl SequenceBatch {
    /// The inputs of step `t`, `[B, I]`.
    pub fn step(&self, t: usize) -> &[f32] {
        let n = self.batch * self.inputs_per_step;
        &self.inputs[t * n..(t + 1) * n]
    }
}

/// The state a sequence starts from: membrane `m` per hidden layer (`[B, N]`); spikes 0,
/// adaptation `b0` and readout 0 always (method §1).
#[derive(Debug, Clone, PartialEq)]
pub struct InitialState {
    pub membrane: Vec<Vec<f32>>,
}

impl InitialState {
    pub fn zeros(hidden: &[usize], batch: usize) -> Self {
        InitialState { membrane: hidden.iter().map(|&n| vec![0.0; n * batch]).collect() }
    }

    /// `m ~ U[0,1)` from the given generator (method §1: the draw comes from the run's seed).
    pub fn uniform(hidden: &[usize], batch: usize, rng: &mut crate::rng::Rng) -> Self {
        InitialState {
            membrane: hidden.iter().map(|&n| (0..n * batch).map(|_| rng.uniform() as f32).collect()).collect(),
        }
    }
}

/// The losses of one step: the task loss `ℓ_t`, and `ℓ_t − ⟨W,λ⟩ + α/2‖W − W̄‖²` (fixture names),
/// with W, λ, W̄ as they were before the update that step belongs to. With FPTT chunks of K > 1
/// steps every step of a chunk adds the same regulariser (the chunk's total loss is `Σ_t ℓ_t`
/// plus the regulariser once); under BPTT the total loss is the task loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLoss {
    pub task_loss: f64,
    pub total_loss: f64,
}
