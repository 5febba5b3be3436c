//! DVS128 Gesture as distributed (`DvsGesture.tar.gz`, IBM, Amir et al. 2017): one AEDAT 3.1
//! file per recording (`user01_fluorescent.aedat`), its `user01_fluorescent_labels.csv` cutting
//! the recording into labelled gestures, and `trials_to_train.txt` / `trials_to_test.txt` naming
//! the recordings of each split.
//!
//! AEDAT 3.1 (little-endian): ASCII header lines that start with `#` (the first is
//! `#!AER-DAT3.1`), ending with the line `#!END-HEADER\r\n`; then packets of a 28-byte header
//! (`eventType u16, eventSource u16, eventSize u32, eventTSOffset u32, eventTSOverflow u32,
//! eventCapacity u32, eventNumber u32, eventValid u32`) followed by `eventCapacity · eventSize`
//! bytes of events, of which the first `eventNumber` are used. Polarity events (`eventType 1`) are
//! 8 bytes: `u32 data` (bit 0 valid, bit 1 polarity, y in bits 2.., x in bits 17..; DVS128
//! coordinates fit in 15 bits) and a `u32` timestamp in µs, extended to 64 bits by
//! `eventTSOverflow << 31`. Events whose valid bit is clear were removed by a filter and are
//! skipped (in the DVS Gesture files every event is valid); other event types (special, frame,
//! IMU) are skipped whole.
//!
//! A recording's labels: a CSV with the header `class,startTime_usec,endTime_usec` and one line
//! per gesture; classes 1..=11 become labels 0..=10, and a sample is the recording's events with
//! `start ≤ t < end` (SpikingJelly's cut).

use std::path::{Path, PathBuf};

use super::{EventError, Events};

/// The DVS128 sensor: 128 × 128 pixels.
pub const DVS128_SIZE: (u16, u16) = (128, 128);
/// DVS Gesture's classes (the 11th is "other gestures").
pub const GESTURE_CLASSES: usize = 11;

const HEADER_END: &[u8] = b"#!END-HEADER\r\n";
const PACKET_HEADER: usize = 28;
const POLARITY_EVENT: u16 = 1;
const POLARITY_SIZE: u32 = 8;

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The byte offset where the packets start (after `#!END-HEADER\r\n`).
fn header_end(path: &Path, bytes: &[u8]) -> Result<usize, EventError> {
    if !bytes.starts_with(b"#!AER-DAT3") {
        let first: String =
            bytes.iter().take(16).map(|&b| if b.is_ascii_graphic() { b as char } else { '.' }).collect();
        return Err(EventError::malformed(
            path,
            format!("not an AEDAT 3.x file: it must start with \"#!AER-DAT3.1\", found {first:?}"),
        ));
    }
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'#' {
            return Err(EventError::malformed(
                path,
                format!("header line at byte {at} does not start with '#' and no #!END-HEADER came before it"),
            ));
        }
        let Some(len) = bytes[at..].iter().position(|&b| b == b'\n') else { break };
        let line = &bytes[at..at + len + 1];
        at += len + 1;
        // The format says CRLF; a bare LF (a file that passed through a text tool) is accepted.
        let text = line.strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        if text == Some(&HEADER_END[..HEADER_END.len() - 2]) {
            return Ok(at);
        }
    }
    Err(EventError::malformed(path, "the header never ends: no \"#!END-HEADER\" line (truncated file?)"))
}

/// The polarity events of an AEDAT 3.1 file from a sensor of `width × height` pixels, in file
/// order. Refused: a file that is not AEDAT 3.x, a truncated packet, polarity packets whose
/// eventSize is not 8 or whose eventNumber exceeds eventCapacity, events off the sensor.
pub fn read_aedat(path: &Path, width: u16, height: u16) -> Result<Events, EventError> {
    let bytes = std::fs::read(path).map_err(|e| EventError::io(path, e))?;
    let mut at = header_end(path, &bytes)?;
    let mut events = Events::empty(width, height);
    let mut packet = 0usize;
    while at < bytes.len() {
        if bytes.len() - at < PACKET_HEADER {
            return Err(EventError::malformed(
                path,
                format!(
                    "truncated packet header: packet {packet} at byte {at} needs {PACKET_HEADER} bytes, {} remain",
                    bytes.len() - at
                ),
            ));
        }
        let h = &bytes[at..at + PACKET_HEADER];
        let (kind, size, overflow) = (u16_at(h, 0), u32_at(h, 4), u32_at(h, 12));
        let (capacity, number) = (u32_at(h, 16), u32_at(h, 20));
        if number > capacity {
            return Err(EventError::malformed(
                path,
                format!("packet {packet} at byte {at}: eventNumber {number} exceeds eventCapacity {capacity}"),
            ));
        }
        let body = capacity as u64 * size as u64;
        let start = at + PACKET_HEADER;
        if body > (bytes.len() - start) as u64 {
            return Err(EventError::malformed(
                path,
                format!(
                    "truncated packet: packet {packet} at byte {at} holds {capacity} events of {size} bytes, \
                     but only {} bytes remain",
                    bytes.len() - start
                ),
            ));
        }
        if kind == POLARITY_EVENT {
            if size != POLARITY_SIZE {
                return Err(EventError::malformed(
                    path,
                    format!("packet {packet} at byte {at}: polarity events with eventSize {size} (expected 8)"),
                ));
            }
            for e in 0..number as usize {
                let o = start + e * POLARITY_SIZE as usize;
                let data = u32_at(&bytes, o);
                if data & 1 == 0 {
                    continue; // invalidated by a filter
                }
                let t = ((overflow as i64) << 31) | u32_at(&bytes, o + 4) as i64;
                let x = ((data >> 17) & 0x7FFF) as i64;
                let y = ((data >> 2) & 0x7FFF) as i64;
                events.push_checked(path, x, y, t, ((data >> 1) & 1) as i64)?;
            }
        }
        at = start + body as usize;
        packet += 1;
    }
    Ok(events)
}

/// One labelled gesture of a recording: events with `start ≤ t < end` (µs) are class `label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelledSpan {
    pub label: u32,
    pub start: i64,
    pub end: i64,
}

/// A `_labels.csv`: the header `class,startTime_usec,endTime_usec`, then one gesture per line
/// (blank lines are skipped). Classes 1..=`classes` become labels 0..; a malformed line is refused
/// with its line number.
pub fn read_labels_csv(path: &Path, classes: usize) -> Result<Vec<LabelledSpan>, EventError> {
    let text = std::fs::read_to_string(path).map_err(|e| EventError::io(path, e))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.trim().trim_start_matches('\u{feff}').starts_with("class") => {}
        Some((i, h)) => {
            return Err(EventError::malformed(
                path,
                format!("line {}: expected the header \"class,startTime_usec,endTime_usec\", found {h:?}", i + 1),
            ))
        }
        None => return Err(EventError::malformed(path, "empty labels file (no header line)")),
    }
    let mut spans = Vec::new();
    for (i, line) in lines {
        let bad = |why: &str| {
            EventError::malformed(
                path,
                format!("line {}: {why}; expected class,startTime_usec,endTime_usec, found {line:?}", i + 1),
            )
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 3 {
            return Err(bad(&format!("{} fields", fields.len())));
        }
        let class: usize = fields[0].parse().map_err(|_| bad("the class is not an integer"))?;
        if class == 0 || class > classes {
            return Err(bad(&format!("class {class} outside 1..={classes}")));
        }
        let start: i64 = fields[1].parse().map_err(|_| bad("the start time is not an integer"))?;
        let end: i64 = fields[2].parse().map_err(|_| bad("the end time is not an integer"))?;
        if end <= start {
            return Err(bad("the end time is not after the start time"));
        }
        spans.push(LabelledSpan { label: (class - 1) as u32, start, end });
    }
    Ok(spans)
}

/// A trial list (`trials_to_train.txt`): one recording file name per line, blank lines skipped.
pub fn read_trial_list(path: &Path) -> Result<Vec<String>, EventError> {
    let text = std::fs::read_to_string(path).map_err(|e| EventError::io(path, e))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if let Some(bad) = names.iter().find(|n| n.contains(['/', '\\']) || !n.ends_with(".aedat")) {
        return Err(EventError::malformed(path, format!("{bad:?} is not the file name of a .aedat recording")));
    }
    Ok(names)
}

/// One split of DVS Gesture on disk: its recordings and their labelled spans (read up front; the
/// events are read one recording at a time by [`DvsGesture::for_each_sample`]).
#[derive(Debug, Clone)]
pub struct DvsGesture {
    pub dir: PathBuf,
    pub recordings: Vec<(PathBuf, Vec<LabelledSpan>)>,
}

const HOW_TO_GET: &str = ": download DvsGesture.tar.gz (IBM, \"DVS128 Gesture Dataset\") and unpack it; \
point data.dir at the unpacked DvsGesture directory (the one holding trials_to_train.txt and the .aedat files)";

impl DvsGesture {
    /// The split `train` (or test) under `dir`: `dir` holds `trials_to_{train,test}.txt`, the
    /// `.aedat` files and their `_labels.csv`, or is the directory the archive was unpacked into
    /// (with `DvsGesture/` inside).
    pub fn open(dir: &Path, train: bool) -> Result<Self, EventError> {
        let list_name = if train { "trials_to_train.txt" } else { "trials_to_test.txt" };
        let dir = if !dir.join(list_name).is_file() && dir.join("DvsGesture").join(list_name).is_file() {
            dir.join("DvsGesture")
        } else {
            dir.to_path_buf()
        };
        let list = dir.join(list_name);
        if !list.is_file() {
            return Err(EventError::Missing { path: list, hint: HOW_TO_GET.into() });
        }
        let mut recordings = Vec::new();
        for name in read_trial_list(&list)? {
            let path = dir.join(&name);
            if !path.is_file() {
                return Err(EventError::Missing { path, hint: format!(" (listed in {})", list.display()) });
            }
            let labels = dir.join(format!("{}_labels.csv", name.trim_end_matches(".aedat")));
            let spans = read_labels_csv(&labels, GESTURE_CLASSES)?;
            recordings.push((path, spans));
        }
        Ok(DvsGesture { dir, recordings })
    }

    /// Labelled samples in the split.
    pub fn len(&self) -> usize {
        self.recordings.iter().map(|(_, s)| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Call `f(events, label)` for the first `max` samples (0 = all) in list order, reading one
    /// recording at a time so that memory holds one recording's events.
    pub fn for_each_sample(
        &self,
        max: usize,
        mut f: impl FnMut(&Events, u32) -> Result<(), EventError>,
    ) -> Result<(), EventError> {
        let mut done = 0;
        for (path, spans) in &self.recordings {
            if max > 0 && done >= max {
                break;
            }
            let events = read_aedat(path, DVS128_SIZE.0, DVS128_SIZE.1)?;
            for span in spans {
                if max > 0 && done >= max {
                    break;
                }
                f(&events.time_slice(span.start, span.end), span.label)?;
                done += 1;
            }
        }
        Ok(())
    }
}
