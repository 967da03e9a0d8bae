//! The server's side of a run ([`RunContext`]): chat history and message storage, global
//! variables, uploaded files, the shared HTTP client.
//!
//! Messages are never written synchronously by a run: `store_message` appends to an in-memory
//! queue that a background task writes every [`FLUSH_INTERVAL`] (or as soon as
//! [`FLUSH_BATCH`] are waiting) in one transaction. Readers (the `Memory` component, the
//! monitor routes) flush the queue first, so they always see earlier writes.

use std::sync::Mutex;
use std::time::Duration;

use axum::http::HeaderMap;
use flowgate_engine::context::{BoxFuture, HistoryQuery, RunContext};
use flowgate_engine::value::{Properties, Source, Usage};
use flowgate_engine::{LlmTimeouts, Message};
use flowgate_store::{MessageFilter, MessageRow, Store};
use serde_json::Value;

use crate::state::AppState;

/// How often queued messages are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Queue length that triggers a write before the interval is up.
pub const FLUSH_BATCH: usize = 500;
/// Most rows one transaction writes.
const MAX_BATCH: usize = 2000;
/// Most messages that may wait for the writer. Past it, new runs wait (see
/// [`MessageQueue::wait_for_room`]): memory stays bounded and nothing is dropped; clients see
/// the rate the database can sustain.
pub const MAX_PENDING: usize = 20_000;
/// The header prefix that supplies global variables per request.
const GLOBAL_VAR_HEADER: &str = "x-langflow-global-var-";

/// Messages waiting to be written.
#[derive(Default)]
pub struct MessageQueue {
    pending: Mutex<Vec<MessageRow>>,
    wake: tokio::sync::Notify,
    /// Signalled after every written batch, for runs waiting for room.
    room: tokio::sync::Notify,
    /// Held while a batch is being written, so a flush returns only once every message queued
    /// before it is in the database.
    writing: tokio::sync::Mutex<()>,
}

impl MessageQueue {
    /// Queues a message; never blocks on I/O.
    pub fn push(&self, row: MessageRow) {
        let len = {
            let mut pending = self.pending.lock().expect("message queue lock");
            pending.push(row);
            pending.len()
        };
        if len >= FLUSH_BATCH {
            self.wake.notify_one();
        }
    }

    /// Stops the background writer without losing a batch it is writing, then writes the rest.
    pub async fn shutdown(&self, store: &Store, writer: tokio::task::JoinHandle<()>) {
        {
            let _writing = self.writing.lock().await;
            writer.abort();
        }
        self.flush(store).await;
    }

    /// Waits while the queue is full. Backpressure at the start of a run, because
    /// `store_message` itself must not block.
    pub async fn wait_for_room(&self) {
        while self.pending_len() >= MAX_PENDING {
            self.wake.notify_one();
            // Re-check at least every 50 ms in case a notification raced the check.
            let _ = tokio::time::timeout(Duration::from_millis(50), self.room.notified()).await;
        }
    }

    pub fn pending_len(&self) -> usize {
        self.pending.lock().expect("message queue lock").len()
    }

    /// Writes everything queued so far. Failed rows are logged and dropped (a batch that fails
    /// is retried row by row, so one bad row does not lose the others).
    pub async fn flush(&self, store: &Store) {
        let _writing = self.writing.lock().await;
        loop {
            // Take the whole queue at once (no O(n) shifting of a long backlog) and write it
            // in transactions of at most MAX_BATCH rows.
            let taken: Vec<MessageRow> = {
                let mut pending = self.pending.lock().expect("message queue lock");
                if pending.is_empty() {
                    return;
                }
                std::mem::take(&mut *pending)
            };
            for batch in taken.chunks(MAX_BATCH) {
                self.write_batch(store, batch).await;
            }
            self.room.notify_waiters();
        }
    }

    async fn write_batch(&self, store: &Store, batch: &[MessageRow]) {
        {
            if let Err(e) = store.upsert_messages(batch).await {
                tracing::warn!(error = %e, rows = batch.len(), "could not write a batch of messages; retrying one by one");
                for row in batch {
                    if let Err(e) = store.upsert_messages(std::slice::from_ref(row)).await {
                        tracing::error!(error = %e, message_id = %row.id, "could not store a message");
                    }
                }
            }
        }
    }
}

/// The background writer: flushes every [`FLUSH_INTERVAL`], or early when the queue is long.
pub async fn write_messages_forever(state: AppState) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
            _ = state.messages.wake.notified() => {}
        }
        if state.messages.pending_len() > 0 {
            state.messages.flush(&state.store).await;
        }
    }
}

/// Microseconds since the epoch of a Langflow timestamp (`2026-11-23 13:45:04.549509 UTC`).
pub fn timestamp_micros(ts: &str) -> Option<i64> {
    let t = ts.trim().trim_end_matches("UTC").trim();
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|d| d.and_utc().timestamp_micros())
}

/// The database row of a message stored by `user_id`.
pub fn message_row(user_id: &str, msg: &Message) -> MessageRow {
    MessageRow {
        id: msg
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        user_id: user_id.to_owned(),
        flow_id: msg.flow_id.clone(),
        session_id: msg.session_id.clone(),
        context_id: msg.context_id.clone(),
        timestamp: timestamp_micros(&msg.timestamp).unwrap_or_else(flowgate_store::now_micros),
        sender: msg.sender.clone(),
        sender_name: msg.sender_name.clone(),
        text: msg.text.clone(),
        data: msg.data_json().to_string(),
    }
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn usage_of(v: &Value) -> Option<Usage> {
    let o = v.as_object()?;
    Some(Usage {
        input_tokens: o.get("input_tokens").and_then(Value::as_u64),
        output_tokens: o.get("output_tokens").and_then(Value::as_u64),
        total_tokens: o.get("total_tokens").and_then(Value::as_u64),
    })
}

/// A stored message back from its `data` JSON.
pub fn message_from_data(d: &Value) -> Message {
    let p = d.get("properties").cloned().unwrap_or(Value::Null);
    let source = p.get("source").cloned().unwrap_or(Value::Null);
    let properties = Properties {
        text_color: opt_str(&p, "text_color"),
        background_color: opt_str(&p, "background_color"),
        edited: p.get("edited").and_then(Value::as_bool).unwrap_or(false),
        source: Source {
            id: opt_str(&source, "id"),
            display_name: opt_str(&source, "display_name"),
            source: opt_str(&source, "source"),
        },
        icon: opt_str(&p, "icon"),
        allow_markdown: p
            .get("allow_markdown")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        positive_feedback: p.get("positive_feedback").and_then(Value::as_bool),
        state: match p.get("state").and_then(Value::as_str) {
            Some("partial") => "partial",
            _ => "complete",
        },
        targets: p
            .get("targets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        usage: p.get("usage").and_then(usage_of),
        build_duration: p.get("build_duration").and_then(Value::as_f64),
    };
    Message {
        text: opt_str(d, "text").unwrap_or_default(),
        sender: opt_str(d, "sender"),
        sender_name: opt_str(d, "sender_name"),
        session_id: opt_str(d, "session_id").unwrap_or_default(),
        context_id: opt_str(d, "context_id").unwrap_or_default(),
        files: d
            .get("files")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        flow_id: opt_str(d, "flow_id"),
        run_id: opt_str(d, "run_id"),
        id: opt_str(d, "id"),
        timestamp: opt_str(d, "timestamp").unwrap_or_default(),
        error: d.get("error").and_then(Value::as_bool).unwrap_or(false),
        edit: d.get("edit").and_then(Value::as_bool).unwrap_or(false),
        properties,
        category: opt_str(d, "category").unwrap_or_else(|| "message".into()),
        content_blocks: d
            .get("content_blocks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        duration: d.get("duration").and_then(Value::as_i64),
        session_metadata: d.get("session_metadata").filter(|v| !v.is_null()).cloned(),
        ..Default::default()
    }
}

/// One run's view of the server, acting as the key's owner.
pub struct ServerRunContext {
    state: AppState,
    user_id: String,
    /// `X-LANGFLOW-GLOBAL-VAR-<NAME>` headers: (lower-case name, value).
    header_vars: Vec<(String, String)>,
}

impl ServerRunContext {
    pub fn new(state: AppState, user_id: String, headers: &HeaderMap) -> Self {
        let header_vars = headers
            .iter()
            .filter_map(|(name, value)| {
                let var = name.as_str().strip_prefix(GLOBAL_VAR_HEADER)?;
                Some((var.to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        Self {
            state,
            user_id,
            header_vars,
        }
    }

    fn header_var(&self, name: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        self.header_vars
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, v)| v.clone())
    }
}

/// The server's own settings are not for flows to read: a flow could send them anywhere.
fn env_var_allowed(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    !(upper.starts_with("FLOWGATE_") || upper.starts_with("LANGFLOW_"))
}

impl RunContext for ServerRunContext {
    fn history<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<Message>, String>> {
        Box::pin(async move {
            // Read-your-writes: this run's and earlier runs' messages may still be queued.
            self.state.messages.flush(&self.state.store).await;
            let filter = MessageFilter {
                user_id: &self.user_id,
                flow_id: Some(&query.flow_id),
                session_id: Some(&query.session_id),
                context_id: Some(query.context_id.as_str()).filter(|c| !c.is_empty()),
                sender: query.sender.as_deref(),
                sender_name: query.sender_name.as_deref(),
                limit: query.limit.min(10_000) as i64,
                offset: 0,
            };
            let rows = self
                .state
                .store
                .messages(&filter)
                .await
                .map_err(|e| format!("could not read the chat history: {e}"))?;
            Ok(rows
                .iter()
                .map(|r| {
                    let data: Value = serde_json::from_str(&r.data).unwrap_or(Value::Null);
                    let mut m = message_from_data(&data);
                    // The columns are authoritative.
                    m.id = Some(r.id.clone());
                    m.text = r.text.clone();
                    m.sender = r.sender.clone();
                    m.sender_name = r.sender_name.clone();
                    m.session_id = r.session_id.clone();
                    m
                })
                .collect())
        })
    }

    fn store_message(&self, msg: &Message) {
        self.state.messages.push(message_row(&self.user_id, msg));
    }

    fn variable<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            if let Some(v) = crate::variables::lookup(&self.state, &self.user_id, name).await {
                return Some(v);
            }
            if let Some(v) = self.header_var(name) {
                return Some(v);
            }
            if env_var_allowed(name) {
                return std::env::var(name).ok();
            }
            None
        })
    }

    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(crate::files::read_for_run(&self.state, &self.user_id, path))
    }

    fn http_client(&self) -> &reqwest::Client {
        &self.state.http
    }

    fn openai_base_url(&self) -> Option<String> {
        self.state.openai_base_url.clone()
    }

    fn llm_timeouts(&self) -> LlmTimeouts {
        LlmTimeouts::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_round_trip() {
        assert_eq!(
            timestamp_micros("1970-01-01 00:00:01.000002 UTC"),
            Some(1_000_002)
        );
        assert_eq!(timestamp_micros("nope"), None);
        let mut m = Message::with_text("hi");
        m.id = Some("m1".into());
        m.sender = Some("User".into());
        m.sender_name = Some("User".into());
        m.session_id = "s".into();
        m.flow_id = Some("f".into());
        m.properties.usage = Some(Usage {
            input_tokens: Some(1),
            output_tokens: Some(2),
            total_tokens: Some(3),
        });
        let back = message_from_data(&m.data_json());
        assert_eq!(back.data_json(), m.data_json());
        assert!(env_var_allowed("OPENAI_API_KEY"));
        assert!(!env_var_allowed("flowgate_secret_key"));
    }
}
