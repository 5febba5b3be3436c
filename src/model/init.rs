//! Initialisation (method §1; conv cells §9): Xavier-normal for the input, gate and readout maps, orthogonal for
//! the recurrent map, `c_r ~ U(±1/√N)`, other biases 0, gate slopes 1, batch-norm γ = 0.1, δ = 0.
//!
//! LIF/ALIF time constants (method §7 gives no initialisation; this is ours): the membrane's
//! integration rate `τm = σ(ρ_m) ~ U[0.05, 0.3]` per neuron, i.e. a membrane time constant of about
//! 3 to 20 steps (`τm ≈ 1 − e^(−1/τ)`), the range of Bellec et al.'s 20 ms at 1 ms steps and faster;
//! the adaptation's retention `τa = σ(ρ_a) ~ U[0.9, 0.995]`, an adaptation time constant of about
//! 10 to 200 steps (`b' = τa⊙b + (1 − τa)⊙s`), slower than the membrane as in ALIF networks. Drawing
//! `τ` uniformly and storing `ρ = logit(τ)` keeps every neuron away from σ's flat tails.
//!
//! Conv cells (method §9 names none; ours, PyTorch's defaults for the authors' modules): every
//! convolution's weight and bias `~ U(±1/√fan_in)` with `fan_in = C_in·k·k` (`Conv2d`'s
//! Kaiming-uniform with `a = √5`), every `BatchNorm2d` `γ = 1`, `δ = 0`. The dense layer and the
//! readout of a conv network follow §1 (Xavier-normal maps, zero biases); `tau_m_o`, which the
//! forward never reads, starts at 0.

use super::config::ModelConfig;
use super::layout::{LayerNames, ParamLayout, StatLayout};
use crate::rng::Rng;
use crate::tensor::{Tensor, TensorMap};

fn xavier_normal(rng: &mut Rng, out: usize, inp: usize) -> Vec<f32> {
    let std = (2.0 / (out + inp) as f64).sqrt();
    (0..out * inp).map(|_| (rng.normal() * std) as f32).collect()
}

/// A random orthogonal `n×n` matrix: Gram–Schmidt (twice, for stability) on a Gaussian matrix,
/// with the sign fix that makes the distribution uniform (Haar), as PyTorch's QR-based init.
// Row i is updated from row j of the same matrix: index loops, not borrowed iterators.
#[allow(clippy::needless_range_loop)]
fn orthogonal(rng: &mut Rng, n: usize) -> Vec<f32> {
    // One flat row-major buffer and slices instead of nested Vec indexing: the same arithmetic in
    // the same order (bit-identical weights), without bounds checks in the O(n³) loops, which made
    // n = 4096 take minutes.
    let mut rows: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    for i in 0..n {
        let (done, rest) = rows.split_at_mut(i * n);
        let row = &mut rest[..n];
        for _pass in 0..2 {
            for other in done.chunks_exact(n) {
                let dot: f64 = row.iter().zip(other).map(|(a, b)| a * b).sum();
                for (a, b) in row.iter_mut().zip(other) {
                    *a -= dot * b;
                }
            }
        }
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        for a in row.iter_mut() {
            *a /= norm;
        }
    }
    rows.into_iter().map(|x| x as f32).collect()
}

/// The range of a LIF/ALIF neuron's initial membrane integration rate `τm = σ(ρ_m)`.
pub const TAU_M_RANGE: (f64, f64) = (0.05, 0.3);
/// The range of an ALIF neuron's initial adaptation retention `τa = σ(ρ_a)`.
pub const TAU_A_RANGE: (f64, f64) = (0.9, 0.995);

/// `σ⁻¹(p) = ln(p/(1 − p))`.
fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// Fresh parameters and batch-norm running statistics (mean 0, variance 1) for `cfg`.
pub fn init_params(cfg: &ModelConfig, seed: u64) -> TensorMap {
    let layout = ParamLayout::new(cfg);
    let mut rng = Rng::derive(seed, "init");
    let mut map = TensorMap::new();
    let layers = cfg.layers();
    let recurrent: Vec<String> = (0..layers).map(|k| format!("{}.weight", LayerNames::hidden(k, layers).r)).collect();
    let recurrent_bias: Vec<(String, usize)> =
        (0..layers).map(|k| (format!("{}.bias", LayerNames::hidden(k, layers).r), cfg.hidden[k])).collect();
    // LIF/ALIF per-neuron constants ρ (shape [N]) and the range their σ(ρ) is drawn from.
    let mut time_constants: Vec<(String, f64, f64)> = Vec::new();
    if !cfg.neuron.has_gates() {
        for k in 0..layers {
            let names = LayerNames::hidden(k, layers);
            time_constants.push((format!("{}.weight", names.tau_m), TAU_M_RANGE.0, TAU_M_RANGE.1));
            time_constants.push((format!("{}.weight", names.tau_adp), TAU_A_RANGE.0, TAU_A_RANGE.1));
        }
    }
    for slot in &layout.slots {
        let name = &slot.name;
        let conv_cell = cfg.conv.is_some() && name.starts_with("conv_snn");
        let data = if conv_cell && name.contains(".BN") {
            vec![if name.ends_with(".weight") { 1.0 } else { 0.0 }; slot.len()]
        } else if conv_cell {
            let map = name.trim_end_matches(".weight").trim_end_matches(".bias");
            let fan_in: usize = layout.slot(&format!("{map}.weight")).shape[1..].iter().product();
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..slot.len()).map(|_| rng.uniform_range(-bound, bound) as f32).collect()
        } else if name.ends_with(".alpha") {
            vec![1.0]
        } else if let Some((_, lo, hi)) = time_constants.iter().find(|(n, _, _)| n == name) {
            (0..slot.len()).map(|_| logit(rng.uniform_range(*lo, *hi)) as f32).collect()
        } else if recurrent.contains(name) {
            orthogonal(&mut rng, slot.shape[0])
        } else if let Some((_, n)) = recurrent_bias.iter().find(|(b, _)| b == name) {
            let bound = 1.0 / (*n as f64).sqrt();
            (0..slot.len()).map(|_| rng.uniform_range(-bound, bound) as f32).collect()
        } else if name.starts_with("bn") || name.starts_with("readout_bn") {
            let v = if name.ends_with(".weight") { 0.1 } else { 0.0 };
            vec![v; slot.len()]
        } else if name.ends_with(".weight") {
            xavier_normal(&mut rng, slot.shape[0], slot.shape[1])
        } else {
            vec![0.0; slot.len()]
        };
        map.insert(name.clone(), Tensor::new(slot.shape.clone(), data));
    }
    for slot in &StatLayout::new(cfg).slots {
        let v = if slot.name.contains("running_var") { 1.0 } else { 0.0 };
        map.insert(slot.name.clone(), Tensor::new(slot.shape.clone(), vec![v; slot.len()]));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recurrent_map_is_orthogonal_and_init_is_seeded() {
        let mut cfg = ModelConfig::classifier(3, 12, 4, 5);
        cfg.batch_norm = true;
        let a = init_params(&cfg, 42);
        assert_eq!(a, init_params(&cfg, 42));
        assert_ne!(a["layer1_x.weight"], init_params(&cfg, 43)["layer1_x.weight"]);
        let w = &a["layer1_r.weight"].data;
        for i in 0..12 {
            for j in 0..12 {
                let dot: f32 = (0..12).map(|k| w[i * 12 + k] * w[j * 12 + k]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5, "W_r·W_rᵀ[{i},{j}] = {dot}");
            }
        }
        let bound = 1.0 / 12f32.sqrt();
        assert!(a["layer1_r.bias"].data.iter().all(|x| x.abs() <= bound));
        assert!(a["layer1_r.bias"].max_abs() > 0.0);
        assert_eq!(a["layer1_x.bias"].max_abs(), 0.0);
        assert_eq!(a["bn1a.weight"].data, vec![0.1; 12]);
        assert_eq!(a["act1.alpha"].data, vec![1.0]);
        assert_eq!(a["bn2.running_var_4"].data, vec![1.0; 4]);
    }

    #[test]
    fn lif_and_alif_time_constants_spread_over_their_ranges() {
        let mut cfg = ModelConfig::classifier(3, 200, 4, 5);
        cfg.neuron = crate::model::NeuronKind::Alif;
        let p = init_params(&cfg, 7);
        let sig = |x: f32| 1.0 / (1.0 + (-(x as f64)).exp());
        for (name, (lo, hi)) in [("layer1_tauM.weight", TAU_M_RANGE), ("layer1_tauAdp.weight", TAU_A_RANGE)] {
            let tau: Vec<f64> = p[name].data.iter().map(|&r| sig(r)).collect();
            assert_eq!(p[name].shape, vec![200]);
            assert!(tau.iter().all(|&t| t >= lo - 1e-6 && t <= hi + 1e-6), "{name} in [{lo}, {hi}]");
            let (min, max) = tau.iter().fold((1.0f64, 0.0f64), |(a, b), &t| (a.min(t), b.max(t)));
            assert!(min < lo + 0.1 * (hi - lo) && max > hi - 0.1 * (hi - lo), "{name} spreads: {min}..{max}");
        }
        // The input and recurrent maps are initialised as in the LTC layer.
        let ltc = init_params(&ModelConfig::classifier(3, 200, 4, 5), 7);
        assert_eq!(p["layer1_x.weight"].shape, ltc["layer1_x.weight"].shape);
    }
}
