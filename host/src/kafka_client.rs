//! Every Kafka client's settings, built in one place from the config.

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Settings shared by every client: the brokers.
fn base(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    c
}

/// The user's extra properties, applied last so they override Wafer's defaults.
fn with_user_properties(mut c: ClientConfig, cfg: &KafkaConfig) -> ClientConfig {
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// The group consumer. Offsets are committed by Wafer only (never
/// automatically), with the window checkpoint as commit metadata; the
/// cooperative assignor moves only the partitions that change owner.
pub fn group_consumer(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base(cfg);
    c.set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    with_user_properties(c, cfg)
}

/// A consumer that re-reads partition ranges, to rebuild window state or for
/// `wafer backfill`. It is assigned partitions, never joins the group nor
/// commits. It is moved from partition to partition, so its fetches wait at
/// most 10 ms for data (librdkafka's 500 ms default would idle after each move
/// on a fetch for the previous partition).
pub fn replay_consumer(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base(cfg);
    c.set("group.id", format!("{}.wafer-replay", cfg.group))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .set("auto.offset.reset", "earliest");
    with_user_properties(c, cfg)
}

/// Records the producer may hold unacknowledged: more than a backlog's
/// in-flight batches hold at the default `max_in_flight_batches` and
/// `max_batch_size` (librdkafka's default of 100,000 would make a grown batch
/// wait for the local queue to drain).
pub const PRODUCER_QUEUE_MESSAGES: usize = 1_000_000;

/// The producer for features, dead letters and late events: idempotent, every
/// write acknowledged by all in-sync replicas.
pub fn producer(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base(cfg);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set(
            "queue.buffering.max.messages",
            PRODUCER_QUEUE_MESSAGES.to_string(),
        );
    with_user_properties(c, cfg)
}

/// The admin client that creates repartition topics.
pub fn admin(cfg: &KafkaConfig) -> ClientConfig {
    with_user_properties(base(cfg), cfg)
}

/// A client that reads the group's committed offsets and the partitions' end
/// offsets to report consumer lag. It never subscribes (so never joins the
/// group) and never commits.
pub fn lag_reader(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base(cfg);
    c.set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    with_user_properties(c, cfg)
}
