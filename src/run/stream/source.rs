//! Where a stream's frames come from: built-in generators (pure functions of the seed, the stream
//! and the step, so a position is one number and resume is exact), and files or standard input
//! of CSV rows or raw little-endian f32 frames, read ahead on a host thread into a bounded
//! channel (a source faster than the GPU blocks in `send`; nothing buffers without bound).
//!
//! A frame is one time step of one stream: its inputs and its targets. With B parallel streams,
//! file rows are dealt round-robin: data row r is step r / B of stream r % B.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::config::{FileFormat, Generator, OnMalformed, SourceConfig};

/// One time step of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub inputs: Vec<f32>,
    /// Regression targets, or the class label as a number (`classes > 0`).
    pub targets: Vec<f32>,
}

/// What the reader thread sends.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    /// A malformed row skipped (`on_malformed = "skip"`), with its line number and why.
    Skipped {
        line: u64,
        reason: String,
    },
    /// The source failed: a fatal malformed row, a non-finite value, an I/O error.
    Failed(String),
}

/// The next thing a source yields.
pub enum Next {
    Frame(Frame),
    Skipped {
        line: u64,
        reason: String,
    },
    /// No more frames.
    End,
    /// Nothing arrived within the wait (the caller checks for a stop request and asks again).
    Waiting,
}

/// A running source and how far it has read.
pub enum Source {
    Generator { generator: Generator, seed: u64, streams: usize, position: u64 },
    Reader { rx: Receiver<Event>, thread: Option<JoinHandle<()>>, done: bool, what: String },
}

impl Source {
    /// The `position`-th frame onward (generators: frames in step-major order, stream b of step t
    /// is frame t·B + b; files: data rows, malformed rows not counted, skipped by re-reading).
    pub fn open(cfg: &SourceConfig, seed: u64, streams: usize, position: u64, capacity: usize) -> Result<Self, String> {
        match &cfg.kind {
            super::config::SourceKind::Generator(g) => Ok(Source::Generator { generator: *g, seed, streams, position }),
            super::config::SourceKind::File { path, format } => {
                let (tx, rx) = sync_channel(capacity.max(1));
                let (what, reader): (String, Box<dyn Read + Send>) = if path.as_os_str() == "-" {
                    ("standard input".to_string(), Box::new(std::io::stdin()))
                } else {
                    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                    (path.display().to_string(), Box::new(f))
                };
                let parse = RowParser::new(cfg, *format, what.clone());
                let thread = std::thread::Builder::new()
                    .name("fptt stream reader".into())
                    .spawn(move || parse.run(reader, position, tx))
                    .map_err(|e| format!("starting the reader thread: {e}"))?;
                Ok(Source::Reader { rx, thread: Some(thread), done: false, what })
            }
        }
    }

    /// The next frame, waiting at most `wait` for a file source.
    pub fn next(&mut self, wait: Duration) -> Result<Next, String> {
        match self {
            Source::Generator { generator, seed, streams, position } => {
                let (t, b) = (*position / *streams as u64, (*position % *streams as u64) as usize);
                *position += 1;
                Ok(Next::Frame(generator.frame(*seed, b, t)))
            }
            Source::Reader { rx, thread, done, what } => {
                if *done {
                    return Ok(Next::End);
                }
                match rx.recv_timeout(wait) {
                    Ok(Event::Frame(f)) => Ok(Next::Frame(f)),
                    Ok(Event::Skipped { line, reason }) => Ok(Next::Skipped { line, reason }),
                    Ok(Event::Failed(m)) => Err(m),
                    Err(RecvTimeoutError::Timeout) => Ok(Next::Waiting),
                    Err(RecvTimeoutError::Disconnected) => {
                        *done = true;
                        if let Some(t) = thread.take() {
                            t.join().map_err(|_| format!("{what}: the reader thread panicked"))?;
                        }
                        Ok(Next::End)
                    }
                }
            }
        }
    }
}

/// Turns a file's rows into frames on the reader thread.
struct RowParser {
    format: FileFormat,
    /// Column indices of the inputs and of the targets (CSV: resolved from the header by name).
    input_columns: Vec<String>,
    target_columns: Vec<String>,
    header: bool,
    on_malformed: OnMalformed,
    classes: usize,
    what: String,
}

impl RowParser {
    fn new(cfg: &SourceConfig, format: FileFormat, what: String) -> Self {
        RowParser {
            format,
            input_columns: cfg.inputs.clone(),
            target_columns: cfg.targets.clone(),
            header: cfg.header,
            on_malformed: cfg.on_malformed,
            classes: cfg.classes,
            what,
        }
    }

    /// Read everything, skipping the first `skip` data rows (a resume), sending frames into `tx`
    /// (blocking when the channel is full). Ends when the input does, or the receiver is gone.
    fn run(self, reader: Box<dyn Read + Send>, skip: u64, tx: std::sync::mpsc::SyncSender<Event>) {
        let result = match self.format {
            FileFormat::Csv => self.run_csv(reader, skip, &tx),
            FileFormat::F32 { columns } => self.run_f32(reader, columns, skip, &tx),
        };
        if let Err(m) = result {
            let _ = tx.send(Event::Failed(m));
        }
    }

    fn run_csv(
        &self,
        reader: Box<dyn Read + Send>,
        skip: u64,
        tx: &std::sync::mpsc::SyncSender<Event>,
    ) -> Result<(), String> {
        let mut lines = BufReader::new(reader);
        let mut line_no = 0u64;
        let mut text = String::new();
        // Column positions: by header name, or by index ("0", "1", …) without a header.
        let (inputs, targets, width) = if self.header {
            text.clear();
            let n = lines.read_line(&mut text).map_err(|e| format!("{}: {e}", self.what))?;
            line_no += 1;
            if n == 0 {
                return Err(format!("{}: empty input (expected a header line)", self.what));
            }
            let names: Vec<&str> = text.trim_end_matches(['\n', '\r']).split(',').map(str::trim).collect();
            let find = |c: &String| {
                names.iter().position(|n| n == c).ok_or_else(|| {
                    format!("{}: line 1: no column {c:?} in the header (columns: {})", self.what, names.join(", "))
                })
            };
            let targets: Vec<usize> = self.target_columns.iter().map(find).collect::<Result<_, _>>()?;
            let inputs: Vec<usize> = if self.input_columns.is_empty() {
                (0..names.len()).filter(|i| !targets.contains(i)).collect()
            } else {
                self.input_columns.iter().map(find).collect::<Result<_, _>>()?
            };
            (inputs, targets, Some(names.len()))
        } else {
            let index = |c: &String| {
                c.parse::<usize>().map_err(|_| {
                    format!("{}: source.header = false, so columns are named by index; found {c:?}", self.what)
                })
            };
            let targets: Vec<usize> = self.target_columns.iter().map(index).collect::<Result<_, _>>()?;
            let inputs: Vec<usize> = self.input_columns.iter().map(index).collect::<Result<_, _>>()?;
            (inputs, targets, None)
        };
        let mut data_rows = 0u64;
        loop {
            text.clear();
            let n = lines.read_line(&mut text).map_err(|e| format!("{}: line {}: {e}", self.what, line_no + 1))?;
            if n == 0 {
                return Ok(());
            }
            line_no += 1;
            let row = text.trim_end_matches(['\n', '\r']);
            if row.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = row.split(',').map(str::trim).collect();
            let parsed = self.parse_fields(&fields, &inputs, &targets, width, line_no);
            let event = match parsed {
                Ok(frame) => {
                    data_rows += 1;
                    if data_rows <= skip {
                        continue;
                    }
                    Event::Frame(frame)
                }
                Err(Fault::NonFinite(m)) => return Err(m),
                Err(Fault::Malformed(m)) => match self.on_malformed {
                    OnMalformed::Fail => {
                        return Err(format!("{m} (source.on_malformed = \"fail\"; \"skip\" skips such rows)"))
                    }
                    OnMalformed::Skip => {
                        // Skips before the resume point were counted before the stop.
                        if data_rows < skip {
                            continue;
                        }
                        Event::Skipped { line: line_no, reason: m }
                    }
                },
            };
            if tx.send(event).is_err() {
                return Ok(());
            }
        }
    }

    fn parse_fields(
        &self,
        fields: &[&str],
        inputs: &[usize],
        targets: &[usize],
        width: Option<usize>,
        line: u64,
    ) -> Result<Frame, Fault> {
        let at = |m: String| format!("{}: line {line}: {m}", self.what);
        if let Some(w) = width {
            if fields.len() != w {
                return Err(Fault::Malformed(at(format!("{} fields, the header has {w}", fields.len()))));
            }
        }
        let value = |i: usize| -> Result<f32, Fault> {
            let s = fields.get(i).ok_or_else(|| Fault::Malformed(at(format!("no column {i}"))))?;
            let v: f32 = s.parse().map_err(|_| Fault::Malformed(at(format!("column {i}: {s:?} is not a number"))))?;
            if !v.is_finite() {
                return Err(Fault::NonFinite(at(format!(
                    "column {i}: {s} is not finite; NaN and infinity are refused"
                ))));
            }
            Ok(v)
        };
        let inputs: Vec<f32> = if inputs.is_empty() {
            (0..fields.len()).filter(|i| !targets.contains(i)).map(value).collect::<Result<_, _>>()?
        } else {
            inputs.iter().map(|&i| value(i)).collect::<Result<_, _>>()?
        };
        let targets: Vec<f32> = targets.iter().map(|&i| value(i)).collect::<Result<_, _>>()?;
        self.check_label(&targets).map_err(|m| Fault::Malformed(at(m)))?;
        Ok(Frame { inputs, targets })
    }

    fn check_label(&self, targets: &[f32]) -> Result<(), String> {
        if self.classes > 0 {
            let y = targets[0];
            if y < 0.0 || y.fract() != 0.0 || y as usize >= self.classes {
                return Err(format!("label {y} is not a class 0 … {}", self.classes - 1));
            }
        }
        Ok(())
    }

    /// Raw little-endian f32 frames of `columns` values each; "line" numbers count frames (1-based).
    fn run_f32(
        &self,
        reader: Box<dyn Read + Send>,
        columns: usize,
        skip: u64,
        tx: &std::sync::mpsc::SyncSender<Event>,
    ) -> Result<(), String> {
        let index = |c: &String| {
            c.parse::<usize>().ok().filter(|&i| i < columns).ok_or_else(|| {
                format!(
                    "{}: raw f32 frames name columns by index below source.columns = {columns}; found {c:?}",
                    self.what
                )
            })
        };
        let targets: Vec<usize> = self.target_columns.iter().map(index).collect::<Result<_, _>>()?;
        let inputs: Vec<usize> = if self.input_columns.is_empty() {
            (0..columns).filter(|i| !targets.contains(i)).collect()
        } else {
            self.input_columns.iter().map(index).collect::<Result<_, _>>()?
        };
        let mut reader = BufReader::new(reader);
        let mut bytes = vec![0u8; 4 * columns];
        let mut frame_no = 0u64;
        loop {
            let mut filled = 0;
            while filled < bytes.len() {
                match reader.read(&mut bytes[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("{}: frame {}: {e}", self.what, frame_no + 1)),
                }
            }
            if filled == 0 {
                return Ok(());
            }
            frame_no += 1;
            if filled < bytes.len() {
                return Err(format!(
                    "{}: frame {frame_no}: the input ends after {filled} of its {} bytes",
                    self.what,
                    bytes.len()
                ));
            }
            let values: Vec<f32> =
                bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(format!(
                    "{}: frame {frame_no}: column {i} is {}; NaN and infinity are refused",
                    self.what, values[i]
                ));
            }
            if frame_no <= skip {
                continue;
            }
            let frame = Frame {
                inputs: inputs.iter().map(|&i| values[i]).collect(),
                targets: targets.iter().map(|&i| values[i]).collect(),
            };
            let event = match self.check_label(&frame.targets) {
                Ok(()) => Event::Frame(frame),
                Err(m) => {
                    let m = format!("{}: frame {frame_no}: {m}", self.what);
                    match self.on_malformed {
                        OnMalformed::Fail => return Err(m),
                        OnMalformed::Skip => Event::Skipped { line: frame_no, reason: m },
                    }
                }
            };
            if tx.send(event).is_err() {
                return Ok(());
            }
        }
    }
}

enum Fault {
    Malformed(String),
    NonFinite(String),
}

/// A counter-based uniform in [0, 1) from (seed, stream, step, salt): splitmix64 of their mix.
/// Generators are pure functions of the step, so a stream position is one number.
fn hash_uniform(seed: u64, stream: usize, t: u64, salt: u64) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((stream as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(t.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(salt.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Generator {
    /// Inputs and targets of each generator's frames.
    pub fn shape(self) -> (usize, usize) {
        match self {
            Generator::Adding { .. } => (2, 1),
            Generator::Sine { .. } | Generator::Switching { .. } => (1, 1),
        }
    }

    /// Frame t of stream b.
    pub fn frame(self, seed: u64, b: usize, t: u64) -> Frame {
        match self {
            Generator::Adding { period } => {
                // Continuous adding: values U[0,1), one marker at a random step of every block of
                // `period` steps; the target is the sum of the two most recently marked values
                // (0 before two markers have passed). No resets.
                let p = period as u64;
                let value = |t: u64| hash_uniform(seed, b, t, 1);
                let marker_in = |block: u64| block * p + (hash_uniform(seed, b, block, 2) * p as f64) as u64;
                let block = t / p;
                let mut marked = Vec::with_capacity(2);
                let mut k = block as i64;
                while marked.len() < 2 && k >= 0 {
                    let m = marker_in(k as u64);
                    if m <= t {
                        marked.push(value(m));
                    }
                    k -= 1;
                }
                let target = if marked.len() == 2 { marked[0] + marked[1] } else { 0.0 };
                let marker = if marker_in(block) == t { 1.0 } else { 0.0 };
                Frame { inputs: vec![value(t) as f32, marker], targets: vec![target as f32] }
            }
            Generator::Sine { noise } => {
                let x = |t: u64| sine_mix(seed, b, t, 0);
                let n = noise * (2.0 * hash_uniform(seed, b, t, 3) - 1.0);
                Frame { inputs: vec![(x(t) + n) as f32], targets: vec![x(t + 1) as f32] }
            }
            Generator::Switching { period, noise } => {
                // Regime r = ⌊t / period⌋ mod 2 picks the frequency mix and the sign: the target
                // is still the next value of the signal seen, so the network must re-track.
                let regime = |t: u64| (t / period as u64) % 2;
                let x = |t: u64| sine_mix(seed, b, t, regime(t));
                let n = noise * (2.0 * hash_uniform(seed, b, t, 3) - 1.0);
                Frame { inputs: vec![(x(t) + n) as f32], targets: vec![x(t + 1) as f32] }
            }
        }
    }
}

/// Two sines per regime with periods of 8–40 steps and a phase per stream; regime 1 uses other
/// frequencies and the opposite sign. Amplitudes sum to 0.9.
fn sine_mix(seed: u64, b: usize, t: u64, regime: u64) -> f64 {
    let tau = std::f64::consts::TAU;
    let periods: [f64; 2] = if regime == 0 { [11.0, 29.0] } else { [7.0, 17.0] };
    let sign = if regime == 0 { 1.0 } else { -1.0 };
    let phase = |k: u64| tau * hash_uniform(seed, b, 0, 10 + k);
    let v = 0.6 * (tau * t as f64 / periods[0] + phase(0)).sin() + 0.3 * (tau * t as f64 / periods[1] + phase(1)).sin();
    sign * v
}
