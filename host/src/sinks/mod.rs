//! Where feature updates go. One module per sink:
//!
//! - [`redis`]: the online store (JSON, hash or Feast layout per view; guarded scripts);
//! - [`kafka`]: the feature topic and the side topics (dead letters, late events);
//! - [`memory`]: the embedded online store of the quickstart.

pub mod kafka;
pub mod memory;
pub mod redis;

/// A sink write that was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Redis refused or did not answer.
    #[error("redis write failed: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A stored value is not what its layout writes.
    #[error("redis key {key} holds an unreadable value: {reason}")]
    Corrupt { key: String, reason: String },
    /// Kafka did not acknowledge a record.
    #[error("kafka write to topic {topic} failed: {reason}")]
    Kafka { topic: String, reason: String },
}
