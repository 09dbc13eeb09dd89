//! The table of servers: one row each, the columns that fit.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};

use super::Theme;
use super::text::{age, bytes, count, duration, fit, fit_start, live, ms};
use crate::core::state::Health;
use crate::tui::app::{self, App, Level};
use crate::tui::event::Server;

/// One table column: its heading, width, and how much it matters when the
/// terminal is narrow (0 always shown); its text, and how much that asks
/// for a look.
struct Column {
    name: &'static str,
    width: u16,
    priority: u8,
    cell: fn(&Server, &App) -> String,
    level: fn(&Server, &App) -> Level,
}

/// A figure that is never alarming.
fn plain(_: &Server, _: &App) -> Level {
    Level::Normal
}

const COLUMNS: [Column; 17] = [
    Column {
        name: "ID",
        width: 12,
        priority: 0,
        level: plain,
        cell: |s, _| app::short(&s.state.id).to_owned(),
    },
    Column {
        name: "STATE",
        width: 8,
        priority: 0,
        level: plain,
        cell: |s, a| app::state_label(s, a.now).to_owned(),
    },
    Column {
        name: "INST",
        width: 5,
        priority: 1,
        level: plain,
        cell: |s, _| {
            live(s, || {
                format!("{}/{}", s.state.busy_instances(), s.state.instances.len())
            })
        },
    },
    // Calls being served, `+N` waiting.
    Column {
        name: "CLNT",
        width: 5,
        priority: 1,
        level: plain,
        cell: |s, _| {
            live(s, || match s.state.clients_waiting {
                0 => s.state.clients_active.to_string(),
                w => format!("{}+{w}", s.state.clients_active),
            })
        },
    },
    Column {
        name: "REQS",
        width: 5,
        priority: 1,
        level: plain,
        cell: |s, _| count(s.state.requests_total),
    },
    Column {
        name: "REC/S",
        width: 6,
        priority: 2,
        level: plain,
        cell: |s, _| live(s, || count(app::rate(s) as u64)),
    },
    Column {
        name: "IDLE",
        width: 6,
        priority: 1,
        level: plain,
        cell: |s, a| app::idle_left(s, a.now).map_or("-".into(), |d| duration(d.as_secs())),
    },
    Column {
        name: "P99",
        width: 7,
        priority: 2,
        level: plain,
        cell: |s, _| ms(s.state.latency_ms.p99),
    },
    // How long the oldest record in flight has waited for its answer.
    Column {
        name: "OLDEST",
        width: 7,
        priority: 2,
        level: |s, a| app::wait_level(s, a.now),
        cell: |s, a| app::oldest_wait(s, a.now).map_or("-".into(), age),
    },
    // Calls that failed in the last minute.
    Column {
        name: "ERR",
        width: 5,
        priority: 2,
        level: |s, _| app::errors_level(s),
        cell: |s, _| live(s, || count(s.state.errors_last_minute)),
    },
    Column {
        name: "MEM",
        width: 6,
        priority: 2,
        level: plain,
        cell: |s, _| live(s, || bytes(s.tool_memory)),
    },
    // Of one core, its tools together, since the last refresh.
    Column {
        name: "CPU",
        width: 5,
        priority: 2,
        level: plain,
        cell: |s, _| live(s, || s.tool_cpu.map_or("-".into(), |c| format!("{c:.0}%"))),
    },
    Column {
        name: "UPTIME",
        width: 7,
        priority: 2,
        level: plain,
        cell: |s, a| app::uptime(s, a.now).map_or("-".into(), |d| duration(d.as_secs())),
    },
    Column {
        name: "RECORDS",
        width: 8,
        priority: 3,
        level: plain,
        cell: |s, _| count(s.state.records_total),
    },
    Column {
        name: "P50",
        width: 7,
        priority: 3,
        level: plain,
        cell: |s, _| ms(s.state.latency_ms.p50),
    },
    // How old the server's last word is.
    Column {
        name: "BEAT",
        width: 5,
        priority: 3,
        level: |s, a| app::beat_level(s, a.now),
        cell: |s, a| app::heartbeat_age(s, a.now).map_or("-".into(), age),
    },
    // Only when the servers come from several state directories.
    Column {
        name: "DIR",
        width: 18,
        priority: 1,
        level: plain,
        cell: |s, _| fit_start(&shown_dir(&s.state.dir), 18),
    },
];

/// A state directory as the DIR column shows it: the directory a
/// `.viasock` is in (where the calls run), `~` for the home directory.
fn shown_dir(dir: &std::path::Path) -> String {
    let dir = match dir.file_name() {
        Some(name) if name == ".viasock" => dir.parent().unwrap_or(dir),
        _ => dir,
    };
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    match home.as_deref().and_then(|h| dir.strip_prefix(h).ok()) {
        Some(rest) if rest.as_os_str().is_empty() => "~".to_owned(),
        Some(rest) => format!("~/{}", rest.display()),
        None => dir.display().to_string(),
    }
}

/// The command column gets at least this much.
const COMMAND_MIN: u16 = 16;
const HIGHLIGHT: &str = "▶ ";

/// ▼ when the largest value (or Z) is on top.
pub(super) fn sort_arrow(app: &App) -> &'static str {
    if app.sort.descending() != app.reverse {
        "▼"
    } else {
        "▲"
    }
}

/// The columns that fit in `width`, most important first kept, each with
/// the width it gets. ID and STATE are always there; then, priority by
/// priority and in the table's order, columns are taken until one does not
/// fit, and no column after it is: a narrower terminal never shows a
/// column a wider one did not. `dirs`: the servers come from several
/// state directories (else the DIR column says nothing). `state_width`:
/// the longest state word shown (`unresponsive` is long, and rare).
fn columns_for(width: u16, dirs: bool, state_width: u16) -> Vec<(&'static Column, u16)> {
    let width_of = |c: &Column| match c.name {
        "STATE" => state_width.max(5),
        _ => c.width,
    };
    let mut used = HIGHLIGHT.chars().count() as u16 + COMMAND_MIN;
    let mut keep = [false; COLUMNS.len()];
    'priorities: for priority in 0..=3 {
        for (i, c) in COLUMNS.iter().enumerate() {
            if c.priority != priority || (c.name == "DIR" && !dirs) {
                continue;
            }
            if priority > 0 && used + width_of(c) >= width {
                break 'priorities;
            }
            used += width_of(c) + 1;
            keep[i] = true;
        }
    }
    COLUMNS
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(c, _)| (c, width_of(c)))
        .collect()
}

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let rows = app.visible();
    if rows.is_empty() {
        let text = if let Some(why) = &app.error {
            Text::from(vec![
                Line::from("The servers cannot be read:"),
                Line::default(),
                Line::from(Span::styled(why.clone(), theme.title())),
            ])
        } else if app.servers.is_empty() {
            Text::from(vec![
                Line::from("No viasock servers are running."),
                Line::default(),
                Line::from("Start one by putting `viasock run` in front of a command:"),
                Line::from(Span::styled(
                    "    echo hello | viasock run sed -u s/h/j/",
                    theme.title(),
                )),
                Line::default(),
                Line::from("or start one without input:  viasock start CMD ARGS"),
                Line::from("This screen shows it within a second."),
            ])
        } else {
            Text::from(vec![
                Line::from(format!("No server's command matches \"{}\".", app.filter)),
                Line::from("Esc clears the filter."),
            ])
        };
        let p = Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: false });
        let [_, middle, _] = Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Fill(1),
        ])
        .areas(area);
        frame.render_widget(p, middle);
        return;
    }
    let several_dirs = app
        .servers
        .iter()
        .any(|s| s.state.dir != app.servers[0].state.dir);
    let state_width = rows
        .iter()
        .map(|s| app::state_label(s, app.now).len() as u16)
        .max()
        .unwrap_or(0);
    let columns = columns_for(area.width, several_dirs, state_width);
    let sort_column = app.sort.column();
    let heading = |name: &str| {
        let arrow = if name == sort_column {
            sort_arrow(app)
        } else {
            ""
        };
        Cell::from(format!("{name}{arrow}"))
    };
    let command_width = columns
        .iter()
        .fold(area.width as usize, |left, (_, w)| {
            left.saturating_sub(*w as usize + 1)
        })
        .saturating_sub(HIGHLIGHT.chars().count());
    let header = Row::new(
        columns
            .iter()
            .map(|(c, _)| heading(c.name))
            .chain([heading("COMMAND")]),
    )
    .style(Style::new().add_modifier(Modifier::BOLD));
    let body = rows.iter().map(|s| {
        let label = app::state_label(s, app.now);
        let mut cells: Vec<Cell> = columns
            .iter()
            .map(|(c, _)| {
                let text = (c.cell)(s, app);
                if c.name == "STATE" {
                    Cell::from(text).style(theme.state(label))
                } else {
                    theme.figure(text, (c.level)(s, app))
                }
            })
            .collect();
        cells.push(Cell::from(fit(&app::short_command(s), command_width)));
        let row = Row::new(cells);
        if s.health == Health::Dead {
            row.style(theme.dim())
        } else {
            row
        }
    });
    let widths = columns
        .iter()
        .map(|(_, w)| Constraint::Length(*w))
        .chain([Constraint::Fill(1)]);
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(1)
        .highlight_symbol(HIGHLIGHT)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    // The table fills its area: an offset kept from a smaller view (the
    // detail pane open, a smaller terminal) is pulled back. The drawing
    // then moves it only as far as the selection needs.
    let fits = usize::from(area.height.saturating_sub(1));
    app.page.set(fits.max(1));
    let offset = app.scroll.get().min(rows.len().saturating_sub(fits));
    let mut state = TableState::default()
        .with_offset(offset)
        .with_selected(app.selected_row());
    frame.render_stateful_widget(table, area, &mut state);
    app.scroll.set(state.offset());
    // Where everything went, for a click to find.
    let mut x = area.x + HIGHLIGHT.chars().count() as u16;
    let mut headings = Vec::new();
    for (c, w) in &columns {
        headings.push((x, x + w, c.name));
        x += w + 1;
    }
    headings.push((x, area.right(), "COMMAND"));
    *app.table_layout.borrow_mut() = app::TableLayout {
        header_y: area.y,
        rows: (area.y + 1)..area.bottom(),
        headings,
    };
}

#[cfg(test)]
mod tests {
    use super::super::draw as draw_all;
    use super::super::testing::*;
    use super::super::text::fit;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    use ratatui::style::Color;

    /// `<` and `>` go through the columns the table shows at its width,
    /// never to one that is not on screen.
    #[test]
    fn sort_keys_step_through_the_columns_on_screen_only() {
        let mut app = fixture();
        let screen = render(&app, 80, 24, false);
        let headings = screen.lines().nth(1).unwrap().to_owned();
        for key in [KeyCode::Char('>'), KeyCode::Char('<')] {
            for _ in 0..20 {
                press(&mut app, key);
                render(&app, 80, 24, false);
                let name = app.sort.column();
                assert!(
                    headings
                        .split_whitespace()
                        .any(|h| h.trim_matches(['▲', '▼', '"']) == name),
                    "sorted by {name}, not among {headings}"
                );
            }
        }
    }

    #[test]
    fn table_snapshots() {
        let app = fixture();
        at_both_sizes("table", &app);
    }

    #[test]
    fn empty_snapshots() {
        let app = App::new();
        at_both_sizes("empty", &app);
    }

    #[test]
    fn a_refused_registry_says_why_where_the_servers_would_be() {
        let mut app = App::new();
        let why = "refusing the registry /run/user/1000/viasock: it is writable by others";
        app.update(Event::Refresh(Snapshot {
            now: at("2026-11-25T12:00:00.000Z"),
            error: Some(why.into()),
            servers: vec![],
            detail: None,
            log: None,
        }));
        let screen = render(&app, 100, 24, false);
        let centre: String = screen.lines().skip(2).take(18).collect();
        assert!(centre.contains("writable by others"), "{screen}");
        assert!(
            !screen.contains("No viasock servers are running"),
            "{screen}"
        );
    }

    #[test]
    fn angle_brackets_pick_the_sort_column_left_and_right() {
        let mut app = fixture();
        press(&mut app, KeyCode::Char('>'));
        assert_eq!(app.sort, app::SortKey::Records);
        let screen = render(&app, 140, 12, false);
        assert!(screen.contains("sort: records"), "{screen}");
        assert!(screen.contains("RECORDS▼"), "{screen}");
        press(&mut app, KeyCode::Char('<'));
        press(&mut app, KeyCode::Char('<'));
        assert_eq!(app.sort, app::SortKey::Cpu);
        for _ in 0..20 {
            press(&mut app, KeyCode::Char('<'));
        }
        let screen = render(&app, 120, 12, false);
        assert!(screen.contains("sort: "), "{screen}");
    }

    #[test]
    fn a_dir_column_shows_when_servers_come_from_several_state_directories() {
        let mut a = server("a1a1a1a1a1a1", "cat", "2026-11-25T11:00:00.000Z", 1);
        a.state.dir = "/srv/corpus/.viasock".into();
        let mut b = server("b2b2b2b2b2b2", "cat", "2026-11-25T11:01:00.000Z", 1);
        b.state.dir = "/srv/shared-state".into();
        let screen = render(&app_with(vec![a.clone(), b]), 120, 10, false);
        assert!(screen.contains("DIR"), "{screen}");
        let row = |id| screen.lines().find(|l| l.contains(id)).unwrap().to_owned();
        assert!(row("a1a1a1a1a1a1").contains("/srv/corpus "), "{screen}");
        assert!(
            row("b2b2b2b2b2b2").contains("/srv/shared-state"),
            "{screen}"
        );
        let one = render(&app_with(vec![a]), 120, 10, false);
        assert!(!one.contains("DIR"), "one directory: no column: {one}");
    }

    #[test]
    fn the_cpu_column_shows_the_tools_share_of_a_core() {
        let mut busy = server("333333333333", "tag", "2026-11-25T11:00:00.000Z", 1);
        busy.tool_cpu = Some(87.4);
        let mut fresh = server("444444444444", "cat", "2026-11-25T11:01:00.000Z", 1);
        fresh.tool_cpu = None;
        let mut app = app_with(vec![fresh, busy]);
        while app.sort != app::SortKey::Cpu {
            press(&mut app, KeyCode::Char('s'));
        }
        let screen = render(&app, 120, 10, false);
        let rows = table_rows(&screen);
        assert_eq!(
            rows.first().map(String::as_str),
            Some("333333333333"),
            "{screen}"
        );
        assert!(screen.contains("87%"), "{screen}");
        assert!(screen.contains("CPU▼"), "{screen}");
    }

    #[test]
    fn scrolled_view_keeps_its_offset_while_the_selection_moves_inside_it() {
        let mut app = many(30);
        press(&mut app, KeyCode::Char('G'));
        render(&app, 80, 12, false);
        let bottom = app.scroll.get();
        assert!(bottom > 0, "scrolled to show the last row");
        press(&mut app, KeyCode::Up);
        press(&mut app, KeyCode::Up);
        let screen = render(&app, 80, 12, false);
        assert_eq!(app.scroll.get(), bottom, "no jump: {screen}");
    }

    #[test]
    fn table_fills_its_area_after_the_detail_pane_closes() {
        let mut app = many(35);
        press(&mut app, KeyCode::Char('G'));
        render(&app, 120, 35, false);
        press(&mut app, KeyCode::Enter);
        render(&app, 120, 35, false);
        press(&mut app, KeyCode::Enter);
        let screen = render(&app, 120, 35, false);
        // 35 lines: title, table header, 31 rows, status, keys.
        assert_eq!(table_rows(&screen).len(), 31, "{screen}");
    }

    #[test]
    fn table_fills_its_area_after_the_terminal_grows() {
        let mut app = many(35);
        press(&mut app, KeyCode::Char('G'));
        for (w, h) in [(80, 24), (20, 6)] {
            render(&app, w, h, false);
        }
        let screen = render(&app, 120, 35, false);
        assert_eq!(table_rows(&screen).len(), 31, "{screen}");
    }

    #[test]
    fn page_keys_move_by_the_rows_the_table_shows() {
        let mut app = many(70);
        render(&app, 120, 35, false);
        press(&mut app, KeyCode::PageDown);
        assert_eq!(app.selected_row(), Some(31));
        press(&mut app, KeyCode::PageDown);
        let screen = render(&app, 120, 35, false);
        assert_eq!(app.selected_row(), Some(62));
        assert_eq!(table_rows(&screen).len(), 31, "{screen}");
        press(&mut app, KeyCode::PageUp);
        assert_eq!(app.selected_row(), Some(31));
    }

    #[test]
    fn a_sort_change_shows_the_top() {
        let mut app = many(35);
        press(&mut app, KeyCode::Char('G'));
        render(&app, 80, 12, false);
        press(&mut app, KeyCode::Char('s'));
        let screen = render(&app, 80, 12, false);
        let first = app::short(&app.visible()[0].state.id).to_owned();
        assert_eq!(table_rows(&screen).first(), Some(&first), "{screen}");
        assert_eq!(app.selected_row(), Some(0), "{screen}");
    }

    #[test]
    fn wide_characters_are_cut_by_the_columns_they_take() {
        let cut = fit("分かち書き --辞書 大きい辞書", 10);
        assert!(cut.ends_with('…'), "{cut}");
        assert!(
            unicode_width::UnicodeWidthStr::width(cut.as_str()) <= 10,
            "{cut}"
        );
        let app = app_with(vec![server(
            "7a7a7a7a7a7a",
            "分かち書き --辞書 大きい辞書 とても長い名前",
            "2026-11-25T11:00:00.000Z",
            1,
        )]);
        let screen = render(&app, 80, 24, false);
        let row = screen.lines().find(|l| l.contains("7a7a7a7a7a7a")).unwrap();
        assert!(row.contains('…'), "{screen}");
    }

    /// A server whose oldest record in flight has waited `wait` (of the
    /// fixture's clock, 12:00:00), with `p99` ms.
    fn waiting(id: &str, wait: &str, p99: f64) -> crate::tui::event::Server {
        let mut s = server(id, "tag", "2026-11-25T11:00:00.000Z", 5);
        s.state.state = crate::core::state::Phase::Busy;
        s.state.oldest_in_flight_at = Some(wait.into());
        s.state.latency_ms.p99 = p99;
        s
    }

    /// Where `column` starts on a rendered screen, in characters (the
    /// first is the quote each line starts with).
    fn column_at(screen: &str, column: &str) -> usize {
        let head = screen.lines().find(|l| l.contains("COMMAND")).unwrap();
        head[..head.find(column).unwrap()].chars().count()
    }

    /// The figure under `column` in the row of server `id`.
    fn figure(screen: &str, column: &str, id: &str) -> String {
        let row = screen.lines().find(|l| l.contains(id)).unwrap();
        let rest: String = row.chars().skip(column_at(screen, column)).collect();
        rest.split_whitespace().next().unwrap().to_owned()
    }

    #[test]
    fn a_record_in_flight_for_minutes_says_stuck_and_is_marked_without_colour() {
        let stuck = waiting("111111111111", "2026-11-25T11:50:00.000Z", 4.25);
        let slow = waiting("222222222222", "2026-11-25T11:59:45.000Z", 4.25);
        // Its records take half a minute: 70 s is not out of the way.
        let usual = waiting("333333333333", "2026-11-25T11:58:50.000Z", 30_000.0);
        let mut failing = server("444444444444", "tag", "2026-11-25T11:00:00.000Z", 5);
        failing.state.errors_last_minute = 3;
        let app = app_with(vec![stuck, slow, usual, failing]);
        let screen = render(&app, 120, 10, false);
        assert_eq!(
            figure(&screen, "STATE", "111111111111"),
            "stuck",
            "{screen}"
        );
        assert_eq!(
            figure(&screen, "OLDEST", "111111111111"),
            "10m!!",
            "{screen}"
        );
        assert_eq!(figure(&screen, "STATE", "222222222222"), "busy", "{screen}");
        assert_eq!(
            figure(&screen, "OLDEST", "222222222222"),
            "15s!",
            "{screen}"
        );
        assert_eq!(figure(&screen, "OLDEST", "333333333333"), "1m", "{screen}");
        assert_eq!(figure(&screen, "ERR", "444444444444"), "3!!", "{screen}");
        assert_eq!(figure(&screen, "OLDEST", "444444444444"), "-", "{screen}");
        assert!(
            screen.lines().next().unwrap().contains("1 stuck"),
            "{screen}"
        );
        // In colour the figures are red or yellow instead of marked.
        let mut terminal = Terminal::new(TestBackend::new(120, 10)).unwrap();
        terminal
            .draw(|f| draw_all(f, &app, Theme { color: true }))
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        let text = render(&app, 120, 10, true);
        assert_eq!(figure(&text, "OLDEST", "111111111111"), "10m", "{text}");
        let x = column_at(&text, "OLDEST") as u16 - 1;
        let y = text
            .lines()
            .position(|l| l.contains("111111111111"))
            .unwrap() as u16;
        assert_eq!(buffer[(x, y)].fg, Color::Red, "{text}");
        let y = text
            .lines()
            .position(|l| l.contains("222222222222"))
            .unwrap() as u16;
        assert_eq!(buffer[(x, y)].fg, Color::Yellow, "{text}");
    }

    #[test]
    fn a_late_heartbeat_is_marked() {
        let mut late = server("555555555555", "tag", "2026-11-25T11:00:00.000Z", 5);
        late.state.heartbeat_at = "2026-11-25T11:59:57.000Z".into();
        let fresh = server("666666666666", "tag", "2026-11-25T11:00:00.000Z", 5);
        let screen = render(&app_with(vec![late, fresh]), 160, 10, false);
        assert_eq!(figure(&screen, "BEAT", "555555555555"), "3s!", "{screen}");
        assert_eq!(figure(&screen, "BEAT", "666666666666"), "0s", "{screen}");
    }

    fn mouse(app: &mut App, kind: MouseEventKind, column: u16, row: u16) {
        app.update(Event::Mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        }));
    }

    #[test]
    fn a_click_selects_a_row_or_sorts_by_its_column_and_the_wheel_moves() {
        let mut app = many(40);
        let screen = render(&app, 120, 20, false);
        let left = MouseEventKind::Down(MouseButton::Left);
        // Line 0 is the title, 1 the headings, 2 the first row.
        mouse(&mut app, left, 30, 5);
        assert_eq!(app.selected_row(), Some(3), "{screen}");
        mouse(&mut app, MouseEventKind::ScrollDown, 30, 5);
        assert_eq!(app.selected_row(), Some(6));
        mouse(&mut app, MouseEventKind::ScrollUp, 30, 5);
        mouse(&mut app, MouseEventKind::ScrollUp, 30, 5);
        assert_eq!(app.selected_row(), Some(0));
        // Scrolled down, a click picks the row shown there.
        press(&mut app, KeyCode::Char('G'));
        let screen = render(&app, 120, 20, false);
        mouse(&mut app, left, 30, 2);
        let first = table_rows(&screen)[0].clone();
        assert_eq!(
            app::short(app.selected.as_deref().unwrap()),
            first,
            "{screen}"
        );
        let x = column_at(&screen, "REQS") as u16 - 1;
        mouse(&mut app, left, x, 1);
        assert_eq!(app.sort, app::SortKey::Requests);
        assert!(!app.reverse);
        mouse(&mut app, left, x + 1, 1);
        assert!(app.reverse, "a second click turns the order");
        let screen = render(&app, 120, 20, false);
        assert!(screen.contains("REQS▲"), "{screen}");
        // Below the rows there is nothing to select.
        mouse(&mut app, left, 30, 19);
        assert_eq!(app.selected_row(), Some(0));
        press(&mut app, KeyCode::Char('m'));
        assert!(!app.mouse);
        assert!(app.status.as_deref().unwrap().contains("mouse off"));
    }

    #[test]
    fn narrowing_keeps_id_and_state_and_never_brings_a_column_back() {
        let mut s = server("777777777777", "cat", "2026-11-25T11:00:00.000Z", 1);
        s.state.state = crate::core::state::Phase::Unresponsive;
        let app = app_with(vec![s]);
        let mut wider: Option<Vec<String>> = None;
        for width in (20..=160).rev() {
            let screen = render(&app, width, 6, false);
            // Line 0 is the title, 1 the headings.
            let head: Vec<String> = screen
                .lines()
                .nth(1)
                .unwrap()
                .trim_matches('"')
                .split_whitespace()
                .map(|h| h.trim_end_matches(['▲', '▼']).to_owned())
                // The command's heading is cut as the terminal narrows.
                .filter(|h| !"COMMAND".starts_with(h.as_str()))
                .collect();
            assert!(
                head.contains(&"ID".into()) && head.contains(&"STATE".into()),
                "{width}: {screen}"
            );
            if let Some(wider) = &wider {
                for h in &head {
                    assert!(wider.contains(h), "{h} comes back at {width}: {screen}");
                }
            }
            wider = Some(head);
        }
    }

    #[test]
    fn a_sort_by_state_puts_the_servers_that_ask_for_a_look_first() {
        let mut app = fixture();
        while app.sort != app::SortKey::State {
            press(&mut app, KeyCode::Char('s'));
        }
        let order: Vec<&str> = app
            .visible()
            .iter()
            .map(|s| app::state_label(s, app.now))
            .collect();
        assert_eq!(order, ["dead", "stale", "busy", "ready"]);
    }
}
