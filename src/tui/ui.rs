//! Drawing the monitor: a pure function of the [`App`]. No state lives
//! here.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap,
};

use crate::core::state::Health;
use crate::tui::app::{self, App, Popup};
use crate::tui::event::{Action, Server};
use crate::tui::logview::LogView;

/// Styles, or none of them when the user asked for no colour (`NO_COLOR`).
#[derive(Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn state(self, label: &str) -> Style {
        match label {
            "dead" => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            "stale" | "draining" => self.fg(Color::Yellow),
            "busy" => self.fg(Color::Green),
            "starting" => self.fg(Color::Cyan),
            _ => Style::new(),
        }
    }

    fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }
}

/// One table column: its heading, width, and how much it matters when the
/// terminal is narrow (0 always shown).
struct Column {
    name: &'static str,
    width: u16,
    priority: u8,
    cell: fn(&Server, &App) -> String,
}

const COLUMNS: [Column; 14] = [
    Column {
        name: "ID",
        width: 12,
        priority: 0,
        cell: |s, _| app::short(&s.state.id).to_owned(),
    },
    Column {
        name: "STATE",
        width: 8,
        priority: 0,
        cell: |s, _| app::state_label(s).to_owned(),
    },
    Column {
        name: "INST",
        width: 5,
        priority: 1,
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
        cell: |s, _| count(s.state.requests_total),
    },
    Column {
        name: "REC/S",
        width: 6,
        priority: 2,
        cell: |s, _| live(s, || count(app::rate(s) as u64)),
    },
    Column {
        name: "IDLE",
        width: 6,
        priority: 1,
        cell: |s, a| app::idle_left(s, a.now).map_or("-".into(), |d| duration(d.as_secs())),
    },
    Column {
        name: "P99",
        width: 7,
        priority: 2,
        cell: |s, _| ms(s.state.latency_ms.p99),
    },
    Column {
        name: "MEM",
        width: 6,
        priority: 2,
        cell: |s, _| live(s, || bytes(s.tool_memory)),
    },
    // Of one core, its tools together, since the last refresh.
    Column {
        name: "CPU",
        width: 5,
        priority: 2,
        cell: |s, _| live(s, || s.tool_cpu.map_or("-".into(), |c| format!("{c:.0}%"))),
    },
    Column {
        name: "UPTIME",
        width: 7,
        priority: 2,
        cell: |s, a| app::uptime(s, a.now).map_or("-".into(), |d| duration(d.as_secs())),
    },
    Column {
        name: "RECORDS",
        width: 8,
        priority: 3,
        cell: |s, _| count(s.state.records_total),
    },
    Column {
        name: "P50",
        width: 7,
        priority: 3,
        cell: |s, _| ms(s.state.latency_ms.p50),
    },
    // Only when the servers come from several state directories.
    Column {
        name: "DIR",
        width: 18,
        priority: 1,
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

/// `text` cut to `width` columns from the left (`…` first): the end of a
/// path says most.
fn fit_start(text: &str, width: usize) -> String {
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
fn live(s: &Server, figure: impl FnOnce() -> String) -> String {
    match s.health {
        Health::Dead => "-".to_owned(),
        _ => figure(),
    }
}

/// The command column gets at least this much.
const COMMAND_MIN: u16 = 16;
const HIGHLIGHT: &str = "▶ ";

pub fn draw(frame: &mut Frame, app: &App, theme: Theme) {
    let area = frame.area();
    if let Some(view) = &app.log {
        draw_log(frame, area, app, view, theme);
        return;
    }
    // A long command line takes more of the pane; the log keeps its lines.
    let detail_height = match app.selected_server() {
        Some(s) if app.detail_open => {
            (14 + command_lines(s, area.width)).min(area.height.saturating_sub(6))
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
    draw_table(frame, table, app, theme);
    draw_header(frame, header, app, theme);
    if app.detail_open {
        draw_detail(frame, detail, app, theme);
    }
    let typing = app.filtering.then_some(("filter: ", app.filter.as_str()));
    frame.render_widget(Paragraph::new(status_line(app, typing, theme)), status);
    frame.render_widget(
        Paragraph::new(key_bar(theme, app.filtering, keys.width)),
        keys,
    );
    match &app.popup {
        Some(Popup::Confirm(c)) => draw_confirm(frame, area, &c.action, &c.command, theme),
        Some(Popup::Help) => draw_help(frame, area, theme),
        None => {}
    }
}

/// The log view: a server's log over the whole screen.
fn draw_log(frame: &mut Frame, area: Rect, app: &App, view: &LogView, theme: Theme) {
    let [header, body, status, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let rows = usize::from(body.height);
    view.page.set(rows.max(1));
    let server = app.servers.iter().find(|s| s.state.id == view.id);
    let from = view.top_for(rows);
    let to = (from + rows).min(view.lines.len());
    let mut title = vec![
        Span::styled(format!(" log of {} ", app::short(&view.id)), theme.title()),
        Span::raw(server.map_or(String::new(), |s| {
            format!(" {} ({})", app::short_command(s), app::state_label(s))
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

/// The status line: what is being typed (`label`, `text`) with a cursor,
/// else the last outcome.
fn status_line<'a>(app: &'a App, typing: Option<(&'a str, &'a str)>, theme: Theme) -> Line<'a> {
    match (typing, &app.status) {
        (Some((label, text)), _) => Line::from(vec![
            Span::styled(label, theme.title()),
            Span::raw(format!("{text}▏")),
        ]),
        (None, Some(s)) => Line::from(s.as_str()),
        (None, None) => Line::default(),
    }
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

/// States in the order the header counts them.
const SUMMED_STATES: [&str; 8] = [
    "busy",
    "ready",
    "starting",
    "draining",
    "stale",
    "unresponsive",
    "remote",
    "dead",
];

fn draw_header(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let total = app.servers.len();
    let rows = app.visible().len();
    let shown = if app.filter.is_empty() {
        String::new()
    } else {
        format!("{rows} of ")
    };
    // Parts with a rank: on a narrow terminal the lowest give way first.
    let mut parts: Vec<(u8, Vec<Span>)> = vec![(
        0,
        vec![
            Span::styled(" viasock top ", theme.title()),
            Span::raw(format!(
                " {shown}{total} server{}",
                if total == 1 { "" } else { "s" }
            )),
        ],
    )];
    if app.paused {
        parts.push((0, vec![Span::styled("  paused (p resumes)", theme.title())]));
    }
    // How many are in each state, and what the live ones do in all.
    let mut states = Vec::new();
    for state in SUMMED_STATES {
        let n = app
            .servers
            .iter()
            .filter(|s| app::state_label(s) == state)
            .count();
        if n > 0 {
            states.push(Span::raw(if states.is_empty() { ": " } else { ", " }));
            states.push(Span::styled(format!("{n} {state}"), theme.state(state)));
        }
    }
    parts.push((2, states));
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
            1,
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
    let spans: Vec<Span> = parts.into_iter().flat_map(|(_, spans)| spans).collect();
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// ▼ when the largest value (or Z) is on top.
fn sort_arrow(app: &App) -> &'static str {
    if app.sort.descending() != app.reverse {
        "▼"
    } else {
        "▲"
    }
}

/// `text` in lines of `width` terminal columns, broken after spaces
/// where it can be (inside a word longer than a line where not), at most
/// `most` of them; the last is cut with `…` if it does not all fit.
fn wrap_columns(text: &str, width: usize, most: usize) -> Vec<String> {
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

/// `text` cut to `width` terminal columns, with `…` where it was cut.
fn fit(text: &str, width: usize) -> String {
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

/// The columns that fit in `width`, most important first kept.
/// `dirs`: the servers come from several state directories (else the DIR
/// column says nothing).
fn columns_for(width: u16, dirs: bool) -> Vec<&'static Column> {
    let mut used = HIGHLIGHT.chars().count() as u16 + COMMAND_MIN;
    let mut keep = [false; COLUMNS.len()];
    for priority in 0..=3 {
        for (i, c) in COLUMNS.iter().enumerate() {
            if c.name == "DIR" && !dirs {
                continue;
            }
            if c.priority == priority && used + c.width < width {
                used += c.width + 1;
                keep[i] = true;
            }
        }
    }
    COLUMNS
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(c, _)| c)
        .collect()
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
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
    let columns = columns_for(area.width, several_dirs);
    let sort_column = match app.sort {
        app::SortKey::Uptime => "UPTIME",
        app::SortKey::Id => "ID",
        app::SortKey::Command => "COMMAND",
        app::SortKey::State => "STATE",
        app::SortKey::Requests => "REQS",
        app::SortKey::Rate => "REC/S",
        app::SortKey::P99 => "P99",
        app::SortKey::Memory => "MEM",
        app::SortKey::Cpu => "CPU",
        app::SortKey::Clients => "CLNT",
        app::SortKey::Idle => "IDLE",
        app::SortKey::Records => "RECORDS",
        app::SortKey::P50 => "P50",
    };
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
        .fold(area.width as usize, |left, c| {
            left.saturating_sub(c.width as usize + 1)
        })
        .saturating_sub(HIGHLIGHT.chars().count());
    let header = Row::new(
        columns
            .iter()
            .map(|c| heading(c.name))
            .chain([heading("COMMAND")]),
    )
    .style(Style::new().add_modifier(Modifier::BOLD));
    let body = rows.iter().map(|s| {
        let label = app::state_label(s);
        let mut cells: Vec<Cell> = columns
            .iter()
            .map(|c| {
                let text = (c.cell)(s, app);
                if c.name == "STATE" {
                    Cell::from(text).style(theme.state(label))
                } else {
                    Cell::from(text)
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
        .map(|c| Constraint::Length(c.width))
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
}

/// Lines the detail pane gives the command line at most.
const COMMAND_LINES: usize = 8;

/// Lines the command line of `s` takes in a detail pane `width` wide
/// (after its label).
fn command_lines(s: &Server, width: u16) -> u16 {
    let room = usize::from(width).saturating_sub(9);
    wrap_columns(&app::command_line(s), room, COMMAND_LINES).len() as u16
}

fn draw_detail(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let Some(s) = app.selected_server() else {
        return;
    };
    let block = Block::default().borders(Borders::TOP).title(Span::styled(
        format!(" {} ", app::short(&s.state.id)),
        theme.title(),
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [facts, spark, log] = Layout::vertical([
        Constraint::Length(7 + command_lines(s, inner.width)),
        Constraint::Length(2),
        Constraint::Fill(1),
    ])
    .areas(inner);
    let detail = app.detail.as_ref().filter(|d| d.id == s.state.id);
    let tools = match detail {
        Some(d) if !d.tools.is_empty() => d
            .tools
            .iter()
            .map(|(pid, rss)| format!("{pid} ({})", bytes(*rss)))
            .collect::<Vec<_>>()
            .join("  "),
        _ if s.health == Health::Dead => "none running".to_owned(),
        _ => s
            .state
            .instances
            .iter()
            .map(|i| format!("{} ({})", i.pid, i.state))
            .collect::<Vec<_>>()
            .join("  "),
    };
    let st = &s.state;
    let l = &st.latency_ms;
    let label = |t: &'static str| Span::styled(format!("{t:<9}"), theme.title());
    let busy = st.busy_instances();
    let mut server = match s.health {
        // Its file's last word is all there is: when it was written.
        Health::Dead => format!(
            "pid {} on {}, dead, last heard of {}; `c` cleans up",
            st.server_pid, st.host, st.heartbeat_at,
        ),
        _ => format!(
            "pid {} on {}, {}, up {}, instances {busy} busy of {} (at most {}{})",
            st.server_pid,
            st.host,
            app::state_label(s),
            app::uptime(s, app.now).map_or("-".into(), |d| duration(d.as_secs())),
            st.instances.len(),
            st.max_instances,
            if st.interleave { ", interleaved" } else { "" },
        ),
    };
    if let Some(left) = app::idle_left(s, app.now) {
        server.push_str(&format!(", stops if idle {}", duration(left.as_secs())));
    }
    let facts_text = [
        ("cwd", st.cwd.display().to_string()),
        ("socket", st.socket.display().to_string()),
        ("log", log_line(st)),
        ("server", server),
        ("tools", tools),
        (
            "latency",
            format!(
                "p50 {}  p95 {}  p99 {}  max {}  (per record, last 60 s)",
                ms(l.p50),
                ms(l.p95),
                ms(l.p99),
                ms(l.max),
            ),
        ),
        (
            "totals",
            format!(
                "{} requests, {} records, {} errors, {} in, {} out",
                st.requests_total,
                st.records_total,
                st.errors_total,
                bytes(st.bytes_in),
                bytes(st.bytes_out),
            ),
        ),
    ];
    // The command line whole, over as many lines as it takes (up to
    // COMMAND_LINES); every other fact on one line, cut with `…`.
    let room = usize::from(facts.width).saturating_sub(9);
    let mut lines: Vec<Line> = wrap_columns(&app::command_line(s), room, COMMAND_LINES)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let head = if i == 0 { label("command") } else { label("") };
            Line::from(vec![head, Span::raw(part)])
        })
        .collect();
    lines.extend(
        facts_text
            .into_iter()
            .map(|(name, value)| Line::from(vec![label(name), Span::raw(fit(&value, room))])),
    );
    frame.render_widget(Paragraph::new(lines), facts);
    let [spark_label, spark_area] =
        Layout::horizontal([Constraint::Length(16), Constraint::Fill(1)]).areas(spark);
    let data: Vec<u64> = s.state.throughput.iter().map(|&v| v as u64).collect();
    let peak = data.iter().copied().max().unwrap_or(0);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                label("rec/s"),
                Span::raw(format!("now {}", live(s, || count(app::rate(s) as u64)))),
            ]),
            Line::from(format!("{:<9}max {}", "", count(peak))),
        ]),
        spark_label,
    );
    frame.render_widget(
        Sparkline::default()
            .data(&data)
            .style(theme.fg(Color::Green)),
        spark_area,
    );
    let log_lines: Vec<Line> = detail
        .map(|d| {
            d.log_tail
                .iter()
                .map(|l| Line::styled(l.clone(), theme.dim()))
                .collect()
        })
        .unwrap_or_default();
    frame.render_widget(Paragraph::new(log_lines), log);
}

/// The keys that fit in `width` columns: all of them in 80; narrower,
/// those on the right give way first, but help and quit always show.
fn key_bar(theme: Theme, filtering: bool, width: u16) -> Line<'static> {
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

fn popup_area(area: Rect, width: u16, height: u16) -> Rect {
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

/// The log's path, and how many lines could not be written to it.
fn log_line(st: &crate::core::state::ServerState) -> String {
    match st.log_lines_dropped {
        0 => st.log.display().to_string(),
        n => format!(
            "{} ({n} lines could not be written: a full disk?)",
            st.log.display()
        ),
    }
}

fn draw_confirm(frame: &mut Frame, area: Rect, action: &Action, command: &str, theme: Theme) {
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

fn draw_help(frame: &mut Frame, area: Rect, _theme: Theme) {
    let rows = [
        ("↑ ↓  j k", "move the selection"),
        ("PgUp PgDn", "move a page (the rows shown)"),
        ("g G  Home End", "first / last server"),
        ("Enter", "open or close the detail pane"),
        ("l", "its whole log: scroll, follow, wrap, search"),
        ("K  Delete", "kill the server (asks; f: at once)"),
        ("r", "restart its tool (asks first)"),
        ("< >  s  S", "sort column left / right / next; reverse"),
        ("/", "filter by command (Esc clears)"),
        ("p", "pause the refresh, or resume it"),
        ("c", "clean up after dead servers"),
        ("Esc", "close details and filter, or quit"),
        ("?  q  Ctrl-C", "this help / quit"),
    ];
    let legend = [
        "STATE: starting (no tool ready yet), ready, busy,",
        "draining (stopping), stale (its tool or model changed),",
        "unresponsive (no heartbeat for 5 s: stopped or wedged),",
        "dead (its process is gone), remote (another host's).",
        "CLNT: calls being served, +N waiting for an instance.",
        "INST: busy/running tool instances. IDLE: time left",
        "before an idle server stops. MEM: its tools' memory.",
        "P50/P99: per record, from its writing to the tool to",
        "its answer: time queued in the tool's input included.",
    ];
    // 24 lines with its border: it fits a classic terminal.
    let mut text: Vec<Line> = rows
        .iter()
        .map(|(k, what)| Line::from(format!(" {k:<15} {what}")))
        .collect();
    text.extend(legend.iter().map(|l| Line::from(format!(" {l}"))));
    let rect = popup_area(area, 62, text.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" Keys · any key closes ")),
        rect,
    );
}

fn count(n: u64) -> String {
    match n {
        n if n >= 10_000_000 => format!("{}M", n / 1_000_000),
        n if n >= 100_000 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn ms(v: f64) -> String {
    match v {
        v if v <= 0.0 => "-".into(),
        v if v < 10.0 => format!("{v:.2}ms"),
        v if v < 1000.0 => format!("{v:.0}ms"),
        v => format!("{:.1}s", v / 1000.0),
    }
}

/// A size in at most four characters, rounded to the nearest: one
/// decimal below 10 of a unit, none above.
fn bytes(b: u64) -> String {
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

fn duration(secs: u64) -> String {
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
    use crate::tui::app::tests::{app_with, at, server};
    use crate::tui::event::{Detail, Event, Snapshot};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn fixture() -> App {
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
                tools: vec![(4243, 52 << 20)],
                log_tail: vec![
                    "2026-11-25T11:59:58.101Z  INFO tool started: tokenize --model models/en pid=4243".into(),
                    "2026-11-25T11:59:59.500Z  INFO stderr: loaded 1200000 entries pid=4243".into(),
                ],
            }),
            log: None,
        }));
        app
    }

    fn render(app: &App, width: u16, height: u16, color: bool) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, app, Theme { color })).unwrap();
        terminal.backend().to_string()
    }

    fn press(app: &mut App, code: KeyCode) {
        app.update(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }

    #[test]
    fn table_at_80x24() {
        insta::assert_snapshot!(render(&fixture(), 80, 24, false));
    }

    #[test]
    fn table_at_120x30() {
        insta::assert_snapshot!(render(&fixture(), 120, 30, false));
    }

    #[test]
    fn detail_pane() {
        let mut app = fixture();
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Enter);
        insta::assert_snapshot!(render(&app, 100, 30, false));
    }

    #[test]
    fn a_dead_server_detail_shows_its_log_and_nothing_running() {
        let mut app = fixture();
        let dead = app.visible()[0].state.clone();
        assert_eq!(dead.short_id(), "dead00beef01");
        app.update(Event::Refresh(Snapshot {
            now: app.now,
            error: None,
            servers: app.servers.clone(),
            detail: Some(Detail {
                id: dead.id.clone(),
                tools: vec![],
                log_tail: vec!["2026-11-25T08:59:59.000Z  WARN tool exited: signal 9".into()],
            }),
            log: None,
        }));
        press(&mut app, KeyCode::Enter);
        let screen = render(&app, 100, 30, false);
        assert!(screen.contains("tool exited: signal 9"), "{screen}");
        assert!(screen.contains("dead, last heard of"), "{screen}");
        assert!(!screen.contains("busy of"), "{screen}");
        insta::assert_snapshot!(screen);
    }

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
    fn the_detail_pane_shows_the_whole_command_quoted_and_cuts_the_rest_with_an_ellipsis() {
        let mut s = server("5b5b5b5b5b5b", "cut", "2026-11-25T11:00:00.000Z", 1);
        s.state.command = ["cut", "-d", " ", "-f1"].map(String::from).to_vec();
        s.state
            .command
            .extend((0..8).map(|i| format!("/srv/corpora/newspapers/part-{i:04}.txt")));
        s.state.cwd = format!("/home/ada/{}", "very-long-directory-name/".repeat(6)).into();
        let whole = s.state.command_line();
        let mut app = app_with(vec![s]);
        press(&mut app, KeyCode::Enter);
        let screen = render(&app, 80, 30, false);
        let lines: Vec<&str> = screen.lines().map(|l| l.trim_matches('"')).collect();
        let first = lines
            .iter()
            .position(|l| l.starts_with("command "))
            .unwrap();
        let shown: String = lines[first..]
            .iter()
            .take_while(|l| l.starts_with("command ") || l.starts_with("         "))
            .map(|l| l[9..].trim_end())
            .collect();
        // Wrapped at spaces: compared without the spaces that padding
        // and line ends add or take.
        assert!(lines[first].contains("cut -d ' ' -f1"), "{screen}");
        assert_eq!(shown.replace(' ', ""), whole.replace(' ', ""), "{screen}");
        let cwd = lines.iter().find(|l| l.starts_with("cwd ")).unwrap();
        assert!(cwd.trim_end().ends_with('…'), "{screen}");
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
    fn angle_brackets_pick_the_sort_column_left_and_right() {
        let mut app = fixture();
        press(&mut app, KeyCode::Char('>'));
        assert_eq!(app.sort, app::SortKey::Records);
        let screen = render(&app, 120, 12, false);
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
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Esc);
        let screen = render(&app, 100, 20, false);
        assert!(screen.contains("STATE"), "back to the table: {screen}");
        assert!(!app.quit);
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
    fn kill_confirmation_names_the_command() {
        let mut app = fixture();
        // The first row is the dead server, which has nothing to kill.
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Char('K'));
        insta::assert_snapshot!(render(&app, 80, 24, false));
    }

    #[test]
    fn help_popup() {
        let mut app = fixture();
        press(&mut app, KeyCode::Char('?'));
        insta::assert_snapshot!(render(&app, 80, 24, false));
    }

    #[test]
    fn empty_state_says_how_to_start() {
        let app = App::new();
        insta::assert_snapshot!(render(&app, 80, 24, false));
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
        insta::assert_snapshot!(render(&app, 100, 12, false));
    }

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

    #[test]
    fn long_commands_are_cut_with_an_ellipsis() {
        assert_eq!(fit("tokenize --model en", 40), "tokenize --model en");
        assert_eq!(fit("tokenize --model en", 10), "tokenize …");
        assert_eq!(fit("abc", 0), "…");
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

    /// `n` servers `000`, `001`, ... started a minute apart.
    fn many(n: usize) -> App {
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
    fn table_rows(screen: &str) -> Vec<String> {
        screen
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .find(|w| w.len() == 12 && w.chars().all(|c| c.is_ascii_digit()))
                    .map(str::to_owned)
            })
            .collect()
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
    fn tiny_terminal_does_not_panic() {
        let mut app = fixture();
        press(&mut app, KeyCode::Enter);
        for (w, h) in [(20, 5), (1, 1), (80, 8), (200, 60)] {
            render(&app, w, h, true);
        }
    }
}
