//! Online layouts on the real Redis: the sink's guarded writes in every layout
//! (newer event time kept, tombstones, TTL, lost scripts, Feast views sharing
//! a hash), then the host end to end with a `hash` view, a composite-key
//! `json` view and a pre-seeded newer entity the host must not overwrite (its
//! skipped updates counted by `wafer_redis_skipped_total`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use wafer::config::{FeastConfig, LayoutKind};
use wafer::entity::EntityKey;
use wafer::event::format_time;
use wafer::pipeline::{record_json, FeatureColumns, FeatureRow, FeatureUpdate};
use wafer::plugin::{Column, ColumnData, FeatureSpec, TextColumn, ValueType};
use wafer::sinks::redis::{OnlineLayout, RedisSink, CALLS_PER_PIPELINE, ENTITIES_PER_CALL};
use wafer_tests::reference::{self, GenEvent};
use wafer_tests::{Env, Host};

const CAUGHT_UP: Duration = Duration::from_secs(120);
const T1: i64 = 1_772_323_201_000; // 2026-03-01T00:00:01Z
const T2: i64 = 1_772_323_202_000;
const T3: i64 = 1_772_323_203_000;

/// `tag` followed by this process's id and the time (letters, digits and
/// `tag`'s own characters only): a key prefix or Feast project no other run shares.
fn unique(tag: &str) -> String {
    format!(
        "{tag}{}x{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    )
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(wafer_tests::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn specs() -> Arc<[FeatureSpec]> {
    [
        ("count", ValueType::Int64),
        ("avg", ValueType::Float64),
        ("flag", ValueType::Boolean),
        ("label", ValueType::Text),
    ]
    .map(|(name, kind)| FeatureSpec {
        name: name.into(),
        kind,
    })
    .into()
}

/// One row of the four test features (`avg` None = null).
fn row(count: i64, avg: Option<f64>, flag: bool, label: &str) -> FeatureRow {
    let column = |data| Column {
        data,
        valid: Vec::new(),
    };
    let avg_column = Column {
        data: ColumnData::Float64(vec![avg.unwrap_or_default()]),
        valid: if avg.is_some() {
            Vec::new()
        } else {
            vec![false]
        },
    };
    FeatureRow {
        columns: Arc::new(FeatureColumns {
            specs: specs(),
            plugin: "t@1#00".into(),
            columns: vec![
                column(ColumnData::Int64(vec![count])),
                avg_column,
                column(ColumnData::Boolean(vec![flag])),
                column(ColumnData::Text(TextColumn {
                    dictionary: vec![label.to_owned()],
                    codes: vec![0],
                })),
            ],
        }),
        row: 0,
    }
}

fn update(
    layout: &OnlineLayout,
    id: &str,
    as_of_ms: i64,
    features: Option<FeatureRow>,
) -> FeatureUpdate {
    FeatureUpdate {
        entity: id.to_owned(),
        as_of_ms,
        value: features
            .as_ref()
            .map(|r| record_json(layout.entity(), id, r.values(), &format_time(as_of_ms))),
        features,
    }
}

/// Writes `updates` of one view; returns how many the guard skipped.
async fn write(
    sink: &mut RedisSink,
    layout: &Arc<OnlineLayout>,
    updates: Vec<FeatureUpdate>,
) -> u64 {
    let skipped = sink.write(&[(layout.clone(), updates)]).await.unwrap();
    assert_eq!(skipped.len(), 1);
    skipped[0]
}

fn layout(
    kind: LayoutKind,
    entity: EntityKey,
    template: String,
    feast: Option<FeastConfig>,
) -> Arc<OnlineLayout> {
    Arc::new(OnlineLayout::new(kind, entity, template, 100, feast.as_ref(), specs()).unwrap())
}

fn feast(project: &str, view: &str) -> Option<FeastConfig> {
    Some(FeastConfig {
        project: project.into(),
        feature_view: view.into(),
        join_key_types: BTreeMap::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_keep_the_newer_event_time_in_every_layout() {
    let prefix = unique("layouts-");
    let mut conn = redis().await;
    let mut sink = RedisSink::connect(&wafer_tests::redis_url()).await.unwrap();
    let pair = EntityKey::new(vec!["user_id".into(), "device".into()]);
    let cases = [
        (
            layout(
                LayoutKind::Json,
                EntityKey::single("user_id"),
                format!("{prefix}:json:{{user_id}}"),
                None,
            ),
            "u1",
            r#""user_id":"u1""#,
        ),
        (
            layout(
                LayoutKind::Hash,
                pair,
                format!("{prefix}:hash:{{entity}}"),
                None,
            ),
            "u1:ios",
            r#""user_id":"u1","device":"ios""#,
        ),
        (
            layout(
                LayoutKind::Feast,
                EntityKey::single("user_id"),
                String::new(),
                feast(&prefix, "fv"),
            ),
            "u1",
            r#""user_id":"u1""#,
        ),
    ];
    // The records a lookup must return, worked out by hand.
    let a2 = |e: &str| {
        format!(
            r#"{{{e},"count":3,"avg":2.5,"flag":true,"label":"x","computed_at":"2026-03-01T00:00:02.000Z"}}"#
        )
    };
    let c2 = |e: &str| {
        format!(
            r#"{{{e},"count":5,"avg":null,"flag":false,"label":"z","computed_at":"2026-03-01T00:00:02.000Z"}}"#
        )
    };
    let a3 = |e: &str| {
        format!(
            r#"{{{e},"count":3,"avg":2.5,"flag":true,"label":"x","computed_at":"2026-03-01T00:00:03.000Z"}}"#
        )
    };
    for (layout, id, entity) in &cases {
        let kind = layout.kind();
        let key = layout.key(id).unwrap();
        let read = |sink: &RedisSink| {
            let sink = sink.clone();
            let layout = layout.clone();
            let id = id.to_string();
            async move { sink.read(&layout, &id).await.unwrap() }
        };
        let a = row(3, Some(2.5), true, "x");
        let skipped = write(
            &mut sink,
            layout,
            vec![update(layout, id, T2, Some(a.clone()))],
        )
        .await;
        assert_eq!(read(&sink).await, Some(a2(entity)), "{kind:?}: first write");
        assert_eq!(skipped, 0, "{kind:?}: first write");

        let skipped = write(
            &mut sink,
            layout,
            vec![update(
                layout,
                id,
                T1,
                Some(row(9, Some(9.0), false, "old")),
            )],
        )
        .await;
        assert_eq!(
            read(&sink).await,
            Some(a2(entity)),
            "{kind:?}: an older write is skipped"
        );
        assert_eq!(skipped, 1, "{kind:?}: the older write is counted");

        let skipped = write(
            &mut sink,
            layout,
            vec![update(layout, id, T2, Some(row(5, None, false, "z")))],
        )
        .await;
        assert_eq!(
            read(&sink).await,
            Some(c2(entity)),
            "{kind:?}: a write as of the same time wins"
        );
        assert_eq!(skipped, 0, "{kind:?}: same time");

        let skipped = write(&mut sink, layout, vec![update(layout, id, T1, None)]).await;
        assert_eq!(
            read(&sink).await,
            Some(c2(entity)),
            "{kind:?}: an older tombstone is skipped"
        );
        assert_eq!(skipped, 1, "{kind:?}: the older tombstone is counted");

        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=100).contains(&ttl), "{kind:?}: ttl {ttl}");

        if kind == LayoutKind::Hash {
            // The documented value encoding; the null `avg` is left out.
            let stored: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let want: HashMap<String, String> = [
                ("_as_of_ms", T2.to_string()),
                ("count", "5".into()),
                ("flag", "false".into()),
                ("label", "z".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            assert_eq!(stored, want);
        }

        let skipped = write(&mut sink, layout, vec![update(layout, id, T3, None)]).await;
        assert_eq!(
            read(&sink).await,
            None,
            "{kind:?}: a newer tombstone deletes"
        );
        assert_eq!(skipped, 0, "{kind:?}: newer tombstone");
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(exists, 0, "{kind:?}: nothing left after the tombstone");

        // The server forgets its scripts: the sink loads them again.
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        let skipped = write(&mut sink, layout, vec![update(layout, id, T3, Some(a))]).await;
        assert_eq!(
            read(&sink).await,
            Some(a3(entity)),
            "{kind:?}: written after NOSCRIPT"
        );
        assert_eq!(skipped, 0, "{kind:?}: after NOSCRIPT");
        redis::cmd("DEL")
            .arg(&key)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

/// A flush of more entities than one script call carries (three calls) writes
/// each entity by its own guard: mixed older and newer writes and tombstones in
/// one batch, against records seeded before, in every layout. The skipped
/// updates are counted per view, also when one pipeline carries several views.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_several_script_calls_guards_each_entity() {
    let prefix = unique("batch-");
    let mut sink = RedisSink::connect(&wafer_tests::redis_url()).await.unwrap();
    let user = || EntityKey::single("user_id");
    let layouts = [
        layout(
            LayoutKind::Json,
            user(),
            format!("{prefix}:json:{{user_id}}"),
            None,
        ),
        layout(
            LayoutKind::Hash,
            user(),
            format!("{prefix}:hash:{{user_id}}"),
            None,
        ),
        layout(
            LayoutKind::Feast,
            user(),
            String::new(),
            feast(&prefix, "fv"),
        ),
    ];
    let entities = 2 * ENTITIES_PER_CALL + 7;
    let seeded = 2 * ENTITIES_PER_CALL - 20;
    let id = |i: usize| format!("u{i}");
    for layout in &layouts {
        let kind = layout.kind();
        // Entities 0..seeded hold count = i as of T2.
        let seed = (0..seeded)
            .map(|i| {
                update(
                    layout,
                    &id(i),
                    T2,
                    Some(row(i as i64, Some(2.5), true, "x")),
                )
            })
            .collect();
        assert_eq!(write(&mut sink, layout, seed).await, 0, "{kind:?}: seed");
        // One flush: entity i of the seeded ones gets, by i % 4, an older write,
        // a newer write, an older tombstone, a newer tombstone; the others a write.
        let batch = (0..entities)
            .map(|i| {
                let new = Some(row(1000 + i as i64, Some(2.5), true, "x"));
                match (i < seeded, i % 4) {
                    (true, 0) => update(layout, &id(i), T1, new),
                    (true, 1) => update(layout, &id(i), T3, new),
                    (true, 2) => update(layout, &id(i), T1, None),
                    (true, _) => update(layout, &id(i), T3, None),
                    (false, _) => update(layout, &id(i), T1, new),
                }
            })
            .collect();
        // Skipped: the older writes and tombstones, i < 236 with i % 4 in {0, 2}:
        // 2 of every 4 of 236 = 118.
        assert_eq!(seeded, 236);
        assert_eq!(
            write(&mut sink, layout, batch).await,
            118,
            "{kind:?}: batch"
        );
        let record = |i: usize, count: usize, at: &str| {
            format!(
                r#"{{"user_id":"u{i}","count":{count},"avg":2.5,"flag":true,"label":"x","computed_at":"2026-03-01T00:00:0{at}.000Z"}}"#
            )
        };
        for i in 0..entities {
            let want = match (i < seeded, i % 4) {
                (true, 0 | 2) => Some(record(i, i, "2")),
                (true, 1) => Some(record(i, 1000 + i, "3")),
                (true, _) => None,
                (false, _) => Some(record(i, 1000 + i, "1")),
            };
            let got = sink.read(layout, &id(i)).await.unwrap();
            assert_eq!(got, want, "{kind:?}: entity {i}");
        }
    }
    // One pipeline of the three views, writing entities 0..n as of T1, n = 236
    // (json, two calls), 40 (hash, one call) and 263 (feast, three calls).
    // Stored now: i < 236 as of T2 or T3 when i % 4 is 0, 1 or 2 (skipped),
    // deleted when 3 (written); i >= 236 as of T1 (same time: written).
    // Skipped: 3 of every 4 of min(n, 236): 177, 30 and 177.
    let writes: Vec<_> = layouts
        .iter()
        .zip([seeded, 40, entities])
        .map(|(layout, n)| {
            let updates = (0..n)
                .map(|i| update(layout, &id(i), T1, Some(row(7, None, false, "y"))))
                .collect();
            (layout.clone(), updates)
        })
        .collect();
    assert_eq!(
        sink.write(&writes).await.unwrap(),
        vec![177, 30, 177],
        "per view, in the order of the writes"
    );
    let mut conn = redis().await;
    for layout in &layouts {
        for i in 0..entities {
            redis::cmd("DEL")
                .arg(layout.key(&id(i)).unwrap())
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// A flush larger than one pipeline carries goes out in several pipelines,
/// one after the other: every entity is written or skipped by its guard and
/// the skipped updates are counted across the pipelines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_several_pipelines_writes_every_entity() {
    let prefix = unique("pipelines-");
    let mut sink = RedisSink::connect(&wafer_tests::redis_url()).await.unwrap();
    let layout = layout(
        LayoutKind::Json,
        EntityKey::single("user_id"),
        format!("{prefix}:{{user_id}}"),
        None,
    );
    let entities = 2 * CALLS_PER_PIPELINE * ENTITIES_PER_CALL + 300;
    let id = |i: usize| format!("u{i}");
    // Every third entity holds a record as of T2: the flush as of T1 skips it.
    let seed = (0..entities)
        .step_by(3)
        .map(|i| update(&layout, &id(i), T2, Some(row(1, None, true, "old"))))
        .collect();
    assert_eq!(write(&mut sink, &layout, seed).await, 0, "seed");
    let batch = (0..entities)
        .map(|i| update(&layout, &id(i), T1, Some(row(i as i64, None, true, "new"))))
        .collect();
    assert_eq!(
        write(&mut sink, &layout, batch).await,
        entities.div_ceil(3) as u64,
        "skipped: the seeded ones"
    );
    let mut conn = redis().await;
    let keys: Vec<Vec<u8>> = (0..entities).map(|i| layout.key(&id(i)).unwrap()).collect();
    let stored: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    for (i, value) in stored.iter().enumerate() {
        let value = value
            .as_deref()
            .unwrap_or_else(|| panic!("entity {i} missing"));
        let want = if i % 3 == 0 {
            r#""count":1,"#.to_owned()
        } else {
            format!(r#""count":{i},"#)
        };
        assert!(value.contains(&want), "entity {i}: {value}");
    }
    redis::cmd("DEL")
        .arg(&keys)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feast_views_share_an_entity_hash() {
    let project = unique("shared");
    let mut conn = redis().await;
    let mut sink = RedisSink::connect(&wafer_tests::redis_url()).await.unwrap();
    let one = layout(
        LayoutKind::Feast,
        EntityKey::single("user_id"),
        String::new(),
        feast(&project, "one"),
    );
    let two = layout(
        LayoutKind::Feast,
        EntityKey::single("user_id"),
        String::new(),
        feast(&project, "two"),
    );
    assert_eq!(
        one.key("u1"),
        two.key("u1"),
        "one hash per (project, entity)"
    );
    write(
        &mut sink,
        &one,
        vec![update(&one, "u1", T2, Some(row(1, Some(1.0), true, "a")))],
    )
    .await;
    // Another view's fields and time are its own: an older event time still writes.
    write(
        &mut sink,
        &two,
        vec![update(&two, "u1", T1, Some(row(2, Some(2.0), false, "b")))],
    )
    .await;
    let key = one.key("u1").unwrap();
    let fields: i64 = redis::cmd("HLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fields, 10, "4 features and _ts per view");
    write(&mut sink, &one, vec![update(&one, "u1", T3, None)]).await;
    assert_eq!(sink.read(&one, "u1").await.unwrap(), None);
    assert_eq!(
        sink.read(&two, "u1").await.unwrap().as_deref(),
        Some(
            r#"{"user_id":"u1","count":2,"avg":2.0,"flag":false,"label":"b","computed_at":"2026-03-01T00:00:01.000Z"}"#
        ),
        "a tombstone of one view leaves the other's fields"
    );
    let fields: i64 = redis::cmd("HLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fields, 5);
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

fn config(env: &Env, admin_port: u16) -> wafer::config::Config {
    let text = format!(
        r#"{sources}
[admin]
listen = "127.0.0.1:{admin_port}"

[[views]]
name = "main"
[views.plugin]
path = "{plugin}"
layout = "hash"
key_template = "{prefix}:features:{{user_id}}"
ttl_secs = 600
watch = false

[[views]]
name = "pairs"
[views.plugin]
path = "{plugin}"
entity_fields = ["user_id", "action"]
key_template = "{prefix}:pairs:{{entity}}"
watch = false
"#,
        sources = env.sources_toml(300),
        plugin = wafer_tests::user_activity_plugin().display(),
        prefix = env.key_prefix,
    );
    wafer::config::Config::parse(&text, "layouts test").unwrap()
}

/// Every key under `<prefix>:<infix>:`, by the rest of the key.
async fn keys(env: &Env, infix: &str) -> BTreeSet<String> {
    let mut conn = redis().await;
    let pattern = format!("{}:{infix}:*", env.key_prefix);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    let cut = pattern.len() - 1;
    keys.into_iter().map(|k| k[cut..].to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_and_composite_views_end_to_end() {
    let env = Env::new("layouts", 2).await.unwrap();
    let events = reference::generate(83, 3000, 60, 2);
    let exp = reference::expect(&events);
    // The (user, action) view's reference: the same events keyed by the pair's id.
    let pairs: Vec<GenEvent> = events
        .iter()
        .map(|e| {
            let mut p = e.clone();
            p.user = format!("{}:{}", e.user, e.action);
            p
        })
        .collect();
    let exp_pairs = reference::expect(&pairs);
    let mut conn = redis().await;

    // An entity already stored as of a later event time than the stream's: kept.
    let seeded = exp.features.keys().next().unwrap().clone();
    let seeded_key = format!("{}:features:{seeded}", env.key_prefix);
    redis::cmd("HSET")
        .arg(&seeded_key)
        .arg("_as_of_ms")
        .arg(4_102_444_800_000_i64) // 2100
        .arg("event_count_1h")
        .arg(-7)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let admin_port = wafer_tests::free_port();
    let host = Host::start(config(&env, admin_port));
    let records: Vec<(i32, String, String)> = events
        .iter()
        .map(|e| (e.partition, e.user.clone(), e.payload.clone()))
        .collect();
    env.produce(&records).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();

    // Hash view: one hash per user with a non-empty window, the reference's values.
    assert_eq!(
        keys(&env, "features").await,
        exp.features.keys().cloned().collect(),
        "hash keys"
    );
    let partition_of: BTreeMap<&str, i32> = events
        .iter()
        .map(|e| (e.user.as_str(), e.partition))
        .collect();
    for (user, want) in &exp.features {
        let key = format!("{}:features:{user}", env.key_prefix);
        let stored: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if *user == seeded {
            assert_eq!(
                stored["event_count_1h"], "-7",
                "the newer stored hash is kept"
            );
            assert_eq!(stored.len(), 2);
            continue;
        }
        assert_eq!(stored.len(), 5, "{user}: {stored:?}");
        assert_eq!(stored["event_count_1h"], want.count.to_string(), "{user}");
        assert_eq!(
            stored["unique_actions_1h"],
            want.unique.to_string(),
            "{user}"
        );
        assert_eq!(stored["last_action"], want.last_action, "{user}");
        let avg: f64 = stored["avg_value_1h"].parse().unwrap();
        assert!(
            (avg - want.avg).abs() <= 1e-9 * want.avg.abs().max(1.0),
            "{user} avg"
        );
        let as_of: i64 = stored["_as_of_ms"].parse().unwrap();
        let stream_time = exp.stream_time[&partition_of[user.as_str()]];
        assert!(
            want.newest_ms <= as_of && as_of <= stream_time,
            "{user}: as of {as_of}"
        );
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=600).contains(&ttl), "{user}: ttl {ttl}");
    }

    // Composite view: JSON records keyed `<user>:<action>` with both entity fields.
    assert_eq!(
        keys(&env, "pairs").await,
        exp_pairs.features.keys().cloned().collect(),
        "composite keys"
    );
    for (id, want) in &exp_pairs.features {
        let key = format!("{}:pairs:{id}", env.key_prefix);
        let text: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let got: serde_json::Value = serde_json::from_str(&text).unwrap();
        let (user, action) = id.split_once(':').unwrap();
        assert_eq!(got["user_id"], user);
        assert_eq!(got["action"], action);
        assert_eq!(got["event_count_1h"], want.count, "{id}");
        assert_eq!(got["last_action"], action, "{id}");
    }

    // Lookups give the feature record of ml-features, whatever the layout.
    let mut last: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in env.read_topic(&env.output).unwrap() {
        last.insert(r.key.unwrap(), r.value);
    }
    let client = reqwest::Client::new();
    let lookup = |view: &str, id: &str| {
        let url = format!("http://127.0.0.1:{admin_port}/features/{view}/{id}");
        let client = client.clone();
        async move {
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let mut checked = 0;
    for user in exp.features.keys().filter(|u| **u != seeded).take(20) {
        let want = last[user]
            .clone()
            .expect("the last record of a user with features");
        assert_eq!(lookup("main", user).await, (200, want), "{user}");
        checked += 1;
    }
    let id = exp_pairs.features.keys().next().unwrap();
    let want = last[id]
        .clone()
        .expect("the last record of a pair with features");
    assert_eq!(lookup("pairs", id).await, (200, want), "{id}");
    assert_eq!(lookup("pairs", "no-action").await.0, 404);
    let gone = exp
        .ever_applied
        .iter()
        .find(|u| !exp.features.contains_key(*u))
        .unwrap();
    assert_eq!(lookup("main", gone).await.0, 404, "a tombstoned user");
    assert!(checked > 5);

    // Every update of the seeded entity was skipped by the guard, and only those:
    // as many as its records on the feature topic, which gets every update too.
    let seeded_updates = env
        .read_topic(&env.output)
        .unwrap()
        .iter()
        .filter(|r| r.key.as_deref() == Some(seeded.as_str()))
        .count();
    assert!(seeded_updates > 0);
    let (status, metrics) = lookup_metrics(&client, admin_port).await;
    assert_eq!(status, 200);
    let skipped = |view: &str| -> usize {
        let series = format!("wafer_redis_skipped_total{{view=\"{view}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .unwrap_or_else(|| panic!("{series}missing in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(skipped("main"), seeded_updates, "hash view");
    assert_eq!(skipped("pairs"), 0, "composite view: nothing stored before");
    host.stop().await.unwrap();
}

async fn lookup_metrics(client: &reqwest::Client, admin_port: u16) -> (u16, String) {
    let r = client
        .get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}
