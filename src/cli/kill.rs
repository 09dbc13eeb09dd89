//! `viasock kill`: stop servers (see [`crate::core::control::stop`]), or
//! clean up after dead ones.

use crate::cli::{Cli, KillArgs, select};
use crate::core::control;
use crate::core::state::Health;
use crate::core::status;

pub fn kill(cli: &Cli, args: &KillArgs) -> anyhow::Result<i32> {
    let found = select::discover(cli)?;
    let chosen = if args.all || args.stale {
        found
    } else {
        select::by_prefixes(&found, &args.ids)?
    };
    let mut failed = 0;
    for f in chosen
        .iter()
        .filter(|f| !args.stale || f.health == Health::Dead)
    {
        if let Err(e) = control::stop(f, args.force) {
            eprintln!("viasock: {}: {e:#}", f.state.short_id());
            failed += 1;
        }
    }
    Ok(if failed == 0 { 0 } else { status::FAILURE })
}
