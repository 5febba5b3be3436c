//! The kernel table (one compute pipeline per shader, all sharing one pipeline layout) and the
//! recording of dispatch lists into a compute pass.

use super::buffers::{ArgBuffer, GpuBuffer, ARG_SLOT};
use super::context::GpuContext;
use super::profile::KernelProfiler;
use super::sources::{KERNEL_SOURCES, KERNEL_SOURCES_SUBGROUP};
use super::tiling::MatmulTiling;
use std::num::NonZeroU64;

/// Invocations per workgroup of every element-wise kernel (`WORKGROUP` in shaders/shared/bindings.wgsl).
pub const WORKGROUP: u32 = 64;
const MAX_GROUPS_X: u32 = 65535;

/// Every kernel, compiled once per device.
pub struct KernelTable {
    names: Vec<&'static str>,
    pipelines: Vec<wgpu::ComputePipeline>,
    storage_layout: wgpu::BindGroupLayout,
    argument_layout: wgpu::BindGroupLayout,
    tiling: MatmulTiling,
    /// Per kernel (same order as `names`), the tile shape it was built with: `tiling`, except
    /// the convolutions on CPU adapters.
    tilings: Vec<MatmulTiling>,
    subgroup_reductions: bool,
}

/// Kernels built on the matrix-product template (`#import matmul`): they take the tile shape as
/// pipeline-override constants and are launched with [`KernelTable::matmul`].
fn uses_template(source: &str) -> bool {
    source.contains("override MM_TK")
}

/// Set `FPTT_CHECKED_SHADERS=1` to compile every kernel with wgpu's runtime bounds checks.
fn checked_shaders() -> bool {
    std::env::var("FPTT_CHECKED_SHADERS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Set `FPTT_NO_SUBGROUPS=1` to build the reductions' workgroup-memory path even where the device
/// has subgroup operations (tests run both paths on one adapter).
fn subgroups_disabled() -> bool {
    std::env::var("FPTT_NO_SUBGROUPS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// One recorded kernel launch: which kernel, the dynamic offset of its arguments, and how many
/// workgroups (folded into a 2-D grid beyond 65535).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    pub kernel: usize,
    pub args: u32,
    pub workgroups: u32,
}

impl KernelTable {
    /// The table with the adapter's tile shape ([`MatmulTiling::for_adapter`]).
    pub fn new(ctx: &GpuContext) -> Self {
        let limits = ctx.device.limits();
        let tiling = MatmulTiling::for_adapter(&ctx.info, &limits);
        // CPU adapters: the convolutions of networks small enough to train there have 8 to 32
        // channels, in the output columns of the forward and input gradient, where a narrow
        // tile wastes fewer lanes. (The weight gradient has them in its rows; 8-row tiles were
        // no faster there, within the noise of a 2-core machine.)
        let own: Vec<(&str, MatmulTiling)> = match MatmulTiling::overridden() {
            None if ctx.info.device_type == wgpu::DeviceType::Cpu => vec![
                ("conv_forward", MatmulTiling::CPU_CONV.fit(&limits)),
                ("conv_input_grad", MatmulTiling::CPU_CONV.fit(&limits)),
            ],
            _ => Vec::new(),
        };
        Self::build(ctx, tiling, &own)
    }

    /// The table with a given tile shape for every kernel (tests run the template's GPU shape on
    /// lavapipe too).
    pub fn with_tiling(ctx: &GpuContext, tiling: MatmulTiling) -> Self {
        Self::build(ctx, tiling, &[])
    }

    /// Every kernel with `tiling`, but those named in `own` with theirs.
    fn build(ctx: &GpuContext, tiling: MatmulTiling, own: &[(&str, MatmulTiling)]) -> Self {
        let storage_entry = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: false },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        // Read-only storage, not uniforms: lavapipe specialises a shader on the uniform values that
        // steer its control flow and keeps one variant per pipeline, so consecutive dispatches of
        // one kernel with different sizes recompiled it every time (13 ms per batch-norm dispatch).
        let argument_entry = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: true },
                has_dynamic_offset: true,
                min_binding_size: NonZeroU64::new(ARG_SLOT as u64),
            },
            count: None,
        };
        let device = &ctx.device;
        let storage_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("storage: params, grad, opt, work"),
            entries: &[storage_entry(0), storage_entry(1), storage_entry(2), storage_entry(3)],
        });
        let argument_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("per dispatch: args, step info"),
            entries: &[argument_entry(0), argument_entry(1)],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("fptt kernels"),
            bind_group_layouts: &[Some(&storage_layout), Some(&argument_layout)],
            immediate_size: 0,
        });
        let checked = checked_shaders();
        // The reductions (shared/reduce.wgsl) with subgroupAdd where the device has it: the
        // kernels that import them have a second, subgroup source (build.rs).
        let subgroup_reductions = ctx.has_subgroups() && !subgroups_disabled();
        let mut names = Vec::new();
        let mut pipelines = Vec::new();
        let mut tilings = Vec::new();
        for (name, plain) in KERNEL_SOURCES {
            let kernel_tiling = own.iter().find(|(n, _)| n == name).map_or(tiling, |(_, t)| *t);
            let constants = kernel_tiling.constants();
            let variant = KERNEL_SOURCES_SUBGROUP.iter().find(|(n, _)| n == name).map(|(_, s)| s);
            let source = match variant {
                Some(s) if subgroup_reductions => s,
                _ => plain,
            };
            let template = uses_template(source);
            let descriptor =
                wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl((*source).into()) };
            // The template's kernels run without wgpu's runtime bounds checks and loop bounding:
            // they index only through clamped rows and columns and the K range their arguments
            // give, and the GPU-vs-CPU tests (tests/gpu_vs_reference.rs, the template's own test
            // on odd shapes with NaN-poisoned outputs) prove that indexing for every launch shape.
            // Without the checks the drivers unroll the register block's loops and keep it in
            // registers. FPTT_CHECKED_SHADERS=1 turns them back on for debugging.
            let module = if template && !checked {
                // SAFETY: see above; every index these kernels form stays inside its buffer for
                // the arguments the engine plans, which the tests exercise.
                unsafe { device.create_shader_module_trusted(descriptor, wgpu::ShaderRuntimeChecks::unchecked()) }
            } else {
                device.create_shader_module(descriptor)
            };
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: Some(&layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: if template { &constants } else { &[] },
                    ..Default::default()
                },
                cache: None,
            });
            names.push(*name);
            pipelines.push(pipeline);
            tilings.push(kernel_tiling);
        }
        KernelTable { names, pipelines, storage_layout, argument_layout, tiling, tilings, subgroup_reductions }
    }

    /// Whether the reductions run on subgroup operations (the device has
    /// `wgpu::Features::SUBGROUP` and `FPTT_NO_SUBGROUPS` is not set) rather than the
    /// workgroup-memory tree.
    pub fn subgroup_reductions(&self) -> bool {
        self.subgroup_reductions
    }

    /// The matrix-product template's tile shape on this device (what a run should record).
    pub fn tiling(&self) -> MatmulTiling {
        self.tiling
    }

    /// A launch of a template kernel over an `rows × cols` output, `split` copies of the grid
    /// (the batch split of `weight_grad`; 1 elsewhere).
    pub fn matmul(&self, kernel: &str, args: u32, rows: usize, cols: usize, split: usize) -> Dispatch {
        let id = self.id(kernel);
        Dispatch { kernel: id, args, workgroups: self.tilings[id].groups(rows, cols, split) }
    }

    /// The tile shape `kernel` was built with (the table's, but for the convolutions on CPU
    /// adapters).
    pub fn tiling_of(&self, kernel: &str) -> MatmulTiling {
        self.tilings[self.id(kernel)]
    }

    /// The index of a kernel by its file stem; a missing name is a programming error.
    pub fn id(&self, name: &str) -> usize {
        self.names.iter().position(|n| *n == name).unwrap_or_else(|| panic!("no kernel named {name}"))
    }

    pub fn name(&self, id: usize) -> &'static str {
        self.names[id]
    }

    /// A launch of `kernel` over `elements` invocations (64 per workgroup).
    pub fn over(&self, kernel: &str, args: u32, elements: usize) -> Dispatch {
        Dispatch { kernel: self.id(kernel), args, workgroups: (elements as u32).div_ceil(WORKGROUP).max(1) }
    }

    /// A launch of `kernel` with an exact number of workgroups (reductions).
    pub fn groups(&self, kernel: &str, args: u32, workgroups: u32) -> Dispatch {
        Dispatch { kernel: self.id(kernel), args, workgroups }
    }

    pub fn storage_bind_group(&self, ctx: &GpuContext, label: &str, buffers: [&GpuBuffer; 4]) -> wgpu::BindGroup {
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &self.storage_layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: buffers[0].buffer.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: buffers[1].buffer.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: buffers[2].buffer.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: buffers[3].buffer.as_entire_binding() },
            ],
        })
    }

    pub fn argument_bind_group(
        &self,
        ctx: &GpuContext,
        label: &str,
        args: &ArgBuffer,
        steps: &ArgBuffer,
    ) -> wgpu::BindGroup {
        fn window(b: &ArgBuffer) -> wgpu::BindingResource<'_> {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &b.buffer,
                offset: 0,
                size: NonZeroU64::new(ARG_SLOT as u64),
            })
        }
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &self.argument_layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: window(args) },
                wgpu::BindGroupEntry { binding: 1, resource: window(steps) },
            ],
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Record `dispatches` for one time step whose `StepInfo` sits at `step_offset`, each between
    /// two timestamps when a profiler is given; each launch covers `replicas` copies of its grid
    /// (the z dimension: the replica index, `enter_replica` in shaders/shared/bindings.wgsl).
    pub fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        arguments: &wgpu::BindGroup,
        dispatches: &[Dispatch],
        step_offset: u32,
        replicas: u32,
        mut profiler: Option<&mut KernelProfiler>,
    ) {
        for d in dispatches {
            pass.set_pipeline(&self.pipelines[d.kernel]);
            pass.set_bind_group(1, arguments, &[d.args, step_offset]);
            let x = d.workgroups.min(MAX_GROUPS_X);
            let y = d.workgroups.div_ceil(x);
            match profiler.as_deref_mut() {
                Some(p) => p.measure(pass, d.kernel, |pass| pass.dispatch_workgroups(x, y, replicas)),
                None => pass.dispatch_workgroups(x, y, replicas),
            }
        }
    }
}
