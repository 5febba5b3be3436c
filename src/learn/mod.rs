//! Learning rules as schedules of GPU kernels. [`FpttEngine`] runs FPTT with truncation 1: for
//! every time step the forward of each layer and the readout, the loss and its gradient, the
//! one-step backward, the weight gradients and the fused regularised update — all recorded into
//! one compute pass per sequence, with one read of the per-step metrics at its end.

pub mod fptt;
pub mod kernel_args;
pub mod plan;

pub use fptt::{EngineError, FpttEngine, SequenceMetrics};
