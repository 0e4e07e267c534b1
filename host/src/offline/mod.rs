//! The offline log for training: every feature row that goes online is also
//! appended to Parquet files, partitioned by view and by the hour of the row's
//! as-of event time (`<dir>/view=<v>/date=YYYY-MM-DD/hour=HH/part-*.parquet`).
//!
//! **Delivery.** A Parquet file is readable only once closed, so each flush's
//! rows are first appended to a staging file (an Arrow IPC stream, one per
//! view and hour) and fsync'd before the offsets are committed, like every
//! other derived write. Staging files are rolled into Parquet files (temporary
//! name, fsync, atomic rename) when they are `roll_interval_secs` old or
//! `roll_mb` large, and at shutdown; staging files a crash left behind are
//! rolled at the next start. A crash can repeat rows (at least once, like
//! Redis and the feature topic): the dedup key is (entity, `as_of`), keeping
//! the row with the largest `written_at`. See `docs/operations.md`.

pub mod log;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::pipeline::FeatureUpdate;
use crate::plugin::FeatureSpec;
use crate::view::View;

pub use log::{OfflineError, OfflineLog, Recovery, RollPolicy};

/// The offline log (`[offline]`). Off when absent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineConfig {
    /// Root directory of the Parquet files, one per host process (staging files left by a
    /// crash under it are recovered at start).
    pub dir: PathBuf,
    /// A staging file is rolled into a Parquet file once it is this many seconds old
    /// (checked at each flush) or `roll_mb` large, and at shutdown.
    #[serde(default = "default_roll_interval")]
    pub roll_interval_secs: u64,
    /// Size in MiB of a staging file (uncompressed Arrow) at which it is rolled.
    #[serde(default = "default_roll_mb")]
    pub roll_mb: u64,
}

fn default_roll_interval() -> u64 {
    600
}

fn default_roll_mb() -> u64 {
    256
}

impl OfflineConfig {
    /// When staging files are rolled.
    pub fn roll_policy(&self) -> RollPolicy {
        RollPolicy {
            interval: Duration::from_secs(self.roll_interval_secs),
            bytes: self.roll_mb << 20,
        }
    }
}

impl View {
    /// Opens this view's offline log under `dir`, recovering what a previous
    /// process left there.
    pub fn open_offline(
        &mut self,
        dir: &std::path::Path,
        roll: RollPolicy,
        durable: bool,
    ) -> Result<(), OfflineError> {
        // A composite key's id (its fields joined, see `crate::entity`) goes
        // in one column named `entity`.
        let entity_key = match self.processor.entity_key().fields() {
            [single] => single.clone(),
            _ => "entity".to_owned(),
        };
        let (log, recovery) = OfflineLog::open(dir, &self.name, &entity_key, roll, durable)?;
        if recovery.recovered > 0 {
            tracing::info!(view = %self.name, files = recovery.recovered, rows = recovery.rows,
                incomplete = recovery.truncated, "offline log: staging files left by the previous run rolled into Parquet");
        }
        self.offline = Some(Arc::new(Mutex::new(log)));
        Ok(())
    }

    /// Appends `updates` to the view's offline log, if it has one (see
    /// [`OfflineLog::append`]).
    pub fn write_offline<'a>(
        &self,
        updates: impl IntoIterator<Item = &'a FeatureUpdate>,
    ) -> Result<usize, OfflineError> {
        match self.offline_writer() {
            Some(writer) => writer.append(updates),
            None => Ok(0),
        }
    }

    /// A handle that appends to the view's offline log (if it has one) with
    /// the current plugin version's features and tag, for a flush whose rows
    /// are written after the view has moved on (see `sources::kafka`).
    pub fn offline_writer(&self) -> Option<OfflineWriter> {
        let log = self.offline.as_ref()?;
        let plugin = self.processor.plugin();
        Some(OfflineWriter {
            view: self.name.clone(),
            log: log.clone(),
            specs: plugin.descriptor().features.clone(),
            plugin: self.processor.plugin_tag().to_owned(),
        })
    }

    /// Rolls the view's staging files into Parquet files (end of a run).
    pub fn close_offline(&mut self) -> Result<(), OfflineError> {
        match &self.offline {
            Some(log) => log.lock().expect("never poisoned").close(),
            None => Ok(()),
        }
    }
}

/// A view's offline log, shared between the view and the writer of its
/// flushed batches; appends are serialised by the lock.
pub type SharedLog = Arc<Mutex<OfflineLog>>;

/// Appends one flush's rows to a view's offline log with the plugin version
/// that computed them.
pub struct OfflineWriter {
    view: String,
    log: SharedLog,
    specs: Vec<FeatureSpec>,
    plugin: String,
}

impl OfflineWriter {
    /// Appends `updates` and syncs them (see [`OfflineLog::append`]).
    pub fn append<'a>(
        &self,
        updates: impl IntoIterator<Item = &'a FeatureUpdate>,
    ) -> Result<usize, OfflineError> {
        self.log
            .lock()
            .expect("never poisoned")
            .append(updates, &self.specs, &self.plugin)
    }
}

/// Appends a flush's updates to the offline logs and makes them durable,
/// retrying a failed append like a failed Redis write (an append that failed
/// half-way may leave rows twice). `updates` pairs each view's writer with
/// its updates of the flush (several entries per view when the view flushed
/// several partitions). Every listed view's due staging files are rolled,
/// even without updates.
pub async fn write_flush(
    writers: &[(OfflineWriter, Vec<&[FeatureUpdate]>)],
    shutdown: &CancellationToken,
) -> Result<(), OfflineError> {
    for (writer, batches) in writers {
        let mut attempt = 0u32;
        loop {
            let mine = batches.iter().flat_map(|b| b.iter());
            match tokio::task::block_in_place(|| writer.append(mine)) {
                Ok(_) => break,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(view = %writer.view, error = %e, attempt, "offline log append failed; retrying");
                    if shutdown.is_cancelled() && attempt >= 3 {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10))))
                        .await;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
