//! A 30-day sliding window (the `month` fixture) against real Kafka and Redis,
//! over events spanning 45 days: the host keeps it as 1-hour tiles (the
//! default tiling), its Redis features match an independent reference applying
//! the documented tile rule to the full event list, and the window state holds
//! no event and at most 720 tiles per entity, far fewer than the events in the
//! window; a crash and a rebuild from the checkpoint change nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use wafer_tests::reference::START_MS;
use wafer_tests::{Env, Host};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// The fixture's window and the default tile.
const MONTH: i64 = 30 * DAY;
const TILE: i64 = HOUR;
const CAUGHT_UP: Duration = Duration::from_secs(180);
const ACTIONS: [&str; 5] = ["view", "click", "buy", "share", "like"];

fn fixture() -> PathBuf {
    let p = wafer_tests::repo_root().join("target/fixtures/month.wasm");
    assert!(
        p.exists(),
        "{} is missing: run `make fixtures` first",
        p.display()
    );
    p
}

#[derive(Debug, Clone)]
struct Ev {
    user: String,
    t: i64,
    action: &'static str,
    value: f64,
}

impl Ev {
    fn record(&self) -> (i32, String, String) {
        let payload = serde_json::json!({
            "user_id": self.user, "action": self.action, "value": self.value, "timestamp": self.t,
        });
        (0, self.user.clone(), payload.to_string())
    }
}

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) % n
    }
}

/// About 45 days of events for four users (one every 2.5 minutes on average),
/// with a 5-day silence, out-of-order events up to 6 hours back, events far
/// back (many older than the window: late), equal times, and a user `gone`
/// whose events all lie in the first days.
fn generate(seed: u64, n: usize) -> Vec<Ev> {
    let mut rng = Rng(seed);
    let mut clock = START_MS;
    let mut out: Vec<Ev> = Vec::with_capacity(n);
    for i in 0..n {
        clock += rng.below(5 * MIN as u64) as i64;
        if i == n / 3 {
            clock += 5 * DAY;
        }
        let user = if i < n / 6 && rng.below(5) == 0 {
            "gone".to_owned()
        } else {
            format!("user_{}", rng.below(4))
        };
        let t = match rng.below(100) {
            0..=3 => clock - rng.below(40 * DAY as u64) as i64,
            4..=23 => clock - rng.below(6 * HOUR as u64) as i64,
            24..=29 if i > 0 => out[i - 1].t,
            _ => clock,
        };
        out.push(Ev {
            user,
            t,
            action: ACTIONS[rng.below(ACTIONS.len() as u64) as usize],
            value: rng.below(100_000) as f64 / 100.0 - 200.0,
        });
    }
    out
}

/// What the reference expects of one user.
#[derive(Debug)]
struct Want {
    count: i64,
    sum: f64,
    mean: f64,
    min: f64,
    max: f64,
    stddev: f64,
    actions: i64,
    first: &'static str,
    last: &'static str,
}

/// The documented rule, applied naively to the full list: at stream time T
/// (the largest event time so far) the window holds the events whose 1-hour
/// tile is one of the 720 tiles ending with the one holding T. An event is
/// applied when it is in the window at its arrival, else late. Returns the
/// expected features at the end, the late count and the events in the window.
fn expect(events: &[Ev]) -> (BTreeMap<String, Want>, usize, usize) {
    let tile = |t: i64| t.div_euclid(TILE);
    let in_window = |t: i64, now: i64| tile(now) - tile(t) < MONTH / TILE;
    let mut now = i64::MIN;
    let mut applied: Vec<(usize, &Ev)> = Vec::new();
    let mut late = 0;
    for (arrival, e) in events.iter().enumerate() {
        now = now.max(e.t);
        if in_window(e.t, now) {
            applied.push((arrival, e));
        } else {
            late += 1;
        }
    }
    let mut by_user: BTreeMap<&str, Vec<(usize, &Ev)>> = BTreeMap::new();
    for (arrival, e) in applied {
        if in_window(e.t, now) {
            by_user.entry(&e.user).or_default().push((arrival, e));
        }
    }
    let held = by_user.values().map(Vec::len).sum();
    let want = by_user
        .into_iter()
        .map(|(user, mut members)| {
            members.sort_by_key(|(arrival, e)| (e.t, *arrival));
            let values: Vec<f64> = members.iter().map(|(_, e)| e.value).collect();
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let variance = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
            let mut actions: Vec<&str> = members.iter().map(|(_, e)| e.action).collect();
            actions.sort_unstable();
            actions.dedup();
            let want = Want {
                count: members.len() as i64,
                sum: values.iter().sum(),
                mean,
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                stddev: variance.sqrt(),
                actions: actions.len() as i64,
                first: members[0].1.action,
                last: members[members.len() - 1].1.action,
            };
            (user.to_owned(), want)
        })
        .collect();
    (want, late, held)
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1.0)
}

fn config(env: &Env, admin_port: Option<u16>) -> wafer::config::Config {
    let mut config = env.config();
    config.plugin_mut().path = fixture();
    config.admin = admin_port.map(|port| wafer::config::AdminConfig {
        listen: format!("127.0.0.1:{port}"),
        token: None,
    });
    config
}

/// The `window` object of the view in `/status.json`, once the server answers.
async fn window_state(port: u16) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{port}/status.json");
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(&url).send().await {
            let status: serde_json::Value = r.json().await.unwrap();
            return status["views"][0]["window"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

async fn month_of_events(test: &str, seed: u64, crash: bool) {
    let env = Env::new(test, 1).await.unwrap();
    let events = generate(seed, 24_000);
    let (want, late, held) = expect(&events);
    let span =
        events.iter().map(|e| e.t).max().unwrap() - events.iter().map(|e| e.t).min().unwrap();
    assert!(span > MONTH + 10 * DAY, "the events span {span} ms");
    assert!(!want.contains_key("gone") && late > 0, "{late}");
    let records: Vec<(i32, String, String)> = events.iter().map(Ev::record).collect();
    let (first, second) = records.split_at(if crash {
        records.len() / 2
    } else {
        records.len()
    });
    env.produce(first).await.unwrap();
    let port = wafer_tests::free_port();
    let mut host = Host::start(config(&env, (!crash).then_some(port)));
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    if crash {
        host.kill().await;
        env.produce(second).await.unwrap();
        host = Host::start(config(&env, Some(port)));
        env.wait_caught_up(CAUGHT_UP).await.unwrap();
    }

    // Bounded state: no event held, at most one tile per hour of the window
    // and entity, far fewer than the events in the window.
    let window = window_state(port).await;
    let tiles = window["tiles"].as_u64().unwrap() as usize;
    assert_eq!(window["events"], 0, "{window}");
    assert_eq!(window["entities"], want.len(), "{window}");
    assert!(
        tiles <= want.len() * (MONTH / TILE) as usize && tiles * 4 < held,
        "{tiles} tiles for {held} events in the window"
    );

    let report = host.stop().await.unwrap();
    assert_eq!(report.state, (want.len(), 0));
    if crash {
        assert!(
            report.counters.replayed > 0,
            "the second host should rebuild by replay"
        );
    } else {
        assert_eq!(report.counters.late, late as u64);
    }

    let got: BTreeMap<String, serde_json::Value> = env
        .redis_features()
        .await
        .unwrap()
        .into_iter()
        .map(|(user, (value, _))| (user, serde_json::from_str(&value).unwrap()))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (user, w) in &want {
        let g = &got[user];
        let f = |name: &str| g[name].as_f64().unwrap();
        assert_eq!(g["events_30d"], w.count, "{user}");
        assert_eq!(g["actions_30d"], w.actions, "{user}");
        assert_eq!(g["first_action_30d"], w.first, "{user}");
        assert_eq!(g["last_action_30d"], w.last, "{user}");
        for (name, want) in [
            ("value_sum_30d", w.sum),
            ("value_mean_30d", w.mean),
            ("value_min_30d", w.min),
            ("value_max_30d", w.max),
            ("value_stddev_30d", w.stddev),
        ] {
            assert!(close(f(name), want), "{user} {name}: {} vs {want}", f(name));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_day_window_is_kept_as_tiles_and_matches_the_reference() {
    month_of_events("tiles-month", 97, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_a_rebuild_of_the_tiles_from_the_checkpoint_change_nothing() {
    month_of_events("tiles-crash", 101, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tile_that_does_not_divide_the_window_is_refused_at_load() {
    let env = Env::new("tiles-refused", 1).await.unwrap();
    let mut config = config(&env, None);
    // 30 days is 720 h: not a multiple of 7 h.
    config.plugin_mut().tile_ms = 7 * HOUR as u64;
    let err = wafer::run(config, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("view `month`: window `month`")
            && err.contains("tile_ms = 25200000")
            && err.contains("tile_min_window_ms"),
        "{err}"
    );
}
