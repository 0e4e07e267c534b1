//! The file source: a JSONL file of events read as partition 0, line number as
//! offset, flushed every `batch_size` lines. Dead letters and late events are
//! logged with their reason (there is no side topic without Kafka).

use std::io::BufRead;

use tokio_util::sync::CancellationToken;

use crate::config::{FileConfig, PipelineConfig};
use crate::pipeline::Outcome;
use crate::sinks::memory::MemoryStore;
use crate::sinks::redis::RedisSink;
use crate::view::View;
use crate::RunError;

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
        for view in views.iter_mut() {
            let offset = line_no as i64;
            match view
                .processor
                .process(partition, offset, now, Some(line.as_bytes()))
            {
                Outcome::Applied => {}
                Outcome::Late(reason) => {
                    tracing::debug!(view = %view.name, line = line_no + 1, %reason, "late event")
                }
                Outcome::Dead(reason) => {
                    tracing::debug!(view = %view.name, line = line_no + 1, %reason, "dead letter")
                }
            }
        }
        in_batch += 1;
        if in_batch >= pipeline.batch_size {
            flush(views, &mut redis, memory).await?;
            in_batch = 0;
        }
    }
    flush(views, &mut redis, memory).await
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
            None => memory.write(&flush.updates),
        }
    }
    Ok(())
}
