//! NumPy event files written byte by byte, as numpy and Python's zipfile write them, without the
//! crate's reader: `.npy` v1.0 files, zip archives (stored or deflated) as `np.savez` and
//! `np.savez_compressed` make, and the two event layouts the readers take (tonic's structured
//! `.npy`, SpikingJelly's `.npz` of x, y, t, p). Shared by the library's event tests
//! (`src/data/events/tests.rs`, through `#[path]`) and the integration tests.
#![allow(dead_code)]

/// A `.npy` v1.0 file as numpy writes it: magic, version, header length, the dict literal padded
/// with spaces to a multiple of 64 bytes and ended by a newline, then the data.
pub fn npy(descr: &str, n: usize, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': ({n},), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

/// CRC-32 (IEEE), bit by bit: what zip stores for each member.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// A zip archive of `members` (name, content), stored (method 0) or deflated (method 8), with local
/// headers, a central directory and its end record, as Python's zipfile writes for `np.savez` and
/// `np.savez_compressed`.
pub fn zip(members: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let body = if deflate {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        } else {
            data.clone()
        };
        let method: u16 = if deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        let common = |b: &mut Vec<u8>| {
            for v in [20u16, 0, method, 0, 0x21] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            for v in [crc32(data), body.len() as u32, data.len() as u32] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(&(name.len() as u16).to_le_bytes());
            b.extend_from_slice(&0u16.to_le_bytes());
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&body);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        common(&mut central);
        for v in [0u16, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, members.len() as u16, members.len() as u16] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A plain 1-D array (`descr` such as `'<u2'`) of `values`, each written in its low `size` bytes.
pub fn plain(descr: &str, values: &[i64], size: usize) -> Vec<u8> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()[..size].to_vec()).collect();
    npy(&format!("'{descr}'"), values.len(), &data)
}

/// Events as columns `(x, y, t, p)`.
pub type Columns<'a> = (&'a [i64], &'a [i64], &'a [i64], &'a [i64]);

/// SpikingJelly's event file: `np.savez(path, t=t, x=x, y=y, p=p)` (deflated when `compressed`,
/// as `np.savez_compressed`), with its dtypes: int64 times, uint16 coordinates, uint8 polarity.
pub fn npz_events((x, y, t, p): Columns, compressed: bool) -> Vec<u8> {
    zip(
        &[
            ("t.npy", plain("<i8", t, 8)),
            ("x.npy", plain("<u2", x, 2)),
            ("y.npy", plain("<u2", y, 2)),
            ("p.npy", plain("|u1", p, 1)),
        ],
        compressed,
    )
}

/// tonic's event array saved with `np.save`: a structured array of int64 fields x, y, t, p.
pub fn npy_events((x, y, t, p): Columns) -> Vec<u8> {
    let mut data = Vec::new();
    for i in 0..t.len() {
        for v in [x[i], y[i], t[i], p[i]] {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    npy("[('x', '<i8'), ('y', '<i8'), ('t', '<i8'), ('p', '<i8')]", t.len(), &data)
}
