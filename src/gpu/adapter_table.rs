//! `fptt devices`' table: one row per adapter wgpu can see, with the limits that matter here.

use super::AdapterReport;

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// The adapters as a table of aligned columns (a header line, then one line per adapter).
pub fn adapter_table(adapters: &[AdapterReport]) -> String {
    let header = [
        "#",
        "name",
        "backend",
        "type",
        "driver",
        "storage binding MiB",
        "buffer MiB",
        "workgroup storage KiB",
        "invocations/workgroup",
        "timestamps",
        "timestamps in passes",
        "subgroups",
        "f16",
    ];
    let rows: Vec<Vec<String>> = adapters
        .iter()
        .map(|a| {
            vec![
                a.index.to_string(),
                a.name.clone(),
                a.backend.clone(),
                a.device_type.clone(),
                a.driver.clone(),
                a.max_storage_binding_mib.to_string(),
                a.max_buffer_mib.to_string(),
                a.max_workgroup_storage_kib.to_string(),
                a.max_invocations_per_workgroup.to_string(),
                yes_no(a.timestamps),
                yes_no(a.timestamps_in_passes),
                yes_no(a.subgroups),
                yes_no(a.f16),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).chain([header[c].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    let mut text = line(header.to_vec()) + "\n";
    for r in &rows {
        text += &line(r.iter().map(|s| s.as_str()).collect());
        text += "\n";
    }
    text
}
