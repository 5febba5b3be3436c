//! Data: IDX files (vendored fixture and MNIST subset), the errors a user meets with missing,
//! truncated or wrong files, sequence views of images, and the adding problem's statistics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fptt::data::{adding_batch, epoch_order, read_images, read_labels, DataError, ImageDataset, SequenceView, Split};
use fptt::rng::Rng;
use fptt::settings::Targets;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_dir() -> PathBuf {
    root().join("tests/fixtures/adam-aux/data")
}

/// A fresh, empty directory of this test run under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fptt-data-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gunzip(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn reads_the_vendored_fixture() {
    let images = read_images(&fixture_dir().join("train-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((images.count, images.rows, images.cols), (8, 4, 5));
    assert_eq!(images.pixels.len(), 8 * 20);
    assert_eq!(&images.pixels[..5], &[0, 0, 142, 252, 253]);
    let labels = read_labels(&fixture_dir().join("train-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels, vec![1, 1, 7, 3, 2, 2, 8, 2]);
    let ds = ImageDataset::load(&fixture_dir(), Split::Train).unwrap();
    assert_eq!(ds.images, images);
    assert_eq!(ds.len(), 8);
    assert_eq!(ImageDataset::load(&fixture_dir(), Split::Test).unwrap().len(), 8);
}

#[test]
fn raw_and_gzipped_files_read_alike_whatever_their_name() {
    let dir = temp_dir("raw");
    let gz = fixture_dir().join("train-images-idx3-ubyte.gz");
    let want = read_images(&gz).unwrap();
    // Uncompressed under the standard name, and gzipped under a name without `.gz`.
    std::fs::write(dir.join("train-images-idx3-ubyte"), gunzip(&gz)).unwrap();
    std::fs::copy(&gz, dir.join("gzipped-but-no-suffix")).unwrap();
    assert_eq!(read_images(&dir.join("train-images-idx3-ubyte")).unwrap(), want);
    assert_eq!(read_images(&dir.join("gzipped-but-no-suffix")).unwrap(), want);
    // A directory with the raw images and gzipped labels loads as a dataset.
    std::fs::copy(fixture_dir().join("train-labels-idx1-ubyte.gz"), dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    let ds = ImageDataset::load(&dir, Split::Train).unwrap();
    assert_eq!(ds.images, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reads_the_mnist_subset() {
    let dir = root().join("data/mnist-subset");
    let train = ImageDataset::load(&dir, Split::Train).unwrap();
    assert_eq!((train.images.count, train.images.rows, train.images.cols), (8000, 28, 28));
    assert_eq!(train.labels.len(), 8000);
    assert!(train.labels.iter().all(|&l| l < 10));
    assert_eq!(train.classes(), 10);
    for c in 0..10u8 {
        assert_eq!(train.labels.iter().filter(|&&l| l == c).count(), 800, "class {c}");
    }
    let test = ImageDataset::load(&dir, Split::Test).unwrap();
    assert_eq!((test.images.count, test.images.rows, test.images.cols), (963, 28, 28));
    assert!(test.labels.iter().all(|&l| l < 10));
    // Real digits: mostly background, some ink.
    let ink = train.images.pixels.iter().filter(|&&p| p > 128).count() as f64 / train.images.pixels.len() as f64;
    assert!(ink > 0.05 && ink < 0.4, "ink fraction {ink}");
}

#[test]
fn missing_files_name_the_file_and_how_to_get_the_data() {
    let dir = temp_dir("missing");
    let err = ImageDataset::load(&dir, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains("download") && msg.contains("data.dir"), "{msg}");

    // Images present, labels missing: the labels file is the one named.
    std::fs::copy(fixture_dir().join("t10k-images-idx3-ubyte.gz"), dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let msg = ImageDataset::load(&dir, Split::Test).unwrap_err().to_string();
    assert!(msg.contains("t10k-labels-idx1-ubyte") && msg.contains("download"), "{msg}");

    let msg = read_labels(&dir.join("nope-labels")).unwrap_err().to_string();
    assert!(msg.contains("nope-labels") && msg.contains("download"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_files_name_the_file() {
    let dir = temp_dir("truncated");
    let raw = gunzip(&fixture_dir().join("train-images-idx3-ubyte.gz"));

    // Raw file missing its last 7 bytes: expected vs found sizes in the message.
    let path = dir.join("train-images-idx3-ubyte");
    std::fs::write(&path, &raw[..raw.len() - 7]).unwrap();
    let err = read_images(&path).unwrap_err();
    match &err {
        DataError::Truncated { expected, found, .. } => {
            assert_eq!(*expected, raw.len() as u64);
            assert_eq!(*found, raw.len() as u64 - 7);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("train-images-idx3-ubyte") && msg.contains("176") && msg.contains("169"), "{msg}");

    // Cut inside the header.
    std::fs::write(&path, &raw[..10]).unwrap();
    let msg = read_images(&path).unwrap_err().to_string();
    assert!(msg.contains("train-images-idx3-ubyte") && msg.contains("truncated"), "{msg}");

    // A truncated gzip file.
    let gz = std::fs::read(fixture_dir().join("train-images-idx3-ubyte.gz")).unwrap();
    let path = dir.join("cut.gz");
    std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
    let msg = read_images(&path).unwrap_err().to_string();
    assert!(msg.contains("cut.gz"), "{msg}");

    // Trailing bytes are refused as well.
    let path = dir.join("long");
    let mut long = raw.clone();
    long.extend_from_slice(&[0; 3]);
    std::fs::write(&path, &long).unwrap();
    let err = read_images(&path).unwrap_err();
    assert!(matches!(err, DataError::TrailingBytes { .. }), "{err:?}");
    assert!(err.to_string().contains("long"), "{err}");

    // Image and label counts that disagree.
    let labels = gunzip(&fixture_dir().join("train-labels-idx1-ubyte.gz"));
    let mut short = labels[..labels.len() - 1].to_vec();
    short[7] = 7; // header count 7
    std::fs::write(dir.join("train-labels-idx1-ubyte"), &short).unwrap();
    std::fs::write(dir.join("train-images-idx3-ubyte"), &raw).unwrap();
    let err = ImageDataset::load(&dir, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::CountMismatch { images: 8, labels: 7, .. }), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_magic_is_refused() {
    let dir = temp_dir("magic");
    // A label file read as images, and images read as labels.
    let err = read_images(&fixture_dir().join("train-labels-idx1-ubyte.gz")).unwrap_err();
    match &err {
        DataError::BadMagic { expected, found, .. } => assert_eq!((*expected, *found), (0x803, 0x801)),
        other => panic!("expected BadMagic, got {other:?}"),
    }
    assert!(err.to_string().contains("train-labels-idx1-ubyte.gz"), "{err}");
    assert!(matches!(
        read_labels(&fixture_dir().join("train-images-idx3-ubyte.gz")).unwrap_err(),
        DataError::BadMagic { .. }
    ));
    let path = dir.join("junk");
    std::fs::write(&path, b"<html>404 not found</html>").unwrap();
    let err = read_images(&path).unwrap_err();
    assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
    assert!(err.to_string().contains("junk"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sequence_view_one_pixel_per_step() {
    let ds = ImageDataset::load(&fixture_dir(), Split::Train).unwrap();
    let view = SequenceView::new(1, None, 20).unwrap();
    assert_eq!(view.steps(20), 20);
    let idx = [3, 0, 7];
    let b = view.batch(&ds, &idx);
    assert_eq!((b.steps, b.batch, b.inputs_per_step), (20, 3, 1));
    assert_eq!(b.inputs.len(), 20 * 3);
    for t in 0..20 {
        for (bi, &i) in idx.iter().enumerate() {
            assert_eq!(b.step(t)[bi], ds.images.image(i)[t] as f32 / 255.0);
        }
    }
    assert_eq!(b.targets, Targets::Labels(vec![3, 1, 2]));
}

#[test]
fn sequence_view_k_pixels_per_step_with_permutation() {
    let ds = ImageDataset::load(&root().join("data/mnist-subset"), Split::Test).unwrap();
    let n = 784;
    let k = 4;
    let view = SequenceView::new(k, Some(1234), n).unwrap();
    assert_eq!(view.steps(n), 196);
    let perm = view.permutation.clone().unwrap();
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "not a bijection");
    assert_ne!(perm, (0..n).collect::<Vec<_>>());
    assert_eq!(SequenceView::new(k, Some(1234), n).unwrap(), view, "not reproducible from its seed");
    assert_eq!(SequenceView::new(1, Some(1234), n).unwrap().permutation.unwrap(), perm, "depends on k");
    assert_ne!(SequenceView::new(k, Some(1235), n).unwrap().permutation.unwrap(), perm);

    let idx = [5, 962, 0, 100, 5];
    let b = view.batch(&ds, &idx);
    assert_eq!((b.steps, b.batch, b.inputs_per_step), (196, 5, 4));
    for t in 0..196 {
        let step = b.step(t);
        for (bi, &i) in idx.iter().enumerate() {
            for c in 0..k {
                let want = ds.images.image(i)[perm[t * k + c]] as f32 / 255.0;
                assert_eq!(step[bi * k + c], want, "t={t} b={bi} c={c}");
            }
        }
    }
    let labels: Vec<u32> = idx.iter().map(|&i| ds.labels[i] as u32).collect();
    assert_eq!(b.targets, Targets::Labels(labels));
    assert!(b.inputs.iter().all(|&x| (0.0..=1.0).contains(&x)));
    assert!(b.inputs.contains(&1.0), "no saturated pixel in five real digits");
}

#[test]
fn sequence_view_rejects_bad_k() {
    assert!(SequenceView::new(0, None, 784).is_err());
    let msg = SequenceView::new(5, None, 784).unwrap_err().to_string();
    assert!(msg.contains('5') && msg.contains("784"), "{msg}");
    assert!(SequenceView::new(7, None, 784).is_ok());
}

#[test]
fn epoch_order_is_a_reproducible_permutation() {
    assert_eq!(epoch_order(5, false, &mut Rng::new(1)), vec![0, 1, 2, 3, 4]);
    let a = epoch_order(100, true, &mut Rng::new(9));
    assert_eq!(a, epoch_order(100, true, &mut Rng::new(9)));
    assert_ne!(a, (0..100).collect::<Vec<_>>());
    let mut s = a.clone();
    s.sort_unstable();
    assert_eq!(s, (0..100).collect::<Vec<_>>());
}

#[test]
fn adding_batches_follow_the_spec() {
    let mut rng = Rng::derive(7, "data");
    for steps in [2, 3, 10, 51] {
        let batch = 64;
        let b = adding_batch(&mut rng, batch, steps);
        assert_eq!((b.steps, b.batch, b.inputs_per_step), (steps, batch, 2));
        assert_eq!(b.inputs.len(), steps * batch * 2);
        let Targets::Values(targets) = &b.targets else { panic!("adding targets must be values") };
        assert_eq!(targets.len(), batch);
        let half = steps / 2;
        for (s, &target) in targets.iter().enumerate() {
            let at = |t: usize, c: usize| b.step(t)[s * 2 + c];
            let marked: Vec<usize> = (0..steps).filter(|&t| at(t, 1) != 0.0).collect();
            assert_eq!(marked.len(), 2, "sample {s}: markers at {marked:?}");
            assert!(marked[0] < half && marked[1] >= half, "T={steps}: markers at {marked:?}");
            assert!((0..steps).all(|t| at(t, 1) == 0.0 || at(t, 1) == 1.0));
            assert!((0..steps).all(|t| (0.0..1.0).contains(&at(t, 0))));
            assert_eq!(target, at(marked[0], 0) + at(marked[1], 0));
        }
    }
    // Reproducible from the generator's state.
    assert_eq!(adding_batch(&mut Rng::new(3), 8, 20), adding_batch(&mut Rng::new(3), 8, 20));
    assert_ne!(adding_batch(&mut Rng::new(3), 8, 20), adding_batch(&mut Rng::new(4), 8, 20));
}

#[test]
fn adding_problem_baseline_mse_is_one_sixth() {
    let mut rng = Rng::new(11);
    let mut targets = Vec::new();
    let mut first_half = vec![0usize; 10];
    for _ in 0..200 {
        let b = adding_batch(&mut rng, 100, 20);
        for s in 0..100 {
            let t = (0..10).find(|&t| b.step(t)[s * 2 + 1] == 1.0).unwrap();
            first_half[t] += 1;
        }
        let Targets::Values(v) = b.targets else { unreachable!() };
        targets.extend(v);
    }
    let n = targets.len() as f64;
    assert_eq!(n, 20000.0);
    let mean = targets.iter().map(|&y| y as f64).sum::<f64>() / n;
    assert!((mean - 1.0).abs() < 0.01, "mean target {mean}");
    let mse = targets.iter().map(|&y| (y as f64 - 1.0).powi(2)).sum::<f64>() / n;
    assert!((mse - 1.0 / 6.0).abs() < 0.01, "MSE of predicting 1.0: {mse}");
    // Marker positions are spread over the whole first half.
    assert!(first_half.iter().all(|&c| c > 1500 && c < 2500), "{first_half:?}");
}
