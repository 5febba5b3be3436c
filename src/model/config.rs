use super::conv::{ConvNetSpec, CONV_B0};
use super::layout::LayerNames;
use super::B0;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ModelError {
    #[error("model: {0}")]
    Invalid(String),
}

/// How the spike threshold is formed (method §1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdMode {
    /// `θ = b0 + β_a·b'` with the learned adaptation gate `τa`.
    Adaptive,
    /// `θ` constant, no adaptation state or gate (the adding-task variant uses 0.5).
    Fixed(f32),
}

/// The spiking neuron of the hidden layers (method §1, §7). All three share the input current, the
/// integration `u = m + τm⊙(d − m)`, the spike `s' = H(u − θ)` and the reset `m' = (1 − s')⊙u`;
/// they differ in where `τm` and `τa` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeuronKind {
    /// Liquid time-constant neuron: `τm`, `τa` are gates, learned functions of the input current
    /// and the state (`W_m`, `W_a`, slopes `a_m`, `a_a`). Either threshold mode.
    Ltc,
    /// Adaptive LIF: per-neuron trainable constants `τm = σ(ρ_m)`, `τa = σ(ρ_a)` (tensors
    /// `layer{k}_tauM.weight`, `layer{k}_tauAdp.weight`, shape `[N]`); needs the adaptive threshold.
    Alif,
    /// LIF: a per-neuron trainable constant `τm = σ(ρ_m)` (`layer{k}_tauM.weight` `[N]`), no
    /// adaptation; needs a fixed threshold.
    Lif,
}

impl NeuronKind {
    pub const ALL: [(&'static str, NeuronKind); 3] =
        [("ltc", NeuronKind::Ltc), ("alif", NeuronKind::Alif), ("lif", NeuronKind::Lif)];

    /// The name experiment files use (`model.neuron`).
    pub fn name(self) -> &'static str {
        NeuronKind::ALL.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// Whether `τm` (and `τa`) are input-driven gates (LTC) rather than per-neuron constants.
    pub fn has_gates(self) -> bool {
        self == NeuronKind::Ltc
    }
}

/// The shape and options of one network: a stack of recurrent spiking layers (LTC, ALIF or LIF
/// neurons) and the LTC readout.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Inputs per time step (`I`).
    pub inputs: usize,
    /// Hidden sizes, bottom layer first (`N` of each layer).
    pub hidden: Vec<usize>,
    /// Readout size (`C`): classes, or regression outputs.
    pub outputs: usize,
    /// Sequence length `T`; batch-norm running statistics are kept per step.
    pub steps: usize,
    pub threshold: ThresholdMode,
    /// Adding-task variant: `d = W_x·[x ; s] + c_x` instead of separate input and recurrent maps.
    pub fused_recurrent: bool,
    /// Whether the gate slopes `a_m`, `a_a`, `a_o` are trained (else fixed at 1.0).
    pub trainable_slopes: bool,
    /// Per-step batch normalisation of the input currents and the readout current.
    pub batch_norm: bool,
    /// The hidden layers' neuron (every hidden layer uses the same kind).
    pub neuron: NeuronKind,
    /// A convolutional network (method §9): these conv LTC cells read the frames (`inputs` is
    /// `C·H·W`) and the one dense layer reads their flattened, dropped-out spikes. The dense layer
    /// and the readout then take the DVS model's form: the authors' tensor names
    /// (`snn_rec.layer1_*`), `b0 = 0.5`, no slopes, no batch norm, and no recurrent map unless
    /// `fused_recurrent` (`is_rec`). Built by [`ModelConfig::convolutional`].
    pub conv: Option<ConvNetSpec>,
}

impl ModelConfig {
    /// The method's S-MNIST-style network with one hidden layer.
    pub fn classifier(inputs: usize, hidden: usize, outputs: usize, steps: usize) -> Self {
        ModelConfig {
            inputs,
            hidden: vec![hidden],
            outputs,
            steps,
            threshold: ThresholdMode::Adaptive,
            fused_recurrent: false,
            trainable_slopes: true,
            batch_norm: false,
            neuron: NeuronKind::Ltc,
            conv: None,
        }
    }

    /// The network of a conv spec: its frames flattened as the input, its dense layer and classes.
    pub fn convolutional(spec: ConvNetSpec) -> Self {
        ModelConfig {
            inputs: spec.in_channels * spec.height * spec.width,
            hidden: vec![spec.hidden],
            outputs: spec.classes,
            steps: spec.steps,
            threshold: ThresholdMode::Adaptive,
            fused_recurrent: spec.dense_recurrent,
            trainable_slopes: false,
            batch_norm: false,
            neuron: NeuronKind::Ltc,
            conv: Some(spec),
        }
    }

    /// The checkpoint names of hidden layer `k`. A conv network's dense layer has the authors'
    /// `snn_rec.layer1_*` names and no slopes or batch norms (empty names: no such tensor).
    pub fn layer_names(&self, k: usize) -> LayerNames {
        match &self.conv {
            Some(_) => LayerNames {
                x: "snn_rec.layer1_x".into(),
                r: "snn_rec.layer1_r".into(),
                tau_m: "snn_rec.layer1_tauM".into(),
                tau_adp: "snn_rec.layer1_tauAdp".into(),
                slope_m: String::new(),
                slope_a: String::new(),
                bn_a: String::new(),
                bn_b: String::new(),
            },
            None => LayerNames::hidden(k, self.layers()),
        }
    }

    /// The readout's names `(x, tauM, bn, slope)`; a conv network's readout has no slope or batch
    /// norm (empty names).
    pub fn readout_names(&self) -> (String, String, String, String) {
        let (x, tau, bn, slope) = LayerNames::readout(self.layers());
        match self.conv {
            Some(_) => (x, tau, String::new(), String::new()),
            None => (x, tau, bn, slope),
        }
    }

    /// Whether hidden layers have the separate recurrent map `W_r` (a conv network's dense layer
    /// has none: it reads only the cells' spikes, or `[x ; s]` through the fused map).
    pub fn recurrent_map(&self) -> bool {
        !self.fused_recurrent && self.conv.is_none()
    }

    /// The threshold's baseline `b0` of every hidden layer and cell, also the initial `b`.
    pub fn b0(&self) -> f32 {
        if self.conv.is_some() {
            CONV_B0
        } else {
            B0
        }
    }

    /// Per-sample sizes of the blocks of the recurrent state, bottom first: every conv cell's
    /// `C·H'·W'`, then every hidden layer's `N`. A state vector (`m`, `s` or `b`) holds them block
    /// after block, each `[B, size]`.
    pub fn state_blocks(&self) -> Vec<usize> {
        let mut blocks: Vec<usize> = match &self.conv {
            Some(spec) => (0..spec.cells.len())
                .map(|k| {
                    let (c, h, w) = spec.cell_output(k);
                    c * h * w
                })
                .collect(),
            None => Vec::new(),
        };
        blocks.extend(&self.hidden);
        blocks
    }

    /// Conv cells in front of the hidden layers (0 without).
    pub fn conv_cells(&self) -> usize {
        self.conv.as_ref().map_or(0, |c| c.cells.len())
    }

    pub fn adaptive(&self) -> bool {
        matches!(self.threshold, ThresholdMode::Adaptive)
    }

    pub fn layers(&self) -> usize {
        self.hidden.len()
    }

    /// Width of the input of hidden layer `k` (0-based).
    pub fn layer_input(&self, k: usize) -> usize {
        if k == 0 {
            match &self.conv {
                Some(spec) => spec.flat_features(),
                None => self.inputs,
            }
        } else {
            self.hidden[k - 1]
        }
    }

    pub fn top_hidden(&self) -> usize {
        *self.hidden.last().expect("validated: at least one layer")
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        if self.inputs == 0 {
            return bad("inputs must be at least 1".into());
        }
        if self.hidden.is_empty() {
            return bad("at least one hidden layer is needed".into());
        }
        if let Some(k) = self.hidden.iter().position(|&n| n == 0) {
            return bad(format!("hidden layer {} has size 0", k + 1));
        }
        if self.outputs == 0 {
            return bad("outputs must be at least 1".into());
        }
        if self.steps == 0 {
            return bad("steps (sequence length) must be at least 1".into());
        }
        if self.fused_recurrent && self.batch_norm {
            return bad("batch_norm needs separate input and recurrent maps (fused_recurrent = false)".into());
        }
        // The threshold mode is not inferred from the neuron: a configuration that says both must
        // agree, so that a file asking for "alif" with a fixed threshold is refused, not silently changed.
        match (self.neuron, self.threshold) {
            (NeuronKind::Lif, ThresholdMode::Adaptive) => {
                return bad("LIF neurons have no adaptation: use a fixed threshold, or ALIF neurons".into())
            }
            (NeuronKind::Alif, ThresholdMode::Fixed(_)) => {
                return bad("ALIF neurons need the adaptive threshold: set it adaptive, or use LIF neurons".into())
            }
            _ => {}
        }
        if let Some(spec) = &self.conv {
            spec.validate()?;
            let consistent = self.inputs == spec.in_channels * spec.height * spec.width
                && self.hidden == [spec.hidden]
                && self.outputs == spec.classes
                && self.steps == spec.steps
                && self.threshold == ThresholdMode::Adaptive
                && self.fused_recurrent == spec.dense_recurrent
                && !self.trainable_slopes
                && !self.batch_norm
                && self.neuron == NeuronKind::Ltc;
            if !consistent {
                return bad(
                    "a convolutional network's configuration comes from its spec (ModelConfig::convolutional)".into()
                );
            }
        }
        if let ThresholdMode::Fixed(th) = self.threshold {
            if !th.is_finite() {
                return bad("the fixed threshold must be finite".into());
            }
        }
        Ok(())
    }
}
