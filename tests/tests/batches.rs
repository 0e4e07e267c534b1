//! Records applied in runs of one partition (`Processor::process_batch`, as the
//! Kafka and file sources apply them) give exactly what applying them one by
//! one gives: the same outcome per record and the same feature updates at every
//! flush, over a stream with late and malformed records. No servers needed
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
    Processor::new(plugin, "timestamp", 86_400_000, None, Counters::default())
}

/// The updates of a flush, as (online key, entity, as-of time, value).
fn written(flush: Flush) -> Vec<(String, String, i64, Option<String>)> {
    assert!(flush.failures.is_empty(), "the plugin fails no row");
    flush
        .updates
        .into_iter()
        .map(|u| (u.key, u.entity, u.as_of_ms, u.value))
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
