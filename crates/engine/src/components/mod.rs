//! Native implementations of Langflow components.
//!
//! Every component is a function `build(env, params, outputs)` that computes the requested
//! outputs from the node's resolved parameters, as lfx 1.13 defines it.

use crate::context::{Event, RunContext};
use crate::registry::Kind;
use crate::value::{Data, Message, Usage, Val};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

pub mod chat;
pub mod llm;
pub mod memory;
pub mod processing;
pub mod prompt;
pub mod router;
pub mod text;

/// The resolved parameters of a node for one run: field name -> value.
///
/// Two layers, because most of a node's values are the same on every run: `defaults` holds
/// the node's template values, computed once per compiled flow and shared by every run (an
/// `Arc` clone), and `set` what this run set on top (tweaks, inputs, edges, variables). Copying
/// the whole template per run was a twentieth of the request threads' CPU in a chat-echo run.
#[derive(Debug, Clone, Default)]
pub struct Params {
    defaults: Arc<HashMap<String, Val>>,
    /// Shadows `defaults`; `None` marks a removed field.
    set: HashMap<String, Option<Val>>,
}

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parameters starting from a node's shared template values.
    pub fn with_defaults(defaults: Arc<HashMap<String, Val>>) -> Self {
        Self {
            defaults,
            set: HashMap::new(),
        }
    }

    pub fn set(&mut self, name: impl Into<String>, v: Val) {
        self.set.insert(name.into(), Some(v));
    }

    pub fn get(&self, name: &str) -> Option<&Val> {
        match self.set.get(name) {
            Some(v) => v.as_ref(),
            None => self.defaults.get(name),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Val> {
        let old = match self.set.remove(name) {
            Some(v) => v,
            None => self.defaults.get(name).cloned(),
        };
        if self.defaults.contains_key(name) {
            self.set.insert(name.to_owned(), None);
        }
        old
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Text of a field ("" when absent).
    pub fn text(&self, name: &str) -> Result<String, ComponentError> {
        match self.get(name) {
            None => Ok(String::new()),
            Some(v) => v.to_text().map_err(ComponentError::Failed),
        }
    }

    /// Text of a field, or `default` when absent.
    pub fn text_or(&self, name: &str, default: &str) -> Result<String, ComponentError> {
        match self.get(name) {
            None | Some(Val::Null) => Ok(default.to_owned()),
            Some(v) => v.to_text().map_err(ComponentError::Failed),
        }
    }

    pub fn bool_or(&self, name: &str, default: bool) -> bool {
        self.get(name).and_then(Val::as_bool).unwrap_or(default)
    }

    pub fn i64_or(&self, name: &str, default: i64) -> i64 {
        self.get(name).and_then(Val::as_i64).unwrap_or(default)
    }

    pub fn f64_opt(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(Val::as_f64)
    }

    /// List of strings (e.g. `files`).
    pub fn strings(&self, name: &str) -> Vec<String> {
        fn collect(v: &Val, out: &mut Vec<String>) {
            match v {
                Val::Json(Value::String(s)) if !s.is_empty() => out.push(s.clone()),
                Val::Json(Value::Array(a)) => {
                    for x in a {
                        collect(&Val::Json(x.clone()), out);
                    }
                }
                Val::Json(Value::Object(o)) => {
                    if let Some(Value::String(p)) = o.get("path") {
                        out.push(p.clone());
                    }
                }
                Val::List(l) => l.iter().for_each(|x| collect(x, out)),
                Val::Message(m) if !m.text.is_empty() => out.push(m.text.clone()),
                _ => {}
            }
        }
        let mut out = Vec::new();
        if let Some(v) = self.get(name) {
            collect(v, &mut out);
        }
        out
    }
}

/// What a node knows about the node feeding its first incoming edge.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    pub id: String,
    pub display_name: String,
    /// Model name when the upstream component has one, else its display name.
    pub source: String,
}

/// Everything a component sees of the run besides its parameters.
pub struct NodeEnv<'a> {
    pub node_id: &'a str,
    pub display_name: &'a str,
    pub kind: Kind,
    pub flow_id: &'a str,
    pub session_id: &'a str,
    pub run_id: &'a str,
    pub ctx: &'a dyn RunContext,
    pub events: Option<&'a tokio::sync::mpsc::Sender<Event>>,
    pub cancel: &'a CancellationToken,
    pub connected_to_chat_input: bool,
    pub connected_to_chat_output: bool,
    pub upstream: Option<Upstream>,
    /// Sum of the token usage of every upstream model that ran.
    pub upstream_usage: Option<Usage>,
}

impl NodeEnv<'_> {
    /// Send an event; a closed channel (client gone) cancels the run.
    pub async fn emit(&self, ev: Event) -> Result<(), ComponentError> {
        if let Some(tx) = self.events
            && tx.send(ev).await.is_err()
        {
            self.cancel.cancel();
            return Err(ComponentError::Cancelled);
        }
        Ok(())
    }

    /// Store a message (giving it an id, run id and flow id when missing) and emit `add_message`.
    pub async fn store(&self, msg: &mut Message) -> Result<(), ComponentError> {
        if msg.id.is_none() {
            msg.id = Some(crate::value::new_id());
        }
        if msg.flow_id.is_none() {
            msg.flow_id = Some(self.flow_id.to_owned());
        }
        if msg.run_id.is_none() {
            msg.run_id = Some(self.run_id.to_owned());
        }
        if msg.session_metadata.is_none() {
            msg.session_metadata = Some(serde_json::json!({"graph_run_id": self.run_id}));
        }
        if msg.sender.is_none() {
            msg.sender = Some("Machine".into());
        }
        if msg.sender_name.is_none() {
            msg.sender_name = Some("AI".into());
        }
        self.ctx.store_message(msg);
        if self.events.is_none() {
            // Not streaming: nobody would read the event, so do not build it.
            return Ok(());
        }
        self.emit(Event::AddMessage(msg.to_json(true))).await
    }
}

/// What a node produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Output name -> value, in computation order.
    pub values: Vec<(String, Val)>,
    /// Outputs this node stopped (branches below them do not run).
    pub stopped: Vec<String>,
    /// Tokens used by a model call.
    pub token_usage: Option<Usage>,
    /// Model name, for the `source` of a downstream ChatOutput.
    pub model_name: Option<String>,
}

impl Outcome {
    pub fn single(name: &str, v: Val) -> Self {
        Outcome {
            values: vec![(name.to_owned(), v)],
            ..Default::default()
        }
    }

    pub fn get(&self, name: &str) -> Option<&Val> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Why a component failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComponentError {
    #[error("{0}")]
    Failed(String),
    /// The request named something unusable (e.g. a file that is not the caller's): 422.
    #[error("{0}")]
    BadInput(String),
    /// A model provider answered with an error (status when it sent one).
    #[error("{message}")]
    Upstream {
        status: Option<u16>,
        message: String,
    },
    #[error("run cancelled")]
    Cancelled,
}

impl From<String> for ComponentError {
    fn from(s: String) -> Self {
        ComponentError::Failed(s)
    }
}

/// Dispatch to the implementation of `kind`.
pub async fn build(
    env: &NodeEnv<'_>,
    p: &Params,
    outputs: &[String],
) -> Result<Outcome, ComponentError> {
    match env.kind {
        Kind::ChatInput => chat::chat_input(env, p).await,
        Kind::ChatOutput => chat::chat_output(env, p).await,
        Kind::TextInput => text::text_input(p),
        Kind::TextOutput => text::text_output(p),
        Kind::Webhook => text::webhook(p),
        Kind::Prompt => prompt::build_prompt(p),
        Kind::LanguageModel | Kind::OpenAIModel => llm::build(env, p, outputs).await,
        Kind::Parser => processing::parser(p),
        Kind::CombineText => processing::combine_text(p),
        Kind::SplitText => processing::split_text(p),
        Kind::ConditionalRouter => router::build(p, outputs),
        Kind::Memory => memory::build(env, p, outputs).await,
    }
}

// ---------------------------------------------------------------- helpers

fn re(cell: &'static OnceLock<regex::Regex>, pat: &str) -> &'static regex::Regex {
    cell.get_or_init(|| regex::Regex::new(pat).expect("static regex"))
}

/// lfx `clean_string`: blank lines emptied, 3+ newlines collapsed to 2.
pub fn clean_string(s: &str) -> String {
    static BLANK: OnceLock<regex::Regex> = OnceLock::new();
    static MANY: OnceLock<regex::Regex> = OnceLock::new();
    let s = re(&BLANK, r"(?m)^\s*$").replace_all(s, "");
    re(&MANY, r"\n{3,}").replace_all(&s, "\n\n").into_owned()
}

/// Python's `str()` of a JSON value.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        other => py_repr(other),
    }
}

fn py_repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("'{}': {}", k, py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => py_str(other),
    }
}

/// Python `str.format` with named fields only. `lookup` returns `None` for a missing key.
pub fn py_format(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ComponentError> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if matches!(chars.peek(), Some((_, '{'))) => {
                chars.next();
                out.push('{');
            }
            '}' if matches!(chars.peek(), Some((_, '}'))) => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let rest = &template[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(ComponentError::Failed(
                        "Single '{' encountered in format string".into(),
                    ));
                };
                let inner = &rest[..end];
                let key = inner.split([':', '!']).next().unwrap_or("").trim();
                match lookup(key) {
                    Some(v) => out.push_str(&v),
                    None => return Err(ComponentError::Failed(format!("'{key}'"))),
                }
                for _ in 0..inner.chars().count() + 1 {
                    chars.next();
                }
            }
            '}' => {
                return Err(ComponentError::Failed(
                    "Single '}' encountered in format string".into(),
                ));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// JSON pretty-printed like orjson `OPT_INDENT_2` inside a Markdown code block.
fn data_code_block(d: &Data) -> String {
    let body = serde_json::to_string_pretty(&d.data).unwrap_or_default();
    format!("```json\n{body}\n```")
}

/// A DataFrame as a Markdown pipe table (what lfx's `to_markdown` produces, simplified).
pub fn dataframe_markdown(rows: &[Data]) -> String {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for k in r.data.keys() {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    let cell = |v: Option<&Value>| -> String {
        let s = v.map(py_str).unwrap_or_default();
        s.replace("\r\n", "\n")
            .trim_matches('\n')
            .replace('\n', "<br/>")
            .replace('|', "\\|")
    };
    let mut out = format!(
        "| {} |\n|{}|",
        cols.join(" | "),
        vec!["---"; cols.len()].join("|")
    );
    for r in rows {
        let cells: Vec<String> = cols.iter().map(|c| cell(r.data.get(c))).collect();
        out.push_str(&format!("\n| {} |", cells.join(" | ")));
    }
    out
}

/// lfx `safe_convert`: any value to display text.
pub fn safe_convert(v: &Val) -> Result<String, ComponentError> {
    Ok(match v {
        Val::Json(Value::String(s)) => clean_string(s),
        Val::Message(m) => m.text.clone(),
        Val::Data(d) => clean_string(&data_code_block(d)),
        Val::DataFrame(rows) => dataframe_markdown(rows),
        Val::List(items) => items
            .iter()
            .map(safe_convert)
            .collect::<Result<Vec<_>, _>>()?
            .join("\n"),
        Val::Null => String::new(),
        Val::Json(other) => clean_string(&py_str(other)),
        Val::Opaque(s) => (*s).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A run's values shadow the shared template values; removing one hides the default too,
    /// and the shared map itself is never changed by a run.
    #[test]
    fn params_layer_a_run_over_shared_defaults() {
        let defaults = Arc::new(HashMap::from([
            ("a".to_string(), Val::Json(json!("template a"))),
            ("b".to_string(), Val::Json(json!(true))),
        ]));
        let mut p = Params::with_defaults(defaults.clone());
        assert_eq!(p.text("a").unwrap(), "template a");
        p.set("a", Val::Json(json!("tweaked")));
        p.set("c", Val::Json(json!(3)));
        assert_eq!(p.text("a").unwrap(), "tweaked");
        assert_eq!(p.i64_or("c", 0), 3);
        assert!(p.bool_or("b", false));
        assert!(matches!(p.remove("b"), Some(Val::Json(v)) if v == json!(true)));
        assert!(!p.contains("b"));
        assert!(!p.bool_or("b", false));
        assert!(p.remove("b").is_none());
        assert!(matches!(p.remove("a"), Some(Val::Json(v)) if v == json!("tweaked")));
        assert!(
            !p.contains("a"),
            "removing a set value must not uncover the default"
        );
        assert!(Params::with_defaults(defaults.clone()).contains("b"));
        assert_eq!(defaults.len(), 2);
    }

    #[test]
    fn format_like_python() {
        let f = |k: &str| (k == "a").then(|| "X".to_string());
        assert_eq!(py_format("{a}-{{a}}", f).unwrap(), "X-{a}");
        assert_eq!(
            py_format("{b}", f).unwrap_err(),
            ComponentError::Failed("'b'".into())
        );
        assert!(py_format("a } b", f).is_err());
        assert_eq!(py_format("é{a}ü", f).unwrap(), "éXü");
    }

    #[test]
    fn clean_string_collapses() {
        assert_eq!(clean_string("a\n  \n\n\n\nb"), "a\n\nb");
    }

    #[test]
    fn py_str_values() {
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(null)), "None");
        assert_eq!(py_str(&json!({"a": [1, "x"]})), "{'a': [1, 'x']}");
    }

    #[test]
    fn safe_convert_data_and_frames() {
        let d = Data::new(serde_json::from_value(json!({"a": 1})).unwrap());
        assert_eq!(
            safe_convert(&Val::Data(d.clone())).unwrap(),
            "```json\n{\n  \"a\": 1\n}\n```"
        );
        assert_eq!(
            safe_convert(&Val::DataFrame(vec![d])).unwrap(),
            "| a |\n|---|\n| 1 |"
        );
    }
}
