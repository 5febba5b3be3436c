//! The network description and its parameter layout: which tensors exist (with the method's
//! checkpoint names and shapes), where each one lives in the flat parameter buffer, and how it is
//! initialised. Knows nothing of GPUs or learning rules.

mod config;
pub mod conv;
mod init;
mod layout;

pub use config::{ModelConfig, ModelError, NeuronKind, ThresholdMode};
pub use conv::{ConvCell, ConvNetSpec};
pub use init::{init_params, TAU_A_RANGE, TAU_M_RANGE};
pub use layout::{LayerNames, ParamLayout, StatLayout, TensorSlot};

/// Method §1 constants.
pub const B0: f32 = 0.1;
pub const BETA_ADAPT: f32 = 1.8;
pub const BN_EPS: f32 = 1e-5;
pub const BN_MOMENTUM: f32 = 0.1;
