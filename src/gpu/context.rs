//! Adapters and the device: listing, choosing (`auto|gpu|cpu|N`), requesting the adapter's own
//! limits, and turning validation errors, out-of-memory and device loss into `GpuError`s.

use std::sync::{Arc, Mutex};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found{0}.\nOn a machine without a GPU, install a software Vulkan driver: \
         `apt-get install -y mesa-vulkan-drivers libvulkan1` (Debian/Ubuntu), then run `fptt devices`."
    )]
    NoAdapter(String),
    #[error("device request failed on {adapter}: {source}")]
    RequestDevice { adapter: String, source: wgpu::RequestDeviceError },
    #[error("GPU error: {0}")]
    Validation(String),
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    #[error("GPU readback failed: {0}")]
    Readback(String),
    #[error("{0}")]
    Limit(String),
}

/// Which adapter to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// Discrete GPU, then integrated, then a software adapter, then anything else.
    Auto,
    /// A hardware GPU (discrete or integrated) only.
    Gpu,
    /// A software adapter (lavapipe/llvmpipe) only.
    Cpu,
    /// The N-th adapter of `fptt devices`.
    Index(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "gpu" => Ok(DeviceChoice::Gpu),
            "cpu" => Ok(DeviceChoice::Cpu),
            _ => s
                .parse::<usize>()
                .map(DeviceChoice::Index)
                .map_err(|_| format!("expected auto, gpu, cpu or an adapter index, found {s:?}")),
        }
    }
}

/// What `fptt devices` prints about one adapter.
#[derive(Debug, Clone)]
pub struct AdapterReport {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_binding_mib: u64,
    pub max_buffer_mib: u64,
    pub max_workgroup_storage_kib: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_storage_buffers_per_stage: u32,
    pub timestamps: bool,
    pub timestamps_in_passes: bool,
    pub subgroups: bool,
    pub f16: bool,
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

pub fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

fn report(index: usize, adapter: &wgpu::Adapter) -> AdapterReport {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    AdapterReport {
        index,
        name: info.name.clone(),
        backend: info.backend.to_string(),
        device_type: device_type_name(info.device_type).to_string(),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
        max_storage_binding_mib: limits.max_storage_buffer_binding_size >> 20,
        max_buffer_mib: limits.max_buffer_size >> 20,
        max_workgroup_storage_kib: limits.max_compute_workgroup_storage_size >> 10,
        max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
        timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        timestamps_in_passes: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        f16: features.contains(wgpu::Features::SHADER_F16),
    }
}

/// Every adapter wgpu can see, in `--device N` order.
pub fn list_adapters() -> Vec<AdapterReport> {
    adapters(&instance()).iter().enumerate().map(|(i, a)| report(i, a)).collect()
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::Cpu => 2,
        wgpu::DeviceType::VirtualGpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// Errors raised by wgpu outside any scope, kept until the engine checks.
#[derive(Default)]
struct ErrorSink {
    first: Option<GpuError>,
}

/// The chosen adapter, its device and queue, and the error sink every submission is checked
/// against.
pub struct GpuContext {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    errors: Arc<Mutex<ErrorSink>>,
}

impl GpuContext {
    pub fn new(choice: DeviceChoice) -> Result<Self, GpuError> {
        let instance = instance();
        let all = adapters(&instance);
        let adapter = match choice {
            DeviceChoice::Index(i) => all
                .into_iter()
                .nth(i)
                .ok_or_else(|| GpuError::NoAdapter(format!(" at index {i} (see `fptt devices` for the list)")))?,
            DeviceChoice::Auto | DeviceChoice::Gpu | DeviceChoice::Cpu => {
                let mut candidates: Vec<_> = all
                    .into_iter()
                    .filter(|a| {
                        let t = a.get_info().device_type;
                        match choice {
                            DeviceChoice::Gpu => {
                                matches!(t, wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu)
                            }
                            DeviceChoice::Cpu => t == wgpu::DeviceType::Cpu,
                            _ => true,
                        }
                    })
                    .collect();
                // Stable: among equals, prefer Vulkan (wgpu lists it first on Linux).
                candidates.sort_by_key(|a| rank(a.get_info().device_type));
                let what = match choice {
                    DeviceChoice::Gpu => " of type gpu (discrete or integrated)",
                    DeviceChoice::Cpu => " of type cpu (software)",
                    _ => "",
                };
                candidates.into_iter().next().ok_or_else(|| GpuError::NoAdapter(what.to_string()))?
            }
        };
        Self::from_adapter(adapter)
    }

    fn from_adapter(adapter: wgpu::Adapter) -> Result<Self, GpuError> {
        let info = adapter.get_info();
        // The adapter's own limits: wgpu's defaults would cap buffers at 256 MiB even on big GPUs.
        let required_limits = adapter.limits();
        // SUBGROUP: the reductions' subgroup path (`KernelTable::subgroup_reductions`).
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SUBGROUP;
        let required_features = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("fptt device"),
            required_features,
            required_limits,
            ..Default::default()
        }))
        .map_err(|source| GpuError::RequestDevice { adapter: info.name.clone(), source })?;
        let errors = Arc::new(Mutex::new(ErrorSink::default()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let err = match &e {
                wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(e.to_string()),
                _ => GpuError::Validation(e.to_string()),
            };
            let mut s = sink.lock().unwrap();
            if s.first.is_none() {
                s.first = Some(err);
            }
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            let mut s = sink.lock().unwrap();
            if s.first.is_none() && reason != wgpu::DeviceLostReason::Destroyed {
                s.first = Some(GpuError::DeviceLost(format!("{reason:?}: {message}")));
            }
        });
        Ok(GpuContext { adapter, device, queue, info, errors })
    }

    /// The first GPU error since the device was made, if any. The engine calls this after every
    /// submission it waits on, so an error ends the run instead of leaving zeros behind.
    pub fn check(&self) -> Result<(), GpuError> {
        let mut s = self.errors.lock().unwrap();
        match s.first.take() {
            Some(e) => {
                // Keep failing: a device that raised an error is not trusted again.
                s.first = Some(match &e {
                    GpuError::OutOfMemory(m) => GpuError::OutOfMemory(m.clone()),
                    GpuError::DeviceLost(m) => GpuError::DeviceLost(m.clone()),
                    other => GpuError::Validation(other.to_string()),
                });
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Wait for all submitted work, then report any error it raised.
    pub fn wait(&self) -> Result<(), GpuError> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::DeviceLost(e.to_string()))?;
        self.check()
    }

    pub fn adapter_name(&self) -> &str {
        &self.info.name
    }

    pub fn backend_name(&self) -> String {
        self.info.backend.to_string()
    }

    pub fn device_type_name(&self) -> &'static str {
        device_type_name(self.info.device_type)
    }

    /// Whether kernels can be timed one by one (timestamp queries inside compute passes).
    pub fn timestamps_inside_passes(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    }

    /// Whether the device has subgroup operations (`wgpu::Features::SUBGROUP`).
    pub fn has_subgroups(&self) -> bool {
        self.device.features().contains(wgpu::Features::SUBGROUP)
    }

    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_become_gpu_errors_not_silence() {
        let ctx = GpuContext::new(DeviceChoice::Auto).expect("an adapter");
        assert!(ctx.check().is_ok());
        // MAP_READ may only pair with COPY_DST: wgpu raises a validation error, which the
        // context captures instead of panicking or carrying on.
        let _bad = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("deliberately invalid"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let err = ctx.wait().expect_err("the invalid buffer must surface as an error");
        assert!(matches!(err, GpuError::Validation(_)), "{err}");
        assert!(err.to_string().contains("deliberately invalid"), "the message names the object: {err}");
        // And it keeps failing: a device that raised an error is not trusted again.
        assert!(ctx.check().is_err());
    }

    #[test]
    fn device_choice_parses_and_rejects_nonsense() {
        assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        assert_eq!("cpu".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
        assert_eq!("2".parse::<DeviceChoice>(), Ok(DeviceChoice::Index(2)));
        assert!("fast".parse::<DeviceChoice>().unwrap_err().contains("auto, gpu, cpu"));
    }
}
