//! `runner record` against the built-in simulator: what it writes reads back, and a recorder
//! killed with SIGKILL mid-write leaves every complete block readable.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runner::record::{BlockReader, FormatError, Record, RecordKind};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Every record of `file`, and the error that ended the reading, if any.
fn read(file: &Path) -> (Vec<Record>, Option<FormatError>) {
    let mut reader = BlockReader::open(file).unwrap();
    let mut records = Vec::new();
    loop {
        match reader.next_block() {
            Ok(Some(block)) => records.extend(block),
            Ok(None) => return (records, None),
            Err(e) => return (records, Some(e)),
        }
    }
}

fn streams_seen(records: &[Record]) -> Vec<String> {
    let mut names: Vec<String> = records
        .iter()
        .filter(|r| r.kind == RecordKind::Stream)
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).ok()?;
            Some(v["stream"].as_str()?.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn records_every_stream_of_the_simulator_with_rules_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let status = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "record",
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--duration",
            "2500ms",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let files = files(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    let (records, err) = read(&files[0]);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(records[0].kind, RecordKind::ExchangeInfo);
    let snapshots = records.iter().filter(|r| r.kind == RecordKind::DepthSnapshot).count();
    assert_eq!(snapshots, 2);
    let seen = streams_seen(&records);
    for want in [
        "btcusdt@bookTicker",
        "btcusdt@depth@100ms",
        "btcusdt@trade",
        "btcusdt@kline_1m",
        "ethusdt@bookTicker",
        "ethusdt@depth@100ms",
    ] {
        assert!(seen.iter().any(|s| s == want), "{want} missing from {seen:?}");
    }
    let times: Vec<i64> = records.iter().map(|r| r.received_us).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "receive times never go back");
}

#[test]
fn size_rotation_starts_new_files_each_with_rules_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let status = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "record",
            "--symbols",
            "BTCUSDT",
            "--duration",
            "3s",
            "--rotate-mb",
            "0.02",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let files = files(&out);
    assert!(files.len() >= 2, "20 KiB files: {files:?}");
    for file in &files {
        let (records, err) = read(file);
        assert!(err.is_none(), "{err:?}");
        // Each file replays on its own: the rules first, then fresh order-book snapshots.
        assert_eq!(records[0].kind, RecordKind::ExchangeInfo, "{}", file.display());
        assert_eq!(records[1].kind, RecordKind::DepthSnapshot, "{}", file.display());
    }
}

#[test]
fn a_recorder_killed_mid_write_leaves_every_complete_block() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["record", "--symbols", "BTCUSDT,ETHUSDT", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until several blocks are on disk, then SIGKILL (no chance to flush or close).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let size = files(&out)
            .first()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len());
        if size > 20_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the recorder wrote nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let files = files(&out);
    let (records, err) = read(&files[0]);
    // Either the kill fell between two blocks (clean end) or it tore the last one: then the error
    // names that block, and everything before it was read.
    if let Some(err) = err {
        assert!(matches!(err, FormatError::Truncated { .. }), "{err}");
    }
    assert!(records.len() > 10, "{} records", records.len());
    assert!(streams_seen(&records).iter().any(|s| s == "btcusdt@trade"));
}
