//! The window engine against a deliberately naive reference: keep every
//! applied event, recompute every shown value from the full list at each
//! flush; plus hand-worked timelines of each window kind.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::plugin::{
    AggregationKind as K, AggregationSpec, Descriptor, FeatureSpec, InputField, ValueType,
    WindowKind, WindowSpec,
};

/// The aggregations asked of every window, in this order: (kind, field, max-events).
/// approx-quantile asks for [`QUANTILE`].
const AGGS: [(K, Option<&str>, Option<u32>); 14] = [
    (K::Count, None, None),
    (K::Sum, Some("value"), None),
    (K::Mean, Some("value"), None),
    (K::Min, Some("value"), None),
    (K::Max, Some("value"), None),
    (K::DistinctCount, Some("action"), None),
    (K::First, Some("action"), None),
    (K::Last, Some("value"), None),
    (K::Variance, Some("value"), None),
    (K::Stddev, Some("value"), None),
    (K::Events, Some("value"), Some(EVENTS_KEPT)),
    (
        K::Events,
        Some("action"),
        Some(crate::plugin::descriptor::MAX_EVENTS),
    ),
    (K::ApproxQuantile, Some("value"), None),
    (K::DistinctCount, Some("value"), None),
];

/// The quantile asked by approx-quantile.
const QUANTILE: f64 = 0.3;

/// distinct-count's exact bound in the tests: `action` (4 values) stays
/// exact, `value` (up to hundreds) goes past it.
const DISTINCT_LIMIT: usize = 6;

/// `max-events` of the first `events` aggregation: small, so that lists are cut.
const EVENTS_KEPT: u32 = 3;

fn spec(name: &str, kind: WindowKind, length_ms: u64) -> WindowSpec {
    WindowSpec {
        name: name.into(),
        kind,
        length_ms,
        hop_ms: None,
        gap_ms: None,
        grace_ms: 0,
        early_results: false,
    }
}

fn descriptor(windows: Vec<WindowSpec>) -> Descriptor {
    let aggregations = windows
        .iter()
        .flat_map(|w| {
            AGGS.iter()
                .map(|(kind, field, max_events)| AggregationSpec {
                    window: w.name.clone(),
                    kind: *kind,
                    field: field.map(Into::into),
                    quantile: (*kind == K::ApproxQuantile).then_some(QUANTILE),
                    max_events: *max_events,
                })
        })
        .collect();
    let d = Descriptor {
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
        windows,
        aggregations,
        features: vec![FeatureSpec {
            name: "x".into(),
            kind: ValueType::Int64,
        }],
    };
    crate::plugin::descriptor::validate(&d).expect("test descriptors are valid");
    d
}

#[derive(Clone, Debug)]
struct Ev {
    offset: i64,
    entity: String,
    t: i64,
    action: u64,
    value: f64,
}

/// One step of a test stream: an event, or an idle advance of stream time.
#[derive(Clone, Debug)]
enum Step {
    Event(Ev),
    Idle(i64),
}

/// The stored cells of an event, in the plan's order of stored fields
/// (input 0 is `action`, input 1 `value`).
fn stored(plan: &Plan, action: u64, value: f64) -> Vec<u64> {
    plan.stored
        .iter()
        .map(|(input, _)| if *input == 0 { action } else { value.to_bits() })
        .collect()
}

fn cells(plan: &Plan, e: &Ev) -> Vec<u64> {
    stored(plan, e.action, e.value)
}

/// The naive model: every applied event with the watermark it arrived at,
/// and sessions that are never purged.
#[derive(Default)]
struct Reference {
    now: Option<i64>,
    applied: Vec<(Ev, i64)>,
    /// (entity, window) -> sessions (start, last).
    sessions: BTreeMap<(String, usize), Vec<(i64, i64)>>,
    late: usize,
}

/// Every start of an aligned instance holding `t`, by enumeration.
fn instances(t: i64, length: i64, hop: i64) -> Vec<i64> {
    let mut k = (t - length).div_euclid(hop) - 1;
    let mut out = Vec::new();
    while k * hop <= t {
        if k * hop <= t && t < k * hop + length {
            out.push(k * hop);
        }
        k += 1;
    }
    out
}

impl Reference {
    fn step(&mut self, plan: &Plan, step: &Step) {
        match step {
            Step::Idle(to) => {
                if self.now.is_some_and(|n| *to > n) {
                    self.now = Some(*to);
                }
            }
            Step::Event(e) => self.event(plan, e),
        }
    }

    fn event(&mut self, plan: &Plan, e: &Ev) {
        let now = self.now.map_or(e.t, |n| n.max(e.t));
        self.now = Some(now);
        let wm = now - plan.out_of_orderness;
        let (mut counted, mut closed) = (false, false);
        for (w, shape) in plan.shapes.iter().enumerate() {
            match *shape {
                Shape::Sliding { length } => counted |= in_sliding(plan, w, length, e.t, now),
                Shape::Aligned {
                    length, hop, grace, ..
                } => {
                    for s in instances(e.t, length, hop) {
                        if s + length + grace > wm {
                            counted = true;
                        } else {
                            closed = true;
                        }
                    }
                }
                Shape::Session { gap, grace, .. } => {
                    if e.t + gap + grace > wm {
                        counted = true;
                    } else {
                        closed = true;
                    }
                }
            }
        }
        if closed || !counted {
            self.late += 1;
        }
        if !counted {
            return;
        }
        self.applied.push((e.clone(), wm));
        for (w, shape) in plan.shapes.iter().enumerate() {
            let Shape::Session { gap, grace, .. } = *shape else {
                continue;
            };
            if e.t + gap + grace <= wm {
                continue;
            }
            let sessions = self.sessions.entry((e.entity.clone(), w)).or_default();
            let (mut lo, mut hi) = (e.t, e.t);
            let mut kept = Vec::new();
            for &(s, l) in sessions.iter() {
                let open = l + gap + grace > wm;
                if open && s - gap < e.t && e.t < l + gap {
                    lo = lo.min(s);
                    hi = hi.max(l);
                } else {
                    kept.push((s, l));
                }
            }
            kept.push((lo, hi));
            kept.sort();
            *sessions = kept;
        }
    }

    /// Every entity that shows something, with its cells, as of now.
    fn shown(&self, plan: &Plan) -> BTreeMap<String, Vec<AggCell>> {
        let Some(now) = self.now else {
            return BTreeMap::new();
        };
        let wm = now - plan.out_of_orderness;
        let entities: BTreeSet<&str> = self
            .applied
            .iter()
            .map(|(e, _)| e.entity.as_str())
            .collect();
        let mut out = BTreeMap::new();
        for entity in entities {
            let mut row = Vec::new();
            let mut any = false;
            for (w, shape) in plan.shapes.iter().enumerate() {
                let mine = self.applied.iter().filter(|(e, _)| e.entity == entity);
                let mut members: Vec<&Ev> = match *shape {
                    Shape::Sliding { length } => mine
                        .filter(|(e, _)| in_sliding(plan, w, length, e.t, now))
                        .map(|(e, _)| e)
                        .collect(),
                    Shape::Aligned {
                        length,
                        hop,
                        grace,
                        early,
                    } => {
                        let start = if early {
                            *instances(now, length, hop).iter().min().unwrap()
                        } else {
                            // The latest instance whose end is at or before the watermark.
                            let mut s = (wm - length).div_euclid(hop) * hop + hop;
                            while s + length > wm {
                                s -= hop;
                            }
                            s
                        };
                        mine.filter(|(e, mark)| {
                            start <= e.t && e.t < start + length && *mark < start + length + grace
                        })
                        .map(|(e, _)| e)
                        .collect()
                    }
                    Shape::Session {
                        gap,
                        retention,
                        grace,
                        early,
                    } => {
                        let sessions = self
                            .sessions
                            .get(&(entity.to_owned(), w))
                            .cloned()
                            .unwrap_or_default();
                        let shown = sessions
                            .iter()
                            .filter(|(_, l)| l + gap + retention > wm)
                            .filter(|(_, l)| early || l + gap <= wm)
                            .max();
                        match shown {
                            Some(&(s, l)) => mine
                                .filter(|(e, mark)| {
                                    s <= e.t && e.t <= l && e.t + gap + grace > *mark
                                })
                                .map(|(e, _)| e)
                                .collect(),
                            None => Vec::new(),
                        }
                    }
                };
                members.sort_by_key(|e| (e.t, e.offset));
                any |= !members.is_empty();
                row.extend(naive_cells(&members));
            }
            if any {
                out.insert(entity.to_owned(), row);
            }
        }
        out
    }
}

/// Whether an event at `t` is in sliding window `w` (length `length`) at stream
/// time `now`: t > now - length; for a tiled window (tile g), its tile is one
/// of the length / g tiles ending with the one holding `now`.
fn in_sliding(plan: &Plan, w: usize, length: i64, t: i64, now: i64) -> bool {
    if plan.tiles.index(w).is_none() {
        return t > now - length;
    }
    let g = plan.tiles.tile_ms;
    let tile = |x: i64| (x as f64 / g as f64).floor() as i64;
    let newest = tile(now);
    (newest - length / g + 1..=newest).contains(&tile(t))
}

fn naive_cells(members: &[&Ev]) -> Vec<AggCell> {
    let values: Vec<f64> = members.iter().map(|e| e.value).collect();
    let n = values.len() as f64;
    let float = |x: Option<f64>| x.map_or(AggCell::Null, AggCell::Float);
    let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / n);
    let variance = mean.map(|m| values.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n);
    vec![
        AggCell::Int(members.len() as i64),
        AggCell::Float(values.iter().sum()),
        float(mean),
        float(values.iter().copied().reduce(f64::min)),
        float(values.iter().copied().reduce(f64::max)),
        AggCell::Int(
            members
                .iter()
                .map(|e| e.action)
                .collect::<BTreeSet<_>>()
                .len() as i64,
        ),
        members
            .first()
            .map_or(AggCell::Null, |e| AggCell::Stored(e.action)),
        members
            .last()
            .map_or(AggCell::Null, |e| AggCell::Stored(e.value.to_bits())),
        float(variance),
        float(variance.map(f64::sqrt)),
        AggCell::Events(
            members[members.len().saturating_sub(EVENTS_KEPT as usize)..]
                .iter()
                .map(|e| (e.t, e.value.to_bits()))
                .collect(),
        ),
        AggCell::Events(members.iter().map(|e| (e.t, e.action)).collect()),
        // The exact quantile: 0-based rank floor(q * (n - 1)) of the sorted values.
        float((!values.is_empty()).then(|| {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            sorted[(QUANTILE * (n - 1.0)) as usize]
        })),
        AggCell::Int(
            members
                .iter()
                .map(|e| e.value.to_bits())
                .collect::<BTreeSet<_>>()
                .len() as i64,
        ),
    ]
}

/// How many of the values `step_event` can give share their HyperLogLog
/// register with another (2 of the 127 with this hash; computed, so that a
/// change of hash keeps the allowance true).
fn shared_registers_of_test_values() -> usize {
    use super::sketch::Hll;
    let values = (-63i16..64).map(|v| value_of(v).to_bits());
    let registers: BTreeSet<usize> = values.clone().map(Hll::register_of).collect();
    values.count() - registers.len()
}

/// Whether `got` is within the documented error of the exact `want` for an
/// approximate aggregation (`None` for the exact ones).
fn within_error(kind: K, got: &AggCell, want: &AggCell) -> Option<bool> {
    use super::sketch::{DISTINCT_STANDARD_ERROR, QUANTILE_MIN_MAGNITUDE, QUANTILE_RELATIVE_ERROR};
    match (kind, got, want) {
        (K::ApproxQuantile, AggCell::Float(g), AggCell::Float(w)) => {
            Some(if w.abs() <= QUANTILE_MIN_MAGNITUDE {
                *g == 0.0 || g == w
            } else {
                (g - w).abs() <= QUANTILE_RELATIVE_ERROR * w.abs() * (1.0 + 1e-9)
            })
        }
        // Exact up to the bound; beyond, within 5 standard errors (plus the
        // rounding to an integer, and one per register shared by two of the
        // test's values: at small counts such a collision is the whole
        // error, and the test's values are few and always the same), and
        // never at or below the bound.
        (K::DistinctCount, AggCell::Int(g), AggCell::Int(w)) if *w as usize > DISTINCT_LIMIT => {
            let tolerance = 5.0 * DISTINCT_STANDARD_ERROR * *w as f64
                + 0.5
                + shared_registers_of_test_values() as f64;
            Some(*g as usize > DISTINCT_LIMIT && ((g - w) as f64).abs() <= tolerance)
        }
        _ => None,
    }
}

fn same(
    got: &BTreeMap<String, Vec<AggCell>>,
    want: &BTreeMap<String, Vec<AggCell>>,
) -> Result<(), String> {
    let (g, w): (Vec<_>, Vec<_>) = (got.keys().collect(), want.keys().collect());
    if g != w {
        return Err(format!("entities {g:?} vs {w:?}"));
    }
    for (k, w) in want {
        for (i, (g, w)) in got[k].iter().zip(w).enumerate() {
            let ok = within_error(AGGS[i % AGGS.len()].0, g, w).unwrap_or_else(|| match (g, w) {
                (AggCell::Float(a), AggCell::Float(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                _ => g == w,
            });
            if !ok {
                return Err(format!("{k} cell {i}: {g:?} vs {w:?}"));
            }
        }
    }
    Ok(())
}

fn publish(plan: &Plan, p: &mut Partition, published: &mut BTreeMap<String, Vec<AggCell>>) {
    let e = p.drain(plan);
    for row in e.rows {
        published.insert(row.key.to_string(), row.cells.into_vec());
    }
    // Idempotent: a tombstone may name an entity never published here.
    for k in e.tombstones {
        published.remove(&*k);
    }
}

/// Runs `steps` through the engine and the reference, flushing where
/// `flushes` says, and checks after every flush that what was published is
/// what the reference shows. Events are applied one by one with `batch` 1,
/// else in batches of up to `batch` consecutive events
/// ([`Partition::apply_batch`]). Returns the late count.
fn run_checked(
    plan: &Plan,
    p: &mut Partition,
    reference: &mut Reference,
    published: &mut BTreeMap<String, Vec<AggCell>>,
    steps: &[Step],
    (flushes, batch): (&[bool], usize),
) -> Result<usize, String> {
    let mut late = 0;
    let mut pending = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Event(e) if batch > 1 => pending.push(e),
            Step::Event(e) => {
                if p.apply(plan, e.offset, &e.entity, e.t, &cells(plan, e))
                    .is_err()
                {
                    late += 1;
                }
            }
            Step::Idle(to) => {
                late += apply_batch(plan, p, &mut pending);
                p.advance_to(plan, *to);
            }
        }
        reference.step(plan, step);
        let flush = flushes[i % flushes.len()] || i + 1 == steps.len();
        if pending.len() >= batch || flush {
            late += apply_batch(plan, p, &mut pending);
        }
        if flush {
            publish(plan, p, published);
            let want = reference.shown(plan);
            same(published, &want).map_err(|e| format!("after step {i} ({step:?}): {e}"))?;
            same(&p.snapshot(plan), &want).map_err(|e| format!("snapshot after step {i}: {e}"))?;
        }
    }
    Ok(late)
}

/// The windows' view of `events`, with their cells.
fn arrivals<'a>(events: &[&'a Ev], cells: &'a [Vec<u64>]) -> Vec<Arrival<'a>> {
    events
        .iter()
        .zip(cells)
        .map(|(e, cells)| Arrival {
            offset: e.offset,
            entity: &e.entity,
            t: e.t,
            cells,
        })
        .collect()
}

/// Applies `pending` as one batch and empties it; returns how many were late.
fn apply_batch(plan: &Plan, p: &mut Partition, pending: &mut Vec<&Ev>) -> usize {
    let cells: Vec<Vec<u64>> = pending.iter().map(|e| cells(plan, e)).collect();
    let arrivals = arrivals(pending, &cells);
    let mut reported = Vec::new();
    p.apply_batch(plan, &arrivals, |k, result| {
        reported.push((k, result.is_err()))
    });
    assert_eq!(
        reported.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        (0..pending.len()).collect::<Vec<_>>(),
        "one result per event, in order"
    );
    pending.clear();
    reported.iter().filter(|(_, late)| *late).count()
}

fn shape_strategy() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        (1u64..400).prop_map(|l| spec("", WindowKind::Sliding, l)),
        (1u64..300, 0u64..300, any::<bool>()).prop_map(|(l, g, early)| WindowSpec {
            grace_ms: g % l,
            early_results: early,
            ..spec("", WindowKind::Tumbling, l)
        }),
        (1u64..300, 1u64..300, 0u64..300, any::<bool>()).prop_map(|(l, h, g, early)| {
            let hop = 1 + h % l;
            WindowSpec {
                hop_ms: Some(hop),
                grace_ms: g % hop,
                early_results: early,
                ..spec("", WindowKind::Hopping, l)
            }
        }),
        (1u64..150, 0u64..150, 0u64..300, any::<bool>()).prop_map(|(gap, g, extra, early)| {
            let grace = g % (gap + 1);
            WindowSpec {
                gap_ms: Some(gap),
                grace_ms: grace,
                early_results: early,
                ..spec("", WindowKind::Session, gap + grace + extra)
            }
        }),
    ]
}

/// Raw material of a stream: (kind of step, two magnitudes, entity, action, value).
type RawStep = (u8, u16, u16, u8, u8, i16);

/// Mostly forward, often out of order, sometimes far back (late), sometimes
/// a jump forward or an idle advance; many equal timestamps.
fn steps_of(raw: &[RawStep]) -> Vec<Step> {
    let mut clock = 10_000i64;
    let mut offset = 0;
    raw.iter()
        .map(|&(kind, a, b, entity, action, value)| {
            let (a, b) = (i64::from(a), i64::from(b));
            match kind % 20 {
                0 => Step::Idle(clock + a % 500),
                1 => {
                    clock += 200 + a % 600;
                    step_event(&mut offset, clock, entity, action, value)
                }
                2..=4 => step_event(&mut offset, clock - 200 - b % 800, entity, action, value),
                5..=9 => step_event(&mut offset, clock - b % 120, entity, action, value),
                10..=12 => step_event(&mut offset, clock, entity, action, value),
                _ => {
                    clock += a % 40;
                    step_event(&mut offset, clock, entity, action, value)
                }
            }
        })
        .collect()
}

/// Entity keys: short, and 22 (the most a slot keeps inline), 23 and more bytes.
const ENTITIES: [&str; 4] = [
    "e0",
    "key-of-exactly-22-byte",
    "key-of-exactly-23-bytes",
    "ключ длиннее 22 байт",
];

/// The `value` of an event from its raw material: 127 values, repeating,
/// so that distinct counts differ from counts.
fn value_of(raw: i16) -> f64 {
    f64::from(raw % 64) / 8.0
}

fn step_event(offset: &mut i64, t: i64, entity: u8, action: u8, value: i16) -> Step {
    *offset += 1;
    Step::Event(Ev {
        offset: *offset - 1,
        entity: ENTITIES[usize::from(entity % 4)].to_owned(),
        t,
        action: u64::from(action % 4),
        value: value_of(value),
    })
}

fn plan_of(windows: Vec<WindowSpec>, ooo: i64) -> Plan {
    let windows = windows
        .into_iter()
        .enumerate()
        .map(|(i, w)| WindowSpec {
            name: format!("w{i}"),
            ..w
        })
        .collect();
    Plan::new(&descriptor(windows))
        .with_out_of_orderness(ooo)
        .with_distinct_exact_limit(DISTINCT_LIMIT)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_flush_publishes_what_a_naive_recomputation_shows(
        windows in prop::collection::vec(shape_strategy(), 1..4),
        ooo in prop_oneof![Just(0i64), 0i64..150],
        raw in prop::collection::vec(any::<RawStep>(), 1..160),
        flushes in prop::collection::vec(prop::bool::weighted(0.3), 1..8),
        batch in prop_oneof![Just(1usize), 2usize..40],
    ) {
        let plan = plan_of(windows, ooo);
        let steps = steps_of(&raw);
        let mut p = Partition::new(&plan);
        let mut reference = Reference::default();
        let mut published = BTreeMap::new();
        let late = run_checked(
            &plan, &mut p, &mut reference, &mut published, &steps, (&flushes, batch),
        )
        .map_err(TestCaseError::fail)?;
        prop_assert_eq!(late, reference.late);
    }

    #[test]
    fn a_replay_from_the_checkpoint_rebuilds_the_same_state(
        windows in prop::collection::vec(shape_strategy(), 1..4),
        ooo in prop_oneof![Just(0i64), 0i64..150],
        raw in prop::collection::vec(any::<RawStep>(), 2..160),
        flushes in prop::collection::vec(prop::bool::weighted(0.3), 1..8),
        cut_at in any::<prop::sample::Index>(),
        batch in prop_oneof![Just(1usize), 2usize..40],
    ) {
        let plan = plan_of(windows, ooo);
        replay_property(&plan, &raw, (&flushes, batch), cut_at)?;
    }
}

/// The replay property: run the steps before a cut, take the checkpoint,
/// rebuild a partition from it by replaying the events from `rebuild_from`;
/// the rebuilt one holds the same state, emits nothing, and both go on
/// identically after the cut, as the reference says.
fn replay_property(
    plan: &Plan,
    raw: &[RawStep],
    flushes: (&[bool], usize),
    cut_at: prop::sample::Index,
) -> Result<(), TestCaseError> {
    let steps = steps_of(raw);
    let cut = cut_at.index(steps.len());
    let mut original = Partition::new(plan);
    let mut reference = Reference::default();
    let mut published = BTreeMap::new();
    run_checked(
        plan,
        &mut original,
        &mut reference,
        &mut published,
        &steps[..cut],
        flushes,
    )
    .map_err(TestCaseError::fail)?;
    let events: Vec<&Ev> = steps[..cut]
        .iter()
        .filter_map(|s| match s {
            Step::Event(e) => Some(e),
            Step::Idle(_) => None,
        })
        .collect();
    let next = events.len() as i64;
    let checkpoint = original.checkpoint(next);
    prop_assert!(checkpoint.rebuild_from <= next);

    // Replayed one by one, or in runs of `batch` as the Kafka source replays.
    let mut restored = Partition::restored(plan, &checkpoint);
    let replayed = &events[checkpoint.rebuild_from as usize..];
    if flushes.1 == 1 {
        for e in replayed {
            restored.replay(plan, e.offset, &e.entity, e.t, &cells(plan, e));
        }
    } else {
        for run in replayed.chunks(flushes.1) {
            let cells: Vec<Vec<u64>> = run.iter().map(|e| cells(plan, e)).collect();
            restored.replay_batch(plan, &arrivals(run, &cells));
        }
    }
    restored.finish_replay(plan);
    prop_assert_eq!(restored.stream_time(), original.stream_time());
    prop_assert_eq!(restored.tiles_held(), original.tiles_held());
    same(&restored.snapshot(plan), &original.snapshot(plan)).map_err(TestCaseError::fail)?;
    prop_assert!(
        restored.drain(plan).rows.is_empty(),
        "a rebuild emits nothing"
    );

    // Both go on identically, as the reference says.
    let mut reference_b = Reference::default();
    for s in &steps[..cut] {
        reference_b.step(plan, s);
    }
    let mut published_b = published.clone();
    run_checked(
        plan,
        &mut original,
        &mut reference,
        &mut published,
        &steps[cut..],
        flushes,
    )
    .map_err(TestCaseError::fail)?;
    run_checked(
        plan,
        &mut restored,
        &mut reference_b,
        &mut published_b,
        &steps[cut..],
        flushes,
    )
    .map_err(|e| TestCaseError::fail(format!("restored: {e}")))?;
    Ok(())
}

/// Applies `(entity, time, value)` at consecutive offsets from `offset`.
fn feed(
    plan: &Plan,
    p: &mut Partition,
    offset: &mut i64,
    events: &[(&str, i64, f64)],
) -> Vec<bool> {
    events
        .iter()
        .map(|&(entity, t, v)| {
            *offset += 1;
            p.apply(plan, *offset - 1, entity, t, &stored(plan, 0, v))
                .is_ok()
        })
        .collect()
}

fn count_of(p: &mut Partition, plan: &Plan) -> BTreeMap<String, Option<i64>> {
    let e = p.drain(plan);
    let mut out: BTreeMap<String, Option<i64>> = e
        .rows
        .into_iter()
        .map(|r| {
            (
                r.key.to_string(),
                match r.cells[0] {
                    AggCell::Int(n) => Some(n),
                    _ => None,
                },
            )
        })
        .collect();
    out.extend(e.tombstones.into_iter().map(|k| (k.to_string(), None)));
    out
}

/// `plan`, and the same with every window from 1 ms tiled (aligned and
/// session windows then keep one partial aggregate per instance or session,
/// and no event).
fn untiled_and_tiled(plan: Plan) -> [Plan; 2] {
    let tiled = plan.clone().with_tiling(Tiling {
        tile_ms: 1,
        min_window_ms: 1,
    });
    assert!(tiled.tiles.index(0).is_some());
    [plan, tiled]
}

#[test]
fn worked_timeline_of_a_tumbling_window_with_grace() {
    // Tumbling 10, grace 3, out-of-orderness 2 (docs/semantics.md has this timeline).
    for plan in untiled_and_tiled(plan_of(
        vec![WindowSpec {
            grace_ms: 3,
            ..spec("", WindowKind::Tumbling, 10)
        }],
        2,
    )) {
        let mut p = Partition::new(&plan);
        let mut off = 0;
        // T=11, W=9: [0,10) has not fired; nothing shown, nothing emitted.
        assert_eq!(
            feed(&plan, &mut p, &mut off, &[("u", 4, 1.0), ("u", 11, 1.0)]),
            [true, true]
        );
        assert_eq!(count_of(&mut p, &plan), BTreeMap::new());
        // T=12, W=10: [0,10) fires with {4}.
        feed(&plan, &mut p, &mut off, &[("v", 12, 1.0)]);
        assert_eq!(
            count_of(&mut p, &plan),
            BTreeMap::from([("u".into(), Some(1))])
        );
        // Late but within grace (W=10 < 13): a correction.
        assert_eq!(feed(&plan, &mut p, &mut off, &[("u", 7, 1.0)]), [true]);
        assert_eq!(
            count_of(&mut p, &plan),
            BTreeMap::from([("u".into(), Some(2))])
        );
        // T=15, W=13 = end + grace: [0,10) is closed; an event for it is late.
        feed(&plan, &mut p, &mut off, &[("v", 15, 1.0)]);
        assert_eq!(count_of(&mut p, &plan), BTreeMap::new());
        assert_eq!(feed(&plan, &mut p, &mut off, &[("u", 9, 1.0)]), [false]);
        // T=22, W=20: [10,20) fires: u holds {11}, v {12, 15}.
        feed(&plan, &mut p, &mut off, &[("v", 22, 1.0)]);
        assert_eq!(
            count_of(&mut p, &plan),
            BTreeMap::from([("u".into(), Some(1)), ("v".into(), Some(2))])
        );
        // Idle advance to T=32, W=30: [20,30) fires: u shows nothing (tombstone, state
        // dropped), v holds {22}.
        p.advance_to(&plan, 32);
        assert_eq!(
            count_of(&mut p, &plan),
            BTreeMap::from([("u".into(), None), ("v".into(), Some(1))])
        );
        assert_eq!(p.entities(), 1);
        assert!(plan.tiles.index(0).is_none() || p.events_held() == 0);
    }
}

#[test]
fn worked_timeline_of_a_hopping_window() {
    // Length 10 every 5, grace 2, no out-of-orderness.
    for plan in untiled_and_tiled(plan_of(
        vec![WindowSpec {
            hop_ms: Some(5),
            grace_ms: 2,
            ..spec("", WindowKind::Hopping, 10)
        }],
        0,
    )) {
        let mut p = Partition::new(&plan);
        let mut off = 0;
        feed(
            &plan,
            &mut p,
            &mut off,
            &[("u", 1, 1.0), ("u", 6, 1.0), ("u", 10, 1.0)],
        );
        // W=10: [0,10) fired: {1, 6}.
        assert_eq!(
            count_of(&mut p, &plan),
            BTreeMap::from([("u".into(), Some(2))])
        );
        // W=12: [0,10) is closed, [5,15) open: an event at 8 counts in [5,15) only, and is
        // reported late for [0,10).
        feed(&plan, &mut p, &mut off, &[("v", 12, 1.0)]);
        assert_eq!(feed(&plan, &mut p, &mut off, &[("u", 8, 1.0)]), [false]);
        // W=15: [5,15) fires: {6, 8, 10}.
        p.advance_to(&plan, 15);
        assert_eq!(
            count_of(&mut p, &plan),
            BTreeMap::from([("u".into(), Some(3)), ("v".into(), Some(1))])
        );
        assert!(plan.tiles.index(0).is_none() || p.events_held() == 0);
    }
}

#[test]
fn worked_timeline_of_a_session_window() {
    // Gap 5, grace 2, shown for 20 after its end, no out-of-orderness.
    for plan in untiled_and_tiled(plan_of(
        vec![WindowSpec {
            gap_ms: Some(5),
            grace_ms: 2,
            ..spec("", WindowKind::Session, 20)
        }],
        0,
    )) {
        let mut p = Partition::new(&plan);
        let mut off = 0;
        feed(
            &plan,
            &mut p,
            &mut off,
            &[("u", 0, 1.0), ("u", 3, 1.0), ("u", 7, 1.0)],
        );
        // One session [0, 12): not fired.
        assert_eq!(count_of(&mut p, &plan), BTreeMap::new());
        feed(&plan, &mut p, &mut off, &[("v", 12, 1.0)]);
        assert_eq!(
            count_of(&mut p, &plan),
            BTreeMap::from([("u".into(), Some(3))])
        );
        // Within grace (W=12 < 14): 9 extends the session to [0, 14), which has not
        // fired any more: u shows nothing for now.
        assert_eq!(feed(&plan, &mut p, &mut off, &[("u", 9, 1.0)]), [true]);
        assert_eq!(
            count_of(&mut p, &plan),
            BTreeMap::from([("u".into(), None)])
        );
        feed(&plan, &mut p, &mut off, &[("v", 14, 1.0)]);
        assert_eq!(
            count_of(&mut p, &plan),
            BTreeMap::from([("u".into(), Some(4))])
        );
        // W=16 = end + grace: closed. An event at 8 would form [8, 13), closed too: late.
        feed(&plan, &mut p, &mut off, &[("v", 16, 1.0)]);
        assert_eq!(feed(&plan, &mut p, &mut off, &[("u", 8, 1.0)]), [false]);
        // Shown until W = 14 + 20.
        p.advance_to(&plan, 34);
        let out = count_of(&mut p, &plan);
        assert_eq!(out.get("u"), Some(&None));
        assert!(plan.tiles.index(0).is_none() || p.events_held() == 0);
    }
}

#[test]
fn worked_timeline_of_the_user_activity_window() {
    // One 1000 ms sliding window; times in ms. Hand-worked expectations.
    let plan = plan_of(vec![spec("", WindowKind::Sliding, 1000)], 0);
    let mut p = Partition::new(&plan);
    let ev = |p: &mut Partition, off, e: &str, t, a: u64, v: f64| {
        p.apply(&plan, off, e, t, &stored(&plan, a, v))
    };
    ev(&mut p, 0, "u", 1000, 1, 2.0).unwrap(); // T=1000, window (0,1000]
    ev(&mut p, 1, "u", 1500, 2, 4.0).unwrap(); // T=1500
    ev(&mut p, 2, "u", 1200, 3, 6.0).unwrap(); // out of order, inside (500,1500]
    ev(&mut p, 3, "u", 1500, 1, 8.0).unwrap(); // tie with offset 1: later arrival wins `last`
    let snap = p.snapshot(&plan);
    assert_eq!(
        snap["u"][..8],
        [
            AggCell::Int(4),
            AggCell::Float(20.0),
            AggCell::Float(5.0),
            AggCell::Float(2.0),
            AggCell::Float(8.0),
            AggCell::Int(3),
            AggCell::Stored(1),
            AggCell::Stored(8f64.to_bits()),
        ]
    );
    // Population variance of {2, 4, 6, 8}: 5.
    assert_eq!(snap["u"][8], AggCell::Float(5.0));
    // T -> 2100: window (1100, 2100]: the event at 1000 leaves.
    ev(&mut p, 4, "v", 2100, 0, 1.0).unwrap();
    assert_eq!(p.snapshot(&plan)["u"][0], AggCell::Int(3));
    // An event at 1100 = T - W is late.
    let late = ev(&mut p, 5, "u", 1100, 0, 0.0).unwrap_err();
    assert!(!late.applied);
    assert!(
        late.reason.contains("minus the 1000 ms window"),
        "{}",
        late.reason
    );
    p.drain(&plan);
    // T -> 2600: (1600, 2600]: u is empty -> tombstone.
    ev(&mut p, 6, "v", 2600, 0, 1.0).unwrap();
    let e = p.drain(&plan);
    assert_eq!(e.tombstones, vec![Box::<str>::from("u")]);
    assert_eq!(p.entities(), 1);
}

#[test]
fn worked_timeline_of_raw_events_in_every_window_kind() {
    // Windows: sliding 10; tumbling 10; hopping 10 every 5; session gap 5 shown
    // for 20 after its end. No grace, no out-of-orderness.
    for plan in untiled_and_tiled(plan_of(
        vec![
            spec("", WindowKind::Sliding, 10),
            spec("", WindowKind::Tumbling, 10),
            WindowSpec {
                hop_ms: Some(5),
                ..spec("", WindowKind::Hopping, 10)
            },
            WindowSpec {
                gap_ms: Some(5),
                ..spec("", WindowKind::Session, 20)
            },
        ],
        0,
    )) {
        let mut p = Partition::new(&plan);
        let mut off = 0;
        // Two events at 4: arrival order (value 2 then 3) is their order.
        feed(
            &plan,
            &mut p,
            &mut off,
            &[
                ("u", 1, 1.0),
                ("u", 4, 2.0),
                ("u", 8, 4.0),
                ("u", 4, 3.0),
                ("u", 12, 5.0),
            ],
        );
        // The newest EVENTS_KEPT (3) `value`s of window w, as (time, value).
        let events = |p: &Partition, w: usize| -> Vec<(i64, f64)> {
            match &p.snapshot(&plan)["u"][w * AGGS.len() + 10] {
                AggCell::Events(list) => {
                    list.iter().map(|(t, v)| (*t, f64::from_bits(*v))).collect()
                }
                other => panic!("window {w}: {other:?} is not an event list"),
            }
        };
        // T = W = 12. Sliding (2, 12]: 4, 4, 8, 12 -> the newest 3.
        assert_eq!(events(&p, 0), [(4, 3.0), (8, 4.0), (12, 5.0)]);
        // Tumbling: [0, 10) fired: 1, 4, 4, 8 -> the newest 3.
        assert_eq!(events(&p, 1), [(4, 2.0), (4, 3.0), (8, 4.0)]);
        // Hopping: [0, 10) is the latest fired instance, as for tumbling.
        assert_eq!(events(&p, 2), [(4, 2.0), (4, 3.0), (8, 4.0)]);
        // Session [1, 17) has not fired.
        assert_eq!(events(&p, 3), []);
        // The `action` lists are not cut (max-events 10000): all 4 sliding events.
        match &p.snapshot(&plan)["u"][11] {
            AggCell::Events(list) => assert_eq!(
                list.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
                [4, 4, 8, 12]
            ),
            other => panic!("{other:?}"),
        }
        // T = W = 17: sliding (7, 17]: 8, 12; tumbling still [0, 10); hopping
        // [5, 15) fired: 8, 12; the session [1, 17) fired: its newest 3.
        p.advance_to(&plan, 17);
        assert_eq!(events(&p, 0), [(8, 4.0), (12, 5.0)]);
        assert_eq!(events(&p, 1), [(4, 2.0), (4, 3.0), (8, 4.0)]);
        assert_eq!(events(&p, 2), [(8, 4.0), (12, 5.0)]);
        assert_eq!(events(&p, 3), [(4, 3.0), (8, 4.0), (12, 5.0)]);
        // T = W = 25: sliding (15, 25] is empty; tumbling [10, 20) fired: 12;
        // hopping [15, 25) fired: empty; the session is still shown (until 17 + 20).
        p.advance_to(&plan, 25);
        assert_eq!(events(&p, 0), []);
        assert_eq!(events(&p, 1), [(12, 5.0)]);
        assert_eq!(events(&p, 2), []);
        assert_eq!(events(&p, 3), [(4, 3.0), (8, 4.0), (12, 5.0)]);
        assert!(plan.tiles.index(0).is_none() || p.events_held() == 0);
    }
}

#[test]
fn distinct_counts_through_a_sliding_window_across_the_bound() {
    // One sliding window of 4000 ms, the default bound of 1000; one event per
    // ms, `action` cycling through 3000 values. Expected: a direct count of
    // the distinct actions of the events in (T - 4000, T].
    let limit = super::sketch::DEFAULT_DISTINCT_EXACT_LIMIT;
    let plan =
        plan_of(vec![spec("", WindowKind::Sliding, 4000)], 0).with_distinct_exact_limit(limit);
    let mut p = Partition::new(&plan);
    let mut applied: Vec<i64> = Vec::new();
    let distinct_of = |p: &Partition| match p.snapshot(&plan)["u"][5] {
        AggCell::Int(n) => n,
        ref other => panic!("{other:?}"),
    };
    let check = |p: &Partition, applied: &[i64], now: i64| {
        let want = applied
            .iter()
            .filter(|t| **t > now - 4000)
            .map(|t| t % 3000)
            .collect::<BTreeSet<_>>()
            .len() as i64;
        let got = distinct_of(p);
        if want as usize <= limit {
            assert_eq!(got, want, "exact at {now}");
        } else {
            // 4 standard errors.
            let error = (got as f64 / want as f64 - 1.0).abs();
            assert!(
                got as usize > limit && error <= 4.0 * super::sketch::DISTINCT_STANDARD_ERROR,
                "at {now}: {got} vs {want}"
            );
        }
    };
    let feed = |p: &mut Partition, applied: &mut Vec<i64>, times: std::ops::Range<i64>| {
        for t in times {
            p.apply(&plan, t, "u", t, &stored(&plan, (t % 3000) as u64, 0.0))
                .unwrap();
            applied.push(t);
            if t % 250 == 0 || (999..=1001).contains(&t) {
                check(p, applied, t);
            }
        }
    };
    feed(&mut p, &mut applied, 0..6000);
    // The window empties down to 800 events (recounted exactly), then to 300
    // (counted incrementally again), and fills up once more past the bound.
    p.advance_to(&plan, 5999 + 3200);
    assert_eq!(distinct_of(&p), 800);
    p.advance_to(&plan, 5999 + 3700);
    assert_eq!(distinct_of(&p), 300);
    feed(&mut p, &mut applied, 9700..12_000);
}

mod tiled;

#[test]
fn held_events_buffer_grows_by_eighths_and_shrinks_after_a_burst() {
    let plan = plan_of(vec![spec("", WindowKind::Sliding, 10_000)], 0);
    let buffer = |p: &Partition| {
        let slot = p.slots.iter().flatten().next().expect("one entity");
        (slot.window.held_capacity(), slot.window.len(&plan))
    };
    let mut p = Partition::new(&plan);
    let mut off = 0;
    // A burst: 8,000 events in the first 800 ms.
    for i in 0..8_000 {
        feed(&plan, &mut p, &mut off, &[("u", i / 10, 1.0)]);
        let (capacity, held) = buffer(&p);
        let words = capacity / (held.max(1));
        // Room for at most an eighth more events than held (and one event).
        assert!(
            capacity <= (held + held / 8 + 1) * words,
            "{capacity} words for {held} events"
        );
    }
    let (burst_capacity, _) = buffer(&p);
    // Then a trickle, one event per 100 ms until 20 s: the window (10 s, 20 s]
    // holds the last 100 of them.
    for t in (1_000..=20_000).step_by(100) {
        feed(&plan, &mut p, &mut off, &[("u", t, 1.0)]);
    }
    let (capacity, held) = buffer(&p);
    assert_eq!(held, 100);
    assert_eq!(count_of(&mut p, &plan).get("u"), Some(&Some(100)));
    assert!(
        capacity <= 4 * burst_capacity / 80,
        "{capacity} words held for 100 events after a burst of 8,000 ({burst_capacity})"
    );
}
