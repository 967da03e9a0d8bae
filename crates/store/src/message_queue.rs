//! Group commit of chat messages. [`crate::Store::queue_messages`] queues rows and returns at
//! once with a receipt; a writer takes everything queued, writes it in one transaction and
//! answers each receipt. While one transaction is being written the next batch gathers (on
//! SQLite, also while the async workers are busy with other runs: `sqlite_writer::take`), so
//! under load one transaction carries many runs' messages, and the queue is bounded by the runs
//! in flight.
//!
//! Who writes depends on the backend:
//! - SQLite: the message writer's own thread ([`crate::sqlite_writer`]) takes the queue itself,
//!   so a batch costs one wake-up of that thread at most, and none while it is busy (it takes
//!   the next batch as soon as it commits one). An async task in between, as before, cost two
//!   more thread wake-ups per batch and left the CPU idle while they happened.
//! - PostgreSQL: a task on the runtime writes through the pool ([`PooledQueue`]).

use std::sync::Mutex;

use sqlx::AnyPool;
use tokio::sync::{Notify, oneshot};

use crate::messages::{MessageRow, write_pooled};
use crate::scopes::ScopeCache;
use crate::{Result, StoreError};

/// Says how a queued message fared: `Ok(())` once it is committed.
pub type MessageReceipt = oneshot::Receiver<Result<()>>;

/// Most rows one transaction writes.
const MAX_BATCH: usize = 2000;

/// A row waiting for its writer, and whom to tell how it fared.
pub(crate) struct Queued {
    pub(crate) row: MessageRow,
    pub(crate) done: oneshot::Sender<Result<()>>,
}

/// Queues `rows` as one entry per row; the receipts are in the same order.
pub(crate) fn enqueue(rows: Vec<MessageRow>, into: &mut Vec<Queued>) -> Vec<MessageReceipt> {
    into.reserve(rows.len());
    rows.into_iter()
        .map(|row| {
            let (done, receipt) = oneshot::channel();
            into.push(Queued { row, done });
            receipt
        })
        .collect()
}

/// `taken` (a whole queue, taken at once) as the transactions to write: at most [`MAX_BATCH`]
/// rows each, in queue order.
pub(crate) fn batches(taken: Vec<Queued>) -> impl Iterator<Item = Vec<Queued>> {
    let mut rows = taken.into_iter().peekable();
    std::iter::from_fn(move || {
        rows.peek()?;
        Some(rows.by_ref().take(MAX_BATCH).collect())
    })
}

/// Receipts that can only say the writer is gone.
pub(crate) fn refused(rows: usize) -> Vec<MessageReceipt> {
    (0..rows)
        .map(|_| {
            let (done, receipt) = oneshot::channel();
            let _ = done.send(Err(closed()));
            receipt
        })
        .collect()
}

pub(crate) fn closed() -> StoreError {
    StoreError::Unavailable("the message writer is closed".into())
}

/// Tells each queued row how it fared (`results` in the same order as `batch`).
pub(crate) fn answer(batch: Vec<Queued>, results: Vec<Result<()>>) {
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        let failed = results.iter().filter(|r| r.is_err()).count();
        tracing::error!(error = %e, failed, "could not store messages; their runs answer 503");
    }
    for (queued, result) in batch.into_iter().zip(results) {
        // A run that is gone (client hung up) no longer waits for its receipt.
        let _ = queued.done.send(result);
    }
}

/// Awaits every receipt, in order.
pub(crate) async fn settle(receipts: Vec<MessageReceipt>) -> Vec<Result<()>> {
    let mut results = Vec::with_capacity(receipts.len());
    for receipt in receipts {
        results.push(receipt.await.unwrap_or_else(|_| Err(closed())));
    }
    results
}

/// PostgreSQL's queue: rows wait here for [`write_forever`], a task on the runtime.
#[derive(Default)]
pub(crate) struct PooledQueue {
    pending: Mutex<Pending>,
    wake: Notify,
    /// Held while a batch is written, so `flush` returns only once every row queued before it
    /// is in the database.
    writing: tokio::sync::Mutex<()>,
    /// The message scopes this writer knows (see `scopes`).
    scopes: Mutex<ScopeCache>,
}

#[derive(Default)]
struct Pending {
    rows: Vec<Queued>,
    /// Set under the same lock as rows are queued, so no row slips in after `close` drained
    /// the queue (its receipt would never be answered).
    closed: bool,
}

impl PooledQueue {
    pub(crate) fn push(&self, rows: Vec<MessageRow>) -> Vec<MessageReceipt> {
        let receipts = {
            let mut pending = self.pending.lock().expect("message queue lock");
            if pending.closed {
                return refused(rows.len());
            }
            enqueue(rows, &mut pending.rows)
        };
        self.wake.notify_one();
        receipts
    }

    /// Writes everything queued so far.
    pub(crate) async fn flush(&self, pool: &AnyPool) {
        let _writing = self.writing.lock().await;
        loop {
            // The whole queue at once (no O(n) shifting of a long backlog).
            let taken = std::mem::take(&mut self.pending.lock().expect("message queue lock").rows);
            if taken.is_empty() {
                return;
            }
            for batch in batches(taken) {
                let rows: Vec<&MessageRow> = batch.iter().map(|q| &q.row).collect();
                let results = write_pooled(pool, &self.scopes, &rows).await;
                answer(batch, results);
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.pending.lock().expect("message queue lock").closed
    }

    /// Refuses new rows, writes the queued ones, and ends [`write_forever`].
    pub(crate) async fn close(&self, pool: &AnyPool) {
        self.pending.lock().expect("message queue lock").closed = true;
        self.wake.notify_one();
        self.flush(pool).await;
    }
}

/// PostgreSQL's writer: writes whenever something is queued, until the queue is closed.
pub(crate) async fn write_forever(queue: std::sync::Arc<PooledQueue>, pool: AnyPool) {
    loop {
        queue.wake.notified().await;
        if queue.is_closed() {
            return;
        }
        queue.flush(&pool).await;
    }
}
