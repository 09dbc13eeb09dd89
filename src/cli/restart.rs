//! `viasock restart`: fresh tool instances for a server, same server and
//! socket. Calls in flight finish on the old instances first.

use crate::cli::{Cli, RestartArgs, select};
use crate::core::control;
use crate::core::status;

pub fn restart(cli: &Cli, args: &RestartArgs) -> anyhow::Result<i32> {
    let found = select::discover(cli)?;
    let mut failed = 0;
    for f in select::by_prefixes(&found, &args.ids)? {
        if let Err(e) = control::restart(&f) {
            eprintln!("viasock: cannot restart {}: {e:#}", f.state.short_id());
            failed += 1;
        }
    }
    Ok(if failed == 0 { 0 } else { status::FAILURE })
}
