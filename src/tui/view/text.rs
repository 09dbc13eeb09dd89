//! Figures and text as the monitor shows them: cut to terminal columns,
//! wrapped, and numbers in a few characters.

use crate::core::state::Health;
use crate::tui::event::Server;

/// `text` cut to `width` columns from the left (`…` first): the end of a
/// path says most.
pub(super) fn fit_start(text: &str, width: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    if text.width() <= width {
        return text.to_owned();
    }
    let room = width.saturating_sub(1);
    let mut used = 0;
    let tail: Vec<char> = text
        .chars()
        .rev()
        .take_while(|c| {
            used += c.width().unwrap_or(0);
            used <= room
        })
        .collect();
    std::iter::once('…').chain(tail.into_iter().rev()).collect()
}

/// A figure of the moment, or `-` for a dead server: nothing of it runs.
pub(super) fn live(s: &Server, figure: impl FnOnce() -> String) -> String {
    match s.health {
        Health::Dead => "-".to_owned(),
        _ => figure(),
    }
}

/// `text` in lines of `width` terminal columns, broken after spaces
/// where it can be (inside a word longer than a line where not), at most
/// `most` of them; the last is cut with `…` if it does not all fit.
pub(super) fn wrap_columns(text: &str, width: usize, most: usize) -> Vec<String> {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    let width = width.max(2);
    let mut lines = vec![String::new()];
    let mut used = 0;
    for word in text.split_inclusive(' ') {
        // A word that fits on a line of its own starts one.
        let w = word.trim_end().width();
        if used > 0 && used + w > width && w <= width {
            lines.push(String::new());
            used = 0;
        }
        for c in word.chars() {
            let cw = c.width().unwrap_or(0);
            if used + cw > width {
                if c == ' ' {
                    continue;
                }
                lines.push(String::new());
                used = 0;
            }
            used += cw;
            lines.last_mut().expect("one line at least").push(c);
        }
    }
    if lines.len() > most {
        let rest = lines.split_off(most.max(1) - 1).concat();
        lines.push(fit(&rest, width));
    }
    lines
}

/// A view's top line in `width` columns: `lead` (styled) and `tail`
/// whole, and between them `middle`, a command, cut with `…` to what
/// they leave, so that a long command never hides the state and counts.
pub(super) fn title_line(
    lead: String,
    style: ratatui::style::Style,
    middle: &str,
    tail: String,
    width: usize,
) -> ratatui::text::Line<'static> {
    use unicode_width::UnicodeWidthStr;
    let room = width.saturating_sub(lead.width() + tail.width());
    ratatui::text::Line::from(vec![
        ratatui::text::Span::styled(lead, style),
        ratatui::text::Span::raw(fit(middle, room)),
        ratatui::text::Span::raw(tail),
    ])
}

/// `text` cut to `width` terminal columns, with `…` where it was cut.
pub(super) fn fit(text: &str, width: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    if text.width() <= width {
        return text.to_owned();
    }
    // Counted in terminal columns: a wide character takes two.
    let room = width.saturating_sub(1);
    let mut used = 0;
    let mut cut: String = text
        .chars()
        .take_while(|c| {
            used += c.width().unwrap_or(0);
            used <= room
        })
        .collect();
    cut.push('…');
    cut
}

pub(super) fn count(n: u64) -> String {
    match n {
        n if n >= 10_000_000 => format!("{}M", n / 1_000_000),
        n if n >= 100_000 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

pub(super) fn ms(v: f64) -> String {
    match v {
        v if v <= 0.0 => "-".into(),
        v if v < 10.0 => format!("{v:.2}ms"),
        v if v < 1000.0 => format!("{v:.0}ms"),
        v => format!("{:.1}s", v / 1000.0),
    }
}

/// A size in at most four characters, rounded to the nearest: one
/// decimal below 10 of a unit, none above.
pub(super) fn bytes(b: u64) -> String {
    let (value, unit) = match b {
        b if b < 1 << 10 => return format!("{b}B"),
        b if b < 1 << 20 => (b as f64 / 1024.0, 'k'),
        b if b < 1 << 30 => (b as f64 / (1u64 << 20) as f64, 'M'),
        b => (b as f64 / (1u64 << 30) as f64, 'G'),
    };
    match value {
        v if v < 9.95 => format!("{v:.1}{unit}"),
        v => format!("{v:.0}{unit}"),
    }
}

/// An age in at most three characters: `42s`, `12m`, `3h`, `2d`.
pub(super) fn age(d: std::time::Duration) -> String {
    match d.as_secs() {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

pub(super) fn duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_figures_round_to_the_nearest_and_show_zero() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(500), "500B");
        assert_eq!(bytes(1536), "1.5k");
        assert_eq!(bytes((1 << 20) * 19 / 10), "1.9M");
        assert_eq!(bytes((1 << 20) * 52 + (1 << 19) + 1), "53M");
        assert_eq!(bytes(3 << 30), "3.0G");
    }

    #[test]
    fn long_commands_are_cut_with_an_ellipsis() {
        assert_eq!(fit("tokenize --model en", 40), "tokenize --model en");
        assert_eq!(fit("tokenize --model en", 10), "tokenize …");
        assert_eq!(fit("abc", 0), "…");
    }
}
