//! The question asked before a kill, a restart or a clean-up.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::text::wrap_columns;
use super::{Theme, popup_area};
use crate::tui::app;
use crate::tui::event::Action;

pub(super) fn draw(frame: &mut Frame, area: Rect, action: &Action, command: &str, theme: Theme) {
    let (title, question) = match action {
        Action::Kill(id) | Action::ForceKill(id) => {
            (" Kill server ", format!("Stop server {}?", app::short(id)))
        }
        Action::Restart(id) => (
            " Restart tool ",
            format!("Restart the tool of {}?", app::short(id)),
        ),
        Action::CleanDead => (" Clean up ", "Clean up dead servers?".to_owned()),
    };
    // The answers have a line of their own at the bottom, whatever the
    // length of the command above them: a long one is wrapped over at
    // most QUESTION_LINES lines and cut with `…`.
    const QUESTION_LINES: usize = 4;
    let inner_width = usize::from(area.width.min(64).saturating_sub(2)).max(1);
    let kill = matches!(action, Action::Kill(_));
    let answers = match (kill, inner_width >= 60) {
        (true, true) => "y: yes, after its calls finish   f: now   n, Esc, Enter: no",
        (true, false) => "y: yes   f: now   n: no",
        (false, true) => "y: yes    n, Esc, Enter: no",
        (false, false) => "y: yes   n: no",
    };
    let mut text = vec![Line::from(question)];
    text.extend(
        wrap_columns(command, inner_width, QUESTION_LINES)
            .into_iter()
            .map(|l| Line::from(Span::styled(l, theme.title()))),
    );
    let height = (text.len() + 4) as u16;
    let rect = popup_area(area, 64, height);
    let block = Block::bordered().title(title);
    let inner = block.inner(rect);
    let [top, bottom] = Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(inner);
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    frame.render_widget(Paragraph::new(text), top);
    frame.render_widget(Paragraph::new(answers), bottom);
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn a_kill_question_always_shows_its_answers() {
        let long = format!(
            "tokenize {}",
            "--lexicon /srv/models/en/lexicon.txt ".repeat(12)
        );
        let mut app = app_with(vec![server(
            "4a4a4a4a4a4a",
            long.trim(),
            "2026-11-25T11:00:00.000Z",
            1,
        )]);
        press(&mut app, KeyCode::Char('K'));
        for (w, h) in [(80, 24), (120, 35), (40, 20)] {
            let screen = render(&app, w, h, false);
            assert!(screen.contains(": no"), "{w}x{h}:\n{screen}");
            assert!(screen.contains("tokenize"), "{w}x{h}:\n{screen}");
        }
    }

    #[test]
    fn kill_confirmation_names_the_command() {
        let mut app = fixture();
        // The first row is the dead server, which has nothing to kill.
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Char('K'));
        at_both_sizes("kill_question", &app);
    }
}
