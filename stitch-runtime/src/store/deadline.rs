//! One shared deadline for the store operations of one driver: a single timer for every
//! operation in flight, instead of a tokio timer per operation.
//!
//! Why: a tokio timer is inserted into, and removed from, the runtime's one timer wheel under a
//! lock that every worker thread (and the time driver) takes, and holds a clone of the runtime
//! handle; at tens of thousands of store operations a second that is paid on every fleet
//! acquire (BENCHMARKS.md, "Fleet throttle on Redis", session 4: the client's CPU per acquire
//! over a raw `EVALSHA` loop went from 1.27 to 1.10, medians on a loaded machine). Here an
//! operation that does not complete on its first poll is queued with its waker (one short push
//! under a mutex that nothing else holds for long), and one task per driver sleeps until the oldest
//! queued deadline, fails the operations past it and drops the finished ones. Every operation
//! has the same bound, so the queue is in deadline order and the task only looks at its front.
//!
//! Invariant: an operation still pending at its deadline is woken then and fails with
//! [`Elapsed`], as with `tokio::time::timeout` (tokio's millisecond timer resolution included).
//! The task runs on the tokio runtime of the operation that started it; if that runtime goes
//! away, the operations it watched are woken and the next one polled starts a new task.

use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The bound passed without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// Bounds operations by one duration with one shared timer. Clones share it.
#[derive(Clone)]
pub(crate) struct Deadlines {
    shared: Arc<Shared>,
}

/// No task watches the queue.
const STOPPED: u8 = 0;
/// The task is working or sleeping until the front's deadline.
const RUNNING: u8 = 1;
/// The task found nothing to watch and waits for [`Shared::wake`].
const WAITING: u8 = 2;

struct Shared {
    limit: Duration,
    /// Operations queued since the task last looked.
    inbox: Mutex<Vec<Arc<Watch>>>,
    state: AtomicU8,
    /// Wakes a `WAITING` task (and the task of a dropped driver, which then ends).
    wake: Arc<Notify>,
}

/// One operation in flight: finished when only the queue still holds it.
struct Watch {
    deadline: Instant,
    waker: AtomicWaker,
    expired: AtomicBool,
}

impl Deadlines {
    /// Operations bounded by `limit`.
    pub(crate) fn new(limit: Duration) -> Self {
        Deadlines {
            shared: Arc::new(Shared {
                limit,
                inbox: Mutex::new(Vec::new()),
                state: AtomicU8::new(STOPPED),
                wake: Arc::new(Notify::new()),
            }),
        }
    }

    /// The bound.
    pub(crate) fn limit(&self) -> Duration {
        self.shared.limit
    }

    /// `fut`'s output, or [`Elapsed`] when it has not completed within the bound. Nothing is
    /// queued when it completes on its first poll.
    pub(crate) async fn bound<F: Future>(&self, fut: F) -> Result<F::Output, Elapsed> {
        let mut fut = std::pin::pin!(fut);
        let mut watch: Option<Arc<Watch>> = None;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            let w = watch.get_or_insert_with(|| self.shared.watch());
            // Registered before the flag is read: an expiry after the read wakes this waker.
            w.waker.register(cx.waker());
            if w.expired.load(Ordering::Acquire) {
                return Poll::Ready(Err(Elapsed));
            }
            self.shared.ensure_task();
            Poll::Pending
        })
        .await
    }
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Vec<Arc<Watch>>> {
        // A push or a drain cannot be left half done by a panic: the queue stays usable.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn watch(self: &Arc<Self>) -> Arc<Watch> {
        let now = Instant::now();
        // A bound too far to represent is no bound (as with `tokio::time::timeout`).
        let deadline = now
            .checked_add(self.limit)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        let w = Arc::new(Watch {
            deadline,
            waker: AtomicWaker::new(),
            expired: AtomicBool::new(false),
        });
        self.inbox().push(w.clone());
        w
    }

    /// Makes sure a task watches the queue: wakes a waiting one, or starts one on the current
    /// tokio runtime when there is none (the first operation, or the previous task's runtime
    /// has gone).
    fn ensure_task(self: &Arc<Self>) {
        match self.state.load(Ordering::Acquire) {
            RUNNING => {}
            WAITING => {
                if self
                    .state
                    .compare_exchange(WAITING, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.wake.notify_one();
                }
            }
            _ => {
                if self
                    .state
                    .compare_exchange(STOPPED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    match tokio::runtime::Handle::try_current() {
                        Ok(runtime) => {
                            let watcher = Watcher {
                                shared: Arc::downgrade(self),
                                wake: self.wake.clone(),
                                pending: VecDeque::new(),
                            };
                            runtime.spawn(watcher.run());
                        }
                        // Not on a tokio runtime (a driver polled elsewhere): the next poll on
                        // one starts the task.
                        Err(_) => self.state.store(STOPPED, Ordering::Release),
                    }
                }
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The task holds no strong reference while it waits: it wakes, finds the driver gone and
        // ends.
        self.wake.notify_one();
    }
}

/// The task watching one driver's queue.
struct Watcher {
    shared: Weak<Shared>,
    wake: Arc<Notify>,
    /// Queued operations in deadline order.
    pending: VecDeque<Arc<Watch>>,
}

impl Watcher {
    async fn run(mut self) {
        loop {
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            self.pending.extend(shared.inbox().drain(..));
            let now = Instant::now();
            while let Some(front) = self.pending.front() {
                if Arc::strong_count(front) > 1 && front.deadline > now {
                    break;
                }
                if Arc::strong_count(front) > 1 {
                    front.expired.store(true, Ordering::Release);
                    front.waker.wake();
                }
                self.pending.pop_front();
            }
            if let Some(front) = self.pending.front() {
                let at = front.deadline;
                drop(shared);
                tokio::time::sleep_until(at).await;
                continue;
            }
            // Nothing to watch: wait for the next operation, checking the inbox once more after
            // saying so (a push before the state change is seen here, one after it notifies).
            shared.state.store(WAITING, Ordering::SeqCst);
            if !shared.inbox().is_empty() {
                shared.state.store(RUNNING, Ordering::SeqCst);
                continue;
            }
            drop(shared);
            self.wake.notified().await;
        }
    }
}

impl Drop for Watcher {
    /// The task ends (its driver is gone, or its tokio runtime shut down): the operations it
    /// watched go back to the queue and are woken, so the next one polled starts a new task.
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let pending: Vec<Arc<Watch>> = self.pending.drain(..).collect();
        for w in &pending {
            w.waker.wake();
        }
        let mut inbox = shared.inbox();
        let newer = std::mem::replace(&mut *inbox, pending);
        inbox.extend(newer);
        drop(inbox);
        shared.state.store(STOPPED, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pending_operation_fails_at_its_deadline_and_a_quick_one_is_not_queued() {
        let d = Deadlines::new(Duration::from_millis(200));
        assert_eq!(d.bound(async { 7 }).await, Ok(7));
        assert!(d.shared.inbox().is_empty(), "ready at once: nothing queued");
        let t = Instant::now();
        assert_eq!(d.bound(std::future::pending::<()>()).await, Err(Elapsed));
        assert_eq!(Instant::now() - t, Duration::from_millis(200));
        // One that answers in time is not failed, and several in flight expire in order.
        let slow = d.bound(tokio::time::sleep(Duration::from_millis(150)));
        assert_eq!(slow.await, Ok(()));
        let t = Instant::now();
        let first = d.bound(std::future::pending::<()>());
        let second = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.bound(std::future::pending::<()>()).await
        };
        let (first, second) = tokio::join!(
            async {
                let r = first.await;
                (r, Instant::now() - t)
            },
            async {
                let r = second.await;
                (r, Instant::now() - t)
            }
        );
        assert_eq!(first, (Err(Elapsed), Duration::from_millis(200)));
        assert_eq!(second, (Err(Elapsed), Duration::from_millis(250)));
    }

    #[test]
    fn operations_outliving_the_runtime_of_the_task_are_bounded_on_the_next() {
        let d = Deadlines::new(Duration::from_millis(100));
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // The task starts on the first runtime, then that runtime goes away.
        first.block_on(async {
            assert_eq!(
                d.bound(tokio::time::sleep(Duration::from_millis(5))).await,
                Ok(())
            );
        });
        drop(first);
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let r = second.block_on(d.bound(std::future::pending::<()>()));
        assert_eq!(r, Err(Elapsed));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
