//! `data.task = "events"` through the `fptt` binary: a directory of `.npz`/`.npy` event files in
//! class folders (SpikingJelly's `events_np` layout), written here byte by byte (tests/numpy_common),
//! trains a tiny conv network end to end; `config.toml` records the counted classes; the example
//! file's dry run reads no data; layout faults, bad files and a wrong `data.classes` are refused
//! with the folder or file, not a panic.

use std::path::{Path, PathBuf};

mod cli_common;
mod numpy_common;

use cli_common::{assert_refused, fptt, scratch, stderr, write};

/// Sensor 34×34: each class's events sit in its own band of rows, so the classes differ.
const SIDE: i64 = 34;

/// Sample `k` of class `label`: 60 + 7k events in rows `10·label .. 10·label + 9`.
fn sample(label: i64, k: i64) -> [Vec<i64>; 4] {
    let n = 60 + 7 * k;
    let x = (0..n).map(|i| (i * 5 + k) % SIDE).collect();
    let y = (0..n).map(|i| 10 * label + (i + k) % 10).collect();
    let t = (0..n).map(|i| 500 * i + k).collect();
    let p = (0..n).map(|i| (i + label) % 2).collect();
    [x, y, t, p]
}

/// `dir/<split>/<class>/` for the classes `names` (labels in sorted order), `per_class` files
/// per split and class, alternately `.npz` (SpikingJelly) and `.npy` (tonic).
fn dataset(dir: &Path, names: &[&str], train: usize, test: usize) {
    let mut sorted = names.to_vec();
    sorted.sort();
    for (split, per_class) in [("train", train), ("test", test)] {
        for name in names {
            let label = sorted.iter().position(|n| n == name).unwrap() as i64;
            let folder = dir.join(split).join(name);
            std::fs::create_dir_all(&folder).unwrap();
            for k in 0..per_class {
                let [x, y, t, p] = sample(label, k as i64 + 100 * (split == "test") as i64);
                let cols = (&x[..], &y[..], &t[..], &p[..]);
                let (file, bytes) = if k % 2 == 0 {
                    (format!("s{k:03}.npz"), numpy_common::npz_events(cols, k % 4 == 0))
                } else {
                    (format!("s{k:03}.npy"), numpy_common::npy_events(cols))
                };
                std::fs::write(folder.join(file), bytes).unwrap();
            }
        }
    }
}

/// A tiny conv network over 4 frames of 2×9×9 (34×34 pooled 4×4): one cell of 2 channels
/// (pooled to 2×4×4), a dense LTC layer of 8.
fn experiment(dir: &Path, data: &Path) -> PathBuf {
    let text = format!(
        "name = \"tiny-events\"\nseed = 2\n[data]\ntask = \"events\"\ndir = \"{}\"\nsensor = [34, 34]\nframes = 4\n\
         downsample = 4\n[model]\nconv_channels = [2]\nhidden = [8]\n[train]\nlr = 0.01\nbatch = 4\nepochs = 1\n\
         [output]\nreport_every = 1\n",
        data.display()
    );
    write(dir, "events.toml", &text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_directory_of_class_folders_trains_end_to_end() {
    let dir = scratch("events-train");
    let data = dir.join("events_np");
    // Made in unsorted order: labels 0 = "digit-a", 1 = "digit-b", 2 = "digit-c".
    dataset(&data, &["digit-c", "digit-a", "digit-b"], 4, 2);
    let exp = experiment(&dir, &data);
    let out = dir.join("run");
    let o = fptt(&["train", s(&exp), "--out", s(&out), "--progress", "quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("events train split: 12 of 12 files in 3 classes"), "{err}");
    assert!(err.contains("events test split: 6 of 6 files in 3 classes"), "{err}");

    // config.toml: the sensor and the counted classes, so that a resume knows the network.
    let c: toml::Table = std::fs::read_to_string(out.join("config.toml")).unwrap().parse().unwrap();
    let d = c["data"].as_table().unwrap();
    assert_eq!(d["task"].as_str(), Some("events"));
    assert_eq!(d["classes"].as_integer(), Some(3));
    let sensor: Vec<i64> = d["sensor"].as_array().unwrap().iter().map(|v| v.as_integer().unwrap()).collect();
    assert_eq!(sensor, [34, 34]);
    let run = c["run"].as_table().unwrap();
    assert_eq!((run["train_samples"].as_integer(), run["test_samples"].as_integer()), (Some(12), Some(6)));
    assert_eq!((run["inputs"].as_integer(), run["outputs"].as_integer()), (Some(2 * 9 * 9), Some(3)));

    // metrics.csv: three iterations, a train row each, then the test rows of W and W̄; all finite.
    let mut r = csv::Reader::from_path(out.join("metrics.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    let splits: Vec<&str> = rows.iter().map(|x| &x[col("split")]).collect();
    assert_eq!(splits, ["train", "train", "train", "test", "test"]);
    for row in &rows {
        let loss: f64 = row[col("loss")].parse().unwrap();
        let acc: f64 = row[col("accuracy")].parse().unwrap();
        let rate: f64 = row[col("firing_rate")].parse().unwrap();
        assert!(loss.is_finite() && loss >= 0.0, "{row:?}");
        assert!((0.0..=1.0).contains(&acc) && (0.0..=1.0).contains(&rate), "{row:?}");
    }
    let (t, _) = fptt::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(t["layer3_x.weight"].shape, [3, 8], "one readout per class folder");
    assert!(t.values().all(|x| x.data.iter().all(|v| v.is_finite())));

    // A resume reads the recorded class count back and checks it against the folders.
    let o = fptt(&["train", "--resume", s(&out), "--set", "train.epochs=2", "--progress", "quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(rows.lines().filter(|l| l.contains(",test,")).count(), 4, "{rows}");
    dataset(&data, &["digit-d"], 1, 1);
    let o = fptt(&["train", "--resume", s(&out), "--set", "train.epochs=3", "--progress", "quiet"]);
    assert_refused(&o, &["data.classes = 3", "4 class folders (digit-a, digit-b, digit-c, digit-d)"]);

    // The dry run of the same file lists no folders: the readout for the assumed 2 classes, said so.
    let o = fptt(&["train", s(&exp), "--dry-run"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("readout: LTC 2") && text.contains("data.classes is not given"),
        "{text}"
    );
}

#[test]
fn the_example_dry_runs_without_data_and_trains_only_with_it() {
    let o = fptt(&["train", "experiments/events-example.toml", "--dry-run"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for wanted in
        ["task events, T = 10", "frames of 2×34×34", "flatten: 2048 features", "readout: LTC 10", "GPU memory"]
    {
        assert!(text.contains(wanted), "lacks {wanted:?}:\n{text}");
    }
    assert!(!text.contains("not given"), "the example gives data.classes:\n{text}");
    // Without the data: refused at once, naming the directory and the layout it needs.
    let dir = scratch("events-example");
    let o = fptt(&[
        "train",
        "experiments/events-example.toml",
        "--set",
        &format!("data.dir={}", dir.join("none").display()),
    ]);
    assert_refused(&o, &["event folders", "none: not found", "DIR/train/<class>/*.npz|.npy"]);
}

#[test]
fn layout_faults_bad_files_and_a_wrong_class_count_are_refused_naming_them() {
    let dir = scratch("events-faults");
    let data = dir.join("events_np");
    dataset(&data, &["a", "b", "c"], 4, 2);
    let exp = experiment(&dir, &data);
    let train = |sets: &[&str]| {
        let mut args = vec!["train", s(&exp), "--progress", "quiet", "--out"];
        let out = dir.join("never");
        let out = out.to_str().unwrap().to_string();
        args.push(&out);
        for set in sets {
            args.extend(["--set", set]);
        }
        let o = fptt(&args);
        assert!(!dir.join("never").exists(), "a refused run leaves no directory");
        o
    };
    // A data.classes that the folders contradict.
    assert_refused(&train(&["data.classes=4"]), &["data.classes = 4", "3 class folders (a, b, c)"]);
    // Events beyond the sensor named in the file.
    assert_refused(&train(&["data.sensor=[34, 20]"]), &["outside the 34×20 sensor", s(&data.join("train/c/s000.npz"))]);
    // A damaged file, named with its fault.
    let bad = data.join("train/b/s001.npy");
    std::fs::write(&bad, b"\x93NUMPY\x01\x00 truncated").unwrap();
    assert_refused(&train(&[]), &[s(&bad), "truncated .npy header"]);
    std::fs::remove_file(&bad).unwrap();
    // Train and test with different classes: both folders named.
    std::fs::rename(data.join("test/c"), data.join("test/d")).unwrap();
    assert_refused(
        &train(&[]),
        &[
            &format!("{} [a, b, c]", data.join("train").display()),
            &format!("{} [a, b, d]", data.join("test").display()),
        ],
    );
    // An empty class folder.
    std::fs::rename(data.join("test/d"), data.join("test/c")).unwrap();
    for f in std::fs::read_dir(data.join("test/a")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    assert_refused(&train(&[]), &[s(&data.join("test/a")), "without .npz or .npy event files"]);
}
