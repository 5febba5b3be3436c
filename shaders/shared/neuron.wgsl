// LTC neuron math shared by forward and backward kernels (method §1, §2).
// Twins: src/reference (sigmoid, surrogate, SURROGATE_*) and src/model (B0, BETA_ADAPT).

const B0: f32 = 0.1;
const BETA_ADAPT: f32 = 1.8;
// The conv cells' threshold baseline (method §9 (9.7), the DVS script's b_j0). Twin: src/model/conv.rs.
const CONV_B0: f32 = 0.5;

// The surrogate's constants (method §2, (2.4)). Twins: src/reference/mod.rs.
const SURROGATE_GAMMA: f32 = 0.5;
const SURROGATE_WIDTH: f32 = 0.3;
const SURROGATE_HEIGHT: f32 = 0.15;
const SURROGATE_SCALE: f32 = 6.0;

fn sigmoid(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-z));
}

fn gaussian(v: f32, mu: f32, sigma: f32) -> f32 {
    let x = v - mu;
    return exp(-(x * x) / (2.0 * sigma * sigma)) / (sigma * 2.5066282746310002);
}

// The multi-Gaussian surrogate ψ(v) that replaces dH/dv in the backward pass.
fn surrogate(v: f32) -> f32 {
    let w = SURROGATE_WIDTH;
    let h = SURROGATE_HEIGHT;
    return SURROGATE_GAMMA * ((1.0 + h) * gaussian(v, 0.0, w) - h * gaussian(v, w, SURROGATE_SCALE * w)
        - h * gaussian(v, -w, SURROGATE_SCALE * w));
}
