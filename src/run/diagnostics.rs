//! What FPTT's two weight sets look like at an evaluation: per layer, the norms of the current
//! weights `W`, the running mean `W̄`, their distance `‖W − W̄‖` and the multiplier `‖λ‖`
//! (docs/method.md §5). The epoch-end reset replaces `W` by `W̄`; when `‖W − W̄‖` is large
//! against `‖W‖` the reset swaps in a different network, and these figures show it happening.
//! Computed on the host in f64 from the engine's state, once per evaluation.

use crate::model::LayerNames;
use crate::tensor::TensorMap;

/// One layer's norms (every trained tensor of the layer taken together).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorms {
    /// `hidden1`, `hidden2`, …, `readout`.
    pub layer: String,
    pub w: f64,
    pub wbar: f64,
    pub w_minus_wbar: f64,
    pub lambda: f64,
}

impl LayerNorms {
    /// The whole network as one vector.
    pub fn total(layers: &[LayerNorms]) -> LayerNorms {
        let sum = |f: fn(&LayerNorms) -> f64| layers.iter().map(|l| f(l).powi(2)).sum::<f64>().sqrt();
        LayerNorms {
            layer: "all".into(),
            w: sum(|l| l.w),
            wbar: sum(|l| l.wbar),
            w_minus_wbar: sum(|l| l.w_minus_wbar),
            lambda: sum(|l| l.lambda),
        }
    }
}

/// The tensor-name stems of each layer: the hidden layers bottom first, then the readout.
fn layer_stems(hidden_layers: usize) -> Vec<(String, Vec<String>)> {
    let mut layers: Vec<(String, Vec<String>)> = (0..hidden_layers)
        .map(|k| {
            let n = LayerNames::hidden(k, hidden_layers);
            (format!("hidden{}", k + 1), vec![n.x, n.r, n.tau_m, n.tau_adp, n.slope_m, n.slope_a])
        })
        .collect();
    let (x, tau_m, _bn, slope) = LayerNames::readout(hidden_layers);
    layers.push(("readout".into(), vec![x, tau_m, slope]));
    layers
}

fn belongs(name: &str, stem: &str) -> bool {
    name == stem || name.strip_prefix(stem).is_some_and(|rest| rest.starts_with('.'))
}

/// Per layer, from an engine state (`NAME`, `NAME.wbar`, `NAME.lambda` for every trained
/// tensor). Tensors without a `.wbar` (frozen ones, running statistics, `q`) are not counted; a
/// state without any (BPTT, e-prop) gives `None`.
pub fn layer_norms(state: &TensorMap, hidden_layers: usize) -> Option<Vec<LayerNorms>> {
    let stems = layer_stems(hidden_layers);
    let mut sums = vec![[0.0f64; 4]; stems.len()];
    let mut any = false;
    for (name, w) in state {
        let (Some(wbar), Some(lambda)) = (state.get(&format!("{name}.wbar")), state.get(&format!("{name}.lambda")))
        else {
            continue;
        };
        let Some(layer) = stems.iter().position(|(_, s)| s.iter().any(|stem| belongs(name, stem))) else {
            continue;
        };
        any = true;
        let s = &mut sums[layer];
        for ((&w, &m), &l) in w.data.iter().zip(&wbar.data).zip(&lambda.data) {
            let (w, m, l) = (w as f64, m as f64, l as f64);
            s[0] += w * w;
            s[1] += m * m;
            s[2] += (w - m) * (w - m);
            s[3] += l * l;
        }
    }
    any.then(|| {
        stems
            .into_iter()
            .zip(sums)
            .map(|((layer, _), s)| LayerNorms {
                layer,
                w: s[0].sqrt(),
                wbar: s[1].sqrt(),
                w_minus_wbar: s[2].sqrt(),
                lambda: s[3].sqrt(),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    fn put(map: &mut TensorMap, name: &str, w: &[f32], wbar: &[f32], lambda: &[f32]) {
        let t = |d: &[f32]| Tensor::new(vec![d.len()], d.to_vec());
        map.insert(name.into(), t(w));
        map.insert(format!("{name}.wbar"), t(wbar));
        map.insert(format!("{name}.lambda"), t(lambda));
    }

    #[test]
    fn norms_are_grouped_by_layer_and_frozen_tensors_are_left_out() {
        let mut state = TensorMap::new();
        put(&mut state, "layer1_x.weight", &[3.0, 0.0], &[0.0, 0.0], &[1.0, 0.0]);
        put(&mut state, "layer1_x.bias", &[4.0], &[0.0], &[0.0]);
        put(&mut state, "act1.alpha", &[0.0], &[2.0], &[0.0]);
        put(&mut state, "layer3_x.weight", &[1.0, 1.0], &[1.0, 1.0], &[0.0, 2.0]);
        state.insert("bn1a.running_mean_0".into(), Tensor::new(vec![1], vec![100.0]));
        // A name that only shares the stem's first characters is not the layer's.
        state.insert("layer1_xyz".into(), Tensor::new(vec![1], vec![100.0]));
        let n = layer_norms(&state, 1).unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!((n[0].layer.as_str(), n[1].layer.as_str()), ("hidden1", "readout"));
        assert_eq!((n[0].w, n[0].wbar, n[0].w_minus_wbar, n[0].lambda), (5.0, 2.0, (9.0f64 + 16.0 + 4.0).sqrt(), 1.0));
        assert_eq!((n[1].w, n[1].w_minus_wbar, n[1].lambda), (2f64.sqrt(), 0.0, 2.0));
        let all = LayerNorms::total(&n);
        assert!((all.w - 27f64.sqrt()).abs() < 1e-12);
        assert!((all.lambda - 5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn two_layers_and_no_running_mean() {
        let mut state = TensorMap::new();
        put(&mut state, "layer2_r.weight", &[1.0], &[0.0], &[0.0]);
        put(&mut state, "readout_x.weight", &[0.0], &[0.0], &[3.0]);
        let n = layer_norms(&state, 2).unwrap();
        assert_eq!(n.iter().map(|l| l.layer.as_str()).collect::<Vec<_>>(), ["hidden1", "hidden2", "readout"]);
        assert_eq!((n[0].w, n[1].w, n[2].lambda), (0.0, 1.0, 3.0));
        let mut plain = TensorMap::new();
        plain.insert("layer1_x.weight".into(), Tensor::new(vec![1], vec![1.0]));
        assert_eq!(layer_norms(&plain, 1), None);
    }
}
