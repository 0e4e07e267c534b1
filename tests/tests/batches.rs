//! Records applied in runs of one partition (`Processor::process_batch`, as the
//! Kafka and file sources apply them) give exactly what applying them one by
//! one gives: the same outcome per record and the same feature updates at every
//! flush, over a stream with late and malformed records; a rebuild replaying
//! them in runs (`Processor::replay_batch`, as the Kafka source replays) rebuilds
//! what replaying them one by one does. No servers needed
//! (the end-to-end tests compare the batched path with the naive reference).

use wafer::metrics::Counters;
use wafer::pipeline::{Flush, Outcome, Processor, Record};
use wafer::plugin::{PluginEngine, PluginLimits};
use wafer_tests::reference::generate;
use wafer_tests::user_activity_plugin;

const PARTITIONS: i32 = 3;
/// Kafka record timestamp of every record: after every event time.
const REFERENCE_MS: i64 = 4_000_000_000_000;

fn processor(engine: &PluginEngine) -> Processor {
    let plugin = engine
        .load_file(&user_activity_plugin(), PluginLimits::default())
        .expect("the user-activity plugin loads");
    Processor::new(plugin, "timestamp", 86_400_000, Counters::default())
}

/// The updates of a flush, as (entity, as-of time, value).
fn written(flush: Flush) -> Vec<(String, i64, Option<String>)> {
    assert!(flush.failures.is_empty(), "the plugin fails no row");
    flush
        .updates
        .into_iter()
        .map(|u| (u.entity, u.as_of_ms, u.value))
        .collect()
}

#[test]
fn runs_of_records_give_what_one_by_one_gives() {
    let engine = PluginEngine::new().expect("engine");
    let events = generate(11, 8_000, 400, PARTITIONS);
    let mut one = processor(&engine);
    let mut runs = processor(&engine);
    let mut offsets = [0i64; PARTITIONS as usize];
    let (mut late, mut dead, mut updates) = (0, 0, 0);
    // Chunks of 1 to 150 records, from a fixed sequence; within a chunk each
    // partition's records form one run, as when the consumer fetched them.
    let mut lcg = 12345u64;
    let mut start = 0;
    let mut chunks = 0;
    while start < events.len() {
        lcg = lcg
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 1 + (lcg >> 33) as usize % 150;
        let chunk = &events[start..(start + len).min(events.len())];
        start += chunk.len();
        chunks += 1;
        for partition in 0..PARTITIONS {
            let key = (0, partition);
            let run: Vec<Record<'_>> = chunk
                .iter()
                .filter(|e| e.partition == partition)
                .map(|e| {
                    let offset = offsets[partition as usize];
                    offsets[partition as usize] += 1;
                    Record {
                        offset,
                        reference_ms: REFERENCE_MS,
                        payload: Some(e.payload.as_bytes()),
                    }
                })
                .collect();
            let mut outcomes = Vec::new();
            runs.process_batch(key, &run, &mut outcomes);
            assert_eq!(outcomes.len(), run.len(), "one outcome per record");
            for (r, batched) in run.iter().zip(&outcomes) {
                let single = one.process(key, r.offset, r.reference_ms, r.payload);
                assert_eq!(
                    batched, &single,
                    "partition {partition} offset {}",
                    r.offset
                );
                match single {
                    Outcome::Applied => {}
                    Outcome::Late(_) => late += 1,
                    Outcome::Dead(_) => dead += 1,
                }
            }
        }
        if chunks % 7 == 0 || start == events.len() {
            for partition in 0..PARTITIONS {
                let key = (0, partition);
                let want = written(one.flush(key));
                updates += want.len();
                assert_eq!(
                    written(runs.flush(key)),
                    want,
                    "flush of partition {partition}"
                );
            }
        }
    }
    // The stream exercised every outcome and many updates.
    assert!(
        late > 50 && dead > 20 && updates > 2_000,
        "late {late}, dead {dead}, updates {updates}"
    );
    assert_eq!(
        runs.counters().snapshot(),
        one.counters().snapshot(),
        "the same counts"
    );
}

#[test]
fn a_rebuild_replaying_runs_gives_what_replaying_one_by_one_gives() {
    let engine = PluginEngine::new().expect("engine");
    let key = (0, 0);
    let events = generate(23, 6_000, 300, 1);
    let records: Vec<Record<'_>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Record {
            offset: i as i64,
            reference_ms: REFERENCE_MS,
            payload: Some(e.payload.as_bytes()),
        })
        .collect();
    let cut = 4_000;
    // The original reads the records before the cut, with idle advances of
    // its stream time among them (the replays must redo those in place).
    let mut original = processor(&engine);
    for (i, r) in records[..cut].iter().enumerate() {
        original.process(key, r.offset, r.reference_ms, r.payload);
        if i % 300 == 299 {
            let now = original.stream_time(key).expect("events applied");
            assert!(original.advance_idle(key, now + 1_500));
        }
        if i % 500 == 499 {
            original.flush(key);
        }
    }
    original.flush(key);
    let checkpoint = original.checkpoint(key, cut as i64);
    let from = checkpoint.rebuild_from as usize;
    assert!(
        from + 200 < cut && checkpoint.jumps.len() > 1,
        "the replay is long and holds idle advances: {checkpoint:?}"
    );

    let mut one = processor(&engine);
    one.restore(key, Some(&checkpoint));
    for r in &records[from..cut] {
        one.replay(key, r.offset, r.reference_ms, r.payload);
    }
    one.finish_rebuild(key);
    // Runs of 1 to 100 records, from a fixed sequence.
    let mut runs = processor(&engine);
    runs.restore(key, Some(&checkpoint));
    let mut lcg = 777u64;
    let mut start = from;
    while start < cut {
        lcg = lcg
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let end = (start + 1 + (lcg >> 33) as usize % 100).min(cut);
        runs.replay_batch(key, &records[start..end]);
        start = end;
    }
    runs.finish_rebuild(key);
    assert_eq!(
        runs.checkpoint(key, cut as i64),
        one.checkpoint(key, cut as i64)
    );
    assert_eq!(runs.stream_time(key), original.stream_time(key));
    assert_eq!(runs.state_size(), one.state_size());
    assert_eq!(
        runs.counters().snapshot(),
        one.counters().snapshot(),
        "a replay counts nothing more"
    );
    assert!(
        written(runs.flush(key)).is_empty(),
        "a rebuild emits nothing"
    );
    assert!(
        written(one.flush(key)).is_empty(),
        "a rebuild emits nothing"
    );

    // All three go on alike: the same updates at every flush.
    let mut updates = 0;
    for (i, r) in records[cut..].iter().enumerate() {
        for p in [&mut original, &mut one, &mut runs] {
            p.process(key, r.offset, r.reference_ms, r.payload);
        }
        if i % 250 == 249 || cut + i + 1 == records.len() {
            let want = written(original.flush(key));
            updates += want.len();
            assert_eq!(
                written(one.flush(key)),
                want,
                "one by one, after {}",
                r.offset
            );
            assert_eq!(
                written(runs.flush(key)),
                want,
                "in runs, after {}",
                r.offset
            );
        }
    }
    assert!(updates > 1_000, "updates {updates}");
}
