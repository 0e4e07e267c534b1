//! The writer of flushed batches: the Kafka source hands each flushed batch
//! (its derived writes and the offset commit that follows them) to a task
//! that completes batches one at a time, in the order they were flushed,
//! while the source goes on consuming and applying the next batch.
//!
//! **Order and gating.** One task completes every batch, strictly in order:
//! a batch's writes, then its acknowledgements, then its commit, before the
//! next batch's writes start. The first batch that fails stops the task: its
//! commit and every later batch's are never made, and the source stops with
//! the error at its next hand-off or check.
//!
//! **Bound.** At most `max_in_flight` batches are handed off and not yet
//! completed; handing off one more waits for the oldest (back-pressure on
//! consumption). With 0, a hand-off waits for its own batch (no overlap).
//! [`InFlight`] lets a rebalance callback wait until none is.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::RunError;

/// Completes flushed batches (writes, acknowledgements, commit).
pub trait Complete: Send + 'static {
    /// One flushed batch.
    type Batch: Send + 'static;
    /// What the source learns of a completed batch.
    type Done: Send + 'static;
    /// Writes `batch`, waits for every acknowledgement, then commits its
    /// offsets. An error means nothing of `batch` was committed.
    fn complete(
        &mut self,
        batch: Self::Batch,
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
    /// completed or the writer has stopped.
    pub fn wait_idle(&self) {
        let mut s = self.state.lock().expect("never poisoned");
        while s.finished < s.handed && !s.stopped {
            s = self.changed.wait(s).expect("never poisoned");
        }
    }
}

/// The source's side of the writer task.
pub struct Writer<C: Complete> {
    batches: Option<mpsc::UnboundedSender<C::Batch>>,
    done: mpsc::UnboundedReceiver<Result<C::Done, RunError>>,
    task: Option<JoinHandle<()>>,
    in_flight: Arc<InFlight>,
    pending: usize,
    max_in_flight: usize,
}

impl<C: Complete> Writer<C> {
    /// Starts the writer task; at most `max_in_flight` batches are handed off
    /// at once (0: a hand-off returns once its batch is completed). `in_flight` is shared with the rebalance callback.
    pub fn start(mut completer: C, max_in_flight: usize, in_flight: Arc<InFlight>) -> Self {
        let (batches, mut incoming) = mpsc::unbounded_channel::<C::Batch>();
        let (done_tx, done) = mpsc::unbounded_channel();
        let shared = in_flight.clone();
        let task = tokio::spawn(async move {
            while let Some(batch) = incoming.recv().await {
                let result = completer.complete(batch).await;
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
            task: Some(task),
            in_flight,
            pending: 0,
            max_in_flight,
        }
    }

    /// Batches handed off and not yet reported back.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Hands `batch` off, first waiting (and returning the reports of the
    /// batches completed meanwhile) while `max_in_flight` batches are pending.
    /// Fails with the error of a batch that failed.
    pub async fn hand_off(&mut self, batch: C::Batch) -> Result<Vec<C::Done>, RunError> {
        let mut done = Vec::new();
        while self.pending >= self.max_in_flight.max(1) {
            done.push(self.next_done().await?);
        }
        let sender = self.batches.as_ref().ok_or_else(stopped)?;
        self.in_flight.handed();
        sender.send(batch).map_err(|_| stopped())?;
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
        match self.done.recv().await {
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

    /// Waits until every handed-off batch is completed; their reports.
    pub async fn drain(&mut self) -> Result<Vec<C::Done>, RunError> {
        let mut done = Vec::new();
        while self.pending > 0 {
            done.push(self.next_done().await?);
        }
        Ok(done)
    }

    /// Stops the task: after [`Writer::drain`], it ends by itself; otherwise
    /// (an error is being returned) the batch it is completing is abandoned
    /// uncommitted. Returns once the task has ended.
    pub async fn stop(&mut self) {
        self.batches = None;
        if let Some(task) = self.task.take() {
            if self.pending > 0 {
                task.abort();
            }
            let _ = task.await;
        }
        self.in_flight.stopped();
    }
}

impl<C: Complete> Drop for Writer<C> {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A fake sink: batch `n` "writes" for a moment, then commits `n` to the
    /// shared log; batch `fail_at` fails instead. Records how many batches it
    /// saw at once.
    struct Fake {
        committed: Arc<Mutex<Vec<u64>>>,
        fail_at: Option<u64>,
        busy: Arc<AtomicUsize>,
        most_busy: Arc<AtomicUsize>,
    }

    impl Complete for Fake {
        type Batch = u64;
        type Done = u64;

        fn complete(&mut self, n: u64) -> impl Future<Output = Result<u64, RunError>> + Send {
            let committed = self.committed.clone();
            let fail = self.fail_at == Some(n);
            let busy = self.busy.clone();
            let most = self.most_busy.clone();
            async move {
                let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Later batches write faster: a writer that did not keep
                // order would commit them first.
                tokio::time::sleep(Duration::from_millis(20 - n.min(19))).await;
                busy.fetch_sub(1, Ordering::SeqCst);
                if fail {
                    return Err(RunError::Kafka(format!("batch {n} refused")));
                }
                committed.lock().unwrap().push(n);
                Ok(n)
            }
        }
    }

    fn fake(fail_at: Option<u64>) -> (Fake, Arc<Mutex<Vec<u64>>>, Arc<AtomicUsize>) {
        let committed = Arc::new(Mutex::new(Vec::new()));
        let most = Arc::new(AtomicUsize::new(0));
        let f = Fake {
            committed: committed.clone(),
            fail_at,
            busy: Arc::new(AtomicUsize::new(0)),
            most_busy: most.clone(),
        };
        (f, committed, most)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_complete_in_order_within_the_bound() {
        for bound in [0, 1, 2] {
            let (f, committed, most) = fake(None);
            let in_flight = Arc::new(InFlight::default());
            let mut w = Writer::start(f, bound, in_flight.clone());
            let mut reported = Vec::new();
            for n in 0..10u64 {
                reported.extend(w.hand_off(n).await.unwrap());
                assert!(w.pending() <= bound);
            }
            reported.extend(w.drain().await.unwrap());
            w.stop().await;
            assert_eq!(*committed.lock().unwrap(), (0..10).collect::<Vec<_>>());
            assert_eq!(reported, (0..10).collect::<Vec<_>>());
            assert_eq!(
                most.load(Ordering::SeqCst),
                1,
                "one batch completes at a time"
            );
            assert!(!in_flight.busy());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_stops_every_later_commit() {
        let (f, committed, _) = fake(Some(3));
        let mut w = Writer::start(f, 2, Arc::new(InFlight::default()));
        let mut error = None;
        for n in 0..10u64 {
            if let Err(e) = w.hand_off(n).await {
                error = Some(e);
                break;
            }
        }
        let error = match error {
            Some(e) => e,
            None => w.drain().await.expect_err("batch 3 fails"),
        };
        assert!(error.to_string().contains("batch 3 refused"), "{error}");
        // Batches handed off after the failed one are never completed.
        tokio::time::sleep(Duration::from_millis(100)).await;
        w.stop().await;
        assert_eq!(*committed.lock().unwrap(), vec![0, 1, 2]);
        assert!(w.hand_off(11).await.is_err(), "no hand-off after a failure");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_the_batches_in_flight_returns_once_they_are_committed() {
        let (f, committed, _) = fake(None);
        let in_flight = Arc::new(InFlight::default());
        let mut w = Writer::start(f, 2, in_flight.clone());
        w.hand_off(0).await.unwrap();
        w.hand_off(1).await.unwrap();
        let waiter = in_flight.clone();
        let seen = tokio::task::spawn_blocking(move || {
            waiter.wait_idle();
            committed.lock().unwrap().clone()
        })
        .await
        .unwrap();
        assert_eq!(seen, vec![0, 1]);
        assert_eq!(w.drain().await.unwrap(), vec![0, 1]);
        w.stop().await;
    }
}
