//! Events to frames: `T` frames of `2 × H' × W'` event counts (polarity-major: channel 0 OFF,
//! channel 1 ON; then rows, then columns), with `H' = ⌈H / d⌉`, `W' = ⌈W / d⌉` for a spatial
//! down-sampling factor `d` (sum pooling of `d × d` blocks; the blocks at the right and bottom edge
//! are cut off when `d` does not divide the sensor, so every event is counted once).
//!
//! Which frame an event goes to follows SpikingJelly's `integrate_events_by_fixed_frames_number`
//! (its `split_by`), so frames made here equal the ones its datasets make:
//! - `number`: with `N` events, frame `j < T − 1` holds events `j·⌊N/T⌋ .. (j+1)·⌊N/T⌋` (in file
//!   order) and the last frame everything from `(T−1)·⌊N/T⌋` on (the remainder). With `N < T`,
//!   `⌊N/T⌋ = 0`: every event goes to the last frame and the others stay empty.
//! - `time`: `dt = ⌊(t_max − t_min) / T⌋` µs; frame `j < T − 1` holds `t_min + j·dt ≤ t < t_min +
//!   (j+1)·dt`, the last frame the rest. SpikingJelly fails when `dt = 0` (a span shorter than `T`
//!   µs) or a window is empty; here `dt = 0` counts as 1 µs and empty windows are empty frames.
//!
//! [`FrameSet`] keeps the frames of a whole split in memory as `u16` counts (saturating at 65 535),
//! `2·T·2·H'·W'` bytes per sample, and builds the trainer's `[T, B, 2·H'·W']` batches from them:
//! the layout of `[T, B, 2, H', W']`, so a convolutional network can take the same tensor.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{EventError, Events};
use crate::settings::{SequenceBatch, Targets};

/// How events are assigned to frames (SpikingJelly's `split_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitBy {
    /// Equal event counts per frame (the remainder in the last).
    Number,
    /// Equal time spans per frame.
    Time,
}

impl SplitBy {
    pub const ALL: [(&'static str, SplitBy); 2] = [("number", SplitBy::Number), ("time", SplitBy::Time)];
}

/// `frames` frames per sample, assigned by `split_by`, pooled by `downsample` in x and y.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    pub frames: usize,
    pub split_by: SplitBy,
    pub downsample: usize,
}

impl FrameSpec {
    fn check(&self) -> Result<(), EventError> {
        if self.frames == 0 {
            return Err(EventError::Params("frames must be at least 1".into()));
        }
        if self.downsample == 0 {
            return Err(EventError::Params("downsample must be at least 1".into()));
        }
        Ok(())
    }

    /// `(H', W')` for a sensor of `width × height`.
    pub fn pooled(&self, width: u16, height: u16) -> (usize, usize) {
        let d = self.downsample.max(1);
        ((height as usize).div_ceil(d), (width as usize).div_ceil(d))
    }

    /// Values per frame, `2·H'·W'` (the inputs per step of a dense network).
    pub fn frame_len(&self, width: u16, height: u16) -> usize {
        let (h, w) = self.pooled(width, height);
        2 * h * w
    }
}

/// The frame (0-based, `< frames`) of each event under `split_by`; `frames` must be ≥ 1.
pub fn frame_of_each_event(events: &Events, frames: usize, split_by: SplitBy) -> Vec<usize> {
    let n = events.len();
    let last = frames.saturating_sub(1);
    match split_by {
        SplitBy::Number => {
            let per = n / frames.max(1);
            (0..n).map(|i| i.checked_div(per).map_or(last, |j| j.min(last))).collect()
        }
        SplitBy::Time => {
            let (Some(&lo), Some(&hi)) = (events.t.iter().min(), events.t.iter().max()) else { return Vec::new() };
            // i128: a span of arbitrary i64 timestamps does not overflow.
            let dt = ((hi as i128 - lo as i128) / frames.max(1) as i128).max(1);
            events.t.iter().map(|&t| (((t as i128 - lo as i128) / dt) as usize).min(last)).collect()
        }
    }
}

/// Visit `(flat index into [T, 2, H', W'], 1)` for every event; shared by the f32 and u16 paths.
fn for_each_cell(events: &Events, spec: &FrameSpec, mut add: impl FnMut(usize)) -> Result<(), EventError> {
    spec.check()?;
    let (h, w) = spec.pooled(events.width, events.height);
    let d = spec.downsample;
    for (i, f) in frame_of_each_event(events, spec.frames, spec.split_by).into_iter().enumerate() {
        let (x, y, p) = (events.x[i] as usize, events.y[i] as usize, events.p[i] as usize);
        if x >= events.width as usize || y >= events.height as usize || p > 1 {
            return Err(EventError::Params(format!(
                "event {i} at (x {x}, y {y}, p {p}) lies outside its {}×{} sensor",
                events.width, events.height
            )));
        }
        add(((f * 2 + p) * h + y / d) * w + x / d);
    }
    Ok(())
}

/// The frames of `events` as `[T, 2, H', W']` f32 counts.
pub fn bin_events(events: &Events, spec: &FrameSpec) -> Result<Vec<f32>, EventError> {
    spec.check()?;
    let mut out = vec![0.0f32; spec.frames * spec.frame_len(events.width, events.height)];
    for_each_cell(events, spec, |i| out[i] += 1.0)?;
    Ok(out)
}

/// Add the frames of `events` to `cells` (one sample's `[T, 2, H', W']` counts, saturating), after
/// checking that they come from a `width × height` sensor.
fn bin_counts(
    events: &Events,
    spec: &FrameSpec,
    (width, height): (u16, u16),
    cells: &mut [u16],
) -> Result<(), EventError> {
    if (events.width, events.height) != (width, height) {
        return Err(EventError::Params(format!(
            "events of a {}×{} sensor in a frame set of {width}×{height}",
            events.width, events.height
        )));
    }
    for_each_cell(events, spec, |i| cells[i] = cells[i].saturating_add(1))
}

/// Labelled samples binned into frames, held as `u16` counts.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameSet {
    pub spec: FrameSpec,
    pub width: u16,
    pub height: u16,
    counts: Vec<u16>,
    pub labels: Vec<u32>,
}

impl FrameSet {
    pub fn new(spec: FrameSpec, width: u16, height: u16) -> Result<Self, EventError> {
        spec.check()?;
        Ok(FrameSet { spec, width, height, counts: Vec::new(), labels: Vec::new() })
    }

    fn sample_len(&self) -> usize {
        self.spec.frames * self.spec.frame_len(self.width, self.height)
    }

    /// Bin `events` and append them with `label`. Events from a sensor of another size are refused.
    pub fn push(&mut self, events: &Events, label: u32) -> Result<(), EventError> {
        let start = self.counts.len();
        self.counts.resize(start + self.sample_len(), 0);
        let binned = bin_counts(events, &self.spec, (self.width, self.height), &mut self.counts[start..]);
        if let Err(e) = binned {
            self.counts.truncate(start);
            return Err(e);
        }
        self.labels.push(label);
        Ok(())
    }

    /// A set of `labels.len()` samples binned by `threads` threads (at least one): sample `i` is
    /// `events_of(i)` with `labels[i]`. Each thread fills a contiguous run of samples in place, so
    /// the set is the same, sample for sample, as pushing them in order, whatever the threads;
    /// when several samples fail, the error is the first one's in sample order.
    pub fn bin_in_parallel(
        spec: FrameSpec,
        width: u16,
        height: u16,
        labels: Vec<u32>,
        threads: usize,
        events_of: impl Fn(usize) -> Result<Events, EventError> + Sync,
    ) -> Result<Self, EventError> {
        let mut set = FrameSet::new(spec, width, height)?;
        let n = labels.len();
        if n == 0 {
            return Ok(set);
        }
        let len = set.sample_len();
        // Refused rather than aborting: a split too big for memory is a user's setting.
        let total = n.checked_mul(len).filter(|&t| set.counts.try_reserve_exact(t).is_ok()).ok_or_else(|| {
            EventError::Params(format!(
                "{n} samples of {len} frame cells ({} MB of 16-bit counts) do not fit in memory \
                 (fewer samples: data.max_train_samples; smaller frames: data.downsample, data.frames)",
                (n as u128 * len as u128 * 2) / 1_000_000
            ))
        })?;
        set.counts.resize(total, 0);
        let per_thread = n.div_ceil(threads.clamp(1, n));
        let events_of = &events_of;
        // The first failing sample so far: the samples after it need not be read (its error, or
        // an earlier one, is the answer), those before it must be (one of them may fail too).
        let first_fault = &AtomicUsize::new(usize::MAX);
        let results: Vec<Result<(), EventError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = set
                .counts
                .chunks_mut(per_thread * len)
                .enumerate()
                .map(|(k, part)| {
                    scope.spawn(move || {
                        for (j, cells) in part.chunks_mut(len).enumerate() {
                            let i = k * per_thread + j;
                            if i > first_fault.load(Ordering::Relaxed) {
                                break;
                            }
                            let binned = events_of(i).and_then(|ev| bin_counts(&ev, &spec, (width, height), cells));
                            if binned.is_err() {
                                first_fault.fetch_min(i, Ordering::Relaxed);
                                return binned;
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            // A worker's panic is a bug, not a user's fault: passed on as the panic it was.
            workers.into_iter().map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        // Contiguous runs in order: the first run that failed holds the first fault.
        results.into_iter().collect::<Result<(), _>>()?;
        set.labels = labels;
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The memory the counts take, in bytes.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(self.counts.as_slice())
    }

    /// One more than the largest label (0 when empty).
    pub fn classes(&self) -> usize {
        self.labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0)
    }

    /// Sample `i`'s frames `[T, 2, H', W']` as f32. Panics if `i ≥ len` (a programming error).
    pub fn frames(&self, i: usize) -> Vec<f32> {
        let n = self.sample_len();
        self.counts[i * n..(i + 1) * n].iter().map(|&c| c as f32).collect()
    }

    /// The samples `indices` as a time-major batch: step `t` of sample `b` is frame `t` flattened
    /// (`[T, B, 2, H', W']` in memory). Panics on an index out of range (indices come from `len`).
    pub fn batch(&self, indices: &[usize]) -> SequenceBatch {
        let steps = self.spec.frames;
        let k = self.spec.frame_len(self.width, self.height);
        let b = indices.len();
        let mut inputs = vec![0.0f32; steps * b * k];
        for (bi, &idx) in indices.iter().enumerate() {
            let sample = &self.counts[idx * steps * k..(idx + 1) * steps * k];
            for t in 0..steps {
                let dst = &mut inputs[(t * b + bi) * k..(t * b + bi + 1) * k];
                for (d, &c) in dst.iter_mut().zip(&sample[t * k..(t + 1) * k]) {
                    *d = c as f32;
                }
            }
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        SequenceBatch { steps, batch: b, inputs_per_step: k, inputs, targets: Targets::Labels(labels) }
    }
}
