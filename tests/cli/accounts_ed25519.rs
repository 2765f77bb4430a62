//! Two `[accounts.NAME]` accounts on testnet settings pointed at `runner sim`: one signs with an
//! HMAC secret, the other with an Ed25519 key file named by `private_key_file_env`. Each places an
//! order and the simulator counts each on its own account; the key never shows in the output.

use runner::sim::{PAPER_API_KEY, PAPER_API_SECRET};

use crate::metrics::url_after;
use crate::support::{run_to_end, runner, Running};

/// RFC 8032's first test key pair, as `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write them.
const PRIVATE_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
const PUBLIC_PEM: &str =
    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
/// The body of the private key: it must never be printed.
const PRIVATE_BODY: &str = "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v";
const ED_API_KEY: &str = "sub1-ed25519";

/// Places one resting buy far below the market, once.
fn placer(name: &str) -> String {
    format!(
        r#"
local placed = false
return {{
  name = "{name}",
  symbols = {{ "BTCUSDT" }},
  streams = {{ "book" }},
  on_book = function(q)
    if placed or q.bid <= 0 then return end
    placed = true
    local o, err = orders.place{{ symbol = "BTCUSDT", side = "BUY", type = "LIMIT", tif = "GTC",
                                 price = math.floor(q.bid / 2), quantity = 0.001 }}
    if not o then log.warn("{name} not placed: %s", tostring(err)) return end
    log.info("{name} placed %s", o.status)
  end,
}}
"#
    )
}

const ACCOUNTS: &str = "[accounts.main]\nkey_env = \"MAIN_KEY\"\nsecret_env = \"MAIN_SECRET\"\n\n\
                        [accounts.sub1]\nkey_env = \"SUB1_KEY\"\nprivate_key_file_env = \"SUB1_KEY_FILE\"\n\n\
                        [routes.placer_sub1]\naccount = \"sub1\"\n";

/// Orders the simulator counted on `account` today (its one-day order pool's peak).
fn orders_of(stats: &serde_json::Value, account: u64) -> u64 {
    stats["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .find(|p| p["kind"] == "Orders" && p["account"].as_u64() == Some(account) && p["interval"] == "1 DAY")
        .and_then(|p| p["peak"].as_u64())
        .unwrap_or(0)
}

#[test]
fn an_account_signing_with_an_ed25519_key_file_trades_beside_an_hmac_account() {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("sub1-public.pem");
    let private = dir.path().join("sub1-private.pem");
    std::fs::write(&public, PUBLIC_PEM).unwrap();
    std::fs::write(&private, PRIVATE_PEM).unwrap();

    let mut sim_cmd = runner(&dir.path().join("sim-state"));
    sim_cmd
        .args(["sim", "--port", "0", "--accounts", "2", "--ed25519-key"])
        .arg(format!("{ED_API_KEY}={}@1", public.display()));
    let mut sim = Running::spawn(sim_cmd);
    let line = sim.wait_for("the simulator's listening line", |l| {
        l.contains("simulated exchange listening")
    });
    let rest = url_after(&line, "rest=");
    let ws = rest.replacen("http", "ws", 1);

    let strategies: Vec<_> = ["placer_main", "placer_sub1"]
        .iter()
        .map(|name| {
            let path = dir.path().join(format!("{name}.lua"));
            std::fs::write(&path, placer(name)).unwrap();
            path
        })
        .collect();
    let config = dir.path().join("runner.toml");
    std::fs::write(&config, ACCOUNTS).unwrap();
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg("--testnet")
        .args([
            "--rest-url",
            &rest,
            "--ws-url",
            &ws,
            "--ws-api-url",
            &format!("{ws}/ws-api/v3"),
        ])
        .args(["--no-reload", "--status-every", "0", "--duration", "60s"])
        .arg("--config")
        .arg(&config)
        .args(&strategies)
        .env("MAIN_KEY", PAPER_API_KEY)
        .env("MAIN_SECRET", PAPER_API_SECRET)
        .env("SUB1_KEY", ED_API_KEY)
        .env("SUB1_KEY_FILE", &private);
    let mut run = Running::spawn(cmd);
    for _ in 0..2 {
        run.wait_for("each account's order", |l| l.contains(" placed NEW"));
    }
    let stats: serde_json::Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(format!("{rest}/sim/stats"))
            .await
            .expect("the simulator's stats")
            .json()
            .await
            .expect("stats JSON")
    });
    assert_eq!(
        (orders_of(&stats, 0), orders_of(&stats, 1)),
        (1, 1),
        "one order on each account: {stats}"
    );
    assert_eq!(stats["count_429"].as_u64(), Some(0), "{stats}");

    run.terminate();
    let (status, lines) = run.finish();
    let text = lines.join("\n");
    assert!(status.success(), "{text}");
    assert!(
        text.contains("placer_main placed NEW") && text.contains("placer_sub1 placed NEW"),
        "{text}"
    );
    assert!(
        !text.contains(PRIVATE_BODY),
        "the private key stays out of the output: {text}"
    );
    sim.terminate();
    let _ = sim.finish();
}

#[test]
fn an_ed25519_account_whose_key_file_is_missing_stops_the_start_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = dir.path().join("placer_main.lua");
    std::fs::write(&strategy, placer("placer_main")).unwrap();
    let config = dir.path().join("runner.toml");
    std::fs::write(&config, ACCOUNTS).unwrap();
    let missing = dir.path().join("no-such-key.pem");
    let mut cmd = runner(&dir.path().join("state"));
    cmd.arg("--testnet")
        .arg("--config")
        .arg(&config)
        .arg(&strategy)
        .env("MAIN_KEY", "k")
        .env("MAIN_SECRET", "s")
        .env("SUB1_KEY", ED_API_KEY)
        .env("SUB1_KEY_FILE", &missing);
    let (status, text) = run_to_end(cmd);
    assert_eq!(status.code(), Some(2), "{text}");
    let expected = format!("account sub1: SUB1_KEY_FILE = {}: cannot read it", missing.display());
    assert!(
        text.lines().any(|l| l.contains(&expected)),
        "no {expected:?} in:\n{text}"
    );
}
