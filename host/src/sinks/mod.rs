//! Where feature updates go. One module per sink:
//!
//! - [`redis`]: the online store (pipelined `SET ... EX` / `DEL`);
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
    /// Kafka did not acknowledge a record.
    #[error("kafka write to topic {topic} failed: {reason}")]
    Kafka { topic: String, reason: String },
}
