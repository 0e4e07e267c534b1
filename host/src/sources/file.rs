//! The file source: a JSONL file of events read as partition 0, line number as
//! offset, flushed every `batch_size` lines. Dead letters and late events are
//! logged with their reason (there is no side topic without Kafka).

use std::io::BufRead;

use tokio_util::sync::CancellationToken;

use crate::config::{FileConfig, PipelineConfig};
use crate::pipeline::{Outcome, PartitionKey, Record};
use crate::sinks::memory::MemoryStore;
use crate::sinks::redis::RedisSink;
use crate::view::View;
use crate::RunError;

/// The partition the file is read as.
const PARTITION: PartitionKey = (0, 0);
/// Lines applied together (one batch for the windows, see
/// [`crate::pipeline::Processor::process_batch`]).
const CHUNK: usize = 64;

/// Reads the whole file through every view into the online store.
pub async fn run(
    file: &FileConfig,
    pipeline: &PipelineConfig,
    views: &mut [View],
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
    let mut lines = std::io::BufReader::new(source).lines().enumerate();
    let mut chunk: Vec<(usize, String)> = Vec::with_capacity(CHUNK);
    let mut in_batch = 0;
    let mut ended = false;
    while !ended && !shutdown.is_cancelled() {
        chunk.clear();
        let room = CHUNK.min(pipeline.batch_size.saturating_sub(in_batch).max(1));
        while chunk.len() < room {
            let Some((line_no, line)) = lines.next() else {
                ended = true;
                break;
            };
            let line = line
                .map_err(|e| RunError::Source(format!("reading {}: {e}", file.path.display())))?;
            if !line.trim().is_empty() {
                chunk.push((line_no, line));
            }
        }
        apply(views, &chunk);
        in_batch += chunk.len();
        if in_batch >= pipeline.batch_size {
            flush(views, &mut redis, memory).await?;
            in_batch = 0;
        }
    }
    flush(views, &mut redis, memory).await
}

/// Applies `lines` (numbered from 0, the offset) to every view as one batch.
fn apply(views: &mut [View], lines: &[(usize, String)]) {
    let now = chrono::Utc::now().timestamp_millis();
    let records: Vec<Record<'_>> = lines
        .iter()
        .map(|(line_no, line)| Record {
            offset: *line_no as i64,
            reference_ms: now,
            payload: Some(line.as_bytes()),
        })
        .collect();
    let mut outcomes = Vec::with_capacity(records.len());
    for view in views.iter_mut() {
        view.processor
            .process_batch(PARTITION, &records, &mut outcomes);
        for ((line_no, _), outcome) in lines.iter().zip(outcomes.drain(..)) {
            match outcome {
                Outcome::Applied => {}
                Outcome::Late(reason) => {
                    tracing::debug!(view = %view.name, line = line_no + 1, %reason, "late event")
                }
                Outcome::Dead(reason) => {
                    tracing::debug!(view = %view.name, line = line_no + 1, %reason, "dead letter")
                }
            }
        }
    }
}

async fn flush(
    views: &mut [View],
    redis: &mut Option<RedisSink>,
    memory: &MemoryStore,
) -> Result<(), RunError> {
    for view in views.iter_mut() {
        flush_view(view, redis, memory).await?;
    }
    Ok(())
}

async fn flush_view(
    view: &mut View,
    redis: &mut Option<RedisSink>,
    memory: &MemoryStore,
) -> Result<(), RunError> {
    for partition in view.processor.partitions() {
        let flush = view.processor.flush(partition);
        for f in &flush.failures {
            view.processor.counters().add_plugin_dead_letters(1);
            tracing::warn!(entity = %f.entity, line = f.offset + 1, kind = f.error.kind(), error = %f.error, "plugin failed for an entity");
        }
        view.write_offline(&flush.updates)?;
        match redis {
            Some(r) => {
                let skipped = r.write(&[(view.online.clone(), flush.updates)]).await?;
                view.processor
                    .counters()
                    .add_redis_skipped(skipped.iter().sum());
            }
            None => memory.write(&view.online, &flush.updates),
        }
    }
    Ok(())
}
