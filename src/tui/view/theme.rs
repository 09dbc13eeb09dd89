//! The monitor's styles, or none of them under `NO_COLOR`.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::Cell;

use crate::tui::app::Level;

/// Styles, or none of them when the user asked for no colour (`NO_COLOR`).
#[derive(Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub(super) fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub(super) fn state(self, label: &str) -> Style {
        match label {
            "dead" | "stuck" | "unresponsive" => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            "stale" | "draining" | "retiring" => self.fg(Color::Yellow),
            "busy" => self.fg(Color::Green),
            "starting" => self.fg(Color::Cyan),
            _ => Style::new(),
        }
    }

    pub(super) fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub(super) fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    /// A figure coloured by how much it asks for a look: yellow, or red
    /// and bold. Without colour it says so in text: `!` or `!!` after it.
    pub(super) fn figure(self, text: String, level: Level) -> Cell<'static> {
        Cell::from(self.figure_span(text, level))
    }

    /// [`figure`](Self::figure) as a span of a line.
    pub(super) fn figure_span(self, text: String, level: Level) -> Span<'static> {
        match (level, self.color) {
            (Level::Normal, _) => Span::raw(text),
            (Level::Warn, true) => Span::styled(text, self.fg(Color::Yellow)),
            (Level::Alarm, true) => {
                Span::styled(text, self.fg(Color::Red).add_modifier(Modifier::BOLD))
            }
            (_, false) => Span::raw(format!("{text}{}", level.mark())),
        }
    }
}
