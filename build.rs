//! Links a dynamic `viasock` binary on Linux as a position-dependent
//! executable.
//!
//! `viasock run` is started once per call, thousands of times, and a
//! position-independent executable must have its relocations applied at
//! every start. The default build (`.cargo/config.toml`) is static and
//! position-dependent already; this covers a dynamic build made without
//! those flags (`RUSTFLAGS= cargo build`). A static build is left alone:
//! `-no-pie` in a static-pie start-up (musl's default) crashes at start.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let is_static = features.split(',').any(|f| f == "crt-static");
    if target_os == "linux" && !is_static {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
