//! The window engine against a deliberately naive reference: recompute every
//! aggregate from the full list of applied events.

use std::collections::BTreeMap;

use super::*;
use crate::plugin::{
    AggregationKind as K, AggregationSpec, Descriptor, FeatureSpec, InputField, ValueType,
    WindowKind, WindowSpec,
};

fn descriptor() -> Descriptor {
    let agg = |w: &str, kind, field: Option<&str>| AggregationSpec {
        window: w.into(),
        kind,
        field: field.map(Into::into),
    };
    Descriptor {
        name: "t".into(),
        version: "0".into(),
        entity_key: "user_id".into(),
        inputs: vec![
            InputField {
                name: "action".into(),
                kind: ValueType::Text,
            },
            InputField {
                name: "value".into(),
                kind: ValueType::Float64,
            },
        ],
        windows: vec![
            WindowSpec {
                name: "short".into(),
                kind: WindowKind::Sliding,
                length_ms: 300,
            },
            WindowSpec {
                name: "long".into(),
                kind: WindowKind::Sliding,
                length_ms: 1000,
            },
        ],
        aggregations: vec![
            agg("long", K::Count, None),
            agg("long", K::DistinctCount, Some("action")),
            agg("long", K::Sum, Some("value")),
            agg("long", K::Last, Some("action")),
            agg("long", K::First, Some("action")),
            agg("short", K::Count, None),
            agg("short", K::Mean, Some("value")),
            agg("short", K::Min, Some("value")),
            agg("short", K::Max, Some("value")),
            agg("short", K::DistinctCount, Some("action")),
            agg("short", K::Last, Some("value")),
        ],
        features: vec![FeatureSpec {
            name: "x".into(),
            kind: ValueType::Int64,
        }],
    }
}

/// Small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[derive(Clone, Debug)]
struct Ev {
    offset: i64,
    entity: String,
    t: i64,
    action: u64,
    value: f64,
}

fn stream(seed: u64, n: usize) -> Vec<Ev> {
    let mut rng = Rng(seed | 1);
    let mut clock = 10_000i64;
    (0..n)
        .map(|i| {
            // Mostly forward, often out of order, sometimes a burst far back (late),
            // sometimes an idle jump forward; many equal timestamps.
            clock += match rng.below(20) {
                0 => 900 + rng.below(600) as i64,
                1..=3 => 0,
                _ => rng.below(40) as i64,
            };
            let t = match rng.below(10) {
                0 => clock - 1200 - rng.below(500) as i64,
                1..=3 => clock - rng.below(400) as i64,
                _ => clock,
            };
            Ev {
                offset: i as i64,
                entity: format!("e{}", rng.below(7)),
                t,
                action: rng.below(4),
                value: (rng.below(2000) as f64 - 1000.0) / 8.0,
            }
        })
        .collect()
}

fn cells(e: &Ev) -> [u64; 2] {
    [e.action, e.value.to_bits()]
}

/// Reference: which events were applied (not late), and the aggregates of
/// every entity as of the final stream time, by recomputation.
fn reference(events: &[Ev]) -> (BTreeMap<String, Vec<AggCell>>, usize) {
    let mut now: Option<i64> = None;
    let mut applied: Vec<&Ev> = Vec::new();
    let mut late = 0;
    for e in events {
        if now.is_some_and(|n| e.t <= n - 1000) {
            late += 1;
            continue;
        }
        now = Some(now.map_or(e.t, |n| n.max(e.t)));
        applied.push(e);
    }
    let now = now.unwrap();
    let mut out = BTreeMap::new();
    let entities: std::collections::BTreeSet<&str> =
        applied.iter().map(|e| e.entity.as_str()).collect();
    for entity in entities {
        let in_window = |len: i64| -> Vec<&Ev> {
            let mut v: Vec<&Ev> = applied
                .iter()
                .copied()
                .filter(|e| e.entity == entity && e.t > now - len && e.t <= now)
                .collect();
            // By event time, ties by arrival (offset).
            v.sort_by_key(|e| (e.t, e.offset));
            v
        };
        let long = in_window(1000);
        if long.is_empty() {
            continue;
        }
        let short = in_window(300);
        let distinct = |v: &[&Ev]| {
            v.iter()
                .map(|e| e.action)
                .collect::<std::collections::BTreeSet<_>>()
                .len() as i64
        };
        let values: Vec<f64> = short.iter().map(|e| e.value).collect();
        let opt = |x: Option<f64>| x.map_or(AggCell::Null, AggCell::Float);
        out.insert(
            entity.to_owned(),
            vec![
                AggCell::Int(long.len() as i64),
                AggCell::Int(distinct(&long)),
                AggCell::Float(long.iter().map(|e| e.value).sum()),
                AggCell::Stored(long.last().unwrap().action),
                AggCell::Stored(long.first().unwrap().action),
                AggCell::Int(short.len() as i64),
                opt((!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)),
                opt(values.iter().copied().reduce(f64::min)),
                opt(values.iter().copied().reduce(f64::max)),
                AggCell::Int(distinct(&short)),
                short
                    .last()
                    .map_or(AggCell::Null, |e| AggCell::Stored(e.value.to_bits())),
            ],
        );
    }
    (out, late)
}

fn assert_same(got: &BTreeMap<String, Vec<AggCell>>, want: &BTreeMap<String, Vec<AggCell>>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, w) in want {
        for (i, (g, w)) in got[k].iter().zip(w).enumerate() {
            match (g, w) {
                (AggCell::Float(a), AggCell::Float(b)) => {
                    assert!(
                        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                        "{k} agg {i}: {a} vs {b}"
                    )
                }
                _ => assert_eq!(g, w, "{k} agg {i}"),
            }
        }
    }
}

/// Applies `events`, flushing at random points, and returns what the last
/// emissions published per entity (tombstones remove) and the late count.
fn run(
    plan: &Plan,
    p: &mut Partition,
    events: &[Ev],
    rng: &mut Rng,
) -> (BTreeMap<String, Vec<AggCell>>, usize) {
    let mut published = BTreeMap::new();
    let mut late = 0;
    for e in events {
        if p.apply(plan, e.offset, &e.entity, e.t, &cells(e)).is_err() {
            late += 1;
        }
        if rng.below(8) == 0 {
            publish(plan, p, &mut published);
        }
    }
    publish(plan, p, &mut published);
    (published, late)
}

fn publish(plan: &Plan, p: &mut Partition, published: &mut BTreeMap<String, Vec<AggCell>>) {
    let e = p.drain(plan);
    for row in e.rows {
        published.insert(row.key.to_string(), row.cells);
    }
    // A tombstone may name an entity this run never published (it came and went
    // between two flushes, or a previous owner published it): removing is idempotent.
    for k in e.tombstones {
        published.remove(&*k);
    }
}

#[test]
fn matches_naive_recomputation_on_random_streams() {
    let plan = Plan::new(&descriptor());
    for seed in 1..40u64 {
        let events = stream(seed * 7919, 600);
        let mut p = Partition::new(&plan);
        let (published, late) = run(&plan, &mut p, &events, &mut Rng(seed));
        let (want, want_late) = reference(&events);
        assert_eq!(late, want_late, "seed {seed}");
        assert!(late > 0, "the stream should exercise late events");
        assert_same(&published, &want);
        assert_same(&p.snapshot(&plan), &want);
    }
}

#[test]
fn replay_from_a_checkpoint_rebuilds_the_same_state() {
    let plan = Plan::new(&descriptor());
    for seed in 1..30u64 {
        let events = stream(seed * 104_729, 500);
        let cut = 100 + (seed as usize * 13) % 350;
        let mut original = Partition::new(&plan);
        let mut rng = Rng(seed);
        run(&plan, &mut original, &events[..cut], &mut rng);
        let checkpoint = original.checkpoint(cut as i64);
        assert!(checkpoint.rebuild_from <= cut as i64);

        let mut restored = Partition::restored(&plan, checkpoint.stream_time);
        for e in &events[checkpoint.rebuild_from as usize..cut] {
            restored.replay(&plan, e.offset, &e.entity, e.t, &cells(e));
        }
        assert_same(&restored.snapshot(&plan), &original.snapshot(&plan));
        assert!(
            restored.drain(&plan).rows.is_empty(),
            "a rebuild emits nothing"
        );

        // Both continue identically.
        let (a, _) = run(&plan, &mut original, &events[cut..], &mut Rng(seed + 1));
        let (b, _) = run(&plan, &mut restored, &events[cut..], &mut Rng(seed + 2));
        let (want, _) = reference(&events);
        assert_same(&original.snapshot(&plan), &want);
        assert_same(&restored.snapshot(&plan), &want);
        // Both published the same entities with the same values after the cut.
        assert_same(&b, &a);
    }
}

#[test]
fn worked_timeline_of_the_user_activity_window() {
    // One 1000 ms window; times in ms. Hand-worked expectations.
    let mut d = descriptor();
    d.windows.truncate(1);
    d.windows[0] = WindowSpec {
        name: "long".into(),
        kind: WindowKind::Sliding,
        length_ms: 1000,
    };
    d.aggregations.truncate(4);
    let plan = Plan::new(&d);
    let mut p = Partition::new(&plan);
    let ev = |p: &mut Partition, off, e: &str, t, a: u64, v: f64| {
        p.apply(&plan, off, e, t, &[a, v.to_bits()])
    };
    ev(&mut p, 0, "u", 1000, 1, 2.0).unwrap(); // T=1000, window (0,1000]
    ev(&mut p, 1, "u", 1500, 2, 4.0).unwrap(); // T=1500
    ev(&mut p, 2, "u", 1200, 3, 6.0).unwrap(); // out of order, inside (500,1500]
    ev(&mut p, 3, "u", 1500, 1, 8.0).unwrap(); // tie with offset 1: later arrival wins `last`
    let snap = p.snapshot(&plan);
    assert_eq!(
        snap["u"],
        vec![
            AggCell::Int(4),
            AggCell::Int(3),
            AggCell::Float(20.0),
            AggCell::Stored(1)
        ]
    );
    // T -> 2100: window (1100, 2100]: the event at 1000 leaves.
    ev(&mut p, 4, "v", 2100, 0, 1.0).unwrap();
    assert_eq!(p.snapshot(&plan)["u"][0], AggCell::Int(3));
    // An event at 1100 = T - W is late.
    assert_eq!(
        ev(&mut p, 5, "u", 1100, 0, 0.0),
        Err(Late {
            stream_time: 2100,
            window_ms: 1000
        })
    );
    p.drain(&plan);
    // T -> 2600: (1600, 2600]: u is empty -> tombstone.
    ev(&mut p, 6, "v", 2600, 0, 1.0).unwrap();
    let e = p.drain(&plan);
    assert_eq!(e.tombstones, vec![Box::<str>::from("u")]);
    assert_eq!(p.entities(), 1);
}
