//! fptt: online training of Liquid-Time-Constant spiking networks with Forward Propagation
//! Through Time, on the GPU (wgpu/WGSL), after `docs/method.md`.
//!
//! The crate's map, dependencies pointing one way (top depends on bottom):
//!
//! - [`run`]: experiment files, training loop, metrics CSV, checkpoints on disk (sees everything).
//! - [`plot`]: SVG/PNG figures of the CSVs (and run directories); reads files only, no GPU types.
//! - [`bench`]: training throughput over a grid of shapes, with the step's FLOP count.
//! - [`learn`]: learning rules as schedules of GPU kernels (FPTT), optimizer and loss settings.
//! - [`gpu`]: adapters, buffers with byte accounting, the kernel table, recording, readback.
//!   Knows buffers and kernels, not learning rules.
//! - [`reference`]: the CPU oracle in plain f64 — docs/method.md line by line. No GPU types.
//! - [`data`]: the adding problem, IDX files, sequence views of images. No GPU types.
//! - [`model`]: network configuration, parameter layout (checkpoint names and shapes, method §8), initialisation.
//! - [`checkpoint`]: safetensors files of named tensors.
//! - [`tensor`], [`rng`]: named host tensors and the run's reproducible random numbers.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod files;
pub mod gpu;
pub mod learn;
pub mod model;
pub mod plot;
pub mod reference;
pub mod rng;
pub mod run;
pub mod settings;
pub mod tensor;
