//! The engine's persistent state by name (parameters with the authors' tensor names, `W̄`, `λ`,
//! optimizer moments, running statistics, `q`) in and out, and the raw views kernel tests use.

use super::{Engine, EngineError};
use crate::settings::Optimizer;
use crate::tensor::{Tensor, TensorMap};

impl Engine {
    fn moment_names(&self) -> (&'static str, &'static str) {
        match self.settings.optimizer {
            Optimizer::Adam => ("exp_avg", "exp_avg_sq"),
            Optimizer::Adamax => ("exp_avg", "exp_inf"),
        }
    }

    /// Everything the engine trains and keeps, by name: for every parameter NAME, `NAME` and (if
    /// trained) `NAME.wbar`, `NAME.lambda` and the optimizer moments in PyTorch's names; the
    /// running statistics; `q`. One read per buffer.
    pub fn state(&self) -> Result<TensorMap, EngineError> {
        self.refuse_with_replicas("state")?;
        self.replica_state(0)
    }

    /// [`Engine::state`] of replica r.
    pub fn replica_state(&self, r: usize) -> Result<TensorMap, EngineError> {
        self.refuse_while_running_mean_loaded("reading the state")?;
        self.check_replica(r)?;
        let params = self.params.read(&self.ctx, self.params_base(r), self.layout.total_len)?;
        let opt = self.opt.read(&self.ctx, self.opt_base(r), 4 * self.layout.trainable_len)?;
        let work = self.work.read(&self.ctx, self.work_base(r), self.plan.arena.len())?;
        let len = self.layout.trainable_len;
        let (m1, m2) = self.moment_names();
        let mut map = TensorMap::new();
        for slot in &self.layout.slots {
            let r = slot.range();
            map.insert(slot.name.clone(), Tensor::new(slot.shape.clone(), params[r.clone()].to_vec()));
            if slot.offset < len {
                for (suffix, part) in [("wbar", 0), ("lambda", 1), (m1, 2), (m2, 3)] {
                    let data = opt[part * len + r.start..part * len + r.end].to_vec();
                    map.insert(format!("{}.{suffix}", slot.name), Tensor::new(slot.shape.clone(), data));
                }
            }
        }
        let running = self.plan.running as usize;
        for slot in &self.stats.slots {
            let r = slot.range();
            map.insert(
                slot.name.clone(),
                Tensor::new(slot.shape.clone(), work[running + r.start..running + r.end].to_vec()),
            );
        }
        let c = self.cfg.outputs;
        let q = self.plan.q as usize;
        map.insert("q".into(), Tensor::new(vec![c, self.cfg.steps, c], work[q..q + c * self.cfg.steps * c].to_vec()));
        Ok(map)
    }

    /// Load parameters (required) and, where present, `W̄`, `λ`, moments, running statistics and
    /// `q`. Absent extras start fresh: `W̄ = W`, `λ = 0`, moments 0, statistics (0, 1), `q = 0`.
    /// Shapes are checked against the layout; a mismatch names the tensor.
    pub fn load_state(&mut self, map: &TensorMap) -> Result<(), EngineError> {
        self.refuse_with_replicas("load_state")?;
        self.load_replica_state(0, map)
    }

    /// [`Engine::load_state`] into replica r. A diverged replica is thawed: it trains again from
    /// this state.
    pub fn load_replica_state(&mut self, r: usize, map: &TensorMap) -> Result<(), EngineError> {
        self.refuse_while_running_mean_loaded("loading a state")?;
        self.check_replica(r)?;
        let len = self.layout.trainable_len;
        let mut params = vec![0.0f32; self.layout.total_len];
        let mut opt = vec![0.0f32; 4 * len];
        let (m1, m2) = self.moment_names();
        let fetch = |name: &str, shape: &[usize]| -> Result<Option<&Tensor>, EngineError> {
            match map.get(name) {
                None => Ok(None),
                Some(t) if t.shape == shape => Ok(Some(t)),
                Some(t) => Err(EngineError::Shape(format!(
                    "tensor {name} has shape {:?}, the model expects {shape:?}",
                    t.shape
                ))),
            }
        };
        for slot in &self.layout.slots {
            let t = fetch(&slot.name, &slot.shape)?
                .ok_or_else(|| EngineError::Shape(format!("parameter {} is missing", slot.name)))?;
            let r = slot.range();
            params[r.clone()].copy_from_slice(&t.data);
            if slot.offset < len {
                let wbar = fetch(&format!("{}.wbar", slot.name), &slot.shape)?;
                opt[r.clone()].copy_from_slice(&wbar.unwrap_or(t).data);
                for (suffix, part) in [("lambda", 1), (m1, 2), (m2, 3)] {
                    if let Some(x) = fetch(&format!("{}.{suffix}", slot.name), &slot.shape)? {
                        opt[part * len + r.start..part * len + r.end].copy_from_slice(&x.data);
                    }
                }
            }
        }
        let (pb, ob, wb) = (self.params_base(r), self.opt_base(r), self.work_base(r));
        self.params.write(&self.ctx, pb, &params);
        self.opt.write(&self.ctx, ob, &opt);
        let mut running = vec![0.0f32; self.stats.total_len];
        for slot in &self.stats.slots {
            let r = slot.range();
            match fetch(&slot.name, &slot.shape)? {
                Some(t) => running[r].copy_from_slice(&t.data),
                None if slot.name.contains("running_var") => running[r].fill(1.0),
                None => {}
            }
        }
        self.work.write(&self.ctx, wb + self.plan.running as usize, &running);
        let c = self.cfg.outputs;
        let q_shape = [c, self.cfg.steps, c];
        let q = fetch("q", &q_shape)?.map(|t| t.data.clone()).unwrap_or_else(|| vec![0.0; c * self.cfg.steps * c]);
        self.work.write(&self.ctx, wb + self.plan.q as usize, &q);
        self.divergence[r] = None;
        self.write_hyper(r);
        self.ctx.wait()?;
        Ok(())
    }

    fn check_replica(&self, r: usize) -> Result<(), EngineError> {
        if r >= self.replicas {
            return Err(EngineError::Shape(format!("replica {r} of an engine of {} replicas", self.replicas)));
        }
        Ok(())
    }

    fn refuse_with_replicas(&self, what: &str) -> Result<(), EngineError> {
        if self.replicas != 1 {
            return Err(EngineError::Shape(format!(
                "{what} is for one model; this engine steps {} replicas (use the replica_ methods)",
                self.replicas
            )));
        }
        Ok(())
    }

    /// Fill every scratch region of the work arena and the whole gradient buffer with NaN, so that
    /// a test sees any element a kernel failed to write. Persistent state (parameters, optimizer
    /// state, q, running statistics) is left alone.
    pub fn poison_scratch(&self) -> Result<(), EngineError> {
        let q = self.plan.q as usize;
        let metrics = self.plan.metrics as usize;
        let end = self.plan.spike_layers as usize;
        for r in 0..self.replicas {
            let base = self.work_base(r);
            self.work.write(&self.ctx, base, &vec![f32::NAN; q]);
            self.work.write(&self.ctx, base + metrics, &vec![f32::NAN; end - metrics]);
        }
        self.grad.write(&self.ctx, 0, &vec![f32::NAN; self.replicas * self.layout.total_len]);
        self.ctx.wait()?;
        Ok(())
    }

    /// The raw contents of the work arena and the gradient buffer (replica 0), for kernel tests.
    pub fn debug_read(&self) -> Result<(Vec<f32>, Vec<f32>), EngineError> {
        Ok((self.work.read(&self.ctx, 0, self.plan.arena.len())?, self.grad.read(&self.ctx, 0, self.layout.total_len)?))
    }
}
