//! The title line: how many servers in which state, what they do in all,
//! which rows the table shows, the sort and the filter.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Theme;
use super::table::sort_arrow;
use super::text::{bytes, count};
use crate::core::state::Health;
use crate::tui::app::{self, App};

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let total = app.servers.len();
    let rows = app.visible().len();
    let shown = if app.filter.is_empty() {
        String::new()
    } else {
        format!("{rows} of ")
    };
    // Parts with a rank: on a narrow terminal the highest give way first.
    let mut parts: Vec<(u8, Vec<Span>)> = vec![(
        0,
        vec![
            Span::styled(" viasock top ", theme.title()),
            Span::raw(format!(" {shown}{total} server{}", plural(total as u64))),
        ],
    )];
    if app.paused {
        parts.push((0, vec![Span::styled("  paused (p resumes)", theme.title())]));
    }
    // How many are in each state: the states that ask for a look first,
    // and they stay when the calm ones give way; then the errors of the
    // last minute, which narrow tables have no column for.
    let count_of = |state: &str| {
        app.servers
            .iter()
            .filter(|s| app::state_label(s, app.now) == state)
            .count()
    };
    let calm = |state: &str| matches!(state, "busy" | "ready" | "remote");
    for (rank, keep) in [(1, false), (2, true)] {
        let mut states = Vec::new();
        for state in app::STATES.into_iter().filter(|s| calm(s) == keep) {
            let n = count_of(state);
            if n > 0 {
                states.push(Span::raw(", "));
                states.push(Span::styled(format!("{n} {state}"), theme.state(state)));
            }
        }
        parts.push((rank, states));
    }
    let errors: u64 = app
        .servers
        .iter()
        .filter(|s| s.health != Health::Dead)
        .map(|s| s.state.errors_last_minute)
        .sum();
    if errors > 0 {
        let text = format!(", {errors} error{} in 1 min", plural(errors));
        parts.push((1, vec![theme.figure_span(text, app::Level::Alarm)]));
    }
    let live = || app.servers.iter().filter(|s| s.health == Health::Live);
    let rate: f64 = live().map(app::rate).sum();
    let memory: u64 = live().map(|s| s.tool_memory).sum();
    if total > 0 {
        parts.push((
            3,
            vec![Span::raw(format!(
                "   {} rec/s  {} mem",
                count(rate as u64),
                bytes(memory)
            ))],
        ));
    }
    // Which rows the table shows, when not all of them fit.
    let (from, page) = (app.scroll.get(), app.page.get());
    if rows > page {
        let to = (from + page).min(rows);
        parts.push((
            2,
            vec![Span::raw(format!("   {}–{to} of {rows}", from + 1))],
        ));
    }
    parts.push((
        0,
        vec![Span::raw(format!(
            "   sort: {} {}",
            app.sort.name(),
            sort_arrow(app)
        ))],
    ));
    if !app.filter.is_empty() && !app.filtering {
        parts.push((1, vec![Span::raw(format!("   filter: {}", app.filter))]));
    }
    let width = |p: &[(u8, Vec<Span>)]| -> usize {
        p.iter()
            .flat_map(|(_, spans)| spans.iter().map(Span::width))
            .sum()
    };
    for rank in [3, 2, 1] {
        if width(&parts) > usize::from(area.width) {
            parts.retain(|(r, _)| *r != rank);
        }
    }
    let mut spans: Vec<Span> = parts.into_iter().flat_map(|(_, spans)| spans).collect();
    // The first count follows the number of servers after a colon.
    if let Some(first) = spans.iter_mut().find(|s| s.content == ", ") {
        *first = Span::raw(": ");
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn p_pauses_the_refresh() {
        let mut app = fixture();
        press(&mut app, KeyCode::Char('p'));
        app.update(Event::Refresh(Snapshot {
            now: at("2026-11-25T12:00:05.000Z"),
            error: None,
            servers: vec![],
            detail: None,
            log: None,
        }));
        let screen = render(&app, 100, 12, false);
        assert_eq!(app.visible().len(), 4, "{screen}");
        assert!(screen.contains("paused"), "{screen}");
        press(&mut app, KeyCode::Char('p'));
        app.update(Event::Refresh(Snapshot {
            now: at("2026-11-25T12:00:06.000Z"),
            error: None,
            servers: vec![],
            detail: None,
            log: None,
        }));
        assert!(app.visible().is_empty());
    }

    #[test]
    fn the_header_says_which_rows_are_shown() {
        let mut app = many(70);
        let screen = render(&app, 120, 35, false);
        assert!(screen.contains("1–31 of 70"), "{screen}");
        press(&mut app, KeyCode::PageDown);
        press(&mut app, KeyCode::PageDown);
        let screen = render(&app, 120, 35, false);
        assert!(screen.contains("33–63 of 70"), "{screen}");
        let screen = render(&fixture(), 120, 35, false);
        assert!(!screen.contains(" of 4"), "all rows shown: {screen}");
    }

    #[test]
    fn the_header_sums_up_states_rate_and_memory() {
        let screen = render(&fixture(), 120, 12, false);
        let header = screen.lines().next().unwrap();
        for part in ["1 busy", "1 stale", "1 ready", "1 dead", "54 rec/s", "144M"] {
            assert!(header.contains(part), "{part}: {header}");
        }
    }

    #[test]
    fn sorted_and_filtered_header() {
        let mut app = fixture();
        while app.sort != app::SortKey::Id {
            press(&mut app, KeyCode::Char('s'));
        }
        press(&mut app, KeyCode::Char('S'));
        press(&mut app, KeyCode::Char('/'));
        for ch in "model".chars() {
            press(&mut app, KeyCode::Char(ch));
        }
        press(&mut app, KeyCode::Enter);
        at_both_sizes("sorted_and_filtered", &app);
    }

    #[test]
    fn at_80_columns_the_header_keeps_the_states_that_ask_for_a_look_and_the_errors() {
        let mut servers: Vec<_> = (0..29)
            .map(|i| server(&format!("{i:012}"), "cat", "2026-11-25T11:00:00.000Z", 1))
            .collect();
        let mut stuck = server("a00000000000", "tag", "2026-11-25T11:00:00.000Z", 1);
        stuck.state.state = crate::core::state::Phase::Busy;
        stuck.state.oldest_in_flight_at = Some("2026-11-25T11:50:00.000Z".into());
        let mut failing = server("b00000000000", "sh", "2026-11-25T11:00:00.000Z", 1);
        failing.state.errors_last_minute = 3;
        servers.extend([stuck, failing]);
        let mut app = app_with(servers);
        while app.sort != app::SortKey::Id {
            press(&mut app, KeyCode::Char('s'));
        }
        let screen = render(&app, 80, 24, false);
        let header = screen.lines().next().unwrap();
        assert!(header.contains("31 servers: 1 stuck"), "{header}");
        assert!(header.contains("3 errors in 1 min!!"), "{header}");
        assert!(
            !header.contains("30 ready"),
            "the calm ones give way: {header}"
        );
        let wide = render(&app, 160, 24, false);
        let header = wide.lines().next().unwrap();
        assert!(header.contains("1 stuck, 30 ready, 3 errors"), "{header}");
    }
}
