//! A generator of user-events streams and a deliberately naive reference
//! model of what Wafer with the user-activity plugin must produce: it keeps
//! every event and recomputes each user's features from the full list, with
//! none of the host's code.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

/// The user-activity window: one hour of event time.
pub const WINDOW_MS: i64 = 3_600_000;

/// One generated input record.
#[derive(Debug, Clone)]
pub struct GenEvent {
    pub partition: i32,
    pub user: String,
    pub action: String,
    pub value: f64,
    pub time_ms: i64,
    /// The record value as produced.
    pub payload: String,
    /// Why the record is malformed (None: well-formed).
    pub malformed: Option<&'static str>,
}

/// The `(partition, key, payload)` records of `events`, as produced.
pub fn records(events: &[GenEvent]) -> Vec<(i32, String, String)> {
    events
        .iter()
        .map(|e| (e.partition, e.user.clone(), e.payload.clone()))
        .collect()
}

/// Expected user-activity features of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub count: i64,
    pub unique: i64,
    pub avg: f64,
    pub last_action: String,
    /// The user's latest in-window event time (a lower bound for `computed_at`).
    pub newest_ms: i64,
}

/// What the pipeline must end with.
#[derive(Debug, Default)]
pub struct Expected {
    /// Users with a non-empty window at the end, and their features.
    pub features: BTreeMap<String, Features>,
    /// Users that had at least one event applied: the keys of `ml-features`.
    pub ever_applied: BTreeSet<String>,
    /// Payloads of late events.
    pub late: Vec<String>,
    /// Payloads of malformed events.
    pub dead: Vec<String>,
    /// Final stream time of each partition.
    pub stream_time: BTreeMap<i32, i64>,
}

/// Tiny deterministic generator, so a failing stream can be reproduced.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const ACTIONS: [&str; 6] = [
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "search",
    "share",
];

/// 2026-03-01T00:00:00Z.
pub const START_MS: i64 = 1_772_323_200_000;

fn timestamp_text(ms: i64, style: u64) -> serde_json::Value {
    let dt: DateTime<Utc> = DateTime::from_timestamp_millis(ms).expect("in range");
    match style % 5 {
        0 => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string().into(),
        1 => dt.format("%Y-%m-%dT%H:%M:%S%.3f").to_string().into(),
        2 => dt
            .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("valid offset"))
            .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
            .to_string()
            .into(),
        3 => dt.format("%Y-%m-%d %H:%M:%S%.3f").to_string().into(),
        _ => serde_json::Value::from(ms),
    }
}

/// A stream of `n` records over `users` users (skewed) and `partitions`
/// partitions (user i on partition i mod partitions): in order, out of order
/// within the hour, late by more than the hour, and about 1% malformed. Users
/// `early_*` appear only in the first fifth, so their windows empty later.
pub fn generate(seed: u64, n: usize, users: u64, partitions: i32) -> Vec<GenEvent> {
    let mut rng = Rng::new(seed);
    let mut clocks = vec![START_MS; partitions as usize];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (user, index) = if i < n / 5 && rng.chance(10) {
            let k = rng.below(8);
            (format!("early_{k}"), k)
        } else {
            // Skewed: low ids are much more frequent.
            let k = (rng.below(users) * rng.below(users)) / users.max(1);
            (format!("user_{k:04}"), k)
        };
        let partition = (index % partitions as u64) as i32;
        let clock = &mut clocks[partition as usize];
        *clock += rng.below(6_000) as i64 * i64::from(partitions);
        let time_ms = match rng.below(100) {
            0..=14 => *clock - rng.below(1_800_000) as i64,
            15..=17 => *clock - WINDOW_MS - 1 - rng.below(1_800_000) as i64,
            18..=19 => *clock,
            _ => *clock - rng.below(2000) as i64,
        };
        let action = ACTIONS[rng.below(ACTIONS.len() as u64) as usize].to_owned();
        let value = (rng.below(100_000) as f64) / 100.0;
        let mut event = serde_json::json!({
            "user_id": user,
            "action": action,
            "value": value,
            "timestamp": timestamp_text(time_ms, rng.next_u64()),
        });
        let malformed = if rng.chance(1) {
            let kinds: [&'static str; 6] = [
                "invalid json",
                "missing user_id",
                "value is a string",
                "unparsable timestamp",
                "timestamp far in the future",
                "action is a number",
            ];
            let kind = kinds[rng.below(kinds.len() as u64) as usize];
            match kind {
                "missing user_id" => {
                    event.as_object_mut().expect("object").remove("user_id");
                }
                "value is a string" => event["value"] = "12.5".into(),
                "unparsable timestamp" => event["timestamp"] = "last tuesday".into(),
                "timestamp far in the future" => event["timestamp"] = "2099-01-01T00:00:00Z".into(),
                "action is a number" => event["action"] = 7.into(),
                _ => {}
            }
            Some(kind)
        } else {
            None
        };
        let payload = if malformed == Some("invalid json") {
            format!("{{\"user_id\": \"{user}\", \"action\": oops")
        } else {
            event.to_string()
        };
        out.push(GenEvent {
            partition,
            user,
            action,
            value,
            time_ms,
            payload,
            malformed,
        });
    }
    out
}

/// Adds an `item_id` to the payload of each generated event that is valid
/// JSON (one of `items` items, skewed; about 1% get none), such that no item
/// has two events at the same time (so that its last action does not depend
/// on the order in which a repartition topic interleaves partitions). Returns
/// each event's item.
pub fn add_items(events: &mut [GenEvent], seed: u64, items: u64) -> Vec<Option<String>> {
    let mut rng = Rng::new(seed);
    let mut taken: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut out = Vec::with_capacity(events.len());
    for e in events.iter_mut() {
        let Ok(serde_json::Value::Object(mut payload)) =
            serde_json::from_str::<serde_json::Value>(&e.payload)
        else {
            out.push(None);
            continue;
        };
        if rng.chance(1) {
            out.push(None);
            continue;
        }
        let mut k = (rng.below(items) * rng.below(items)) / items.max(1);
        while !taken.insert((format!("item_{k:03}"), e.time_ms)) {
            k = (k + 1) % items;
        }
        let item = format!("item_{k:03}");
        payload.insert("item_id".into(), item.clone().into());
        e.payload = serde_json::Value::Object(payload).to_string();
        out.push(Some(item));
    }
    out
}

/// The events as a view keyed by `item_id` sees them: the item as the entity,
/// `partition_of(item)` as the partition (of the repartition topic), and
/// malformed when the item is missing or the event is malformed for any
/// other reason than a missing `user_id`.
pub fn per_item(
    events: &[GenEvent],
    items: &[Option<String>],
    partition_of: impl Fn(&str) -> i32,
) -> Vec<GenEvent> {
    events
        .iter()
        .zip(items)
        .map(|(e, item)| {
            let malformed = match (e.malformed, item) {
                (Some("missing user_id"), Some(_)) => None,
                (Some(m), _) => Some(m),
                (None, None) => Some("missing item_id"),
                (None, Some(_)) => None,
            };
            GenEvent {
                partition: item.as_deref().map_or(0, &partition_of),
                user: item.clone().unwrap_or_default(),
                malformed,
                ..e.clone()
            }
        })
        .collect()
}

/// Recomputes, from the full list, what the pipeline must end with.
pub fn expect(events: &[GenEvent]) -> Expected {
    let mut exp = Expected::default();
    let mut applied: Vec<(usize, &GenEvent)> = Vec::new();
    for (arrival, e) in events.iter().enumerate() {
        if e.malformed.is_some() {
            exp.dead.push(e.payload.clone());
            continue;
        }
        let now = exp.stream_time.get(&e.partition).copied();
        if now.is_some_and(|now| e.time_ms <= now - WINDOW_MS) {
            exp.late.push(e.payload.clone());
            continue;
        }
        exp.stream_time
            .insert(e.partition, now.map_or(e.time_ms, |n| n.max(e.time_ms)));
        exp.ever_applied.insert(e.user.clone());
        applied.push((arrival, e));
    }
    let mut per_user: BTreeMap<&str, Vec<(usize, &GenEvent)>> = BTreeMap::new();
    for (arrival, e) in applied {
        let now = exp.stream_time[&e.partition];
        if e.time_ms > now - WINDOW_MS {
            per_user.entry(&e.user).or_default().push((arrival, e));
        }
    }
    for (user, events) in per_user {
        let count = events.len() as i64;
        let unique = events
            .iter()
            .map(|(_, e)| &e.action)
            .collect::<BTreeSet<_>>()
            .len() as i64;
        let sum: f64 = events.iter().map(|(_, e)| e.value).sum();
        let (_, last) = events
            .iter()
            .max_by_key(|(arrival, e)| (e.time_ms, *arrival))
            .expect("non-empty");
        exp.features.insert(
            user.to_owned(),
            Features {
                count,
                unique,
                avg: sum / count as f64,
                last_action: last.action.clone(),
                newest_ms: last.time_ms,
            },
        );
    }
    exp
}

/// Expected features of one user from the `tumbling` fixture: the latest
/// fired hour of its partition.
#[derive(Debug, Clone, PartialEq)]
pub struct HourFeatures {
    pub count: i64,
    pub sum: f64,
    /// Population variance.
    pub variance: f64,
    pub last_action: String,
}

/// What a pipeline running the `tumbling` fixture must end with.
#[derive(Debug, Default)]
pub struct TumblingExpected {
    /// Users with events in their partition's latest fired hour.
    pub features: BTreeMap<String, HourFeatures>,
    /// Payloads of events that arrived after their hour closed.
    pub late: Vec<String>,
    /// Payloads of malformed events.
    pub dead: Vec<String>,
}

/// Recomputes from the full list what a tumbling window of `length_ms` with
/// `grace_ms` and out-of-orderness `lag_ms` ends with: an event is late when
/// the watermark (largest event time of its partition so far, minus the lag)
/// has reached its hour's end plus the grace; each user shows the hour that
/// ends last at or before its partition's final watermark.
pub fn expect_tumbling(
    events: &[GenEvent],
    length_ms: i64,
    grace_ms: i64,
    lag_ms: i64,
) -> TumblingExpected {
    let mut exp = TumblingExpected::default();
    let mut stream_time: BTreeMap<i32, i64> = BTreeMap::new();
    let mut applied: Vec<(usize, &GenEvent)> = Vec::new();
    for (arrival, e) in events.iter().enumerate() {
        if e.malformed.is_some() {
            exp.dead.push(e.payload.clone());
            continue;
        }
        let now = stream_time
            .get(&e.partition)
            .map_or(e.time_ms, |t| (*t).max(e.time_ms));
        stream_time.insert(e.partition, now);
        let hour_start = e.time_ms - e.time_ms.rem_euclid(length_ms);
        if hour_start + length_ms + grace_ms <= now - lag_ms {
            exp.late.push(e.payload.clone());
        } else {
            applied.push((arrival, e));
        }
    }
    let mut per_user: BTreeMap<&str, Vec<(usize, &GenEvent)>> = BTreeMap::new();
    for (arrival, e) in applied {
        let watermark = stream_time[&e.partition] - lag_ms;
        // The latest hour [start, start + length) with start + length <= watermark.
        let shown_end = watermark - watermark.rem_euclid(length_ms);
        if shown_end - length_ms <= e.time_ms && e.time_ms < shown_end {
            per_user.entry(&e.user).or_default().push((arrival, e));
        }
    }
    for (user, events) in per_user {
        let values: Vec<f64> = events.iter().map(|(_, e)| e.value).collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let (_, last) = events
            .iter()
            .max_by_key(|(arrival, e)| (e.time_ms, *arrival))
            .expect("non-empty");
        exp.features.insert(
            user.to_owned(),
            HourFeatures {
                count: events.len() as i64,
                sum: values.iter().sum(),
                variance: values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n,
                last_action: last.action.clone(),
            },
        );
    }
    exp
}
