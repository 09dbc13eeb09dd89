//! Links the `viasock` binary as a position-dependent executable on Linux.
//!
//! `viasock run` is started once per call, thousands of times, and a
//! position-independent executable must have its relocations applied at
//! every start: for a binary of this size that is about a hundred page
//! faults and 0.4 ms, a third of the time a warm call may cost (SPEC 9).
//! Only the executable is affected; the library stays position-independent.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
