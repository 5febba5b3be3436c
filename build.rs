//! Build-time shader checking, as vello does: every `shaders/*.wgsl` (one entry point per file) is
//! expanded (`#import name` pulls in `shaders/shared/name.wgsl`), parsed and validated by naga, so
//! that a shader error fails `cargo build` with the file and line. The expanded sources are
//! embedded in the binary through `$OUT_DIR/shaders.rs`, so what runs is exactly what was checked.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

fn expand(src: &str, shared: &Path, seen: &mut BTreeSet<String>, out: &mut String) -> Result<(), String> {
    for line in src.lines() {
        if let Some(name) = line.trim().strip_prefix("#import ") {
            let name = name.trim();
            if seen.insert(name.to_string()) {
                let path = shared.join(format!("{name}.wgsl"));
                let text = std::fs::read_to_string(&path).map_err(|e| format!("#import {name}: {}: {e}", path.display()))?;
                println!("cargo:rerun-if-changed={}", path.display());
                expand(&text, shared, seen, out)?;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let shared = root.join("shared");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed={}", shared.display());
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .expect("shaders/ directory")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    let mut table = String::from("/// Every kernel: (name, expanded and validated WGSL source).\npub const KERNEL_SOURCES: &[(&str, &str)] = &[\n");
    let mut failures = Vec::new();
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).expect("readable shader");
        let mut source = String::new();
        if let Err(e) = expand(&text, &shared, &mut BTreeSet::new(), &mut source) {
            failures.push(format!("{}: {e}", path.display()));
            continue;
        }
        let shown = format!("shaders/{name}.wgsl (with its #imports expanded)");
        let module = match naga::front::wgsl::parse_str(&source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(e.emit_to_string_with_path(&source, &shown));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
        if let Err(e) = validator.validate(&module) {
            failures.push(e.emit_to_string_with_path(&source, &shown));
            continue;
        }
        let entries: Vec<_> = module.entry_points.iter().map(|e| e.name.clone()).collect();
        if entries != ["main"] {
            failures.push(format!("{shown}: expected exactly one entry point named `main`, found {entries:?}"));
            continue;
        }
        writeln!(table, "    ({name:?}, {source:?}),").unwrap();
    }
    if !failures.is_empty() {
        for f in &failures {
            for line in f.lines() {
                println!("cargo:warning={line}");
            }
        }
        panic!("{} shader(s) failed naga validation:\n\n{}", failures.len(), failures.join("\n"));
    }
    table.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("shaders.rs");
    std::fs::write(out, table).expect("write shaders.rs");
}
