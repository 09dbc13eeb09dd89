//! `viasock ls`: the user's servers, as a table or as JSON.

use std::time::SystemTime;

use crate::cli::{Cli, LsArgs, print_out, select};
use crate::core::control;
use crate::core::state::{self, Found, Health};

pub fn ls(cli: &Cli, args: &LsArgs) -> anyhow::Result<i32> {
    let mut found = select::discover(cli)?;
    control::ask_live(&mut found);
    if args.json {
        let states: Vec<_> = found.iter().map(Found::shown_state).collect();
        let text = serde_json::to_string_pretty(&states)? + "\n";
        print_out(text.as_bytes())?;
        return Ok(0);
    }
    if args.quiet {
        let ids: String = found
            .iter()
            .map(|f| format!("{}\n", f.state.short_id()))
            .collect();
        print_out(ids.as_bytes())?;
        return Ok(0);
    }
    print_out(table(&found, SystemTime::now()).as_bytes())?;
    for f in &found {
        if f.state.log_lines_dropped > 0 {
            eprintln!(
                "viasock: {}: {} log lines could not be written to {} (a full disk?); it \
                 serves on without them",
                f.state.short_id(),
                f.state.log_lines_dropped,
                f.state.log.display()
            );
        }
    }
    Ok(0)
}

/// The aligned table, columns as the README lists them.
pub fn table(found: &[Found], now: SystemTime) -> String {
    let mut rows = vec![
        [
            "ID", "STATE", "PID", "INST", "CLIENTS", "REQS", "IDLE", "UPTIME", "COMMAND",
        ]
        .map(String::from),
    ];
    for f in found {
        let s = f.shown_state();
        let busy = s.busy_instances();
        let clients = match s.clients_waiting {
            0 => s.clients_active.to_string(),
            w => format!("{}+{w}", s.clients_active),
        };
        let idle = match (&s.idle_deadline_at, f.health) {
            (Some(t), Health::Live) => state::parse_time(t)
                .map(|t| t.duration_since(now).unwrap_or_default())
                .map_or("-".into(), |d| format!("{}s", d.as_secs())),
            _ => "-".into(),
        };
        let uptime = match f.health {
            Health::Dead => "-".into(),
            _ => state::parse_time(&s.started_at)
                .and_then(|t| now.duration_since(t).ok())
                .map_or("-".into(), |d| duration(d.as_secs())),
        };
        let phase = serde_json::to_value(s.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let phase = if f.health == Health::Remote {
            format!("{phase}@{}", s.host)
        } else {
            phase
        };
        rows.push([
            s.short_id().to_owned(),
            phase,
            s.server_pid.to_string(),
            format!("{busy}/{}", s.instances.len()),
            clients,
            s.requests_total.to_string(),
            idle,
            uptime,
            s.command_line(),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c == 8 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `3h07m`, `4m12s`, `9s`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}
