//! Convolutional LTC networks (method §9), as shapes only: a stack of conv LTC cells (each
//! `Conv → BN → 2×2 max-pool`, with gate convolutions `Conv_m`, `Conv_a` on `x̂ + m`, `x̂ + b`), dropout,
//! flatten, one dense LTC layer and the LTC readout. Lists every tensor with the authors' PyTorch
//! names and shapes (so that checkpoints can move both ways with their DVS Gesture model), counts
//! the parameters, and estimates the GPU bytes of one-step FPTT against BPTT over T frames. Knows
//! nothing of GPUs.
//!
//! Names are those of the authors' `SNN` module (their `SeqModel` prefixes `network.`): cell k
//! (1-based) is `conv_snn{k}` with `conv1_x`, `conv_tauM`, `conv_tauAdp` (Conv2d) and `BN`, `BN1`,
//! `BN2` (BatchNorm2d); the dense layer is `snn_rec.layer1_x`, `snn_rec.layer1_tauM`,
//! `snn_rec.layer1_tauAdp`; the readout `layer3_x`, `layer3_tauM` and `tau_m_o`.

use super::ModelError;

/// The threshold baseline of the DVS model's cells and dense layer (`b_j0 = 0.5` in
/// `snn_sota_LIF4_dvs_gesture_v4.py`; the dense S-MNIST model uses 0.1). `θ = b0 + β_a·b'`.
pub const CONV_B0: f32 = 0.5;

/// The names of one conv cell's tensors (without `.weight` / `.bias`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvCellNames {
    /// The input convolution `Conv_x` (`conv1_x`).
    pub x: String,
    /// The membrane gate's convolution `Conv_m` (`conv_tauM`).
    pub tau_m: String,
    /// The adaptation gate's convolution `Conv_a` (`conv_tauAdp`).
    pub tau_adp: String,
    /// The batch norms of the input current (`BN`), the membrane gate (`BN1`), the adaptation
    /// gate (`BN2`).
    pub bn_x: String,
    pub bn_m: String,
    pub bn_a: String,
}

impl ConvCellNames {
    /// Cell `k` (0-based): `conv_snn{k+1}.*`.
    pub fn cell(k: usize) -> Self {
        let p = format!("conv_snn{}", k + 1);
        ConvCellNames {
            x: format!("{p}.conv1_x"),
            tau_m: format!("{p}.conv_tauM"),
            tau_adp: format!("{p}.conv_tauAdp"),
            bn_x: format!("{p}.BN"),
            bn_m: format!("{p}.BN1"),
            bn_a: format!("{p}.BN2"),
        }
    }
}

/// One conv cell: its output channels and its (odd, square) kernel; padding is `kernel/2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvCell {
    pub out_channels: usize,
    pub kernel: usize,
}

/// A convolutional LTC network.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvNetSpec {
    /// Input frames `[in_channels, height, width]` (DVS: 2 polarities × 128 × 128).
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub cells: Vec<ConvCell>,
    /// Whether every cell ends with a 2×2 max-pool (stride 2, floor).
    pub pool: bool,
    /// Dropout on the last cell's spikes before the flatten (0.1 in the DVS model).
    pub dropout: f32,
    /// Neurons of the dense LTC layer.
    pub hidden: usize,
    /// Whether the dense layer also reads its own previous spikes, `layer1_x` of `[N, F + N]`
    /// (the v4 script's `is_rec=True`) rather than `[N, F]` (the run the authors logged).
    pub dense_recurrent: bool,
    /// Classes of the readout.
    pub classes: usize,
    /// Whether the readout carries the authors' `tau_m_o` `[C]`: a parameter their forward never
    /// reads but their parameter count includes (its gradient is 0; FPTT's regulariser still moves it).
    pub tau_m_o: bool,
    /// Frames per sample `T` (running statistics and the BPTT tape depend on it).
    pub steps: usize,
}

/// One tensor: its checkpoint name and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvTensor {
    pub name: String,
    pub shape: Vec<usize>,
}

impl ConvTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ConvNetSpec {
    /// The authors' DVS128 Gesture network as logged (`dvs_gesture_lr` in byin-cwi/sFPTT:
    /// 14,116,051 parameters): input 2×128×128, six cells 2→64 (7×7), 64→128 (7×7), 128→128,
    /// 128→256, 256→256, 256→512 (3×3), each pooled (128 → 2), dropout 0.1, flatten to
    /// 512·2·2 = 2048, a dense LTC layer of 512 without recurrent input, 11 classes, 20 frames.
    pub fn dvs_gesture() -> Self {
        let cell = |out_channels, kernel| ConvCell { out_channels, kernel };
        ConvNetSpec {
            in_channels: 2,
            height: 128,
            width: 128,
            cells: vec![cell(64, 7), cell(128, 7), cell(128, 3), cell(256, 3), cell(256, 3), cell(512, 3)],
            pool: true,
            dropout: 0.1,
            hidden: 512,
            dense_recurrent: false,
            classes: 11,
            tau_m_o: true,
            steps: 20,
        }
    }

    /// Refuses shapes the cells cannot compute: no cells, an even kernel (the gates' `k/2`
    /// padding must keep the size), an image pooled away, a zero size.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        if self.cells.is_empty() {
            return bad("a conv network needs at least one cell".into());
        }
        if self.in_channels == 0 || self.hidden == 0 || self.classes == 0 || self.steps == 0 {
            return bad("input channels, hidden size, classes and steps must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        let (mut h, mut w) = (self.height, self.width);
        for (k, cell) in self.cells.iter().enumerate() {
            if cell.out_channels == 0 {
                return bad(format!("cell {} has no output channels", k + 1));
            }
            if cell.kernel % 2 == 0 {
                return bad(format!(
                    "cell {}: kernel {} is even (conv cells pad k/2 and keep the size)",
                    k + 1,
                    cell.kernel
                ));
            }
            if self.pool {
                (h, w) = (h / 2, w / 2);
            }
            if h == 0 || w == 0 {
                return bad(format!("cell {}: the image ({}×{}) is pooled away", k + 1, self.height, self.width));
            }
        }
        Ok(())
    }

    /// The input image `(channels, rows, columns)` of cell `k` (0-based).
    pub fn cell_input(&self, k: usize) -> (usize, usize, usize) {
        if k == 0 {
            (self.in_channels, self.height, self.width)
        } else {
            self.cell_output(k - 1)
        }
    }

    /// The state `(channels, rows, columns)` of cell `k`: its output after the pool.
    pub fn cell_output(&self, k: usize) -> (usize, usize, usize) {
        let (_, h, w) = self.cell_input(k);
        let c = self.cells[k].out_channels;
        if self.pool {
            (c, h / 2, w / 2)
        } else {
            (c, h, w)
        }
    }

    /// Features after the flatten: the last cell's channels × rows × columns (DVS: 2048).
    pub fn flat_features(&self) -> usize {
        let (c, h, w) = self.cell_output(self.cells.len() - 1);
        c * h * w
    }

    /// Every trainable tensor, in the authors' module order.
    pub fn tensors(&self) -> Vec<ConvTensor> {
        let mut t = Vec::new();
        let mut push = |name: String, shape: Vec<usize>| t.push(ConvTensor { name, shape });
        for k in 0..self.cells.len() {
            let names = ConvCellNames::cell(k);
            let (ci, _, _) = self.cell_input(k);
            let (c, kk) = (self.cells[k].out_channels, self.cells[k].kernel);
            push(format!("{}.weight", names.x), vec![c, ci, kk, kk]);
            push(format!("{}.bias", names.x), vec![c]);
            for map in [&names.tau_m, &names.tau_adp] {
                push(format!("{map}.weight"), vec![c, c, kk, kk]);
                push(format!("{map}.bias"), vec![c]);
            }
            for bn in [&names.bn_x, &names.bn_m, &names.bn_a] {
                push(format!("{bn}.weight"), vec![c]);
                push(format!("{bn}.bias"), vec![c]);
            }
        }
        let (f, n, cl) = (self.flat_features(), self.hidden, self.classes);
        let x_in = if self.dense_recurrent { f + n } else { f };
        push("snn_rec.layer1_x.weight".into(), vec![n, x_in]);
        push("snn_rec.layer1_x.bias".into(), vec![n]);
        push("snn_rec.layer1_tauM.weight".into(), vec![n, 2 * n]);
        push("snn_rec.layer1_tauM.bias".into(), vec![n]);
        push("snn_rec.layer1_tauAdp.weight".into(), vec![n, 2 * n]);
        push("snn_rec.layer1_tauAdp.bias".into(), vec![n]);
        push("layer3_x.weight".into(), vec![cl, n]);
        push("layer3_x.bias".into(), vec![cl]);
        push("layer3_tauM.weight".into(), vec![cl, 2 * cl]);
        push("layer3_tauM.bias".into(), vec![cl]);
        if self.tau_m_o {
            push("tau_m_o".into(), vec![cl]);
        }
        t
    }

    /// The number of trainable parameters (the authors' `count_parameters`).
    pub fn param_count(&self) -> u64 {
        self.tensors().iter().map(|t| t.len() as u64).sum()
    }

    /// The batch norms' running statistics (buffers, not parameters): `{bn}.running_mean` and
    /// `{bn}.running_var` `[C]` per batch norm. The authors' cell calls one `BatchNorm2d` at every
    /// frame, so there is one set per batch norm, updated T times per sequence; with `per_step`
    /// there is one set per frame t instead (`{bn}.running_mean_{t}`), as in the dense model (§1).
    pub fn running_stats(&self, per_step: bool) -> Vec<ConvTensor> {
        let mut t = Vec::new();
        for k in 0..self.cells.len() {
            let names = ConvCellNames::cell(k);
            let c = self.cells[k].out_channels;
            for bn in [&names.bn_x, &names.bn_m, &names.bn_a] {
                for kind in ["running_mean", "running_var"] {
                    if per_step {
                        for step in 0..self.steps {
                            t.push(ConvTensor { name: format!("{bn}.{kind}_{step}"), shape: vec![c] });
                        }
                    } else {
                        t.push(ConvTensor { name: format!("{bn}.{kind}"), shape: vec![c] });
                    }
                }
            }
        }
        t
    }

    /// f32s of the recurrent state of one sample: `m`, `s`, `b` of every cell and of the dense
    /// layer, and the readout's `o`.
    pub fn state_per_sample(&self) -> u64 {
        let cells: u64 = (0..self.cells.len())
            .map(|k| {
                let (c, h, w) = self.cell_output(k);
                (c * h * w) as u64
            })
            .sum();
        3 * (cells + self.hidden as u64) + self.classes as u64
    }

    /// f32s of one step's tape (what its backward reads besides the state), per sample, as the
    /// engine keeps it (`learn::plan`). Per cell, with `C×H×W` its convolution's output and
    /// `C×H'×W'` its state: `Conv_x`'s output normalised in place and `BN_x`'s `x̂` (`2·C·H·W`);
    /// at the state's size both gates' normalised outputs and their `x̂`, `τm`, `τa`, `θ`, `u`
    /// (`8·C·H'·W'`), with a pool also its choice and `x̂` (`2·C·H'·W'` more), and three `1/σ` (`3·C`).
    /// Dense layer: `d`, both gates' pre-activations, `τm`, `τa`, `u` (`6·N`); the dropped-out
    /// input (`F`, with dropout). Readout: `z`, `τo`, its gate's pre-activation and `ḡ_o'` (`4·C`).
    pub fn tape_per_sample(&self) -> u64 {
        let cells: u64 = (0..self.cells.len())
            .map(|k| {
                let (_, h, w) = self.cell_input(k);
                let (c, oh, ow) = self.cell_output(k);
                let at_state = if self.pool { 10 } else { 8 };
                (2 * c * h * w + at_state * c * oh * ow) as u64
            })
            .sum();
        let flat = if self.dropout > 0.0 { self.flat_features() as u64 } else { 0 };
        cells + 6 * self.hidden as u64 + flat + 4 * self.classes as u64
    }

    /// Per-channel `1/σ` of the cells' batch norms in one tape (independent of the batch).
    fn tape_per_batch(&self) -> u64 {
        self.cells.iter().map(|c| 3 * c.out_channels as u64).sum()
    }

    /// f32s of the backward's gradient buffers, per sample: per cell its own `ḡ` on its spikes
    /// (`C·H'·W'`); shared by all cells, sized by the largest, `ḡ` on `x̂`, both gates' sigmoid
    /// arguments and convolution outputs (`5·C·H'·W'`), on `Conv_x`'s output and, with a pool, on
    /// the pool's input (`C·H·W` each); the dense layer's nine `[N]` buffers, the readout's three
    /// `[C]` and the loss's three scalars; with dropout `ḡ` on the dense layer's input (`F`).
    pub fn backward_scratch_per_sample(&self) -> u64 {
        let sizes: Vec<(u64, u64)> = (0..self.cells.len())
            .map(|k| {
                let (_, h, w) = self.cell_input(k);
                let (c, oh, ow) = self.cell_output(k);
                ((c * h * w) as u64, (c * oh * ow) as u64)
            })
            .collect();
        let image = sizes.iter().map(|s| s.0).max().unwrap_or(0);
        let state = sizes.iter().map(|s| s.1).max().unwrap_or(0);
        let own: u64 = sizes.iter().map(|s| s.1).sum();
        let images = if self.pool { 2 } else { 1 };
        let flat = if self.dropout > 0.0 { self.flat_features() as u64 } else { 0 };
        own + 5 * state + images * image + 9 * self.hidden as u64 + 3 * self.classes as u64 + 3 + flat
    }

    /// The GPU bytes of training at `batch`, counted as the engine plans its storage buffers
    /// (`learn::engine_buffers`, which a test holds it to; a GPU's weight-gradient partial sums,
    /// sized by its tile shape, come on top, and the dispatch arguments, a few KiB): parameters,
    /// their gradient, `W̄`, `λ` and two optimizer moments (for every rule), under FPTT also the
    /// copy of `W` kept while `W̄` is evaluated (`tau_m_o`, never trained, has only its value and
    /// gradient); the frames (and dropout masks) of one sequence; the states (two under one-step
    /// FPTT, `K + 1` with chunks of K, `T + 1` under BPTT) and one tape per step of a chunk (K, or
    /// T), with the gradients carried between a chunk's steps; the running statistics; and the
    /// backward's scratch. All f32.
    pub fn memory(&self, batch: usize, rule: MemoryRule) -> MemoryEstimate {
        let p = self.param_count();
        let trained = p - if self.tau_m_o { self.classes as u64 } else { 0 };
        let b = batch as u64;
        let t = self.steps as u64;
        let (slots, fptt) = match rule {
            MemoryRule::Fptt { chunk } => (chunk as u64, true),
            MemoryRule::Bptt => (t, false),
        };
        let frames = (self.in_channels * self.height * self.width) as u64;
        let masks = if self.dropout > 0.0 { self.flat_features() as u64 } else { 0 };
        let copies = 2 * p + (4 + u64::from(fptt)) * trained;
        let states = (slots + 1).max(2);
        // Inside a chunk each step's m', s', b' receive the next step's gradients.
        let carries = if slots > 1 { slots * (self.state_per_sample() - self.classes as u64) } else { 0 };
        let running: u64 = self.cells.iter().map(|c| 6 * t * c.out_channels as u64).sum();
        let parts = vec![
            ("parameters, gradient, W̄, λ, moments (and W while W̄ is evaluated)", 4 * copies),
            ("the frames (and dropout masks) of one sequence", 4 * t * b * (frames + masks)),
            ("the states (2, or K + 1 in chunks of K, T + 1 under BPTT)", 4 * states * b * self.state_per_sample()),
            (
                "the tapes (one per step of a chunk) and the gradients carried between them",
                4 * slots * (b * self.tape_per_sample() + self.tape_per_batch()) + 4 * b * carries,
            ),
            ("the batch norms' running statistics (per step)", 4 * running),
            // q [C, T, C], the metrics [4, T], the hyperparameters and step sizes, the spike table,
            // the norm's 256 partial sums, the labels.
            (
                "the loss's table q, the metrics and other small tables",
                4 * (self.classes as u64).pow(2) * t
                    + 4 * (4 * t + 4 + t + 2 * (self.cells.len() as u64 + 1) + NORM_PARTIAL_SUMS + b),
            ),
            ("the backward's gradient buffers", 4 * b * self.backward_scratch_per_sample()),
        ];
        let total = parts.iter().map(|(_, n)| n).sum();
        MemoryEstimate { parts, total }
    }
}

/// The gradient norm's partial sums the engine keeps (`learn::plan::NORM_PARTS`).
const NORM_PARTIAL_SUMS: u64 = 256;

/// Which learning rule a memory estimate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryRule {
    /// FPTT with an update every `chunk` steps (1: one-step FPTT, no per-step history).
    Fptt { chunk: usize },
    /// BPTT through all T frames.
    Bptt,
}

/// GPU bytes by what they hold, and their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEstimate {
    pub parts: Vec<(&'static str, u64)>,
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dvs_gesture_network_has_the_authors_parameter_count() {
        let net = ConvNetSpec::dvs_gesture();
        net.validate().unwrap();
        assert_eq!(net.flat_features(), 2048);
        let sizes: Vec<_> = (0..6).map(|k| net.cell_output(k)).collect();
        assert_eq!(sizes, vec![(64, 64, 64), (128, 32, 32), (128, 16, 16), (256, 8, 8), (256, 4, 4), (512, 2, 2)]);
        // The count the authors' log prints ("Model total parameters: 14116051").
        assert_eq!(net.param_count(), 14_116_051);
        // Per cell: three convolutions with biases and three batch-norm affines.
        let cell = |k: usize| -> u64 {
            let prefix = format!("conv_snn{}.", k + 1);
            net.tensors().iter().filter(|t| t.name.starts_with(&prefix)).map(|t| t.len() as u64).sum()
        };
        let cells: Vec<u64> = (0..6).map(cell).collect();
        assert_eq!(cells, vec![408_256, 2_008_192, 443_520, 1_476_864, 1_771_776, 5_902_848]);
        let dense: u64 = net.tensors().iter().filter(|t| t.name.starts_with("snn_rec.")).map(|t| t.len() as u64).sum();
        assert_eq!(dense, 2_098_688);
        assert_eq!(net.param_count() - cells.iter().sum::<u64>() - dense, 5_907);
        // The v4 script's recurrent dense layer adds 512·512 input weights.
        let v4 = ConvNetSpec { dense_recurrent: true, ..net.clone() };
        assert_eq!(v4.param_count(), 14_116_051 + 512 * 512);
    }

    #[test]
    fn names_and_shapes_follow_the_authors_modules() {
        let net = ConvNetSpec::dvs_gesture();
        let tensors = net.tensors();
        let shape =
            |name: &str| tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name}")).shape.clone();
        assert_eq!(shape("conv_snn1.conv1_x.weight"), vec![64, 2, 7, 7]);
        assert_eq!(shape("conv_snn2.conv_tauM.weight"), vec![128, 128, 7, 7]);
        assert_eq!(shape("conv_snn6.conv_tauAdp.weight"), vec![512, 512, 3, 3]);
        assert_eq!(shape("conv_snn6.BN2.bias"), vec![512]);
        assert_eq!(shape("snn_rec.layer1_x.weight"), vec![512, 2048]);
        assert_eq!(shape("snn_rec.layer1_tauAdp.weight"), vec![512, 1024]);
        assert_eq!(shape("layer3_tauM.weight"), vec![11, 22]);
        assert_eq!(shape("tau_m_o"), vec![11]);
        assert_eq!(net.running_stats(false).len(), 6 * 3 * 2);
        assert_eq!(net.running_stats(true).len(), 6 * 3 * 2 * 20);
        assert!(net.running_stats(false).iter().any(|t| t.name == "conv_snn3.BN1.running_var"));
    }

    #[test]
    fn odd_images_floor_through_the_pools_and_bad_shapes_are_refused() {
        let net = ConvNetSpec {
            in_channels: 1,
            height: 5,
            width: 7,
            cells: vec![ConvCell { out_channels: 2, kernel: 1 }, ConvCell { out_channels: 3, kernel: 3 }],
            pool: true,
            dropout: 0.0,
            hidden: 4,
            dense_recurrent: true,
            classes: 3,
            tau_m_o: false,
            steps: 2,
        };
        net.validate().unwrap();
        assert_eq!(net.cell_output(0), (2, 2, 3));
        assert_eq!(net.cell_output(1), (3, 1, 1));
        assert_eq!(net.flat_features(), 3);
        let even = ConvNetSpec { cells: vec![ConvCell { out_channels: 2, kernel: 2 }], ..net.clone() };
        assert!(even.validate().is_err());
        let deep = ConvNetSpec { cells: vec![ConvCell { out_channels: 2, kernel: 1 }; 3], ..net.clone() };
        assert!(deep.validate().is_err());
    }

    #[test]
    fn one_step_fptt_memory_does_not_grow_with_the_frames_but_bptt_does() {
        let net = ConvNetSpec::dvs_gesture();
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let fptt = net.memory(16, MemoryRule::Fptt { chunk: 1 });
        let bptt20 = net.memory(16, MemoryRule::Bptt);
        let bptt100 = ConvNetSpec { steps: 100, ..net.clone() }.memory(16, MemoryRule::Bptt);
        let fptt100 = ConvNetSpec { steps: 100, ..net.clone() }.memory(16, MemoryRule::Fptt { chunk: 1 });
        // Only the stored frames (and masks), the per-step running statistics and the small
        // per-step tables (q, metrics, step sizes) grow with T under one-step FPTT.
        let per_step = |m: &MemoryEstimate| -> u64 {
            let grows = |n: &str| n.contains("frames") || n.contains("running") || n.contains("tables");
            m.parts.iter().filter(|(n, _)| grows(n)).map(|(_, b)| b).sum()
        };
        assert_eq!(fptt100.total - per_step(&fptt100), fptt.total - per_step(&fptt));
        assert!(bptt20.total > 5 * fptt.total, "{} vs {}", gib(bptt20.total), gib(fptt.total));
        assert!(bptt100.total > 4 * bptt20.total);
        // Per sample: 448,512 cell neurons ×3, plus the dense layer and the readout.
        assert_eq!(net.state_per_sample(), 3 * (448_512 + 512) + 11);
    }
}
