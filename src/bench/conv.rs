//! `fptt bench conv`: the convolution kernels (`conv_forward`, `conv_input_grad`,
//! `conv_weight_grad`) alone on the DVS Gesture network's layer shapes (method §9,
//! [`ConvNetSpec::dvs_gesture`]): for each chosen cell its input convolution `Conv_x`
//! (`in → out` at the cell's input size) and one gate convolution (`out → out` at the pooled
//! size; `Conv_m` and `Conv_a` have the same shape). Each kernel runs once to warm up, then
//! `reps` times in one submission, timed by the wall clock around the waited submission (what
//! [`super::ceilings`] does). The operands hold random values; what the kernels compute is
//! checked by `tests/gpu_conv.rs`, not here. Rates count the product the kernel runs,
//! `2·rows·cols·K` flops, zero padding included (weight_grad: its bias column too).

use std::rc::Rc;
use std::time::Instant;

use crate::gpu::{ArgArena, GpuBuffer, GpuContext, KernelTable, MemoryLedger};
use crate::learn::kernel_args::{ConvArgs, StepInfo};
use crate::learn::EngineError;
use crate::model::ConvNetSpec;
use crate::rng::Rng;

/// One convolution of the network at one batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvLayer {
    /// 1-based cell index.
    pub cell: usize,
    /// `x` (the input convolution) or `gate` (a gate's).
    pub conv: &'static str,
    pub batch: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
}

impl ConvLayer {
    fn args(&self) -> ConvArgs {
        let pad = self.k / 2;
        ConvArgs {
            batch: self.batch as u32,
            in_c: self.in_c as u32,
            out_c: self.out_c as u32,
            h: self.h as u32,
            w: self.w as u32,
            k: self.k as u32,
            pad: pad as u32,
            // Odd kernels padded by k/2 keep the size.
            oh: self.h as u32,
            ow: self.w as u32,
            x2: u32::MAX,
            bias: u32::MAX,
            ..Default::default()
        }
    }

    /// Flops of each kernel's product: forward `B·H·W × Cout × Cin·k²`, input-grad
    /// `B·H·W × Cin × Cout·k²`, weight-grad `Cout × (Cin·k² + 1) × B·H·W`.
    pub fn flops(&self, kernel: &str) -> f64 {
        let pixels = (self.batch * self.h * self.w) as f64;
        let taps = (self.k * self.k) as f64;
        let (i, o) = (self.in_c as f64, self.out_c as f64);
        match kernel {
            "conv_weight_grad" => 2.0 * o * (i * taps + 1.0) * pixels,
            _ => 2.0 * pixels * o * i * taps,
        }
    }
}

/// The input and gate convolutions of `cells` (1-based) of `spec` at `batch`.
pub fn network_layers(spec: &ConvNetSpec, cells: &[usize], batch: usize) -> Vec<ConvLayer> {
    let mut layers = Vec::new();
    for &cell in cells {
        let k = cell - 1;
        let (in_c, h, w) = spec.cell_input(k);
        let (out_c, kernel) = (spec.cells[k].out_channels, spec.cells[k].kernel);
        let (ph, pw) = if spec.pool { (h / 2, w / 2) } else { (h, w) };
        layers.push(ConvLayer { cell, conv: "x", batch, in_c, out_c, h, w, k: kernel });
        layers.push(ConvLayer { cell, conv: "gate", batch, in_c: out_c, out_c, h: ph, w: pw, k: kernel });
    }
    layers
}

/// One measured kernel on one layer.
#[derive(Debug, Clone)]
pub struct ConvTiming {
    pub layer: ConvLayer,
    pub kernel: &'static str,
    /// Batch-and-pixel split of `conv_weight_grad` (1 elsewhere).
    pub split: usize,
    pub ms: f64,
    pub gflop_per_s: f64,
}

pub const CONV_CSV_HEADER: [&str; 17] = [
    "cell",
    "conv",
    "batch",
    "in_c",
    "out_c",
    "h",
    "w",
    "k",
    "kernel",
    "split",
    "gflop",
    "ms",
    "gflop_per_s",
    "tiling",
    "adapter",
    "backend",
    "device_type",
];

impl ConvTiming {
    pub fn csv_record(&self, ctx: &GpuContext, kernels: &KernelTable) -> Vec<String> {
        let l = &self.layer;
        vec![
            l.cell.to_string(),
            l.conv.to_string(),
            l.batch.to_string(),
            l.in_c.to_string(),
            l.out_c.to_string(),
            l.h.to_string(),
            l.w.to_string(),
            l.k.to_string(),
            self.kernel.to_string(),
            self.split.to_string(),
            format!("{:.4}", l.flops(self.kernel) / 1e9),
            format!("{:.3}", self.ms),
            format!("{:.2}", self.gflop_per_s),
            kernels.tiling_of(self.kernel).code(),
            ctx.adapter_name().to_string(),
            ctx.backend_name(),
            ctx.device_type_name().to_string(),
        ]
    }
}

/// Time the three convolution kernels on `layer`: one warm-up dispatch each, then `reps` in one
/// submission.
pub fn time_layer(
    ctx: &Rc<GpuContext>,
    kernels: &KernelTable,
    layer: &ConvLayer,
    reps: usize,
) -> Result<Vec<ConvTiming>, EngineError> {
    let ledger = MemoryLedger::default();
    let n_in = layer.batch * layer.in_c * layer.h * layer.w;
    let n_out = layer.batch * layer.out_c * layer.h * layer.w;
    let n_w = layer.out_c * layer.in_c * layer.k * layer.k;
    let cols = layer.in_c * layer.k * layer.k + 1;
    let tiling = kernels.tiling();
    let split = tiling.weight_grad_split(layer.out_c, cols, layer.batch * layer.h * layer.w);
    // work = [x (also ḡ_x) | y (also ḡ_y) | weight-gradient partials]; params, grad = [W | bias].
    // The values do not matter to the timing: the backward kernels reuse the forward's regions.
    let partials = if split > 1 { split * layer.out_c * cols } else { 0 };
    let work = GpuBuffer::storage(ctx, &ledger, "bench conv work", n_in + n_out + partials.max(1))?;
    let params = GpuBuffer::storage(ctx, &ledger, "bench conv params", n_w + layer.out_c)?;
    let grad = GpuBuffer::storage(ctx, &ledger, "bench conv grad", n_w + layer.out_c)?;
    let opt = GpuBuffer::storage(ctx, &ledger, "bench conv opt", 1)?;
    let mut rng = Rng::new(9);
    let mut fill =
        |b: &GpuBuffer, n: usize| b.write(ctx, 0, &(0..n).map(|_| rng.uniform() as f32 - 0.5).collect::<Vec<_>>());
    fill(&work, n_in + n_out);
    fill(&params, n_w + layer.out_c);
    let base = layer.args();
    let jobs = [
        ("conv_forward", ConvArgs { x: 0, weight: 0, bias: n_w as u32, out: n_in as u32, ..base }, 1),
        ("conv_input_grad", ConvArgs { g: n_in as u32, weight: 0, out: 0, ..base }, 1),
        (
            "conv_weight_grad",
            ConvArgs {
                x: 0,
                g: n_in as u32,
                weight: 0,
                bias: n_w as u32,
                split: split as u32,
                partials: (n_in + n_out) as u32,
                ..base
            },
            split,
        ),
    ];
    let mut arena = ArgArena::default();
    let mut dispatches = Vec::new();
    for (kernel, args, split) in &jobs {
        let (rows, cols) = match *kernel {
            "conv_forward" => (layer.batch * layer.h * layer.w, layer.out_c),
            "conv_input_grad" => (layer.batch * layer.h * layer.w, layer.in_c),
            _ => (layer.out_c, cols),
        };
        dispatches.push(kernels.matmul(kernel, arena.push(args), rows, cols, *split));
    }
    let args_buffer = arena.upload(ctx, &ledger, "bench conv args");
    let mut steps = ArgArena::default();
    steps.push(&StepInfo::default());
    let steps_buffer = steps.upload(ctx, &ledger, "bench conv step");
    let storage = kernels.storage_bind_group(ctx, "bench conv storage", [&params, &grad, &opt, &work]);
    let arguments = kernels.argument_bind_group(ctx, "bench conv arguments", &args_buffer, &steps_buffer);
    let run = |dispatch, n: usize| -> Result<f64, EngineError> {
        let mut encoder =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bench conv") });
        {
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("bench conv"), timestamp_writes: None });
            pass.set_bind_group(0, &storage, &[]);
            for _ in 0..n {
                kernels.record(&mut pass, &arguments, &[dispatch], 0, 1, None);
            }
        }
        let start = Instant::now();
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()?;
        Ok(start.elapsed().as_secs_f64())
    };
    let mut out = Vec::new();
    for ((kernel, _, split), &dispatch) in jobs.iter().zip(&dispatches) {
        run(dispatch, 1)?;
        let seconds = run(dispatch, reps)? / reps as f64;
        out.push(ConvTiming {
            layer: *layer,
            kernel,
            split: *split,
            ms: seconds * 1e3,
            gflop_per_s: layer.flops(kernel) / seconds / 1e9,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dvs_layers_have_the_cells_shapes_and_flops() {
        let layers = network_layers(&ConvNetSpec::dvs_gesture(), &[2, 4], 16);
        let shape = |l: &ConvLayer| (l.cell, l.conv, l.in_c, l.out_c, l.h, l.w, l.k);
        let shapes: Vec<_> = layers.iter().map(shape).collect();
        assert_eq!(
            shapes,
            [
                (2, "x", 64, 128, 64, 64, 7),
                (2, "gate", 128, 128, 32, 32, 7),
                (4, "x", 128, 256, 16, 16, 3),
                (4, "gate", 256, 256, 8, 8, 3)
            ]
        );
        let l = &layers[2];
        assert_eq!(l.flops("conv_forward"), 2.0 * (16 * 16 * 16) as f64 * 256.0 * 128.0 * 9.0);
        assert_eq!(l.flops("conv_input_grad"), l.flops("conv_forward"));
        assert_eq!(l.flops("conv_weight_grad"), 2.0 * 256.0 * (128.0 * 9.0 + 1.0) * (16 * 16 * 16) as f64);
    }
}
