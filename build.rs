//! Builds the preload library of `run --fork` (the `preload` crate) and
//! hands its path to the crate, which embeds it: installing viasock stays
//! one binary.
//!
//! Also links a dynamic `viasock` binary on Linux as a position-dependent
//! executable: `viasock run` is started once per call, thousands of times,
//! and a position-independent executable must have its relocations
//! applied at every start. The default build (`.cargo/config.toml`) is
//! static and position-dependent already; this covers a dynamic build
//! made without those flags (`RUSTFLAGS= cargo build`). A static build is
//! left alone: `-no-pie` in a static-pie start-up (musl's default) crashes
//! at start.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let is_static = features.split(',').any(|f| f == "crt-static");
    if target_os == "linux" && !is_static {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
    build_preload();
}

/// The library is loaded into the tools of this machine, which use its
/// C library through its dynamic loader: it is built for the GNU target
/// of the architecture (a musl `viasock` serves glibc tools too), as a
/// plain shared object whatever flags build `viasock` itself.
fn build_preload() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let target = format!("{arch}-unknown-linux-gnu");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = out.join("preload");
    for p in ["preload/src", "preload/Cargo.toml"] {
        println!("cargo:rerun-if-changed={p}");
    }
    let status = Command::new(cargo)
        .current_dir(&manifest)
        .args(["build", "--quiet", "--locked", "-p", "viasock-preload"])
        .args(["--profile", "preload", "--target", &target])
        .arg("--target-dir")
        .arg(&target_dir)
        // Whatever flags build viasock (static, position-dependent) are
        // not for a shared object.
        .env("CARGO_ENCODED_RUSTFLAGS", "")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cannot run cargo to build the preload library");
    assert!(status.success(), "building the preload library failed");
    let lib = target_dir
        .join(&target)
        .join("preload")
        .join("libviasock_preload.so");
    println!("cargo:rustc-env=VIASOCK_PRELOAD_LIB={}", lib.display());
}
