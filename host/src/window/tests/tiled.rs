//! Tiled sliding windows against the naive reference of the parent module,
//! which applies the documented tile rule (`in_sliding`) to the full event
//! list; plus hand-worked timelines at the tile edges, the bounded state and
//! the load-time checks.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::window::tiles::{check, TileError};

/// A plan whose sliding windows at least `3 * g` long are tiled with tiles of
/// `g` (their lengths rounded down to a multiple of `g`).
fn tiled_plan(windows: Vec<WindowSpec>, ooo: i64, g: u64) -> Plan {
    let tiling = Tiling {
        tile_ms: g,
        min_window_ms: 3 * g,
    };
    let windows = windows
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let length_ms = if w.kind == WindowKind::Sliding && tiling.min_window_ms <= w.length_ms
            {
                w.length_ms - w.length_ms % g
            } else {
                w.length_ms
            };
            WindowSpec {
                name: format!("w{i}"),
                length_ms,
                ..w
            }
        })
        .collect();
    let d = descriptor(windows);
    check(&d, tiling).expect("lengths are multiples of the tile");
    Plan::new(&d)
        .with_out_of_orderness(ooo)
        .with_distinct_exact_limit(DISTINCT_LIMIT)
        .with_tiling(tiling)
}

/// Any window of the parent's strategy, or a sliding window of 3 to 15 tiles.
fn tiled_window_strategy(g: u64) -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        shape_strategy(),
        (3u64..16).prop_map(move |n| spec("", WindowKind::Sliding, n * g)),
    ]
}

fn tile_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(5), Just(20), Just(60), Just(150)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn tiled_windows_publish_what_the_naive_tile_rule_shows(
        (g, windows) in tile_strategy().prop_flat_map(|g| {
            (Just(g), prop::collection::vec(tiled_window_strategy(g), 1..4))
        }),
        ooo in prop_oneof![Just(0i64), 0i64..150],
        raw in prop::collection::vec(any::<RawStep>(), 1..160),
        flushes in prop::collection::vec(prop::bool::weighted(0.3), 1..8),
        batch in prop_oneof![Just(1usize), 2usize..40],
    ) {
        let plan = tiled_plan(windows, ooo, g);
        let steps = steps_of(&raw);
        let mut p = Partition::new(&plan);
        let mut reference = Reference::default();
        let mut published = BTreeMap::new();
        let late = run_checked(
            &plan, &mut p, &mut reference, &mut published, &steps, (&flushes, batch),
        )
        .map_err(TestCaseError::fail)?;
        prop_assert_eq!(late, reference.late);
        // Tiles are bounded by the window: at most length / g per entity and
        // sliding window; instances by the reach of an aligned window: those
        // not yet fired, or open, or the one last fired; sessions by their
        // retention.
        let bound: usize = plan
            .shapes
            .iter()
            .enumerate()
            .filter(|(w, _)| plan.tiles.index(*w).is_some())
            .map(|(_, s)| match *s {
                Shape::Sliding { length } => (length / plan.tiles.tile_ms) as usize,
                Shape::Aligned { length, hop, grace, .. } => {
                    ((length + grace + ooo) / hop + 2) as usize
                }
                // Sessions by their last event time, distinct and within
                // the retention before the watermark.
                Shape::Session { gap, retention, .. } => (ooo + gap + retention + 1) as usize,
            })
            .sum::<usize>()
            * p.entities();
        prop_assert!(p.tiles_held() <= bound, "{} tiles > {bound}", p.tiles_held());
    }

    #[test]
    fn a_replay_from_the_checkpoint_rebuilds_tiles_exactly(
        (g, windows) in tile_strategy().prop_flat_map(|g| {
            (Just(g), prop::collection::vec(tiled_window_strategy(g), 1..4))
        }),
        ooo in prop_oneof![Just(0i64), 0i64..150],
        raw in prop::collection::vec(any::<RawStep>(), 2..160),
        flushes in prop::collection::vec(prop::bool::weighted(0.3), 1..8),
        cut_at in any::<prop::sample::Index>(),
        batch in prop_oneof![Just(1usize), 2usize..40],
    ) {
        let plan = tiled_plan(windows, ooo, g);
        replay_property(&plan, &raw, (&flushes, batch), cut_at)?;
    }
}

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// `hh:mm` as ms.
fn at(h: i64, m: i64) -> i64 {
    h * HOUR + m * MIN
}

/// Count, sum, first `action`, last `value` and the `value` events of u, if shown.
fn u_row(p: &Partition, plan: &Plan) -> Option<(i64, f64, u64, f64, Vec<i64>)> {
    let snap = p.snapshot(plan);
    let row = snap.get("u")?;
    let (AggCell::Int(n), AggCell::Float(sum), AggCell::Stored(first), AggCell::Stored(last)) =
        (&row[0], &row[1], &row[6], &row[7])
    else {
        panic!("unexpected cells {row:?}");
    };
    let AggCell::Events(events) = &row[10] else {
        panic!("not an event list: {:?}", row[10]);
    };
    Some((
        *n,
        *sum,
        *first,
        f64::from_bits(*last),
        events.iter().map(|(t, _)| *t).collect(),
    ))
}

#[test]
fn worked_timeline_of_a_tiled_window() {
    // Sliding 3 h in tiles of 1 h (docs/semantics.md has this timeline).
    let tiling = Tiling {
        tile_ms: HOUR as u64,
        min_window_ms: 3 * HOUR as u64,
    };
    let d = descriptor(vec![spec("w", WindowKind::Sliding, 3 * HOUR as u64)]);
    check(&d, tiling).unwrap();
    let plan = Plan::new(&d).with_tiling(tiling);
    let mut p = Partition::new(&plan);
    let ev = |p: &mut Partition, off, e: &str, t, action: u64, v: f64| {
        p.apply(&plan, off, e, t, &stored(&plan, action, v))
    };
    // T = 10:15: tiles 08, 09, 10 (events from 08:00).
    ev(&mut p, 0, "u", at(10, 15), 1, 1.0).unwrap();
    // T = 11:40: tiles 09, 10, 11.
    ev(&mut p, 1, "u", at(11, 40), 2, 2.0).unwrap();
    // 09:05 is in tile 09: applied.
    ev(&mut p, 2, "u", at(9, 5), 3, 4.0).unwrap();
    // 08:50 is after 11:40 - 3 h = 08:40, but tile 08 has left: late.
    let late = ev(&mut p, 3, "u", at(8, 50), 0, 8.0).unwrap_err();
    assert!(!late.applied);
    assert!(
        late.reason.contains("oldest 3600000 ms tile") && late.reason.contains("09:00"),
        "{}",
        late.reason
    );
    // A tie at 11:40 arrives later: it is `last`.
    ev(&mut p, 4, "u", at(11, 40), 2, 16.0).unwrap();
    assert_eq!(
        u_row(&p, &plan),
        Some((4, 23.0, 3, 16.0, vec![at(10, 15), at(11, 40), at(11, 40)]))
    );
    // A replay starts at the first event of any live tile: tile 10, opened at
    // offset 0 (tile 09 at offset 2).
    assert_eq!(p.tiles_held(), 3);
    assert_eq!(p.events_held(), 0);
    assert_eq!(p.checkpoint(5).rebuild_from, 0);
    p.drain(&plan);
    // T = 12:00: tiles 10, 11, 12. 09:05 leaves with its tile (an exact 3 h
    // window would keep it until 12:05).
    ev(&mut p, 5, "v", at(12, 0), 0, 0.0).unwrap();
    assert_eq!(
        u_row(&p, &plan),
        Some((3, 19.0, 1, 16.0, vec![at(10, 15), at(11, 40), at(11, 40)]))
    );
    let e = p.drain(&plan);
    assert_eq!(e.rows.len(), 2, "u changed (a tile left), v is new");
    // T = 12:59: the same tiles; here the exact window (09:59, 12:59] holds the
    // same events.
    ev(&mut p, 6, "v", at(12, 59), 0, 0.0).unwrap();
    assert_eq!(u_row(&p, &plan).unwrap().0, 3);
    p.drain(&plan);
    // Idle advance to 14:00: tiles 12, 13, 14: u is empty, its key deleted, its
    // state dropped.
    p.advance_to(&plan, at(14, 0));
    let e = p.drain(&plan);
    assert_eq!(e.tombstones, vec![Box::<str>::from("u")]);
    assert_eq!(p.entities(), 1);
    assert_eq!(p.tiles_held(), 1, "v's tile 12");
    assert_eq!(p.checkpoint(7).rebuild_from, 5, "where tile 12 was opened");
}

#[test]
fn tiles_bound_the_state_of_a_long_window_and_short_windows_keep_their_events() {
    // A 30-day window in 1 h tiles beside an exact 1 h window.
    let tiling = Tiling::default();
    let d = descriptor(vec![
        spec("month", WindowKind::Sliding, 30 * 24 * HOUR as u64),
        spec("hour", WindowKind::Sliding, HOUR as u64),
    ]);
    check(&d, tiling).unwrap();
    let plan = Plan::new(&d).with_tiling(tiling);
    assert!(plan.tiles.index(0).is_some() && plan.tiles.index(1).is_none());
    let mut p = Partition::new(&plan);
    // One event a minute for 40 days.
    let n = 40 * 24 * 60;
    for i in 0..n {
        p.apply(&plan, i, "u", i * MIN, &stored(&plan, (i % 7) as u64, 1.0))
            .unwrap();
    }
    let now = (n - 1) * MIN;
    // The month: the 720 tiles ending with the one holding T.
    let first = (now / HOUR - 719) * HOUR;
    let in_month = (now - first) / MIN + 1;
    let row = &p.snapshot(&plan)["u"];
    assert_eq!(row[0], AggCell::Int(in_month));
    assert_eq!(row[1], AggCell::Float(in_month as f64));
    assert_eq!(row[5], AggCell::Int(7));
    // The hour: (T - 1 h, T], exact.
    assert_eq!(row[AGGS.len()], AggCell::Int(60));
    assert_eq!(p.tiles_held(), 720);
    assert_eq!(p.events_held(), 60, "only the exact hour keeps events");
}

#[test]
fn a_tiling_that_does_not_fit_is_refused_with_what_to_change() {
    let tiling = Tiling {
        tile_ms: 3_600_000,
        min_window_ms: 86_400_000,
    };
    let d = descriptor(vec![
        spec("short", WindowKind::Sliding, 90 * MIN as u64),
        spec("long", WindowKind::Sliding, 86_400_000 + 30 * MIN as u64),
    ]);
    let err = check(&d, tiling).unwrap_err();
    assert_eq!(
        err,
        TileError::NotMultiple {
            window: "long".into(),
            length: 86_400_000 + 30 * MIN as u64,
            tile: 3_600_000,
            min: 86_400_000,
        }
    );
    assert!(
        err.to_string().contains("set tile_ms to a divisor"),
        "{err}"
    );
    // Below the threshold, or with tiling off, nothing is tiled.
    check(
        &d,
        Tiling {
            min_window_ms: 2 * 86_400_000,
            ..tiling
        },
    )
    .unwrap();
    let off = Tiling {
        tile_ms: 0,
        ..tiling
    };
    check(&d, off).unwrap();
    assert_eq!(Plan::new(&d).with_tiling(off), Plan::new(&d));
}
