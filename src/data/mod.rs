//! Training data, as plain host arrays (no GPU types): the adding problem generated from the run's
//! seed, MNIST-format IDX files (MNIST, Fashion-MNIST; gzipped or raw), and sequence views that
//! turn images into `[T, B, k]` time-major batches (k pixels per step, optionally permuted).
//!
//! - `idx`: reading and validating IDX image and label files ([`read_images`], [`read_labels`]).
//! - `images`: a split of an image dataset on disk ([`ImageDataset`]), [`SequenceView`], [`epoch_order`].
//! - `adding`: fresh batches of the adding problem ([`adding_batch`], method §8).
//! - [`events`]: event-camera data: AEDAT 3.1 (DVS128 Gesture), NumPy event arrays, binning into
//!   `[T, 2, H, W]` frames, and the synthetic `nmnist-synth` task generated from MNIST digits.

mod adding;
pub mod events;
mod idx;
mod images;

use std::path::PathBuf;

pub use adding::adding_batch;
pub use idx::{read_images, read_labels, Images};
pub use images::{epoch_order, ImageDataset, SequenceView, Split};

/// How to obtain the image data, appended to "file not found" messages.
const HOW_TO_GET: &str = "download the MNIST or Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, \
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; gzipped or not) into";

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "data file {} not found: {HOW_TO_GET} {}, or point data.dir at the directory that holds them",
        path.display(), dir.display()
    )]
    Missing { path: PathBuf, dir: PathBuf },
    #[error("data file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "data file {}: gzip data cannot be decompressed ({reason}); the file is probably truncated or \
         damaged, download it again",
        path.display()
    )]
    Gzip { path: PathBuf, reason: String },
    #[error(
        "data file {}: not an IDX {kind} file (magic number 0x{found:08x}, expected 0x{expected:08x})",
        path.display()
    )]
    BadMagic { path: PathBuf, kind: &'static str, expected: u32, found: u32 },
    #[error("data file {}: bad IDX header: {reason}", path.display())]
    BadHeader { path: PathBuf, reason: String },
    #[error(
        "data file {} is truncated: its header promises {expected} bytes (decompressed) but it holds \
         {found}; download it again",
        path.display()
    )]
    Truncated { path: PathBuf, expected: u64, found: u64 },
    #[error(
        "data file {}: {found} bytes (decompressed) where its header promises exactly {expected}; \
         trailing data is not part of the IDX format",
        path.display()
    )]
    TrailingBytes { path: PathBuf, expected: u64, found: u64 },
    #[error(
        "data files disagree: {} holds {images} images but {} holds {labels} labels",
        images_path.display(), labels_path.display()
    )]
    CountMismatch { images_path: PathBuf, labels_path: PathBuf, images: usize, labels: usize },
    #[error("sequence view: {0}")]
    View(String),
    /// An event file or event parameters refused (the message names the file and the fault).
    #[error(transparent)]
    Events(#[from] events::EventError),
}
