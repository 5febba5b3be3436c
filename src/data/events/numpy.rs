//! Event arrays in NumPy files, as the Python tools save them:
//! - `.npy` holding a structured array with fields `x, y, t, p` (tonic: e.g.
//!   `[('x', '<i8'), ('y', '<i8'), ('t', '<i8'), ('p', '<i8')]`, or smaller integers and a bool
//!   `p`); other fields are ignored.
//! - `.npz` (a zip archive, stored or deflated: `np.savez` / `np.savez_compressed`) holding 1-D
//!   arrays `x.npy, y.npy, t.npy, p.npy` of equal length (SpikingJelly's event files).
//!
//! The `.npy` format (version 1.0, 2.0, 3.0): magic `\x93NUMPY`, two version bytes, the header
//! length (u16 little-endian for 1.0, u32 for 2.0/3.0), then a Python dict literal with `descr`,
//! `fortran_order` and `shape`, then the data. The literal is parsed here by a small parser of
//! Python strings, integers, booleans, tuples, lists and dicts — the subset numpy writes. Accepted
//! element types: signed and unsigned integers of 1, 2, 4, 8 bytes, bool, f4/f8 (integral
//! values, e.g. a float time column), either byte order. Events must be 1-D and lie on the sensor
//! the caller names; `t` is taken as µs.

use std::io::Read;
use std::path::Path;

use super::{EventError, Events};

const MAGIC: &[u8] = b"\x93NUMPY";
const FIELDS: [&str; 4] = ["x", "y", "t", "p"];

/// A Python literal as numpy's header writes them.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A list or a tuple.
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

struct LitParser<'a> {
    s: &'a [u8],
    at: usize,
}

impl LitParser<'_> {
    fn skip_ws(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("header literal: {what} at character {}", self.at))
    }

    fn value(&mut self) -> Result<Lit, String> {
        self.skip_ws();
        let Some(&c) = self.s.get(self.at) else { return self.err("unexpected end") };
        match c {
            b'\'' | b'"' => {
                self.at += 1;
                let start = self.at;
                while self.at < self.s.len() && self.s[self.at] != c {
                    if self.s[self.at] == b'\\' {
                        return self.err("escapes in strings are not supported");
                    }
                    self.at += 1;
                }
                if self.at >= self.s.len() {
                    return self.err("unterminated string");
                }
                let text = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
                self.at += 1;
                Ok(Lit::Str(text))
            }
            b'(' | b'[' => {
                let close = if c == b'(' { b')' } else { b']' };
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.s.get(self.at) == Some(&close) {
                        self.at += 1;
                        return Ok(Lit::Seq(items));
                    }
                    items.push(self.value()?);
                    self.skip_ws();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(&b) if b == close => {}
                        _ => return self.err("expected ',' or a closing bracket"),
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.s.get(self.at) == Some(&b'}') {
                        self.at += 1;
                        return Ok(Lit::Dict(items));
                    }
                    let k = self.value()?;
                    self.skip_ws();
                    if self.s.get(self.at) != Some(&b':') {
                        return self.err("expected ':'");
                    }
                    self.at += 1;
                    let v = self.value()?;
                    items.push((k, v));
                    self.skip_ws();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {}
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            _ => {
                let start = self.at;
                while self.at < self.s.len() && (self.s[self.at].is_ascii_alphanumeric() || self.s[self.at] == b'-') {
                    self.at += 1;
                }
                let word = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
                match word {
                    "True" => Ok(Lit::Bool(true)),
                    "False" => Ok(Lit::Bool(false)),
                    // Python 2 numpy wrote shapes like (5L,).
                    w => match w.trim_end_matches('L').parse() {
                        Ok(i) => Ok(Lit::Int(i)),
                        Err(_) => self.err(&format!("unexpected {w:?}")),
                    },
                }
            }
        }
    }
}

/// One element type: kind (`i`, `u`, `b`, `f`), size in bytes, big-endian.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dtype {
    kind: u8,
    size: usize,
    big: bool,
}

impl Dtype {
    fn parse(text: &str) -> Option<Dtype> {
        let b = text.as_bytes();
        let (big, rest) = match b.first()? {
            b'<' | b'=' | b'|' => (false, &b[1..]),
            b'>' => (true, &b[1..]),
            _ => (false, b),
        };
        if rest == b"?" {
            return Some(Dtype { kind: b'b', size: 1, big });
        }
        let kind = *rest.first()?;
        let size: usize = std::str::from_utf8(&rest[1..]).ok()?.parse().ok()?;
        let ok = match kind {
            b'i' | b'u' => matches!(size, 1 | 2 | 4 | 8),
            b'b' => size == 1,
            b'f' => matches!(size, 4 | 8),
            _ => false,
        };
        ok.then_some(Dtype { kind, size, big })
    }

    /// The value at `b[..size]` as an integer (floats must be integral and in range).
    fn read(&self, b: &[u8]) -> Option<i64> {
        let mut raw = [0u8; 8];
        raw[..self.size].copy_from_slice(&b[..self.size]);
        if self.big {
            raw[..self.size].reverse();
        }
        let u = u64::from_le_bytes(raw);
        Some(match (self.kind, self.size) {
            (b'b', _) => (u != 0) as i64,
            (b'u', 8) => i64::try_from(u).ok()?,
            (b'u', _) => u as i64,
            (b'i', s) => {
                let shift = 64 - 8 * s as u32;
                ((u << shift) as i64) >> shift
            }
            (b'f', 4) => float_to_int(f32::from_bits(u as u32) as f64)?,
            (b'f', _) => float_to_int(f64::from_bits(u))?,
            _ => return None,
        })
    }
}

fn float_to_int(v: f64) -> Option<i64> {
    (v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e18).then_some(v as i64)
}

/// A parsed `.npy`: its fields (name, dtype, byte offset; one unnamed field for a plain array),
/// the record size, the element count, and where the data starts.
struct Npy {
    fields: Vec<(String, Dtype, usize)>,
    record: usize,
    count: usize,
    data: usize,
}

fn parse_npy(path: &Path, b: &[u8]) -> Result<Npy, EventError> {
    let bad = |fault: String| EventError::malformed(path, fault);
    if !b.starts_with(MAGIC) {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    if b.len() < 10 {
        return Err(bad("truncated .npy header".into()));
    }
    let (header_len, start): (usize, usize) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(bad(format!("unsupported .npy version {v}.{}", b[7]))),
    };
    let end =
        start.checked_add(header_len).filter(|&e| e <= b.len()).ok_or_else(|| bad("truncated .npy header".into()))?;
    let lit = LitParser { s: &b[start..end], at: 0 }.value().map_err(bad)?;
    let Lit::Dict(entries) = lit else { return Err(bad("the .npy header is not a dict".into())) };
    let get = |k: &str| entries.iter().find(|(key, _)| *key == Lit::Str(k.into())).map(|(_, v)| v);
    let shape = match get("shape") {
        Some(Lit::Seq(dims)) => dims
            .iter()
            .map(|d| match d {
                Lit::Int(i) if *i >= 0 => Ok(*i as usize),
                _ => Err(bad(format!("bad shape entry {d:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad("the .npy header has no shape".into())),
    };
    if shape.len() != 1 {
        return Err(bad(format!("event arrays must be 1-D, found shape {shape:?}")));
    }
    let dtype = |text: &str| {
        Dtype::parse(text).ok_or_else(|| bad(format!("unknown dtype {text:?} (expected integers, bool or f4/f8)")))
    };
    let (fields, record) = match get("descr") {
        Some(Lit::Str(d)) => {
            let t = dtype(d)?;
            (vec![(String::new(), t, 0)], t.size)
        }
        Some(Lit::Seq(items)) => {
            let mut fields = Vec::new();
            let mut offset = 0;
            for item in items {
                let Lit::Seq(parts) = item else { return Err(bad(format!("bad descr entry {item:?}"))) };
                let (Some(Lit::Str(name)), Some(Lit::Str(ty))) = (parts.first(), parts.get(1)) else {
                    return Err(bad(format!("bad descr entry {item:?}")));
                };
                if parts.len() > 2 {
                    return Err(bad(format!("field {name:?} is a sub-array; event fields must be scalars")));
                }
                // Padding (`('', '|V4')`) and fields other than x, y, t, p are skipped, but their
                // size counts towards the record.
                let size = match ty.strip_prefix('|').unwrap_or(ty).strip_prefix('V') {
                    Some(n) => n.parse().map_err(|_| bad(format!("unknown dtype {ty:?}")))?,
                    None if FIELDS.contains(&name.as_str()) => {
                        let t = dtype(ty)?;
                        fields.push((name.clone(), t, offset));
                        t.size
                    }
                    None => match Dtype::parse(ty) {
                        Some(t) => t.size,
                        None => return Err(bad(format!("unknown dtype {ty:?} of field {name:?}"))),
                    },
                };
                offset += size;
            }
            (fields, offset)
        }
        _ => return Err(bad("the .npy header has no descr".into())),
    };
    let count = shape[0];
    let need = count.checked_mul(record).and_then(|n| n.checked_add(end));
    match need {
        Some(n) if n <= b.len() => {}
        _ => {
            return Err(bad(format!(
                "truncated data: {count} elements of {record} bytes need {} bytes after the header, {} are there",
                count.saturating_mul(record),
                b.len() - end
            )))
        }
    }
    Ok(Npy { fields, record, count, data: end })
}

fn column(b: &[u8], npy: &Npy, field: usize) -> Vec<i64> {
    let (_, t, off) = npy.fields[field];
    (0..npy.count).map(|i| t.read(&b[npy.data + i * npy.record + off..]).unwrap_or(i64::MIN)).collect()
}

/// Columns into events, each checked against the sensor.
fn assemble(path: &Path, cols: [Vec<i64>; 4], width: u16, height: u16) -> Result<Events, EventError> {
    let [x, y, t, p] = cols;
    let n = x.len();
    if [y.len(), t.len(), p.len()].iter().any(|&l| l != n) {
        return Err(EventError::malformed(
            path,
            format!("columns of different lengths: x {n}, y {}, t {}, p {}", y.len(), t.len(), p.len()),
        ));
    }
    let mut events = Events::empty(width, height);
    for i in 0..n {
        if t[i] == i64::MIN {
            return Err(EventError::malformed(path, format!("event {i}: t is not an integral value")));
        }
        events.push_checked(path, x[i], y[i], t[i], p[i])?;
    }
    Ok(events)
}

/// A `.npy` structured array with fields x, y, t, p, from a `width × height` sensor.
pub fn read_npy(path: &Path, width: u16, height: u16) -> Result<Events, EventError> {
    let b = std::fs::read(path).map_err(|e| EventError::io(path, e))?;
    let npy = parse_npy(path, &b)?;
    let mut cols: [Vec<i64>; 4] = Default::default();
    for (k, name) in FIELDS.iter().enumerate() {
        let Some(i) = npy.fields.iter().position(|(n, _, _)| n == name) else {
            let have: Vec<&str> = npy.fields.iter().map(|(n, _, _)| n.as_str()).collect();
            return Err(EventError::malformed(
                path,
                format!(
                    "missing field {name:?}: a structured array with fields x, y, t, p is expected, found {have:?}"
                ),
            ));
        };
        cols[k] = column(&b, &npy, i);
    }
    assemble(path, cols, width, height)
}

/// A `.npz` archive with 1-D arrays x, y, t, p, from a `width × height` sensor.
pub fn read_npz(path: &Path, width: u16, height: u16) -> Result<Events, EventError> {
    let file = std::fs::File::open(path).map_err(|e| EventError::io(path, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| EventError::malformed(path, format!("not a readable .npz (zip) archive: {e}")))?;
    let mut cols: [Vec<i64>; 4] = Default::default();
    for (k, name) in FIELDS.iter().enumerate() {
        let member = format!("{name}.npy");
        let mut entry = zip.by_name(&member).map_err(|_| {
            EventError::malformed(path, format!("missing array {name:?} ({member}): arrays x, y, t, p are expected"))
        })?;
        let mut b = Vec::new();
        entry
            .read_to_end(&mut b)
            .map_err(|e| EventError::malformed(path, format!("{member}: cannot be decompressed: {e}")))?;
        let inner = path.join(&member);
        let npy = parse_npy(&inner, &b)?;
        if npy.fields.len() != 1 || !npy.fields[0].0.is_empty() {
            return Err(EventError::malformed(&inner, "expected a plain 1-D array, found a structured one"));
        }
        cols[k] = column(&b, &npy, 0);
    }
    assemble(path, cols, width, height)
}

/// A `.npy` or `.npz` event file, by its extension.
pub fn read_event_file(path: &Path, width: u16, height: u16) -> Result<Events, EventError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => read_npy(path, width, height),
        Some("npz") => read_npz(path, width, height),
        _ => Err(EventError::malformed(path, "expected a .npy or .npz event file")),
    }
}
