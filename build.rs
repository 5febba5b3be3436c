//! Build-time shader checking, as vello does: every `shaders/*.wgsl` (one entry point per file) is
//! expanded (`#import name` pulls in `shaders/shared/name.wgsl`), parsed and validated by naga, so
//! that a shader error fails `cargo build` with the file and line. The expanded sources are
//! embedded in the binary through `$OUT_DIR/shaders.rs`, so what runs is exactly what was checked.
//!
//! A kernel that imports a module with a subgroup variant (`reduce` → `reduce_subgroup`) is
//! expanded twice: the plain source is validated *without* naga's subgroup capabilities (it must
//! run on adapters that lack `wgpu::Features::SUBGROUP`), the variant with them, and both are
//! embedded (`KERNEL_SOURCES`, `KERNEL_SOURCES_SUBGROUP`), so a typo in either fails the build.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

/// The expanded source and, for each of its lines, the file and line it came from.
#[derive(Default)]
struct Expanded {
    text: String,
    origin: Vec<(String, usize)>,
}

/// Shared modules with a subgroup variant: (plain import, the variant the subgroup build imports
/// instead). Both declare the same functions with the same parameters.
const SUBGROUP_VARIANTS: &[(&str, &str)] = &[("reduce", "reduce_subgroup")];

fn expand(
    file: &str,
    src: &str,
    shared: &Path,
    subgroups: bool,
    seen: &mut BTreeSet<String>,
    out: &mut Expanded,
) -> Result<(), String> {
    for (i, line) in src.lines().enumerate() {
        if let Some(name) = line.trim().strip_prefix("#import ") {
            let name = name.trim();
            if seen.insert(name.to_string()) {
                let module = match SUBGROUP_VARIANTS.iter().find(|(plain, _)| *plain == name) {
                    Some((_, variant)) if subgroups => *variant,
                    _ => name,
                };
                let path = shared.join(format!("{module}.wgsl"));
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{file}:{}: #import {name}: {}: {e}", i + 1, path.display()))?;
                println!("cargo:rerun-if-changed={}", path.display());
                expand(&format!("shaders/shared/{module}.wgsl"), &text, shared, subgroups, seen, out)?;
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
    let mut variants = String::from(
        "/// The kernels with a subgroup variant (`wgpu::Features::SUBGROUP` devices): (name, source).\n\
         pub const KERNEL_SOURCES_SUBGROUP: &[(&str, &str)] = &[\n",
    );
    let mut failures = Vec::new();
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).expect("readable shader");
        let file = format!("shaders/{name}.wgsl");
        let mut seen = BTreeSet::new();
        match check(&file, &text, &shared, false, &mut seen) {
            Ok(source) => writeln!(table, "    ({name:?}, {source:?}),").unwrap(),
            Err(e) => {
                failures.push(e);
                continue;
            }
        }
        if SUBGROUP_VARIANTS.iter().any(|(plain, _)| seen.contains(*plain)) {
            match check(&file, &text, &shared, true, &mut BTreeSet::new()) {
                Ok(source) => writeln!(variants, "    ({name:?}, {source:?}),").unwrap(),
                Err(e) => failures.push(e),
            }
        }
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
    variants.push_str("];\n");
    table.push_str(&variants);
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("shaders.rs");
    std::fs::write(out, table).expect("write shaders.rs");
}

/// Expand `text` (with the subgroup variants of its imports when `subgroups`), parse and validate
/// it, and give the expanded source. The plain expansion is validated without naga's subgroup
/// capabilities, the variant with subgroup arithmetic in compute shaders.
fn check(
    file: &str,
    text: &str,
    shared: &Path,
    subgroups: bool,
    seen: &mut BTreeSet<String>,
) -> Result<String, String> {
    let mut expanded = Expanded::default();
    expand(file, text, shared, subgroups, seen, &mut expanded)?;
    let source = &expanded.text;
    let shown = if subgroups {
        format!("{file} (with its #imports expanded, subgroup variant)")
    } else {
        format!("{file} (with its #imports expanded)")
    };
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{}{}", expanded.at(e.location(source)), e.emit_to_string_with_path(source, &shown)))?;
    use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags, Validator};
    let subgroup_caps = Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER | Capabilities::SUBGROUP_VERTEX_STAGE;
    let mut validator = if subgroups {
        let mut v = Validator::new(ValidationFlags::all(), Capabilities::all() - Capabilities::SUBGROUP_VERTEX_STAGE);
        v.subgroup_stages(ShaderStages::COMPUTE);
        v.subgroup_operations(SubgroupOperationSet::BASIC | SubgroupOperationSet::ARITHMETIC);
        v
    } else {
        Validator::new(ValidationFlags::all(), Capabilities::all() - subgroup_caps)
    };
    validator
        .validate(&module)
        .map_err(|e| format!("{}{}", expanded.at(e.location(source)), e.emit_to_string_with_path(source, &shown)))?;
    let entries: Vec<_> = module.entry_points.iter().map(|e| e.name.clone()).collect();
    if entries != ["main"] {
        return Err(format!("{file}: expected exactly one entry point named `main`, found {entries:?}"));
    }
    Ok(expanded.text)
}
