//! Pipeline counters, shared by the sources and read by the run report.
//! Each counter has one typed method so call sites cannot misspell a metric.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident / $add:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        struct Inner { $($name: AtomicU64,)* }

        /// Cheap-to-clone handle on the pipeline's counters.
        #[derive(Debug, Clone, Default)]
        pub struct Counters(Arc<Inner>);

        /// A point-in-time copy of the counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct Snapshot { $($(#[doc = $doc])* pub $name: u64,)* }

        impl Counters {
            $(
                $(#[doc = $doc])*
                pub fn $add(&self, n: u64) {
                    self.0.$name.fetch_add(n, Ordering::Relaxed);
                }
            )*

            /// The sum of two snapshots.
            pub fn plus_inner(a: &Snapshot, b: &Snapshot) -> Snapshot {
                Snapshot { $($name: a.$name + b.$name,)* }
            }

            /// Every counter of `s` as (name, description, value), in declaration order.
            pub fn fields_of(s: &Snapshot) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), concat!($($doc),*).trim(), s.$name),)*]
            }

            /// Reads every counter.
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.0.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Records consumed.
    events_in / add_events_in,
    /// Events that arrived too late for their window (sent to the late topic).
    late / add_late,
    /// Malformed events (sent to the dead-letter topic).
    dead_letters / add_dead_letters,
    /// Feature values written.
    updates / add_updates,
    /// Tombstones written (entities whose windows became empty).
    tombstones / add_tombstones,
    /// Plugin calls that returned an error or malformed output.
    plugin_errors / add_plugin_errors,
    /// Plugin calls that trapped (panic, deadline, memory cap); the instance is replaced.
    plugin_traps / add_plugin_traps,
    /// Entities whose features the plugin failed to compute (dead-lettered).
    plugin_dead_letters / add_plugin_dead_letters,
    /// Updates skipped because the plugin was quarantined.
    plugin_skipped / add_plugin_skipped,
    /// Times a plugin was quarantined.
    quarantines / add_quarantines,
    /// Plugin versions swapped in while running (hot loads and rollbacks).
    reloads / add_reloads,
    /// Offset commits.
    commits / add_commits,
    /// Records re-read to rebuild window state after an assignment.
    replayed / add_replayed,
}

impl Snapshot {
    /// The sum of `self` and `other`, counter by counter.
    pub fn plus(&self, other: &Snapshot) -> Snapshot {
        Counters::plus_inner(self, other)
    }

    /// Every counter as (name, description, value), in declaration order (for `/metrics`).
    pub fn fields(&self) -> Vec<(&'static str, &'static str, u64)> {
        Counters::fields_of(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_describe_and_read_every_counter() {
        let c = Counters::default();
        c.add_events_in(7);
        c.add_replayed(2);
        let fields = c.snapshot().fields();
        assert_eq!(fields.len(), 13);
        assert_eq!(fields[0], ("events_in", "Records consumed.", 7));
        assert_eq!(fields.last().unwrap().0, "replayed");
        assert_eq!(fields.last().unwrap().2, 2);
        assert!(fields.iter().all(|(_, help, _)| !help.is_empty()));
    }
}
