//! Langflow flow documents in and out: validation of what a user sends, the engine's verdict
//! (`problems`), Langflow's response shapes, and exports that give back what was imported.
//! Shared by the REST routes and the CLI.

use std::sync::OnceLock;

use flowgate_store::FlowRecord;
use serde_json::{Map, Value, json};

use crate::timefmt;

/// Why a flow document was refused. `field` names the offending body field for 422s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub field: &'static str,
    pub message: String,
}

impl DocError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

pub const ENDPOINT_RULE: &str =
    "Endpoint name must contain only letters, numbers, hyphens, and underscores";

/// How a flow is named in a URL or on the command line: a UUID in any case (or without
/// hyphens) becomes the stored lowercase hyphenated id; anything else is an endpoint name, as is.
pub fn canonical_ident(ident: &str) -> std::borrow::Cow<'_, str> {
    match uuid::Uuid::try_parse(ident) {
        Ok(id) => id.hyphenated().to_string().into(),
        Err(_) => ident.into(),
    }
}

pub fn valid_endpoint_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Top-level fields flowgate keeps in columns. Everything else rides along in `extra`.
const MODELED: &[&str] = &[
    "name",
    "description",
    "icon",
    "icon_bg_color",
    "gradient",
    "is_component",
    "webhook",
    "endpoint_name",
    "tags",
    "locked",
    "mcp_enabled",
    "action_name",
    "action_description",
    "access_type",
    "flow_type",
    "folder_id",
];
/// Fields the server owns: taken from the server, never from the document.
const SERVER_OWNED: &[&str] = &["id", "user_id", "updated_at", "workspace_id"];

/// Validates a flow document (an object in Langflow's export format) and turns it into a record
/// for `user_id`. The id is the document's when it is a UUID, else a new one. `data` is parsed by
/// the engine once, here, and its problems recorded.
pub fn record_from_document(doc: &Value, user_id: &str) -> Result<FlowRecord, DocError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| DocError::new("body", "a flow must be a JSON object"))?;
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.trim().to_string(),
        None | Some(Value::Null) => return Err(DocError::new("name", "Field required")),
        Some(_) => return Err(DocError::new("name", "name must be a string")),
    };
    check_text("name", &name, 255)?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => uuid::Uuid::try_parse(s)
            .map_err(|_| DocError::new("id", format!("id must be a UUID, got {s:?}")))?
            .hyphenated()
            .to_string(),
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(_) => return Err(DocError::new("id", "id must be a UUID string")),
    };
    let mut record = FlowRecord {
        id,
        user_id: user_id.to_string(),
        name,
        access_type: "PRIVATE".into(),
        flow_type: "workflow".into(),
        extra: "{}".into(),
        problems: "[]".into(),
        ..Default::default()
    };
    apply_fields(&mut record, obj)?;
    match obj.get("data") {
        None | Some(Value::Null) => record.data = None,
        Some(data) => set_data(&mut record, data)?,
    }
    // Keep the document's own shape (minus data) so an export gives it back unchanged.
    let mut extra: Map<String, Value> = obj.clone();
    extra.remove("data");
    record.extra = Value::Object(extra).to_string();
    Ok(record)
}

/// Sets the modeled fields present in `obj` (a create body or a PATCH).
pub fn apply_fields(record: &mut FlowRecord, obj: &Map<String, Value>) -> Result<(), DocError> {
    for (key, value) in obj {
        match key.as_str() {
            "name" => {
                let name = string_field("name", value)?.unwrap_or_default();
                check_text("name", name.trim(), 255)?;
                record.name = name.trim().to_string();
            }
            "description" => record.description = string_field("description", value)?,
            "icon" => record.icon = string_field("icon", value)?,
            "icon_bg_color" => {
                let color = string_field("icon_bg_color", value)?;
                if let Some(c) = &color
                    && !(c.len() == 7
                        && c.starts_with('#')
                        && c[1..].bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    return Err(DocError::new(
                        "icon_bg_color",
                        "Icon background color must be a # and 6 hex digits",
                    ));
                }
                record.icon_bg_color = color;
            }
            "gradient" => record.gradient = string_field("gradient", value)?,
            "is_component" => record.is_component = bool_field("is_component", value)?,
            "webhook" => record.webhook = bool_field("webhook", value)?,
            "locked" => record.locked = bool_field("locked", value)?,
            "mcp_enabled" => record.mcp_enabled = bool_field("mcp_enabled", value)?,
            "endpoint_name" => {
                let endpoint = string_field("endpoint_name", value)?.filter(|e| !e.is_empty());
                if let Some(e) = &endpoint
                    && !valid_endpoint_name(e)
                {
                    return Err(DocError::new(
                        "endpoint_name",
                        format!("Value error, {ENDPOINT_RULE}"),
                    ));
                }
                record.endpoint_name = endpoint;
            }
            "tags" => {
                record.tags = match value {
                    Value::Null => None,
                    Value::Array(items) if items.iter().all(Value::is_string) => {
                        Some(value.to_string())
                    }
                    _ => return Err(DocError::new("tags", "tags must be a list of strings")),
                }
            }
            "action_name" => record.action_name = string_field("action_name", value)?,
            "action_description" => {
                record.action_description = string_field("action_description", value)?
            }
            "access_type" => {
                let access =
                    string_field("access_type", value)?.unwrap_or_else(|| "PRIVATE".into());
                if access != "PRIVATE" && access != "PUBLIC" {
                    return Err(DocError::new(
                        "access_type",
                        "access_type must be PRIVATE or PUBLIC",
                    ));
                }
                record.access_type = access;
            }
            "flow_type" => {
                let kind = string_field("flow_type", value)?.unwrap_or_else(|| "workflow".into());
                if kind != "workflow" && kind != "agent" {
                    return Err(DocError::new(
                        "flow_type",
                        "flow_type must be workflow or agent",
                    ));
                }
                record.flow_type = kind;
            }
            "folder_id" => {
                record.folder_id = match string_field("folder_id", value)? {
                    None => None,
                    Some(s) => Some(
                        uuid::Uuid::try_parse(&s)
                            .map_err(|_| DocError::new("folder_id", "folder_id must be a UUID"))?
                            .hyphenated()
                            .to_string(),
                    ),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Validates and stores a new `data` (nodes, edges, viewport), with its problems.
pub fn set_data(record: &mut FlowRecord, data: &Value) -> Result<(), DocError> {
    let obj = data
        .as_object()
        .ok_or_else(|| DocError::new("data", "Value error, Flow must be a valid JSON"))?;
    if !obj.contains_key("nodes") {
        return Err(DocError::new("data", "Value error, Flow must have nodes"));
    }
    if !obj.contains_key("edges") {
        return Err(DocError::new("data", "Value error, Flow must have edges"));
    }
    let flow =
        flowgate_engine::parse_flow(data).map_err(|e| DocError::new("data", e.to_string()))?;
    let problems = flowgate_engine::check_flow(&flow);
    record.webhook = record.webhook || flow_has_webhook(data);
    record.problems = serde_json::to_string(&problems).expect("problems serialise");
    record.problems_version = registry_fingerprint().to_string();
    record.data = Some(data.to_string());
    Ok(())
}

fn flow_has_webhook(data: &Value) -> bool {
    data["nodes"]
        .as_array()
        .is_some_and(|nodes| nodes.iter().any(|n| n["data"]["type"] == "Webhook"))
}

/// Recomputes `problems` from the stored data (after the engine gained components).
pub fn recheck(record: &mut FlowRecord) {
    let Some(data) = record.data.as_deref() else {
        return;
    };
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return;
    };
    if let Ok(flow) = flowgate_engine::parse_flow(&value) {
        record.problems =
            serde_json::to_string(&flowgate_engine::check_flow(&flow)).expect("problems serialise");
    }
    record.problems_version = registry_fingerprint().to_string();
}

/// Identifies the engine's component registry; stored problems computed under another one are
/// recomputed.
pub fn registry_fingerprint() -> &'static str {
    static FINGERPRINT: OnceLock<String> = OnceLock::new();
    FINGERPRINT.get_or_init(|| {
        let mut types: Vec<&str> = flowgate_engine::registry::supported_types().collect();
        types.sort_unstable();
        format!("{}:{}", env!("CARGO_PKG_VERSION"), types.join(","))
    })
}

fn string_field(field: &'static str, value: &Value) -> Result<Option<String>, DocError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            if s.chars().any(|c| c == '\0') {
                return Err(DocError::new(
                    field,
                    format!("{field} must not contain NUL characters"),
                ));
            }
            Ok(Some(s.clone()))
        }
        _ => Err(DocError::new(field, format!("{field} must be a string"))),
    }
}

fn bool_field(field: &'static str, value: &Value) -> Result<bool, DocError> {
    match value {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        _ => Err(DocError::new(
            field,
            format!("{field} must be true or false"),
        )),
    }
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), DocError> {
    crate::extract::check_label(field, value, max).map_err(|_| {
        DocError::new(
            field,
            format!("{field} must be 1 to {max} characters without control or invisible formatting characters"),
        )
    })
}

fn parse_json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The stored problems as JSON.
pub fn problems_json(record: &FlowRecord) -> Value {
    parse_json_text(&record.problems)
}

/// Langflow's `FlowRead` shape (field order included) plus `problems`.
pub fn flow_read(record: &FlowRecord) -> Value {
    json!({
        "name": record.name,
        "description": record.description,
        "icon": record.icon,
        "icon_bg_color": record.icon_bg_color,
        "gradient": record.gradient,
        "data": record.data.as_deref().map(parse_json_text),
        "is_component": record.is_component,
        "updated_at": timefmt::second_time(record.updated_at),
        "webhook": record.webhook,
        "endpoint_name": record.endpoint_name,
        "tags": record.tags.as_deref().map(parse_json_text),
        "locked": record.locked,
        "mcp_enabled": record.mcp_enabled,
        "action_name": record.action_name,
        "action_description": record.action_description,
        "access_type": record.access_type,
        "flow_type": record.flow_type,
        "a2a_enabled": false,
        "a2a_card_overrides": null,
        "id": record.id,
        "user_id": record.user_id,
        "folder_id": record.folder_id,
        "workspace_id": null,
        "problems": problems_json(record),
    })
}

/// Langflow's `FlowHeader` shape plus `problems` (no data). Serialised straight from the
/// record: stored JSON texts (`tags`, `problems`) are written as they are, not parsed and
/// re-encoded, so listing thousands of flows stays cheap.
#[derive(serde::Serialize)]
pub struct FlowHeader<'a> {
    id: &'a str,
    name: &'a str,
    folder_id: Option<&'a str>,
    is_component: bool,
    endpoint_name: Option<&'a str>,
    description: Option<&'a str>,
    data: Option<()>,
    access_type: &'a str,
    tags: Option<&'a serde_json::value::RawValue>,
    mcp_enabled: bool,
    flow_type: &'a str,
    a2a_enabled: bool,
    a2a_card_overrides: Option<()>,
    action_name: Option<&'a str>,
    action_description: Option<&'a str>,
    updated_at: String,
    problems: &'a serde_json::value::RawValue,
}

/// Stored JSON text as raw JSON; text that is not valid JSON (never written by flowgate) as null.
fn raw_json(text: &str) -> Option<&serde_json::value::RawValue> {
    serde_json::from_str::<&serde_json::value::RawValue>(text).ok()
}

pub fn flow_header(record: &FlowRecord) -> FlowHeader<'_> {
    static EMPTY: std::sync::OnceLock<Box<serde_json::value::RawValue>> =
        std::sync::OnceLock::new();
    let empty =
        EMPTY.get_or_init(|| serde_json::value::RawValue::from_string("[]".into()).expect("valid"));
    FlowHeader {
        id: &record.id,
        name: &record.name,
        folder_id: record.folder_id.as_deref(),
        is_component: record.is_component,
        endpoint_name: record.endpoint_name.as_deref(),
        description: record.description.as_deref(),
        data: None,
        access_type: &record.access_type,
        tags: record.tags.as_deref().and_then(raw_json),
        mcp_enabled: record.mcp_enabled,
        flow_type: &record.flow_type,
        a2a_enabled: false,
        a2a_card_overrides: None,
        action_name: record.action_name.as_deref(),
        action_description: record.action_description.as_deref(),
        updated_at: timefmt::second_time(record.updated_at),
        problems: raw_json(&record.problems).unwrap_or(empty),
    }
}

/// The document a user downloads: what they imported (unknown fields included, in their order),
/// with the current values of what changed since, the server-owned fields, and no secrets typed
/// into password fields (variable references stay).
pub fn export_document(record: &FlowRecord) -> Value {
    let mut doc = match parse_json_text(&record.extra) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let current = flow_read(record);
    for key in MODELED {
        let value = current.get(*key).cloned().unwrap_or(Value::Null);
        let is_default = matches!(&value, Value::Null | Value::Bool(false))
            || (*key == "access_type" && value == "PRIVATE")
            || (*key == "flow_type" && value == "workflow");
        if doc.contains_key(*key) || !is_default {
            doc.insert((*key).to_string(), value);
        }
    }
    let mut data = record
        .data
        .as_deref()
        .map(parse_json_text)
        .unwrap_or(Value::Null);
    scrub_secrets(&mut data);
    doc.insert("data".into(), data);
    for key in SERVER_OWNED {
        doc.remove(*key);
    }
    doc.insert("id".into(), record.id.clone().into());
    doc.insert("user_id".into(), record.user_id.clone().into());
    doc.insert("folder_id".into(), json!(record.folder_id));
    doc.insert(
        "updated_at".into(),
        timefmt::second_time(record.updated_at).into(),
    );
    Value::Object(doc)
}

/// Clears literal values of password fields; `load_from_db` values are variable names, kept.
pub fn scrub_secrets(data: &mut Value) {
    let Some(nodes) = data.get_mut("nodes").and_then(Value::as_array_mut) else {
        return;
    };
    for node in nodes {
        let Some(template) = node
            .pointer_mut("/data/node/template")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for field in template.values_mut() {
            let is_password = field.get("password") == Some(&Value::Bool(true));
            let from_db = field.get("load_from_db") == Some(&Value::Bool(true));
            if is_password
                && !from_db
                && let Some(value) = field.get_mut("value")
                && value.as_str().is_some_and(|s| !s.is_empty())
            {
                *value = Value::String(String::new());
            }
        }
    }
}

/// A file name for a flow inside a ZIP: the name with unsafe characters replaced.
pub fn file_name_for(record: &FlowRecord) -> String {
    let safe: String = record
        .name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim();
    if safe.is_empty() {
        format!("{}.json", record.id)
    } else {
        format!("{safe}.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names() {
        assert!(valid_endpoint_name("peer-chat_echo1"));
        assert!(!valid_endpoint_name("bad name/x"));
        assert!(!valid_endpoint_name(""));
        assert!(!valid_endpoint_name("é"));
    }

    #[test]
    fn documents_need_nodes_and_edges() {
        let doc = json!({"name": "x", "data": {"edges": []}});
        assert_eq!(
            record_from_document(&doc, "u").unwrap_err(),
            DocError::new("data", "Value error, Flow must have nodes")
        );
        let doc = json!({"name": "x", "data": {"nodes": []}});
        assert_eq!(
            record_from_document(&doc, "u").unwrap_err().message,
            "Value error, Flow must have edges"
        );
        let doc = json!({"data": {"nodes": [], "edges": []}});
        assert_eq!(record_from_document(&doc, "u").unwrap_err().field, "name");
    }

    #[test]
    fn scrubs_typed_secrets_but_keeps_variable_names() {
        let mut data = json!({"nodes": [{"data": {"node": {"template": {
            "api_key": {"password": true, "load_from_db": false, "value": "sk-live-123"},
            "other_key": {"password": true, "load_from_db": true, "value": "OPENAI_API_KEY"},
            "text": {"password": false, "value": "hello"}
        }}}}]});
        scrub_secrets(&mut data);
        let t = &data["nodes"][0]["data"]["node"]["template"];
        assert_eq!(t["api_key"]["value"], "");
        assert_eq!(t["other_key"]["value"], "OPENAI_API_KEY");
        assert_eq!(t["text"]["value"], "hello");
    }
}
