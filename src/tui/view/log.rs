//! The log view: a server's log over the whole screen.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::text::fit;
use super::{Theme, full_screen, status_line};
use crate::tui::app::{self, App};
use crate::tui::logview::LogView;

/// The log view: a server's log over the whole screen.
pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, view: &LogView, theme: Theme) {
    let [header, body, status, keys] = full_screen(area);
    let rows = usize::from(body.height);
    view.page.set(rows.max(1));
    let server = app.servers.iter().find(|s| s.state.id == view.id);
    let from = view.top_for(rows);
    let to = (from + rows).min(view.lines.len());
    let mut title = vec![
        Span::styled(format!(" log of {} ", app::short(&view.id)), theme.title()),
        Span::raw(server.map_or(String::new(), |s| {
            format!(
                " {} ({})",
                app::short_command(s),
                app::state_label(s, app.now)
            )
        })),
        Span::raw(format!(
            "   {}–{to} of {}",
            (from + 1).min(to),
            view.lines.len()
        )),
    ];
    title.push(Span::raw(if view.follow { "   following" } else { "" }));
    title.push(Span::raw(if view.wrap { "   wrapped" } else { "" }));
    frame.render_widget(Paragraph::new(Line::from(title)), header);
    let needle = view.search.to_lowercase();
    let lines: Vec<Line> = view.lines[from..to]
        .iter()
        .map(|l| highlighted(l, &needle))
        .collect();
    let mut text = Paragraph::new(lines);
    if view.wrap {
        text = text.wrap(Wrap { trim: false });
    }
    frame.render_widget(text, body);
    let typing = view.searching.then_some(("search: ", view.search.as_str()));
    frame.render_widget(Paragraph::new(status_line(app, typing, theme)), status);
    let bar =
        "↑↓ PgUp PgDn scroll  g G top/end  f follow  w wrap  / search  n N next/prev  Esc back";
    frame.render_widget(Paragraph::new(fit(bar, usize::from(keys.width))), keys);
}

/// `line` with each case-blind match of `needle` reversed (the whole line
/// where lower-casing changes its length, so the matches cannot be
/// placed).
fn highlighted(line: &str, needle: &str) -> Line<'static> {
    let lower = line.to_lowercase();
    if needle.is_empty() || !lower.contains(needle) {
        return Line::raw(line.to_owned());
    }
    let mark = Style::new().add_modifier(Modifier::REVERSED);
    if lower.len() != line.len() {
        return Line::styled(line.to_owned(), mark);
    }
    let mut spans = Vec::new();
    let mut at = 0;
    for (i, _) in lower.match_indices(needle) {
        spans.push(Span::raw(line[at..i].to_owned()));
        spans.push(Span::styled(line[i..i + needle.len()].to_owned(), mark));
        at = i + needle.len();
    }
    spans.push(Span::raw(line[at..].to_owned()));
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn l_shows_the_whole_log_of_the_selected_server_even_a_dead_one() {
        let mut app = fixture();
        let dead = app.visible()[0].state.id.clone();
        press(&mut app, KeyCode::Char('l'));
        let lines: Vec<String> = (0..500)
            .map(|i| format!("2026-11-25T08:00:00.000Z  INFO line {i}"))
            .chain(["2026-11-25T08:59:59.000Z  WARN tool exited: signal 9".to_owned()])
            .collect();
        app.update(Event::Refresh(Snapshot {
            now: app.now,
            error: None,
            servers: app.servers.clone(),
            detail: None,
            log: Some((dead, lines)),
        }));
        let screen = render(&app, 100, 20, false);
        assert!(screen.contains("log of dead00beef01"), "{screen}");
        assert!(
            screen.contains("tool exited: signal 9"),
            "the end, followed: {screen}"
        );
        assert!(screen.contains("485–501 of 501"), "{screen}");
        press(&mut app, KeyCode::Char('/'));
        for c in "line 42".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        press(&mut app, KeyCode::Enter);
        let screen = render(&app, 100, 20, false);
        let first = screen.lines().nth(1).unwrap();
        assert!(first.contains("INFO line 42"), "{screen}");
        at_both_sizes("log_searched", &app);
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Esc);
        let screen = render(&app, 100, 20, false);
        assert!(screen.contains("STATE"), "back to the table: {screen}");
        assert!(!app.quit);
    }
}
