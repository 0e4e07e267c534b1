//! Where events come from. One module per source:
//!
//! - [`kafka`]: the consumer group, with ack-gated commits and exact rebuilds;
//! - [`file`]: a JSONL file read as one partition (quickstart, no servers).

pub mod file;
pub mod kafka;
