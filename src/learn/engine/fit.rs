//! The size check: what an engine for these shapes would allocate, on the GPU and on the host,
//! computed from the shapes alone and compared with the adapter's limits and the host's free
//! memory before anything is allocated — so an oversized network fails in milliseconds with the
//! buffer named, not after minutes of initialisation or an allocation abort.

use super::EngineError;
use crate::gpu::{GpuContext, GpuError};
use crate::learn::plan::WorkPlan;
use crate::learn::planner::is_classification;
use crate::learn::schedule::tape_slots;
use crate::model::{ModelConfig, ParamLayout};
use crate::settings::{LearningRule, TrainingSettings};

/// The limits a network is checked against.
#[derive(Debug, Clone, Copy)]
pub struct SizeLimits {
    /// Bytes of one storage binding (`max_storage_buffer_binding_size`).
    pub max_binding: u64,
    /// Bytes of one buffer (`max_buffer_size`).
    pub max_buffer: u64,
    /// Host bytes free (`MemAvailable`), where known.
    pub host_available: Option<u64>,
}

impl SizeLimits {
    /// The limits of `ctx`'s device and of this host.
    pub fn of(ctx: &GpuContext) -> SizeLimits {
        let l = ctx.device.limits();
        SizeLimits {
            max_binding: l.max_storage_buffer_binding_size,
            max_buffer: l.max_buffer_size,
            host_available: host_available_bytes(),
        }
    }
}

/// `MemAvailable` of `/proc/meminfo` (Linux), in bytes.
pub fn host_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Shader indices are u32: no buffer may hold more f32s than that.
const MAX_ELEMENTS: u128 = u32::MAX as u128;

fn mib(bytes: u128) -> u128 {
    bytes >> 20
}

/// The engine's storage buffers for these shapes (name, f32 count), without the weight-gradient
/// split partials: only GPUs split, only small layers, and the work buffer is checked against the
/// limits again when `Engine::new` allocates it.
pub fn engine_buffers(
    cfg: &ModelConfig,
    settings: &TrainingSettings,
    batch: usize,
    replicas: usize,
) -> Result<Vec<(&'static str, u128)>, EngineError> {
    cfg.validate()?;
    if batch == 0 {
        return Err(EngineError::Shape("batch size must be at least 1".into()));
    }
    // Products of the raw shapes first (u128: nothing here can overflow), so that absurd sizes
    // are refused before the layout and the work plan multiply them in usize.
    let slots = tape_slots(cfg, settings)? as u128;
    let (b, t) = (batch as u128, cfg.steps as u128);
    let total_hidden: u128 = cfg.state_blocks().iter().map(|&n| n as u128).sum();
    let mut biggest: Vec<(String, u128)> = vec![
        ("the inputs of a sequence (steps × batch × inputs)".into(), t * b * cfg.inputs as u128),
        ("the state of one batch (batch × hidden)".into(), (slots + 2) * 3 * b * total_hidden),
    ];
    for k in 0..cfg.layers() {
        let (n, i) = (cfg.hidden[k] as u128, cfg.layer_input(k) as u128);
        biggest.push((format!("layer {}'s maps (hidden × (inputs + hidden))", k + 1), 4 * n * (n + i)));
    }
    if let Some((what, len)) = biggest.iter().find(|(_, len)| *len > MAX_ELEMENTS) {
        return Err(EngineError::Gpu(GpuError::Limit(format!(
            "{what} needs {} MiB, more f32s than a GPU buffer can index (2³²); use a smaller batch or network",
            mib(4 * len)
        ))));
    }
    let layout = ParamLayout::new(cfg);
    let eprop = match settings.rule {
        LearningRule::Eprop(es) => Some(es),
        _ => None,
    };
    let plan = WorkPlan::new(cfg, batch, is_classification(settings.loss), slots as usize, eprop.as_ref(), 0, false);
    let mut buffers = vec![
        ("params", layout.total_len as u128),
        ("grad", layout.total_len as u128),
        ("opt: wbar, lambda, moments", 4 * layout.trainable_len as u128),
        ("work", plan.arena.len() as u128),
    ];
    if matches!(settings.rule, LearningRule::Fptt { .. }) {
        buffers.push(("W while W̄ is evaluated", layout.trainable_len as u128));
    }
    // Replicas: every buffer holds R copies side by side.
    for (_, len) in &mut buffers {
        *len *= replicas.max(1) as u128;
    }
    Ok(buffers)
}

/// Host bytes to initialise and upload the parameters: the tensors themselves, a copy on the way
/// to the GPU, and the f64 matrix the orthogonal initialisation of the largest recurrent map
/// works in.
pub fn host_bytes(cfg: &ModelConfig) -> u128 {
    let params: u128 = ParamLayout::new(cfg).total_len as u128;
    let largest = cfg.hidden.iter().map(|&n| n as u128 * n as u128).max().unwrap_or(0);
    8 * params + 8 * largest
}

/// Refuse shapes that cannot fit, before anything is allocated: every storage buffer against the
/// adapter's binding and buffer limits, and the host memory initialisation needs against what is
/// free. Returns the GPU bytes of the storage buffers (of `replicas` models stepped together).
pub fn check_fits(
    limits: &SizeLimits,
    cfg: &ModelConfig,
    settings: &TrainingSettings,
    batch: usize,
    replicas: usize,
) -> Result<u64, EngineError> {
    let buffers = engine_buffers(cfg, settings, batch, replicas)?;
    let limit = limits.max_binding.min(limits.max_buffer) as u128;
    let mut total = 0u128;
    for (label, len) in &buffers {
        let size = 4 * (*len).max(1);
        if size > limit || *len > MAX_ELEMENTS {
            return Err(EngineError::Gpu(GpuError::Limit(format!(
                "buffer {label} needs {} MiB but the adapter binds at most {} MiB per storage buffer; \
                 use a smaller batch or network",
                mib(size),
                mib(limit)
            ))));
        }
        total += size;
    }
    if let Some(free) = limits.host_available {
        let need = host_bytes(cfg);
        if need > free as u128 {
            return Err(EngineError::Gpu(GpuError::Limit(format!(
                "initialising this network needs {} MiB of host memory but {} MiB are free; \
                 use a smaller network",
                mib(need),
                mib(free as u128)
            ))));
        }
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Optimizer;
    use std::time::Instant;

    fn limits() -> SizeLimits {
        SizeLimits { max_binding: 128 << 20, max_buffer: 256 << 20, host_available: Some(8 << 30) }
    }

    /// `ConvNetSpec::memory` (the model's account, which knows nothing of the engine) agrees with
    /// what the engine plans for conv networks, byte for byte: the DVS network and small ones
    /// with and without pool and dropout, under one-step FPTT, chunks and BPTT.
    #[test]
    fn the_conv_memory_estimate_is_the_engines_plan() {
        use crate::model::conv::{ConvCell, ConvNetSpec, MemoryRule};
        use crate::settings::AuxTargets;
        let small = ConvNetSpec {
            in_channels: 2,
            height: 17,
            width: 15,
            cells: vec![ConvCell { out_channels: 4, kernel: 3 }, ConvCell { out_channels: 6, kernel: 5 }],
            pool: true,
            dropout: 0.1,
            hidden: 20,
            dense_recurrent: false,
            classes: 5,
            tau_m_o: true,
            steps: 8,
        };
        let specs = [
            (ConvNetSpec::dvs_gesture(), 16),
            (small.clone(), 7),
            (ConvNetSpec { pool: false, dropout: 0.0, tau_m_o: false, dense_recurrent: true, ..small }, 3),
        ];
        for (spec, batch) in specs {
            let cfg = ModelConfig::convolutional(spec.clone());
            for (rule, estimate) in [
                (LearningRule::Fptt { chunk: 1 }, MemoryRule::Fptt { chunk: 1 }),
                (LearningRule::Fptt { chunk: 4 }, MemoryRule::Fptt { chunk: 4 }),
                (LearningRule::Bptt, MemoryRule::Bptt),
            ] {
                let settings = TrainingSettings {
                    rule,
                    ..TrainingSettings::classification(Optimizer::Adamax, 1e-3, AuxTargets::Uniform)
                };
                let planned: u128 = engine_buffers(&cfg, &settings, batch, 1).unwrap().iter().map(|(_, n)| 4 * n).sum();
                let estimated = spec.memory(batch, estimate).total as u128;
                assert_eq!(planned, estimated, "{spec:?} {rule:?}: planned against estimated bytes");
            }
        }
    }

    #[test]
    fn oversized_networks_are_refused_in_milliseconds() {
        let settings = TrainingSettings::regression(Optimizer::Adam, 1e-3);
        let started = Instant::now();
        for hidden in [20_000usize, 1_000_000, 1 << 40] {
            let cfg = ModelConfig::classifier(2, hidden, 1, 200);
            let err = check_fits(&limits(), &cfg, &settings, 256, 1).unwrap_err().to_string();
            assert!(err.contains("MiB"), "hidden {hidden}: {err}");
        }
        assert!(started.elapsed().as_millis() < 500, "took {:?}", started.elapsed());
        let ok = check_fits(&limits(), &ModelConfig::classifier(2, 64, 1, 20), &settings, 8, 1).unwrap();
        assert!(ok > 0);
    }

    #[test]
    fn host_memory_is_checked() {
        let settings = TrainingSettings::regression(Optimizer::Adam, 1e-3);
        let small = SizeLimits { host_available: Some(1 << 20), ..limits() };
        let err =
            check_fits(&small, &ModelConfig::classifier(2, 1024, 1, 20), &settings, 1, 1).unwrap_err().to_string();
        assert!(err.contains("host memory"), "{err}");
    }
}
