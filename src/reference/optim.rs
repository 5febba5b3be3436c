//! The FPTT update of method §5, element by element, and the optimizer steps it uses (PyTorch
//! semantics). The trainer composes them per update, over all trainable tensors:
//!
//! 1. [`fptt_gradient`]: `g = ∇ℓ_t − λ + α·(W − W̄)`
//! 2. [`clip_factor`]: `g ← g·min(1, c/(‖g‖₂ + 1e−6))`, the norm global over all tensors
//! 3. [`adam_step`] / [`adamax_step`] (or [`sgd_step`] for the scalar trace of method §6)
//! 4. [`fptt_after_step`]: `λ ← λ − α·(W − W̄)` with the old `W̄`, then `W̄ ← (1−β)·W̄ + β·W − (β/α)·λ`
//!
//! [`regulariser`] is `−⟨W, λ⟩ + (α/2)·‖W − W̄‖²`, the part of the total loss beyond `ℓ_t`.
//!
//! [`OptimState`] composes them over a parameter map by name (any map: the dense network's or the
//! conv network's), the order of one update in one place.

use super::Params;
use crate::settings::{Optimizer, TrainingSettings, ADAM_BETA1, ADAM_BETA2, ADAM_EPS};

/// `g = ∇ℓ_t − λ + α·(W − W̄)`.
///
/// Method §5 (5.2). GPU twins: `shaders/fptt_norm.wgsl` (for the norm), `shaders/fptt_update.wgsl`.
pub fn fptt_gradient(grad: &[f64], w: &[f64], wbar: &[f64], lambda: &[f64], alpha: f64) -> Vec<f64> {
    (0..w.len()).map(|i| grad[i] - lambda[i] + alpha * (w[i] - wbar[i])).collect()
}

/// `−⟨W, λ⟩ + (α/2)·‖W − W̄‖²` for one tensor.
///
/// Method §5 (5.1).
pub fn regulariser(w: &[f64], wbar: &[f64], lambda: &[f64], alpha: f64) -> f64 {
    (0..w.len()).map(|i| -w[i] * lambda[i] + 0.5 * alpha * (w[i] - wbar[i]).powi(2)).sum()
}

/// The factor of PyTorch's `clip_grad_norm_`: `min(1, c/(‖g‖₂ + 1e−6))` for the global norm `norm`.
///
/// Method §5 (5.3). GPU twin: `shaders/fptt_update.wgsl` (each invocation adds `fptt_norm`'s partials).
pub fn clip_factor(norm: f64, clip: f64) -> f64 {
    (clip / (norm + 1e-6)).min(1.0)
}

/// Plain SGD: `W ← W − lr·g`.
///
/// Method §5 (the scalar trace of §6 only); no GPU twin.
pub fn sgd_step(w: &mut [f64], g: &[f64], lr: f64) {
    for (wi, gi) in w.iter_mut().zip(g) {
        *wi -= lr * gi;
    }
}

/// Adam (PyTorch), update number `n ≥ 1`: `m ← m + (1−β1)(g − m)`, `v ← β2·v + (1−β2)·g²`,
/// `W ← W − (lr/(1−β1ⁿ))·m/(√v/√(1−β2ⁿ) + ε)`.
///
/// Method §5 (5.7). GPU twin: `shaders/fptt_update.wgsl`.
pub fn adam_step(w: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], lr: f64, n: u64) {
    let bc1 = 1.0 - ADAM_BETA1.powi(n as i32);
    let bc2_sqrt = (1.0 - ADAM_BETA2.powi(n as i32)).sqrt();
    let step = lr / bc1;
    for i in 0..w.len() {
        m[i] += (1.0 - ADAM_BETA1) * (g[i] - m[i]);
        v[i] = ADAM_BETA2 * v[i] + (1.0 - ADAM_BETA2) * g[i] * g[i];
        w[i] -= step * m[i] / (v[i].sqrt() / bc2_sqrt + ADAM_EPS);
    }
}

/// Adamax (PyTorch), update number `n ≥ 1`: `m ← m + (1−β1)(g − m)`, `u ← max(β2·u, |g| + ε)`,
/// `W ← W − (lr/(1−β1ⁿ))·m/u`.
///
/// Method §5 (5.8). GPU twin: `shaders/fptt_update.wgsl`.
pub fn adamax_step(w: &mut [f64], g: &[f64], m: &mut [f64], u: &mut [f64], lr: f64, n: u64) {
    let step = lr / (1.0 - ADAM_BETA1.powi(n as i32));
    for i in 0..w.len() {
        m[i] += (1.0 - ADAM_BETA1) * (g[i] - m[i]);
        u[i] = (ADAM_BETA2 * u[i]).max(g[i].abs() + ADAM_EPS);
        w[i] -= step * m[i] / u[i];
    }
}

/// After the optimizer step (W is the new W): `λ ← λ − α·(W − W̄)` with the old `W̄`, then
/// `W̄ ← (1−β)·W̄ + β·W − (β/α)·λ` with the new `λ`.
///
/// Method §5 (5.5)–(5.6). GPU twin: `shaders/fptt_update.wgsl`.
pub fn fptt_after_step(w: &[f64], wbar: &mut [f64], lambda: &mut [f64], alpha: f64, beta: f64) {
    for i in 0..w.len() {
        lambda[i] -= alpha * (w[i] - wbar[i]);
        wbar[i] = (1.0 - beta) * wbar[i] + beta * w[i] - (beta / alpha) * lambda[i];
    }
}

/// What one update reads besides the tensors: the optimizer, the learning rate, the clip `c` and
/// FPTT's `α`, `β`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateSettings {
    pub optimizer: Optimizer,
    pub lr: f64,
    pub clip: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl UpdateSettings {
    /// The settings of `s` with learning rate `lr` (a schedule may have moved it from `s.lr`).
    pub fn of(s: &TrainingSettings, lr: f64) -> Self {
        UpdateSettings { optimizer: s.optimizer, lr, clip: s.clip as f64, alpha: s.alpha as f64, beta: s.beta as f64 }
    }
}

/// The training state of the trainable tensors of a parameter map, by name: `W̄`, `λ`, the
/// optimizer's two moments (`exp_avg`; `exp_avg_sq` for Adam, `exp_inf` for Adamax) and the number
/// of updates so far. Tensors of the parameter map that are not here (frozen ones) are not touched.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimState {
    pub wbar: Params,
    pub lambda: Params,
    pub moment1: Params,
    pub moment2: Params,
    pub updates: u64,
}

impl OptimState {
    /// The start of training for the tensors of `trainable` (their current values): `W̄ = W`,
    /// `λ = 0`, moments 0, no updates.
    pub fn new(trainable: Params) -> Self {
        let zeros: Params = trainable.iter().map(|(k, v)| (k.clone(), vec![0.0; v.len()])).collect();
        OptimState { wbar: trainable, lambda: zeros.clone(), moment1: zeros.clone(), moment2: zeros, updates: 0 }
    }

    /// `−Σ⟨W, λ⟩ + α/2·Σ‖W − W̄‖²` over the trainable tensors, with the current W, λ, W̄.
    ///
    /// Method §5 (5.1).
    pub fn regulariser(&self, params: &Params, alpha: f64) -> f64 {
        self.wbar.keys().map(|k| regulariser(&params[k], &self.wbar[k], &self.lambda[k], alpha)).sum()
    }

    /// Method §5: `g = ∇ℓ − λ + α(W − W̄)`; global-norm clip; optimizer step; λ and W̄ updates.
    ///
    /// Method §5 (5.2)–(5.6), with (5.12) for a chunk. GPU twins: `shaders/fptt_norm.wgsl`,
    /// `shaders/fptt_update.wgsl`.
    pub fn fptt_update(&mut self, params: &mut Params, grads: &Params, s: UpdateSettings) {
        let g: Params = self
            .wbar
            .keys()
            .map(|k| (k.clone(), fptt_gradient(&grads[k], &params[k], &self.wbar[k], &self.lambda[k], s.alpha)))
            .collect();
        self.clipped_optimizer_step(params, g, s);
        // Each tensor's λ and W̄ read only its own new W: doing them after all optimizer steps gives
        // the same numbers as interleaving them tensor by tensor.
        for (k, w) in params.iter() {
            if let (Some(wbar), Some(lambda)) = (self.wbar.get_mut(k), self.lambda.get_mut(k)) {
                fptt_after_step(w, wbar, lambda, s.alpha, s.beta);
            }
        }
    }

    /// BPTT (method §5, last paragraph) and e-prop: the task gradient itself, clipped, one
    /// optimizer step; W̄ and λ are not touched.
    ///
    /// Method §5 (5.13). GPU twins: the kernels of [`Self::fptt_update`] with `OPTIM_PLAIN`.
    pub fn plain_update(&mut self, params: &mut Params, grads: &Params, s: UpdateSettings) {
        let g: Params = self.wbar.keys().map(|k| (k.clone(), grads[k].clone())).collect();
        self.clipped_optimizer_step(params, g, s);
    }

    /// `g ← g·min(1, c/(‖g‖₂ + 1e−6))` with the norm over all trainable tensors, then the optimizer
    /// step (update number n + 1) on every trainable tensor.
    fn clipped_optimizer_step(&mut self, params: &mut Params, mut g: Params, s: UpdateSettings) {
        let norm = g.values().flat_map(|v| v.iter()).map(|x| x * x).sum::<f64>().sqrt();
        let factor = clip_factor(norm, s.clip);
        for v in g.values_mut() {
            v.iter_mut().for_each(|x| *x *= factor);
        }
        self.updates += 1;
        let n = self.updates;
        for (k, g) in &g {
            let w = params.get_mut(k).unwrap_or_else(|| panic!("reference: no parameter {k}"));
            let m1 = self.moment1.get_mut(k).unwrap();
            let m2 = self.moment2.get_mut(k).unwrap();
            match s.optimizer {
                Optimizer::Adam => adam_step(w, g, m1, m2, s.lr, n),
                Optimizer::Adamax => adamax_step(w, g, m1, m2, s.lr, n),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr_and_adamax_too() {
        // With bias correction the first Adam step is lr·g/(|g| + ε') ≈ lr·sign(g).
        let mut w = vec![1.0, 1.0];
        let (mut m, mut v) = (vec![0.0; 2], vec![0.0; 2]);
        adam_step(&mut w, &[0.5, -2.0], &mut m, &mut v, 0.01, 1);
        assert!((w[0] - 0.99).abs() < 1e-9 && (w[1] - 1.01).abs() < 1e-9, "{w:?}");
        let mut w = vec![1.0, 1.0];
        let (mut m, mut u) = (vec![0.0; 2], vec![0.0; 2]);
        adamax_step(&mut w, &[0.5, -2.0], &mut m, &mut u, 0.01, 1);
        assert!((w[0] - 0.99).abs() < 1e-9 && (w[1] - 1.01).abs() < 1e-9, "{w:?}");
        assert_eq!(u, vec![0.5 + 1e-8, 2.0 + 1e-8]);
    }

    #[test]
    fn clip_factor_is_one_below_the_threshold() {
        assert_eq!(clip_factor(0.5, 1.0), 1.0);
        assert!((clip_factor(4.0, 1.0) - 1.0 / (4.0 + 1e-6)).abs() < 1e-15);
    }
}
