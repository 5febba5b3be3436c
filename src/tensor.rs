//! Named host tensors: the common currency between the CPU reference, the GPU engine and
//! checkpoints. Data is always f32 (the checkpoint dtype); shapes are row-major like PyTorch.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor data length does not match its shape {shape:?}"
        );
        Tensor { shape, data }
    }

    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor { shape, data: vec![0.0; n] }
    }

    pub fn scalar(value: f32) -> Self {
        Tensor { shape: vec![], data: vec![value] }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Largest absolute element (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |a, &x| a.max(x.abs()))
    }

    /// Largest absolute element-wise difference; panics on a shape mismatch.
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        assert_eq!(self.shape, other.shape, "shape mismatch");
        self.data.iter().zip(&other.data).fold(0.0f32, |a, (&x, &y)| a.max((x - y).abs()))
    }
}

/// Tensors by name, sorted so that iteration (and therefore checkpoint files) is deterministic.
pub type TensorMap = BTreeMap<String, Tensor>;
