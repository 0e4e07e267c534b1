//! Per-partition readiness: a partition is `assigned` by the group, then
//! `rebuilding` while its window state is replayed, then `ready`; a revoked
//! partition is forgotten. The host is ready while its sources run, each of
//! its consumer groups (the input topics' and each repartitioned view's
//! `<group>.<view>`) has made its first assignment, and every assigned
//! partition of every group is ready.
//!
//! Every change is numbered from one host-wide sequence, so the order of
//! transitions (and of the host becoming ready) can be checked without clocks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Where one assigned partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionState {
    /// Assigned by the group; its state is not rebuilt yet.
    Assigned,
    /// Its window state is being replayed from the committed checkpoint.
    Rebuilding,
    /// Its window state is rebuilt; records are being processed.
    Ready,
}

/// One state change of a partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transition {
    pub state: PartitionState,
    /// Position in the host-wide sequence of changes.
    pub seq: u64,
    /// Wall-clock time (RFC 3339).
    pub at: String,
}

/// What a finished rebuild replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Replay {
    /// First offset replayed.
    pub from: i64,
    /// The committed offset the replay stopped at (exclusive).
    pub to: i64,
    /// Records replayed.
    pub records: u64,
}

/// One assigned partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub state: PartitionState,
    /// Every state since the assignment, oldest first.
    pub transitions: Vec<Transition>,
    /// The replay of the last rebuild (absent before it ends, or when there was
    /// nothing to replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
}

/// What `GET /partitions` and `GET /readyz` answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadinessReport {
    pub ready: bool,
    /// The source is running.
    pub running: bool,
    /// Every consumer group has assigned partitions at least once (always
    /// true without Kafka).
    pub joined: bool,
    /// The consumer groups that have not assigned partitions yet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// Sequence number of the last time the host became ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_seq: Option<u64>,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Default)]
struct State {
    running: bool,
    /// Consumer groups without a first assignment yet.
    waiting_for: BTreeSet<String>,
    seq: u64,
    ready_seq: Option<u64>,
    partitions: BTreeMap<(String, i32), PartitionStatus>,
}

impl State {
    fn ready(&self) -> bool {
        self.running
            && self.waiting_for.is_empty()
            && self
                .partitions
                .values()
                .all(|p| p.state == PartitionState::Ready)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn set(&mut self, topic: &str, partition: i32, state: PartitionState) -> &mut PartitionStatus {
        let seq = self.next_seq();
        let transition = Transition {
            state,
            seq,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let status = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| PartitionStatus {
                topic: topic.to_owned(),
                partition,
                state,
                transitions: Vec::new(),
                replay: None,
            });
        status.state = state;
        status.transitions.push(transition);
        status
    }
}

/// Shared handle on the host's readiness. It also keeps `flag` (read by the
/// probes and the `wafer_ready` gauge) equal to the host's readiness.
#[derive(Debug, Clone)]
pub struct Readiness {
    state: Arc<Mutex<State>>,
    flag: Arc<AtomicBool>,
}

impl Readiness {
    /// Readiness published in `flag`; the host waits for the first
    /// assignment of each of `groups` (the Kafka sources' consumer groups;
    /// none for a file source).
    pub fn new(flag: Arc<AtomicBool>, groups: impl IntoIterator<Item = String>) -> Self {
        let state = State {
            waiting_for: groups.into_iter().collect(),
            ..State::default()
        };
        flag.store(false, Ordering::Relaxed);
        Self {
            state: Arc::new(Mutex::new(state)),
            flag,
        }
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().expect("readiness lock is never poisoned");
        let was = state.ready();
        f(&mut state);
        let now = state.ready();
        if now && !was {
            let seq = state.next_seq();
            state.ready_seq = Some(seq);
        }
        self.flag.store(now, Ordering::Relaxed);
    }

    /// The source started (true) or stopped (false).
    pub fn set_running(&self, running: bool) {
        self.change(|s| s.running = running);
    }

    /// Consumer group `group` assigned `partitions` (possibly none) to this host.
    pub fn assigned(&self, group: &str, partitions: &[(String, i32)]) {
        self.change(|s| {
            s.waiting_for.remove(group);
            for (topic, partition) in partitions {
                s.set(topic, *partition, PartitionState::Assigned);
            }
        });
    }

    /// The group revoked `partitions`: they are forgotten.
    pub fn revoked(&self, partitions: &[(String, i32)]) {
        self.change(|s| {
            for key in partitions {
                s.partitions.remove(key);
            }
        });
    }

    /// The partition's window state is being rebuilt.
    pub fn rebuilding(&self, topic: &str, partition: i32) {
        self.change(|s| {
            s.set(topic, partition, PartitionState::Rebuilding);
        });
    }

    /// The partition's window state is rebuilt (`replay`: what was replayed).
    pub fn rebuilt(&self, topic: &str, partition: i32, replay: Option<Replay>) {
        self.change(|s| {
            s.set(topic, partition, PartitionState::Ready).replay = replay;
        });
    }

    /// True while the host is ready.
    pub fn is_ready(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Every partition's status and the host's readiness, as one consistent snapshot.
    pub fn report(&self) -> ReadinessReport {
        let s = self.state.lock().expect("readiness lock is never poisoned");
        ReadinessReport {
            ready: s.ready(),
            running: s.running,
            joined: s.waiting_for.is_empty(),
            waiting_for: s.waiting_for.iter().cloned().collect(),
            ready_seq: s.ready_seq,
            partitions: s.partitions.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, partition: i32) -> (String, i32) {
        (topic.to_owned(), partition)
    }

    #[test]
    fn ready_only_when_running_joined_and_every_partition_rebuilt() {
        let flag = Arc::new(AtomicBool::new(true));
        let r = Readiness::new(flag.clone(), ["g".to_owned()]);
        assert!(!flag.load(Ordering::Relaxed), "starts not ready");
        r.set_running(true);
        assert!(!r.is_ready(), "no assignment yet");
        assert_eq!(r.report().waiting_for, ["g"]);
        r.assigned("g", &[p("t", 0), p("t", 1)]);
        assert!(r.report().joined && r.report().waiting_for.is_empty());
        assert!(!r.is_ready());
        r.rebuilding("t", 0);
        r.rebuilt(
            "t",
            0,
            Some(Replay {
                from: 3,
                to: 10,
                records: 7,
            }),
        );
        assert!(!r.is_ready(), "partition 1 is still only assigned");
        r.rebuilding("t", 1);
        assert!(!r.is_ready());
        r.rebuilt("t", 1, None);
        assert!(r.is_ready());
        assert!(flag.load(Ordering::Relaxed), "the flag follows");

        let report = r.report();
        let states: Vec<Vec<PartitionState>> = report
            .partitions
            .iter()
            .map(|p| p.transitions.iter().map(|t| t.state).collect())
            .collect();
        use PartitionState::*;
        assert_eq!(
            states,
            [
                vec![Assigned, Rebuilding, Ready],
                vec![Assigned, Rebuilding, Ready]
            ]
        );
        let last_ready = report
            .partitions
            .iter()
            .map(|p| p.transitions.last().unwrap().seq)
            .max()
            .unwrap();
        assert_eq!(report.ready_seq, Some(last_ready + 1));
        assert_eq!(report.partitions[0].replay.unwrap().records, 7);

        // A newly assigned partition makes the host not ready until it is rebuilt.
        r.assigned("g", &[p("t", 2)]);
        assert!(!r.is_ready());
        // Revoking it restores readiness; revoking unknown partitions is harmless.
        r.revoked(&[p("t", 2), p("other", 9)]);
        assert!(r.is_ready());
        assert_eq!(r.report().partitions.len(), 2);
        assert!(r.report().ready_seq > report.ready_seq);

        r.set_running(false);
        assert!(!r.is_ready());
    }

    #[test]
    fn every_consumer_group_must_assign_first() {
        // The input group and a repartitioned view's group `<group>.<view>`.
        let r = Readiness::new(Arc::default(), ["g".to_owned(), "g.items".to_owned()]);
        r.set_running(true);
        r.assigned("g", &[p("input", 0)]);
        r.rebuilding("input", 0);
        r.rebuilt("input", 0, None);
        assert!(!r.is_ready(), "the view's group has not assigned yet");
        let report = r.report();
        assert!(!report.joined);
        assert_eq!(report.waiting_for, ["g.items"]);
        assert_eq!(report.ready_seq, None);
        r.assigned("g.items", &[p("input-by-item", 0)]);
        assert!(!r.is_ready(), "its partition is only assigned");
        r.rebuilding("input-by-item", 0);
        r.rebuilt("input-by-item", 0, None);
        assert!(r.is_ready());
        // A later assignment of the input group does not forget the other's.
        r.assigned("g", &[]);
        assert!(r.is_ready());
        assert!(r.report().joined);
    }

    #[test]
    fn an_empty_assignment_is_ready_and_a_file_source_needs_none() {
        let r = Readiness::new(Arc::default(), ["g".to_owned()]);
        r.set_running(true);
        r.assigned("g", &[]);
        assert!(r.is_ready(), "a standby member with no partition is ready");

        let file = Readiness::new(Arc::default(), []);
        assert!(!file.is_ready());
        file.set_running(true);
        assert!(file.is_ready());
    }
}
