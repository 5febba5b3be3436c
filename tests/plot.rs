//! `fptt plot`: every kind of figure from small CSVs written here (or the committed results/),
//! as SVG (balanced XML tags, the expected labels) and PNG (decoded: signature, dimensions), and
//! the refusals of bad input (missing column, empty file, no metrics, bad extension), each naming
//! the file and the column. No GPU: the module reads files only.

use std::path::{Path, PathBuf};

use fptt::plot::{self, PlotError, RunPlotOptions, XAxis};

mod cli_common;

use cli_common::{bin, scratch};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn committed(path: &str) -> PathBuf {
    Path::new(ROOT).join(path)
}

/// Well-formed enough: one `<svg` root, closed, and every element closed in order.
fn assert_svg(path: &Path, labels: &[&str]) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let body = text.trim();
    assert!(body.starts_with("<svg") || body.starts_with("<?xml"), "{}: not an SVG: {}", path.display(), &body[..60]);
    assert!(body.ends_with("</svg>"), "{}: not closed", path.display());
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').expect("an unclosed tag") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_alphanumeric()).collect();
        if tag.starts_with('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "{}: mismatched </{name}>", path.display());
        } else {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "{}: unclosed {stack:?}", path.display());
    for label in labels {
        let escaped = label.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;");
        assert!(text.contains(label) || text.contains(&escaped), "{}: no {label:?}", path.display());
    }
    text
}

/// A PNG that decodes, of the given width (and a height above 100 pixels).
fn assert_png(path: &Path, width: u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}: PNG signature", path.display());
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.width, width, "{}", path.display());
    assert!(info.height > 100, "{}: height {}", path.display(), info.height);
    // Not blank: some pixels are not white.
    assert!(buf.iter().any(|b| *b < 200), "{}: a blank image", path.display());
}

const METRICS_HEADER: &str =
    "run,epoch,iteration,split,loss,accuracy,mse,firing_rate,lr,samples_per_s,elapsed_s,gpu_bytes,adapter,backend,device_type";

/// A run directory as `fptt train` leaves it: config.toml and metrics.csv (adding task, MSE).
fn write_run(dir: &Path, seed: u64, rule: &str, scale: f64) {
    std::fs::create_dir_all(dir).unwrap();
    let config = format!(
        "name = \"adding-test\"\nseed = {seed}\n\n[data]\ntask = \"adding\"\nsteps = 50\n\n[model]\nhidden = [16]\n\
         neuron = \"ltc\"\n\n[train]\nrule = \"{rule}\"\nlr = 0.003\nbatch = 8\n\n[output]\ndir = \"{}\"\n\n\
         [run]\nadapter = \"Test Adapter {seed}\"\nbackend = \"vulkan\"\nstarted_utc = \"2026010{seed}-000000\"\n",
        dir.display()
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let mut csv = String::from(METRICS_HEADER);
    for i in 1..=10 {
        let mse = scale / i as f64;
        csv.push_str(&format!(
            "\nadding-test,1,{},train,{},,{mse},0.1,0.003,100,{},12345,Test Adapter,vulkan,cpu",
            10 * i,
            50.0 * mse,
            i as f64 * 1.5
        ));
        if i % 5 == 0 {
            csv.push_str(&format!(
                "\nadding-test,1,{},test,{},,{},0,0.003,100,{},12345,Test Adapter,vulkan,cpu",
                10 * i,
                45.0 * mse,
                0.9 * mse,
                i as f64 * 1.5
            ));
        }
    }
    std::fs::write(dir.join("metrics.csv"), csv + "\n").unwrap();
}

#[test]
fn learning_curves_with_seeds_as_mean_and_band() {
    let dir = scratch("plot-runs");
    let mut dirs = Vec::new();
    for seed in 1..=3 {
        let d = dir.join(format!("fptt-seed{seed}"));
        write_run(&d, seed, "fptt", 1.0 + 0.1 * seed as f64);
        dirs.push(d);
    }
    let bptt = dir.join("bptt");
    write_run(&bptt, 1, "bptt", 0.5);
    dirs.push(bptt);

    let out = plot::plot_runs(&dirs, &RunPlotOptions::default()).unwrap();
    assert_eq!(out, dir.join("curves.svg"), "default: curves.svg in the runs' common parent");
    let svg = assert_svg(
        &out,
        &[
            "one-step FPTT (mean of 3 seeds)",
            "BPTT",
            "iteration (training batches)",
            "mean squared error",
            "loss per sequence",
            "adding-test",
            "Test Adapter 1 (Vulkan)",
        ],
    );
    // The band is one filled polygon per seed group and panel.
    assert!(svg.contains("<polygon"), "no band drawn");

    let png = dir.join("time.png");
    let opts = RunPlotOptions { x: XAxis::Time, out: Some(png.clone()), title: Some("My runs".into()) };
    plot::plot_runs(&dirs[3..], &opts).unwrap();
    assert_png(&png, 2 * 620);

    let time_svg = dir.join("time.svg");
    let opts = RunPlotOptions { x: XAxis::Time, out: Some(time_svg.clone()), title: None };
    assert_eq!(plot::plot_runs(&dirs[3..], &opts).unwrap(), time_svg);
    assert_svg(&time_svg, &["wall time (s)"]);

    // One run directory: the figure goes inside it.
    let single = plot::plot_runs(&dirs[3..], &RunPlotOptions::default()).unwrap();
    assert_eq!(single, dirs[3].join("curves.svg"));
}

#[test]
fn committed_rule_comparison_runs_plot() {
    let dir = scratch("plot-compare");
    let runs: Vec<PathBuf> =
        ["ltc-bptt", "ltc-fptt-chunk20"].iter().map(|r| committed("results/compare/adding-T200").join(r)).collect();
    let out = dir.join("t200.svg");
    plot::plot_runs(&runs, &RunPlotOptions { out: Some(out.clone()), ..Default::default() }).unwrap();
    assert_svg(&out, &["BPTT", "FPTT K=20", "llvmpipe"]);
}

#[test]
fn kernel_profile_per_shape_and_for_one_run() {
    let dir = scratch("plot-kernels");
    let out = dir.join("kernels.svg");
    plot::plot_kernels(&committed("results/bench-h200-kernels.csv"), Some(&out), None).unwrap();
    assert_svg(
        &out,
        &["layer_neuron", "weight_grad", "share of the step's GPU time (%)", "N=256, B=64", "NVIDIA H200"],
    );

    // A training run's kernels.csv has no shape columns: one bar per kernel.
    let run = dir.join("kernels.csv");
    std::fs::write(
        &run,
        "kernel,dispatches,total_ms,mean_us,share,adapter,backend,device_type\n\
         layer_neuron,100,5.0,50.0,0.5,GPU X,metal,discrete\n\
         weight_grad,200,3.0,15.0,0.3,GPU X,metal,discrete\n\
         fptt_update,100,2.0,20.0,0.2,GPU X,metal,discrete\n",
    )
    .unwrap();
    let written = plot::plot_kernels(&run, None, Some("Profile")).unwrap();
    assert_eq!(written, dir.join("kernels.svg"), "default: next to the input");
    assert_svg(&written, &["Profile, on GPU X (Metal)", "fptt_update"]);
    let png = dir.join("kernels.png");
    plot::plot_kernels(&run, Some(&png), None).unwrap();
    assert_png(&png, 1000);
}

#[test]
fn bench_against_the_peer_with_ceilings() {
    let dir = scratch("plot-bench");
    let out = dir.join("bench.svg");
    plot::plot_bench(
        &committed("results/bench-h200.csv"),
        Some(&committed("results/bench-pytorch-h200.csv")),
        Some(&out),
        None,
    )
    .unwrap();
    assert_svg(&out, &["ms per step", "GFLOP/s", "hidden neurons N", "B=512", "matrix-product ceiling", "PyTorch"]);

    // A peer CSV with the vendor's matrix rate draws it as a second ceiling.
    let peer = dir.join("peer.csv");
    std::fs::write(
        &peer,
        "implementation,hidden,layers,batch,steps,ms_per_step,device,device_type,vendor_matmul_gflop_per_s\n\
         pytorch,256,1,64,16,9.8,NVIDIA H200,cuda,51234\n\
         pytorch,1024,1,64,16,9.9,NVIDIA H200,cuda,51234\n",
    )
    .unwrap();
    let png = dir.join("bench.png");
    plot::plot_bench(&committed("results/bench-h200.csv"), Some(&peer), Some(&png), None).unwrap();
    assert_png(&png, 2 * 640);
    let svg = dir.join("vendor.svg");
    plot::plot_bench(&committed("results/bench-h200.csv"), Some(&peer), Some(&svg), None).unwrap();
    assert_svg(&svg, &["vendor f32 matrix product, peer (51234 GFLOP/s)"]);
}

#[test]
fn memory_against_t_per_rule() {
    let dir = scratch("plot-memory");
    let out = dir.join("memory.png");
    plot::plot_memory(&committed("results/memory-lavapipe.csv"), Some(&out), None).unwrap();
    assert_png(&out, 860);
    let svg = dir.join("memory.svg");
    plot::plot_memory(&committed("results/memory-lavapipe.csv"), Some(&svg), None).unwrap();
    assert_svg(
        &svg,
        &[
            "one-step FPTT",
            "FPTT, 10 chunks",
            "BPTT",
            "e-prop",
            "GPU memory (MiB)",
            "learning_bytes",
            "sequence length T",
        ],
    );
}

/// The conv rows of `fptt bench memory --experiment` have no gpu_bytes: their estimates are drawn,
/// dotted and labelled as such.
#[test]
fn memory_draws_the_estimates_of_a_conv_experiment() {
    let dir = scratch("plot-memory-conv");
    let svg = dir.join("dvs.svg");
    plot::plot_memory(&committed("results/memory-dvs-gesture.csv"), Some(&svg), None).unwrap();
    assert_svg(&svg, &["one-step FPTT, estimated", "BPTT, estimated", "estimated_bytes", "dvs-gesture network"]);
    // A file with neither measured nor estimated bytes says so.
    let none = dir.join("none.csv");
    std::fs::write(&none, "rule,chunk,steps,gpu_bytes,note\nbptt,100,100,,too large\n").unwrap();
    let e = plot::plot_memory(&none, Some(&dir.join("none.svg")), None).unwrap_err();
    assert!(matches!(e, PlotError::NothingToPlot { .. }) && e.to_string().contains("estimated_bytes"), "{e}");
}

#[test]
fn bad_input_is_refused_naming_file_and_column() {
    let dir = scratch("plot-errors");
    let out = dir.join("x.svg");

    // A bench CSV without gflop_per_s.
    let bench = dir.join("bench.csv");
    std::fs::write(&bench, "hidden,batch,ms_per_step\n64,1,0.4\n").unwrap();
    let e = plot::plot_bench(&bench, None, Some(&out), None).unwrap_err();
    assert!(matches!(&e, PlotError::MissingColumn { column, .. } if column == "gflop_per_s"), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("bench.csv") && msg.contains("`gflop_per_s`"), "{msg}");

    // Empty and header-only files.
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let e = plot::plot_memory(&empty, Some(&out), None).unwrap_err();
    assert!(matches!(e, PlotError::Empty { .. }), "{e}");
    assert!(e.to_string().contains("empty.csv"), "{e}");
    let header = dir.join("header.csv");
    std::fs::write(&header, "kernel,share\n").unwrap();
    assert!(matches!(plot::plot_kernels(&header, Some(&out), None), Err(PlotError::Empty { .. })));

    // A cell that is not a number names its line and column.
    let bad = dir.join("bad-kernels.csv");
    std::fs::write(&bad, "kernel,share\nlayer_neuron,0.5\nweight_grad,lots\n").unwrap();
    let e = plot::plot_kernels(&bad, Some(&out), None).unwrap_err();
    assert!(matches!(&e, PlotError::NotANumber { line: 3, column, .. } if column == "share"), "{e}");

    // A last line cut short (a run killed mid-write) is left out; a short line before it is refused.
    let cut = dir.join("cut.csv");
    std::fs::write(&cut, "kernel,share\nlayer_neuron,0.5\nweight_grad,0.5\nfptt_upd").unwrap();
    plot::plot_kernels(&cut, Some(&dir.join("cut.svg")), None).unwrap();
    std::fs::write(&cut, "kernel,share\nlayer_neuron\nweight_grad,0.5\n").unwrap();
    let e = plot::plot_kernels(&cut, Some(&out), None).unwrap_err();
    assert!(e.to_string().contains("cut.csv") && e.to_string().contains("line 2"), "{e}");

    // A directory without metrics.csv.
    let e = plot::plot_runs(std::slice::from_ref(&dir), &RunPlotOptions::default()).unwrap_err();
    assert!(matches!(e, PlotError::NotARun { .. }), "{e}");
    assert!(e.to_string().contains("metrics.csv") && e.to_string().contains("plot-errors"), "{e}");

    // A metrics.csv without a loss column.
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("metrics.csv"), "iteration,split,elapsed_s\n1,train,0.5\n").unwrap();
    let e = plot::plot_runs(&[run], &RunPlotOptions::default()).unwrap_err();
    assert!(matches!(&e, PlotError::MissingColumn { column, .. } if column == "loss"), "{e}");

    // An output format nobody can write.
    let e = plot::plot_memory(&committed("results/memory-lavapipe.csv"), Some(&dir.join("x.jpg")), None).unwrap_err();
    assert!(matches!(e, PlotError::Format { .. }), "{e}");
}

#[test]
fn the_command_line_writes_figures_and_refuses_bad_input() {
    let dir = scratch("plot-cli");
    let out = dir.join("mem.svg");
    let o = bin().args(["plot", "memory", "results/memory-lavapipe.csv", "--out"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("mem.svg"));
    assert_svg(&out, &["BPTT"]);

    let o = bin().args(["plot"]).arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not a run directory") && !err.contains("panicked"), "{err}");

    let o = bin()
        .args(["plot", "kernels", "results/memory-lavapipe.csv", "--out"])
        .arg(dir.join("k.svg"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("memory-lavapipe.csv") && err.contains("`kernel`"), "{err}");
}
