//! IDX files (the MNIST / Fashion-MNIST format): a big-endian header (magic `0x00000803` and
//! `count, rows, cols` for images; `0x00000801` and `count` for labels) followed by one byte per
//! pixel or label. Files may be gzipped; that is detected by the gzip magic bytes `1f 8b`, not by
//! the file name. The header is validated and the length must match it exactly.

use std::io::Read;
use std::path::Path;

use super::DataError;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// A stack of 8-bit grey images, row-major, `count × rows × cols` bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl Images {
    /// Pixels per image (`rows · cols`).
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`, row-major. Panics if `i ≥ count`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.pixels_per_image();
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// The whole file, decompressed if it starts with the gzip magic bytes.
fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => ".".into(),
            };
            DataError::Missing { path: path.to_path_buf(), dir }
        } else {
            DataError::Io { path: path.to_path_buf(), source }
        }
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Gzip { path: path.to_path_buf(), reason: e.to_string() })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Check the magic number and read `dims` big-endian u32 dimensions after it; the bytes after the
/// header must number exactly the product of the dims. Returns the dims.
fn parse(path: &Path, bytes: &[u8], magic: u32, kind: &'static str, dims: usize) -> Result<Vec<usize>, DataError> {
    let header = 4 * (1 + dims);
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if bytes.len() >= 4 && be(0) != magic {
        return Err(DataError::BadMagic { path: path.to_path_buf(), kind, expected: magic, found: be(0) });
    }
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: header as u64,
            found: bytes.len() as u64,
        });
    }
    let dims: Vec<usize> = (0..dims).map(|k| be(4 * (1 + k)) as usize).collect();
    if dims[1..].contains(&0) {
        return Err(DataError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("zero-sized dimension in {dims:?}"),
        });
    }
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .and_then(|payload| payload.checked_add(header as u64))
        .ok_or_else(|| DataError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("dimensions {dims:?} overflow"),
        })?;
    let found = bytes.len() as u64;
    if found < expected {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected, found });
    }
    if found > expected {
        return Err(DataError::TrailingBytes { path: path.to_path_buf(), expected, found });
    }
    Ok(dims)
}

/// Read an IDX image file (magic `0x00000803`), gzipped or raw.
pub fn read_images(path: &Path) -> Result<Images, DataError> {
    let mut bytes = read_bytes(path)?;
    let dims = parse(path, &bytes, IMAGES_MAGIC, "image", 3)?;
    bytes.drain(..16);
    Ok(Images { count: dims[0], rows: dims[1], cols: dims[2], pixels: bytes })
}

/// Read an IDX label file (magic `0x00000801`), gzipped or raw: one byte per sample.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut bytes = read_bytes(path)?;
    parse(path, &bytes, LABELS_MAGIC, "label", 1)?;
    bytes.drain(..8);
    Ok(bytes)
}
