//! Event-camera data as plain host arrays (no GPU types): streams of events `(x, y, t, p)` from a
//! sensor of `width × height` pixels, the files they come in, and their binning into frames.
//!
//! - here: [`Events`] (columns x, y, t in µs, p ∈ {0 = OFF, 1 = ON}) and [`EventError`], the one
//!   error of every reader, naming the file and the fault.
//! - `aedat`: AEDAT 3.1 files (DVS128 Gesture as distributed), their `_labels.csv`, the trial
//!   lists, and [`DvsGesture`], a split of the dataset read one recording at a time.
//! - `numpy`: `.npy` structured arrays (tonic) and `.npz` archives of x, y, t, p (SpikingJelly);
//!   the `.npy` header is parsed here, the zip container by the `zip` crate.
//! - `frames`: binning into `[T, 2, H, W]` count frames, split by event number (SpikingJelly's
//!   default) or by time, with integer sum-pooling; [`FrameSet`], labelled frames in memory that
//!   become `[T, B, 2·H·W]` batches.
//! - `folders`: [`EventFolders`], a directory of `.npz`/`.npy` event files in one folder per class
//!   and split (SpikingJelly's `events_np` layout), listed and read into a [`FrameSet`].
//! - `nmnist_synth`: the synthetic N-MNIST task: MNIST digits moved along three saccades in front
//!   of a simulated DVS pixel array, deterministic from a seed, cached on disk.

mod aedat;
mod folders;
mod frames;
mod nmnist_synth;
mod numpy;

use std::path::{Path, PathBuf};

pub use aedat::{read_aedat, read_labels_csv, read_trial_list, DvsGesture, LabelledSpan, DVS128_SIZE, GESTURE_CLASSES};
pub use folders::EventFolders;
pub use frames::{bin_events, frame_of_each_event, FrameSet, FrameSpec, SplitBy};
pub use nmnist_synth::{CacheOutcome, NmnistSynth, SynthParams, NMNIST_SIZE};
pub use numpy::{read_event_file, read_npy, read_npz};

/// An event file or event parameters refused; every variant names the file (or what was asked).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event file {} not found{hint}", path.display())]
    Missing { path: PathBuf, hint: String },
    #[error("event file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not what its format says (bad magic, truncated packet, wrong sizes, a dtype or
    /// field that cannot be read, a malformed line).
    #[error("event file {}: {fault}", path.display())]
    Malformed { path: PathBuf, fault: String },
    #[error(
        "event file {}: event {index} at (x {x}, y {y}, p {p}) lies outside the {width}×{height} sensor \
         (x < {width}, y < {height}, p ∈ {{0, 1}})",
        path.display()
    )]
    OutsideSensor { path: PathBuf, index: usize, x: i64, y: i64, p: i64, width: u16, height: u16 },
    /// A directory of class folders that cannot be used as laid out (an empty split, train and
    /// test with different classes, a class folder without event files).
    #[error("event folders {}: {fault}", dir.display())]
    Layout { dir: PathBuf, fault: String },
    /// Binning or generator parameters that cannot be used (zero frames, zero down-sampling, ...).
    #[error("event parameters: {0}")]
    Params(String),
}

impl EventError {
    pub(crate) fn malformed(path: &Path, fault: impl Into<String>) -> Self {
        EventError::Malformed { path: path.to_path_buf(), fault: fault.into() }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            EventError::Missing { path: path.to_path_buf(), hint: String::new() }
        } else {
            EventError::Io { path: path.to_path_buf(), source }
        }
    }
}

/// A stream of events in columns, in the order the file holds them (time order for recordings).
/// `t` is in microseconds; `p` is 1 for ON (brighter), 0 for OFF.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Events {
    pub width: u16,
    pub height: u16,
    pub x: Vec<u16>,
    pub y: Vec<u16>,
    pub t: Vec<i64>,
    pub p: Vec<u8>,
}

impl Events {
    /// No events, from a sensor of `width × height` pixels.
    pub fn empty(width: u16, height: u16) -> Self {
        Events { width, height, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// Append one event. The caller has checked it lies on the sensor (readers use
    /// [`Events::push_checked`]).
    pub fn push(&mut self, x: u16, y: u16, t: i64, p: u8) {
        self.x.push(x);
        self.y.push(y);
        self.t.push(t);
        self.p.push(p);
    }

    /// Append one event read from `path`, refusing it if it lies off the sensor or its polarity
    /// is not 0/1 (`-1` is accepted as OFF: some tools write polarity as ±1).
    pub fn push_checked(&mut self, path: &Path, x: i64, y: i64, t: i64, p: i64) -> Result<(), EventError> {
        let pol = match p {
            1 => 1,
            0 | -1 => 0,
            _ => u8::MAX,
        };
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 || pol == u8::MAX {
            return Err(EventError::OutsideSensor {
                path: path.to_path_buf(),
                index: self.len(),
                x,
                y,
                p,
                width: self.width,
                height: self.height,
            });
        }
        self.push(x as u16, y as u16, t, pol);
        Ok(())
    }

    /// The events with `start ≤ t < end`, in order (how the DVS Gesture label files cut a
    /// recording into samples).
    pub fn time_slice(&self, start: i64, end: i64) -> Events {
        let mut out = Events::empty(self.width, self.height);
        for i in 0..self.len() {
            if self.t[i] >= start && self.t[i] < end {
                out.push(self.x[i], self.y[i], self.t[i], self.p[i]);
            }
        }
        out
    }

    /// How many ON and OFF events: `(on, off)`.
    pub fn polarity_counts(&self) -> (usize, usize) {
        let on = self.p.iter().filter(|&&p| p == 1).count();
        (on, self.len() - on)
    }
}

#[cfg(test)]
mod tests;
