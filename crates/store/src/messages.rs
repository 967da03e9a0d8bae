//! Chat messages, always scoped to their owner. Written in batches (one transaction per batch,
//! upsert by id); read newest first.

use sqlx::Row;
use sqlx::any::AnyRow;

use std::sync::Mutex;

use sqlx::AnyPool;

use crate::message_queue::{MessageReceipt, settle};
use crate::scopes::{self, ScopeCache};
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

/// `INSERT ... VALUES (...), (...) ON CONFLICT (id) DO UPDATE ...` for `rows` rows (the pooled
/// path; SQLite's writer inserts and updates in two statements: `sqlite_writer::INSERT_SQL`).
fn upsert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=11).map(|c| format!("${}", r * 11 + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO messages (id, user_id, flow_id, session_id, context_id, timestamp, sender, \
         sender_name, text, data, scope) VALUES {} \
         ON CONFLICT (id) DO UPDATE SET flow_id = excluded.flow_id, session_id = excluded.session_id, \
         context_id = excluded.context_id, timestamp = excluded.timestamp, sender = excluded.sender, \
         sender_name = excluded.sender_name, text = excluded.text, data = excluded.data, \
         scope = excluded.scope \
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
    ///
    /// Messages are found through their scope (`scopes`): with a flow and a session, the one
    /// scope, whose index gives the newest first without sorting (what a Memory read asks);
    /// otherwise every scope of the user that matches, and the rows sorted.
    pub async fn messages(&self, filter: &MessageFilter<'_>) -> Result<Vec<MessageRow>> {
        let mut binds: Vec<&str> = vec![filter.user_id];
        let mut scope = String::from("SELECT id FROM message_scopes WHERE user_id = $1");
        let scope_filters = [
            ("flow_key", filter.flow_id),
            ("session_id", filter.session_id),
        ];
        for (column, value) in scope_filters {
            if let Some(v) = value {
                binds.push(v);
                scope.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        let one_scope = filter.flow_id.is_some() && filter.session_id.is_some();
        let mut sql = if one_scope {
            format!("SELECT {COLUMNS} FROM messages WHERE scope = ({scope}) AND user_id = $1")
        } else {
            format!("SELECT {COLUMNS} FROM messages WHERE scope IN ({scope}) AND user_id = $1")
        };
        let row_filters = [
            ("context_id", filter.context_id),
            ("sender", filter.sender),
            ("sender_name", filter.sender_name),
        ];
        for (column, value) in row_filters {
            if let Some(v) = value {
                binds.push(v);
                sql.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        sql.push_str(&format!(
            " ORDER BY timestamp DESC, id DESC LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        ));
        let mut query = sqlx::query(&sql);
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

    /// Deletes the user's messages of one session (of any flow). Returns how many were
    /// deleted. The scopes stay (see `scopes`).
    pub async fn delete_session_messages(&self, user_id: &str, session_id: &str) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM messages WHERE scope IN \
             (SELECT id FROM message_scopes WHERE user_id = $1 AND session_id = $2) \
             AND user_id = $1",
        )
        .bind(user_id)
        .bind(session_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

/// PostgreSQL: one transaction of multi-row statements on a pooled connection; if it fails
/// for a row's sake, one transaction per row. One result per row, in order.
pub(crate) async fn write_pooled(
    pool: &AnyPool,
    scopes: &Mutex<ScopeCache>,
    rows: &[&MessageRow],
) -> Vec<Result<()>> {
    let batch = write_pooled_tx(pool, scopes, rows).await;
    if let Some(results) = batch_outcome(batch, rows.len()) {
        return results;
    }
    let mut each = Vec::with_capacity(rows.len());
    for row in rows {
        each.push(write_pooled_tx(pool, scopes, std::slice::from_ref(row)).await);
    }
    each
}

async fn write_pooled_tx(
    pool: &AnyPool,
    scopes: &Mutex<ScopeCache>,
    rows: &[&MessageRow],
) -> Result<()> {
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
    let mut ids: Vec<Option<i64>> = {
        let cache = scopes.lock().unwrap_or_else(|e| e.into_inner());
        unique.iter().map(|m| cache.get(m)).collect()
    };
    let mut tx = pool.begin().await?;
    let mut learned = Vec::new();
    for i in 0..unique.len() {
        if ids[i].is_some() {
            continue;
        }
        let id = scope_id(&mut tx, unique[i]).await?;
        // Later rows of the same scope in this batch.
        for j in i..unique.len() {
            if ids[j].is_none() && scopes::key_of(unique[j]) == scopes::key_of(unique[i]) {
                ids[j] = Some(id);
            }
        }
        learned.push((i, id));
    }
    for (chunk, chunk_ids) in unique
        .chunks(ROWS_PER_STATEMENT)
        .zip(ids.chunks(ROWS_PER_STATEMENT))
    {
        let mut query = sqlx::query(upsert_sql_for(chunk.len()));
        for (m, scope) in chunk.iter().zip(chunk_ids) {
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
                .bind(&m.data)
                .bind(scope.expect("every row's scope was resolved"));
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let mut cache = scopes.lock().unwrap_or_else(|e| e.into_inner());
    for (i, id) in learned {
        cache.insert(unique[i], id);
    }
    Ok(())
}

/// The id of `row`'s scope, created if it does not exist yet.
async fn scope_id(tx: &mut sqlx::Transaction<'_, sqlx::Any>, row: &MessageRow) -> Result<i64> {
    let (user, session, flow) = scopes::key_of(row);
    for attempt in 0..2 {
        let found: Option<(i64,)> = sqlx::query_as(scopes::SELECT_SQL)
            .bind(user)
            .bind(session)
            .bind(flow)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some((id,)) = found {
            return Ok(id);
        }
        if attempt == 0 {
            sqlx::query(scopes::INSERT_SQL)
                .bind(user)
                .bind(session)
                .bind(flow)
                .execute(&mut **tx)
                .await?;
        }
    }
    Err(StoreError::Other(format!(
        "the message scope of session {session} could not be created"
    )))
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

#[cfg(test)]
mod scope_migration_tests {
    use super::*;
    use crate::{PoolSettings, sqlite_url};

    /// A database written before message scopes (migrations 1-4, rows in the old layout) is
    /// migrated: every message gets its scope, and reads, deletes and new writes see the same
    /// rows as before, per user, session and flow. On SQLite, and on PostgreSQL when
    /// FLOWGATE_TEST_DATABASE_URL names a server the test may create a database on.
    #[tokio::test]
    async fn messages_written_before_scopes_are_found_after_the_migration() {
        let dir = std::env::temp_dir().join(format!("fg-scopes-{}", uuid::Uuid::new_v4()));
        migrate_and_check(&sqlite_url(&dir.join("t.db")), false).await;
        let _ = std::fs::remove_dir_all(dir);
        let Some(admin) = std::env::var("FLOWGATE_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        else {
            return;
        };
        sqlx::any::install_default_drivers();
        let name = format!(
            "fgt_{}_{}",
            crate::now_micros() / 1_000_000,
            uuid::Uuid::new_v4().simple()
        );
        let admin_pool = sqlx::AnyPool::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin_pool)
            .await
            .unwrap();
        let (base, _) = admin.rsplit_once('/').expect("a database URL");
        migrate_and_check(&format!("{base}/{name}"), true).await;
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&admin_pool)
            .await
            .unwrap();
    }

    async fn migrate_and_check(url: &str, postgres: bool) {
        let url = url.to_owned();
        let store = Store::connect(&url, &PoolSettings::default())
            .await
            .unwrap();
        let mut before = if postgres {
            sqlx::migrate!("./migrations/postgres")
        } else {
            sqlx::migrate!("./migrations/sqlite")
        };
        let all = before.migrations.len();
        assert!(all >= 5, "the scopes migration is the fifth");
        before.migrations = before.migrations[..4].to_vec().into();
        before.run(store.pool()).await.unwrap();
        crate::test_support::create_users(&store, &["a", "b"]).await;
        // (id, user, flow, session, timestamp)
        let old: [(&str, &str, Option<&str>, &str, i64); 6] = [
            ("m1", "a", Some("f1"), "s1", 1),
            ("m2", "a", Some("f1"), "s1", 2),
            ("m3", "a", Some("f2"), "s1", 3),
            ("m4", "a", None, "s2", 4),
            ("m5", "b", Some("f1"), "s1", 5),
            ("m6", "a", Some("f1"), "s3", 6),
        ];
        for (id, user, flow, session, ts) in old {
            sqlx::query(
                "INSERT INTO messages (id, user_id, flow_id, session_id, context_id, timestamp, \
                 sender, sender_name, text, data) VALUES ($1, $2, $3, $4, '', $5, 'User', 'User', $1, '{}')",
            )
            .bind(id)
            .bind(user)
            .bind(flow)
            .bind(session)
            .bind(ts)
            .execute(store.pool())
            .await
            .unwrap();
        }
        store.close().await;

        let store = Store::connect(&url, &PoolSettings::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let unscoped: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages WHERE scope IS NULL")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(unscoped.0, 0);
        let ids =
            |flow: Option<&'static str>, session: Option<&'static str>, user: &'static str| {
                let store = &store;
                async move {
                    let filter = MessageFilter {
                        user_id: user,
                        flow_id: flow,
                        session_id: session,
                        limit: 100,
                        ..Default::default()
                    };
                    let rows = store.messages(&filter).await.unwrap();
                    rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
                }
            };
        assert_eq!(ids(Some("f1"), Some("s1"), "a").await, ["m2", "m1"]);
        assert_eq!(ids(None, Some("s1"), "a").await, ["m3", "m2", "m1"]);
        assert_eq!(ids(Some("f1"), None, "a").await, ["m6", "m2", "m1"]);
        assert_eq!(ids(None, None, "a").await, ["m6", "m4", "m3", "m2", "m1"]);
        assert_eq!(ids(None, Some("s2"), "a").await, ["m4"]);
        assert_eq!(ids(None, None, "b").await, ["m5"]);
        assert!(ids(Some("f1"), Some("s1"), "nobody").await.is_empty());

        // New messages join the migrated scopes (and new ones), through the writer.
        let new = |id: &str, flow: Option<&str>, session: &str, ts: i64| MessageRow {
            id: id.into(),
            user_id: "a".into(),
            flow_id: flow.map(Into::into),
            session_id: session.into(),
            timestamp: ts,
            text: id.into(),
            data: "{}".into(),
            ..Default::default()
        };
        let written = store
            .upsert_messages(vec![
                new("m7", Some("f1"), "s1", 7),
                new("m8", None, "s2", 8),
                new("m9", Some("f3"), "s9", 9),
            ])
            .await;
        assert!(written.iter().all(Result::is_ok), "{written:?}");
        assert_eq!(ids(Some("f1"), Some("s1"), "a").await, ["m7", "m2", "m1"]);
        assert_eq!(ids(None, Some("s2"), "a").await, ["m8", "m4"]);
        assert_eq!(ids(Some("f3"), Some("s9"), "a").await, ["m9"]);

        assert_eq!(store.delete_session_messages("a", "s1").await.unwrap(), 4);
        assert_eq!(ids(None, Some("s1"), "a").await, Vec::<String>::new());
        assert_eq!(
            ids(None, None, "b").await,
            ["m5"],
            "another user's session s1 stays"
        );
        // The session's scope stays, and takes new messages again.
        let again = store
            .upsert_messages(vec![new("m10", Some("f1"), "s1", 10)])
            .await;
        assert!(again.iter().all(Result::is_ok), "{again:?}");
        assert_eq!(ids(Some("f1"), Some("s1"), "a").await, ["m10"]);
        store.close().await;
    }
}
