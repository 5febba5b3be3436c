//! `nmnist-synth`: MNIST digits turned into event streams the way N-MNIST was recorded (Orchard et
//! al. 2015: an ATIS camera on a pan-tilt unit made three saccades in a triangle in front of a
//! screen showing the digit, ~100 ms each), with a simple DVS pixel model instead of a camera.
//! Needs no download: it reads the vendored `data/mnist-subset` (any MNIST-format IDX directory).
//!
//! The model ([`SynthParams`], defaults in brackets):
//! - The 28×28 digit (intensity `pixel / 255`, background 0) is placed on a 34×34 sensor
//!   ([`NMNIST_SIZE`]) with its top-left corner at `(ox, oy)`, moving at constant speed along the
//!   triangle `(c − a/2, c + a/2) → (c, c − a/2) → (c + a/2, c + a/2) → back`, `c = 3` (centred),
//!   amplitude `a` [`amplitude` 4 px], one leg per saccade of `saccade_us` [100 000 µs]: 300 ms in
//!   all. The position is sampled `steps_per_saccade` [24] times per saccade (≤ 0.19 px per step at
//!   the defaults), and each sensor pixel sees the shifted image by bilinear interpolation.
//! - Each pixel holds the log intensity `ln(I + log_eps)` [`log_eps` 0.05] of its last event (at
//!   t = 0: of the first image). Whenever the log intensity has moved by its contrast threshold
//!   from that level, the pixel emits an ON (p = 1, brighter) or OFF (p = 0, darker) event and the
//!   level moves by one threshold, as often as the change allows; each crossing is timed by linear
//!   interpolation between the two samples. The threshold is `threshold` [0.5] times
//!   `1 + threshold_mismatch · N(0, 1)` [`threshold_mismatch` 0.03] per pixel (fixed for the
//!   sensor, drawn from the seed; clamped to ≥ 0.1 · threshold), like the mismatch of a real sensor.
//! - Optional background noise: `noise_hz` [0] random-polarity events per pixel per second at
//!   Poisson times, drawn per sample from the seed.
//! - Events are sorted by time (ties in pixel order), as a recording is. Timestamps are µs.
//!
//! Everything is deterministic from the seed: the sensor's thresholds from
//! `Rng::derive(seed, "nmnist-synth-sensor")`, sample `i`'s noise from a stream derived from the
//! seed, the split and `i`. A split is cached on disk ([`NmnistSynth::for_each_sample`]) in one
//! file per (seed, parameters, split, sample count, source file sizes); the file ends with a
//! checksum, and a file that fails it (or any check) is regenerated, never trusted.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{EventError, Events};
use crate::data::{DataError, ImageDataset, Split};
use crate::rng::Rng;

/// The N-MNIST sensor: 34 × 34 pixels.
pub const NMNIST_SIZE: (u16, u16) = (34, 34);
const CACHE_MAGIC: &[u8; 8] = b"FPTTNMS1";

/// The generator's parameters (see the module header).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthParams {
    pub threshold: f64,
    pub threshold_mismatch: f64,
    pub log_eps: f64,
    pub amplitude: f64,
    pub saccade_us: i64,
    pub steps_per_saccade: usize,
    pub noise_hz: f64,
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            threshold: 0.5,
            threshold_mismatch: 0.03,
            log_eps: 0.05,
            amplitude: 4.0,
            saccade_us: 100_000,
            steps_per_saccade: 24,
            noise_hz: 0.0,
        }
    }
}

impl SynthParams {
    fn check(&self) -> Result<(), EventError> {
        let ok = self.threshold > 0.0
            && self.threshold.is_finite()
            && self.threshold_mismatch >= 0.0
            && self.threshold_mismatch.is_finite()
            && self.log_eps > 0.0
            && self.log_eps.is_finite()
            && (0.0..=6.0).contains(&self.amplitude)
            && self.saccade_us > 0
            && self.steps_per_saccade > 0
            && self.noise_hz >= 0.0
            && self.noise_hz.is_finite();
        if ok {
            Ok(())
        } else {
            Err(EventError::Params(format!(
                "nmnist-synth parameters out of range: {self:?} (threshold > 0, log_eps > 0, amplitude in [0, 6] \
                 so the digit stays on the sensor, saccade_us ≥ 1, steps_per_saccade ≥ 1, mismatch and noise ≥ 0)"
            )))
        }
    }
}

/// The generator: parameters, the seed, and the sensor's per-pixel thresholds drawn from it.
#[derive(Debug, Clone)]
pub struct NmnistSynth {
    pub params: SynthParams,
    pub seed: u64,
    thresholds: Vec<f64>,
}

/// Whether [`NmnistSynth::for_each_sample`] read its cache or generated the split.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheOutcome {
    /// Read from this cache file.
    Hit(PathBuf),
    /// Generated (and written to this file, if a cache directory was given).
    Generated(Option<PathBuf>),
    /// The cache file was there but failed its checks (the reason); generated and rewritten.
    Regenerated(PathBuf, String),
}

impl NmnistSynth {
    pub fn new(params: SynthParams, seed: u64) -> Result<Self, EventError> {
        params.check()?;
        let (w, h) = NMNIST_SIZE;
        let mut rng = Rng::derive(seed, "nmnist-synth-sensor");
        let thresholds = (0..w as usize * h as usize)
            .map(|_| params.threshold * (1.0 + params.threshold_mismatch * rng.normal()).max(0.1))
            .collect();
        Ok(NmnistSynth { params, seed, thresholds })
    }

    /// The image's top-left corner at time `t` µs (the saccade triangle, see the module header).
    pub fn offset(&self, t: i64) -> (f64, f64) {
        let (c, a) = (3.0, self.params.amplitude);
        let v = [(c - a / 2.0, c + a / 2.0), (c, c - a / 2.0), (c + a / 2.0, c + a / 2.0)];
        let leg = ((t / self.params.saccade_us) as usize).min(2);
        let f = ((t - leg as i64 * self.params.saccade_us) as f64 / self.params.saccade_us as f64).clamp(0.0, 1.0);
        let (p, q) = (v[leg], v[(leg + 1) % 3]);
        (p.0 + f * (q.0 - p.0), p.1 + f * (q.1 - p.1))
    }

    /// Log intensities of the whole sensor with the image (`rows × cols`, row-major bytes) at
    /// offset `(ox, oy)`, bilinear, background 0.
    fn log_frame(&self, image: &[u8], rows: usize, cols: usize, (ox, oy): (f64, f64)) -> Vec<f64> {
        let (w, h) = (NMNIST_SIZE.0 as usize, NMNIST_SIZE.1 as usize);
        let at = |r: i64, c: i64| -> f64 {
            if r < 0 || c < 0 || r >= rows as i64 || c >= cols as i64 {
                0.0
            } else {
                image[r as usize * cols + c as usize] as f64 / 255.0
            }
        };
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            let sy = y as f64 - oy;
            let (y0, fy) = (sy.floor(), sy - sy.floor());
            for x in 0..w {
                let sx = x as f64 - ox;
                let (x0, fx) = (sx.floor(), sx - sx.floor());
                let (r, c) = (y0 as i64, x0 as i64);
                let i = (1.0 - fy) * ((1.0 - fx) * at(r, c) + fx * at(r, c + 1))
                    + fy * ((1.0 - fx) * at(r + 1, c) + fx * at(r + 1, c + 1));
                out.push((i + self.params.log_eps).ln());
            }
        }
        out
    }

    /// The events of one image (`rows × cols` bytes, at most 34 × 34); `rng` draws the noise.
    pub fn events(&self, image: &[u8], rows: usize, cols: usize, rng: &mut Rng) -> Events {
        let p = &self.params;
        let (w, h) = NMNIST_SIZE;
        let steps = 3 * p.steps_per_saccade;
        let time = |k: usize| (k as i64 * p.saccade_us) / p.steps_per_saccade as i64;
        // Each pixel's level is `base + n·θ` with an integer `n`: counting in whole thresholds
        // keeps a path that returns to its start exactly balanced (a float level would drift by
        // rounding and drop or add an event at exact multiples of θ).
        let base = self.log_frame(image, rows, cols, self.offset(0));
        let mut n = vec![0i64; base.len()];
        let mut prev = base.clone();
        // (t, pixel, p) before sorting.
        let mut raw: Vec<(i64, u32, u8)> = Vec::new();
        for k in 1..=steps {
            let (t0, t1) = (time(k - 1), time(k));
            let now = self.log_frame(image, rows, cols, self.offset(t1));
            for (i, (&l, &l_prev)) in now.iter().zip(&prev).enumerate() {
                let thr = self.thresholds[i];
                let q = (l - base[i]) / thr;
                let span = l - l_prev;
                let when = |level: i64| {
                    let target = base[i] + level as f64 * thr;
                    let f = if span == 0.0 { 1.0 } else { ((target - l_prev) / span).clamp(0.0, 1.0) };
                    t0 + ((t1 - t0) as f64 * f).round() as i64
                };
                while q - n[i] as f64 >= 1.0 {
                    n[i] += 1;
                    raw.push((when(n[i]), i as u32, 1));
                }
                while n[i] as f64 - q >= 1.0 {
                    n[i] -= 1;
                    raw.push((when(n[i]), i as u32, 0));
                }
            }
            prev = now;
        }
        if p.noise_hz > 0.0 {
            let end = time(steps) as f64;
            for i in 0..(w as u32 * h as u32) {
                let mut t = 0.0;
                loop {
                    t += -(1.0 - rng.uniform()).ln() / p.noise_hz * 1e6;
                    if t >= end {
                        break;
                    }
                    raw.push((t as i64, i, (rng.uniform() < 0.5) as u8));
                }
            }
        }
        raw.sort_by_key(|&(t, i, _)| (t, i));
        let mut ev = Events::empty(w, h);
        for (t, i, pol) in raw {
            ev.push((i % w as u32) as u16, (i / w as u32) as u16, t, pol);
        }
        ev
    }

    /// The noise stream of sample `index` of `split`.
    fn sample_rng(&self, split: Split, index: usize) -> Rng {
        Rng::derive(
            self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            &format!("nmnist-synth-{}", split.prefix()),
        )
    }

    /// Call `f(events, label)` for the first `max` digits (0 = all) of `split` of the MNIST-format
    /// files in `mnist_dir`, in file order. With `cache_dir`, the split is read from its cache file
    /// there when that is valid, else generated and written there (atomically).
    pub fn for_each_sample(
        &self,
        mnist_dir: &Path,
        split: Split,
        max: usize,
        cache_dir: Option<&Path>,
        mut f: impl FnMut(&Events, u32) -> Result<(), EventError>,
    ) -> Result<CacheOutcome, DataError> {
        let cache = cache_dir.map(|dir| {
            dir.join(format!("nmnist-synth-{}-{:016x}.bin", split.prefix(), self.cache_key(mnist_dir, split, max)))
        });
        let mut failed = None;
        if let Some(path) = &cache {
            if path.is_file() {
                match verify(path) {
                    Ok(()) => {
                        read_cache(path, &mut f)?;
                        return Ok(CacheOutcome::Hit(path.clone()));
                    }
                    Err(why) => failed = Some(why),
                }
            }
        }
        let ds = ImageDataset::load(mnist_dir, split)?;
        if ds.images.rows > NMNIST_SIZE.1 as usize || ds.images.cols > NMNIST_SIZE.0 as usize {
            return Err(EventError::Params(format!(
                "nmnist-synth: images of {}×{} do not fit the 34×34 sensor",
                ds.images.rows, ds.images.cols
            ))
            .into());
        }
        let n = if max == 0 { ds.len() } else { ds.len().min(max) };
        let mut writer = match &cache {
            Some(path) => Some(CacheWriter::create(path, n)?),
            None => None,
        };
        for i in 0..n {
            let ev = self.events(ds.images.image(i), ds.images.rows, ds.images.cols, &mut self.sample_rng(split, i));
            let label = ds.labels[i] as u32;
            if let Some(w) = &mut writer {
                w.sample(&ev, label)?;
            }
            f(&ev, label)?;
        }
        if let Some(w) = writer {
            w.finish()?;
        }
        Ok(match (cache, failed) {
            (Some(path), Some(why)) => CacheOutcome::Regenerated(path, why),
            (path, _) => CacheOutcome::Generated(path),
        })
    }

    /// A hash of everything the cached split depends on: generator version, seed, parameters,
    /// split, sample count and the source files' sizes.
    fn cache_key(&self, dir: &Path, split: Split, max: usize) -> u64 {
        let size = |name: String| {
            let gz = dir.join(format!("{name}.gz"));
            let file = if gz.is_file() { gz } else { dir.join(name) };
            std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
        };
        let text = format!(
            "v1|{}|{:?}|{}|{max}|{}|{}",
            self.seed,
            self.params,
            split.prefix(),
            size(format!("{}-images-idx3-ubyte", split.prefix())),
            size(format!("{}-labels-idx1-ubyte", split.prefix())),
        );
        fnv(0xcbf2_9ce4_8422_2325, text.as_bytes())
    }
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

fn cache_err(path: &Path, e: std::io::Error) -> DataError {
    DataError::Io { path: path.to_path_buf(), source: e }
}

/// Writes `magic, count u32, per sample (label u8, n u32, n × (x u8, y u8, p u8, t u32)), fnv u64`
/// (little-endian) to a temporary file renamed into place by [`CacheWriter::finish`].
struct CacheWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<std::fs::File>,
    hash: u64,
}

impl CacheWriter {
    fn create(path: &Path, count: usize) -> Result<Self, DataError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| cache_err(dir, e))?;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| cache_err(&tmp, e))?;
        let mut w =
            CacheWriter { path: path.to_path_buf(), tmp, out: BufWriter::new(file), hash: 0xcbf2_9ce4_8422_2325 };
        w.put(CACHE_MAGIC)?;
        w.put(&(count as u32).to_le_bytes())?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<(), DataError> {
        self.hash = fnv(self.hash, b);
        self.out.write_all(b).map_err(|e| cache_err(&self.tmp, e))
    }

    fn sample(&mut self, ev: &Events, label: u32) -> Result<(), DataError> {
        let mut b = Vec::with_capacity(5 + 7 * ev.len());
        b.push(label as u8);
        b.extend_from_slice(&(ev.len() as u32).to_le_bytes());
        for i in 0..ev.len() {
            b.extend_from_slice(&[ev.x[i] as u8, ev.y[i] as u8, ev.p[i]]);
            b.extend_from_slice(&(ev.t[i].clamp(0, u32::MAX as i64) as u32).to_le_bytes());
        }
        self.put(&b)
    }

    fn finish(mut self) -> Result<(), DataError> {
        let h = self.hash.to_le_bytes();
        self.out.write_all(&h).map_err(|e| cache_err(&self.tmp, e))?;
        self.out.flush().map_err(|e| cache_err(&self.tmp, e))?;
        drop(self.out);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| cache_err(&self.path, e))
    }
}

/// Check a cache file's magic and trailing checksum (streamed, so memory stays small).
fn verify(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len < 20 {
        return Err(format!("{len} bytes, shorter than any cache file"));
    }
    let mut r = BufReader::new(file).take(len - 8);
    let mut hash = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 16];
    let mut first = true;
    loop {
        let n = r.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        if first && !buf[..n].starts_with(CACHE_MAGIC) {
            return Err("not an nmnist-synth cache file (bad magic)".into());
        }
        first = false;
        hash = fnv(hash, &buf[..n]);
    }
    let mut tail = [0u8; 8];
    r.into_inner().read_exact(&mut tail).map_err(|e| e.to_string())?;
    if u64::from_le_bytes(tail) != hash {
        return Err("checksum mismatch (damaged or partly written)".into());
    }
    Ok(())
}

/// Replay a verified cache file; its structure is checked as it is read all the same.
fn read_cache(path: &Path, f: &mut impl FnMut(&Events, u32) -> Result<(), EventError>) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|e| cache_err(path, e))?;
    let mut r = BufReader::new(file);
    let bad = |what: &str| DataError::from(EventError::malformed(path, format!("cache file: {what}")));
    let mut read = |n: usize| -> Result<Vec<u8>, DataError> {
        let mut b = vec![0u8; n];
        r.read_exact(&mut b).map_err(|_| bad("truncated"))?;
        Ok(b)
    };
    if read(8)? != CACHE_MAGIC {
        return Err(bad("bad magic"));
    }
    let count = u32::from_le_bytes(read(4)?.try_into().unwrap_or_default());
    let (w, h) = NMNIST_SIZE;
    for _ in 0..count {
        let head = read(5)?;
        let n = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let body = read(7 * n)?;
        let mut ev = Events::empty(w, h);
        for e in body.chunks_exact(7) {
            if e[0] as u16 >= w || e[1] as u16 >= h || e[2] > 1 {
                return Err(bad("event off the sensor"));
            }
            ev.push(e[0] as u16, e[1] as u16, u32::from_le_bytes([e[3], e[4], e[5], e[6]]) as i64, e[2]);
        }
        f(&ev, head[0] as u32)?;
    }
    Ok(())
}
