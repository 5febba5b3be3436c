//! GPU plumbing: adapter choice and device creation with errors surfaced (never zeroed buffers),
//! storage buffers with byte accounting, the kernel table compiled from the build-time-validated
//! shaders, dispatch recording, per-kernel timestamp profiling, and readback. It knows buffers and kernels, not learning rules.
//!
//! The binding model every kernel shares: group 0 holds up to four flat f32 storage buffers,
//! group 1 two read-only storage windows bound with dynamic offsets — the dispatch's arguments
//! and the time step's `StepInfo` — so that a whole sequence is recorded with no per-step buffer
//! writes.

mod adapter_table;
mod buffers;
mod context;
mod kernels;
mod profile;
mod tiling;

pub use adapter_table::adapter_table;
pub use buffers::{ArgArena, ArgBuffer, GpuBuffer, MemoryLedger, ARG_SLOT};
pub use context::{list_adapters, AdapterReport, DeviceChoice, GpuContext, GpuError};
pub use kernels::{Dispatch, KernelTable};
pub use profile::{KernelProfiler, KernelTime};
pub use tiling::MatmulTiling;

/// The kernels' expanded WGSL, validated by naga in build.rs.
pub mod sources {
    include!(concat!(env!("OUT_DIR"), "/shaders.rs"));
}
