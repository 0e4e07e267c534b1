//! Pipeline counters, shared by the sources and read by the run report, and
//! the latency histograms and gauges of `/metrics`. Each counter has one typed
//! method so call sites cannot misspell a metric.
//!
//! - [`Counters`]: one view's counters, plugin-call latency, plugin-swap pauses and
//!   window-state gauges;
//! - [`SinkTimings`]: the Kafka source's write, acknowledgement and commit latencies;
//! - [`Histogram`]: a fixed-bucket latency histogram rendered in Prometheus format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident / $add:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        struct Inner { $($name: AtomicU64,)* gauges: ViewGauges }

        /// Cheap-to-clone handle on the pipeline's counters.
        #[derive(Debug, Clone, Default)]
        pub struct Counters(Arc<Inner>);

        /// A point-in-time copy of the counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct Snapshot { $($(#[doc = $doc])* pub $name: u64,)* }

        impl Counters {
            $(
                $(#[doc = $doc])*
                pub fn $add(&self, n: u64) {
                    self.0.$name.fetch_add(n, Ordering::Relaxed);
                }
            )*

            /// The sum of two snapshots.
            pub fn plus_inner(a: &Snapshot, b: &Snapshot) -> Snapshot {
                Snapshot { $($name: a.$name + b.$name,)* }
            }

            /// Every counter of `s` as (name, description, value), in declaration order.
            pub fn fields_of(s: &Snapshot) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), concat!($($doc),*).trim(), s.$name),)*]
            }

            /// Reads every counter.
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.0.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Records consumed.
    events_in / add_events_in,
    /// Events that arrived too late for their window (sent to the late topic).
    late / add_late,
    /// Malformed events (sent to the dead-letter topic).
    dead_letters / add_dead_letters,
    /// Feature values written.
    updates / add_updates,
    /// Tombstones written (entities whose windows became empty).
    tombstones / add_tombstones,
    /// Plugin calls that returned an error or malformed output.
    plugin_errors / add_plugin_errors,
    /// Plugin calls that trapped (panic, deadline, memory cap); the instance is replaced.
    plugin_traps / add_plugin_traps,
    /// Entities whose features the plugin failed to compute (dead-lettered).
    plugin_dead_letters / add_plugin_dead_letters,
    /// Updates skipped because the plugin was quarantined.
    plugin_skipped / add_plugin_skipped,
    /// Times a plugin was quarantined.
    quarantines / add_quarantines,
    /// Plugin versions swapped in while running (hot loads and rollbacks).
    reloads / add_reloads,
    /// Offset commits.
    commits / add_commits,
    /// Records re-read to rebuild window state after an assignment.
    replayed / add_replayed,
    /// Records of a repartition topic dropped as copies of records already applied
    /// (forwarded again after a crash or rebalance of the input).
    duplicates / add_duplicates,
    /// Updates and tombstones not written to Redis because the entity's stored
    /// features are as of a later event time (the ordering guard of the online store).
    redis_skipped / add_redis_skipped,
}

/// One view's latency histogram and gauges (beside its counters).
#[derive(Debug, Default)]
struct ViewGauges {
    plugin_call: Histogram,
    plugin_swap: Histogram,
    entities: AtomicU64,
    events_held: AtomicU64,
    tiles_held: AtomicU64,
    quarantined: AtomicBool,
}

impl Counters {
    /// Records the duration of one plugin call (a whole batch).
    pub fn observe_plugin_call(&self, took: Duration) {
        self.0.gauges.plugin_call.observe(took);
    }

    /// Records one plugin swap's pause: the time processing stood still to put
    /// a new version in place (see `View::swap_if_pending`).
    pub fn observe_plugin_swap(&self, took: Duration) {
        self.0.gauges.plugin_swap.observe(took);
    }

    /// Sets the window-state gauges: entities and events held over every partition.
    pub fn set_window_state(&self, (entities, events_held): (usize, usize)) {
        self.0
            .gauges
            .entities
            .store(entities as u64, Ordering::Relaxed);
        self.0
            .gauges
            .events_held
            .store(events_held as u64, Ordering::Relaxed);
    }

    /// Sets the tiles gauge: tiles held by tiled windows over every partition.
    pub fn set_window_tiles(&self, tiles: usize) {
        self.0
            .gauges
            .tiles_held
            .store(tiles as u64, Ordering::Relaxed);
    }

    /// The tiles gauge.
    pub fn window_tiles(&self) -> u64 {
        self.0.gauges.tiles_held.load(Ordering::Relaxed)
    }

    /// Marks the view's plugin as quarantined (or not any more).
    pub fn set_quarantined(&self, quarantined: bool) {
        self.0
            .gauges
            .quarantined
            .store(quarantined, Ordering::Relaxed);
    }

    /// True while the view's plugin is quarantined.
    pub fn quarantined(&self) -> bool {
        self.0.gauges.quarantined.load(Ordering::Relaxed)
    }

    /// The window-state gauges: (entities, events held).
    pub fn window_state(&self) -> (u64, u64) {
        (
            self.0.gauges.entities.load(Ordering::Relaxed),
            self.0.gauges.events_held.load(Ordering::Relaxed),
        )
    }

    /// The plugin-call latency histogram.
    pub fn plugin_calls(&self) -> &Histogram {
        &self.0.gauges.plugin_call
    }

    /// The plugin-swap pause histogram.
    pub fn plugin_swaps(&self) -> &Histogram {
        &self.0.gauges.plugin_swap
    }
}

/// Upper bounds of the latency buckets, in seconds (100 µs to 10 s).
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram with the fixed [`BUCKETS`]: lock-free, one atomic
/// increment per observation plus the sum and count.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of the observations.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed))
    }

    /// Appends the `_bucket`, `_sum` and `_count` samples of `metric` with
    /// `labels` (already rendered as `k="v",...`, or empty) to `out`.
    pub fn render(&self, out: &mut String, metric: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_owned()])
            .enumerate()
        {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{metric}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{metric}_sum{braces} {sum}");
        let _ = writeln!(out, "{metric}_count{braces} {cumulative}");
    }
}

/// How many times each step of the Kafka source's writes ran and its total
/// time in seconds (the sums of [`SinkTimings`]' histograms).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WriteTotals {
    /// Redis writes (one per flushed batch), retries included.
    pub redis_write: (u64, f64),
    /// Waits for the acknowledgements of a batch's Kafka records.
    pub kafka_ack: (u64, f64),
    /// Offset commits.
    pub commit: (u64, f64),
    /// Flushed batches prepared by the consuming task (drain, plugin call,
    /// feature records, Kafka records queued).
    pub flush: (u64, f64),
    /// Hand-offs of flushed batches to the writer, with the time each waited
    /// for a free in-flight slot (consumption held back meanwhile).
    pub writer_wait: (u64, f64),
}

/// Latencies of the Kafka source's flush, shared with the HTTP server.
#[derive(Debug, Clone, Default)]
pub struct SinkTimings(Arc<SinkTimingsInner>);

#[derive(Debug, Default)]
struct SinkTimingsInner {
    redis_write: Histogram,
    kafka_ack: Histogram,
    commit: Histogram,
    flush: Histogram,
    writer_wait: Histogram,
}

impl SinkTimings {
    /// One flush's Redis write, retries included.
    pub fn observe_redis_write(&self, took: Duration) {
        self.0.redis_write.observe(took);
    }

    /// One flush's wait for the acknowledgements of its Kafka records.
    pub fn observe_kafka_ack(&self, took: Duration) {
        self.0.kafka_ack.observe(took);
    }

    /// One offset commit.
    pub fn observe_commit(&self, took: Duration) {
        self.0.commit.observe(took);
    }

    /// The consuming task's preparation of one flushed batch.
    pub fn observe_flush(&self, took: Duration) {
        self.0.flush.observe(took);
    }

    /// One hand-off's wait for a free in-flight slot (zero when one was free).
    pub fn observe_writer_wait(&self, took: Duration) {
        self.0.writer_wait.observe(took);
    }

    /// Totals of the Kafka source's writes so far.
    pub fn totals(&self) -> WriteTotals {
        let total = |h: &Histogram| (h.count(), h.sum().as_secs_f64());
        WriteTotals {
            redis_write: total(&self.0.redis_write),
            kafka_ack: total(&self.0.kafka_ack),
            commit: total(&self.0.commit),
            flush: total(&self.0.flush),
            writer_wait: total(&self.0.writer_wait),
        }
    }

    /// Every histogram as (metric name, help, histogram).
    pub fn histograms(&self) -> [(&'static str, &'static str, &Histogram); 5] {
        [
            (
                "wafer_redis_write_duration_seconds",
                "Time to write one flush's updates to Redis and get the reply, retries included.",
                &self.0.redis_write,
            ),
            (
                "wafer_kafka_ack_wait_duration_seconds",
                "Time a flush waits for the broker to acknowledge its records (features, dead letters, late events).",
                &self.0.kafka_ack,
            ),
            (
                "wafer_kafka_commit_duration_seconds",
                "Time of one synchronous offset commit.",
                &self.0.commit,
            ),
            (
                "wafer_flush_duration_seconds",
                "Time the consuming task takes to prepare one flushed batch (windows drained, plugin called, feature records built, Kafka records queued); consumption waits meanwhile.",
                &self.0.flush,
            ),
            (
                "wafer_writer_wait_duration_seconds",
                "Time a flushed batch waits to be handed to the writer while max_in_flight_batches batches are in flight (zero when a slot was free); consumption waits meanwhile.",
                &self.0.writer_wait,
            ),
        ]
    }
}

impl Snapshot {
    /// The sum of `self` and `other`, counter by counter.
    pub fn plus(&self, other: &Snapshot) -> Snapshot {
        Counters::plus_inner(self, other)
    }

    /// Every counter as (name, description, value), in declaration order (for `/metrics`).
    pub fn fields(&self) -> Vec<(&'static str, &'static str, u64)> {
        Counters::fields_of(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_describe_and_read_every_counter() {
        let c = Counters::default();
        c.add_events_in(7);
        c.add_replayed(2);
        c.add_duplicates(3);
        c.add_redis_skipped(4);
        let fields = c.snapshot().fields();
        assert_eq!(fields.len(), 15);
        assert_eq!(fields[0], ("events_in", "Records consumed.", 7));
        assert_eq!((fields[12].0, fields[12].2), ("replayed", 2));
        assert_eq!((fields[13].0, fields[13].2), ("duplicates", 3));
        assert_eq!(fields.last().unwrap().0, "redis_skipped");
        assert_eq!(fields.last().unwrap().2, 4);
        assert!(fields.iter().all(|(_, help, _)| !help.is_empty()));
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        // Hand-placed: 50 µs -> le 0.0001; 1 ms exactly -> le 0.001; 30 ms -> le 0.05; 20 s -> +Inf.
        for micros in [50, 1_000, 30_000, 20_000_000] {
            h.observe(Duration::from_micros(micros));
        }
        let mut out = String::new();
        h.render(&mut out, "m", "view=\"v\"");
        let value = |series: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
                .unwrap_or_else(|| panic!("{series} missing in\n{out}"))
                .parse()
                .unwrap()
        };
        assert_eq!(value("m_bucket{view=\"v\",le=\"0.0001\"}"), 1.0);
        assert_eq!(value("m_bucket{view=\"v\",le=\"0.0005\"}"), 1.0);
        assert_eq!(value("m_bucket{view=\"v\",le=\"0.001\"}"), 2.0);
        assert_eq!(value("m_bucket{view=\"v\",le=\"0.025\"}"), 2.0);
        assert_eq!(value("m_bucket{view=\"v\",le=\"0.05\"}"), 3.0);
        assert_eq!(value("m_bucket{view=\"v\",le=\"10\"}"), 3.0);
        assert_eq!(value("m_bucket{view=\"v\",le=\"+Inf\"}"), 4.0);
        assert_eq!(value("m_count{view=\"v\"}"), 4.0);
        assert!((value("m_sum{view=\"v\"}") - 20.03105).abs() < 1e-9);
        assert_eq!(h.count(), 4);

        let mut bare = String::new();
        Histogram::default().render(&mut bare, "x", "");
        assert!(bare.contains("x_bucket{le=\"+Inf\"} 0\n"));
        assert!(bare.contains("x_count 0\n"));
    }
}
