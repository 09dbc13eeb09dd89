//! The help: the keys, and what the states and columns mean.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};

use super::popup_area;

/// The keys, or (`legend`) what the states, columns and marks mean.
/// Each page fits a classic 80×24 terminal.
pub(super) fn draw(frame: &mut Frame, area: Rect, legend: bool) {
    let keys = [
        ("↑ ↓  j k", "move the selection"),
        ("PgUp PgDn", "move a page (the rows shown)"),
        ("g G  Home End", "first / last server"),
        ("Enter", "open or close the detail pane"),
        ("i", "its tool instances, over the whole screen"),
        ("l", "its whole log: scroll, follow, wrap, search"),
        ("K  Delete", "kill the server (asks; f: at once)"),
        ("r", "restart its tool (asks first)"),
        ("< >  s  S", "sort column left / right / next; reverse"),
        ("/", "filter by command (Esc clears)"),
        ("p", "pause the refresh, or resume it"),
        ("c", "clean up after dead servers"),
        ("mouse", "click selects or sorts, wheel scrolls;"),
        ("", "Shift+drag selects text, m turns it off"),
        ("Esc", "close a view, the pane or the filter; quit"),
        ("?  q  Ctrl-C", "the legend / quit"),
    ];
    let meanings = [
        "STATE  starting (no tool ready yet), ready, busy,",
        "       stuck (a record in flight for far too long),",
        "       draining (stopping), stale (tool or model changed),",
        "       unresponsive (silent for 5 s: stopped or wedged),",
        "       dead (its process is gone), remote (another host's)",
        "INST   busy/running tool instances",
        "CLNT   calls being served, +N waiting for an instance",
        "OLDEST how long the oldest record in flight has waited:",
        "       ! from 10 s, !! (stuck) from 60 s, or 3× and 10×",
        "       the server's p99 if its records take that long",
        "ERR    calls that failed in the last minute (!! if any)",
        "IDLE   time left before an idle server stops",
        "P50/P99  per record, from its writing to the tool to its",
        "       answer: time queued in the tool's input included",
        "MEM CPU  its tools' memory, and share of one core",
        "BEAT   age of its last word (! from 2 s, !! from 5 s)",
        "In colour, ! is yellow and !! red; NO_COLOR shows marks.",
    ];
    let (title, text): (&str, Vec<Line>) = if legend {
        (
            " Legend · ? keys · any other key closes ",
            meanings
                .iter()
                .map(|l| Line::from(format!(" {l}")))
                .collect(),
        )
    } else {
        (
            " Keys · ? legend · any other key closes ",
            keys.iter()
                .map(|(k, what)| Line::from(format!(" {k:<15} {what}")))
                .collect(),
        )
    };
    let rect = popup_area(area, 62, text.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(title)),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn help_popup() {
        let mut app = fixture();
        press(&mut app, KeyCode::Char('?'));
        at_both_sizes("help", &app);
        press(&mut app, KeyCode::Char('?'));
        at_both_sizes("help_legend", &app);
        press(&mut app, KeyCode::Char('x'));
        assert_eq!(app.popup, None);
    }
}
