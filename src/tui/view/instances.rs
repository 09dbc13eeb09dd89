//! The instances view: the tool instances of the selected server over the
//! whole screen, with what each has done and uses. ↑ and ↓ go on moving
//! through the servers, so one can look at each in turn.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::text::{age, bytes, fit, live, title_line};
use super::{Theme, full_screen, status_line};
use crate::core::state::{self, Health, InstanceState};
use crate::tui::app::{self, App, Level};
use crate::tui::event::{Server, ToolUsage};

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let [header, body, status, keys] = full_screen(area);
    let Some(s) = app.selected_server() else {
        frame.render_widget(Paragraph::new(" no server selected"), header);
        return;
    };
    let st = &s.state;
    let title = title_line(
        format!(" instances of {}  ", app::short(&st.id)),
        theme.title(),
        &app::short_command(s),
        format!(" ({})   {}", app::state_label(s, app.now), how_many(st)),
        usize::from(header.width),
    );
    frame.render_widget(Paragraph::new(title), header);
    if st.instances.is_empty() {
        let why = match s.health {
            Health::Dead => " none running: the server is dead (l shows its log)",
            _ => " none running: the first call starts one",
        };
        frame.render_widget(Paragraph::new(why), body);
    } else {
        let usage = app.detail.as_ref().filter(|d| d.id == st.id);
        let tool = |pid: u32| usage.and_then(|d| d.tools.iter().find(|t| t.pid == pid));
        let heading = [
            "PID", "STATE", "REQS", "RECORDS", "AGE", "OLDEST", "RSS", "CPU", "PROCS",
        ];
        let rows = st
            .instances
            .iter()
            .map(|i| row(s, i, tool(i.pid), app, theme));
        let widths = [8, 9, 7, 9, 6, 7, 6, 5, 5].map(Constraint::Length);
        let table = Table::new(rows, widths)
            .header(Row::new(heading).style(Style::new().add_modifier(Modifier::BOLD)))
            .column_spacing(1);
        frame.render_widget(table, body);
    }
    let typing = None;
    frame.render_widget(Paragraph::new(status_line(app, typing, theme)), status);
    let bar = "↑↓ other server  l log  K kill  r restart  Esc back  ? help  q quit";
    frame.render_widget(Paragraph::new(fit(bar, usize::from(keys.width))), keys);
}

/// One instance: what the server says of it, and what `/proc` says of
/// its process group (`tool`, if it was seen).
fn row(
    s: &Server,
    i: &InstanceState,
    tool: Option<&ToolUsage>,
    app: &App,
    theme: Theme,
) -> Row<'static> {
    let since =
        |t: &str| state::parse_time(t).map(|t| app.now.duration_since(t).unwrap_or_default());
    let wait = match s.health {
        Health::Dead => None,
        _ => i.oldest_in_flight_at.as_deref().and_then(since),
    };
    let level = wait.map_or(Level::Normal, |w| app::judge_wait(w, s));
    let pid = match i.pid {
        0 => "-".to_owned(),
        pid => pid.to_string(),
    };
    Row::new([
        Cell::from(pid),
        Cell::from(i.state.clone()).style(theme.state(&i.state)),
        Cell::from(i.requests.to_string()),
        Cell::from(i.records.to_string()),
        Cell::from(since(&i.started_at).map_or("-".into(), age)),
        theme.figure(wait.map_or("-".into(), age), level),
        Cell::from(live(s, || tool.map_or("-".into(), |t| bytes(t.rss)))),
        Cell::from(
            tool.and_then(|t| t.cpu)
                .map_or("-".into(), |c| format!("{c:.0}%")),
        ),
        Cell::from(tool.map_or("-".into(), |t| t.processes.to_string())),
    ])
}

/// How many instances run against how many may: for a `--fork` server,
/// the calls its children run (its fork server is not one of them).
fn how_many(st: &crate::core::state::ServerState) -> String {
    if st.is_fork() {
        let calls = st.clients_active;
        return format!(
            "{calls} call{} of at most {} at once",
            if calls == 1 { "" } else { "s" },
            st.max_instances
        );
    }
    format!(
        "{} of at most {}{}",
        st.instances.len(),
        st.max_instances,
        if st.interleave { ", interleaved" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::core::state::InstanceState;

    /// The fixture's busy server with a second instance, replaced by a
    /// restart and finishing a record it has had for 15 s.
    fn with_a_retiring_instance() -> App {
        let mut app = fixture();
        let busy = app
            .servers
            .iter_mut()
            .find(|s| s.state.short_id() == "3f2a9c1b7d4e")
            .unwrap();
        busy.state.instances.push(InstanceState {
            pid: 3999,
            state: "retiring".into(),
            started_at: "2026-11-25T10:00:00.000Z".into(),
            requests: 900,
            records: 9000,
            oldest_in_flight_at: Some("2026-11-25T11:59:45.000Z".into()),
        });
        if let Some(d) = &mut app.detail {
            d.tools.push(ToolUsage {
                pid: 3999,
                rss: 30 << 20,
                cpu: Some(99.0),
                processes: 3,
            });
        }
        app
    }

    #[test]
    fn i_shows_each_instance_with_what_it_did_and_uses() {
        let mut app = with_a_retiring_instance();
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Char('i'));
        let screen = render(&app, 100, 16, false);
        assert!(screen.contains("instances of 3f2a9c1b7d4e"), "{screen}");
        let row = |pid: &str| {
            screen
                .lines()
                .find(|l| l.trim_start_matches('"').starts_with(pid))
                .unwrap_or_else(|| panic!("no row {pid}: {screen}"))
                .trim_matches('"')
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("4243"),
            [
                "4243", "busy", "1234", "12340", "2h", "-", "52M", "12%", "1"
            ],
            "{screen}"
        );
        assert_eq!(
            row("3999"),
            [
                "3999", "retiring", "900", "9000", "2h", "15s!", "30M", "99%", "3"
            ],
            "{screen}"
        );
        at_both_sizes("instances", &app);
        // ↑ goes on to another server; Esc goes back to the table.
        press(&mut app, KeyCode::Up);
        let screen = render(&app, 100, 16, false);
        assert!(screen.contains("instances of dead00beef01"), "{screen}");
        assert!(
            screen.contains("none running: the server is dead"),
            "{screen}"
        );
        press(&mut app, KeyCode::Esc);
        assert!(!app.instances_open && !app.quit);
        assert!(render(&app, 100, 16, false).contains("COMMAND"));
    }

    /// A `--fork` server lists its fork server and a child per call; the
    /// header counts the calls against `-j`, not the fork server as one.
    #[test]
    fn a_fork_servers_header_counts_its_calls() {
        let mut fork = crate::tui::app::tests::server(
            "f0f0f0f0f0f0",
            "python3 summarize.py",
            "2026-11-25T11:00:00.000Z",
            5,
        );
        fork.state.framing = vec!["--fork".into()];
        fork.state.max_instances = 1;
        fork.state.clients_active = 1;
        fork.state.instances.push(InstanceState {
            pid: 4300,
            state: "busy".into(),
            started_at: "2026-11-25T11:59:58.000Z".into(),
            requests: 1,
            records: 1,
            oldest_in_flight_at: Some("2026-11-25T11:59:58.000Z".into()),
        });
        let mut app = crate::tui::app::tests::app_with(vec![fork]);
        press(&mut app, KeyCode::Char('i'));
        let screen = render(&app, 100, 16, false);
        assert!(screen.contains("1 call of at most 1 at once"), "{screen}");
    }
}
