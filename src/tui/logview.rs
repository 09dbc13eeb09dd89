//! The full log of one server (`l`): what it holds and how its keys move
//! it. Drawing is in [`view`](crate::tui::view); the lines come with each
//! refresh, read by the event loop.

use ratatui::crossterm::event::{KeyCode, KeyEvent};

/// Lines of a log the view holds: the end of the file.
pub const LOG_VIEW_LINES: usize = 10_000;

#[derive(Clone, Debug, Default)]
pub struct LogView {
    /// The server whose log this is.
    pub id: String,
    pub lines: Vec<String>,
    /// First line shown.
    pub top: usize,
    /// Keeps the end in view as lines arrive.
    pub follow: bool,
    /// Long lines go on over the next rows instead of being cut.
    pub wrap: bool,
    /// What `/` looks for; shown highlighted.
    pub search: String,
    /// Typing the search.
    pub searching: bool,
    /// Lines on screen at the last drawing: what a page moves. Only the
    /// drawing sets it.
    pub page: std::cell::Cell<usize>,
    /// The top that showed the end at the last drawing (with wrapped
    /// lines, not simply a page from the end). Only the drawing sets it.
    pub end_top: std::cell::Cell<Option<usize>>,
}

impl LogView {
    pub fn new(id: String) -> Self {
        Self {
            id,
            follow: true,
            page: std::cell::Cell::new(10),
            ..Self::default()
        }
    }

    /// Fresh lines from the file.
    pub fn refresh(&mut self, lines: Vec<String>) {
        self.lines = lines;
        if self.follow {
            self.show_end();
        }
        self.top = self.top.min(self.last_top());
    }

    /// The top that shows the last page.
    fn last_top(&self) -> usize {
        let page = self.lines.len().saturating_sub(self.page.get().max(1));
        self.end_top.get().map_or(page, |t| t.min(self.lines.len()))
    }

    fn show_end(&mut self) {
        self.top = self.last_top();
    }

    fn scroll(&mut self, by: isize) {
        self.top = self.top.saturating_add_signed(by).min(self.last_top());
        self.follow = self.top == self.last_top();
    }

    /// The first line from `start` on (backwards with `back`) that holds
    /// the search, round the end of the log as `vim` does; and whether it
    /// went round.
    fn find(&self, start: usize, back: bool) -> Option<(usize, bool)> {
        let n = self.lines.len();
        if self.search.is_empty() || n == 0 {
            return None;
        }
        let needle = self.search.to_lowercase();
        let start = start % n;
        (0..n)
            .map(|k| match back {
                true => ((start + n - k) % n, k > start),
                false => ((start + k) % n, start + k >= n),
            })
            .find(|&(i, _)| self.lines[i].to_lowercase().contains(&needle))
    }

    /// Moves the top to the match `find` gives (or to the last page, which
    /// shows it, so that the screen stays full); says so if it went round.
    fn jump(&mut self, start: usize, back: bool) -> Result<(), &'static str> {
        let (i, wrapped) = self.find(start, back).ok_or("not found")?;
        self.top = i.min(self.last_top());
        self.follow = false;
        match (wrapped, back) {
            (true, false) => Err("search went on from the top"),
            (true, true) => Err("search went on from the bottom"),
            _ => Ok(()),
        }
    }

    /// Handles a key; `false` when it closes the view.
    pub fn key(&mut self, key: KeyEvent) -> Result<bool, &'static str> {
        // Moves count from what is on screen.
        if self.follow {
            self.show_end();
        }
        if self.searching {
            match key.code {
                KeyCode::Esc => {
                    self.search.clear();
                    self.searching = false;
                }
                KeyCode::Enter => {
                    self.searching = false;
                    // The first match from the top line down, it included.
                    self.jump(self.top, false)?;
                }
                KeyCode::Backspace => {
                    self.search.pop();
                }
                KeyCode::Char(c) => self.search.push(c),
                _ => {}
            }
            return Ok(true);
        }
        match key.code {
            KeyCode::Esc if !self.search.is_empty() => self.search.clear(),
            KeyCode::Esc | KeyCode::Char('q' | 'l') => return Ok(false),
            KeyCode::Up | KeyCode::Char('k') => self.scroll(-1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll(1),
            KeyCode::PageUp => self.scroll(-(self.page.get() as isize)),
            KeyCode::PageDown | KeyCode::Char(' ') => self.scroll(self.page.get() as isize),
            KeyCode::Home | KeyCode::Char('g') => {
                self.top = 0;
                self.follow = self.top == self.last_top();
            }
            KeyCode::End | KeyCode::Char('G') => {
                self.follow = true;
                self.show_end();
            }
            KeyCode::Char('f') => {
                self.follow = !self.follow;
                if self.follow {
                    self.show_end();
                }
            }
            KeyCode::Char('w') => self.wrap = !self.wrap,
            KeyCode::Char('/') => {
                self.search.clear();
                self.searching = true;
            }
            KeyCode::Char('n') => self.jump(self.top + 1, false)?,
            KeyCode::Char('N') => match self.top.checked_sub(1) {
                Some(before) => self.jump(before, true)?,
                // From the first line, backwards is round the end at once.
                None => {
                    self.jump(self.lines.len().saturating_sub(1), true)?;
                    return Err("search went on from the bottom");
                }
            },
            _ => {}
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyModifiers;

    fn press(v: &mut LogView, code: KeyCode) -> Result<bool, &'static str> {
        v.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn view(n: usize) -> LogView {
        let mut v = LogView::new("abc".into());
        v.page.set(10);
        v.refresh((0..n).map(|i| format!("line {i}")).collect());
        v
    }

    #[test]
    fn it_follows_the_end_until_scrolled_up() {
        let mut v = view(100);
        assert_eq!(v.top, 90);
        press(&mut v, KeyCode::Up).unwrap();
        assert!(!v.follow);
        v.refresh((0..120).map(|i| format!("line {i}")).collect());
        assert_eq!(v.top, 89, "stays where it was read");
        press(&mut v, KeyCode::Char('G')).unwrap();
        v.refresh((0..130).map(|i| format!("line {i}")).collect());
        assert_eq!(v.top, 120, "follows again");
    }

    #[test]
    fn search_jumps_to_matches_both_ways() {
        let mut v = view(100);
        v.lines[20] = "ERROR: tool exited".into();
        v.lines[70] = "error again".into();
        press(&mut v, KeyCode::Char('g')).unwrap();
        press(&mut v, KeyCode::Char('/')).unwrap();
        for c in "error".chars() {
            press(&mut v, KeyCode::Char(c)).unwrap();
        }
        press(&mut v, KeyCode::Enter).unwrap();
        assert_eq!(v.top, 20);
        press(&mut v, KeyCode::Char('n')).unwrap();
        assert_eq!(v.top, 70);
        assert_eq!(
            press(&mut v, KeyCode::Char('n')),
            Err("search went on from the top")
        );
        assert_eq!(v.top, 20);
        assert_eq!(
            press(&mut v, KeyCode::Char('N')),
            Err("search went on from the bottom")
        );
        assert_eq!(v.top, 70);
        press(&mut v, KeyCode::Char('N')).unwrap();
        assert_eq!(v.top, 20);
        assert_eq!(
            press(&mut v, KeyCode::Esc),
            Ok(true),
            "Esc clears the search"
        );
        assert_eq!(press(&mut v, KeyCode::Esc), Ok(false), "then closes");
    }
}
