//! Chat messages, always scoped to their owner. Written in batches (one transaction per batch,
//! upsert by id); read newest first.

use sqlx::Row;
use sqlx::any::AnyRow;

use sqlx::AnyPool;

use crate::message_queue::{MessageReceipt, settle};
use crate::{MessageSink, Result, Store, StoreError};

/// A stored chat message. `data` is message JSON text: the server leaves out what the columns
/// hold and default values, and puts them back on read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageRow {
    pub id: String,
    pub user_id: String,
    pub flow_id: Option<String>,
    pub session_id: String,
    pub context_id: String,
    /// UTC microseconds.
    pub timestamp: i64,
    pub sender: Option<String>,
    pub sender_name: Option<String>,
    pub text: String,
    pub data: String,
}

/// Which of a user's messages to read. `None` filters match everything.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter<'a> {
    pub user_id: &'a str,
    pub flow_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub context_id: Option<&'a str>,
    pub sender: Option<&'a str>,
    pub sender_name: Option<&'a str>,
    pub limit: i64,
    pub offset: i64,
}

const COLUMNS: &str =
    "id, user_id, flow_id, session_id, context_id, timestamp, sender, sender_name, text, data";

fn message_from_row(row: &AnyRow) -> Result<MessageRow> {
    Ok(MessageRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        flow_id: row.try_get("flow_id")?,
        session_id: row.try_get("session_id")?,
        context_id: row.try_get("context_id")?,
        timestamp: row.try_get("timestamp")?,
        sender: row.try_get("sender")?,
        sender_name: row.try_get("sender_name")?,
        text: row.try_get("text")?,
        data: row.try_get("data")?,
    })
}

/// Rows per INSERT statement on the pooled path (PostgreSQL): one statement, one round trip,
/// for up to 8 messages. Not more: sqlx binds each parameter by looking its name up, so the cost
/// grows with the square of a statement's parameter count.
const ROWS_PER_STATEMENT: usize = 8;

/// `INSERT ... VALUES (...), (...) ON CONFLICT (id) DO UPDATE ...` for `rows` rows; the
/// SQLite writer uses the one-row form as a cached prepared statement.
fn upsert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=10).map(|c| format!("${}", r * 10 + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO messages (id, user_id, flow_id, session_id, context_id, timestamp, sender, \
         sender_name, text, data) VALUES {} \
         ON CONFLICT (id) DO UPDATE SET flow_id = excluded.flow_id, session_id = excluded.session_id, \
         context_id = excluded.context_id, timestamp = excluded.timestamp, sender = excluded.sender, \
         sender_name = excluded.sender_name, text = excluded.text, data = excluded.data \
         WHERE messages.user_id = excluded.user_id",
        values.join(", ")
    )
}

/// The statement for `rows` rows (1..=ROWS_PER_STATEMENT), built once per process.
pub(crate) fn upsert_sql_for(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| (1..=ROWS_PER_STATEMENT).map(upsert_sql).collect());
    &all[rows - 1]
}

/// Every row's result when a batch of `rows` went through, or failed because the database is
/// unavailable (every row fails with it); `None` when it failed for another reason, which one
/// row may have caused: the caller then writes each row in a transaction of its own. Shared by
/// the pooled path and SQLite's writer thread.
pub(crate) fn batch_outcome(batch: Result<()>, rows: usize) -> Option<Vec<Result<()>>> {
    match batch {
        Ok(()) => Some((0..rows).map(|_| Ok(())).collect()),
        Err(StoreError::Unavailable(why)) => Some(
            (0..rows)
                .map(|_| Err(StoreError::Unavailable(why.clone())))
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, rows, "could not write a batch of messages; retrying one by one");
            None
        }
    }
}

impl Store {
    /// Queues messages to be inserted or updated (by id); returns at once, never waiting for
    /// I/O. Each receipt says when its row is committed, or why not. A row whose id belongs to
    /// another user's message is left alone. Group commit: see [`crate::message_queue`].
    ///
    /// `rows` are queued together: they are written in ONE transaction (with whatever else was
    /// queued by then, up to 2,000 rows). When an id appears more than once (a streamed model
    /// message and its final version), the last one wins. If the transaction fails for a reason
    /// other than the database being unavailable, each row is retried in a transaction of its
    /// own, so one bad row does not fail the others. One receipt per row, in order.
    pub fn queue_messages(&self, rows: Vec<MessageRow>) -> Vec<MessageReceipt> {
        match &self.messages {
            MessageSink::Sqlite(writer) => writer.queue(rows),
            MessageSink::Pooled(queue) => queue.push(rows),
        }
    }

    /// [`Store::queue_messages`], then waits for every row's result (in order).
    pub async fn upsert_messages(&self, rows: Vec<MessageRow>) -> Vec<Result<()>> {
        settle(self.queue_messages(rows)).await
    }

    /// Returns once every message queued before the call is written (or failed).
    pub async fn flush_messages(&self) {
        match &self.messages {
            MessageSink::Sqlite(writer) => writer.flush().await,
            MessageSink::Pooled(queue) => queue.flush(&self.pool).await,
        }
    }

    /// The user's messages matching `filter`, newest first (timestamp, then id, descending).
    pub async fn messages(&self, filter: &MessageFilter<'_>) -> Result<Vec<MessageRow>> {
        let mut sql = format!("SELECT {COLUMNS} FROM messages WHERE user_id = $1");
        let mut binds: Vec<&str> = Vec::new();
        let conditions = [
            ("flow_id", filter.flow_id),
            ("session_id", filter.session_id),
            ("context_id", filter.context_id),
            ("sender", filter.sender),
            ("sender_name", filter.sender_name),
        ];
        for (column, value) in conditions {
            if let Some(v) = value {
                binds.push(v);
                sql.push_str(&format!(" AND {column} = ${}", binds.len() + 1));
            }
        }
        sql.push_str(&format!(
            " ORDER BY timestamp DESC, id DESC LIMIT ${} OFFSET ${}",
            binds.len() + 2,
            binds.len() + 3
        ));
        let mut query = sqlx::query(&sql).bind(filter.user_id);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query
            .bind(filter.limit)
            .bind(filter.offset)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// Deletes the user's messages of one session. Returns how many were deleted.
    pub async fn delete_session_messages(&self, user_id: &str, session_id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM messages WHERE user_id = $1 AND session_id = $2")
            .bind(user_id)
            .bind(session_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

/// PostgreSQL: one transaction of multi-row statements on a pooled connection; if it fails
/// for a row's sake, one transaction per row. One result per row, in order.
pub(crate) async fn write_pooled(pool: &AnyPool, rows: &[&MessageRow]) -> Vec<Result<()>> {
    let batch = write_pooled_tx(pool, rows).await;
    if let Some(results) = batch_outcome(batch, rows.len()) {
        return results;
    }
    let mut each = Vec::with_capacity(rows.len());
    for row in rows {
        each.push(write_pooled_tx(pool, std::slice::from_ref(row)).await);
    }
    each
}

async fn write_pooled_tx(pool: &AnyPool, rows: &[&MessageRow]) -> Result<()> {
    // PostgreSQL refuses to update one row twice in a statement: keep each id's last row.
    let mut last = std::collections::HashMap::with_capacity(rows.len());
    for (i, m) in rows.iter().enumerate() {
        last.insert(m.id.as_str(), i);
    }
    let unique: Vec<&MessageRow> = rows
        .iter()
        .enumerate()
        .filter(|(i, m)| last.get(m.id.as_str()) == Some(i))
        .map(|(_, m)| *m)
        .collect();
    let mut tx = pool.begin().await?;
    for chunk in unique.chunks(ROWS_PER_STATEMENT) {
        let mut query = sqlx::query(upsert_sql_for(chunk.len()));
        for m in chunk {
            query = query
                .bind(&m.id)
                .bind(&m.user_id)
                .bind(&m.flow_id)
                .bind(&m.session_id)
                .bind(&m.context_id)
                .bind(m.timestamp)
                .bind(&m.sender)
                .bind(&m.sender_name)
                .bind(&m.text)
                .bind(&m.data);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, user: &str, session: &str, ts: i64, text: &str) -> MessageRow {
        MessageRow {
            id: id.into(),
            user_id: user.into(),
            flow_id: Some("f".into()),
            session_id: session.into(),
            timestamp: ts,
            sender: Some("User".into()),
            sender_name: Some("User".into()),
            text: text.into(),
            data: "{}".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn upsert_list_and_delete_are_scoped_to_the_owner() {
        let (store, dir) = crate::test_support::sqlite_store(&["a", "b"]).await;
        store
            .upsert_messages(vec![
                row("1", "a", "s", 1, "one"),
                row("2", "a", "s", 2, "two"),
                row("3", "b", "s", 3, "bob"),
                row("1", "a", "s", 1, "one, edited"),
            ])
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()
            .unwrap();
        // Another user cannot overwrite a's message by reusing its id.
        let hijack = store
            .upsert_messages(vec![row("2", "b", "s", 9, "hijack")])
            .await;
        assert!(matches!(hijack[..], [Ok(())]), "{hijack:?}");
        let filter = MessageFilter {
            user_id: "a",
            session_id: Some("s"),
            limit: 10,
            ..Default::default()
        };
        let got = store.messages(&filter).await.unwrap();
        let texts: Vec<&str> = got.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["two", "one, edited"]);
        assert_eq!(store.delete_session_messages("b", "s").await.unwrap(), 1);
        assert_eq!(store.messages(&filter).await.unwrap().len(), 2);
        assert_eq!(store.delete_session_messages("a", "s").await.unwrap(), 2);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
