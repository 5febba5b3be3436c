//! Build-time shader checking, as vello does: every `shaders/*.wgsl` (one entry point per file) is
//! expanded (`#import name` pulls in `shaders/shared/name.wgsl`), parsed and validated by naga, so
//! that a shader error fails `cargo build` with the file and line. The expanded sources are
//! embedded in the binary through `$OUT_DIR/shaders.rs`, so what runs is exactly what was checked.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

/// The expanded source and, for each of its lines, the file and line it came from.
#[derive(Default)]
struct Expanded {
    text: String,
    origin: Vec<(String, usize)>,
}

fn expand(file: &str, src: &str, shared: &Path, seen: &mut BTreeSet<String>, out: &mut Expanded) -> Result<(), String> {
    for (i, line) in src.lines().enumerate() {
        if let Some(name) = line.trim().strip_prefix("#import ") {
            let name = name.trim();
            if seen.insert(name.to_string()) {
                let path = shared.join(format!("{name}.wgsl"));
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{file}:{}: #import {name}: {}: {e}", i + 1, path.display()))?;
                println!("cargo:rerun-if-changed={}", path.display());
                expand(&format!("shaders/shared/{name}.wgsl"), &text, shared, seen, out)?;
            }
        } else {
            out.text.push_str(line);
            out.text.push('\n');
            out.origin.push((file.to_string(), i + 1));
        }
    }
    Ok(())
}

impl Expanded {
    /// "file:line: " of an error at `location` in the expanded text.
    fn at(&self, location: Option<naga::SourceLocation>) -> String {
        location
            .and_then(|l| self.origin.get(l.line_number as usize - 1))
            .map(|(f, n)| format!("{f}:{n}: "))
            .unwrap_or_default()
    }
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
        let file = format!("shaders/{name}.wgsl");
        let mut expanded = Expanded::default();
        if let Err(e) = expand(&file, &text, &shared, &mut BTreeSet::new(), &mut expanded) {
            failures.push(e);
            continue;
        }
        let source = &expanded.text;
        let shown = format!("{file} (with its #imports expanded)");
        let module = match naga::front::wgsl::parse_str(source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!(
                    "{}{}",
                    expanded.at(e.location(source)),
                    e.emit_to_string_with_path(source, &shown)
                ));
                continue;
            }
        };
        let mut validator =
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
        if let Err(e) = validator.validate(&module) {
            failures.push(format!("{}{}", expanded.at(e.location(source)), e.emit_to_string_with_path(source, &shown)));
            continue;
        }
        let entries: Vec<_> = module.entry_points.iter().map(|e| e.name.clone()).collect();
        if entries != ["main"] {
            failures.push(format!("{file}: expected exactly one entry point named `main`, found {entries:?}"));
            continue;
        }
        writeln!(table, "    ({name:?}, {:?}),", expanded.text).unwrap();
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
