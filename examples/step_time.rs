//! Wall time of one FPTT training step (forward, backward, fused update) for a one-layer
//! S-MNIST-shaped network, on the adapter `--device`-style argument 1 picks (default auto).
//! Usage: cargo run --release --example step_time -- [auto|gpu|cpu|N] [hidden] [batch...]
//! Speed belongs here, not in tests: the numbers depend on the adapter.

use fptt::gpu::{DeviceChoice, GpuContext};
use fptt::learn::FpttEngine;
use fptt::model::{init_params, ModelConfig};
use fptt::rng::Rng;
use fptt::settings::{AuxTargets, FpttSettings, InitialState, Optimizer, SequenceBatch, Targets};
use std::rc::Rc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device: DeviceChoice = args.first().map_or(Ok(DeviceChoice::Auto), |s| s.parse()).unwrap();
    let hidden: usize = args.get(1).map_or(256, |s| s.parse().unwrap());
    let batches: Vec<usize> =
        if args.len() > 2 { args[2..].iter().map(|s| s.parse().unwrap()).collect() } else { vec![64, 512] };
    let ctx = Rc::new(GpuContext::new(device).unwrap());
    println!("adapter: {} ({}, {})", ctx.adapter_name(), ctx.backend_name(), ctx.device_type_name());
    println!("hidden,batch,steps,ms_per_step,dispatches_per_step,gpu_bytes");
    for batch in batches {
        let steps = 8;
        let cfg = ModelConfig::classifier(1, hidden, 10, steps);
        let settings = FpttSettings::classification(Optimizer::Adamax, 1e-3, AuxTargets::Table);
        let mut engine = FpttEngine::new(ctx.clone(), &cfg, &settings, batch, &init_params(&cfg, 1)).unwrap();
        let mut rng = Rng::new(2);
        let data = SequenceBatch {
            steps,
            batch,
            inputs_per_step: 1,
            inputs: (0..steps * batch).map(|_| rng.uniform() as f32).collect(),
            targets: Targets::Labels((0..batch).map(|_| rng.below(10) as u32).collect()),
        };
        let init = InitialState::uniform(&cfg.hidden, batch, &mut rng);
        engine.train_sequence(&data, &init).unwrap(); // warm-up: pipelines, first submit
        let reps = 2;
        let start = Instant::now();
        for _ in 0..reps {
            engine.train_sequence(&data, &init).unwrap();
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / (reps * steps) as f64;
        println!("{hidden},{batch},{steps},{ms:.2},{},{}", engine.dispatches_per_step(), engine.gpu_bytes());
    }
}
