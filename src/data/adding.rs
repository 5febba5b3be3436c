//! The adding problem (method §8): every step carries two inputs, a value `U(0,1)` and a marker that
//! is 1 at exactly one step of the first half `[0, T/2)` and one step of the second half
//! `[T/2, T)`; the target is the sum of the two marked values. Fresh batches are drawn from the
//! run's generator, so a seed reproduces the whole stream. Predicting the mean (1.0) gives an MSE
//! of 1/6 ≈ 0.167.

use crate::rng::Rng;
use crate::settings::{SequenceBatch, Targets};

/// A value in `[0, 1)` with 24 random bits: exactly representable in f32, never rounds up to 1.
fn unit_f32(rng: &mut Rng) -> f32 {
    (rng.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// A batch of `batch` adding-problem sequences of `steps` steps: inputs `[T, B, 2]` (channel 0
/// the value, channel 1 the marker), targets `Targets::Values` `[B, 1]`.
///
/// Per sample the draws are: the `T` values in step order, then the first-half marker position,
/// then the second-half one. Panics if `steps < 2` (a configuration error checked upstream).
pub fn adding_batch(rng: &mut Rng, batch: usize, steps: usize) -> SequenceBatch {
    assert!(steps >= 2, "the adding problem needs at least 2 steps, got {steps}");
    let half = steps / 2;
    let mut inputs = vec![0.0f32; steps * batch * 2];
    let mut targets = Vec::with_capacity(batch);
    for b in 0..batch {
        for t in 0..steps {
            inputs[(t * batch + b) * 2] = unit_f32(rng);
        }
        let first = rng.below(half);
        let second = half + rng.below(steps - half);
        let mut sum = 0.0f32;
        for t in [first, second] {
            inputs[(t * batch + b) * 2 + 1] = 1.0;
            sum += inputs[(t * batch + b) * 2];
        }
        targets.push(sum);
    }
    SequenceBatch { steps, batch, inputs_per_step: 2, inputs, targets: Targets::Values(targets) }
}
