//! Where events come from. One module per source:
//!
//! - [`kafka`]: the consumer group, with ack-gated commits and exact rebuilds;
//! - [`writer`]: the Kafka source's writer of flushed batches (writes and
//!   commits in order, overlapped with consumption);
//! - [`file`]: a JSONL file read as one partition (quickstart, no servers).

pub mod file;
pub mod kafka;
pub mod writer;
