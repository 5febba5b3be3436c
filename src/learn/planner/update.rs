//! The update over all trainable parameters (method §5): gradient-norm partials, then the clip
//! factor and Adam/Adamax with FPTT's λ and W̄ in one pass.

use super::Planner;
use crate::gpu::{ArgArena, Dispatch};
use crate::learn::kernel_args::*;
use crate::learn::plan::NORM_PARTS;
use crate::settings::{Optimizer, ADAM_BETA1, ADAM_BETA2, ADAM_EPS};

impl Planner<'_> {
    /// The update over all trainable parameters: FPTT's regularised update, or with `plain` a
    /// plain optimizer step with the loss gradient (BPTT).
    /// `splits`: the weight gradients the step before left as partial sums (fptt_norm gathers them).
    pub(crate) fn update(&self, arena: &mut ArgArena, plain: bool, splits: &[SplitRegion]) -> Vec<Dispatch> {
        let Planner { kernels, settings, layout, plan, .. } = *self;
        let mut out = Vec::new();
        let len = layout.trainable_len as u32;
        // Few partial sums: each workgroup's tree reduction costs barriers, and on a software
        // adapter a barrier is a coroutine switch per invocation.
        let parts = len.div_ceil(64 * 64).clamp(1, NORM_PARTS);
        let mut gather = [SplitRegion::default(); SPLIT_REGIONS];
        gather[..splits.len()].copy_from_slice(splits);
        let oa = OptimArgs {
            gather,
            len,
            parts,
            partials: plan.partials,
            optimizer: match settings.optimizer {
                Optimizer::Adam => 0,
                Optimizer::Adamax => OPTIM_ADAMAX,
            } | if plain { OPTIM_PLAIN } else { 0 },
            hyper: plan.hyper,
            beta1: ADAM_BETA1 as f32,
            beta2: ADAM_BETA2 as f32,
            eps: ADAM_EPS as f32,
            one_minus_beta1: (1.0 - ADAM_BETA1) as f32,
            one_minus_beta2: (1.0 - ADAM_BETA2) as f32,
            regions: splits.len() as u32,
            ..Default::default()
        };
        let oa_off = arena.push(&oa);
        out.push(kernels.groups("fptt_norm", oa_off, parts));
        // Every invocation of fptt_update adds the `parts` partial sums itself (the clip needs
        // ‖g‖ before any parameter changes): give each at least as many parameters, so that this
        // costs at most one load per parameter.
        let per_invocation = (parts as usize).max(16);
        out.push(kernels.over("fptt_update", oa_off, (len as usize).div_ceil(per_invocation)));
        out
    }
}
