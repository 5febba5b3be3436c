//! Per-step batch normalisation (method §1, the S-MNIST recipe): `BN_t(x) = γ⊙x̂ + δ` with `x̂`
//! normalised per feature over the batch. Owns the forward with this step's batch statistics
//! (training: mean, biased variance, eps 1e-5) or with step t's running statistics (evaluation), the
//! backward through the batch statistics, and the running-statistics update (momentum 0.1, unbiased
//! variance `B/(B−1)`), matching PyTorch's `BatchNorm1d`.

use super::{get, Params, BN_EPS, BN_MOMENTUM};

/// Which statistics a forward pass normalises with.
#[derive(Debug, Clone, Copy)]
pub enum Norm<'a> {
    /// Training: the batch statistics of this step (and the caller updates the running ones).
    Batch,
    /// Evaluation: the running statistics of step `t` (`{bn}.running_mean_{t}` / `running_var_{t}`).
    Running { stats: &'a Params, t: usize },
}

/// What the backward needs from one normalisation.
#[derive(Debug, Clone)]
pub struct BnCache {
    /// The normalised input `x̂`, `[B, F]`.
    pub xhat: Vec<f64>,
    /// `1/√(σ² + eps)` per feature.
    pub inv_std: Vec<f64>,
    /// The batch mean per feature (training), or the running mean used.
    pub mean: Vec<f64>,
    /// The biased batch variance per feature (training), or the running variance used.
    pub var: Vec<f64>,
    /// Whether the statistics came from the batch (then the backward goes through them).
    pub batch_stats: bool,
}

/// The names of step t's running statistics of normalisation `bn`.
///
/// Method §8.
pub fn stat_names(bn: &str, t: usize) -> (String, String) {
    (format!("{bn}.running_mean_{t}"), format!("{bn}.running_var_{t}"))
}

/// `y = γ⊙x̂ + δ` for `x` `[rows, feats]`, with `γ = {bn}.weight`, `δ = {bn}.bias`.
///
/// Method §1 (1.11)–(1.12). GPU twin: `shaders/batch_norm_forward.wgsl`.
pub fn forward(x: &[f64], rows: usize, feats: usize, p: &Params, bn: &str, norm: Norm) -> (Vec<f64>, BnCache) {
    let gamma = get(p, &format!("{bn}.weight"));
    let delta = get(p, &format!("{bn}.bias"));
    let (mean, var, batch_stats) = match norm {
        Norm::Batch => {
            let mut mean = vec![0.0; feats];
            let mut var = vec![0.0; feats];
            for f in 0..feats {
                mean[f] = (0..rows).map(|r| x[r * feats + f]).sum::<f64>() / rows as f64;
                var[f] = (0..rows).map(|r| (x[r * feats + f] - mean[f]).powi(2)).sum::<f64>() / rows as f64;
            }
            (mean, var, true)
        }
        Norm::Running { stats, t } => {
            let (m, v) = stat_names(bn, t);
            (get(stats, &m).to_vec(), get(stats, &v).to_vec(), false)
        }
    };
    let eps = BN_EPS;
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let mut xhat = vec![0.0; rows * feats];
    let mut y = vec![0.0; rows * feats];
    for r in 0..rows {
        for f in 0..feats {
            let i = r * feats + f;
            xhat[i] = (x[i] - mean[f]) * inv_std[f];
            y[i] = gamma[f] * xhat[i] + delta[f];
        }
    }
    (y, BnCache { xhat, inv_std, mean, var, batch_stats })
}

/// The backward given `ḡ_y`: `(ḡ_x, ∇γ, ∇δ)`. With batch statistics,
/// `ḡ_x = inv_std/B · (B·ḡ_x̂ − Σ_batch ḡ_x̂ − x̂·Σ_batch ḡ_x̂⊙x̂)` where `ḡ_x̂ = γ⊙ḡ_y`.
///
/// Method §3 (3.15). GPU twin: `shaders/batch_norm_backward.wgsl`.
pub fn backward(
    g_y: &[f64],
    cache: &BnCache,
    rows: usize,
    feats: usize,
    p: &Params,
    bn: &str,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let gamma = get(p, &format!("{bn}.weight"));
    let mut g_gamma = vec![0.0; feats];
    let mut g_delta = vec![0.0; feats];
    let mut g_x = vec![0.0; rows * feats];
    for f in 0..feats {
        let mut sum_g = 0.0;
        let mut sum_gx = 0.0;
        for r in 0..rows {
            let i = r * feats + f;
            g_gamma[f] += g_y[i] * cache.xhat[i];
            g_delta[f] += g_y[i];
            let g_xhat = gamma[f] * g_y[i];
            sum_g += g_xhat;
            sum_gx += g_xhat * cache.xhat[i];
        }
        let n = rows as f64;
        for r in 0..rows {
            let i = r * feats + f;
            let g_xhat = gamma[f] * g_y[i];
            g_x[i] = if cache.batch_stats {
                cache.inv_std[f] / n * (n * g_xhat - sum_g - cache.xhat[i] * sum_gx)
            } else {
                cache.inv_std[f] * g_xhat
            };
        }
    }
    (g_x, g_gamma, g_delta)
}

/// PyTorch's running-statistics update for step t after a training forward:
/// `mean ← 0.9·mean + 0.1·μ_t`, `var ← 0.9·var + 0.1·σ²_t·B/(B−1)`.
///
/// Method §1 (1.13). GPU twin: `shaders/batch_norm_forward.wgsl` (training mode).
pub fn update_running(stats: &mut Params, bn: &str, t: usize, cache: &BnCache, rows: usize) {
    assert!(cache.batch_stats, "running statistics are updated from batch statistics only");
    assert!(rows > 1, "batch norm in training needs a batch of at least 2");
    let mom = BN_MOMENTUM;
    let (m, v) = stat_names(bn, t);
    let unbias = rows as f64 / (rows as f64 - 1.0);
    let rm = stats.get_mut(&m).unwrap_or_else(|| panic!("reference: no running statistic {m}"));
    for (r, mu) in rm.iter_mut().zip(&cache.mean) {
        *r = (1.0 - mom) * *r + mom * mu;
    }
    let rv = stats.get_mut(&v).unwrap_or_else(|| panic!("reference: no running statistic {v}"));
    for (r, var) in rv.iter_mut().zip(&cache.var) {
        *r = (1.0 - mom) * *r + mom * var * unbias;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(gamma: Vec<f64>, delta: Vec<f64>) -> Params {
        [("bn.weight".to_string(), gamma), ("bn.bias".to_string(), delta)].into_iter().collect()
    }

    #[test]
    fn training_forward_normalises_and_backward_matches_finite_differences() {
        let p = params(vec![0.7, -1.3], vec![0.2, 0.1]);
        let x = vec![0.3, 1.0, -0.5, 2.0, 1.1, -0.4];
        let (y, cache) = forward(&x, 3, 2, &p, "bn", Norm::Batch);
        for f in 0..2 {
            let m: f64 = (0..3).map(|r| cache.xhat[r * 2 + f]).sum::<f64>() / 3.0;
            assert!(m.abs() < 1e-12);
        }
        // L = Σ w⊙y with fixed weights w.
        let w = [0.5, -1.0, 2.0, 0.3, -0.7, 1.1];
        let (g_x, g_gamma, _) = backward(&w, &cache, 3, 2, &p, "bn");
        let loss = |x: &[f64], p: &Params| -> f64 {
            let (y, _) = forward(x, 3, 2, p, "bn", Norm::Batch);
            y.iter().zip(&w).map(|(a, b)| a * b).sum()
        };
        let h = 1e-6;
        for i in 0..6 {
            let mut xp = x.clone();
            xp[i] += h;
            let mut xm = x.clone();
            xm[i] -= h;
            let fd = (loss(&xp, &p) - loss(&xm, &p)) / (2.0 * h);
            assert!((fd - g_x[i]).abs() < 1e-7, "ḡ_x[{i}]: {} vs fd {fd}", g_x[i]);
        }
        let mut pp = p.clone();
        pp.get_mut("bn.weight").unwrap()[1] += h;
        let mut pm = p.clone();
        pm.get_mut("bn.weight").unwrap()[1] -= h;
        let fd = (loss(&x, &pp) - loss(&x, &pm)) / (2.0 * h);
        assert!((fd - g_gamma[1]).abs() < 1e-7);
        assert_eq!(y.len(), 6);
    }

    #[test]
    fn running_statistics_use_momentum_and_the_unbiased_variance() {
        let p = params(vec![1.0], vec![0.0]);
        let (_, cache) = forward(&[1.0, 3.0], 2, 1, &p, "bn", Norm::Batch);
        assert_eq!(cache.var, vec![1.0]);
        let mut stats: Params =
            [("bn.running_mean_0".to_string(), vec![0.0]), ("bn.running_var_0".to_string(), vec![1.0])]
                .into_iter()
                .collect();
        update_running(&mut stats, "bn", 0, &cache, 2);
        assert!((stats["bn.running_mean_0"][0] - 0.2).abs() < 1e-15);
        assert!((stats["bn.running_var_0"][0] - (0.9 + 0.1 * 2.0)).abs() < 1e-15);
    }
}
