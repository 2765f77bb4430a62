//! What `print` and `log.*` emit, captured by a `tracing` layer scoped to each test: level, the strategy's name,
//! the rendered text, and the bound on huge lines.

use std::fmt::Debug;
use std::sync::Arc;

use parking_lot::Mutex;
use runner::host::api::log::{cut_marker, MAX_LINE_BYTES};
use runner::host::vm::StrategyVm;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Debug, Clone, PartialEq)]
struct Line {
    level: Level,
    strategy: Option<String>,
    message: String,
}

/// Every event, as a [`Line`].
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Line>>>);

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0.lock().push(Line {
            level: *event.metadata().level(),
            strategy: fields.strategy,
            message: fields.message,
        });
    }
}

#[derive(Default)]
struct Fields {
    strategy: Option<String>,
    message: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        match field.name() {
            "strategy" => self.strategy = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

/// Runs `code` in a VM of a strategy named "logger" (its file is `probe.lua`) and returns what it logged.
fn logged(code: &str) -> Vec<Line> {
    let dir = tempfile::tempdir().unwrap();
    let vm: StrategyVm = crate::support::probe_vm(dir.path(), r#"return { name = "logger" }"#);
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, || vm.lua().load(code).exec()).expect("the code runs");
    let lines = capture.0.lock().clone();
    lines
}

fn line(level: Level, message: &str) -> Line {
    Line {
        level,
        strategy: Some("logger".into()),
        message: message.into(),
    }
}

#[test]
fn levels_names_and_formatting() {
    let lines = logged(
        r#"
        log.debug("debug %d", 1)
        log.info("hello %s %d %.2f", "world", 5, 0.1 + 0.2)
        log.warn("plain")
        log.error("error %q", "x")
        log.info(nil)
        log.info(1.5, "two", nil, true)
        log.info("%s", nil)
        print("printed", 1, 2.0, nil, false)
        print()
        "#,
    );
    assert_eq!(
        lines,
        vec![
            line(Level::DEBUG, "debug 1"),
            line(Level::INFO, "hello world 5 0.30"),
            line(Level::WARN, "plain"),
            line(Level::ERROR, "error \"x\""),
            line(Level::INFO, "nil"),
            line(Level::INFO, "1.5\ttwo\tnil\ttrue"),
            line(Level::INFO, "nil"),
            line(Level::INFO, "printed\t1\t2.0\tnil\tfalse"),
            line(Level::INFO, ""),
        ]
    );
}

#[test]
fn tables_show_as_tostring_does() {
    let lines = logged(
        r#"
        local named = setmetatable({}, { __tostring = function() return "a named thing" end })
        local broken = setmetatable({}, { __tostring = function() error("no") end })
        print({}, named, broken)
        log.warn(named)
        log.info("%s and %s", named, {})
        "#,
    );
    let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    let fields: Vec<&str> = messages[0].split('\t').collect();
    assert!(fields[0].starts_with("table: 0x"), "{messages:?}");
    assert_eq!(&fields[1..], ["a named thing", "table"]);
    assert_eq!(messages[1], "a named thing");
    assert!(messages[2].starts_with("a named thing and table: 0x"), "{messages:?}");
    assert!(lines.iter().all(|l| l.strategy.as_deref() == Some("logger")));
}

#[test]
fn a_format_mistake_is_an_error_naming_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let vm = crate::support::probe_vm(dir.path(), "return {}");
    let err = vm
        .lua()
        .load(r#"log.info("%d apples", "many")"#)
        .exec()
        .expect_err("a bad format argument raises");
    assert!(
        err.to_string().contains("log: bad argument #2 to 'string.format'"),
        "{err}"
    );
}

#[test]
fn huge_lines_are_cut_with_a_marker() {
    const HUGE: usize = 50 * 1024 * 1024;
    let lines = logged(&format!(
        r#"
        local huge = string.rep("x", {HUGE})
        for _ = 1, 10 do
            print(huge)
            log.info(huge)
            log.warn("%s!", huge)
            print("a", huge, "b")
        end
        "#
    ));
    assert_eq!(lines.len(), 40);
    let expected = [HUGE, HUGE, HUGE + 1, HUGE + 4];
    for (i, l) in lines.iter().enumerate() {
        let total = expected[i % 4];
        let marker = cut_marker(total);
        assert!(
            l.message.ends_with(&marker),
            "line {i} ends {:?}",
            &l.message[l.message.len() - 80..]
        );
        assert_eq!(l.message.len(), MAX_LINE_BYTES + marker.len(), "line {i}");
    }
    assert!(lines[3].message.starts_with("a\txxx"));
}
