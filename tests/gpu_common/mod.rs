//! Shared GPU test support: one device per test binary, and in CI the check that it really is the
//! software adapter (so a silently missing driver cannot turn the GPU tests into no-ops).
#![allow(dead_code)]

use fptt::gpu::{DeviceChoice, GpuContext};
use std::rc::Rc;

pub fn context() -> Rc<GpuContext> {
    let ctx =
        GpuContext::new(DeviceChoice::Auto).expect("a GPU adapter (install mesa-vulkan-drivers for the software one)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        eprintln!("adapter: {} ({}, {})", ctx.adapter_name(), ctx.backend_name(), ctx.device_type_name());
    }
    Rc::new(ctx)
}
