//! Image datasets on disk (MNIST, Fashion-MNIST: the standard IDX file names in one directory) and
//! their sequence views (method §8): an image becomes `T = rows·cols / k` steps of `k` pixels,
//! scaled to `[0, 1]` as `pixel / 255`, optionally in a fixed permutation (PS-MNIST) drawn from a
//! recorded seed. Batches are time-major `[T, B, k]`, as [`SequenceBatch`] wants.

use std::path::{Path, PathBuf};

use super::idx::{read_images, read_labels, Images};
use super::DataError;
use crate::rng::Rng;
use crate::settings::{SequenceBatch, Targets};

/// Which half of a dataset: the standard `train-*` or `t10k-*` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// The file-name prefix of this split (`train` or `t10k`).
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Images and their class labels (one per image).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    pub images: Images,
    pub labels: Vec<u8>,
}

/// `dir/name.gz` if it exists, else `dir/name` if that exists, else a "not found" error that
/// names the gzipped file and says how to get the data.
fn resolve(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(DataError::Missing { path: gz, dir: dir.to_path_buf() })
    }
}

impl ImageDataset {
    /// Read `{train,t10k}-images-idx3-ubyte[.gz]` and `{train,t10k}-labels-idx1-ubyte[.gz]` from
    /// `dir` (the gzipped file is preferred when both exist) and check that the counts agree.
    pub fn load(dir: &Path, split: Split) -> Result<Self, DataError> {
        let images_path = resolve(dir, &format!("{}-images-idx3-ubyte", split.prefix()))?;
        let labels_path = resolve(dir, &format!("{}-labels-idx1-ubyte", split.prefix()))?;
        let images = read_images(&images_path)?;
        let labels = read_labels(&labels_path)?;
        if images.count != labels.len() {
            return Err(DataError::CountMismatch {
                images_path,
                labels_path,
                images: images.count,
                labels: labels.len(),
            });
        }
        Ok(ImageDataset { images, labels })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// One more than the largest label (0 for an empty dataset).
    pub fn classes(&self) -> usize {
        self.labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0)
    }
}

/// How an image is fed as a sequence: `pixels_per_step` (k) pixels per step, in row-major order or
/// in the order of `permutation` (position `j` of the sequence holds pixel `permutation[j]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceView {
    pub pixels_per_step: usize,
    pub permutation: Option<Vec<usize>>,
}

impl SequenceView {
    /// A view of images with `pixels` pixels each (`rows · cols`), `k` per step; `k` must divide
    /// `pixels`. With `permute_seed`, the permutation is drawn from
    /// `Rng::derive(seed, "permutation")` by a Fisher–Yates shuffle, so the seed reproduces it.
    pub fn new(k: usize, permute_seed: Option<u64>, pixels: usize) -> Result<Self, DataError> {
        if k == 0 {
            return Err(DataError::View("pixels per step must be at least 1".into()));
        }
        if pixels == 0 {
            return Err(DataError::View("images have no pixels".into()));
        }
        if !pixels.is_multiple_of(k) {
            return Err(DataError::View(format!(
                "{k} pixels per step do not divide the {pixels} pixels of an image; choose a divisor of {pixels}"
            )));
        }
        let permutation = permute_seed.map(|seed| {
            let mut p: Vec<usize> = (0..pixels).collect();
            Rng::derive(seed, "permutation").shuffle(&mut p);
            p
        });
        Ok(SequenceView { pixels_per_step: k, permutation })
    }

    /// Sequence length `T` for images of `pixels` pixels.
    pub fn steps(&self, pixels: usize) -> usize {
        pixels / self.pixels_per_step
    }

    /// The samples `indices` of `ds` as inputs `[T, B, k]` (step t of sample b holds sequence
    /// positions `t·k .. t·k + k`, each `pixel / 255`) with their labels.
    ///
    /// Panics if an index is out of range or the view was built for another image size (both are
    /// programming errors: the view and the indices come from `ds`).
    pub fn batch(&self, ds: &ImageDataset, indices: &[usize]) -> SequenceBatch {
        let n = ds.images.pixels_per_image();
        let k = self.pixels_per_step;
        assert!(k > 0 && n.is_multiple_of(k), "sequence view of {k} pixels per step does not fit images of {n} pixels");
        if let Some(p) = &self.permutation {
            assert_eq!(p.len(), n, "sequence view permutes {} pixels but the images have {n}", p.len());
        }
        let steps = n / k;
        let b = indices.len();
        let mut inputs = vec![0.0f32; steps * b * k];
        for (bi, &idx) in indices.iter().enumerate() {
            assert!(idx < ds.len(), "sample index {idx} out of range for a dataset of {}", ds.len());
            let img = ds.images.image(idx);
            for j in 0..n {
                let src = self.permutation.as_ref().map_or(j, |p| p[j]);
                let (t, c) = (j / k, j % k);
                inputs[(t * b + bi) * k + c] = img[src] as f32 / 255.0;
            }
        }
        let labels = indices.iter().map(|&i| ds.labels[i] as u32).collect();
        SequenceBatch { steps, batch: b, inputs_per_step: k, inputs, targets: Targets::Labels(labels) }
    }
}

/// The order in which an epoch visits `n` samples: `0..n`, shuffled by `rng` if `shuffle`.
pub fn epoch_order(n: usize, shuffle: bool, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        rng.shuffle(&mut order);
    }
    order
}
