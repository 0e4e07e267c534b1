//! Checks of a user-activity pipeline's outputs against the reference model.

use std::collections::{BTreeMap, BTreeSet};

use crate::reference::{Expected, Features, GenEvent};
use crate::{Env, Record};

fn multiset(items: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

/// Which outputs of one view to check.
pub struct ViewOutputs<'a> {
    /// Redis keys are `<prefix>:<infix>:<user>`.
    pub infix: &'a str,
    /// The view's feature topic.
    pub topic: &'a str,
    /// With several views, side records carry a `wafer.view` header: check only
    /// this view's.
    pub view: Option<&'a str>,
}

/// Checks Redis, `ml-features`, dead letters and late events against `exp`.
/// With `exactly_once`, side records must appear once each (no replay happened).
/// Users in `excluded` (those a misbehaving plugin fails on) must have no
/// features anywhere, and dead letters other than event ones are ignored here.
pub async fn assert_outputs(
    env: &Env,
    events: &[GenEvent],
    exp: &Expected,
    exactly_once: bool,
    excluded: &BTreeSet<String>,
) {
    let outputs = ViewOutputs {
        infix: "features",
        topic: &env.output,
        view: None,
    };
    assert_view_outputs(env, &outputs, events, exp, exactly_once, excluded).await;
}

/// One user-activity feature record in Redis (`value`, its TTL `ttl`) of the
/// entity `id` (field `entity_field`), against the reference `want`; its
/// `computed_at` lies between the entity's newest event and `stream_time`, the
/// end stream time of its partition.
pub fn assert_feature_record(
    entity_field: &str,
    id: &str,
    value: &str,
    ttl: i64,
    want: &Features,
    stream_time: i64,
) {
    let got: serde_json::Value = serde_json::from_str(value).unwrap();
    let fields: BTreeSet<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            entity_field,
            "event_count_1h",
            "unique_actions_1h",
            "avg_value_1h",
            "last_action",
            "computed_at"
        ]),
        "{id}"
    );
    assert_eq!(got[entity_field], id);
    assert_eq!(got["event_count_1h"], want.count, "{id} count");
    assert_eq!(got["unique_actions_1h"], want.unique, "{id} unique");
    let avg = got["avg_value_1h"].as_f64().unwrap();
    assert!(
        (avg - want.avg).abs() <= 1e-9 * want.avg.abs().max(1.0),
        "{id} avg {avg} vs {}",
        want.avg
    );
    assert_eq!(
        got["last_action"],
        want.last_action.as_str(),
        "{id} last_action"
    );
    let computed_at = wafer::event::parse_timestamp(got["computed_at"].as_str().unwrap()).unwrap();
    assert!(
        want.newest_ms <= computed_at && computed_at <= stream_time,
        "{id}: computed_at {computed_at} outside [{}, {stream_time}]",
        want.newest_ms
    );
    assert!((1..=3600).contains(&ttl), "{id} ttl {ttl}");
}

/// [`assert_outputs`] for one view of a pipeline.
pub async fn assert_view_outputs(
    env: &Env,
    outputs: &ViewOutputs<'_>,
    events: &[GenEvent],
    exp: &Expected,
    exactly_once: bool,
    excluded: &BTreeSet<String>,
) {
    // Redis: exactly the users with a non-empty window, with the reference values.
    let redis = env.redis_values(outputs.infix).await.unwrap();
    assert_eq!(
        redis.keys().collect::<Vec<_>>(),
        exp.features
            .keys()
            .filter(|u| !excluded.contains(*u))
            .collect::<Vec<_>>(),
        "redis keys"
    );
    let partition_of: BTreeMap<&str, i32> = events
        .iter()
        .map(|e| (e.user.as_str(), e.partition))
        .collect();
    for (user, (value, ttl)) in &redis {
        let stream_time = exp.stream_time[&partition_of[user.as_str()]];
        assert_feature_record(
            "user_id",
            user,
            value,
            *ttl,
            &exp.features[user],
            stream_time,
        );
    }

    // ml-features: one key per user ever applied; the last record of each key
    // is the Redis value, or a tombstone when the window ended empty.
    let output = env.read_topic(outputs.topic).unwrap();
    let mut last: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in &output {
        let plugin = r.headers.get("wafer.plugin");
        assert!(plugin.is_some_and(|p| p.contains('@')), "plugin header");
        let key = r.key.clone().expect("feature records are keyed");
        if r.value.is_some() {
            assert!(
                !excluded.contains(&key),
                "{key}: features of an excluded user"
            );
        }
        last.insert(key, r.value.clone());
    }
    // An excluded user may still get a tombstone when its window empties.
    last.retain(|k, v| !(excluded.contains(k) && v.is_none()));
    let ever_applied: BTreeSet<String> = exp
        .ever_applied
        .iter()
        .filter(|u| !excluded.contains(*u))
        .cloned()
        .collect();
    assert_eq!(
        last.keys().cloned().collect::<BTreeSet<_>>(),
        ever_applied,
        "ml-features keys"
    );
    let mut tombstones = 0;
    for (user, value) in &last {
        match (value, redis.get(user)) {
            (Some(v), Some((stored, _))) => assert_eq!(v, stored, "{user}: topic and redis differ"),
            (None, None) => tombstones += 1,
            (v, r) => panic!("{user}: last ml-features record {v:?} but redis {r:?}"),
        }
    }
    assert!(tombstones > 0, "the stream should empty some windows");

    // Dead letters and late events: the reference's, with reasons and sources.
    let dead: Vec<Record> = env
        .read_topic(&env.dead_letters)
        .unwrap()
        .into_iter()
        .filter(|r| !r.headers.contains_key("wafer.plugin"))
        .filter(|r| r.headers.get("wafer.view").map(String::as_str) == outputs.view)
        .collect();
    let late: Vec<Record> = env
        .read_topic(&env.late)
        .unwrap()
        .into_iter()
        .filter(|r| r.headers.get("wafer.view").map(String::as_str) == outputs.view)
        .collect();
    for r in dead.iter().chain(&late) {
        assert!(!r.headers["wafer.reason"].is_empty());
        assert_eq!(r.headers["wafer.source.topic"], env.input);
        let payload = r.value.clone().unwrap();
        let source = events
            .iter()
            .find(|e| e.payload == payload)
            .expect("side record of a produced event");
        assert_eq!(
            r.headers["wafer.source.partition"],
            source.partition.to_string()
        );
        assert!(r.headers["wafer.source.offset"].parse::<i64>().is_ok());
    }
    assert!(late
        .iter()
        .all(|r| r.headers["wafer.reason"].contains("window")));
    let got_dead = multiset(dead.iter().map(|r| r.value.clone().unwrap()));
    let got_late = multiset(late.iter().map(|r| r.value.clone().unwrap()));
    let want_dead = multiset(exp.dead.iter().cloned());
    let want_late = multiset(exp.late.iter().cloned());
    if exactly_once {
        assert_eq!(got_dead, want_dead, "dead letters");
        assert_eq!(got_late, want_late, "late events");
    } else {
        assert_eq!(
            got_dead.keys().collect::<Vec<_>>(),
            want_dead.keys().collect::<Vec<_>>(),
            "dead letters"
        );
        assert_eq!(
            got_late.keys().collect::<Vec<_>>(),
            want_late.keys().collect::<Vec<_>>(),
            "late events"
        );
    }
}
