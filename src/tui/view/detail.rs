//! The detail pane of the selected server: its command line whole, its
//! paths, tools, latency and totals, a throughput sparkline and the last
//! lines of its log.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};

use super::Theme;
use super::text::{age, bytes, count, duration, fit, live, ms, wrap_columns};
use crate::core::state::Health;
use crate::tui::app::{self, App, Level};
use crate::tui::event::Server;

/// Lines the detail pane gives the command line at most.
const COMMAND_LINES: usize = 8;

/// Lines the command line of `s` takes in a detail pane `width` wide
/// (after its label).
pub(super) fn command_lines(s: &Server, width: u16) -> u16 {
    let room = usize::from(width).saturating_sub(9);
    wrap_columns(&app::command_line(s), room, COMMAND_LINES).len() as u16
}

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let Some(s) = app.selected_server() else {
        return;
    };
    let block = Block::default().borders(Borders::TOP).title(Span::styled(
        format!(" {} ", app::short(&s.state.id)),
        theme.title(),
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [facts, spark, log] = Layout::vertical([
        Constraint::Length(8 + command_lines(s, inner.width)),
        Constraint::Length(2),
        Constraint::Fill(1),
    ])
    .areas(inner);
    let detail = app.detail.as_ref().filter(|d| d.id == s.state.id);
    let tools = match detail {
        Some(d) if !d.tools.is_empty() => d
            .tools
            .iter()
            .map(|t| format!("{} ({})", t.pid, bytes(t.rss)))
            .collect::<Vec<_>>()
            .join("  "),
        _ if s.health == Health::Dead => "none running".to_owned(),
        _ => s
            .state
            .instances
            .iter()
            .map(|i| format!("{} ({})", i.pid, i.state))
            .collect::<Vec<_>>()
            .join("  "),
    };
    let st = &s.state;
    let l = &st.latency_ms;
    let label = |t: &'static str| Span::styled(format!("{t:<9}"), theme.title());
    let busy = st.busy_instances();
    let mut server = match s.health {
        // Its file's last word is all there is: when it was written.
        Health::Dead => format!(
            "pid {} on {}, dead, last heard of {} ago ({}); `c` cleans up",
            st.server_pid,
            st.host,
            crate::core::state::parse_time(&st.heartbeat_at)
                .and_then(|t| app.now.duration_since(t).ok())
                .map_or("-".into(), |d| duration(d.as_secs())),
            st.heartbeat_at,
        ),
        _ => format!(
            "pid {} on {}, {}, up {}, instances {busy} busy of {} (at most {}{})",
            st.server_pid,
            st.host,
            app::state_label(s, app.now),
            app::uptime(s, app.now).map_or("-".into(), |d| duration(d.as_secs())),
            st.instances.len(),
            st.max_instances,
            if st.interleave { ", interleaved" } else { "" },
        ),
    };
    if let Some(left) = app::idle_left(s, app.now) {
        server.push_str(&format!(", stops if idle {}", duration(left.as_secs())));
    }
    let facts_text = [
        ("cwd", st.cwd.display().to_string()),
        ("socket", st.socket.display().to_string()),
        ("log", log_line(st)),
        ("server", server),
        ("health", health(s, app.now)),
        ("tools", tools),
        (
            "latency",
            format!(
                "p50 {}  p95 {}  p99 {}  max {}  (per record, last 60 s)",
                ms(l.p50),
                ms(l.p95),
                ms(l.p99),
                ms(l.max),
            ),
        ),
        (
            "totals",
            format!(
                "{} requests, {} records, {} errors, {} in, {} out",
                st.requests_total,
                st.records_total,
                st.errors_total,
                bytes(st.bytes_in),
                bytes(st.bytes_out),
            ),
        ),
    ];
    // The command line whole, over as many lines as it takes (up to
    // COMMAND_LINES); every other fact on one line, cut with `…`.
    let room = usize::from(facts.width).saturating_sub(9);
    let mut lines: Vec<Line> = wrap_columns(&app::command_line(s), room, COMMAND_LINES)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let head = if i == 0 { label("command") } else { label("") };
            Line::from(vec![head, Span::raw(part)])
        })
        .collect();
    lines.extend(
        facts_text
            .into_iter()
            .map(|(name, value)| Line::from(vec![label(name), Span::raw(fit(&value, room))])),
    );
    frame.render_widget(Paragraph::new(lines), facts);
    let [spark_label, spark_area] =
        Layout::horizontal([Constraint::Length(16), Constraint::Fill(1)]).areas(spark);
    let data: Vec<u64> = s.state.throughput.iter().map(|&v| v as u64).collect();
    let peak = data.iter().copied().max().unwrap_or(0);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                label("rec/s"),
                Span::raw(format!("now {}", live(s, || count(app::rate(s) as u64)))),
            ]),
            Line::from(format!("{:<9}max {}", "", count(peak))),
        ]),
        spark_label,
    );
    frame.render_widget(
        Sparkline::default()
            .data(&data)
            .style(theme.fg(Color::Green)),
        spark_area,
    );
    let log_lines: Vec<Line> = detail
        .map(|d| {
            d.log_tail
                .iter()
                .map(|l| Line::styled(fit(l, usize::from(log.width)), theme.dim()))
                .collect()
        })
        .unwrap_or_default();
    frame.render_widget(Paragraph::new(log_lines), log);
}

/// The log's path, and how many lines could not be written to it.
fn log_line(st: &crate::core::state::ServerState) -> String {
    match st.log_lines_dropped {
        0 => st.log.display().to_string(),
        n => format!(
            "{} ({n} lines could not be written: a full disk?)",
            st.log.display()
        ),
    }
}

/// The signs of trouble of a server in words: how old its last word is,
/// how long its oldest record in flight has waited, its recent errors;
/// each marked `!` or `!!` when it asks for a look, as the table's
/// figures are without colour (this line has none).
fn health(s: &Server, now: std::time::SystemTime) -> String {
    if s.health == Health::Dead {
        return format!(
            "dead; {} errors in its last minute",
            s.state.errors_last_minute
        );
    }
    let mark = Level::mark;
    let beat = app::heartbeat_age(s, now).map_or("never".into(), |a| format!("{} ago", age(a)));
    let wait = match app::oldest_wait(s, now) {
        None => "no record in flight".to_owned(),
        Some(w) => format!(
            "oldest record in flight {}{}",
            age(w),
            mark(app::wait_level(s, now))
        ),
    };
    format!(
        "heard from {beat}{}, {wait}, {} errors in the last minute{}",
        mark(app::beat_level(s, now)),
        s.state.errors_last_minute,
        mark(app::errors_level(s)),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn detail_snapshots() {
        let mut app = fixture();
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Enter);
        at_both_sizes("detail", &app);
    }

    #[test]
    fn a_dead_server_detail_shows_its_log_and_nothing_running() {
        let mut app = fixture();
        let dead = app.visible()[0].state.clone();
        assert_eq!(dead.short_id(), "dead00beef01");
        app.update(Event::Refresh(Snapshot {
            now: app.now,
            error: None,
            servers: app.servers.clone(),
            detail: Some(Detail {
                id: dead.id.clone(),
                tools: vec![],
                log_tail: vec!["2026-11-25T08:59:59.000Z  WARN tool exited: signal 9".into()],
            }),
            log: None,
        }));
        press(&mut app, KeyCode::Enter);
        let screen = render(&app, 100, 30, false);
        assert!(screen.contains("tool exited: signal 9"), "{screen}");
        assert!(screen.contains("dead, last heard of"), "{screen}");
        assert!(!screen.contains("busy of"), "{screen}");
        at_both_sizes("detail_of_a_dead_server", &app);
    }

    #[test]
    fn the_detail_pane_shows_the_whole_command_quoted_and_cuts_the_rest_with_an_ellipsis() {
        let mut s = server("5b5b5b5b5b5b", "cut", "2026-11-25T11:00:00.000Z", 1);
        s.state.command = ["cut", "-d", " ", "-f1"].map(String::from).to_vec();
        s.state
            .command
            .extend((0..8).map(|i| format!("/srv/corpora/newspapers/part-{i:04}.txt")));
        s.state.cwd = format!("/home/ada/{}", "very-long-directory-name/".repeat(6)).into();
        let whole = s.state.command_line();
        let mut app = app_with(vec![s]);
        press(&mut app, KeyCode::Enter);
        let screen = render(&app, 80, 30, false);
        let lines: Vec<&str> = screen.lines().map(|l| l.trim_matches('"')).collect();
        let first = lines
            .iter()
            .position(|l| l.starts_with("command "))
            .unwrap();
        let shown: String = lines[first..]
            .iter()
            .take_while(|l| l.starts_with("command ") || l.starts_with("         "))
            .map(|l| l[9..].trim_end())
            .collect();
        // Wrapped at spaces: compared without the spaces that padding
        // and line ends add or take.
        assert!(lines[first].contains("cut -d ' ' -f1"), "{screen}");
        assert_eq!(shown.replace(' ', ""), whole.replace(' ', ""), "{screen}");
        let cwd = lines.iter().find(|l| l.starts_with("cwd ")).unwrap();
        assert!(cwd.trim_end().ends_with('…'), "{screen}");
    }
}
