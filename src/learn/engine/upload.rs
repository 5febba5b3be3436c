//! What goes up before a sequence: its inputs, targets and initial state (checked against the
//! engine's shapes), and the per-step `StepInfo`s (loss weights, bias corrections).

use super::{Engine, EngineError};
use crate::learn::kernel_args::StepInfo;
use crate::learn::planner::is_classification;
use crate::reference::conv_network::{dropout_mask, sequence_dropout_seed};
use crate::settings::{AuxTargets, InitialState, LossKind, SequenceBatch, Targets, ADAM_BETA1, ADAM_BETA2};

impl Engine {
    pub(super) fn check_batch(&self, batch: &SequenceBatch, exact: bool) -> Result<(), EngineError> {
        let cfg = &self.cfg;
        let bad = |m: String| Err(EngineError::Shape(m));
        if batch.steps != cfg.steps {
            return bad(format!("sequence has {} steps, the model was built for {}", batch.steps, cfg.steps));
        }
        if batch.inputs_per_step != cfg.inputs {
            return bad(format!(
                "sequence has {} inputs per step, the model expects {}",
                batch.inputs_per_step, cfg.inputs
            ));
        }
        if batch.batch == 0 || batch.batch > self.batch || (exact && batch.batch != self.batch) {
            return bad(format!("batch of {} sequences, the engine trains batches of {}", batch.batch, self.batch));
        }
        if batch.inputs.len() != batch.steps * batch.batch * batch.inputs_per_step {
            return bad("input length does not match steps × batch × inputs".into());
        }
        if batch.targets.per_step() != self.per_step_targets {
            return bad(if self.per_step_targets {
                "a stream engine needs targets at every step (StepLabels or StepValues)".into()
            } else {
                "per-step targets need a stream engine (Engine::new_stream)".into()
            });
        }
        match (&batch.targets, self.settings.loss) {
            (Targets::Labels(l), LossKind::Classification { .. }) => {
                if l.len() != batch.batch {
                    return bad(format!("{} labels for {} sequences", l.len(), batch.batch));
                }
                if let Some(&y) = l.iter().find(|&&y| y as usize >= cfg.outputs) {
                    return bad(format!("label {y} out of range for {} classes", cfg.outputs));
                }
            }
            (Targets::Values(v), LossKind::Regression) => {
                if v.len() != batch.batch * cfg.outputs {
                    return bad(format!("{} targets for {} sequences × {} outputs", v.len(), batch.batch, cfg.outputs));
                }
            }
            (Targets::StepLabels(l), LossKind::Classification { .. }) => {
                if l.len() != batch.steps * batch.batch {
                    return bad(format!("{} labels for {} steps × {} streams", l.len(), batch.steps, batch.batch));
                }
                if let Some(&y) = l.iter().find(|&&y| y as usize >= cfg.outputs) {
                    return bad(format!("label {y} out of range for {} classes", cfg.outputs));
                }
            }
            (Targets::StepValues(v), LossKind::Regression) => {
                if v.len() != batch.steps * batch.batch * cfg.outputs {
                    return bad(format!(
                        "{} targets for {} steps × {} streams × {} outputs",
                        v.len(),
                        batch.steps,
                        batch.batch,
                        cfg.outputs
                    ));
                }
            }
            _ => return bad("targets do not match the loss (labels for classification, values for regression)".into()),
        }
        Ok(())
    }

    /// Upload inputs, targets and the initial state (none: a stream window continues from the
    /// last state, copied on the GPU by the caller), padding a short batch with zeros. Streams
    /// always fill the batch (`check_batch` with `exact`).
    pub(super) fn upload_sequence(
        &self,
        replica: usize,
        batch: &SequenceBatch,
        init: Option<&InitialState>,
    ) -> Result<(), EngineError> {
        let (bsz, valid, i, t) = (self.batch, batch.batch, batch.inputs_per_step, batch.steps);
        let base = self.work_base(replica);
        let ctx = &self.ctx;
        let plan = &self.plan;
        if valid == bsz {
            self.work.write(ctx, base + plan.inputs as usize, &batch.inputs);
        } else {
            let mut padded = vec![0.0f32; t * bsz * i];
            for step in 0..t {
                padded[step * bsz * i..step * bsz * i + valid * i].copy_from_slice(batch.step(step));
            }
            self.work.write(ctx, base + plan.inputs as usize, &padded);
        }
        let targets: Vec<f32> = match &batch.targets {
            Targets::Labels(l) => {
                let mut v: Vec<f32> = l.iter().map(|&y| f32::from_bits(y)).collect();
                v.resize(bsz, f32::from_bits(0));
                v
            }
            Targets::Values(v) => {
                let mut v = v.clone();
                v.resize(bsz * self.cfg.outputs, 0.0);
                v
            }
            Targets::StepLabels(l) => l.iter().map(|&y| f32::from_bits(y)).collect(),
            Targets::StepValues(v) => v.clone(),
        };
        self.work.write(ctx, base + plan.targets as usize, &targets);
        let Some(init) = init else { return Ok(()) };
        // One membrane per state block: the conv cells' (if any), then the hidden layers'.
        let blocks = self.cfg.state_blocks();
        if init.membrane.len() != blocks.len() {
            return Err(EngineError::Shape(format!(
                "initial state has {} layers, the model {}",
                init.membrane.len(),
                blocks.len()
            )));
        }
        let total = bsz * plan.total_hidden;
        let mut m = vec![0.0f32; total];
        let mut start = 0;
        for (k, (layer, &n)) in init.membrane.iter().zip(&blocks).enumerate() {
            if layer.len() < valid * n || layer.len() > bsz * n {
                return Err(EngineError::Shape(format!(
                    "initial membrane of layer {} has {} values",
                    k + 1,
                    layer.len()
                )));
            }
            m[start..start + layer.len()].copy_from_slice(layer);
            start += bsz * n;
        }
        let s0 = &plan.state[0];
        self.work.write(ctx, base + s0.m as usize, &m);
        self.work.write(ctx, base + s0.s as usize, &vec![0.0; total]);
        self.work.write(ctx, base + s0.b as usize, &vec![self.cfg.b0(); total]);
        self.work.write(ctx, base + s0.o as usize, &vec![0.0; bsz * self.cfg.outputs]);
        Ok(())
    }

    /// A conv network's dropout masks `[T, B·F]` for replica r's next training sequence (method §9
    /// (9.21)), drawn as the reference draws them: step t's mask is
    /// `reference::conv_network::dropout_mask(p, B·F, seed, t)` with the seed of this sequence,
    /// `sequence_dropout_seed(replica seed, updates so far)`. Nothing without dropout.
    pub(super) fn write_dropout_masks(&self, replica: usize) {
        let (Some(spec), Some(region)) = (&self.cfg.conv, &self.plan.conv) else { return };
        if spec.dropout <= 0.0 {
            return;
        }
        let len = self.batch * spec.flat_features();
        let seed = sequence_dropout_seed(self.dropout_seeds[replica], self.updates);
        let masks: Vec<f32> = (0..self.cfg.steps)
            .flat_map(|t| dropout_mask(spec.dropout as f64, len, seed, t))
            .map(|v| v as f32)
            .collect();
        self.work.write(&self.ctx, self.work_base(replica) + region.masks as usize, &masks);
    }

    /// Adam/Adamax's step size lr/(1 − β1ⁿ) of the update made at each step of the next
    /// sequence (n counts updates), in f64 like PyTorch.
    pub(super) fn step_sizes(&self, lr: f32) -> Vec<f32> {
        (0..self.cfg.steps)
            .map(|t| {
                let n = (self.updates + (t / self.steps_per_update()) as u64 + 1) as i32;
                (lr as f64 / (1.0 - ADAM_BETA1.powi(n))) as f32
            })
            .collect()
    }

    pub(super) fn step_infos(&self, valid: usize, training: bool) -> Vec<StepInfo> {
        let t_len = self.cfg.steps;
        let aux_mode = match self.settings.loss {
            LossKind::Classification { aux: AuxTargets::Off } | LossKind::Regression => 0,
            LossKind::Classification { aux: AuxTargets::Table } => 1,
            LossKind::Classification { aux: AuxTargets::Uniform } => 2,
        };
        let classification = is_classification(self.settings.loss);
        // Streams: a target at every step, each step a prediction of its own (weight 1, no
        // auxiliary term, no table); step t's targets are row t of the targets region.
        let stream = self.per_step_targets;
        let per_step_len = if classification { self.batch } else { self.batch * self.cfg.outputs };
        (0..t_len)
            .map(|t| {
                let w = if stream { 1.0 } else { (t + 1) as f64 / t_len as f64 };
                let n = (self.updates + (t / self.steps_per_update()) as u64 + 1) as i32;
                StepInfo {
                    t: t as u32,
                    steps: t_len as u32,
                    valid: valid as u32,
                    training: u32::from(training),
                    w_task: w as f32,
                    w_aux: if stream { 0.0 } else { (1.0 - w) as f32 },
                    aux_mode: if stream { 0 } else { aux_mode },
                    // The table is kept up to date whatever the loss reads (as the authors' code).
                    update_q: u32::from(!stream && training && classification && t + 1 < t_len),
                    target_offset: if stream { (t * per_step_len) as u32 } else { 0 },
                    bc2_sqrt: (1.0 - ADAM_BETA2.powi(n)).sqrt() as f32,
                    eval_batch_stats: u32::from(!training && self.eval_batch_stats),
                    params_stride: self.layout.total_len as u32,
                    opt_stride: (4 * self.layout.trainable_len) as u32,
                    work_stride: self.plan.arena.len() as u32,
                    _pad0: 0,
                    _pad1: 0,
                }
            })
            .collect()
    }
}
