//! The writer of flushed batches: the Kafka source hands each flushed batch
//! (its derived writes and the offset commit that follows them) to two tasks
//! that complete batches in the order they were flushed, while the source
//! goes on consuming and applying the next batch.
//!
//! **Stages, order and gating.** The *write* stage writes each batch to the
//! online store (Redis), one batch at a time, in order, and passes it on; the
//! *commit* stage then waits for the batch's acknowledgements and commits its
//! offsets, one batch at a time, in order. So a batch's commit always follows
//! its own writes and every earlier batch's commit, while the next batch's
//! Redis write may already run during it. The first batch that fails stops
//! both: its commit and every later batch's are never made (later batches'
//! writes may have been made: they are rewritten from the last commit, as
//! after any failure), and the source stops with the error at its next
//! hand-off or check.
//!
//! **Bound.** At most `max_in_flight` batches are handed off and not yet
//! committed; handing off one more waits for the oldest (back-pressure on
//! consumption). With 0, a hand-off waits for its own batch (no overlap);
//! with 1, consumption overlaps one batch's writes; from 2 on, a batch's
//! Redis write may also overlap the previous batch's commit.
//! [`InFlight`] lets a rebalance callback wait until none is.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::RunError;

/// The write stage: writes a flushed batch to the online store.
pub trait Write: Send + 'static {
    /// One flushed batch.
    type Batch: Send + 'static;
    /// The batch once written, for the commit stage.
    type Written: Send + 'static;
    /// Writes `batch`. An error means it must not be committed.
    fn write(
        &mut self,
        batch: Self::Batch,
    ) -> impl Future<Output = Result<Self::Written, RunError>> + Send;
}

/// The commit stage: waits for a written batch's other writes
/// (acknowledgements) and commits its offsets.
pub trait Commit: Send + 'static {
    /// A batch from the write stage.
    type Written: Send + 'static;
    /// What the source learns of a committed batch.
    type Done: Send + 'static;
    /// Completes and commits `written`. An error means nothing of it was committed.
    fn commit(
        &mut self,
        written: Self::Written,
    ) -> impl Future<Output = Result<Self::Done, RunError>> + Send;
}

/// Counts of handed-off and finished batches, shared with whoever must wait
/// for the writes in flight (the rebalance callback).
#[derive(Debug, Default)]
pub struct InFlight {
    state: Mutex<Counts>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Counts {
    handed: u64,
    finished: u64,
    /// The writer stopped (failure or end of the run): nothing more finishes.
    stopped: bool,
}

impl InFlight {
    fn handed(&self) {
        self.state.lock().expect("never poisoned").handed += 1;
    }

    fn finished(&self) {
        self.state.lock().expect("never poisoned").finished += 1;
        self.changed.notify_all();
    }

    fn stopped(&self) {
        self.state.lock().expect("never poisoned").stopped = true;
        self.changed.notify_all();
    }

    /// True when a handed-off batch is still being completed.
    pub fn busy(&self) -> bool {
        let s = self.state.lock().expect("never poisoned");
        s.finished < s.handed && !s.stopped
    }

    /// Blocks the calling thread until every batch handed off so far is
    /// completed or the writer has stopped, or until `limit` has passed;
    /// logs a warning every `every` meanwhile. Returns false on the limit.
    pub fn wait_idle(&self, every: Duration, limit: Duration) -> bool {
        let started = Instant::now();
        let mut s = self.state.lock().expect("never poisoned");
        while s.finished < s.handed && !s.stopped {
            let waited = started.elapsed();
            if waited >= limit {
                return false;
            }
            let (next, timed_out) = self
                .changed
                .wait_timeout(s, every.min(limit - waited))
                .expect("never poisoned");
            s = next;
            if timed_out.timed_out() && s.finished < s.handed && !s.stopped {
                tracing::warn!(
                    waited_ms = started.elapsed().as_millis() as u64,
                    in_flight = s.handed - s.finished,
                    "still waiting for flushed batches to be written and committed"
                );
            }
        }
        true
    }
}

/// The source's side of the two stages.
pub struct Writer<W: Write, C: Commit<Written = W::Written>> {
    batches: Option<mpsc::UnboundedSender<W::Batch>>,
    done: mpsc::UnboundedReceiver<Result<C::Done, RunError>>,
    tasks: Vec<JoinHandle<()>>,
    in_flight: Arc<InFlight>,
    pending: usize,
    max_in_flight: usize,
}

impl<W: Write, C: Commit<Written = W::Written>> Writer<W, C> {
    /// Starts the two stages; at most `max_in_flight` batches are handed off
    /// at once (0: a hand-off returns once its batch is committed). `in_flight`
    /// is shared with the rebalance callback.
    pub fn start(
        mut writer: W,
        mut committer: C,
        max_in_flight: usize,
        in_flight: Arc<InFlight>,
    ) -> Self {
        let (batches, mut incoming) = mpsc::unbounded_channel::<W::Batch>();
        let (written_tx, mut written) = mpsc::unbounded_channel::<Result<W::Written, RunError>>();
        let (done_tx, done) = mpsc::unbounded_channel();
        let write_stage = tokio::spawn(async move {
            while let Some(batch) = incoming.recv().await {
                let result = writer.write(batch).await;
                let failed = result.is_err();
                // A failure goes through the commit stage too, so that it is
                // reported after the batches before it.
                if written_tx.send(result).is_err() || failed {
                    break;
                }
            }
        });
        let shared = in_flight.clone();
        let commit_stage = tokio::spawn(async move {
            while let Some(written) = written.recv().await {
                let result = match written {
                    Ok(w) => committer.commit(w).await,
                    Err(e) => Err(e),
                };
                let failed = result.is_err();
                if failed {
                    shared.stopped();
                } else {
                    shared.finished();
                }
                if done_tx.send(result).is_err() || failed {
                    break;
                }
            }
            shared.stopped();
        });
        Self {
            batches: Some(batches),
            done,
            tasks: vec![write_stage, commit_stage],
            in_flight,
            pending: 0,
            max_in_flight,
        }
    }

    /// Batches handed off and not yet reported back.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// True when a hand-off now would wait for the oldest batch: every
    /// in-flight slot is taken (never with a bound of 0, whose hand-off
    /// waits for its own batch).
    pub fn full(&self) -> bool {
        self.max_in_flight > 0 && self.pending >= self.max_in_flight
    }

    /// Hands `batch` off, first waiting (and returning the reports of the
    /// batches completed meanwhile) while `max_in_flight` batches are pending.
    /// Fails with the error of a batch that failed.
    pub async fn hand_off(&mut self, batch: W::Batch) -> Result<Vec<C::Done>, RunError> {
        let mut done = Vec::new();
        while self.full() {
            done.push(self.next_done().await?);
        }
        let sender = self.batches.as_ref().ok_or_else(stopped)?;
        self.in_flight.handed();
        if sender.send(batch).is_err() {
            // A stage stopped on a failed batch: report that batch's error.
            return Err(self.failure().await);
        }
        self.pending += 1;
        if self.max_in_flight == 0 {
            done.extend(self.drain().await?);
        }
        Ok(done)
    }

    /// The report of the oldest pending batch, once it is completed (pending
    /// forever when none is, so that it can sit in a `select!`).
    pub async fn next_done(&mut self) -> Result<C::Done, RunError> {
        if self.pending == 0 {
            return std::future::pending().await;
        }
        let report = self.done.recv().await;
        self.take(report)
    }

    /// The report of the oldest pending batch if it is completed already.
    /// Fails with the error of a batch that failed.
    pub fn try_next_done(&mut self) -> Result<Option<C::Done>, RunError> {
        if self.pending == 0 {
            return Ok(None);
        }
        match self.done.try_recv() {
            Ok(report) => self.take(Some(report)).map(Some),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => self.take(None).map(Some),
        }
    }

    /// Accounts for one report of the stages (`None`: they ended).
    fn take(&mut self, report: Option<Result<C::Done, RunError>>) -> Result<C::Done, RunError> {
        match report {
            Some(Ok(done)) => {
                self.pending -= 1;
                Ok(done)
            }
            Some(Err(e)) => {
                self.pending = 0;
                self.batches = None;
                Err(e)
            }
            None => Err(stopped()),
        }
    }

    /// The error that stopped the stages (the reports before it are dropped:
    /// the source stops).
    async fn failure(&mut self) -> RunError {
        self.batches = None;
        self.pending = 0;
        loop {
            match self.done.recv().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e,
                None => return stopped(),
            }
        }
    }

    /// Waits until every handed-off batch is completed; their reports.
    pub async fn drain(&mut self) -> Result<Vec<C::Done>, RunError> {
        let mut done = Vec::new();
        while self.pending > 0 {
            done.push(self.next_done().await?);
        }
        Ok(done)
    }

    /// Stops the stages: after [`Writer::drain`], they end by themselves;
    /// otherwise (an error is being returned) the batches they are completing
    /// are abandoned uncommitted. Returns once both have ended.
    pub async fn stop(&mut self) {
        self.batches = None;
        for task in std::mem::take(&mut self.tasks) {
            if self.pending > 0 {
                task.abort();
            }
            let _ = task.await;
        }
        self.in_flight.stopped();
    }
}

impl<W: Write, C: Commit<Written = W::Written>> Drop for Writer<W, C> {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.in_flight.stopped();
    }
}

fn stopped() -> RunError {
    RunError::Kafka("the writer of flushed batches stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// What the fake stages did, in order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Step {
        WriteStart(u64),
        WriteEnd(u64),
        CommitStart(u64),
        CommitEnd(u64),
    }

    type Log = Arc<Mutex<Vec<Step>>>;

    /// A fake write stage: batch `n` "writes" for a moment (later batches
    /// faster, so that a writer that did not keep order would finish them
    /// first); batch `fail_at` fails.
    struct FakeWrite {
        log: Log,
        fail_at: Option<u64>,
    }

    /// A fake commit stage: each commit takes longer than a write.
    struct FakeCommit {
        log: Log,
        fail_at: Option<u64>,
    }

    impl Write for FakeWrite {
        type Batch = u64;
        type Written = u64;

        fn write(&mut self, n: u64) -> impl Future<Output = Result<u64, RunError>> + Send {
            let (log, fail) = (self.log.clone(), self.fail_at == Some(n));
            async move {
                log.lock().unwrap().push(Step::WriteStart(n));
                tokio::time::sleep(Duration::from_millis(10 - n.min(9))).await;
                if fail {
                    return Err(RunError::Kafka(format!("batch {n} not written")));
                }
                log.lock().unwrap().push(Step::WriteEnd(n));
                Ok(n)
            }
        }
    }

    impl Commit for FakeCommit {
        type Written = u64;
        type Done = u64;

        fn commit(&mut self, n: u64) -> impl Future<Output = Result<u64, RunError>> + Send {
            let (log, fail) = (self.log.clone(), self.fail_at == Some(n));
            async move {
                log.lock().unwrap().push(Step::CommitStart(n));
                tokio::time::sleep(Duration::from_millis(15)).await;
                if fail {
                    return Err(RunError::Kafka(format!("batch {n} not committed")));
                }
                log.lock().unwrap().push(Step::CommitEnd(n));
                Ok(n)
            }
        }
    }

    fn start(
        bound: usize,
        fail_write: Option<u64>,
        fail_commit: Option<u64>,
    ) -> (Writer<FakeWrite, FakeCommit>, Log, Arc<InFlight>) {
        let log = Log::default();
        let in_flight = Arc::new(InFlight::default());
        let w = Writer::start(
            FakeWrite {
                log: log.clone(),
                fail_at: fail_write,
            },
            FakeCommit {
                log: log.clone(),
                fail_at: fail_commit,
            },
            bound,
            in_flight.clone(),
        );
        (w, log, in_flight)
    }

    fn position(log: &[Step], step: Step) -> usize {
        log.iter()
            .position(|s| *s == step)
            .unwrap_or_else(|| panic!("{step:?} missing from {log:?}"))
    }

    fn committed(log: &[Step]) -> Vec<u64> {
        log.iter()
            .filter_map(|s| match s {
                Step::CommitEnd(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_written_then_committed_in_order_within_the_bound() {
        for bound in [0, 1, 2, 3] {
            let (mut w, log, in_flight) = start(bound, None, None);
            let mut reported = Vec::new();
            for n in 0..10u64 {
                reported.extend(w.hand_off(n).await.unwrap());
                assert!(w.pending() <= bound.max(1));
            }
            reported.extend(w.drain().await.unwrap());
            w.stop().await;
            let log = log.lock().unwrap().clone();
            assert_eq!(committed(&log), (0..10).collect::<Vec<_>>(), "{log:?}");
            assert_eq!(reported, (0..10).collect::<Vec<_>>());
            for n in 0..10 {
                // Each stage takes one batch at a time, in order, and a
                // batch's commit starts after its own write ended.
                assert!(position(&log, Step::WriteEnd(n)) < position(&log, Step::CommitStart(n)));
                if n > 0 {
                    assert!(
                        position(&log, Step::WriteEnd(n - 1)) < position(&log, Step::WriteStart(n))
                    );
                    assert!(
                        position(&log, Step::CommitEnd(n - 1))
                            < position(&log, Step::CommitStart(n))
                    );
                }
            }
            // From a bound of 2 on, the next batch's write runs during a commit.
            let overlapped = (1..10).any(|n| {
                position(&log, Step::WriteStart(n)) < position(&log, Step::CommitEnd(n - 1))
            });
            assert_eq!(overlapped, bound >= 2, "bound {bound}: {log:?}");
            assert!(!in_flight.busy());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_while_every_slot_is_taken_and_reports_are_taken_without_waiting() {
        let (mut w, _, _) = start(2, None, None);
        assert!(!w.full());
        assert_eq!(w.try_next_done().unwrap(), None, "nothing handed off");
        w.hand_off(0).await.unwrap();
        assert!(!w.full(), "one of two slots taken");
        w.hand_off(1).await.unwrap();
        assert!(w.full());
        // Batch 0 is written and committed in about 25 ms.
        let first = loop {
            if let Some(n) = w.try_next_done().unwrap() {
                break n;
            }
            assert!(w.full(), "full until a batch is reported");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        assert_eq!(first, 0);
        assert!(!w.full());
        assert_eq!(w.drain().await.unwrap(), vec![1]);
        w.stop().await;
        // With a bound of 0 a hand-off waits for its own batch: never full.
        let (mut w, _, _) = start(0, None, None);
        assert_eq!(w.hand_off(0).await.unwrap(), vec![0]);
        assert!(!w.full());
        w.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_or_commit_stops_every_later_commit() {
        for (fail_write, fail_commit) in [(Some(3), None), (None, Some(3))] {
            let (mut w, log, _) = start(2, fail_write, fail_commit);
            let mut error = None;
            let mut reported = Vec::new();
            for n in 0..10u64 {
                match w.hand_off(n).await {
                    Ok(done) => reported.extend(done),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            let error = match error {
                Some(e) => e,
                None => loop {
                    match w.next_done().await {
                        Ok(n) => reported.push(n),
                        Err(e) => break e,
                    }
                },
            };
            assert!(error.to_string().contains("batch 3 not"), "{error}");
            // Batches handed off after the failed one are never committed.
            tokio::time::sleep(Duration::from_millis(100)).await;
            w.stop().await;
            assert_eq!(committed(&log.lock().unwrap()), vec![0, 1, 2]);
            assert!(reported.iter().all(|n| *n < 3), "{reported:?}");
            assert!(w.hand_off(11).await.is_err(), "no hand-off after a failure");
        }
    }

    #[test]
    fn waiting_for_batches_in_flight_gives_up_at_its_limit() {
        let in_flight = InFlight::default();
        in_flight.handed();
        let started = Instant::now();
        assert!(!in_flight.wait_idle(Duration::from_millis(10), Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        in_flight.finished();
        assert!(in_flight.wait_idle(Duration::from_millis(10), Duration::from_millis(50)));
        in_flight.handed();
        in_flight.stopped();
        assert!(in_flight.wait_idle(Duration::from_millis(10), Duration::from_millis(50)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_the_batches_in_flight_returns_once_they_are_committed() {
        let (mut w, log, in_flight) = start(2, None, None);
        w.hand_off(0).await.unwrap();
        w.hand_off(1).await.unwrap();
        let waiter = in_flight.clone();
        let seen = tokio::task::spawn_blocking(move || {
            assert!(waiter.wait_idle(Duration::from_secs(1), Duration::from_secs(60)));
            committed(&log.lock().unwrap())
        })
        .await
        .unwrap();
        assert_eq!(seen, vec![0, 1]);
        assert_eq!(w.drain().await.unwrap(), vec![0, 1]);
        w.stop().await;
    }
}
