//! The named parameter layout. Every trainable tensor has one slot in a flat f32 buffer (and the
//! same slot in the buffers of `W̄`, `λ` and the optimizer moments); frozen tensors (gate slopes when
//! not trained) sit after `trainable_len` so that the fused update touches one contiguous range.

use super::config::ModelConfig;

/// One tensor's place in a flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSlot {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl TensorSlot {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// The checkpoint names of one hidden layer's tensors (method §8).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNames {
    pub x: String,
    pub r: String,
    pub tau_m: String,
    pub tau_adp: String,
    pub slope_m: String,
    pub slope_a: String,
    pub bn_a: String,
    pub bn_b: String,
}

impl LayerNames {
    /// Hidden layer `k` (0-based) of a stack of `layers`. The one-layer model uses the authors'
    /// names (`act1`, `act2`) so that their checkpoints load unchanged.
    pub fn hidden(k: usize, layers: usize) -> Self {
        let l = k + 1;
        let (slope_m, slope_a) = if layers == 1 {
            ("act1.alpha".to_string(), "act2.alpha".to_string())
        } else {
            (format!("act{l}m.alpha"), format!("act{l}a.alpha"))
        };
        LayerNames {
            x: format!("layer{l}_x"),
            r: format!("layer{l}_r"),
            tau_m: format!("layer{l}_tauM"),
            tau_adp: format!("layer{l}_tauAdp"),
            slope_m,
            slope_a,
            bn_a: format!("bn{l}a"),
            bn_b: format!("bn{l}b"),
        }
    }

    /// The readout's names: `(x, tauM, bn, slope)`.
    pub fn readout(layers: usize) -> (String, String, String, String) {
        if layers == 1 {
            ("layer3_x".into(), "layer3_tauM".into(), "bn2".into(), "act3.alpha".into())
        } else {
            ("readout_x".into(), "readout_tauM".into(), "readout_bn".into(), "readout_act.alpha".into())
        }
    }
}

/// Where every parameter lives.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamLayout {
    pub slots: Vec<TensorSlot>,
    /// Parameters `[0, trainable_len)` are trained; the rest are frozen.
    pub trainable_len: usize,
    pub total_len: usize,
}

impl ParamLayout {
    pub fn new(cfg: &ModelConfig) -> Self {
        if let Some(spec) = &cfg.conv {
            // The authors' module order, except `tau_m_o`: the forward never reads it, so its
            // gradient is 0, FPTT's W̄ and λ never leave W and 0, and it never moves. Kept frozen,
            // after the trained range, it needs no gradient kernel (and no W̄, λ, moments).
            let (frozen, trained): (Vec<_>, Vec<_>) = spec.tensors().into_iter().partition(|t| t.name == "tau_m_o");
            let trainable_len = trained.iter().map(|t| t.len()).sum();
            let mut slots = Vec::new();
            let mut offset = 0;
            for t in trained.into_iter().chain(frozen) {
                let len = t.len();
                slots.push(TensorSlot { name: t.name, shape: t.shape, offset });
                offset += len;
            }
            return ParamLayout { slots, trainable_len, total_len: offset };
        }
        let layers = cfg.layers();
        let mut trained: Vec<(String, Vec<usize>)> = Vec::new();
        let mut slopes: Vec<(String, Vec<usize>)> = Vec::new();
        for k in 0..layers {
            let n = cfg.hidden[k];
            let i = cfg.layer_input(k);
            let names = LayerNames::hidden(k, layers);
            if cfg.fused_recurrent {
                trained.push((format!("{}.weight", names.x), vec![n, i + n]));
                trained.push((format!("{}.bias", names.x), vec![n]));
            } else {
                trained.push((format!("{}.weight", names.x), vec![n, i]));
                trained.push((format!("{}.bias", names.x), vec![n]));
                trained.push((format!("{}.weight", names.r), vec![n, n]));
                trained.push((format!("{}.bias", names.r), vec![n]));
            }
            if cfg.neuron.has_gates() {
                trained.push((format!("{}.weight", names.tau_m), vec![n, 2 * n]));
                trained.push((format!("{}.bias", names.tau_m), vec![n]));
                if cfg.adaptive() {
                    trained.push((format!("{}.weight", names.tau_adp), vec![n, 2 * n]));
                    trained.push((format!("{}.bias", names.tau_adp), vec![n]));
                }
            } else {
                // LIF/ALIF: the per-neuron constants ρ_m (and ρ_a), τ = σ(ρ); no biases, no slopes.
                trained.push((format!("{}.weight", names.tau_m), vec![n]));
                if cfg.adaptive() {
                    trained.push((format!("{}.weight", names.tau_adp), vec![n]));
                }
            }
            if cfg.batch_norm {
                for bn in [&names.bn_a, &names.bn_b] {
                    trained.push((format!("{bn}.weight"), vec![n]));
                    trained.push((format!("{bn}.bias"), vec![n]));
                }
            }
            if cfg.neuron.has_gates() {
                slopes.push((names.slope_m.clone(), vec![]));
                if cfg.adaptive() {
                    slopes.push((names.slope_a.clone(), vec![]));
                }
            }
        }
        let (rx, rtau, rbn, rslope) = LayerNames::readout(layers);
        let c = cfg.outputs;
        trained.push((format!("{rx}.weight"), vec![c, cfg.top_hidden()]));
        trained.push((format!("{rx}.bias"), vec![c]));
        trained.push((format!("{rtau}.weight"), vec![c, 2 * c]));
        trained.push((format!("{rtau}.bias"), vec![c]));
        if cfg.batch_norm {
            trained.push((format!("{rbn}.weight"), vec![c]));
            trained.push((format!("{rbn}.bias"), vec![c]));
        }
        slopes.push((rslope, vec![]));

        let mut slots = Vec::new();
        let mut offset = 0;
        let mut push = |name: String, shape: Vec<usize>, slots: &mut Vec<TensorSlot>| {
            let len: usize = shape.iter().product();
            slots.push(TensorSlot { name, shape, offset });
            offset += len;
        };
        for (name, shape) in trained {
            push(name, shape, &mut slots);
        }
        if cfg.trainable_slopes {
            for (name, shape) in slopes.drain(..) {
                push(name, shape, &mut slots);
            }
        }
        let trainable_len = slots.iter().map(|s| s.len()).sum();
        for (name, shape) in slopes {
            push(name, shape, &mut slots);
        }
        ParamLayout { slots, trainable_len, total_len: offset }
    }

    pub fn get(&self, name: &str) -> Option<&TensorSlot> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// The slot of a tensor the layout is known to have (a missing name is a programming error).
    pub fn slot(&self, name: &str) -> &TensorSlot {
        self.get(name).unwrap_or_else(|| panic!("parameter layout has no tensor {name}"))
    }

    pub fn is_trainable(&self, name: &str) -> bool {
        self.get(name).is_some_and(|s| s.offset < self.trainable_len)
    }

    pub fn trainable(&self) -> impl Iterator<Item = &TensorSlot> {
        self.slots.iter().filter(move |s| s.offset < self.trainable_len)
    }
}

/// Batch-norm running statistics: for every normalised current and every step `t`, a mean and a
/// variance vector, named `{bn}.running_mean_{t}` / `{bn}.running_var_{t}`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatLayout {
    pub slots: Vec<TensorSlot>,
    pub total_len: usize,
}

impl StatLayout {
    pub fn new(cfg: &ModelConfig) -> Self {
        let mut slots = Vec::new();
        let mut offset = 0;
        if let Some(spec) = &cfg.conv {
            // Every cell's three BatchNorm2d, per step, in the kernels' layout (as below).
            for t in spec.running_stats(true) {
                let len = t.len();
                slots.push(TensorSlot { name: t.name, shape: t.shape, offset });
                offset += len;
            }
            return StatLayout { slots, total_len: offset };
        }
        if cfg.batch_norm {
            let layers = cfg.layers();
            let mut norms: Vec<(String, usize)> = Vec::new();
            for k in 0..layers {
                let names = LayerNames::hidden(k, layers);
                norms.push((names.bn_a, cfg.hidden[k]));
                norms.push((names.bn_b, cfg.hidden[k]));
            }
            norms.push((LayerNames::readout(layers).2, cfg.outputs));
            // Per normalisation: all steps' means, then all steps' variances, so that a kernel
            // finds step t's statistics at `base + t·F` and `base + (T + t)·F`.
            for (bn, f) in norms {
                for kind in ["running_mean", "running_var"] {
                    for t in 0..cfg.steps {
                        slots.push(TensorSlot { name: format!("{bn}.{kind}_{t}"), shape: vec![f], offset });
                        offset += f;
                    }
                }
            }
        }
        StatLayout { slots, total_len: offset }
    }

    pub fn get(&self, name: &str) -> Option<&TensorSlot> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// Offset of step 0's running mean of normalisation `bn`; variances follow after `T·F`.
    pub fn base(&self, bn: &str) -> usize {
        self.get(&format!("{bn}.running_mean_0")).unwrap_or_else(|| panic!("no running statistics for {bn}")).offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NeuronKind, ThresholdMode};

    #[test]
    fn one_layer_names_and_shapes_match_the_authors_model() {
        let mut cfg = ModelConfig::classifier(1, 16, 10, 20);
        cfg.batch_norm = true;
        let l = ParamLayout::new(&cfg);
        let want = [
            ("layer1_x.weight", vec![16, 1]),
            ("layer1_r.weight", vec![16, 16]),
            ("layer1_tauM.weight", vec![16, 32]),
            ("layer1_tauAdp.weight", vec![16, 32]),
            ("layer3_x.weight", vec![10, 16]),
            ("layer3_tauM.weight", vec![10, 20]),
            ("bn1a.weight", vec![16]),
            ("bn2.bias", vec![10]),
            ("act1.alpha", vec![]),
            ("act3.alpha", vec![]),
        ];
        for (name, shape) in want {
            assert_eq!(l.slot(name).shape, shape, "{name}");
        }
        assert_eq!(l.trainable_len, l.total_len);
        // Slots tile the buffer without gaps or overlaps.
        let mut end = 0;
        for s in &l.slots {
            assert_eq!(s.offset, end);
            end += s.len();
        }
        let stats = StatLayout::new(&cfg);
        assert_eq!(stats.slots.len(), 3 * 2 * 20);
        assert_eq!(stats.get("bn1b.running_var_19").unwrap().shape, vec![16]);
        assert_eq!(stats.base("bn1b") + 20 * 16, stats.get("bn1b.running_var_0").unwrap().offset);
    }

    #[test]
    fn lif_and_alif_layers_have_per_neuron_time_constants_and_no_gates() {
        let mut cfg = ModelConfig::classifier(3, 6, 4, 5);
        cfg.neuron = NeuronKind::Alif;
        cfg.hidden = vec![6, 5];
        let l = ParamLayout::new(&cfg);
        assert_eq!(l.slot("layer1_tauM.weight").shape, vec![6]);
        assert_eq!(l.slot("layer1_tauAdp.weight").shape, vec![6]);
        assert_eq!(l.slot("layer2_tauM.weight").shape, vec![5]);
        assert_eq!(l.slot("layer1_r.weight").shape, vec![6, 6]);
        for gone in ["layer1_tauM.bias", "layer1_tauAdp.bias", "act1m.alpha", "act1a.alpha", "act2m.alpha"] {
            assert!(l.get(gone).is_none(), "{gone}");
        }
        // The readout is the LTC readout, slope included.
        assert_eq!(l.slot("readout_tauM.weight").shape, vec![4, 8]);
        assert!(l.is_trainable("readout_act.alpha"));

        cfg.neuron = NeuronKind::Lif;
        cfg.threshold = ThresholdMode::Fixed(0.5);
        cfg.hidden = vec![6];
        let l = ParamLayout::new(&cfg);
        assert_eq!(l.slot("layer1_tauM.weight").shape, vec![6]);
        assert!(l.get("layer1_tauAdp.weight").is_none());
        assert!(l.get("act1.alpha").is_none());
        assert!(l.get("act2.alpha").is_none());
        assert!(l.get("act3.alpha").is_some());
    }

    #[test]
    fn frozen_slopes_sit_after_the_trainable_range() {
        let mut cfg = ModelConfig::classifier(2, 8, 1, 5);
        cfg.threshold = ThresholdMode::Fixed(0.5);
        cfg.fused_recurrent = true;
        cfg.trainable_slopes = false;
        cfg.hidden = vec![8, 4];
        let l = ParamLayout::new(&cfg);
        assert!(l.get("layer1_r.weight").is_none());
        assert!(l.get("layer1_tauAdp.weight").is_none());
        assert_eq!(l.slot("layer1_x.weight").shape, vec![8, 10]);
        assert_eq!(l.slot("layer2_x.weight").shape, vec![4, 12]);
        assert_eq!(l.slot("readout_x.weight").shape, vec![1, 4]);
        assert!(!l.is_trainable("act1m.alpha"));
        assert!(l.slot("act1m.alpha").offset >= l.trainable_len);
        assert_eq!(l.total_len, l.trainable_len + 3);
    }
}
