//! Event readers on files written here byte by byte (AEDAT 3.1 packets, `.npy` headers, zip
//! archives as numpy writes them), binning against hand-computed frames, and the nmnist-synth
//! generator against bounds derived independently from its pixel model.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::data::{DataError, ImageDataset, Split};

// The `.npy`/`.npz` writers are shared with the integration tests (tests/run_events.rs).
#[path = "../../../tests/numpy_common/mod.rs"]
mod numpy_common;
use crate::rng::Rng;
use crate::settings::Targets;
use numpy_common::{npy, plain, zip};

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fptt-events-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-subset")
}

/// The error's message, which must name the file.
fn message_naming(e: impl std::fmt::Display, path: &Path) -> String {
    let m = e.to_string();
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(m.contains(&*name), "{m:?} does not name {name}");
    m
}

// ---------------------------------------------------------------- AEDAT 3.1

const AEDAT_HEADER: &[u8] = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n";

/// One packet: header then `events` (data, timestamp) pairs of 8 bytes.
fn packet(kind: u16, size: u32, overflow: u32, events: &[(u32, u32)]) -> Vec<u8> {
    let n = events.len() as u32;
    let mut b = Vec::new();
    for v in [kind, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [size, 4, overflow, n, n, n] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for &(d, t) in events {
        b.extend_from_slice(&d.to_le_bytes());
        b.extend_from_slice(&t.to_le_bytes());
    }
    b
}

fn polarity(x: u32, y: u32, p: u32, valid: bool) -> u32 {
    (x << 17) | (y << 2) | (p << 1) | valid as u32
}

#[test]
fn aedat_round_trip_with_overflow_invalid_events_and_other_packets() {
    let dir = temp_dir("aedat");
    let path = dir.join("user01_led.aedat");
    let mut b = AEDAT_HEADER.to_vec();
    b.extend(packet(
        1,
        8,
        0,
        &[(polarity(3, 5, 1, true), 10), (polarity(127, 0, 0, true), 20), (polarity(9, 9, 1, false), 25)],
    ));
    // A special-event packet (type 0) is skipped whole.
    b.extend(packet(0, 8, 0, &[(0xdead, 30)]));
    b.extend(packet(1, 8, 1, &[(polarity(0, 127, 0, true), 7)]));
    std::fs::write(&path, &b).unwrap();
    let ev = read_aedat(&path, 128, 128).unwrap();
    assert_eq!(ev.x, vec![3, 127, 0]);
    assert_eq!(ev.y, vec![5, 0, 127]);
    assert_eq!(ev.p, vec![1, 0, 0]);
    assert_eq!(ev.t, vec![10, 20, (1i64 << 31) | 7]);
}

#[test]
fn aedat_faults_are_refused_naming_the_file() {
    let dir = temp_dir("aedat-bad");
    let good_packet = packet(1, 8, 0, &[(polarity(1, 1, 1, true), 1), (polarity(2, 2, 0, true), 2)]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("magic.aedat", b"#!AER-DAT2.0\r\n#!END-HEADER\r\n".to_vec(), "not an AEDAT 3"),
        ("noend.aedat", b"#!AER-DAT3.1\r\n#Format: RAW\r\n".to_vec(), "never ends"),
        ("short-header.aedat", [AEDAT_HEADER, &good_packet[..20]].concat(), "truncated packet header"),
        ("short-body.aedat", [AEDAT_HEADER, &good_packet[..good_packet.len() - 3]].concat(), "truncated packet"),
        ("size.aedat", [AEDAT_HEADER, &packet(1, 12, 0, &[])[..]].concat(), "eventSize 12"),
        (
            "offsensor.aedat",
            [AEDAT_HEADER, &packet(1, 8, 0, &[(polarity(200, 1, 1, true), 1)])[..]].concat(),
            "outside",
        ),
    ];
    for (name, bytes, fault) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let m = message_naming(read_aedat(&path, 128, 128).unwrap_err(), &path);
        assert!(m.contains(fault), "{name}: {m:?} lacks {fault:?}");
    }
    let missing = dir.join("absent.aedat");
    assert!(matches!(read_aedat(&missing, 128, 128), Err(EventError::Missing { .. })));
}

#[test]
fn labels_csv_maps_classes_and_names_malformed_lines() {
    let dir = temp_dir("labels");
    let path = dir.join("user01_led_labels.csv");
    std::fs::write(&path, "class,startTime_usec,endTime_usec\n1,100,200\r\n11,300,400\n\n").unwrap();
    let spans = read_labels_csv(&path, GESTURE_CLASSES).unwrap();
    assert_eq!(
        spans,
        vec![LabelledSpan { label: 0, start: 100, end: 200 }, LabelledSpan { label: 10, start: 300, end: 400 }]
    );
    for (text, fault) in [
        ("class,startTime_usec,endTime_usec\n1,100,200\n2,300\n", "line 3"),
        ("class,startTime_usec,endTime_usec\n12,100,200\n", "class 12"),
        ("class,startTime_usec,endTime_usec\n0,100,200\n", "class 0"),
        ("class,startTime_usec,endTime_usec\n1,x,200\n", "line 2"),
        ("class,startTime_usec,endTime_usec\n1,300,200\n", "not after"),
        ("1,100,200\n", "header"),
    ] {
        std::fs::write(&path, text).unwrap();
        let m = message_naming(read_labels_csv(&path, GESTURE_CLASSES).unwrap_err(), &path);
        assert!(m.contains(fault), "{text:?}: {m:?} lacks {fault:?}");
    }
}

#[test]
fn dvs_gesture_directory_yields_labelled_slices() {
    let root = temp_dir("gesture");
    let dir = root.join("DvsGesture");
    std::fs::create_dir_all(&dir).unwrap();
    let mut b = AEDAT_HEADER.to_vec();
    let events: Vec<(u32, u32)> = (0..10).map(|i| (polarity(i, i, i % 2, true), 100 * i)).collect();
    b.extend(packet(1, 8, 0, &events));
    std::fs::write(dir.join("user02_led.aedat"), b).unwrap();
    std::fs::write(dir.join("user02_led_labels.csv"), "class,startTime_usec,endTime_usec\n3,100,400\n5,500,900\n")
        .unwrap();
    std::fs::write(dir.join("trials_to_train.txt"), "user02_led.aedat\n\n").unwrap();
    // The parent directory (where the archive was unpacked) works too.
    let ds = DvsGesture::open(&root, true).unwrap();
    assert_eq!(ds.len(), 2);
    let mut seen = Vec::new();
    ds.for_each_sample(0, |ev, label| {
        seen.push((label, ev.t.clone()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![(2, vec![100, 200, 300]), (4, vec![500, 600, 700, 800])]);
    let mut first = 0;
    ds.for_each_sample(1, |_, _| {
        first += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(first, 1);
    // No test list: the message says where the files go.
    let m = DvsGesture::open(&root, false).unwrap_err().to_string();
    assert!(m.contains("trials_to_test.txt") && m.contains("DvsGesture.tar.gz"), "{m}");
    std::fs::write(dir.join("trials_to_test.txt"), "user09_led.aedat\n").unwrap();
    let m = DvsGesture::open(&dir, false).unwrap_err().to_string();
    assert!(m.contains("user09_led.aedat") && m.contains("trials_to_test.txt"), "{m}");
}

// ---------------------------------------------------------------- NumPy

const XS: [i64; 3] = [0, 33, 7];
const YS: [i64; 3] = [1, 2, 33];
const TS: [i64; 3] = [5, 1_000_000, 3_000_000_000];
const PS: [i64; 3] = [1, 0, 1];

fn check_events(ev: &Events) {
    assert_eq!(ev.x, vec![0, 33, 7]);
    assert_eq!(ev.y, vec![1, 2, 33]);
    assert_eq!(ev.t, TS.to_vec());
    assert_eq!(ev.p, vec![1, 0, 1]);
}

#[test]
fn npy_structured_arrays_as_tonic_saves_them() {
    let dir = temp_dir("npy");
    // tonic's default: four little-endian int64 fields.
    let mut data = Vec::new();
    for i in 0..3 {
        for v in [XS[i], YS[i], TS[i], PS[i]] {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    let path = dir.join("i8.npy");
    std::fs::write(&path, npy("[('x', '<i8'), ('y', '<i8'), ('t', '<i8'), ('p', '<i8')]", 3, &data)).unwrap();
    check_events(&read_event_file(&path, 34, 34).unwrap());
    // Small unsigned coordinates, a big-endian time, a bool polarity, another field and padding.
    let mut data = Vec::new();
    for i in 0..3 {
        data.extend_from_slice(&(TS[i]).to_be_bytes());
        data.extend_from_slice(&(XS[i] as u16).to_le_bytes());
        data.extend_from_slice(&(YS[i] as u16).to_le_bytes());
        data.push(PS[i] as u8);
        data.extend_from_slice(&[9, 9, 9]); // `extra` (u1) and two padding bytes
    }
    let path = dir.join("mixed.npy");
    let descr = "[('t', '>i8'), ('x', '<u2'), ('y', '<u2'), ('p', '|b1'), ('extra', '|u1'), ('', '|V2')]";
    std::fs::write(&path, npy(descr, 3, &data)).unwrap();
    check_events(&read_npy(&path, 34, 34).unwrap());

    // Faults, each naming the file.
    let faults = [
        ("dtype.npy", npy("[('x', '<c16'), ('y', '<i8'), ('t', '<i8'), ('p', '<i8')]", 0, &[]), "unknown dtype"),
        ("field.npy", npy("[('x', '<i8'), ('y', '<i8'), ('t', '<i8')]", 0, &[]), "missing field \"p\""),
        ("short.npy", npy("[('x', '<i8'), ('y', '<i8'), ('t', '<i8'), ('p', '<i8')]", 4, &[0; 40]), "truncated"),
        ("magic.npy", b"PK\x03\x04 not numpy".to_vec(), "magic"),
        (
            "offsensor.npy",
            npy(
                "[('x', '<i8'), ('y', '<i8'), ('t', '<i8'), ('p', '<i8')]",
                1,
                &[[40i64.to_le_bytes(), [0; 8], [0; 8], [0; 8]].concat()].concat(),
            ),
            "outside",
        ),
        (
            "polarity.npy",
            npy(
                "[('x', '<i8'), ('y', '<i8'), ('t', '<i8'), ('p', '<i8')]",
                1,
                &[[0; 8], [0; 8], [0; 8], 2i64.to_le_bytes()].concat(),
            ),
            "outside",
        ),
        ("literal.npy", npy("[('x', '<i8'", 0, &[]), "header literal"),
    ];
    for (name, bytes, fault) in faults {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let m = message_naming(read_npy(&path, 34, 34).unwrap_err(), &path);
        assert!(m.contains(fault), "{name}: {m:?} lacks {fault:?}");
    }
}

#[test]
fn npz_stored_and_deflated_as_spikingjelly_saves_them() {
    let dir = temp_dir("npz");
    let members = vec![
        ("t.npy", plain("<i8", &TS, 8)),
        ("x.npy", plain("<u2", &XS, 2)),
        ("y.npy", plain("<i4", &YS, 4)),
        ("p.npy", plain("|u1", &PS, 1)),
    ];
    for deflate in [false, true] {
        let path = dir.join(format!("sample-{deflate}.npz"));
        std::fs::write(&path, zip(&members, deflate)).unwrap();
        check_events(&read_event_file(&path, 34, 34).unwrap());
    }
    let path = dir.join("no-p.npz");
    std::fs::write(&path, zip(&members[..3], true)).unwrap();
    let m = message_naming(read_npz(&path, 34, 34).unwrap_err(), &path);
    assert!(m.contains("missing array \"p\""), "{m}");
    let path = dir.join("lengths.npz");
    let mut short = members.clone();
    short[1] = ("x.npy", plain("<u2", &XS[..2], 2));
    std::fs::write(&path, zip(&short, false)).unwrap();
    let m = message_naming(read_npz(&path, 34, 34).unwrap_err(), &path);
    assert!(m.contains("different lengths"), "{m}");
    let path = dir.join("garbage.npz");
    std::fs::write(&path, b"not a zip at all").unwrap();
    message_naming(read_npz(&path, 34, 34).unwrap_err(), &path);
}

// ---------------------------------------------------------------- binning

fn events(width: u16, height: u16, list: &[(u16, u16, i64, u8)]) -> Events {
    let mut ev = Events::empty(width, height);
    for &(x, y, t, p) in list {
        ev.push(x, y, t, p);
    }
    ev
}

#[test]
fn binning_by_number_and_time_matches_the_hand_computation() {
    // 7 events on a 2×2 sensor; 3 frames.
    let ev = events(
        2,
        2,
        &[(0, 0, 0, 1), (1, 0, 1, 0), (0, 1, 2, 1), (1, 1, 3, 1), (0, 0, 40, 0), (1, 0, 80, 1), (0, 0, 90, 1)],
    );
    // By number: ⌊7/3⌋ = 2 per frame, the remainder (3 events) in the last.
    assert_eq!(frame_of_each_event(&ev, 3, SplitBy::Number), vec![0, 0, 1, 1, 2, 2, 2]);
    // By time: dt = ⌊90/3⌋ = 30: [0, 30), [30, 60), [60, ...].
    assert_eq!(frame_of_each_event(&ev, 3, SplitBy::Time), vec![0, 0, 0, 0, 1, 2, 2]);
    let spec = FrameSpec { frames: 3, split_by: SplitBy::Number, downsample: 1 };
    let f = bin_events(&ev, &spec).unwrap();
    // [T, 2, H, W]: index ((t·2 + p)·2 + y)·2 + x.
    let mut want = vec![0.0f32; 3 * 8];
    for (t, x, y, p) in
        [(0, 0, 0, 1), (0, 1, 0, 0), (1, 0, 1, 1), (1, 1, 1, 1), (2, 0, 0, 0), (2, 1, 0, 1), (2, 0, 0, 1)]
    {
        want[((t * 2 + p) * 2 + y) * 2 + x] += 1.0;
    }
    assert_eq!(f, want);
}

#[test]
fn few_or_no_events_make_empty_frames_not_panics() {
    let spec = |split_by| FrameSpec { frames: 5, split_by, downsample: 2 };
    let two = events(3, 3, &[(2, 2, 7, 1), (0, 0, 7, 0)]);
    for split_by in [SplitBy::Number, SplitBy::Time] {
        let f = bin_events(&two, &spec(split_by)).unwrap();
        assert_eq!(f.len(), 5 * 2 * 2 * 2);
        assert_eq!(f.iter().sum::<f32>(), 2.0);
        let none = bin_events(&Events::empty(3, 3), &spec(split_by)).unwrap();
        assert!(none.len() == 40 && none.iter().all(|&v| v == 0.0));
    }
    // Fewer events than frames by number: all in the last frame (SpikingJelly's rule).
    assert_eq!(frame_of_each_event(&two, 5, SplitBy::Number), vec![4, 4]);
    // One instant (span 0) by time: everything in the first frame.
    assert_eq!(frame_of_each_event(&two, 5, SplitBy::Time), vec![0, 0]);
    assert!(matches!(
        bin_events(&two, &FrameSpec { frames: 0, split_by: SplitBy::Number, downsample: 1 }),
        Err(EventError::Params(_))
    ));
    assert!(matches!(
        bin_events(&two, &FrameSpec { frames: 1, split_by: SplitBy::Number, downsample: 0 }),
        Err(EventError::Params(_))
    ));
}

#[test]
fn downsampling_sums_blocks_and_preserves_the_total() {
    let mut rng = Rng::new(3);
    let mut ev = Events::empty(34, 34);
    for i in 0..500 {
        ev.push(rng.below(34) as u16, rng.below(34) as u16, i, rng.below(2) as u8);
    }
    let full = bin_events(&ev, &FrameSpec { frames: 4, split_by: SplitBy::Time, downsample: 1 }).unwrap();
    for d in [2, 3, 4, 34, 100] {
        let spec = FrameSpec { frames: 4, split_by: SplitBy::Time, downsample: d };
        let pooled = bin_events(&ev, &spec).unwrap();
        let (h, w) = spec.pooled(34, 34);
        assert_eq!((h, w), (34usize.div_ceil(d), 34usize.div_ceil(d)));
        assert_eq!(pooled.iter().sum::<f32>(), 500.0);
        // Every pooled cell is the sum of its block of the full frames.
        for t in 0..4 {
            for p in 0..2 {
                for by in 0..h {
                    for bx in 0..w {
                        let mut s = 0.0;
                        for y in by * d..((by + 1) * d).min(34) {
                            for x in bx * d..((bx + 1) * d).min(34) {
                                s += full[((t * 2 + p) * 34 + y) * 34 + x];
                            }
                        }
                        assert_eq!(pooled[((t * 2 + p) * h + by) * w + bx], s);
                    }
                }
            }
        }
    }
}

#[test]
fn frame_sets_make_time_major_batches() {
    let spec = FrameSpec { frames: 2, split_by: SplitBy::Number, downsample: 1 };
    let mut set = FrameSet::new(spec, 2, 1).unwrap();
    set.push(&events(2, 1, &[(0, 0, 0, 1), (1, 0, 1, 0)]), 3).unwrap();
    set.push(&events(2, 1, &[(1, 0, 0, 1)]), 5).unwrap();
    assert!(set.push(&events(3, 1, &[]), 0).is_err());
    assert_eq!((set.len(), set.classes()), (2, 6));
    let b = set.batch(&[1, 0]);
    assert_eq!((b.steps, b.batch, b.inputs_per_step), (2, 2, 4));
    // Step 0: sample 1 (empty first frame), sample 0 (ON at x 0); step 1: sample 1 (ON at x 1),
    // sample 0 (OFF at x 1). Per sample the frame is [p][y][x] = OFF x0, OFF x1, ON x0, ON x1.
    assert_eq!(b.inputs, vec![0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 1., 0., 0.]);
    assert_eq!(b.targets, Targets::Labels(vec![5, 3]));
    assert_eq!(set.frames(0), bin_events(&events(2, 1, &[(0, 0, 0, 1), (1, 0, 1, 0)]), &spec).unwrap());
}

#[test]
fn parallel_binning_equals_pushing_in_order_and_reports_the_first_fault() {
    let spec = FrameSpec { frames: 3, split_by: SplitBy::Time, downsample: 2 };
    let sample = |i: usize| {
        let list: Vec<(u16, u16, i64, u8)> = (0..5 + i)
            .map(|k| (((k * 3 + i) % 5) as u16, ((k + 2 * i) % 4) as u16, (k * k) as i64, (k % 2) as u8))
            .collect();
        events(5, 4, &list)
    };
    let labels: Vec<u32> = (0..11).map(|i| (i % 3) as u32).collect();
    let mut pushed = FrameSet::new(spec, 5, 4).unwrap();
    for (i, &l) in labels.iter().enumerate() {
        pushed.push(&sample(i), l).unwrap();
    }
    for threads in [1, 2, 3, 11, 64] {
        let set = FrameSet::bin_in_parallel(spec, 5, 4, labels.clone(), threads, |i| Ok(sample(i))).unwrap();
        assert_eq!(set, pushed, "{threads} threads");
    }
    let empty = FrameSet::bin_in_parallel(spec, 5, 4, Vec::new(), 4, |_| Ok(sample(0))).unwrap();
    assert!(empty.is_empty());
    // Samples 4 and 9 fail: sample 4's error, whichever thread fails first.
    let fail = |i: usize| match i {
        4 | 9 => Err(EventError::Params(format!("sample {i}"))),
        _ => Ok(sample(i)),
    };
    for threads in [1, 2, 4, 11] {
        let e = FrameSet::bin_in_parallel(spec, 5, 4, labels.clone(), threads, fail).unwrap_err();
        assert_eq!(e.to_string(), "event parameters: sample 4", "{threads} threads");
    }
    // Events of another sensor are refused as push refuses them.
    assert!(FrameSet::bin_in_parallel(spec, 5, 4, vec![0], 1, |_| Ok(events(6, 4, &[]))).is_err());
}

// ---------------------------------------------------------------- class folders

const SENSOR: (u16, u16) = (10, 8);

/// Sample `k` of class `label`: `4 + 3k + label` events over the 10×8 sensor, different for
/// every sample, as columns (x, y, t, p).
fn columns(label: usize, k: usize) -> [Vec<i64>; 4] {
    let n = 4 + 3 * k + label;
    let x = (0..n).map(|i| ((i * 7 + label + k) % 10) as i64).collect();
    let y = (0..n).map(|i| ((i * 3 + 2 * label) % 8) as i64).collect();
    let t = (0..n).map(|i| (1000 * i + 37 * k) as i64).collect();
    let p = (0..n).map(|i| ((i + k) % 2) as i64).collect();
    [x, y, t, p]
}

/// The same events built directly (not read back from a file).
fn events_of(c: &[Vec<i64>; 4]) -> Events {
    let mut ev = Events::empty(SENSOR.0, SENSOR.1);
    let [x, y, t, p] = c;
    for (((&x, &y), &t), &p) in x.iter().zip(y).zip(t).zip(p) {
        ev.push(x as u16, y as u16, t, p as u8);
    }
    ev
}

fn write_sample(path: &Path, c: &[Vec<i64>; 4]) {
    let cols = (&c[0][..], &c[1][..], &c[2][..], &c[3][..]);
    let bytes = match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => numpy_common::npy_events(cols),
        _ => numpy_common::npz_events(cols, path.to_string_lossy().contains("deflated")),
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Class folders made in unsorted order (zebra, ant, cat: labels 2, 0, 1), `.npz` (stored and
/// deflated) and `.npy` files, and what the reader must skip: hidden entries, a plain file beside
/// the classes, a text file in a class. Returns the directory and, per split, each sample's
/// (file name, label, columns) in (label, name) order.
type Expected = Vec<(String, u32, [Vec<i64>; 4])>;
fn class_folder_dataset(tag: &str) -> (PathBuf, Expected, Expected) {
    let dir = temp_dir(tag);
    let plan: [(&str, u32, &[&str], &[&str]); 3] = [
        ("zebra", 2, &["z1.npz", "z0.npy"], &["zt.npz"]),
        ("ant", 0, &["b.npz", "a.npy", "c-deflated.npz"], &["at.npy"]),
        ("cat", 1, &["x.npz", "w-deflated.npz"], &["ct0.npz", "ct1.npy"]),
    ];
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (class, label, train_files, test_files) in plan {
        for (split, files, out) in [("train", train_files, &mut train), ("test", test_files, &mut test)] {
            for (k, name) in files.iter().enumerate() {
                let c = columns(label as usize, k + 2 * (split == "test") as usize);
                write_sample(&dir.join(split).join(class).join(name), &c);
                out.push((name.to_string(), label, c));
            }
        }
        std::fs::write(dir.join("train").join(class).join("notes.txt"), "not events").unwrap();
    }
    std::fs::write(dir.join("train/README"), "a file beside the classes").unwrap();
    std::fs::write(dir.join("train/.DS_Store"), "hidden").unwrap();
    std::fs::create_dir_all(dir.join("train/.ipynb_checkpoints")).unwrap();
    std::fs::write(dir.join("train/ant/.hidden.npz"), "hidden").unwrap();
    for list in [&mut train, &mut test] {
        list.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    }
    (dir, train, test)
}

#[test]
fn class_folders_give_sorted_labels_and_frames_equal_to_binning_the_events() {
    let (dir, train, test) = class_folder_dataset("folders");
    assert_eq!(EventFolders::class_names(&dir).unwrap(), ["ant", "cat", "zebra"]);
    let folders = EventFolders::open(&dir).unwrap();
    assert_eq!(folders.classes, ["ant", "cat", "zebra"]);
    for (split, expected) in [(Split::Train, &train), (Split::Test, &test)] {
        let listed: Vec<(String, u32)> = folders
            .files(split)
            .iter()
            .map(|(p, l)| (p.file_name().unwrap().to_string_lossy().into_owned(), *l))
            .collect();
        let wanted: Vec<(String, u32)> = expected.iter().map(|(n, l, _)| (n.clone(), *l)).collect();
        assert_eq!(listed, wanted, "{split:?}: sorted by (label, file name), hidden and other files skipped");
        for spec in [
            FrameSpec { frames: 3, split_by: SplitBy::Number, downsample: 1 },
            FrameSpec { frames: 4, split_by: SplitBy::Time, downsample: 3 },
        ] {
            let set = folders.read(split, spec, SENSOR, 0, 3).unwrap();
            assert_eq!(set.len(), expected.len());
            assert_eq!(set.labels, wanted.iter().map(|(_, l)| *l).collect::<Vec<_>>());
            for (i, (name, _, c)) in expected.iter().enumerate() {
                assert_eq!(set.frames(i), bin_events(&events_of(c), &spec).unwrap(), "{split:?} {name} {spec:?}");
            }
            assert_eq!(folders.read(split, spec, SENSOR, 0, 1).unwrap(), set, "one thread or three: the same set");
        }
    }
    // A cap takes the classes in turn: 4 of 7 training files are ant's first two, cat's and
    // zebra's first; 1 is ant's first.
    let names = |max: usize| -> Vec<String> {
        let sel = folders.selection(Split::Train, max);
        sel.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
    };
    assert_eq!(names(4), ["a.npy", "b.npz", "w-deflated.npz", "z0.npy"]);
    assert_eq!(names(1), ["a.npy"]);
    assert_eq!(names(0).len(), 7);
    assert_eq!(names(100).len(), 7);
    let spec = FrameSpec { frames: 2, split_by: SplitBy::Number, downsample: 2 };
    let capped = folders.read(Split::Train, spec, SENSOR, 4, 2).unwrap();
    assert_eq!(capped.labels, [0, 0, 1, 2]);
    assert_eq!(capped.frames(2), bin_events(&events_of(&train[3].2), &spec).unwrap());
}

#[test]
fn class_folder_faults_are_refused_naming_the_folder_or_file() {
    let spec = FrameSpec { frames: 2, split_by: SplitBy::Number, downsample: 1 };
    let refused = |dir: &Path| EventFolders::open(dir).map(|_| ()).unwrap_err().to_string();

    // Train and test with different classes: both named, and what differs.
    let (dir, _, _) = class_folder_dataset("folders-mismatch");
    std::fs::rename(dir.join("test/zebra"), dir.join("test/zebu")).unwrap();
    let m = refused(&dir);
    for want in ["train [ant, cat, zebra]", "test [ant, cat, zebu]", "only in train: [zebra]", "only in test: [zebu]"] {
        assert!(m.contains(want), "{m}");
    }
    assert!(
        m.contains(&dir.join("train").display().to_string()) && m.contains(&dir.join("test").display().to_string())
    );
    assert_eq!(EventFolders::class_names(&dir).unwrap_err().to_string(), m);

    // A class folder without event files, an empty split, a missing split, one class, no dir.
    let (dir, _, _) = class_folder_dataset("folders-empty-class");
    for f in ["ct0.npz", "ct1.npy"] {
        std::fs::remove_file(dir.join("test/cat").join(f)).unwrap();
    }
    std::fs::write(dir.join("test/cat/labels.txt"), "").unwrap();
    let m = refused(&dir);
    assert!(m.contains(&dir.join("test/cat").display().to_string()) && m.contains("without .npz or .npy"), "{m}");
    let (dir, _, _) = class_folder_dataset("folders-empty-split");
    std::fs::remove_dir_all(dir.join("test")).unwrap();
    std::fs::create_dir_all(dir.join("test/.cache")).unwrap();
    let m = refused(&dir);
    assert!(m.contains(&dir.join("test").display().to_string()) && m.contains("no class folders"), "{m}");
    std::fs::remove_dir_all(dir.join("test")).unwrap();
    let m = refused(&dir);
    assert!(m.contains(&dir.join("test").display().to_string()) && m.contains("not found"), "{m}");
    let (dir, _, _) = class_folder_dataset("folders-one-class");
    for split in ["train", "test"] {
        std::fs::remove_dir_all(dir.join(split).join("cat")).unwrap();
        std::fs::remove_dir_all(dir.join(split).join("zebra")).unwrap();
    }
    assert!(refused(&dir).contains("one class folder, [ant]: a classification task needs at least 2"));
    assert!(refused(&dir.join("nowhere")).contains("not found"));

    // A malformed file and an event off the sensor: refused by the reader, naming the file; with
    // two bad files the first in (label, name) order, whatever the threads.
    let (dir, _, _) = class_folder_dataset("folders-bad-file");
    let folders = EventFolders::open(&dir).unwrap();
    std::fs::write(dir.join("train/cat/x.npz"), b"PK not really").unwrap();
    let mut off = columns(2, 0);
    off[0][1] = 10; // x = 10 on a sensor 10 wide
    write_sample(&dir.join("train/zebra/z0.npy"), &off);
    for threads in [1, 2, 7] {
        let e = folders.read(Split::Train, spec, SENSOR, 0, threads).unwrap_err();
        let m = message_naming(&e, &dir.join("train/cat/x.npz"));
        assert!(m.contains("not a readable .npz"), "{m}");
    }
    std::fs::remove_file(dir.join("train/cat/x.npz")).unwrap();
    let e = folders.read(Split::Train, spec, SENSOR, 0, 2).unwrap_err();
    let m = message_naming(&e, &dir.join("train/cat/x.npz"));
    assert!(m.contains("not found"), "a file gone since the listing: {m}");
    write_sample(&dir.join("train/cat/x.npz"), &columns(1, 0));
    let e = folders.read(Split::Train, spec, SENSOR, 0, 2).unwrap_err();
    let m = message_naming(&e, &dir.join("train/zebra/z0.npy"));
    assert!(m.contains("outside the 10×8 sensor"), "{m}");
}

// ---------------------------------------------------------------- nmnist-synth

fn first_digit() -> (Vec<u8>, usize, usize, u8) {
    let ds = ImageDataset::load(&mnist_dir(), Split::Test).unwrap();
    (ds.images.image(0).to_vec(), ds.images.rows, ds.images.cols, ds.labels[0])
}

#[test]
fn synthetic_events_follow_the_pixel_model_on_a_known_digit() {
    let (img, rows, cols, _) = first_digit();
    let params = SynthParams { threshold_mismatch: 0.0, ..SynthParams::default() };
    let gen = NmnistSynth::new(params, 1).unwrap();
    let ev = gen.events(&img, rows, cols, &mut Rng::new(0));
    let (on, off) = ev.polarity_counts();
    // The saccades close the triangle, so every pixel ends at its starting intensity: within one
    // threshold of its last event's level means it made as many ON as OFF events.
    assert_eq!(on, off, "ON {on} / OFF {off}");
    assert!(on > 500, "only {on} ON events for a digit");
    assert!(ev.t.windows(2).all(|w| w[0] <= w[1]), "events out of time order");
    assert!(*ev.t.last().unwrap() <= 300_000);

    // Independently per pixel, from the sampled log-intensity path L_0..L_K (bilinear sampling
    // written out again here): count·θ ≤ Σ|ΔL| (each event spends θ of the path), and the level
    // must rise to within θ of max L and fall to within θ of min L and return:
    // count ≥ 2·⌊(max L − L_0)/θ⌋ + 2·⌊(L_0 − min L)/θ⌋.
    let thr = params.threshold;
    let steps = 3 * params.steps_per_saccade;
    let sample = |x: usize, y: usize, (ox, oy): (f64, f64)| {
        let (sx, sy) = (x as f64 - ox, y as f64 - oy);
        let px = |r: f64, c: f64| {
            if r < 0.0 || c < 0.0 || r >= rows as f64 || c >= cols as f64 {
                0.0
            } else {
                img[r as usize * cols + c as usize] as f64 / 255.0
            }
        };
        let (r0, c0) = (sy.floor(), sx.floor());
        let (fy, fx) = (sy - r0, sx - c0);
        let i = px(r0, c0) * (1.0 - fy) * (1.0 - fx)
            + px(r0, c0 + 1.0) * (1.0 - fy) * fx
            + px(r0 + 1.0, c0) * fy * (1.0 - fx)
            + px(r0 + 1.0, c0 + 1.0) * fy * fx;
        (i + params.log_eps).ln()
    };
    let mut counts = vec![0usize; 34 * 34];
    for i in 0..ev.len() {
        counts[ev.y[i] as usize * 34 + ev.x[i] as usize] += 1;
    }
    let (mut lower_total, mut upper_total) = (0usize, 0.0f64);
    for y in 0..34 {
        for x in 0..34 {
            let path: Vec<f64> = (0..=steps)
                .map(|k| sample(x, y, gen.offset(k as i64 * params.saccade_us / params.steps_per_saccade as i64)))
                .collect();
            let (l0, hi, lo) =
                (path[0], path.iter().cloned().fold(f64::MIN, f64::max), path.iter().cloned().fold(f64::MAX, f64::min));
            let tv: f64 = path.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
            let lower = 2 * ((hi - l0) / thr - 1e-9).floor().max(0.0) as usize
                + 2 * ((l0 - lo) / thr - 1e-9).floor().max(0.0) as usize;
            let c = counts[y * 34 + x];
            assert!(c >= lower, "pixel ({x}, {y}): {c} events, the path needs {lower}");
            assert!(c as f64 * thr <= tv + 1e-9, "pixel ({x}, {y}): {c} events exceed the path's variation {tv}");
            lower_total += lower;
            upper_total += tv / thr;
        }
    }
    assert!(ev.len() >= lower_total && (ev.len() as f64) <= upper_total);
    // A digit that does not move makes no events.
    let still = NmnistSynth::new(SynthParams { amplitude: 0.0, ..params }, 1).unwrap();
    assert!(still.events(&img, rows, cols, &mut Rng::new(0)).is_empty());
}

#[test]
fn synthetic_events_are_deterministic_from_the_seed() {
    let (img, rows, cols, _) = first_digit();
    let params = SynthParams { noise_hz: 5.0, ..SynthParams::default() };
    let a = NmnistSynth::new(params, 7).unwrap().events(&img, rows, cols, &mut Rng::new(11));
    let b = NmnistSynth::new(params, 7).unwrap().events(&img, rows, cols, &mut Rng::new(11));
    assert_eq!(a, b);
    let c = NmnistSynth::new(params, 8).unwrap().events(&img, rows, cols, &mut Rng::new(11));
    assert_ne!(a, c, "another seed gives another sensor");
    let d = NmnistSynth::new(params, 7).unwrap().events(&img, rows, cols, &mut Rng::new(12));
    assert_ne!(a, d, "another noise stream gives other noise");
    assert!(NmnistSynth::new(SynthParams { threshold: 0.0, ..params }, 1).is_err());
}

#[test]
fn the_cache_replays_generation_and_a_corrupt_cache_is_regenerated() {
    let cache = temp_dir("cache");
    let gen = NmnistSynth::new(SynthParams::default(), 3).unwrap();
    let collect = |cache_dir: Option<&Path>| {
        let mut got = Vec::new();
        let outcome = gen
            .for_each_sample(&mnist_dir(), Split::Test, 4, cache_dir, |ev, label| {
                got.push((ev.clone(), label));
                Ok(())
            })
            .unwrap();
        (got, outcome)
    };
    let (fresh, outcome) = collect(None);
    assert_eq!(outcome, CacheOutcome::Generated(None));
    assert_eq!(fresh.len(), 4);
    let (first, outcome) = collect(Some(&cache));
    let CacheOutcome::Generated(Some(file)) = outcome else { panic!("{outcome:?}") };
    assert_eq!(first, fresh);
    let (hit, outcome) = collect(Some(&cache));
    assert_eq!(outcome, CacheOutcome::Hit(file.clone()));
    assert_eq!(hit, fresh);
    // Flip one byte in the middle: the checksum catches it and the split is generated again.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let (again, outcome) = collect(Some(&cache));
    assert!(
        matches!(&outcome, CacheOutcome::Regenerated(p, why) if *p == file && why.contains("checksum")),
        "{outcome:?}"
    );
    assert_eq!(again, fresh);
    // Truncated to a stub: regenerated too, and the rewritten file is a hit again.
    std::fs::write(&file, &bytes[..5]).unwrap();
    assert!(matches!(collect(Some(&cache)).1, CacheOutcome::Regenerated(..)));
    assert_eq!(collect(Some(&cache)).1, CacheOutcome::Hit(file));
    // Another seed is another file.
    let other = NmnistSynth::new(SynthParams::default(), 4).unwrap();
    let outcome = other.for_each_sample(&mnist_dir(), Split::Test, 4, Some(&cache), |_, _| Ok(())).unwrap();
    assert!(matches!(outcome, CacheOutcome::Generated(Some(_))));
    // Missing MNIST files are the data error that says how to get them.
    let err = gen.for_each_sample(&cache.join("nowhere"), Split::Test, 1, None, |_, _| Ok(())).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
}

#[test]
fn every_truncation_and_byte_flip_is_an_error_or_events_never_a_panic() {
    let dir = temp_dir("fuzz");
    let mut aedat = AEDAT_HEADER.to_vec();
    aedat.extend(packet(1, 8, 3, &[(polarity(3, 5, 1, true), 10), (polarity(127, 0, 0, true), 20)]));
    aedat.extend(packet(2, 12, 0, &[]));
    let mut data = Vec::new();
    for i in 0..3 {
        for v in [XS[i], YS[i], TS[i], PS[i]] {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    let npy_bytes = npy("[('x', '<i8'), ('y', '<i8'), ('t', '<i8'), ('p', '<i8')]", 3, &data);
    let npz_bytes = zip(
        &[
            ("x.npy", plain("<i8", &XS, 8)),
            ("y.npy", plain("<i8", &YS, 8)),
            ("t.npy", plain("<i8", &TS, 8)),
            ("p.npy", plain("<i8", &PS, 8)),
        ],
        true,
    );
    let mut rng = Rng::new(5);
    for (name, bytes) in [("f.aedat", aedat), ("f.npy", npy_bytes), ("f.npz", npz_bytes)] {
        let path = dir.join(name);
        let read = |b: &[u8]| {
            std::fs::write(&path, b).unwrap();
            match name {
                "f.aedat" => read_aedat(&path, 128, 128).map(|e| e.len()),
                _ => read_event_file(&path, 128, 128).map(|e| e.len()),
            }
        };
        assert!(read(&bytes).is_ok(), "{name} reads whole");
        for cut in 0..bytes.len() {
            let _ = read(&bytes[..cut]);
        }
        for _ in 0..200 {
            let mut b = bytes.clone();
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
            let _ = read(&b);
        }
    }
}
