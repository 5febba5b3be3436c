//! A directory of event files, one folder per class, as SpikingJelly exports its datasets
//! (`events_np/train/<class>/*.npz`) or as tonic's arrays are saved with `np.save` (`.npy`):
//!
//! ```text
//! DIR/train/<class>/<any>.npz|.npy
//! DIR/test/<class>/<any>.npz|.npy
//! ```
//!
//! The class folders, sorted by name (byte order), are the labels 0..C−1, so train and test must
//! hold the same folders: a label then means the same class in both. A split's samples are sorted
//! by (class, file name), so a run reads the same samples in the same order on any file system.
//! Names starting with `.` are skipped (`.DS_Store`, `.ipynb_checkpoints`), as are plain files
//! beside the class folders and entries of a class folder that are not `.npz`/`.npy` files (a
//! `README` or a label list); a class folder without event files is refused, since its class
//! could never be learnt or tested. Listing reads no events: [`EventFolders::read`] does, binning
//! each file into frames as it is read.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{read_event_file, EventError, FrameSet, FrameSpec};
use crate::data::Split;

const LAYOUT: &str = "DIR/train/<class>/*.npz|.npy and DIR/test/<class>/*.npz|.npy \
(SpikingJelly's events_np layout; the sorted class folder names are the labels)";

/// The file name of each split's folder.
fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "test",
    }
}

fn hidden(name: &OsString) -> bool {
    name.as_encoded_bytes().starts_with(b".")
}

/// The entries of `dir` that are not hidden, sorted by name, with whether each is a directory
/// (following links, as a user who links a dataset in expects).
fn entries(dir: &Path) -> Result<Vec<(OsString, bool)>, EventError> {
    let io = |e| EventError::Io { path: dir.to_path_buf(), source: e };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if !hidden(&name) {
            out.push((name, entry.path().is_dir()));
        }
    }
    out.sort();
    Ok(out)
}

fn names(list: &[OsString]) -> String {
    let shown: Vec<String> = list.iter().map(|n| n.to_string_lossy().into_owned()).collect();
    format!("[{}]", shown.join(", "))
}

/// One split's class folders, sorted.
fn class_folders(dir: &Path, split: Split) -> Result<Vec<OsString>, EventError> {
    let split_dir = dir.join(split_name(split));
    if !split_dir.is_dir() {
        return Err(EventError::Layout { dir: split_dir, fault: format!("not found; expected {LAYOUT}") });
    }
    let classes: Vec<OsString> = entries(&split_dir)?.into_iter().filter(|(_, d)| *d).map(|(n, _)| n).collect();
    if classes.is_empty() {
        return Err(EventError::Layout {
            dir: split_dir,
            fault: format!("no class folders: the split is empty (expected {LAYOUT})"),
        });
    }
    Ok(classes)
}

/// An event dataset laid out as class folders: the classes and each split's files, listed (no
/// events read).
#[derive(Debug, Clone)]
pub struct EventFolders {
    pub dir: PathBuf,
    /// The class folder names, sorted: class `k` is label `k`.
    pub classes: Vec<String>,
    /// Each split's event files with their labels, sorted by (label, file name).
    pub train: Vec<(PathBuf, u32)>,
    pub test: Vec<(PathBuf, u32)>,
}

impl EventFolders {
    /// The class folder names of `dir` (sorted; the same in `train/` and `test/`, at least two),
    /// without listing their files: what a run needs to shape its network.
    pub fn class_names(dir: &Path) -> Result<Vec<String>, EventError> {
        Ok(Self::classes_of(dir)?.iter().map(|n| n.to_string_lossy().into_owned()).collect())
    }

    fn classes_of(dir: &Path) -> Result<Vec<OsString>, EventError> {
        if !dir.is_dir() {
            return Err(EventError::Layout { dir: dir.to_path_buf(), fault: format!("not found; expected {LAYOUT}") });
        }
        let train = class_folders(dir, Split::Train)?;
        let test = class_folders(dir, Split::Test)?;
        if train != test {
            let only =
                |a: &[OsString], b: &[OsString]| a.iter().filter(|n| !b.contains(n)).cloned().collect::<Vec<_>>();
            let mut differ = Vec::new();
            for (split, a, b) in [("train", &train, &test), ("test", &test, &train)] {
                let extra = only(a, b);
                if !extra.is_empty() {
                    differ.push(format!("only in {split}: {}", names(&extra)));
                }
            }
            return Err(EventError::Layout {
                dir: dir.to_path_buf(),
                fault: format!(
                    "the class folders of {} {} and of {} {} differ ({}): the sorted folder names are the \
                     labels, so both splits need the same classes",
                    dir.join("train").display(),
                    names(&train),
                    dir.join("test").display(),
                    names(&test),
                    differ.join("; ")
                ),
            });
        }
        if train.len() < 2 {
            return Err(EventError::Layout {
                dir: dir.to_path_buf(),
                fault: format!(
                    "one class folder, {}: a classification task needs at least 2 (expected {LAYOUT})",
                    names(&train)
                ),
            });
        }
        if u32::try_from(train.len()).is_err() {
            return Err(EventError::Layout { dir: dir.to_path_buf(), fault: "too many class folders".into() });
        }
        Ok(train)
    }

    /// List `dir`: its classes and every split's files. Refused: a missing directory or split,
    /// an empty split, class folders that differ between the splits, fewer than two classes, a
    /// class folder without `.npz`/`.npy` files.
    pub fn open(dir: &Path) -> Result<Self, EventError> {
        let classes = Self::classes_of(dir)?;
        let files = |split: Split| -> Result<Vec<(PathBuf, u32)>, EventError> {
            let mut out = Vec::new();
            for (label, class) in classes.iter().enumerate() {
                let class_dir = dir.join(split_name(split)).join(class);
                let all = entries(&class_dir)?;
                let before = out.len();
                for (name, is_dir) in &all {
                    let path = class_dir.join(name);
                    let event_file = path.extension().is_some_and(|e| e == "npz" || e == "npy");
                    if event_file && !is_dir {
                        out.push((path, label as u32));
                    }
                }
                if out.len() == before {
                    let others =
                        if all.is_empty() { String::new() } else { format!(" (it holds {} other entries)", all.len()) };
                    return Err(EventError::Layout {
                        dir: class_dir,
                        fault: format!("a class folder without .npz or .npy event files{others}"),
                    });
                }
            }
            Ok(out)
        };
        let (train, test) = (files(Split::Train)?, files(Split::Test)?);
        let classes = classes.iter().map(|n| n.to_string_lossy().into_owned()).collect();
        Ok(EventFolders { dir: dir.to_path_buf(), classes, train, test })
    }

    /// A split's files with their labels, sorted by (label, file name).
    pub fn files(&self, split: Split) -> &[(PathBuf, u32)] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// The first `max` files of a split (0 = all) taken from the classes in turn (the first file
    /// of every class, then the second, …), still sorted by (label, file name): a capped split
    /// keeps every class rather than only the first ones of the sorted list.
    pub fn selection(&self, split: Split, max: usize) -> Vec<(PathBuf, u32)> {
        let files = self.files(split);
        if max == 0 || max >= files.len() {
            return files.to_vec();
        }
        let mut per_class = vec![0usize; self.classes.len()];
        for &(_, label) in files {
            per_class[label as usize] += 1;
        }
        // Round robin: each pass takes one more file from every class that has one left.
        let mut take = vec![0usize; per_class.len()];
        let mut left = max;
        while left > 0 {
            for (t, &have) in take.iter_mut().zip(&per_class) {
                if left > 0 && *t < have {
                    *t += 1;
                    left -= 1;
                }
            }
        }
        let mut seen = vec![0usize; per_class.len()];
        files
            .iter()
            .filter(|(_, label)| {
                let k = *label as usize;
                seen[k] += 1;
                seen[k] <= take[k]
            })
            .cloned()
            .collect()
    }

    /// The split's samples (the first `max` of [`EventFolders::selection`]; 0 = all) read from a
    /// `width × height` sensor and binned into frames by `threads` threads, in (label, file name)
    /// order whatever the threads. A file that cannot be read, is malformed or holds an event off
    /// the sensor is refused with its path and the fault (the first such file in that order).
    pub fn read(
        &self,
        split: Split,
        spec: FrameSpec,
        (width, height): (u16, u16),
        max: usize,
        threads: usize,
    ) -> Result<FrameSet, EventError> {
        let files = self.selection(split, max);
        let labels = files.iter().map(|&(_, label)| label).collect();
        FrameSet::bin_in_parallel(spec, width, height, labels, threads, |i| read_event_file(&files[i].0, width, height))
    }
}
