//! `viasock restart`: fresh tool instances for a server, same server and
//! socket. Calls in flight finish on the old instances first.

use crate::cli::{Cli, RestartArgs, select};
use crate::core::state::Health;
use crate::core::status;

pub fn restart(cli: &Cli, args: &RestartArgs) -> anyhow::Result<i32> {
    let found = select::discover(cli);
    let mut failed = 0;
    for f in select::by_prefixes(&found, &args.ids)? {
        let result = match f.health {
            Health::Live => match select::control(&f, "restart") {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(anyhow::anyhow!("it is stopping")),
                Err(e) => Err(e),
            },
            Health::Dead => Err(anyhow::anyhow!(
                "it is dead (viasock kill --stale cleans up)"
            )),
            Health::Remote => Err(anyhow::anyhow!("runs on host {}", f.state.host)),
        };
        if let Err(e) = result {
            eprintln!("viasock: cannot restart {}: {e:#}", f.state.short_id());
            failed += 1;
        }
    }
    Ok(if failed == 0 { 0 } else { status::FAILURE })
}
