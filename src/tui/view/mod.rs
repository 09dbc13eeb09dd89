//! Drawing the monitor: a pure function of the [`App`]. No state lives
//! here. Each view has a file of its own: the table with its header
//! line, the detail pane, the log view, the dialogs and the help.

mod detail;
mod dialogs;
mod header;
mod help;
mod instances;
mod log;
mod table;
mod text;
mod theme;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub use theme::Theme;

use crate::tui::app::{App, Popup};

pub fn draw(frame: &mut Frame, app: &App, theme: Theme) {
    let area = frame.area();
    if let Some(view) = &app.log {
        log::draw(frame, area, app, view, theme);
        return;
    }
    if app.instances_open {
        instances::draw(frame, area, app, theme);
    } else {
        draw_table_screen(frame, area, app, theme);
    }
    match &app.popup {
        Some(Popup::Confirm(c)) => dialogs::draw(frame, area, &c.action, &c.command, theme),
        Some(Popup::Help { legend }) => help::draw(frame, area, *legend),
        None => {}
    }
}

/// The table with its header line, the detail pane if open, the status
/// line and the keys.
fn draw_table_screen(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    // A long command line takes more of the pane; the log keeps its lines.
    let detail_height = match app.selected_server() {
        Some(s) if app.detail_open => {
            (15 + detail::command_lines(s, area.width)).min(area.height.saturating_sub(6))
        }
        _ => 0,
    };
    let [header, table, detail, status, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(detail_height),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    // The table first: the header says which of its rows it showed.
    table::draw(frame, table, app, theme);
    header::draw(frame, header, app, theme);
    if app.detail_open {
        detail::draw(frame, detail, app, theme);
    }
    let typing = app.filtering.then_some(("filter: ", app.filter.as_str()));
    frame.render_widget(Paragraph::new(status_line(app, typing, theme)), status);
    frame.render_widget(
        Paragraph::new(key_bar(theme, app.filtering, keys.width)),
        keys,
    );
}

/// The rows of a view over the whole screen: its title line, its body,
/// the status line and the keys.
pub(super) fn full_screen(area: Rect) -> [Rect; 4] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// The status line: what is being typed (`label`, `text`) with a cursor,
/// else the last outcome.
pub(super) fn status_line<'a>(
    app: &'a App,
    typing: Option<(&'a str, &'a str)>,
    theme: Theme,
) -> Line<'a> {
    match (typing, &app.status) {
        (Some((label, text)), _) => Line::from(vec![
            Span::styled(label, theme.title()),
            Span::raw(format!("{text}▏")),
        ]),
        (None, Some(s)) => Line::from(s.as_str()),
        (None, None) => Line::default(),
    }
}

/// The keys that fit in `width` columns: all of them in 80; narrower,
/// those on the right give way first, but help and quit always show.
pub(super) fn key_bar(theme: Theme, filtering: bool, width: u16) -> Line<'static> {
    use unicode_width::UnicodeWidthStr;
    let keys: &[(&str, &str)] = if filtering {
        &[
            ("Enter", "keep the filter"),
            ("Esc", "clear it"),
            ("⌫", "erase"),
        ]
    } else {
        &[
            ("↑↓", "move"),
            ("Enter", "details"),
            ("K", "kill"),
            ("r", "restart"),
            ("s", "sort"),
            ("/", "filter"),
            ("?", "help"),
            ("q", "quit"),
        ]
    };
    let essential = |k: &str| matches!(k, "?" | "q");
    let cost = |&&(k, what): &&(&str, &str)| k.width() + 1 + what.width() + 2;
    let mut shown: Vec<&(&str, &str)> = keys.iter().collect();
    while shown.iter().map(cost).sum::<usize>() > usize::from(width) + 2 {
        match shown.iter().rposition(|(k, _)| !essential(k)) {
            Some(i) => {
                shown.remove(i);
            }
            None => break,
        }
    }
    let mut spans = Vec::new();
    for &&(k, what) in &shown {
        spans.push(Span::styled(k, theme.title()));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    Line::from(spans)
}

pub(super) fn popup_area(area: Rect, width: u16, height: u16) -> Rect {
    let [_, row, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, cell, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width.min(area.width)),
        Constraint::Fill(1),
    ])
    .areas(row);
    cell
}

/// What the view tests share: a fixture of four servers, drawing to a
/// test terminal, keys, and snapshots at both classic sizes.
#[cfg(test)]
pub(super) mod testing {
    pub use super::*;
    pub use crate::core::state::Health;
    pub use crate::tui::app::tests::{app_with, at, server};
    pub use crate::tui::app::{self, App};
    pub use crate::tui::event::{Detail, Event, Snapshot, ToolUsage};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    pub use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    pub fn fixture() -> App {
        let mut busy = server(
            "3f2a9c1b7d4e",
            "tokenize --model models/en",
            "2026-11-25T09:12:00.000Z",
            1234,
        );
        busy.state.state = crate::core::state::Phase::Busy;
        busy.state.clients_active = 2;
        busy.state.clients_waiting = 1;
        busy.state.instances[0].state = "busy".into();
        busy.state.idle_deadline_at = None;
        let mut stale = server(
            "9c0ffee12345",
            "parse -m models/de.bin",
            "2026-11-25T11:58:00.000Z",
            7,
        );
        stale.state.state = crate::core::state::Phase::Stale;
        let mut dead = server(
            "dead00beef01",
            "sed -u s/a/b/",
            "2026-11-25T08:00:00.000Z",
            3,
        );
        // As `Found::shown_state` hands it over: nothing of it runs.
        dead.health = Health::Dead;
        dead.tool_memory = 0;
        dead.state.instances.clear();
        dead.state.throughput.clear();
        dead.state.idle_deadline_at = None;
        let ready = server("0a1b2c3d4e5f", "cat", "2026-11-25T11:59:30.000Z", 0);
        let mut app = App::new();
        app.update(Event::Refresh(Snapshot {
            now: at("2026-11-25T12:00:00.000Z"),
            error: None,
            servers: vec![busy, stale, dead, ready],
            detail: Some(Detail {
                id: format!("{:0<64}", "3f2a9c1b7d4e"),
                tools: vec![ToolUsage {
                    pid: 4243,
                    rss: 52 << 20,
                    cpu: Some(12.0),
                    processes: 1,
                }],
                log_tail: vec![
                    "2026-11-25T11:59:58.101Z  INFO tool started: tokenize --model models/en pid=4243".into(),
                    "2026-11-25T11:59:59.500Z  INFO stderr: loaded 1200000 entries pid=4243".into(),
                ],
            }),
            log: None,
        }));
        app
    }

    pub fn render(app: &App, width: u16, height: u16, color: bool) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, app, Theme { color })).unwrap();
        terminal.backend().to_string()
    }

    pub fn press(app: &mut App, code: KeyCode) {
        app.update(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }

    /// `n` servers `000`, `001`, ... started a minute apart.
    pub fn many(n: usize) -> App {
        app_with(
            (0..n)
                .map(|i| {
                    let started = format!("2026-11-25T{:02}:{:02}:00.000Z", 10 + i / 60, i % 60);
                    server(&format!("{i:03}"), "cat", &started, i as u64)
                })
                .collect(),
        )
    }

    /// The server ids of the table's rows on a rendered screen.
    pub fn table_rows(screen: &str) -> Vec<String> {
        screen
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .find(|w| w.len() == 12 && w.chars().all(|c| c.is_ascii_digit()))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// The screen with what changes from run to run masked: times
    /// (`YYYY-MM-DDTHH:MM:SS.mmmZ`) and the digits of pids (`pid 123`,
    /// `pid=123`), each character kept in place so the layout shows.
    pub fn masked(screen: &str) -> String {
        let mut out: Vec<char> = screen.chars().collect();
        let shape: Vec<char> = "dddd-dd-ddTdd:dd:dd.dddZ".chars().collect();
        let mut i = 0;
        while i < out.len() {
            let fits = |at: usize| {
                shape.iter().enumerate().all(|(k, &s)| {
                    out.get(at + k).is_some_and(|&c| match s {
                        'd' => c.is_ascii_digit(),
                        s => c == s,
                    })
                })
            };
            if fits(i) {
                for (k, &s) in shape.iter().enumerate() {
                    if s == 'd' {
                        out[i + k] = '#';
                    }
                }
                i += shape.len();
                continue;
            }
            let after_pid = ["pid ", "pid="].iter().any(|p| {
                let p: Vec<char> = p.chars().collect();
                i >= p.len() && out[i - p.len()..i] == p[..]
            });
            if after_pid {
                while out.get(i).is_some_and(char::is_ascii_digit) {
                    out[i] = '#';
                    i += 1;
                }
            }
            i += 1;
        }
        out.into_iter().collect()
    }

    /// Snapshots of `app` drawn at 80×24 and at 120×35, masked.
    pub fn at_both_sizes(name: &str, app: &App) {
        for (w, h) in [(80, 24), (120, 35)] {
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), masked(&render(app, w, h, false)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;

    #[test]
    fn the_key_bar_keeps_help_and_quit_on_narrow_terminals() {
        let app = fixture();
        for width in [80, 60, 40, 30] {
            let screen = render(&app, width, 12, false);
            let bar = screen.lines().last().unwrap();
            assert!(
                bar.contains("? help") && bar.contains("q quit"),
                "{width}: {bar}"
            );
        }
    }

    #[test]
    fn tiny_terminal_does_not_panic() {
        let mut app = fixture();
        press(&mut app, KeyCode::Enter);
        for (w, h) in [(20, 5), (1, 1), (80, 8), (200, 60)] {
            render(&app, w, h, true);
        }
    }
}
