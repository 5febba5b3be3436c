//! Per-kernel GPU time from timestamp queries written around every dispatch inside the compute
//! pass (`TIMESTAMP_QUERY_INSIDE_PASSES`). Costs nothing when off: the engine then records no
//! queries at all. One query set holds `CAPACITY` timestamps; dispatches past it in one
//! submission go unmeasured (counted in `unmeasured`), which keeps long sequences cheap.

use super::context::{GpuContext, GpuError};

const CAPACITY: u32 = 4096;

/// Accumulated time of one kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    pub kernel: String,
    pub dispatches: u64,
    pub total_ms: f64,
    pub mean_us: f64,
    /// Fraction of all measured kernel time.
    pub share: f64,
}

pub struct KernelProfiler {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
    /// Kernel of each measured dispatch of the current submission, in order.
    pending: Vec<usize>,
    totals: Vec<(u64, f64)>,
    pub unmeasured: u64,
}

impl KernelProfiler {
    /// `None` when the device cannot write timestamps inside a compute pass.
    pub fn new(ctx: &GpuContext, kernels: usize) -> Option<Self> {
        if !ctx.device.features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) {
            return None;
        }
        let query_set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kernel timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: CAPACITY,
        });
        let bytes = CAPACITY as u64 * 8;
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel timestamps: resolved"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel timestamps: readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Some(KernelProfiler {
            query_set,
            resolve,
            readback,
            period_ns: ctx.queue.get_timestamp_period() as f64,
            pending: Vec::new(),
            totals: vec![(0, 0.0); kernels],
            unmeasured: 0,
        })
    }

    /// Record `kernel`'s dispatch between two timestamps if the query set has room.
    pub fn measure(
        &mut self,
        pass: &mut wgpu::ComputePass<'_>,
        kernel: usize,
        dispatch: impl FnOnce(&mut wgpu::ComputePass<'_>),
    ) {
        let first = 2 * self.pending.len() as u32;
        if first + 2 > CAPACITY {
            self.unmeasured += 1;
            dispatch(pass);
            return;
        }
        pass.write_timestamp(&self.query_set, first);
        dispatch(pass);
        pass.write_timestamp(&self.query_set, first + 1);
        self.pending.push(kernel);
    }

    /// After the pass: resolve this submission's timestamps into the readback buffer.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        let n = 2 * self.pending.len() as u32;
        if n > 0 {
            encoder.resolve_query_set(&self.query_set, 0..n, &self.resolve, 0);
            encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, n as u64 * 8);
        }
    }

    /// After the submission: add its timings to the totals.
    pub fn collect(&mut self, ctx: &GpuContext) -> Result<(), GpuError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let bytes = self.pending.len() as u64 * 16;
        let slice = self.readback.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        ctx.wait()?;
        rx.recv().map_err(|e| GpuError::Readback(e.to_string()))?.map_err(|e| GpuError::Readback(e.to_string()))?;
        {
            let view = slice.get_mapped_range().map_err(|e| GpuError::Readback(format!("{e:?}")))?;
            let ticks: &[u64] = bytemuck::cast_slice(&view);
            for (i, &kernel) in self.pending.iter().enumerate() {
                // Timestamps can step backwards on some drivers; such a pair counts as zero.
                let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * self.period_ns;
                self.totals[kernel].0 += 1;
                self.totals[kernel].1 += dt;
            }
        }
        self.readback.unmap();
        self.pending.clear();
        Ok(())
    }

    /// The totals so far, busiest kernel first.
    pub fn table(&self, names: &[&str]) -> Vec<KernelTime> {
        let all: f64 = self.totals.iter().map(|t| t.1).sum();
        let mut rows: Vec<KernelTime> = self
            .totals
            .iter()
            .enumerate()
            .filter(|(_, t)| t.0 > 0)
            .map(|(k, &(n, ns))| KernelTime {
                kernel: names[k].to_string(),
                dispatches: n,
                total_ms: ns / 1e6,
                mean_us: ns / 1e3 / n as f64,
                share: if all > 0.0 { ns / all } else { 0.0 },
            })
            .collect();
        rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        rows
    }
}
