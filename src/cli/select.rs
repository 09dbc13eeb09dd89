//! Finding servers for `ls`, `kill`, `restart` and `logs`: every server of
//! the user through the registry, or those of one state directory with
//! `--dir`; an id is any unique prefix.

use crate::cli::Cli;
use crate::core::state::{self, Found};
use crate::core::{Fatal, status};

/// The state directory the commands are narrowed to, if any.
pub fn scope(cli: &Cli) -> Option<std::path::PathBuf> {
    cli.dir.as_ref().map(|d| {
        let cwd = std::env::current_dir().unwrap_or_default();
        let dir = cwd.join(d);
        std::fs::canonicalize(&dir).unwrap_or(dir)
    })
}

/// The servers in scope.
pub fn discover(cli: &Cli) -> Result<Vec<Found>, Fatal> {
    state::discover(scope(cli).as_deref()).map_err(|e| Fatal::new(status::FAILURE, e.to_string()))
}

/// The servers named by `ids` (unique prefixes of their ids, in any case).
pub fn by_prefixes(found: &[Found], ids: &[String]) -> Result<Vec<Found>, Fatal> {
    let listed = |servers: &[&Found]| -> String {
        let mut list: Vec<String> = servers
            .iter()
            .take(MAX_LISTED)
            .map(|f| format!("{} ({})", f.state.short_id(), f.state.command_line()))
            .collect();
        if servers.len() > MAX_LISTED {
            list.push(format!("and {} more", servers.len() - MAX_LISTED));
        }
        list.join(", ")
    };
    let mut chosen = Vec::new();
    for prefix in ids {
        let wanted = prefix.to_ascii_lowercase();
        let matches: Vec<&Found> = found
            .iter()
            .filter(|f| !wanted.is_empty() && f.state.id.starts_with(wanted.as_str()))
            .collect();
        match matches[..] {
            [one] => chosen.push(one.clone()),
            [] if found.is_empty() => {
                return Err(Fatal::new(
                    status::FAILURE,
                    format!("no server with id {prefix}: no servers are running"),
                ));
            }
            [] => {
                let all: Vec<&Found> = found.iter().collect();
                return Err(Fatal::new(
                    status::FAILURE,
                    format!("no server with id {prefix}; there are {}", listed(&all)),
                ));
            }
            _ => {
                return Err(Fatal::new(
                    status::FAILURE,
                    format!("id {prefix} is ambiguous: {}", listed(&matches)),
                ));
            }
        }
    }
    Ok(chosen)
}

/// Servers named in one error message, at most.
const MAX_LISTED: usize = 5;
