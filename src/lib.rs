//! viasock: serve a slow-starting stdin→stdout tool behind a Unix socket so
//! that every call after the first skips its start-up.
//!
//! This library is the `viasock` program's inside, split out so that its
//! tests and benchmarks can reach it. It is not a stable API: anything
//! here may change in any release. The stable interfaces are the command
//! line, the exit statuses and the state files (docs/STATE.md).

/// The command line, one module per subcommand.
pub mod cli;
/// The engine: identity, records, protocol, server, instances, state.
pub mod core;
/// The `top` monitor.
pub mod tui;
