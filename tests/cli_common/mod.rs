//! Shared support for the tests that run the `fptt` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The built binary, run from the crate root with Mesa's headless warning quieted.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fptt"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()));
    c
}

/// A fresh, empty directory under the target's test scratch space.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
