//! The tile shape of the matrix-product template (`shaders/shared/matmul.wgsl`), chosen once per
//! adapter: the one place that knows it. The kernel table sets it as pipeline-override constants
//! of every kernel that imports the template, and sizes their launches with [`MatmulTiling::groups`].

use std::fmt;

/// Register rows per invocation at most (`MM_RM_MAX` in shaders/shared/matmul.wgsl).
pub const MAX_REGISTER_ROWS: u32 = 8;

/// One workgroup computes a `block_rows() × block_cols()` block of the output with
/// `wg_rows × wg_cols` invocations, each holding `reg_rows × 4` outputs in registers; with
/// `k_slice > 0` it stages K-slices of both operands in workgroup memory, with 0 every invocation
/// reads its own operands (no workgroup memory, no barriers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulTiling {
    pub wg_rows: u32,
    pub wg_cols: u32,
    pub reg_rows: u32,
    pub k_slice: u32,
}

/// Register columns per invocation (one vec4).
pub const REGISTER_COLS: u32 = 4;

impl MatmulTiling {
    /// Discrete and integrated GPUs: 64 × 64 outputs from 256 invocations with 4 × 4 registers,
    /// K-slices of 16 (8 KiB of workgroup memory): every value staged feeds 64 multiply-adds, and a
    /// 64-row block still gives B = 64..512 batches several workgroups per SM.
    pub const GPU: MatmulTiling = MatmulTiling { wg_rows: 16, wg_cols: 16, reg_rows: 4, k_slice: 16 };

    /// CPU adapters (lavapipe): no workgroup memory and no barriers (a barrier costs a coroutine
    /// switch per invocation there, and workgroup memory is ordinary memory), 8 × 4 register blocks
    /// (lavapipe rewards register reuse most) and 64 invocations per workgroup.
    pub const CPU: MatmulTiling = MatmulTiling { wg_rows: 8, wg_cols: 8, reg_rows: 8, k_slice: 0 };

    /// CPU adapters, the convolutions whose output columns are channels (`conv_forward`,
    /// `conv_input_grad`): 128 × 8 blocks, so that the 8 to 32 channels of a network small enough
    /// for a CPU fill the lanes (the 64 × 32 block of [`Self::CPU`] left three quarters idle on 8
    /// channels; the nmnist-synth-quick network's forward convolutions ran 1.7× faster).
    pub const CPU_CONV: MatmulTiling = MatmulTiling { wg_rows: 32, wg_cols: 2, reg_rows: 4, k_slice: 0 };

    /// The shape `FPTT_MATMUL_TILING=ROWSxCOLSxREGxK` (e.g. `16x16x4x16`) asks for every kernel.
    pub fn overridden() -> Option<MatmulTiling> {
        std::env::var("FPTT_MATMUL_TILING").ok().and_then(|s| s.parse().ok())
    }

    /// The shape for an adapter: `FPTT_MATMUL_TILING` overrides it for experiments; otherwise by
    /// device type, shrunk to the adapter's limits.
    pub fn for_adapter(info: &wgpu::AdapterInfo, limits: &wgpu::Limits) -> MatmulTiling {
        let chosen = Self::overridden().unwrap_or(match info.device_type {
            wgpu::DeviceType::Cpu => Self::CPU,
            _ => Self::GPU,
        });
        chosen.fit(limits)
    }

    /// Shrink until the workgroup fits the limits (halving the K-slice, then the invocations).
    pub fn fit(mut self, limits: &wgpu::Limits) -> MatmulTiling {
        while self.k_slice > 1 && self.workgroup_bytes() > limits.max_compute_workgroup_storage_size {
            self.k_slice /= 2;
        }
        while self.invocations() > limits.max_compute_invocations_per_workgroup.min(limits.max_compute_workgroup_size_x)
            && (self.wg_rows > 1 || self.wg_cols > 1)
        {
            if self.wg_rows >= self.wg_cols {
                self.wg_rows /= 2;
            } else {
                self.wg_cols /= 2;
            }
        }
        self
    }

    /// How many ways to split a weight gradient's batch reduction (`rows × cols` outputs over
    /// `batch` samples) so that a GPU gets enough workgroups: about 256 in all (two per SM of a
    /// large GPU), no fewer than 32 samples per part, never on CPU adapters (their few cores are
    /// busy with one block each already). `FPTT_WEIGHT_GRAD_SPLIT=S` forces S (tests,
    /// experiments), still at most one part per sample.
    pub fn weight_grad_split(&self, rows: usize, cols: usize, batch: usize) -> usize {
        if let Some(forced) = std::env::var("FPTT_WEIGHT_GRAD_SPLIT").ok().and_then(|s| s.parse::<usize>().ok()) {
            return forced.clamp(1, batch.max(1));
        }
        if self.k_slice == 0 {
            return 1;
        }
        let blocks = self.groups(rows, cols, 1) as usize;
        256usize.div_ceil(blocks).clamp(1, (batch / 32).max(1))
    }

    /// The compact `ROWSxCOLSxREGxK` form that `FPTT_MATMUL_TILING` accepts (what CSVs and
    /// `config.toml` record, so a run can be repeated with the same shape).
    pub fn code(&self) -> String {
        format!("{}x{}x{}x{}", self.wg_rows, self.wg_cols, self.reg_rows, self.k_slice)
    }

    pub fn block_rows(&self) -> u32 {
        self.wg_rows * self.reg_rows
    }

    pub fn block_cols(&self) -> u32 {
        self.wg_cols * REGISTER_COLS
    }

    pub fn invocations(&self) -> u32 {
        self.wg_rows * self.wg_cols
    }

    /// Floats of the staged A slice and vec4s of the B slice (at least 1: WGSL arrays are not empty).
    fn staged_lengths(&self) -> (u32, u32) {
        ((self.block_rows() * self.k_slice).max(1), (self.wg_cols * self.k_slice).max(1))
    }

    /// Workgroup memory one workgroup uses.
    pub fn workgroup_bytes(&self) -> u32 {
        let (a, b) = self.staged_lengths();
        4 * a + 16 * b
    }

    /// Workgroups of a launch over an `rows × cols` output, `split` copies of the grid (twin:
    /// `mm_blocks` in shaders/shared/matmul.wgsl).
    pub fn groups(&self, rows: usize, cols: usize, split: usize) -> u32 {
        let blocks = rows.div_ceil(self.block_rows() as usize) * cols.div_ceil(self.block_cols() as usize);
        (blocks * split.max(1)).max(1) as u32
    }

    /// The pipeline-override constants of the template.
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        let (a, b) = self.staged_lengths();
        vec![
            ("MM_WG_ROWS", self.wg_rows as f64),
            ("MM_WG_COLS", self.wg_cols as f64),
            ("MM_RM", self.reg_rows as f64),
            ("MM_TK", self.k_slice as f64),
            ("MM_INVOCATIONS", self.invocations() as f64),
            ("MM_A_LEN", a as f64),
            ("MM_B_LEN", b as f64),
        ]
    }
}

/// `64x64 block, 16x16 invocations, 4x4 registers, k-slice 16` — what a run records.
impl fmt::Display for MatmulTiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{} block, {}x{} invocations, {}x{} registers, ",
            self.block_rows(),
            self.block_cols(),
            self.wg_rows,
            self.wg_cols,
            self.reg_rows,
            REGISTER_COLS
        )?;
        if self.k_slice == 0 {
            write!(f, "direct loads")
        } else {
            write!(f, "k-slice {}", self.k_slice)
        }
    }
}

/// `ROWSxCOLSxREGxK`: invocations down and across, register rows, K-slice (0: direct loads).
impl std::str::FromStr for MatmulTiling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let v: Vec<u32> =
            s.split('x').map(|p| p.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let [wg_rows, wg_cols, reg_rows, k_slice] = v[..] else {
            return Err(format!("expected ROWSxCOLSxREGxK, found {s:?}"));
        };
        if wg_rows == 0 || wg_cols == 0 || reg_rows == 0 || reg_rows > MAX_REGISTER_ROWS {
            return Err(format!("invocations must be positive and register rows 1..={MAX_REGISTER_ROWS}: {s:?}"));
        }
        Ok(MatmulTiling { wg_rows, wg_cols, reg_rows, k_slice })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_shape_fits_default_limits_and_counts_blocks() {
        let t = MatmulTiling::GPU.fit(&wgpu::Limits::default());
        assert_eq!(t, MatmulTiling::GPU);
        assert_eq!((t.block_rows(), t.block_cols(), t.invocations()), (64, 64, 256));
        assert_eq!(t.workgroup_bytes(), 4 * 64 * 16 + 16 * 16 * 16);
        assert_eq!(t.groups(1, 1, 1), 1);
        assert_eq!(t.groups(65, 64, 1), 2);
        assert_eq!(t.groups(67, 131, 3), 2 * 3 * 3);
        assert_eq!(t.to_string(), "64x64 block, 16x16 invocations, 4x4 registers, k-slice 16");
    }

    #[test]
    fn code_round_trips_through_parse() {
        for t in [MatmulTiling::GPU, MatmulTiling::CPU] {
            assert_eq!(t.code().parse::<MatmulTiling>(), Ok(t));
        }
    }

    #[test]
    fn shrinks_to_small_limits_and_parses() {
        let small = wgpu::Limits {
            max_compute_workgroup_storage_size: 4096,
            max_compute_invocations_per_workgroup: 64,
            ..Default::default()
        };
        let t = MatmulTiling::GPU.fit(&small);
        assert!(t.workgroup_bytes() <= 4096 && t.invocations() <= 64, "{t}");
        assert_eq!("8x8x8x0".parse::<MatmulTiling>(), Ok(MatmulTiling::CPU));
        assert!("8x8x9x0".parse::<MatmulTiling>().is_err());
        assert!("8x8".parse::<MatmulTiling>().is_err());
        assert_eq!(MatmulTiling::CPU.to_string(), "64x32 block, 8x8 invocations, 8x4 registers, direct loads");
    }

    /// build.rs validates the template kernels with the overrides' defaults; this validates them
    /// with each shape's constants substituted (what pipeline creation does), without a device.
    #[test]
    fn template_kernels_validate_with_every_shape() {
        use wgpu::naga;
        let shapes =
            [MatmulTiling::CPU, MatmulTiling::GPU, MatmulTiling { wg_rows: 3, wg_cols: 5, reg_rows: 3, k_slice: 5 }];
        let mut kernels = 0;
        for (name, src) in crate::gpu::sources::KERNEL_SOURCES {
            if !src.contains("override MM_TK") {
                continue;
            }
            kernels += 1;
            let module = naga::front::wgsl::parse_str(src).unwrap();
            let flags = naga::valid::ValidationFlags::all();
            let info = naga::valid::Validator::new(flags, naga::valid::Capabilities::all()).validate(&module).unwrap();
            for t in shapes {
                let constants: naga::back::PipelineConstants =
                    t.constants().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                if let Err(e) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants) {
                    panic!("{name} with {t}: {e:?}");
                }
            }
        }
        assert_eq!(
            kernels, 8,
            "layer_current, layer_neuron, input_grad, weight_grad, bench_matmul, conv_forward, conv_input_grad, conv_weight_grad"
        );
    }
}
