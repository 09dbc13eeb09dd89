//! The log view: a server's log over the whole screen.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::text::{fit, title_line, wrap_columns};
use super::{Theme, full_screen, status_line};
use crate::tui::app::{self, App};
use crate::tui::logview::LogView;

/// The log view: a server's log over the whole screen.
pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, view: &LogView, theme: Theme) {
    let [header, body, status, keys] = full_screen(area);
    let (rows, cols) = (usize::from(body.height).max(1), usize::from(body.width));
    // Each line as the rows it takes: wrapped, or cut with `…`.
    let shown = |i: usize| match view.wrap {
        true => wrap_columns(&view.lines[i], cols, usize::MAX),
        false => vec![fit(&view.lines[i], cols)],
    };
    let taken = |i: usize| shown(i).len();
    // The top that shows the end, and the screen full from the top asked
    // for: a top past it shows the end, not blank rows.
    let end_top = last_page_top(view.lines.len(), rows, taken);
    view.end_top.set(Some(end_top));
    let from = match view.follow {
        true => end_top,
        false => view.top.min(end_top),
    };
    // The rows on screen, each line wrapped or cut once.
    let mut on_screen: Vec<String> = Vec::with_capacity(rows);
    let mut to = from;
    while to < view.lines.len() {
        let line = shown(to);
        if to > from && on_screen.len() + line.len() > rows {
            break;
        }
        on_screen.extend(line);
        to += 1;
    }
    view.page.set((to - from).max(1));
    let server = app.servers.iter().find(|s| s.state.id == view.id);
    let tail = format!(
        "{}   {}–{to} of {}{}{}",
        server.map_or(String::new(), |s| format!(
            " ({})",
            app::state_label(s, app.now)
        )),
        (from + 1).min(to),
        view.lines.len(),
        if view.follow { "   following" } else { "" },
        if view.wrap { "   wrapped" } else { "" },
    );
    let title = title_line(
        format!(" log of {}  ", app::short(&view.id)),
        theme.title(),
        &server.map_or(String::new(), app::short_command),
        tail,
        usize::from(header.width),
    );
    frame.render_widget(Paragraph::new(title), header);
    let needle = view.search.to_lowercase();
    let lines: Vec<Line> = on_screen
        .iter()
        .map(|row| highlighted(row, &needle))
        .collect();
    frame.render_widget(Paragraph::new(lines), body);
    let typing = view.searching.then_some(("search: ", view.search.as_str()));
    frame.render_widget(Paragraph::new(status_line(app, typing, theme)), status);
    let bar =
        "↑↓ PgUp PgDn scroll  g G top/end  f follow  w wrap  / search  n N next/prev  Esc back";
    frame.render_widget(Paragraph::new(fit(bar, usize::from(keys.width))), keys);
}

/// The first of `n` lines that, with all after it, fits in `rows` rows
/// when line `i` takes `taken(i)` of them (the last line alone if even
/// it does not fit).
fn last_page_top(n: usize, rows: usize, taken: impl Fn(usize) -> usize) -> usize {
    let mut top = n;
    let mut used = 0;
    while top > 0 {
        let t = taken(top - 1);
        if used + t > rows && top < n {
            break;
        }
        used += t;
        top -= 1;
    }
    top
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

    /// The fixture with the log view of its first server open, holding
    /// `lines`.
    fn log_of(lines: Vec<String>) -> App {
        let mut app = fixture();
        let id = app.visible()[0].state.id.clone();
        press(&mut app, KeyCode::Char('l'));
        app.update(Event::Refresh(Snapshot {
            now: app.now,
            error: None,
            servers: app.servers.clone(),
            detail: None,
            log: Some((id, lines)),
        }));
        app
    }

    /// Rows 2 to the status line: the log's rows.
    fn body(screen: &str, height: usize) -> Vec<String> {
        screen
            .lines()
            .skip(1)
            .take(height - 3)
            .map(|l| l.trim_matches('"').trim_end().to_owned())
            .collect()
    }

    #[test]
    fn wrapped_lines_still_show_the_end_and_the_range_on_screen() {
        let lines = (1..=300)
            .map(|i| format!("line {i} {}", "word ".repeat(30)))
            .collect();
        let mut app = log_of(lines);
        press(&mut app, KeyCode::Char('w'));
        let screen = render(&app, 100, 20, false);
        let rows = body(&screen, 20);
        assert!(rows.iter().any(|r| r.starts_with("line 300 ")), "{screen}");
        // 17 rows, two a line: the last 8 lines, the first of them whole.
        assert!(screen.contains("293–300 of 300"), "{screen}");
        assert!(rows[0].starts_with("line 293 "), "{screen}");
        // A page up shows the 8 before.
        press(&mut app, KeyCode::PageUp);
        let screen = render(&app, 100, 20, false);
        assert!(screen.contains("285–292 of 300"), "{screen}");
        assert!(body(&screen, 20)[0].starts_with("line 285 "), "{screen}");
    }

    #[test]
    fn a_match_near_the_end_leaves_no_blank_rows() {
        let mut app = log_of((1..=300).map(|i| format!("line {i}")).collect());
        press(&mut app, KeyCode::Char('g'));
        press(&mut app, KeyCode::Char('/'));
        for c in "line 299".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        press(&mut app, KeyCode::Enter);
        let screen = render(&app, 100, 20, false);
        let rows = body(&screen, 20);
        assert!(rows.iter().all(|r| !r.is_empty()), "{screen}");
        assert!(rows.iter().any(|r| r == "line 299"), "{screen}");
        assert_eq!(rows.last().unwrap(), "line 300", "{screen}");
    }

    #[test]
    fn long_lines_and_a_long_command_are_cut_with_an_ellipsis() {
        let mut app = log_of(vec![format!("start {} end", "x".repeat(200))]);
        let id = app.log.as_ref().unwrap().id.clone();
        let server = app.servers.iter_mut().find(|s| s.state.id == id).unwrap();
        server.state.command = std::iter::once("tool".to_owned())
            .chain((0..40).map(|i| format!("--opt{i}=値")))
            .collect();
        let screen = render(&app, 100, 20, false);
        let top = screen.lines().next().unwrap();
        assert!(top.contains('…') && top.contains("1–1 of 1"), "{screen}");
        let row = &body(&screen, 20)[0];
        assert!(row.starts_with("start x") && row.ends_with('…'), "{screen}");
    }
}
