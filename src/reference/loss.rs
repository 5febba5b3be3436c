//! The per-step losses of method §4 and their gradient on the readout `o'`, and the auxiliary
//! ("oracle") target table `q` `[C, T, C]` with its no-gradient update.
//!
//! Classification, `w = (t+1)/T`, `p = log_softmax(o')`:
//! `ℓ_t = w·NLL(p, y) + (1 − w)·mean_{batch, classes}(−r_b ⊙ p_b)`, where the targets `r_b` are
//! `q[y_b, t]` (table, read before this step's write), `1/C` (uniform), or the term is off.
//! Regression: `ℓ_t = w·mean_{batch, outputs}(o' − y)²` (for `C > 1` outputs the mean runs over batch
//! and outputs alike). With per-step targets (streams, [`Targets::per_step`]) `w = 1` at every
//! step, the targets are those of step t and the auxiliary term is off.

use crate::settings::{AuxTargets, LossKind, Targets};

/// Row-wise softmax of `[B, C]` logits.
///
/// Method §4 (4.4), (4.5).
pub fn softmax(o: &[f64], classes: usize) -> Vec<f64> {
    let mut out = vec![0.0; o.len()];
    for (row, dst) in o.chunks(classes).zip(out.chunks_mut(classes)) {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|&v| (v - max).exp()).sum();
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = (v - max).exp() / sum;
        }
    }
    out
}

/// Row-wise log-softmax of `[B, C]` logits.
///
/// Method §4 (4.2).
pub fn log_softmax(o: &[f64], classes: usize) -> Vec<f64> {
    let mut out = vec![0.0; o.len()];
    for (row, dst) in o.chunks(classes).zip(out.chunks_mut(classes)) {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<f64>().ln();
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = v - lse;
        }
    }
    out
}

/// The index of the largest element (the first one on a tie).
pub fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// `q[y, t, :]`: the row of the table for class `y` at step `t` (`q` is `[C, T, C]`).
fn q_row(y: usize, t: usize, steps: usize, classes: usize) -> std::ops::Range<usize> {
    let start = (y * steps + t) * classes;
    start..start + classes
}

/// What a step's loss reads besides the readout: the loss kind, the targets of the batch, the
/// absolute step index `t` (for a chunk of steps: its first step `t0`) and the auxiliary table `q`
/// `[C, T, C]` (only read, and only with [`AuxTargets::Table`]).
#[derive(Debug, Clone, Copy)]
pub struct LossContext<'a> {
    pub kind: LossKind,
    pub targets: &'a Targets,
    pub t: usize,
    pub q: &'a [f64],
}

impl<'a> LossContext<'a> {
    pub fn new(kind: LossKind, targets: &'a Targets, t: usize, q: &'a [f64]) -> Self {
        LossContext { kind, targets, t, q }
    }

    /// The same context `j` steps later (step `j` of a chunk that starts at `self.t`).
    pub fn later(self, j: usize) -> Self {
        LossContext { t: self.t + j, ..self }
    }
}

/// The task loss `ℓ_t` (method §4, (4.1)–(4.6)) of step `ctx.t` (of `steps`) for readout `o`
/// `[B, C]` and its gradient `∂ℓ_t/∂o'`. GPU twin: `shaders/loss_grad.wgsl`.
pub fn task_loss(o: &[f64], batch: usize, classes: usize, steps: usize, ctx: LossContext) -> (f64, Vec<f64>) {
    let LossContext { kind, targets, t, q } = ctx;
    assert_eq!(o.len(), batch * classes);
    // Per-step targets (streams): every step is a prediction of its own, weight 1, no auxiliary
    // term; the targets of step t are row t of [T, B(, C)].
    let (w, aux_allowed) = if targets.per_step() { (1.0, false) } else { ((t + 1) as f64 / steps as f64, true) };
    let mut grad = vec![0.0; o.len()];
    match kind {
        LossKind::Classification { aux } => {
            let labels: &[u32] = match targets {
                Targets::Labels(l) => l,
                Targets::StepLabels(l) => &l[t * batch..(t + 1) * batch],
                _ => panic!("classification needs labels"),
            };
            assert_eq!(labels.len(), batch);
            let p = log_softmax(o, classes);
            let sm = softmax(o, classes);
            // w · NLL = −w/B Σ_b p[b, y_b];  ∂/∂o[b, j] = w/B (softmax_j − [j = y_b])
            let mut loss = 0.0;
            for b in 0..batch {
                let y = labels[b] as usize;
                loss -= w * p[b * classes + y] / batch as f64;
                for j in 0..classes {
                    let onehot = if j == y { 1.0 } else { 0.0 };
                    grad[b * classes + j] += w / batch as f64 * (sm[b * classes + j] - onehot);
                }
            }
            // (1 − w) · mean_{b,c}(−r_b,c · p_b,c);  ∂/∂o[b, j] = (1−w)/(BC) (softmax_j Σ_c r_c − r_j)
            // At t = T−1 the weight is 0 (the one-hot target adds nothing, method §4).
            let aux_w = 1.0 - w;
            if aux_allowed && t + 1 < steps && aux != AuxTargets::Off {
                let scale = aux_w / (batch * classes) as f64;
                for b in 0..batch {
                    let r: Vec<f64> = match aux {
                        AuxTargets::Table => q[q_row(labels[b] as usize, t, steps, classes)].to_vec(),
                        AuxTargets::Uniform => vec![1.0 / classes as f64; classes],
                        AuxTargets::Off => unreachable!(),
                    };
                    let r_sum: f64 = r.iter().sum();
                    for j in 0..classes {
                        let i = b * classes + j;
                        loss -= scale * r[j] * p[i];
                        grad[i] += scale * (sm[i] * r_sum - r[j]);
                    }
                }
            }
            (loss, grad)
        }
        LossKind::Regression => {
            let y: &[f32] = match targets {
                Targets::Values(v) => v,
                Targets::StepValues(v) => &v[t * o.len()..(t + 1) * o.len()],
                _ => panic!("regression needs values"),
            };
            assert_eq!(y.len(), o.len(), "regression targets are [B, C]");
            let n = o.len() as f64;
            let mut loss = 0.0;
            for i in 0..o.len() {
                let diff = o[i] - y[i] as f64;
                loss += w * diff * diff / n;
                grad[i] = w * 2.0 * diff / n;
            }
            (loss, grad)
        }
    }
}

/// The table update after step `t` (no gradient; only for `t < T−1`): for each class `y`, the first
/// sample of the batch (in batch order) with label `y` whose argmax prediction is wrong writes its
/// softmax into `q[y, t]`. Classes without such a sample keep their row.
///
/// Method §4 (4.4). GPU twin: `shaders/loss_finalize.wgsl`.
pub fn update_table(q: &mut [f64], o: &[f64], labels: &[u32], classes: usize, t: usize, steps: usize) {
    if t + 1 >= steps {
        return;
    }
    let sm = softmax(o, classes);
    let mut written = vec![false; classes];
    for (b, &y) in labels.iter().enumerate() {
        let y = y as usize;
        let row = &o[b * classes..(b + 1) * classes];
        if !written[y] && argmax(row) != y {
            q[q_row(y, t, steps, classes)].copy_from_slice(&sm[b * classes..(b + 1) * classes]);
            written[y] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_gradient_matches_finite_differences() {
        let (b, c, steps, t) = (3, 4, 5, 2);
        let o = vec![0.1, -0.3, 0.7, 0.2, 1.0, 0.0, -0.5, 0.4, -0.2, 0.3, 0.3, 0.9];
        let labels = Targets::Labels(vec![2, 0, 2]);
        let mut q = vec![0.0; c * steps * c];
        for (i, v) in q.iter_mut().enumerate() {
            *v = (i % 7) as f64 / 7.0;
        }
        for aux in [AuxTargets::Off, AuxTargets::Table, AuxTargets::Uniform] {
            let kind = LossKind::Classification { aux };
            let ctx = LossContext::new(kind, &labels, t, &q);
            let (_, g) = task_loss(&o, b, c, steps, ctx);
            for i in 0..o.len() {
                let h = 1e-6;
                let mut op = o.clone();
                op[i] += h;
                let mut om = o.clone();
                om[i] -= h;
                let fd = (task_loss(&op, b, c, steps, ctx).0 - task_loss(&om, b, c, steps, ctx).0) / (2.0 * h);
                assert!((fd - g[i]).abs() < 1e-8, "{aux:?} [{i}] {} vs {fd}", g[i]);
            }
        }
    }

    #[test]
    fn first_wrong_sample_of_each_class_writes_the_table() {
        let (c, steps) = (3, 4);
        // Labels 1, 1, 2, 0: sample 0 right, sample 1 wrong (writes class 1), sample 2 wrong, sample 3 right.
        let o = vec![0.0, 2.0, 0.0, 1.0, 0.0, 0.5, 3.0, 0.0, 0.0, 2.0, 0.0, 0.0];
        let mut q = vec![0.0; c * steps * c];
        update_table(&mut q, &o, &[1, 1, 2, 0], c, 1, steps);
        let sm = softmax(&o, c);
        assert_eq!(q[q_row(1, 1, steps, c)], sm[3..6]);
        assert_eq!(q[q_row(2, 1, steps, c)], sm[6..9]);
        assert!(q[q_row(0, 1, steps, c)].iter().all(|&v| v == 0.0));
        // No write at the last step.
        let mut q2 = vec![0.0; c * steps * c];
        update_table(&mut q2, &o, &[1, 1, 2, 0], c, steps - 1, steps);
        assert!(q2.iter().all(|&v| v == 0.0));
    }
}
