//! What operators see of a running host beyond the counters: per-partition
//! readiness, the flush latencies, the last dead letters, a per-second history
//! of throughput and lag, and the status page that shows them.
//!
//! - [`readiness`]: assigned → rebuilding → ready per partition, and the host's readiness;
//! - [`recent`]: bounded rings of dead letters and per-second samples;
//! - [`PAGE`]: the self-contained status page (`GET /status`), which reads
//!   `GET /status.json` and `GET /features/{view}/{entity}`.

pub mod readiness;
pub mod recent;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::SinkTimings;
use crate::serving::{self, Serving};
pub use readiness::{PartitionState, Readiness, ReadinessReport, Replay};
pub use recent::{DeadLetter, Recent, Sample};

/// The status page: one HTML file with its script and styles, no external resource.
pub const PAGE: &str = include_str!("page.html");

/// How often the throughput and lag history is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Shared handles on what the source reports and the HTTP server shows.
#[derive(Debug, Clone)]
pub struct Status {
    pub readiness: Readiness,
    pub timings: SinkTimings,
    pub recent: Recent,
}

impl Status {
    /// Readiness is published in `ready_flag` (the probes' flag) and waits
    /// for the first assignment of each of the Kafka sources' consumer `groups`.
    pub fn new(ready_flag: Arc<AtomicBool>, groups: Vec<String>) -> Self {
        Self {
            readiness: Readiness::new(ready_flag, groups),
            timings: SinkTimings::default(),
            recent: Recent::default(),
        }
    }

    /// Samples `serving`'s totals every `every` into the history until `shutdown`.
    pub fn spawn_sampler(&self, serving: Serving, every: Duration, shutdown: CancellationToken) {
        let recent = self.recent.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => recent.sample(sample_of(&serving)),
                }
            }
        });
    }

    /// The metrics of this module and the per-view histograms and gauges, in
    /// the Prometheus text format (appended after [`Serving::render_metrics`]).
    pub fn render_metrics(&self, serving: &Serving) -> String {
        let mut out = String::new();
        for (metric, help, pick) in [
            (
                "wafer_plugin_call_duration_seconds",
                "Duration of one plugin call (one batch of entities).",
                (|c: &crate::metrics::Counters| c.plugin_calls()) as fn(&_) -> &_,
            ),
            (
                "wafer_plugin_swap_pause_seconds",
                "Time processing stood still to swap in a new plugin version (hot load or rollback), after the batch boundary's flush.",
                |c| c.plugin_swaps(),
            ),
        ] {
            serving::header(&mut out, metric, help, "histogram");
            for v in serving.views.iter() {
                let labels = serving::labels_inner(&[("view", &v.name)]);
                pick(&v.counters).render(&mut out, metric, &labels);
            }
        }
        for (metric, help, histogram) in self.timings.histograms() {
            serving::header(&mut out, metric, help, "histogram");
            histogram.render(&mut out, metric, "");
        }
        for (metric, help, pick) in [
            (
                "wafer_window_entities",
                "Entities with events in their windows, over the partitions this host holds.",
                (|c: &crate::metrics::Counters| c.window_state().0) as fn(&_) -> u64,
            ),
            (
                "wafer_window_events",
                "Events held in windows, over the partitions this host holds.",
                |c| c.window_state().1,
            ),
            (
                "wafer_window_tiles",
                "Tiles (partial aggregates per time bucket) held by tiled windows, over the partitions this host holds.",
                |c| c.window_tiles(),
            ),
            (
                "wafer_plugin_quarantined",
                "1 while the view's plugin is quarantined (its outputs are not computed).",
                |c| u64::from(c.quarantined()),
            ),
        ] {
            serving::header(&mut out, metric, help, "gauge");
            for v in serving.views.iter() {
                serving::sample(&mut out, metric, &[("view", &v.name)], pick(&v.counters));
            }
        }
        let report = self.readiness.report();
        let metric = "wafer_partition_ready";
        serving::header(
            &mut out,
            metric,
            "Per assigned input partition: 1 once its window state is rebuilt, 0 while assigned or rebuilding.",
            "gauge",
        );
        for p in &report.partitions {
            let partition = p.partition.to_string();
            let labels = [("topic", p.topic.as_str()), ("partition", &partition)];
            let ready = u64::from(p.state == PartitionState::Ready);
            serving::sample(&mut out, metric, &labels, ready);
        }
        out
    }

    /// Everything the status page shows, as JSON (`GET /status.json`).
    pub fn summary(&self, serving: &Serving) -> serde_json::Value {
        let views: Vec<serde_json::Value> = serving
            .views
            .iter()
            .map(|v| {
                let (entities, events) = v.counters.window_state();
                serde_json::json!({
                    "name": v.name,
                    "quarantined": v.counters.quarantined(),
                    "versions": v.manager.versions(),
                    "window": { "entities": entities, "events": events, "tiles": v.counters.window_tiles() },
                    "counters": v.counters.snapshot(),
                })
            })
            .collect();
        serde_json::json!({
            "now": chrono::Utc::now().timestamp_millis(),
            "sample_every_ms": SAMPLE_EVERY.as_millis() as u64,
            "readiness": self.readiness.report(),
            "views": views,
            "samples": self.recent.samples(),
            "dead_letters": self.recent.dead_letters(),
        })
    }
}

/// The pipeline's totals now.
fn sample_of(serving: &Serving) -> Sample {
    let snapshots: Vec<crate::metrics::Snapshot> = serving
        .views
        .iter()
        .map(|v| v.counters.snapshot())
        .collect();
    let lag = serving
        .lag
        .lock()
        .expect("lag lock is never poisoned")
        .as_ref()
        .map(|l| l.iter().map(|p| p.lag).sum());
    Sample {
        t: chrono::Utc::now().timestamp_millis(),
        events_in: snapshots.first().map_or(0, |s| s.events_in),
        updates: snapshots.iter().map(|s| s.updates).sum(),
        dead_letters: snapshots
            .iter()
            .map(|s| s.dead_letters + s.plugin_dead_letters)
            .sum(),
        lag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.starts_with("<!doctype html>"));
        for external in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "<link",
            "@import",
            "url(",
        ] {
            assert!(
                !PAGE.contains(external),
                "the page must not load {external}"
            );
        }
        for id in [
            "plugins",
            "chart",
            "dead-letters",
            "lookup-form",
            "lookup-result",
        ] {
            assert!(
                PAGE.contains(&format!("id=\"{id}\"")),
                "element #{id} missing"
            );
        }
    }

    #[test]
    fn sink_histograms_render_under_their_names() {
        let s = Status::new(Arc::default(), vec!["g".into()]);
        s.timings.observe_commit(Duration::from_millis(3));
        let (name, _, h) = s.timings.histograms()[2];
        assert_eq!(name, "wafer_kafka_commit_duration_seconds");
        let mut text = String::new();
        h.render(&mut text, name, "");
        assert!(text.contains("wafer_kafka_commit_duration_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("wafer_kafka_commit_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("wafer_kafka_commit_duration_seconds_count 1\n"));
    }
}
