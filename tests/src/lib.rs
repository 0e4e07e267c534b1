//! The shared harness of Wafer's integration tests: endpoints from the
//! environment (loopback defaults), a unique namespace per test, the host run
//! in-process, Kafka and Redis helpers, and an independent reference model of
//! the user-activity features to compare against.
//!
//! - [`Env`]: a test's namespace (topics, group, Redis key prefix) and clients;
//! - [`Host`]: one in-process `wafer::run` with its shutdown handle;
//! - [`reference`]: the naive recomputation the host is checked against;
//! - [`offline`]: reading the offline log's Parquet files, reference features at any point;
//! - [`outputs`]: the checks of Redis, `ml-features` and side topics against it.

pub mod offline;
pub mod outputs;
pub mod reference;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// Kafka bootstrap servers for tests.
pub fn brokers() -> String {
    std::env::var("WAFER_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Redis URL for tests.
pub fn redis_url() -> String {
    std::env::var("WAFER_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A free TCP port on loopback (for an admin endpoint).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A test fixture plugin built by `make fixtures`: `target/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    let p = repo_root().join("target/fixtures").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `make fixtures` first",
        p.display()
    );
    p
}

/// The release `wafer` binary (`make host`).
pub fn wafer_binary() -> PathBuf {
    let p = repo_root().join("target/release/wafer");
    assert!(p.exists(), "{} is missing: run `make host`", p.display());
    p
}

/// What `wafer plugin inspect <plugin>` prints.
pub fn inspect(plugin: &std::path::Path) -> String {
    succeeded(
        "wafer plugin inspect",
        std::process::Command::new(wafer_binary())
            .args(["plugin", "inspect"])
            .arg(plugin)
            .output()
            .expect("wafer runs"),
    )
}

/// `output`'s stdout, or a panic showing what `what` printed.
pub fn succeeded(what: &str, output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The built user-activity plugin (`make plugins`).
pub fn user_activity_plugin() -> PathBuf {
    let p = repo_root().join("target/plugins/user_activity.wasm");
    assert!(
        p.exists(),
        "{} is missing: run `make plugins` first",
        p.display()
    );
    p
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: BTreeMap<String, String>,
}

/// A test's namespace: its own topics, consumer group and Redis key prefix.
pub struct Env {
    pub name: String,
    pub input: String,
    pub output: String,
    pub dead_letters: String,
    pub late: String,
    pub group: String,
    pub key_prefix: String,
    pub partitions: i32,
    producer: FutureProducer,
}

impl Env {
    /// Creates the namespace and its topics (`partitions` for the input topic).
    pub async fn new(test: &str, partitions: i32) -> anyhow::Result<Self> {
        let unique = format!(
            "{test}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros()
        );
        let env = Self {
            input: format!("{unique}.user-events"),
            output: format!("{unique}.ml-features"),
            dead_letters: format!("{unique}.dead-letters"),
            late: format!("{unique}.late"),
            group: format!("{unique}.group"),
            key_prefix: unique.clone(),
            name: unique,
            partitions,
            producer: ClientConfig::new()
                .set("bootstrap.servers", brokers())
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .create()
                .context("creating the test producer")?,
        };
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .context("creating the admin client")?;
        let topics = [
            NewTopic::new(&env.input, partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&env.output, 1, TopicReplication::Fixed(1)),
            NewTopic::new(&env.dead_letters, 1, TopicReplication::Fixed(1)),
            NewTopic::new(&env.late, 1, TopicReplication::Fixed(1)),
        ];
        for result in admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .context("creating topics")?
        {
            if let Err((topic, e)) = result {
                bail!("creating topic {topic}: {e}");
            }
        }
        Ok(env)
    }

    /// The Redis key template for this namespace.
    pub fn key_template(&self) -> String {
        format!("{}:features:{{user_id}}", self.key_prefix)
    }

    /// A pipeline config for this namespace running the user-activity plugin.
    pub fn config(&self) -> wafer::config::Config {
        wafer::config::Config::parse(&self.config_toml(), "test config")
            .expect("test config is valid")
    }

    /// The TOML text of [`Env::config`].
    pub fn config_toml(&self) -> String {
        format!(
            r#"{sources}
[plugin]
path = "{plugin}"
key_template = "{template}"
ttl_secs = 3600
"#,
            sources = self.sources_toml(300),
            plugin = user_activity_plugin().display(),
            template = self.key_template(),
        )
    }

    /// The `[pipeline]`, `[kafka]` and `[redis]` sections of this test's
    /// namespace (flush every `batch_size` records or 50 ms), for configs
    /// that add their own plugin or views.
    pub fn sources_toml(&self, batch_size: usize) -> String {
        format!(
            r#"
[pipeline]
batch_size = {batch_size}
linger_ms = 50
# The reference model does not model idle partitions (tests/tests/idle.rs does).
idle_timeout_ms = 0

[kafka]
brokers = "{brokers}"
group = "{group}"
topics = ["{input}"]
output_topic = "{output}"
dead_letter_topic = "{dlq}"
late_topic = "{late}"

[redis]
url = "{redis}"
"#,
            brokers = brokers(),
            group = self.group,
            input = self.input,
            output = self.output,
            dlq = self.dead_letters,
            late = self.late,
            redis = redis_url(),
        )
    }

    /// Produces `(partition, key, payload)` records in order and waits for every ack.
    pub async fn produce(&self, records: &[(i32, String, String)]) -> anyhow::Result<()> {
        for chunk in records.chunks(500) {
            let mut acks = Vec::with_capacity(chunk.len());
            for (partition, key, payload) in chunk {
                let record = FutureRecord::to(&self.input)
                    .partition(*partition)
                    .key(key)
                    .payload(payload);
                acks.push(self.producer.send_result(record).map_err(|(e, _)| e)?);
            }
            for ack in acks {
                ack.await?.map_err(|(e, _)| e)?;
            }
        }
        Ok(())
    }

    /// Waits until the group has committed the end offset of every input partition.
    pub async fn wait_caught_up(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_group_caught_up(&self.group, &self.input, timeout)
            .await
    }

    /// Waits until `group` has committed the end offset of every partition of
    /// `topic` (e.g. a repartitioned view's group on its repartition topic).
    pub async fn wait_group_caught_up(
        &self,
        group: &str,
        topic: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata.topics()[0].partitions().len() as i32;
        if partitions == 0 {
            bail!("topic {topic} has no partitions");
        }
        let deadline = Instant::now() + timeout;
        loop {
            let mut behind = Vec::new();
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(topic, p);
            }
            let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
            for p in 0..partitions {
                let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
                let at = match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                };
                if at < high {
                    behind.push((p, at, high));
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("group {group} not caught up on {topic} after {timeout:?}: (partition, committed, end) {behind:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Committed offset of each input partition (-1 when none).
    pub fn committed(&self) -> anyhow::Result<Vec<i64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", &self.group)
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.input, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        Ok((0..self.partitions)
            .map(
                |p| match committed.find_partition(&self.input, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                },
            )
            .collect())
    }

    /// Waits until the committed offsets of the input topic add up to at
    /// least `at_least` (partitions without a commit count 0); panics after `within`.
    pub async fn wait_committed(&self, at_least: i64, within: Duration) {
        let deadline = Instant::now() + within;
        while self
            .committed()
            .unwrap()
            .iter()
            .filter(|o| **o > 0)
            .sum::<i64>()
            < at_least
        {
            assert!(
                Instant::now() < deadline,
                "no progress: fewer than {at_least} records committed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Produces `records` paced (chunks of 200, 40 ms apart) in a task: the
    /// first half at once, the second half only once the returned sender is
    /// used (e.g. when a host under test is down, so that it always goes down
    /// mid-stream however slow the machine).
    pub fn produce_in_halves(
        self: &std::sync::Arc<Self>,
        records: Vec<(i32, String, String)>,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (go, second_half) = tokio::sync::oneshot::channel::<()>();
        let env = std::sync::Arc::clone(self);
        let task = tokio::spawn(async move {
            let (first, second) = records.split_at(records.len() / 2);
            for chunk in first.chunks(200) {
                env.produce(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            second_half.await.unwrap();
            for chunk in second.chunks(200) {
                env.produce(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        });
        (go, task)
    }

    /// Every record of `topic`, in partition then offset order.
    pub fn read_topic(&self, topic: &str) -> anyhow::Result<Vec<Record>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", format!("{}.reader", self.name))
            .set("enable.auto.commit", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        let mut out = Vec::new();
        for p in partitions {
            let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            if high <= low {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
            consumer.assign(&tpl)?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut next = low;
            while next < high {
                if Instant::now() > deadline {
                    bail!("reading {topic}/{p}: stuck at {next} of {high}");
                }
                let Some(m) = consumer.poll(Duration::from_millis(500)) else {
                    continue;
                };
                let m = m?;
                let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for header in h.iter() {
                        headers.insert(
                            header.key.to_owned(),
                            text(header.value).unwrap_or_default(),
                        );
                    }
                }
                out.push(Record {
                    partition: p,
                    offset: m.offset(),
                    key: text(m.key()),
                    value: text(m.payload()),
                    headers,
                });
                next = m.offset() + 1;
            }
        }
        Ok(out)
    }

    /// Every `<prefix>:features:<user>` Redis key with its value and TTL (seconds).
    pub async fn redis_features(&self) -> anyhow::Result<BTreeMap<String, (String, i64)>> {
        self.redis_values("features").await
    }

    /// Every `<prefix>:<infix>:<user>` Redis key, by user, with value and TTL (seconds).
    pub async fn redis_values(
        &self,
        infix: &str,
    ) -> anyhow::Result<BTreeMap<String, (String, i64)>> {
        let client = redis::Client::open(redis_url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:{infix}:*", self.key_prefix))
            .query_async(&mut conn)
            .await?;
        let mut out = BTreeMap::new();
        for key in keys {
            let value: String = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await?;
            let user = key.rsplit(':').next().unwrap_or_default().to_owned();
            out.insert(user, (value, ttl));
        }
        Ok(out)
    }
}

/// One host running in-process, on a runtime of its own (two worker threads,
/// like the tests'), so that killing it stops every task it started at once,
/// as a crash of its process would.
pub struct Host {
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<wafer::RunReport, wafer::RunError>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Host {
    /// Starts `wafer::run(config)` on a new runtime.
    pub fn start(config: wafer::config::Config) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wafer-host")
            .enable_all()
            .build()
            .expect("a runtime for the host");
        let shutdown = CancellationToken::new();
        let task = runtime.spawn(wafer::run(config, shutdown.clone()));
        Self {
            shutdown,
            task: Some(task),
            runtime: Some(runtime),
        }
    }

    /// Kills the host as a crash would: no final flush, no commit. Returns once
    /// every task of its runtime has stopped, so that nothing it started (a
    /// write, an offline append, a commit) happens after.
    pub async fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            tokio::task::spawn_blocking(move || runtime.shutdown_timeout(Duration::from_secs(30)))
                .await
                .expect("the host's runtime shuts down");
        }
    }

    /// Asks the host to stop (as SIGTERM does) and waits for its report.
    pub async fn stop(mut self) -> anyhow::Result<wafer::RunReport> {
        self.shutdown.cancel();
        let task = self.task.take().expect("a host runs until stopped");
        let report = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .context("host did not stop within 60 s")??;
        Ok(report?)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async test may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
