//! What the HTTP server serves besides plugin versions: feature lookups in
//! the online store, Prometheus metrics, readiness and consumer lag.
//!
//! The views are owned by the source loop while the pipeline runs, so
//! [`Serving`] captures what it needs from them when the server starts: each
//! view's name, online layout, counters (a shared handle) and plugin manager.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::metrics::Counters;
use crate::plugin::PluginManager;
use crate::sinks::memory::MemoryStore;
use crate::sinks::redis::{OnlineLayout, RedisSink};
use crate::sinks::SinkError;
use crate::view::View;

/// What the server knows about one view.
pub struct ServedView {
    pub name: String,
    /// How the view's features are stored (layout, entity key, key template).
    pub online: Arc<OnlineLayout>,
    /// The view's counters (shared with its processor).
    pub counters: Counters,
    pub manager: Arc<PluginManager>,
}

impl ServedView {
    /// Captures what the server needs from a built view.
    pub fn new(view: &View) -> Self {
        Self {
            name: view.name.clone(),
            online: view.online.clone(),
            counters: view.processor.counters().clone(),
            manager: view.manager.clone(),
        }
    }
}

/// The online store the features are read from.
#[derive(Clone)]
pub enum Store {
    Redis(RedisSink),
    Memory(MemoryStore),
}

impl Store {
    /// The feature record (JSON) of `entity` in `view`, whatever the view's
    /// layout; `None` when absent or when `entity` is not an id of the view's key.
    pub async fn get(&self, view: &ServedView, entity: &str) -> Result<Option<String>, SinkError> {
        match self {
            Store::Redis(r) => r.read(&view.online, entity).await,
            Store::Memory(m) => Ok(view.online.template_key(entity).and_then(|k| m.get(&k))),
        }
    }
}

/// Consumer lag of one input partition, as last measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (-1: none).
    pub committed: i64,
    /// The partition's end offset (high watermark).
    pub end: i64,
    /// Records not yet committed: `end - committed`, or `end - start` without a commit.
    pub lag: i64,
}

/// Everything the HTTP server serves from the running pipeline.
#[derive(Clone)]
pub struct Serving {
    pub views: Arc<Vec<ServedView>>,
    pub store: Store,
    /// The host's readiness, kept by [`crate::status::Readiness`]: the source
    /// runs and every assigned partition's window state is rebuilt.
    pub ready: Arc<AtomicBool>,
    /// The latest lag measurement (None: not measured, or no Kafka source).
    pub lag: Arc<Mutex<Option<Vec<PartitionLag>>>>,
}

impl Serving {
    pub fn new(views: Vec<ServedView>, store: Store) -> Self {
        Self {
            views: Arc::new(views),
            store,
            ready: Arc::new(AtomicBool::new(false)),
            lag: Arc::new(Mutex::new(None)),
        }
    }

    pub fn view(&self, name: &str) -> Option<&ServedView> {
        self.views.iter().find(|v| v.name == name)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let snapshots: Vec<(&str, crate::metrics::Snapshot)> = self
            .views
            .iter()
            .map(|v| (v.name.as_str(), v.counters.snapshot()))
            .collect();
        if let Some((_, first)) = snapshots.first() {
            for (i, (name, help, _)) in first.fields().into_iter().enumerate() {
                let metric = format!("wafer_{name}_total");
                header(&mut out, &metric, help, "counter");
                for (view, snapshot) in &snapshots {
                    let value = snapshot.fields()[i].2;
                    sample(&mut out, &metric, &[("view", view)], value);
                }
            }
        }
        header(
            &mut out,
            "wafer_plugin_info",
            "Plugin versions of each view (value 1), with their state: active, pending, previous, retired or rejected.",
            "gauge",
        );
        let versions: Vec<(&str, Vec<crate::plugin::VersionInfo>)> = self
            .views
            .iter()
            .map(|v| (v.name.as_str(), v.manager.versions()))
            .collect();
        for (view, list) in &versions {
            for v in list {
                let labels = [
                    ("view", *view),
                    ("plugin", v.name.as_str()),
                    ("version", v.version.as_str()),
                    ("sha256", v.sha256.as_str()),
                    ("state", v.state.as_str()),
                ];
                sample(&mut out, "wafer_plugin_info", &labels, 1);
            }
        }
        for (metric, help, pick) in [
            (
                "wafer_plugin_version_updates_total",
                "Feature values computed by each plugin version.",
                (|v: &crate::plugin::VersionInfo| v.updates) as fn(&_) -> u64,
            ),
            (
                "wafer_plugin_version_failures_total",
                "Entities each plugin version failed on (dead-lettered).",
                |v: &crate::plugin::VersionInfo| v.failures,
            ),
        ] {
            header(&mut out, metric, help, "counter");
            for (view, list) in &versions {
                for v in list {
                    let labels = [
                        ("view", *view),
                        ("version", v.version.as_str()),
                        ("sha256", v.sha256.as_str()),
                    ];
                    sample(&mut out, metric, &labels, pick(v));
                }
            }
        }
        header(
            &mut out,
            "wafer_ready",
            "1 while the host is ready: its sources run, each of its consumer groups has assigned at least once and every assigned partition's window state is rebuilt.",
            "gauge",
        );
        sample(&mut out, "wafer_ready", &[], u64::from(self.is_ready()));
        let lag = self.lag.lock().expect("lag lock is never poisoned").clone();
        if let Some(lag) = lag {
            for (metric, help, pick) in [
                (
                    "wafer_consumer_lag",
                    "Records of a consumed partition (input or repartition topic) not yet committed by its group.",
                    (|l: &PartitionLag| l.lag) as fn(&_) -> i64,
                ),
                (
                    "wafer_consumer_committed_offset",
                    "The group's committed offset of a consumed partition (-1: none).",
                    |l: &PartitionLag| l.committed,
                ),
                (
                    "wafer_consumer_end_offset",
                    "End offset (high watermark) of a consumed partition.",
                    |l: &PartitionLag| l.end,
                ),
            ] {
                header(&mut out, metric, help, "gauge");
                for l in &lag {
                    let partition = l.partition.to_string();
                    let labels = [("topic", l.topic.as_str()), ("partition", &partition)];
                    let _ = writeln!(out, "{metric}{} {}", labels_text(&labels), pick(l));
                }
            }
        }
        out
    }
}

pub(crate) fn header(out: &mut String, metric: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {metric} {help}");
    let _ = writeln!(out, "# TYPE {metric} {kind}");
}

pub(crate) fn sample(out: &mut String, metric: &str, labels: &[(&str, &str)], value: u64) {
    let _ = writeln!(out, "{metric}{} {value}", labels_text(labels));
}

fn labels_text(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    format!("{{{}}}", labels_inner(labels))
}

/// `k="v",...` with the values escaped (the inside of a label set).
pub(crate) fn labels_inner(labels: &[(&str, &str)]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    inner.join(",")
}

/// Measures each source's lag (its group on its topics: the input topics,
/// and each repartition topic) every `every`, into `lag`, until `shutdown`.
/// Runs on its own thread (the Kafka calls block).
pub fn spawn_lag_task(
    sources: &[KafkaConfig],
    lag: Arc<Mutex<Option<Vec<PartitionLag>>>>,
    every: Duration,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let readers = sources
        .iter()
        .map(|cfg| {
            let consumer: BaseConsumer = crate::kafka_client::lag_reader(cfg)
                .create()
                .map_err(|e| format!("cannot create the lag reader: {e}"))?;
            Ok((consumer, cfg.topics.clone()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    std::thread::Builder::new()
        .name("wafer-lag".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                let measured: Result<Vec<PartitionLag>, _> = readers
                    .iter()
                    .map(|(consumer, topics)| measure_lag(consumer, topics))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|all| all.concat());
                match measured {
                    Ok(measured) => {
                        *lag.lock().expect("lag lock is never poisoned") = Some(measured);
                    }
                    Err(e) => tracing::debug!(error = %e, "consumer lag not measured"),
                }
                let until = std::time::Instant::now() + every;
                while !shutdown.is_cancelled() && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
        .map_err(|e| format!("cannot start the lag thread: {e}"))?;
    Ok(())
}

fn measure_lag(
    consumer: &BaseConsumer,
    topics: &[String],
) -> Result<Vec<PartitionLag>, rdkafka::error::KafkaError> {
    let timeout = Duration::from_secs(5);
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(topic, p.id());
            }
        }
    }
    let committed = consumer.committed_offsets(tpl.clone(), timeout)?;
    let mut out = Vec::new();
    for e in tpl.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let at = match committed
            .find_partition(e.topic(), e.partition())
            .map(|c| c.offset())
        {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        };
        let lag = if at >= 0 { high - at } else { high - low };
        out.push(PartitionLag {
            topic: e.topic().to_owned(),
            partition: e.partition(),
            committed: at,
            end: high,
            lag: lag.max(0),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(
            labels_text(&[("view", "a\"b\\c\nd"), ("x", "y")]),
            r#"{view="a\"b\\c\nd",x="y"}"#
        );
        assert_eq!(labels_text(&[]), "");
    }
}
