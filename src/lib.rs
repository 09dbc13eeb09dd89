//! viasock: serve a slow-starting stdin→stdout tool behind a Unix socket so
//! that every call after the first skips its start-up.

/// The command line, one module per subcommand.
pub mod cli;
/// The engine: identity, records, protocol, server, instances, state.
pub mod core;
/// The `top` monitor.
pub mod tui;
