//! Learning rules as schedules of GPU kernels. [`Engine`] (`engine/`) holds the buffers and
//! runs sequences; a [`schedule::Schedule`] says, per rule (one-step FPTT, FPTT in chunks, BPTT,
//! e-prop), which dispatch lists to record and in what order; the `planner` builds those lists
//! piece by piece (layer forward, readout and loss, backward, update, e-prop traces) from the
//! work-arena `plan`; `kernel_args` holds the host twins of the WGSL argument structs. Every
//! sequence is one compute pass with one read of its per-step metrics at the end.

mod engine;
pub mod kernel_args;
pub mod plan;
mod planner;
mod schedule;

pub use engine::{
    check_fits, engine_buffers, host_available_bytes, Divergence, Engine, EngineError, ReplicaHyper, ReplicaOutcome,
    SequenceMetrics, SizeLimits,
};
