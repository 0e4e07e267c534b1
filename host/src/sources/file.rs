//! The file source: a JSONL file of events read as partition 0, line number as
//! offset, flushed every `batch_size` lines. Dead letters and late events are
//! logged with their reason (there is no side topic without Kafka).

use std::io::BufRead;

use tokio_util::sync::CancellationToken;

use crate::config::{FileConfig, PipelineConfig};
use crate::pipeline::{Outcome, Processor};
use crate::sinks::memory::MemoryStore;
use crate::sinks::redis::RedisSink;
use crate::RunError;

/// Reads the whole file through `processor` into the online store.
pub async fn run(
    file: &FileConfig,
    pipeline: &PipelineConfig,
    processor: &mut Processor,
    mut redis: Option<RedisSink>,
    memory: &MemoryStore,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let source = std::fs::File::open(&file.path).map_err(|e| {
        RunError::Source(format!(
            "cannot open event file {}: {e}",
            file.path.display()
        ))
    })?;
    let partition = (0, 0);
    let mut in_batch = 0;
    for (line_no, line) in std::io::BufReader::new(source).lines().enumerate() {
        if shutdown.is_cancelled() {
            break;
        }
        let line =
            line.map_err(|e| RunError::Source(format!("reading {}: {e}", file.path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let now = chrono::Utc::now().timestamp_millis();
        match processor.process(partition, line_no as i64, now, Some(line.as_bytes())) {
            Outcome::Applied => {}
            Outcome::Late(reason) => tracing::debug!(line = line_no + 1, %reason, "late event"),
            Outcome::Dead(reason) => tracing::debug!(line = line_no + 1, %reason, "dead letter"),
        }
        in_batch += 1;
        if in_batch >= pipeline.batch_size {
            flush(processor, &mut redis, memory).await?;
            in_batch = 0;
        }
    }
    flush(processor, &mut redis, memory).await
}

async fn flush(
    processor: &mut Processor,
    redis: &mut Option<RedisSink>,
    memory: &MemoryStore,
) -> Result<(), RunError> {
    for partition in processor.partitions() {
        let flush = processor.flush(partition);
        for f in &flush.failures {
            processor.counters().add_plugin_dead_letters(1);
            tracing::warn!(entity = %f.entity, line = f.offset + 1, kind = f.error.kind(), error = %f.error, "plugin failed for an entity");
        }
        match redis {
            Some(r) => r.write(&flush.updates).await?,
            None => memory.write(&flush.updates),
        }
    }
    Ok(())
}
