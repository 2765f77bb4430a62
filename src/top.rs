//! `runner top [ADDR]`: a live terminal view of a runner started with `--metrics ADDR`. It polls
//! `/status` and redraws in place: each pool as a bar against its limit, the ledger's state (a
//! ban with its countdown), each strategy's orders, PnL, budget share, latency and last error,
//! and the request weight spent per second. q quits, p pauses, up/down select a strategy.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Sparkline, Table, TableState, Wrap};
use ratatui::{DefaultTerminal, Frame};

use crate::cli::TopArgs;
use crate::status::StatusReport;

/// Below this the view cannot show a pool bar and a strategy row legibly.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("{0:?} is not an address like 127.0.0.1:9898")]
    Address(String),
    #[error("cannot use the terminal: {0}")]
    Terminal(#[source] std::io::Error),
    #[error("cannot start: {0}")]
    Client(String),
}

/// What the view knows: the latest report, and whether the last poll failed.
struct View {
    addr: String,
    url: String,
    report: Option<StatusReport>,
    /// Why the runner could not be read, and since when.
    gone: Option<(String, Instant)>,
    paused: bool,
    table: TableState,
}

pub fn run(args: TopArgs) -> Result<(), TopError> {
    let url = status_url(&args.addr)?;
    let every = Duration::from_secs_f64(args.every.clamp(0.1, 60.0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TopError::Client(e.to_string()))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| TopError::Client(e.to_string()))?;
    let mut view = View {
        addr: args.addr.clone(),
        url,
        report: None,
        gone: None,
        paused: false,
        table: TableState::default().with_selected(Some(0)),
    };
    let mut terminal = ratatui::try_init().map_err(TopError::Terminal)?;
    let outcome = run_loop(&mut terminal, &mut view, &runtime, &client, every);
    ratatui::restore();
    outcome.map_err(TopError::Terminal)
}

fn status_url(addr: &str) -> Result<String, TopError> {
    let base = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", addr.trim_end_matches('/'))
    };
    url::Url::parse(&base)
        .ok()
        .filter(|u| u.host().is_some())
        .ok_or_else(|| TopError::Address(addr.to_string()))?;
    Ok(format!("{base}/status"))
}

fn run_loop(
    terminal: &mut DefaultTerminal,
    view: &mut View,
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    every: Duration,
) -> std::io::Result<()> {
    let mut next_poll = Instant::now();
    loop {
        if !view.paused && Instant::now() >= next_poll {
            poll(view, runtime, client);
            next_poll = Instant::now() + every;
        }
        terminal.draw(|frame| draw(frame, view))?;
        // Wake for keys, or when the next poll is due.
        let wait = next_poll
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(20), Duration::from_millis(250));
        if event::poll(wait)? {
            if let Event::Key(key) = event::read()? {
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                    KeyCode::Char('p') | KeyCode::Char(' ') => view.paused = !view.paused,
                    KeyCode::Up => select(view, -1),
                    KeyCode::Down => select(view, 1),
                    _ => {}
                }
            }
        }
    }
}

fn poll(view: &mut View, runtime: &tokio::runtime::Runtime, client: &reqwest::Client) {
    let fetched = runtime.block_on(async {
        // Shown as one line with every cause: reqwest's own message leaves out why (refused, timed out).
        let why = |e: reqwest::Error| crate::error_chain::chain(&e);
        let response = client.get(&view.url).send().await.map_err(why)?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        response.json::<StatusReport>().await.map_err(why)
    });
    match fetched {
        Ok(report) => {
            view.report = Some(report);
            view.gone = None;
        }
        Err(why) => {
            let since = view.gone.as_ref().map_or_else(Instant::now, |(_, since)| *since);
            view.gone = Some((why, since));
        }
    }
}

fn select(view: &mut View, step: i64) {
    let count = view.report.as_ref().map_or(0, |r| r.strategies.len());
    if count == 0 {
        return;
    }
    let current = view.table.selected().unwrap_or(0) as i64;
    let next = (current + step).clamp(0, count as i64 - 1);
    view.table.select(Some(next as usize));
}

fn draw(frame: &mut Frame, view: &mut View) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small: {}x{}, runner top needs at least {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    if let Some((why, since)) = &view.gone {
        let text = vec![
            Line::from(Span::styled(
                format!("runner at {} is not answering", view.addr),
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            )),
            Line::from(why.clone()),
            Line::from(format!(
                "retrying every second (for {}s); q quits",
                since.elapsed().as_secs()
            )),
        ];
        let block = Block::default().borders(Borders::ALL).title(" runner top ");
        frame.render_widget(
            Paragraph::new(text)
                .alignment(Alignment::Center)
                .wrap(Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    }
    let Some(report) = view.report.clone() else {
        frame.render_widget(Paragraph::new(format!("connecting to {} ...", view.url)), area);
        return;
    };
    let pools_height = report.pools.len() as u16 + 2;
    let [header, pools, strategies, detail, spark, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(pools_height),
        Constraint::Min(4),
        Constraint::Length(2),
        Constraint::Length(6),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(header_line(&report, view), header);
    draw_pools(frame, pools, &report);
    draw_strategies(frame, strategies, &report, &mut view.table);
    frame.render_widget(detail_lines(&report, view.table.selected()), detail);
    draw_sparkline(frame, spark, &report);
    frame.render_widget(
        Paragraph::new("q quit   p pause   up/down select a strategy").style(Style::default().fg(Color::DarkGray)),
        footer,
    );
}

fn header_line(report: &StatusReport, view: &View) -> Paragraph<'static> {
    let state_style = match report.state.as_str() {
        "normal" => Style::default().fg(Color::Green),
        _ => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
    };
    let mut state = format!("ledger {}", report.state.to_uppercase());
    if let Some(resume) = report.resume_at_ms {
        state.push_str(&format!(" (resumes in {})", countdown(resume - report.now_ms)));
    }
    if !report.backoffs.is_empty() {
        state.push_str(&format!(" on {}", backoffs_brief(report)));
    }
    let mut spans = vec![
        Span::styled(
            format!("runner top {} ", view.addr),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("{}  ", report.venue)),
        Span::styled(state, state_style),
        Span::raw(format!("  429s {}  418s {}", report.throttled, report.banned)),
    ];
    if view.paused {
        spans.push(Span::styled("  PAUSED", Style::default().fg(Color::Yellow)));
    }
    Paragraph::new(Line::from(spans))
}

/// Each scope stopped, why and for how long: "ip1(spare) 429 55s, ip2 418 1m05s".
fn backoffs_brief(report: &StatusReport) -> String {
    report
        .backoffs
        .iter()
        .map(|b| {
            let name = b.scope_name.as_ref().map_or(String::new(), |n| format!("({n})"));
            let why = b.http_status.map_or(String::new(), |code| format!(" {code}"));
            format!("{}{name}{why} {}", b.scope_id, countdown(b.until_ms - report.now_ms))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "1m05s", "12s", "0s".
fn countdown(ms: i64) -> String {
    let secs = (ms.max(0) + 999) / 1000;
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn draw_pools(frame: &mut Frame, area: Rect, report: &StatusReport) {
    let block = Block::default().borders(Borders::ALL).title(" pools ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = Layout::vertical(vec![Constraint::Length(1); report.pools.len()]).split(inner);
    for (pool, row) in report.pools.iter().zip(rows.iter()) {
        let [name, bar] = Layout::horizontal([Constraint::Length(22), Constraint::Min(10)]).areas(*row);
        frame.render_widget(Paragraph::new(format!("{} {}", pool.kind, pool.interval)), name);
        let ratio = if pool.limit > 0 {
            (pool.used as f64 / pool.limit as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let colour = match ratio {
            r if r >= 0.9 => Color::Red,
            r if r >= 0.7 => Color::Yellow,
            _ => Color::Green,
        };
        let label = format!(
            "{}/{}  resets in {}",
            pool.used,
            pool.limit,
            countdown(pool.resets_at_ms - report.now_ms)
        );
        frame.render_widget(
            Gauge::default()
                .ratio(ratio)
                .label(label)
                .gauge_style(Style::default().fg(colour).bg(Color::Black)),
            bar,
        );
    }
}

fn brief_pnl(pnl: &std::collections::BTreeMap<String, f64>) -> String {
    if pnl.is_empty() {
        return "-".into();
    }
    pnl.iter()
        .map(|(asset, v)| format!("{v:+.4} {asset}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn draw_strategies(frame: &mut Frame, area: Rect, report: &StatusReport, table: &mut TableState) {
    let header = Row::new(
        [
            "strategy", "run", "placed", "filled", "open", "budget", "p50 µs", "p99 µs", "errors", "PnL",
        ]
        .map(|h| Cell::from(h).style(Style::default().add_modifier(Modifier::BOLD))),
    );
    let rows = report.strategies.iter().map(|s| {
        let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        Row::new(vec![
            Cell::from(s.name.clone()),
            Cell::from(if s.running { "yes" } else { "no" }),
            Cell::from(s.orders_placed.to_string()),
            Cell::from(s.orders_filled.to_string()),
            Cell::from(s.open_orders.to_string()),
            Cell::from(format!("{:.1}%", s.budget_share_pct)),
            Cell::from(us(s.tick_to_order_p50_us)),
            Cell::from(us(s.tick_to_order_p99_us)),
            Cell::from(s.errors.to_string()),
            Cell::from(brief_pnl(&s.pnl)),
        ])
    });
    let widths = [
        Constraint::Length(16),
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Min(10),
    ];
    let widget = Table::new(rows, widths)
        .header(header)
        .block(Block::default().borders(Borders::ALL).title(" strategies "))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    frame.render_stateful_widget(widget, area, table);
}

fn detail_lines(report: &StatusReport, selected: Option<usize>) -> Paragraph<'static> {
    let Some(s) = selected.and_then(|i| report.strategies.get(i)) else {
        return Paragraph::new("");
    };
    Paragraph::new(vec![
        Line::from(format!(
            "{}: fills {}, weight {}, events {} (conflated {}, dropped {}), sandbox trips {}",
            s.name, s.fills, s.weight_total, s.events_delivered, s.events_conflated, s.trades_dropped, s.sandbox_trips
        )),
        Line::from(format!("last error: {}", s.last_error.as_deref().unwrap_or("none"))),
    ])
}

fn draw_sparkline(frame: &mut Frame, area: Rect, report: &StatusReport) {
    let width = area.width.saturating_sub(2) as usize;
    let data = &report.weight_per_second;
    let shown = &data[data.len().saturating_sub(width)..];
    let peak = shown.iter().copied().max().unwrap_or(0);
    let title = format!(
        " weight per second, last {}s (peak {peak}, now {}) ",
        shown.len(),
        shown.last().copied().unwrap_or(0)
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(title))
            .data(shown)
            .style(Style::default().fg(Color::Cyan)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_status_urls() {
        assert_eq!(status_url("127.0.0.1:9898").unwrap(), "http://127.0.0.1:9898/status");
        assert_eq!(status_url("http://h:1/").unwrap(), "http://h:1/status");
        assert!(status_url("::bad::").is_err());
    }

    #[test]
    fn the_header_names_each_scope_backed_off() {
        let report: StatusReport = serde_json::from_value(serde_json::json!({
            "venue": "binance-paper", "now_ms": 1_000, "state": "banned", "throttled": 1, "banned": 1,
            "pools": [], "strategies": [], "weight_per_second": [],
            "backoffs": [
                { "scope_id": "ip1", "scope_name": "spare", "state": "throttled", "http_status": 429,
                  "until_ms": 56_000, "secs_left": 55.0 },
                { "scope_id": "ip2", "state": "banned", "http_status": 418, "until_ms": 66_000, "secs_left": 65.0 }
            ]
        }))
        .unwrap();
        assert_eq!(backoffs_brief(&report), "ip1(spare) 429 55s, ip2 418 1m05s");
    }

    #[test]
    fn countdowns_read_like_durations() {
        assert_eq!(countdown(-5), "0s");
        assert_eq!(countdown(1), "1s");
        assert_eq!(countdown(65_000), "1m05s");
        assert_eq!(countdown(7_260_000), "2h01m");
    }
}
