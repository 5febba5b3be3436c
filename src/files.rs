//! Writing files so that a kill at any moment loses nothing: [`write_atomic`] writes a temporary
//! file in the same directory, syncs it and renames it over the target (a reader, or a crash,
//! sees the old file or the complete new one); [`remove_stale_temporaries`] clears what a kill
//! between the write and the rename leaves behind; [`kill_point`] lets the tests kill the process
//! at a named point of a write.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the [`kill_point`] at which to abort (tests only).
pub const KILL_POINT_ENV: &str = "FPTT_TEST_KILL_AT";

/// Abort the process here when `FPTT_TEST_KILL_AT` names `point`: the tests' stand-in for a
/// `kill -9` at the worst moment.
pub fn kill_point(point: &str) {
    if std::env::var(KILL_POINT_ENV).is_ok_and(|p| p == point) {
        eprintln!("{KILL_POINT_ENV}={point}: aborting");
        std::process::abort();
    }
}

/// The temporary name `write_atomic` uses for `path`: `.NAME.tmp-PID-N` beside it.
fn temporary_for(path: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"))?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    Ok((dir, tmp))
}

/// Replace `path` with `bytes` atomically (temporary file, fsync, rename, directory fsync). The
/// directory must exist. `point` names the [`kill_point`] between the write and the rename.
pub fn write_atomic(path: &Path, bytes: &[u8], point: &str) -> std::io::Result<()> {
    let (dir, tmp) = temporary_for(path)?;
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        kill_point(point);
        fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable where the platform allows syncing a directory.
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Whether process `pid` is alive (Linux: its `/proc` entry; elsewhere assumed alive).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// Remove the temporaries [`write_atomic`] left in `dir` for any of `names` when killed before
/// its rename (`.NAME.tmp-PID-N`, PID no longer running). Returns the files removed.
pub fn remove_stale_temporaries(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return removed };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = names.iter().find_map(|n| name.strip_prefix(&format!(".{n}.tmp-"))) else { continue };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !alive(p)) && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_stale_temporaries_go() {
        let dir = std::env::temp_dir().join(format!("fptt-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.txt");
        write_atomic(&p, b"one", "x").unwrap();
        write_atomic(&p, b"two", "x").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        // A dead writer's temporary goes; a live one's (ours) and unrelated files stay.
        let dead = dir.join(".a.txt.tmp-4000000000-0");
        let live = dir.join(format!(".a.txt.tmp-{}-7", std::process::id()));
        let other = dir.join(".b.txt.tmp-4000000000-0");
        for f in [&dead, &live, &other] {
            fs::write(f, b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(&dir, &["a.txt"]), vec![dead.clone()]);
        assert!(!dead.exists() && live.exists() && other.exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
