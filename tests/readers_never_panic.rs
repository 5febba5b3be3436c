//! The file readers never panic on arbitrary input: IDX images and labels, safetensors
//! checkpoints and experiment files (with `--set` arguments), each fed 2000 mutations of a
//! valid file (bytes flipped, cut, inserted, header words replaced) from a fixed seed. Every case
//! must come back as `Ok` or a typed error. (A bounded, dependency-free property test: the cases
//! are drawn from the project's own generator, so a failure names a reproducible case number.)

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use fptt::rng::Rng;
use fptt::tensor::{Tensor, TensorMap};

const CASES: usize = 2000;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One random mutation of `valid`: flips, a cut, an insertion, or a replaced big-endian /
/// little-endian word in the first 24 bytes (the headers' sizes live there).
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut b = valid.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(5) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => b.truncate(rng.below(b.len() + 1)),
            2 => {
                let i = rng.below(b.len() + 1);
                let extra: Vec<u8> = (0..rng.below(16)).map(|_| rng.next_u64() as u8).collect();
                b.splice(i..i, extra);
            }
            3 if b.len() >= 8 => {
                let i = rng.below(b.len().min(24) - 3);
                let word = match rng.below(4) {
                    0 => 0u32,
                    1 => u32::MAX,
                    2 => 1 << rng.below(32),
                    _ => rng.next_u64() as u32,
                };
                let bytes = if rng.below(2) == 0 { word.to_be_bytes() } else { word.to_le_bytes() };
                b[i..i + 4].copy_from_slice(&bytes);
            }
            _ => b = (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
        }
    }
    b
}

fn no_panic(what: &str, case: usize, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        panic!("{what}: case {case} panicked instead of returning an error");
    }
}

#[test]
fn idx_readers_never_panic() {
    let dir = scratch("never-panic-idx");
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2];
    images.extend(0..12u8);
    let labels = vec![0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3];
    let mut rng = Rng::derive(11, "idx");
    for case in 0..CASES {
        for (valid, name) in [(&images, "images"), (&labels, "labels")] {
            let path = dir.join(format!("{name}-{case}"));
            std::fs::write(&path, mutate(&mut rng, valid)).unwrap();
            no_panic(name, case, || {
                let _ = fptt::data::read_images(&path);
                let _ = fptt::data::read_labels(&path);
            });
        }
    }
}

#[test]
fn safetensors_reader_never_panics() {
    let dir = scratch("never-panic-safetensors");
    let mut tensors = TensorMap::new();
    tensors.insert("a".into(), Tensor::new(vec![2, 3], vec![1.0; 6]));
    tensors.insert("b".into(), Tensor::new(vec![], vec![2.0]));
    let meta = BTreeMap::from([("fptt.iteration".to_string(), "3".to_string())]);
    let valid_path = dir.join("valid.safetensors");
    fptt::checkpoint::save(&valid_path, &tensors, &meta).unwrap();
    let valid = std::fs::read(&valid_path).unwrap();
    let mut rng = Rng::derive(12, "safetensors");
    for case in 0..CASES {
        let path = dir.join(format!("case-{case}.safetensors"));
        std::fs::write(&path, mutate(&mut rng, &valid)).unwrap();
        no_panic("safetensors", case, || {
            if let Ok((t, _)) = fptt::checkpoint::load(&path) {
                let _ = fptt::checkpoint::check_finite(&path, &t);
            }
        });
    }
}

#[test]
fn experiment_reader_never_panics() {
    let valid = "name = \"x\"\nseed = 1\n[data]\ntask = \"adding\"\nsteps = 6\n[model]\nhidden = [8, 4]\n\
                 [train]\nlr = 0.01\nbatch = 8\nepochs = 2\nreset = \"epoch\"\nlr_decay_epochs = [1, 2]\n\
                 [output]\nreport_every = 3\n";
    let keys = ["seed", "train.lr", "train.batch", "model.hidden", "data.steps", "train.rule", "train.chunk", "x"];
    let values = ["-1", "1e400", "[]", "[0]", "\"bptt\"", "9223372036854775807", "{a = 1}", "nan", "=", "\"\""];
    let mut rng = Rng::derive(13, "experiment");
    for case in 0..CASES {
        let text = String::from_utf8_lossy(&mutate(&mut rng, valid.as_bytes())).to_string();
        let sets: Vec<String> = (0..rng.below(3))
            .map(|_| format!("{}={}", keys[rng.below(keys.len())], values[rng.below(values.len())]))
            .collect();
        no_panic("experiment", case, || {
            let _ = fptt::run::Experiment::parse(&text, "x.toml", "x", &sets);
            let _ = fptt::run::Experiment::parse(valid, "x.toml", "x", &sets);
        });
    }
}

#[test]
fn safetensors_headers_with_overflowing_shapes_are_errors() {
    let dir = scratch("never-panic-shapes");
    for shape in ["[4294967296, 4294967296, 4294967296]", "[18446744073709551615, 2]", "[0, 18446744073709551615]"] {
        let header = format!("{{\"a\":{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[0,0]}}}}");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        let path = dir.join("a.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        no_panic(shape, 0, || {
            let _ = fptt::checkpoint::load(&path);
        });
    }
}
