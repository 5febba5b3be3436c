//! Checkpoint files: round trips, the authors' vendored file, and every way a mismatched or broken
//! file is refused (with the file and the tensor named).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fptt::checkpoint::{check_params, load, save, CheckpointError};
use fptt::model::{ModelConfig, ParamLayout};
use fptt::tensor::{Tensor, TensorMap};

/// A fresh, empty directory of this test run under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fptt-checkpoint-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adam-aux/init.safetensors")
}

fn sample() -> TensorMap {
    let mut m = TensorMap::new();
    m.insert("a.weight".into(), Tensor::new(vec![2, 3], vec![1.0, -2.5, 3.25, f32::MIN_POSITIVE, -0.0, 1e-30]));
    m.insert("a.bias".into(), Tensor::new(vec![3], vec![f32::MAX, f32::INFINITY, 7.0]));
    m.insert("act1.alpha".into(), Tensor::scalar(0.123_456_79));
    m.insert("empty".into(), Tensor::new(vec![0, 4], vec![]));
    m
}

fn bits(m: &TensorMap) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    m.iter().map(|(k, t)| (k.clone(), t.shape.clone(), t.data.iter().map(|x| x.to_bits()).collect())).collect()
}

#[test]
fn round_trip_is_bit_identical_with_metadata_and_scalars() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("ck.safetensors");
    let mut tensors = sample();
    tensors.insert("nan".into(), Tensor::new(vec![2], vec![f32::NAN, f32::from_bits(0x7fc0_1234)]));
    let mut meta = BTreeMap::new();
    meta.insert("epoch".to_string(), "3".to_string());
    meta.insert("rng".to_string(), "[1,2,3,4]".to_string());
    save(&path, &tensors, &meta).unwrap();
    let (back, back_meta) = load(&path).unwrap();
    assert_eq!(bits(&back), bits(&tensors));
    assert_eq!(back_meta, meta);
    assert_eq!(back["act1.alpha"].shape, Vec::<usize>::new());

    // Overwriting an existing file works and leaves no temporary file behind.
    save(&path, &sample(), &BTreeMap::new()).unwrap();
    let (again, again_meta) = load(&path).unwrap();
    assert_eq!(bits(&again), bits(&sample()));
    assert!(again_meta.is_empty());
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ck.safetensors")], "save left extra files: {names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_into_a_missing_directory_names_the_file() {
    let dir = temp_dir("nodir");
    let path = dir.join("no/such/dir/ck.safetensors");
    let err = save(&path, &sample(), &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("ck.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_refuses_inconsistent_tensor() {
    let dir = temp_dir("inconsistent");
    let path = dir.join("ck.safetensors");
    let mut m = TensorMap::new();
    m.insert("bad".into(), Tensor { shape: vec![2, 2], data: vec![1.0; 3] });
    let err = save(&path, &m, &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("`bad`"), "{err}");
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn authors_checkpoint_loads_and_matches_the_layout() {
    let (tensors, _meta) = load(&fixture()).unwrap();
    let layout = ParamLayout::new(&ModelConfig::classifier(1, 16, 10, 20));
    check_params(&fixture(), &tensors, &layout, false).unwrap();
    assert_eq!(tensors["layer1_x.weight"].shape, vec![16, 1]);
    assert_eq!(tensors["act1.alpha"].shape, Vec::<usize>::new());
    // Saving and reloading the authors' tensors changes no bit.
    let dir = temp_dir("authors");
    let path = dir.join("copy.safetensors");
    save(&path, &tensors, &BTreeMap::new()).unwrap();
    assert_eq!(bits(&load(&path).unwrap().0), bits(&tensors));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mismatched_checkpoints_are_refused_naming_the_tensor() {
    let path = fixture();
    let (tensors, _) = load(&path).unwrap();
    let layout = ParamLayout::new(&ModelConfig::classifier(1, 16, 10, 20));

    let mut missing = tensors.clone();
    missing.remove("layer1_tauAdp.bias");
    let err = check_params(&path, &missing, &layout, false).unwrap_err();
    assert!(matches!(&err, CheckpointError::MissingTensor { name, .. } if name == "layer1_tauAdp.bias"), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("layer1_tauAdp.bias") && msg.contains("init.safetensors"), "{msg}");

    let mut shape = tensors.clone();
    shape.insert("layer1_r.weight".into(), Tensor::zeros(vec![16, 15]));
    let err = check_params(&path, &shape, &layout, false).unwrap_err();
    match &err {
        CheckpointError::WrongShape { name, expected, found, .. } => {
            assert_eq!(name, "layer1_r.weight");
            assert_eq!(expected, &vec![16, 16]);
            assert_eq!(found, &vec![16, 15]);
        }
        other => panic!("expected WrongShape, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("layer1_r.weight") && msg.contains("[16, 16]") && msg.contains("[16, 15]"), "{msg}");

    // A 16-hidden checkpoint against a 32-hidden model: the first slot already differs.
    let err =
        check_params(&path, &tensors, &ParamLayout::new(&ModelConfig::classifier(1, 32, 10, 20)), false).unwrap_err();
    assert!(err.to_string().contains("layer1_x.weight"), "{err}");

    let mut extra = tensors.clone();
    extra.insert("layer9_x.weight".into(), Tensor::zeros(vec![1]));
    let err = check_params(&path, &extra, &layout, false).unwrap_err();
    assert!(matches!(&err, CheckpointError::UnexpectedTensor { name, .. } if name == "layer9_x.weight"), "{err:?}");
    assert!(err.to_string().contains("layer9_x.weight"), "{err}");
    check_params(&path, &extra, &layout, true).unwrap();
}

/// An F64 tensor written with the safetensors crate itself.
struct F64View(Vec<usize>, Vec<u8>);

impl safetensors::View for F64View {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F64
    }
    fn shape(&self) -> &[usize] {
        &self.0
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.1)
    }
    fn data_len(&self) -> usize {
        self.1.len()
    }
}

#[test]
fn non_f32_tensor_is_refused_naming_it() {
    let dir = temp_dir("dtype");
    let path = dir.join("f64.safetensors");
    let bytes: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let data = vec![("layer1_x.weight", F64View(vec![2, 1], bytes))];
    safetensors::serialize_to_file(data, None::<HashMap<String, String>>, &path).unwrap();
    let err = load(&path).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::WrongDtype { name, found, .. } if name == "layer1_x.weight" && found == "F64")
    );
    let msg = err.to_string();
    assert!(msg.contains("layer1_x.weight") && msg.contains("F64") && msg.contains("f64.safetensors"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broken_files_are_refused_naming_the_file() {
    let dir = temp_dir("broken");
    let good = std::fs::read(fixture()).unwrap();

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &good[..good.len() - 10]).unwrap();
    let err = load(&truncated).unwrap_err();
    assert!(matches!(err, CheckpointError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");

    let header_only = dir.join("header.safetensors");
    std::fs::write(&header_only, &good[..5]).unwrap();
    let err = load(&header_only).unwrap_err();
    assert!(err.to_string().contains("header.safetensors"), "{err}");

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint at all, just some text").unwrap();
    let err = load(&garbage).unwrap_err();
    assert!(matches!(err, CheckpointError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.safetensors"), "{err}");

    let absent = dir.join("absent.safetensors");
    let err = load(&absent).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
