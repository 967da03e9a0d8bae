//! The server's side of a run ([`RunContext`]): chat history and message storage, global
//! variables, uploaded files, the shared HTTP client.
//!
//! Messages are written by the store's group commit: `store_message` keeps the row, and the
//! run's rows are queued together (`Store::queue_messages`, one receipt each) when the run needs
//! them written or ends. A run answers only after its messages are
//! committed ([`ServerRunContext::messages_stored`]), so an acknowledged run is never lost and
//! another instance on the same database reads the history at once.

use std::sync::Mutex;

use axum::http::HeaderMap;
use flowgate_engine::context::{BoxFuture, HistoryQuery, RunContext};
use flowgate_engine::value::{MESSAGE_DATA_KEYS, Properties, Source, Usage};
use flowgate_engine::{LlmTimeouts, Message};
use flowgate_store::{MessageFilter, MessageReceipt, MessageRow, StoreError};
use serde_json::Value;

use crate::state::AppState;

/// The header prefix that supplies global variables per request.
const GLOBAL_VAR_HEADER: &str = "x-langflow-global-var-";

/// Microseconds since the epoch of a Langflow timestamp (`2026-11-23 13:45:04.549509 UTC`), and
/// whether it is in exactly that layout (the one `timefmt::message_time` prints back). That
/// layout, the one the engine writes, is read digit by digit (every stored message passes
/// here); anything else goes through chrono's parser.
pub fn timestamp_micros(ts: &str) -> Option<(i64, bool)> {
    match exact_timestamp_micros(ts) {
        Some(micros) => Some((micros, true)),
        None => parse_timestamp_micros(ts).map(|micros| (micros, false)),
    }
}

fn exact_timestamp_micros(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    if b.len() != 30 || !ts.ends_with(" UTC") {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let mut v = 0u32;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b' '),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if separators.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = date.and_hms_micro_opt(num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?)?;
    Some(time.and_utc().timestamp_micros())
}

fn parse_timestamp_micros(ts: &str) -> Option<i64> {
    let t = ts.trim().trim_end_matches("UTC").trim();
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|d| d.and_utc().timestamp_micros())
}

/// The database row of a message stored by `user_id`. Its `data` holds only what the columns
/// do not: keys kept in columns (id, flow, session, context, sender, sender name, text, and the
/// timestamp when its column gives it back exactly) and keys at their default value are left
/// out, and put back on read ([`message_from_row`], `routes::messages`). That halves the row
/// (~760 → ~400 bytes of JSON for a chat message), and so the WAL and database written per run.
/// Rows written whole by earlier versions read the same.
pub fn message_row(user_id: &str, msg: &Message) -> MessageRow {
    let parsed = timestamp_micros(&msg.timestamp);
    MessageRow {
        id: msg
            .id
            .clone()
            .unwrap_or_else(flowgate_engine::value::new_id),
        user_id: user_id.to_owned(),
        flow_id: msg.flow_id.clone(),
        session_id: msg.session_id.clone(),
        context_id: msg.context_id.clone(),
        timestamp: parsed.map_or_else(flowgate_store::now_micros, |(micros, _)| micros),
        sender: msg.sender.clone(),
        sender_name: msg.sender_name.clone(),
        text: msg.text.clone(),
        data: serde_json::to_string(&StoredData {
            msg,
            with_timestamp: !matches!(parsed, Some((_, true))),
        })
        .expect("a message serialises"),
    }
}

/// A message's `data` as stored (see [`message_row`]); key order as in Langflow's data.
struct StoredData<'a> {
    msg: &'a Message,
    with_timestamp: bool,
}

impl serde::Serialize for StoredData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let msg = self.msg;
        let mut m = s.serialize_map(None)?;
        for (k, v) in &msg.extra {
            // `id` is a column; the others are written below or kept in columns.
            if k != "id" && !MESSAGE_DATA_KEYS.contains(&k.as_str()) {
                m.serialize_entry(k, v)?;
            }
        }
        if self.with_timestamp {
            m.serialize_entry("timestamp", &msg.timestamp)?;
        }
        if !msg.files.is_empty() {
            m.serialize_entry("files", &msg.files)?;
        }
        if msg.error {
            m.serialize_entry("error", &true)?;
        }
        if msg.edit {
            m.serialize_entry("edit", &true)?;
        }
        if msg.properties != Properties::default() {
            m.serialize_entry("properties", &StoredProperties(&msg.properties))?;
        }
        if msg.category != "message" {
            m.serialize_entry("category", &msg.category)?;
        }
        if !msg.content_blocks.is_empty() {
            m.serialize_entry("content_blocks", &msg.content_blocks)?;
        }
        if let Some(meta) = &msg.session_metadata {
            m.serialize_entry("session_metadata", meta)?;
        }
        if let Some(run_id) = &msg.run_id {
            m.serialize_entry("run_id", run_id)?;
        }
        if let Some(duration) = msg.duration {
            m.serialize_entry("duration", &duration)?;
        }
        m.end()
    }
}

/// A message's `properties` as stored: only what differs from the defaults
/// ([`message_from_data`] reads a missing key as its default). A chat message's properties
/// were 250 of its ~400 bytes of `data`, almost all of them defaults.
struct StoredProperties<'a>(&'a Properties);

impl serde::Serialize for StoredProperties<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (p, default) = (self.0, Properties::default());
        let mut m = s.serialize_map(None)?;
        if p.text_color != default.text_color {
            m.serialize_entry("text_color", &p.text_color)?;
        }
        if p.background_color != default.background_color {
            m.serialize_entry("background_color", &p.background_color)?;
        }
        if p.edited != default.edited {
            m.serialize_entry("edited", &p.edited)?;
        }
        if p.source != default.source {
            m.serialize_entry("source", &StoredSource(&p.source))?;
        }
        if p.icon != default.icon {
            m.serialize_entry("icon", &p.icon)?;
        }
        if p.allow_markdown != default.allow_markdown {
            m.serialize_entry("allow_markdown", &p.allow_markdown)?;
        }
        if p.positive_feedback != default.positive_feedback {
            m.serialize_entry("positive_feedback", &p.positive_feedback)?;
        }
        if p.state != default.state {
            m.serialize_entry("state", p.state)?;
        }
        if p.targets != default.targets {
            m.serialize_entry("targets", &p.targets)?;
        }
        if p.usage != default.usage {
            m.serialize_entry("usage", &p.usage)?;
        }
        if p.build_duration != default.build_duration {
            m.serialize_entry("build_duration", &p.build_duration)?;
        }
        m.end()
    }
}

struct StoredSource<'a>(&'a Source);

impl serde::Serialize for StoredSource<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        let fields = [
            ("id", &self.0.id),
            ("display_name", &self.0.display_name),
            ("source", &self.0.source),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// A stored message as the engine sees it: `data` with the columns put back (the columns are
/// authoritative).
pub fn message_from_row(row: &MessageRow) -> Message {
    let data: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
    let mut m = message_from_data(&data);
    m.id = Some(row.id.clone());
    m.text = row.text.clone();
    m.sender = row.sender.clone();
    m.sender_name = row.sender_name.clone();
    m.session_id = row.session_id.clone();
    m.context_id = row.context_id.clone();
    m.flow_id = row.flow_id.clone();
    if data.get("timestamp").is_none() {
        m.timestamp = crate::timefmt::message_time(row.timestamp);
    }
    m
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
    /// Messages this run's components stored, not yet handed to the store. A run's messages
    /// are queued together, when it needs them written (it answers, or reads history) or ends
    /// otherwise (dropped: failed or cancelled), so they share one transaction: queued one by
    /// one as produced, a chat run's question was often committed alone and its answer had to
    /// wait for the next commit (two commits per run instead of one, two writer wake-ups).
    unqueued: Mutex<Vec<MessageRow>>,
    /// This run's queued messages, not yet confirmed written.
    unconfirmed: Mutex<Vec<MessageReceipt>>,
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
            unqueued: Mutex::new(Vec::new()),
            unconfirmed: Mutex::new(Vec::new()),
        }
    }

    /// Hands the messages stored since the last call to the store (one batch).
    fn queue_stored(&self) {
        let rows = std::mem::take(&mut *self.unqueued.lock().expect("run messages lock"));
        if rows.is_empty() {
            return;
        }
        let receipts = self.state.store.queue_messages(rows);
        self.unconfirmed
            .lock()
            .expect("run messages lock")
            .extend(receipts);
    }

    /// Waits until every message this run stored so far is committed. An error means some
    /// were not (the database is unreachable, say): the run must not be acknowledged.
    pub async fn messages_stored(&self) -> Result<(), StoreError> {
        self.queue_stored();
        let waiting = std::mem::take(&mut *self.unconfirmed.lock().expect("run messages lock"));
        let mut outcome = Ok(());
        for rx in waiting {
            let result = rx.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the message writer stopped before writing".into(),
                ))
            });
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
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

/// A run that ends without waiting for its messages (it failed, or its client went away) still
/// keeps what its components stored, as when each message was queued at once: the question of
/// a run whose model call failed stays in the history.
impl Drop for ServerRunContext {
    fn drop(&mut self) {
        self.queue_stored();
    }
}

impl RunContext for ServerRunContext {
    fn history<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<Message>, String>> {
        Box::pin(async move {
            // Read-your-writes: this run's own messages may still be queued (earlier runs'
            // were committed before they answered).
            self.messages_stored()
                .await
                .map_err(|e| format!("could not store the chat history: {e}"))?;
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
            Ok(rows.iter().map(message_from_row).collect())
        })
    }

    fn store_message(&self, msg: &Message) {
        let row = message_row(&self.user_id, msg);
        self.unqueued.lock().expect("run messages lock").push(row);
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

    fn chat_message(text: &str) -> Message {
        let mut m = Message::with_text(text);
        m.id = Some(flowgate_engine::value::new_id());
        m.session_id = "s".into();
        m.flow_id = Some("f".into());
        m.timestamp = "2026-12-01 07:00:00.000001 UTC".into();
        m
    }

    async fn stored_texts(state: &AppState) -> Vec<String> {
        state.store.flush_messages().await;
        let filter = MessageFilter {
            user_id: "alice",
            limit: 100,
            ..Default::default()
        };
        let rows = state.store.messages(&filter).await.unwrap();
        rows.into_iter().map(|r| r.text).collect()
    }

    /// A run's messages are handed to the store together, when the run answers (or reads the
    /// history, or ends without answering), so they share a transaction; none is lost.
    #[tokio::test]
    async fn a_runs_messages_are_queued_together_and_none_is_lost() {
        let dir = std::env::temp_dir().join(format!("fg-runctx-{}", uuid::Uuid::new_v4()));
        let state = crate::test_support::state_with_users(&dir).await;
        let run = ServerRunContext::new(state.clone(), "alice".into(), &HeaderMap::new());
        run.store_message(&chat_message("question"));
        run.store_message(&chat_message("answer"));
        assert!(
            stored_texts(&state).await.is_empty(),
            "queued before the run needed them written"
        );
        run.messages_stored().await.unwrap();
        assert_eq!(stored_texts(&state).await, ["answer", "question"]);

        // Reading the history writes the run's own messages first (read-your-writes).
        run.store_message(&chat_message("second question"));
        let query = HistoryQuery {
            flow_id: "f".into(),
            session_id: "s".into(),
            context_id: String::new(),
            sender: None,
            sender_name: None,
            limit: 10,
        };
        let history: Vec<String> = run
            .history(&query)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(history, ["second question", "answer", "question"]);

        // A run that fails or loses its client before answering keeps what it stored.
        let failed = ServerRunContext::new(state.clone(), "alice".into(), &HeaderMap::new());
        failed.store_message(&chat_message("question of a failed run"));
        drop(failed);
        let stored = stored_texts(&state).await;
        assert_eq!(stored.len(), 4);
        assert_eq!(stored[0], "question of a failed run");
        state.store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn timestamps_and_round_trip() {
        assert_eq!(
            timestamp_micros("1970-01-01 00:00:01.000002 UTC"),
            Some((1_000_002, true))
        );
        assert_eq!(timestamp_micros("nope"), None);
        assert_eq!(
            timestamp_micros("1970-01-01 00:00:01 UTC"),
            Some((1_000_000, false))
        );
        assert_eq!(
            timestamp_micros("2026-11-23 13:45:04.549509 UTC"),
            Some((1_795_441_504_549_509, true))
        );
        assert_eq!(timestamp_micros("2026-13-23 13:45:04.549509 UTC"), None);
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
        // Stored: the columns and the defaults are not repeated in `data`, and come back.
        m.run_id = Some("r1".into());
        m.extra.insert("template".into(), Value::from("{q}"));
        let row = message_row("u", &m);
        let stored: Value = serde_json::from_str(&row.data).unwrap();
        let keys: Vec<&str> = stored
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["template", "properties", "run_id"]);
        // Of the properties, only what is not a default.
        assert_eq!(
            stored["properties"],
            serde_json::json!({"usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}})
        );
        assert_eq!(Some((row.timestamp, true)), timestamp_micros(&m.timestamp));
        let mut back = message_from_row(&row);
        assert_eq!(back.timestamp, m.timestamp);
        // Extra keys are kept in the row but, as before, not read back into the message.
        back.extra = m.extra.clone();
        assert_eq!(back.data_json(), m.data_json());
        // Defaults that are not defaults are stored; a timestamp the column cannot give back
        // exactly is stored as written.
        m.error = true;
        m.files = vec!["f/a.png".into()];
        m.category = "error".into();
        m.duration = Some(7);
        m.timestamp = "2026-11-23T13:45:04Z".into();
        m.properties.source.id = Some("ChatInput-1".into());
        m.properties.state = "partial";
        m.properties.edited = true;
        m.properties.text_color = Some(String::new());
        m.properties.targets = vec![Value::from("t")];
        let row = message_row("u", &m);
        let stored: Value = serde_json::from_str(&row.data).unwrap();
        assert_eq!(
            stored["properties"],
            serde_json::json!({"text_color": "", "edited": true, "source": {"id": "ChatInput-1"},
                "state": "partial", "targets": ["t"], "usage": stored["properties"]["usage"]})
        );
        let mut back = message_from_row(&row);
        back.extra = m.extra.clone();
        assert_eq!(back.data_json(), m.data_json());
        // Properties that are all defaults are not stored at all, and come back.
        let mut plain = Message::with_text("plain");
        plain.timestamp = m.timestamp.clone();
        let plain_row = message_row("u", &plain);
        assert!(!plain_row.data.contains("properties"), "{}", plain_row.data);
        assert_eq!(
            message_from_row(&plain_row).data_json()["properties"],
            plain.data_json()["properties"]
        );
        // A row written whole by an earlier version reads the same.
        let old = MessageRow {
            data: m.data_json_string(),
            ..row
        };
        let mut back = message_from_row(&old);
        back.extra = m.extra.clone();
        assert_eq!(back.data_json(), m.data_json());
        assert!(env_var_allowed("OPENAI_API_KEY"));
        assert!(!env_var_allowed("flowgate_secret_key"));
    }
}
