//! Checkpoint files: named f32 tensors plus string metadata in the safetensors format, which is
//! what the authors' PyTorch model reads and writes, so weights move both ways.
//!
//! This module owns the file format only: writing a [`TensorMap`] atomically (temp file in the
//! same directory, fsync, rename), reading one back (f32 only, scalars of shape `[]` included),
//! and checking a loaded map against a [`ParamLayout`]. What the tensors *mean* (parameters,
//! `W̄`, `λ`, optimizer moments, run state) is decided by the caller. Every error names the file,
//! and where it concerns one tensor, that tensor.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};

use crate::model::ParamLayout;
use crate::tensor::{Tensor, TensorMap};

/// The key safetensors reserves for the metadata block; no tensor may use it.
const METADATA_KEY: &str = "__metadata__";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {}: not a valid safetensors file: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("checkpoint {}: tensor `{name}` is missing", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("checkpoint {}: unexpected tensor `{name}` (not part of the model)", path.display())]
    UnexpectedTensor { path: PathBuf, name: String },
    #[error(
        "checkpoint {}: tensor `{name}` has shape {found:?}, expected {expected:?}",
        path.display()
    )]
    WrongShape { path: PathBuf, name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("checkpoint {}: tensor `{name}` has dtype {found}, only F32 is supported", path.display())]
    WrongDtype { path: PathBuf, name: String, found: String },
    /// A tensor handed to [`save`] whose data length does not match its shape, or whose name the
    /// format reserves.
    #[error("checkpoint {}: cannot save tensor `{name}`: {reason}", path.display())]
    InvalidTensor { path: PathBuf, name: String, reason: String },
    #[error(
        "checkpoint {}: tensor `{name}` holds {value} at index {index} (of {count} non-finite values); \
         a run cannot continue from it",
        path.display()
    )]
    NonFinite { path: PathBuf, name: String, index: usize, value: f32, count: usize },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

/// One f32 tensor as the safetensors serializer sees it (little-endian bytes).
struct F32View<'a> {
    shape: &'a [usize],
    bytes: Vec<u8>,
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Write `tensors` and `metadata` to `path` atomically: the bytes go to a temporary file in the
/// same directory, which is flushed to disk and then renamed over `path`, so a reader (or a crash)
/// sees either the old file or the complete new one. The directory must exist.
pub fn save(path: &Path, tensors: &TensorMap, metadata: &BTreeMap<String, String>) -> Result<(), CheckpointError> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let invalid =
            |reason: String| CheckpointError::InvalidTensor { path: path.to_path_buf(), name: name.clone(), reason };
        if name == METADATA_KEY {
            return Err(invalid(format!("the name `{METADATA_KEY}` is reserved by the file format")));
        }
        let expected: usize = t.shape.iter().product();
        if expected != t.data.len() {
            return Err(invalid(format!(
                "shape {:?} needs {expected} elements but the tensor holds {}",
                t.shape,
                t.data.len()
            )));
        }
        let bytes: Vec<u8> = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        views.push((name.as_str(), F32View { shape: &t.shape, bytes }));
    }
    let info: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let bytes = safetensors::serialize(views, Some(info))
        .map_err(|e| CheckpointError::Malformed { path: path.to_path_buf(), reason: e.to_string() })?;

    crate::files::write_atomic(path, &bytes, "checkpoint")
        .map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })
}

/// Read a checkpoint: every tensor (which must be F32; any other dtype is refused naming the
/// tensor) and the metadata block (empty if the file has none).
pub fn load(path: &Path) -> Result<(TensorMap, BTreeMap<String, String>), CheckpointError> {
    let buffer = fs::read(path).map_err(io_err(path))?;
    let malformed = |reason: String| CheckpointError::Malformed { path: path.to_path_buf(), reason };
    let (header_len, meta) = SafeTensors::read_metadata(&buffer).map_err(|e| malformed(e.to_string()))?;
    let data = &buffer[8 + header_len..];
    let mut tensors = TensorMap::new();
    for name in meta.offset_keys() {
        let info = meta.info(&name).ok_or_else(|| malformed(format!("tensor `{name}` has no header entry")))?;
        if info.dtype != Dtype::F32 {
            return Err(CheckpointError::WrongDtype { path: path.to_path_buf(), name, found: info.dtype.to_string() });
        }
        let (start, end) = info.data_offsets;
        let bytes =
            data.get(start..end).ok_or_else(|| malformed(format!("tensor `{name}` points outside the file")))?;
        let values: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let expected: usize = info.shape.iter().product();
        if values.len() != expected {
            return Err(malformed(format!("tensor `{name}` of shape {:?} holds {} values", info.shape, values.len())));
        }
        tensors.insert(name, Tensor { shape: info.shape.clone(), data: values });
    }
    let metadata = meta.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    Ok((tensors, metadata.unwrap_or_default()))
}

/// Check that every value of `tensors` is finite; the error names the first tensor (by name)
/// holding a NaN or infinity, the first such index and how many there are.
pub fn check_finite(path: &Path, tensors: &TensorMap) -> Result<(), CheckpointError> {
    for (name, t) in tensors {
        if let Some(index) = t.data.iter().position(|x| !x.is_finite()) {
            return Err(CheckpointError::NonFinite {
                path: path.to_path_buf(),
                name: name.clone(),
                index,
                value: t.data[index],
                count: t.data.iter().filter(|x| !x.is_finite()).count(),
            });
        }
    }
    Ok(())
}

/// Check that `tensors` holds exactly the parameters of `layout` (names and shapes), extra names
/// allowed only if `allow_extra`; the error names the first offending tensor (in layout order,
/// then by name for extras) and expected vs found shape. `path` is only used in messages.
pub fn check_params(
    path: &Path,
    tensors: &TensorMap,
    layout: &ParamLayout,
    allow_extra: bool,
) -> Result<(), CheckpointError> {
    for slot in &layout.slots {
        match tensors.get(&slot.name) {
            None => return Err(CheckpointError::MissingTensor { path: path.to_path_buf(), name: slot.name.clone() }),
            Some(t) if t.shape != slot.shape => {
                return Err(CheckpointError::WrongShape {
                    path: path.to_path_buf(),
                    name: slot.name.clone(),
                    expected: slot.shape.clone(),
                    found: t.shape.clone(),
                })
            }
            Some(_) => {}
        }
    }
    if !allow_extra {
        if let Some(name) = tensors.keys().find(|n| layout.get(n).is_none()) {
            return Err(CheckpointError::UnexpectedTensor { path: path.to_path_buf(), name: name.clone() });
        }
    }
    Ok(())
}
