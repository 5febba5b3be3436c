//! Storage buffers with byte accounting, the arena of dispatch arguments, and readback.

use super::context::{GpuContext, GpuError};
use std::cell::Cell;
use std::rc::Rc;

/// Counts the bytes of every buffer the engine holds; `gpu_bytes` in the metrics is this figure.
#[derive(Debug, Clone, Default)]
pub struct MemoryLedger {
    bytes: Rc<Cell<u64>>,
}

impl MemoryLedger {
    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    fn add(&self, n: u64) {
        self.bytes.set(self.bytes.get() + n);
    }

    fn sub(&self, n: u64) {
        self.bytes.set(self.bytes.get() - n);
    }
}

/// A flat f32 storage buffer, counted in its ledger for as long as it lives.
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    pub len: usize,
    ledger: MemoryLedger,
}

impl GpuBuffer {
    /// A storage buffer of `len` f32s, zero-initialised by wgpu.
    pub fn storage(ctx: &GpuContext, ledger: &MemoryLedger, label: &str, len: usize) -> Result<Self, GpuError> {
        let size = (len.max(1) * 4) as u64;
        let limit = ctx.device.limits().max_storage_buffer_binding_size;
        if size > limit {
            return Err(GpuError::Limit(format!(
                "buffer {label} needs {} MiB but the adapter binds at most {} MiB per storage buffer; \
                 use a smaller batch or network",
                size >> 20,
                limit >> 20
            )));
        }
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ledger.add(size);
        Ok(GpuBuffer { buffer, len, ledger: ledger.clone() })
    }

    pub fn write(&self, ctx: &GpuContext, offset: usize, data: &[f32]) {
        assert!(offset + data.len() <= self.len, "write past the end of a GPU buffer");
        if !data.is_empty() {
            ctx.queue.write_buffer(&self.buffer, (offset * 4) as u64, bytemuck::cast_slice(data));
        }
    }

    /// Read `len` f32s from `offset`: waits for the queue, then reports any GPU error raised by
    /// the work before it, so that an error never comes back as a buffer of zeros.
    pub fn read(&self, ctx: &GpuContext, offset: usize, len: usize) -> Result<Vec<f32>, GpuError> {
        Ok(self.read_ranges(ctx, &[(offset, len)])?.pop().unwrap_or_default())
    }

    /// Read several `(offset, len)` ranges with one submission and one wait (the metrics of every
    /// replica, strided through the buffer).
    pub fn read_ranges(&self, ctx: &GpuContext, ranges: &[(usize, usize)]) -> Result<Vec<Vec<f32>>, GpuError> {
        let total: usize = ranges.iter().map(|&(_, len)| len).sum();
        for &(offset, len) in ranges {
            assert!(offset + len <= self.len, "read past the end of a GPU buffer");
        }
        if total == 0 {
            return Ok(ranges.iter().map(|_| Vec::new()).collect());
        }
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback staging"),
            size: (total * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        let mut at = 0u64;
        for &(offset, len) in ranges {
            if len > 0 {
                encoder.copy_buffer_to_buffer(&self.buffer, (offset * 4) as u64, &staging, at, (len * 4) as u64);
            }
            at += (len * 4) as u64;
        }
        ctx.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        ctx.wait()?;
        rx.recv().map_err(|e| GpuError::Readback(e.to_string()))?.map_err(|e| GpuError::Readback(e.to_string()))?;
        let view = slice.get_mapped_range().map_err(|e| GpuError::Readback(format!("{e:?}")))?;
        let all = bytemuck::cast_slice::<u8, f32>(&view);
        let mut out = Vec::with_capacity(ranges.len());
        let mut at = 0;
        for &(_, len) in ranges {
            out.push(all[at..at + len].to_vec());
            at += len;
        }
        drop(view);
        staging.unmap();
        Ok(out)
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        self.ledger.sub(self.buffer.size());
    }
}

/// Dynamic buffer offsets must be multiples of this (the WebGPU minimum, which every adapter
/// accepts); every argument struct fits in one slot.
pub const ARG_SLOT: usize = 256;

/// Collects argument structs at slot-aligned offsets, then uploads them as one read-only storage
/// buffer bound with dynamic offsets.
#[derive(Default)]
pub struct ArgArena {
    bytes: Vec<u8>,
}

impl ArgArena {
    /// Append `value`; returns its dynamic offset.
    pub fn push<T: bytemuck::Pod>(&mut self, value: &T) -> u32 {
        let raw = bytemuck::bytes_of(value);
        assert!(raw.len() <= ARG_SLOT, "argument struct larger than a uniform slot");
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(raw);
        self.bytes.resize(offset + ARG_SLOT, 0);
        offset as u32
    }

    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A buffer holding the arena (at least one slot).
    pub fn upload(&self, ctx: &GpuContext, ledger: &MemoryLedger, label: &str) -> ArgBuffer {
        let size = self.bytes.len().max(ARG_SLOT) as u64;
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !self.bytes.is_empty() {
            ctx.queue.write_buffer(&buffer, 0, &self.bytes);
        }
        ledger.add(size);
        ArgBuffer { buffer, ledger: ledger.clone() }
    }
}

/// A buffer of argument slots made by [`ArgArena::upload`], counted in the ledger.
pub struct ArgBuffer {
    pub buffer: wgpu::Buffer,
    ledger: MemoryLedger,
}

impl Drop for ArgBuffer {
    fn drop(&mut self) {
        self.ledger.sub(self.buffer.size());
    }
}
