//! Values flowing along edges: Message, Data, DataFrame, plain JSON; and their
//! serialisation in Langflow 1.13's exact shapes.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

/// `Utc::now()` formatted like Langflow: `2026-11-23 13:45:04.549509 UTC`.
pub fn now_timestamp() -> String {
    format_timestamp(chrono::Utc::now())
}

/// Langflow's timestamp layout, written digit by digit: chrono's `format` parses its pattern on
/// every call, and every stored message carries a timestamp.
pub fn format_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    /// `value`'s last `width` decimal digits, zero-padded (no allocation).
    fn digits(out: &mut String, value: u32, width: u32) {
        for place in (0..width).rev() {
            let digit = (value / 10u32.pow(place)) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
    }
    let mut out = String::with_capacity(30);
    digits(&mut out, t.year().clamp(0, 9999) as u32, 4);
    out.push('-');
    digits(&mut out, t.month(), 2);
    out.push('-');
    digits(&mut out, t.day(), 2);
    out.push(' ');
    digits(&mut out, t.hour(), 2);
    out.push(':');
    digits(&mut out, t.minute(), 2);
    out.push(':');
    digits(&mut out, t.second(), 2);
    out.push('.');
    digits(&mut out, (t.nanosecond() % 1_000_000_000) / 1000, 6);
    out.push_str(" UTC");
    out
}

/// A fresh id for a message or a run: a UUID like Langflow's, but version 7 (time-ordered)
/// rather than 4, so the messages table's primary-key index grows at its end instead of taking
/// a random page per insert. Clients only ever see a UUID string either way.
pub fn new_id() -> String {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::now_v7()
        .hyphenated()
        .encode_lower(&mut text)
        .to_owned()
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    pub id: Option<String>,
    pub display_name: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

impl Usage {
    /// Sum of several usages (Langflow accumulates upstream LLM usage on ChatOutput).
    pub fn sum<'a>(items: impl IntoIterator<Item = &'a Usage>) -> Option<Usage> {
        let mut any = false;
        let (mut i, mut o) = (0, 0);
        for u in items {
            any = true;
            i += u.input_tokens.unwrap_or(0);
            o += u.output_tokens.unwrap_or(0);
        }
        any.then_some(Usage {
            input_tokens: Some(i),
            output_tokens: Some(o),
            total_tokens: Some(i + o),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Properties {
    pub text_color: Option<String>,
    pub background_color: Option<String>,
    pub edited: bool,
    pub source: Source,
    pub icon: Option<String>,
    pub allow_markdown: bool,
    pub positive_feedback: Option<bool>,
    /// `partial` or `complete`.
    pub state: &'static str,
    pub targets: Vec<Value>,
    pub usage: Option<Usage>,
    pub build_duration: Option<f64>,
}

impl Default for Properties {
    fn default() -> Self {
        Properties {
            text_color: None,
            background_color: None,
            edited: false,
            source: Source::default(),
            icon: None,
            allow_markdown: false,
            positive_feedback: None,
            state: "complete",
            targets: Vec::new(),
            usage: None,
            build_duration: None,
        }
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("display_name", &self.display_name)?;
        m.serialize_entry("source", &self.source)?;
        m.end()
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(11))?;
        m.serialize_entry("text_color", &self.text_color)?;
        m.serialize_entry("background_color", &self.background_color)?;
        m.serialize_entry("edited", &self.edited)?;
        m.serialize_entry("source", &self.source)?;
        m.serialize_entry("icon", &self.icon)?;
        m.serialize_entry("allow_markdown", &self.allow_markdown)?;
        m.serialize_entry("positive_feedback", &self.positive_feedback)?;
        m.serialize_entry("state", self.state)?;
        m.serialize_entry("targets", &self.targets)?;
        m.serialize_entry("usage", &self.usage)?;
        m.serialize_entry("build_duration", &self.build_duration)?;
        m.end()
    }
}

/// Langflow's `Message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub sender: Option<String>,
    pub sender_name: Option<String>,
    pub session_id: String,
    pub context_id: String,
    pub files: Vec<String>,
    pub flow_id: Option<String>,
    pub run_id: Option<String>,
    /// Set once the message is stored (uuid v4 generated by the engine).
    pub id: Option<String>,
    pub timestamp: String,
    pub error: bool,
    pub edit: bool,
    pub properties: Properties,
    pub category: String,
    pub content_blocks: Vec<Value>,
    pub duration: Option<i64>,
    pub session_metadata: Option<Value>,
    /// Extra `data` keys (e.g. a prompt's `template`).
    pub extra: Map<String, Value>,
    /// Image files carried by a prompt's variables; sent to a model as image parts.
    pub attachments: Vec<String>,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            text: String::new(),
            sender: None,
            sender_name: None,
            session_id: String::new(),
            context_id: String::new(),
            files: Vec::new(),
            flow_id: None,
            run_id: None,
            id: None,
            timestamp: now_timestamp(),
            error: false,
            edit: false,
            properties: Properties::default(),
            category: "message".into(),
            content_blocks: Vec::new(),
            duration: None,
            session_metadata: None,
            extra: Map::new(),
            attachments: Vec::new(),
        }
    }
}

impl Message {
    pub fn with_text(text: impl Into<String>) -> Self {
        Message {
            text: text.into(),
            ..Default::default()
        }
    }

    /// Replace the text the way Langflow's `text` setter does (it also records a text block).
    pub fn set_text(&mut self, text: String) {
        self.content_blocks
            .retain(|b| b.get("type").and_then(Value::as_str) != Some("text"));
        if !text.is_empty() {
            self.content_blocks.push(json!({
                "type": "text", "id": null, "duration": null, "header": {}, "contents": [], "text": text
            }));
        }
        self.text = text;
    }

    /// The `data` object. Stored messages are laid out as Langflow reads them back from
    /// its messages table; fresh ones in model field order.
    pub fn data_json(&self) -> Value {
        serde_json::to_value(MessageData(self)).expect("a message serialises")
    }

    /// The `data` object as JSON text, written straight from the message (no `Value` tree:
    /// this runs for every stored message).
    pub fn data_json_string(&self) -> String {
        serde_json::to_string(&MessageData(self)).expect("a message serialises")
    }

    /// The full serialised message (as in `results.message`). `with_id` appends the
    /// trailing `id` key that `add_message` events carry.
    pub fn to_json(&self, with_id: bool) -> Value {
        serde_json::to_value(MessageJson { msg: self, with_id }).expect("a message serialises")
    }

    /// The message as a Data row (what `Message.to_data()` / a DataFrame row holds).
    pub fn to_data(&self) -> Data {
        match self.data_json() {
            Value::Object(m) => Data::new(m),
            _ => Data::default(),
        }
    }
}

/// Files as Langflow lists them: an array of path strings.
struct Files<'a>(&'a [String]);

impl Serialize for Files<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0)
    }
}

/// The keys a message's `data` object has of its own (besides `id`); an extra key of the same
/// name is written once, with the message's own value.
pub const MESSAGE_DATA_KEYS: [&str; 16] = [
    "text",
    "files",
    "sender",
    "sender_name",
    "session_id",
    "context_id",
    "run_id",
    "timestamp",
    "flow_id",
    "error",
    "edit",
    "properties",
    "category",
    "content_blocks",
    "duration",
    "session_metadata",
];

/// A message's `data` object ([`Message::data_json`]).
pub struct MessageData<'a>(pub &'a Message);

impl Serialize for MessageData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let msg = self.0;
        let mut m = s.serialize_map(None)?;
        if msg.id.is_some() {
            m.serialize_entry("timestamp", &msg.timestamp)?;
            m.serialize_entry("sender", &msg.sender)?;
            m.serialize_entry("sender_name", &msg.sender_name)?;
            m.serialize_entry("session_id", &msg.session_id)?;
            m.serialize_entry("context_id", &msg.context_id)?;
            m.serialize_entry("text", &msg.text)?;
            m.serialize_entry("files", &Files(&msg.files))?;
            m.serialize_entry("error", &msg.error)?;
            m.serialize_entry("edit", &msg.edit)?;
            m.serialize_entry("properties", &msg.properties)?;
            m.serialize_entry("category", &msg.category)?;
            m.serialize_entry("content_blocks", &msg.content_blocks)?;
            m.serialize_entry("session_metadata", &msg.session_metadata)?;
            m.serialize_entry("id", &msg.id)?;
            m.serialize_entry("flow_id", &msg.flow_id)?;
            m.serialize_entry("run_id", &msg.run_id)?;
            m.serialize_entry("duration", &msg.duration)?;
        } else {
            // Extra keys first; a known key of the same name is written once, later, with
            // the message's own value (what inserting into one map did).
            for (k, v) in &msg.extra {
                if !MESSAGE_DATA_KEYS.contains(&k.as_str()) {
                    m.serialize_entry(k, v)?;
                }
            }
            m.serialize_entry("text", &msg.text)?;
            m.serialize_entry("files", &Files(&msg.files))?;
            m.serialize_entry("sender", &msg.sender)?;
            m.serialize_entry("sender_name", &msg.sender_name)?;
            m.serialize_entry("session_id", &msg.session_id)?;
            m.serialize_entry("context_id", &msg.context_id)?;
            m.serialize_entry("run_id", &msg.run_id)?;
            m.serialize_entry("timestamp", &msg.timestamp)?;
            m.serialize_entry("flow_id", &msg.flow_id)?;
            m.serialize_entry("error", &msg.error)?;
            m.serialize_entry("edit", &msg.edit)?;
            m.serialize_entry("properties", &msg.properties)?;
            m.serialize_entry("category", &msg.category)?;
            m.serialize_entry("content_blocks", &msg.content_blocks)?;
            m.serialize_entry("duration", &msg.duration)?;
            m.serialize_entry("session_metadata", &msg.session_metadata)?;
        }
        m.end()
    }
}

/// A whole message ([`Message::to_json`]).
pub struct MessageJson<'a> {
    pub msg: &'a Message,
    pub with_id: bool,
}

impl Serialize for MessageJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let msg = self.msg;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("text_key", "text")?;
        m.serialize_entry("data", &MessageData(msg))?;
        m.serialize_entry("default_value", "")?;
        m.serialize_entry("sender", &msg.sender)?;
        m.serialize_entry("sender_name", &msg.sender_name)?;
        m.serialize_entry("files", &Files(&msg.files))?;
        m.serialize_entry("session_id", &msg.session_id)?;
        m.serialize_entry("context_id", &msg.context_id)?;
        m.serialize_entry("run_id", &msg.run_id)?;
        m.serialize_entry("timestamp", &msg.timestamp)?;
        m.serialize_entry("flow_id", &msg.flow_id)?;
        m.serialize_entry("error", &msg.error)?;
        m.serialize_entry("edit", &msg.edit)?;
        m.serialize_entry("properties", &msg.properties)?;
        m.serialize_entry("category", &msg.category)?;
        m.serialize_entry("content_blocks", &msg.content_blocks)?;
        m.serialize_entry("duration", &msg.duration)?;
        m.serialize_entry("session_metadata", &msg.session_metadata)?;
        m.serialize_entry("text", &msg.text)?;
        if self.with_id
            && let Some(id) = &msg.id
        {
            m.serialize_entry("id", id)?;
        }
        m.end()
    }
}

/// Langflow's `Data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    pub data: Map<String, Value>,
    pub text_key: String,
    pub default_value: Option<String>,
}

impl Default for Data {
    fn default() -> Self {
        Data {
            data: Map::new(),
            text_key: "text".into(),
            default_value: Some(String::new()),
        }
    }
}

impl Data {
    pub fn new(data: Map<String, Value>) -> Self {
        Data {
            data,
            ..Default::default()
        }
    }

    /// The text under `text_key`, or an error naming the missing key.
    pub fn text(&self) -> Result<String, String> {
        match self.data.get(&self.text_key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Null) | None => Err(format!(
                "Data has no \"{}\" key (available keys: {})",
                self.text_key,
                self.data.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
            Some(other) => Ok(other.to_string()),
        }
    }
}

/// A value produced by an output or held by a field.
// Messages are the common case; boxing them would add an allocation per value.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    /// A literal from the template or a tweak (string, number, bool, dict...).
    Json(Value),
    Message(Message),
    Data(Data),
    DataFrame(Vec<Data>),
    List(Vec<Val>),
    /// Handle-only placeholder (e.g. a `LanguageModel` output nothing here consumes).
    Opaque(&'static str),
}

impl Val {
    pub fn is_empty(&self) -> bool {
        match self {
            Val::Null => true,
            Val::Json(v) => crate::check::is_empty_value(Some(v)),
            Val::List(l) => l.is_empty(),
            _ => false,
        }
    }

    /// Coerce into text, as a Langflow text field would receive it.
    pub fn to_text(&self) -> Result<String, String> {
        Ok(match self {
            Val::Null => String::new(),
            Val::Json(Value::String(s)) => s.clone(),
            Val::Json(Value::Null) => String::new(),
            Val::Json(v) => v.to_string(),
            Val::Message(m) => m.text.clone(),
            Val::Data(d) => d.text()?,
            Val::DataFrame(rows) => rows
                .iter()
                .map(Data::text)
                .collect::<Result<Vec<_>, _>>()?
                .join("\n"),
            Val::List(items) => items
                .iter()
                .map(Val::to_text)
                .collect::<Result<Vec<_>, _>>()?
                .join("\n"),
            Val::Opaque(s) => (*s).to_owned(),
        })
    }

    /// Coerce into a Message (a string becomes a Message).
    pub fn to_message(&self) -> Result<Message, String> {
        match self {
            Val::Message(m) => Ok(m.clone()),
            other => Ok(Message::with_text(other.to_text()?)),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Val::Json(Value::Bool(b)) => Some(*b),
            Val::Json(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" | "" => Some(false),
                _ => None,
            },
            Val::Json(Value::Number(n)) => Some(n.as_f64() != Some(0.0)),
            Val::Message(m) => Some(!m.text.is_empty() && m.text != "false"),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Json(Value::Number(n)) => n.as_f64(),
            Val::Json(Value::String(s)) => s.trim().parse().ok(),
            Val::Message(m) => m.text.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Val::Json(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Val::Json(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64)),
            Val::Message(m) => m.text.trim().parse().ok(),
            _ => None,
        }
    }

    /// The `raw` value Langflow's artifacts and output logs report, borrowed.
    pub fn raw_artifact(&self) -> RawArtifact<'_> {
        match self {
            Val::Message(m) => RawArtifact::Text(&m.text),
            Val::Json(Value::String(s)) => RawArtifact::Text(s),
            Val::Json(v) => RawArtifact::Json(v),
            Val::Data(d) => RawArtifact::Map(&d.data),
            Val::DataFrame(_) | Val::List(_) => RawArtifact::Val(self),
            Val::Null => RawArtifact::Json(&Value::Null),
            Val::Opaque(s) => RawArtifact::Text(s),
        }
    }

    /// The `type` Langflow's artifacts and output logs report.
    pub fn artifact_type(&self) -> &'static str {
        match self {
            Val::Message(_) | Val::Json(Value::String(_)) => "text",
            Val::Json(Value::Object(_)) | Val::Data(_) => "object",
            Val::Json(Value::Array(_)) | Val::DataFrame(_) | Val::List(_) => "array",
            Val::Json(_) | Val::Null | Val::Opaque(_) => "unknown",
        }
    }
}

/// The raw value of an artifact, borrowed from the [`Val`] it reports.
#[derive(Debug, Clone, Copy)]
pub enum RawArtifact<'a> {
    Text(&'a str),
    Json(&'a Value),
    Map(&'a Map<String, Value>),
    Val(&'a Val),
}

impl Serialize for RawArtifact<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RawArtifact::Text(t) => s.serialize_str(t),
            RawArtifact::Json(v) => v.serialize(s),
            RawArtifact::Map(m) => m.serialize(s),
            RawArtifact::Val(v) => v.serialize(s),
        }
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("text_key", &self.text_key)?;
        m.serialize_entry("data", &self.data)?;
        m.serialize_entry("default_value", &self.default_value)?;
        m.end()
    }
}

impl Serialize for Val {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Val::Null => s.serialize_unit(),
            Val::Json(v) => v.serialize(s),
            Val::Message(m) => MessageJson {
                msg: m,
                with_id: false,
            }
            .serialize(s),
            Val::Data(d) => d.serialize(s),
            Val::DataFrame(rows) => s.collect_seq(rows.iter().map(|r| &r.data)),
            Val::List(items) => s.collect_seq(items),
            Val::Opaque(name) => s.serialize_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lower_case_hyphenated_uuids_of_version_7() {
        let (a, b) = (new_id(), new_id());
        for id in [&a, &b] {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 7);
            assert_eq!(*id, parsed.hyphenated().to_string());
        }
        assert_ne!(a, b);
    }

    #[test]
    fn timestamp_format() {
        let t = now_timestamp();
        assert!(t.ends_with(" UTC"));
        assert_eq!(t.len(), "2026-11-23 13:45:04.549509 UTC".len());
        for micros in [
            0i64,
            1_795_454_006_000_042,
            1_795_454_006_999_999,
            253_402_300_799_000_000,
        ] {
            let dt = chrono::DateTime::from_timestamp_micros(micros).unwrap();
            assert_eq!(
                format_timestamp(dt),
                dt.format("%Y-%m-%d %H:%M:%S%.6f UTC").to_string()
            );
        }
    }

    #[test]
    fn unstored_message_layout() {
        let m = Message::with_text("Echo: hello");
        let j = m.to_json(false);
        let keys: Vec<_> = j.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "text_key",
                "data",
                "default_value",
                "sender",
                "sender_name",
                "files",
                "session_id",
                "context_id",
                "run_id",
                "timestamp",
                "flow_id",
                "error",
                "edit",
                "properties",
                "category",
                "content_blocks",
                "duration",
                "session_metadata",
                "text"
            ]
        );
        let dkeys: Vec<_> = j["data"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(dkeys[0], "text");
        assert_eq!(j["properties"]["state"], "complete");
    }

    #[test]
    fn data_text_errors_name_key() {
        let d = Data::new(serde_json::from_value(json!({"a": 1})).unwrap());
        assert!(d.text().unwrap_err().contains("\"text\""));
        assert!(Val::Data(d).to_text().is_err());
    }

    #[test]
    fn usage_sum() {
        let u = Usage {
            input_tokens: Some(2),
            output_tokens: Some(3),
            total_tokens: Some(5),
        };
        assert_eq!(Usage::sum([&u, &u]).unwrap().total_tokens, Some(10));
        assert_eq!(Usage::sum([]), None);
    }
}
