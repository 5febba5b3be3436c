// LTC neuron math shared by forward and backward kernels (spec §1, §2).
// Twins: src/reference (sigmoid, surrogate) and src/model (B0, BETA_ADAPT).

const B0: f32 = 0.1;
const BETA_ADAPT: f32 = 1.8;

fn sigmoid(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-z));
}

fn gaussian(v: f32, mu: f32, sigma: f32) -> f32 {
    let x = v - mu;
    return exp(-(x * x) / (2.0 * sigma * sigma)) / (sigma * 2.5066282746310002);
}

// The multi-Gaussian surrogate ψ(v) that replaces dH/dv in the backward pass.
fn surrogate(v: f32) -> f32 {
    let gamma = 0.5;
    let l = 0.3;
    let h = 0.15;
    let k = 6.0;
    return gamma * ((1.0 + h) * gaussian(v, 0.0, l) - h * gaussian(v, l, k * l) - h * gaussian(v, -l, k * l));
}
