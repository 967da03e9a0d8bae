//! Compile a flow once, run it many times.
//!
//! [`compile`] validates the flow and precomputes everything that does not depend on a
//! request: the schedule, each node's static field values, edge wiring, which outputs
//! each node computes, the part of the graph a run executes, and the tweak lookup tables.
//! [`execute`] then only creates values.

use crate::check::{self, Problem};
use crate::components::{self, ComponentError, NodeEnv, Outcome, Params, Upstream};
use crate::context::{Event, RunContext};
use crate::flow::Flow;
use crate::registry::{self, Kind};
use crate::value::{Message, RawArtifact, Usage, Val};
use futures::stream::{FuturesUnordered, StreamExt};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

/// `input_type` of a run request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputType {
    #[default]
    Chat,
    Text,
    Any,
}

impl std::str::FromStr for InputType {
    type Err = RunError;
    fn from_str(s: &str) -> Result<Self, RunError> {
        match s {
            "chat" => Ok(InputType::Chat),
            "text" => Ok(InputType::Text),
            "any" => Ok(InputType::Any),
            _ => Err(RunError::Invalid(
                "input_type must be one of chat, text, any".into(),
            )),
        }
    }
}

/// `output_type` of a run request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputType {
    #[default]
    Chat,
    Text,
    Any,
    Debug,
}

impl std::str::FromStr for OutputType {
    type Err = RunError;
    fn from_str(s: &str) -> Result<Self, RunError> {
        match s {
            "chat" => Ok(OutputType::Chat),
            "text" => Ok(OutputType::Text),
            "any" => Ok(OutputType::Any),
            "debug" => Ok(OutputType::Debug),
            _ => Err(RunError::Invalid(
                "output_type must be one of chat, text, any, debug".into(),
            )),
        }
    }
}

/// One run of a flow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRequest {
    pub input_value: Option<String>,
    pub input_type: InputType,
    pub output_type: OutputType,
    /// Node id or display name whose result to return.
    pub output_component: Option<String>,
    pub tweaks: Map<String, Value>,
    pub session_id: Option<String>,
    /// `?stream=` / body `stream`: also a scalar tweak on every `stream` field.
    pub stream: bool,
    /// Body of a `/webhook` call, handed to Webhook nodes as their `data` field.
    pub webhook_payload: Option<String>,
}

/// Why a flow cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems_detail(.problems))]
pub struct CompileError {
    pub problems: Vec<Problem>,
}

/// The problems of a flow as one `detail` string (each node and why, `; `-separated).
pub fn problems_detail(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a run failed. [`RunError::status`] gives the HTTP status, `to_string()` the `detail`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// 400 (the input_value / tweak clash).
    #[error("{0}")]
    BadRequest(String),
    /// 422: a bad tweak or request field.
    #[error("{0}")]
    Invalid(String),
    /// 422: the flow has problems and cannot run.
    #[error("{}", problems_detail(.0))]
    Problems(Vec<Problem>),
    /// 500: a component failed.
    #[error("Error building Component {component}: {message}")]
    Component {
        component: String,
        node_id: String,
        message: String,
    },
    /// A model provider failed: its status when it is 401/403/429, else 502.
    #[error("Error building Component {component}: {message}")]
    Upstream {
        component: String,
        node_id: String,
        status: Option<u16>,
        message: String,
    },
    /// The run was cancelled (client gone).
    #[error("run cancelled")]
    Cancelled,
}

impl RunError {
    pub fn status(&self) -> u16 {
        match self {
            RunError::BadRequest(_) => 400,
            RunError::Invalid(_) | RunError::Problems(_) => 422,
            RunError::Component { .. } => 500,
            RunError::Upstream { status, .. } => match status {
                Some(s @ (401 | 403 | 429)) => *s,
                _ => 502,
            },
            RunError::Cancelled => 499,
        }
    }
}

impl From<CompileError> for RunError {
    fn from(e: CompileError) -> Self {
        RunError::Problems(e.problems)
    }
}

#[derive(Debug, Clone)]
struct CField {
    name: String,
    ty: String,
    list: bool,
    load_from_db: bool,
    /// Static value (file fields: `file_path`; `str`: `\n` unescaped; numbers cast).
    value: Value,
    /// Not passed to the component unless tweaked (show: false, type other, code).
    hidden: bool,
}

#[derive(Debug, Clone)]
struct InEdge {
    src: usize,
    output: String,
    field: String,
    list: bool,
}

#[derive(Debug, Clone)]
struct CNode {
    id: String,
    display_name: String,
    component_type: String,
    kind: Kind,
    fields: Vec<CField>,
    field_pos: HashMap<String, usize>,
    incoming: Vec<InEdge>,
    edge_fed: HashSet<String>,
    preds: Vec<usize>,
    succs: Vec<usize>,
    /// Outputs to compute: those an edge consumes, or all when none is consumed.
    compute: Vec<String>,
    connected_to_chat_input: bool,
    connected_to_chat_output: bool,
    /// Every node upstream (for usage accumulation on output nodes).
    ancestors: Vec<usize>,
    /// The template values every run starts from: fields neither hidden, fed by an edge nor
    /// read from a variable. Built once here, shared by the runs' [`Params`].
    defaults: Arc<HashMap<String, Val>>,
    /// Fields whose value names a global variable (`load_from_db`), read at run time unless
    /// tweaked: (position in `fields`, variable name).
    from_variables: Vec<(usize, String)>,
}

/// A validated, scheduled flow. Immutable; share it in an `Arc`.
#[derive(Debug, Clone)]
pub struct CompiledFlow {
    flow_id: String,
    nodes: Vec<CNode>,
    by_id: HashMap<String, usize>,
    by_display: HashMap<String, Vec<usize>>,
    /// Field name -> nodes having it (scalar tweaks).
    by_field: HashMap<String, Vec<usize>>,
    /// Nodes a run executes (the part connected to a chat/webhook input, else all).
    runs: Vec<bool>,
}

impl CompiledFlow {
    pub fn flow_id(&self) -> &str {
        &self.flow_id
    }

    /// Number of runnable nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

fn unescape_newlines(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("\\n", "\n")),
        Value::Array(a) => Value::Array(a.iter().map(unescape_newlines).collect()),
        other => other.clone(),
    }
}

fn cast_value(ty: &str, v: &Value) -> Value {
    match (ty, v) {
        ("str" | "prompt", _) => unescape_newlines(v),
        ("int", Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| s.trim().parse::<f64>().map(|f| Value::from(f as i64)))
            .unwrap_or_else(|_| v.clone()),
        ("int", Value::Number(n)) if n.is_f64() => n
            .as_f64()
            .map(|f| Value::from(f as i64))
            .unwrap_or_else(|| v.clone()),
        ("float" | "slider", Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or_else(|_| v.clone()),
        _ => v.clone(),
    }
}

fn compile_field(name: &str, f: &Map<String, Value>) -> CField {
    let ty = f
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let list = f.get("list").and_then(Value::as_bool).unwrap_or(false);
    let raw = if ty == "file" {
        f.get("file_path").cloned().unwrap_or(Value::Null)
    } else {
        f.get("value").cloned().unwrap_or(Value::Null)
    };
    let hidden = name == "code"
        || ty == "code"
        || ty == "other"
        || f.get("show").and_then(Value::as_bool) == Some(false);
    CField {
        name: name.to_owned(),
        load_from_db: f.get("load_from_db").and_then(Value::as_bool) == Some(true),
        value: cast_value(&ty, &raw),
        ty,
        list,
        hidden,
    }
}

/// Validate and schedule a flow. Fails with every problem [`check::check_flow`] finds.
pub fn compile(flow_id: &str, flow: &Flow) -> Result<CompiledFlow, CompileError> {
    let problems = check::check_flow(flow);
    if !problems.is_empty() {
        return Err(CompileError { problems });
    }
    let mut nodes: Vec<CNode> = Vec::new();
    let mut by_id = HashMap::new();
    for n in flow.components() {
        let spec = registry::spec(&n.component_type).expect("checked");
        let mut fields = Vec::new();
        let mut field_pos = HashMap::new();
        for (name, f) in &n.template {
            if let Some(f) = f.as_object() {
                field_pos.insert(name.clone(), fields.len());
                fields.push(compile_field(name, f));
            }
        }
        by_id.insert(n.id.clone(), nodes.len());
        nodes.push(CNode {
            id: n.id.clone(),
            display_name: n.display_name.clone(),
            component_type: n.component_type.clone(),
            kind: spec.kind,
            fields,
            field_pos,
            incoming: Vec::new(),
            edge_fed: HashSet::new(),
            preds: Vec::new(),
            succs: Vec::new(),
            compute: Vec::new(),
            connected_to_chat_input: false,
            connected_to_chat_output: false,
            ancestors: Vec::new(),
            defaults: Arc::default(),
            from_variables: Vec::new(),
        });
    }
    let mut consumed: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
    for e in &flow.edges {
        let (Some(&s), Some(&t)) = (by_id.get(&e.source), by_id.get(&e.target)) else {
            continue;
        };
        let output = e.source_output.clone().unwrap_or_default();
        let field = e.target_field.clone().unwrap_or_default();
        let list = nodes[t]
            .field_pos
            .get(&field)
            .map(|&i| nodes[t].fields[i].list)
            .unwrap_or(false);
        nodes[t].incoming.push(InEdge {
            src: s,
            output: output.clone(),
            field: field.clone(),
            list,
        });
        nodes[t].edge_fed.insert(field);
        if !nodes[t].preds.contains(&s) {
            nodes[t].preds.push(s);
        }
        if !nodes[s].succs.contains(&t) {
            nodes[s].succs.push(t);
        }
        if !consumed[s].contains(&output) {
            consumed[s].push(output);
        }
    }
    for n in &mut nodes {
        let (defaults, from_variables) = template_values(n);
        n.defaults = Arc::new(defaults);
        n.from_variables = from_variables;
    }
    for (i, n) in flow.components().enumerate() {
        let declared: Vec<String> = n.outputs.iter().map(|o| o.name.clone()).collect();
        nodes[i].compute = if consumed[i].is_empty() {
            if declared.is_empty() {
                default_outputs(nodes[i].kind)
            } else {
                declared
            }
        } else {
            declared
                .into_iter()
                .filter(|o| consumed[i].contains(o))
                .collect()
        };
    }
    for i in 0..nodes.len() {
        nodes[i].connected_to_chat_input = nodes[i]
            .preds
            .iter()
            .any(|&p| nodes[p].kind == Kind::ChatInput);
        nodes[i].connected_to_chat_output = nodes[i]
            .succs
            .iter()
            .any(|&s| nodes[s].kind == Kind::ChatOutput);
        nodes[i].ancestors = closure(&nodes, i, |n| &n.preds);
    }
    // The part a run executes.
    let starts: Vec<usize> = (0..nodes.len())
        .filter(|&i| matches!(nodes[i].kind, Kind::ChatInput | Kind::Webhook))
        .collect();
    let runs = if starts.is_empty() {
        vec![true; nodes.len()]
    } else {
        let mut keep = vec![false; nodes.len()];
        for &s in &starts {
            keep[s] = true;
            for d in closure(&nodes, s, |n| &n.succs) {
                keep[d] = true;
                for a in closure(&nodes, d, |n| &n.preds) {
                    keep[a] = true;
                }
            }
        }
        keep
    };
    let mut by_display: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_field: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        by_display
            .entry(n.display_name.clone())
            .or_default()
            .push(i);
        for f in &n.fields {
            by_field.entry(f.name.clone()).or_default().push(i);
        }
    }
    Ok(CompiledFlow {
        flow_id: flow_id.to_owned(),
        nodes,
        by_id,
        by_display,
        by_field,
        runs,
    })
}

fn default_outputs(kind: Kind) -> Vec<String> {
    let names: &[&str] = match kind {
        Kind::ChatInput | Kind::ChatOutput => &["message"],
        Kind::TextInput | Kind::TextOutput => &["text"],
        Kind::Prompt => &["prompt"],
        Kind::LanguageModel | Kind::OpenAIModel => &["text_output"],
        Kind::Parser => &["parsed_text"],
        Kind::CombineText => &["combined_text"],
        Kind::SplitText => &["dataframe"],
        Kind::ConditionalRouter => &["true_result", "false_result"],
        Kind::Memory => &["messages_text"],
        Kind::Webhook => &["output_data"],
    };
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn closure(nodes: &[CNode], start: usize, next: impl Fn(&CNode) -> &Vec<usize>) -> Vec<usize> {
    let mut seen = vec![false; nodes.len()];
    let mut stack: Vec<usize> = next(&nodes[start]).clone();
    let mut out = Vec::new();
    while let Some(i) = stack.pop() {
        if !seen[i] {
            seen[i] = true;
            out.push(i);
            stack.extend(next(&nodes[i]).iter().copied());
        }
    }
    out.sort_unstable();
    out
}

/// Per-node field overrides of one run.
type Overrides = Vec<Vec<(usize, Value)>>;

fn is_input_node(kind: Kind, t: InputType) -> bool {
    match t {
        InputType::Chat => kind == Kind::ChatInput,
        InputType::Text => kind == Kind::TextInput,
        InputType::Any => matches!(kind, Kind::ChatInput | Kind::TextInput | Kind::Webhook),
    }
}

/// Validate the tweaks and turn them into per-node overrides.
fn plan_tweaks(c: &CompiledFlow, req: &RunRequest) -> Result<Overrides, RunError> {
    let mut ov: Overrides = vec![Vec::new(); c.nodes.len()];
    // Langflow's clash rule: an input_value in the body and an input_value tweak on the
    // matching input node (named by a key containing its type or display name).
    if req.input_value.is_some() {
        for (key, value) in &req.tweaks {
            let Some(obj) = value.as_object() else {
                continue;
            };
            if obj.get("input_value").is_none_or(Value::is_null) {
                continue;
            }
            if req.input_type == InputType::Chat
                && (key.contains("ChatInput") || key.contains("Chat Input"))
            {
                return Err(RunError::BadRequest(
                    "If you pass an input_value to the chat input, you cannot pass a tweak with the same name.".into(),
                ));
            }
            if req.input_type == InputType::Text
                && (key.contains("TextInput") || key.contains("Text Input"))
            {
                return Err(RunError::BadRequest(
                    "If you pass an input_value to the text input, you cannot pass a tweak with the same name.".into(),
                ));
            }
        }
    }
    let set = |ov: &mut Overrides,
               node: usize,
               field: &str,
               v: &Value,
               key: &str|
     -> Result<(), RunError> {
        let n = &c.nodes[node];
        let Some(&pos) = n.field_pos.get(field) else {
            return Err(RunError::Invalid(format!(
                "Tweak for node {key} names field \"{field}\", which node {} ({}) does not have",
                n.id, n.component_type
            )));
        };
        if field == "code" || n.fields[pos].ty == "code" {
            return Err(RunError::Invalid(format!(
                "Tweaks cannot change the code of a component (node {}, field \"{field}\")",
                n.id
            )));
        }
        ov[node].push((pos, v.clone()));
        Ok(())
    };
    for (key, value) in &req.tweaks {
        match value {
            Value::Object(fields) => {
                let targets: Vec<usize> = match c.by_id.get(key) {
                    Some(&i) => vec![i],
                    None => c.by_display.get(key).cloned().unwrap_or_default(),
                };
                if targets.is_empty() {
                    if fields.is_empty() {
                        continue;
                    }
                    return Err(RunError::Invalid(format!(
                        "Tweak names node \"{key}\", but this flow has no node with that id or display name"
                    )));
                }
                for t in targets {
                    for (f, v) in fields {
                        set(&mut ov, t, f, v, key)?;
                    }
                }
            }
            scalar => {
                let Some(nodes) = c.by_field.get(key) else {
                    return Err(RunError::Invalid(format!(
                        "Tweak \"{key}\" matches no field of any node in this flow"
                    )));
                };
                for &n in nodes {
                    set(&mut ov, n, key, scalar, key)?;
                }
            }
        }
    }
    // `?stream=` is a scalar tweak on `stream`.
    if let Some(nodes) = c.by_field.get("stream") {
        for &n in nodes {
            let pos = c.nodes[n].field_pos["stream"];
            ov[n].push((pos, Value::Bool(req.stream)));
        }
    }
    if let Some(oc) = &req.output_component
        && !c.by_id.contains_key(oc)
        && !c.by_display.contains_key(oc)
    {
        return Err(RunError::Invalid(format!(
            "output_component \"{oc}\" names no node of this flow"
        )));
    }
    Ok(ov)
}

type NodeFuture<'a> =
    Pin<Box<dyn Future<Output = (usize, Result<Outcome, ComponentError>)> + Send + 'a>>;

/// A node's template values for [`CNode::defaults`] and the fields read from variables.
fn template_values(n: &CNode) -> (HashMap<String, Val>, Vec<(usize, String)>) {
    let mut defaults = HashMap::new();
    let mut from_variables = Vec::new();
    for (pos, f) in n.fields.iter().enumerate() {
        if f.hidden || n.edge_fed.contains(&f.name) {
            continue;
        }
        if f.load_from_db
            && let Value::String(name) = &f.value
            && !name.is_empty()
        {
            from_variables.push((pos, name.clone()));
            continue;
        }
        defaults.insert(f.name.clone(), Val::Json(f.value.clone()));
    }
    (defaults, from_variables)
}

/// Static + tweaked + injected values of a node (before variables and edges), and the
/// variables to read: (field, variable name).
fn base_params(
    c: &CompiledFlow,
    i: usize,
    ov: &Overrides,
    req: &RunRequest,
    session_id: &str,
) -> (Params, Vec<(String, String)>) {
    let n = &c.nodes[i];
    let mut p = Params::with_defaults(n.defaults.clone());
    for (pos, v) in &ov[i] {
        let f = &n.fields[*pos];
        p.set(f.name.clone(), Val::Json(cast_value(&f.ty, v)));
    }
    let vars = n
        .from_variables
        .iter()
        .filter(|(pos, _)| !ov[i].iter().any(|(tweaked, _)| tweaked == pos))
        .map(|(pos, var)| (n.fields[*pos].name.clone(), var.clone()))
        .collect();
    if let Some(input) = &req.input_value
        && is_input_node(n.kind, req.input_type)
        && !n.edge_fed.contains("input_value")
    {
        let field = if n.kind == Kind::Webhook {
            "data"
        } else {
            "input_value"
        };
        p.set(field, Val::Json(Value::String(input.clone())));
    }
    if n.kind == Kind::Webhook
        && let Some(payload) = &req.webhook_payload
        && !n.edge_fed.contains("data")
    {
        p.set("data", Val::Json(Value::String(payload.clone())));
    }
    if n.field_pos.contains_key("session_id") && !n.edge_fed.contains("session_id") {
        p.set(
            "session_id",
            Val::Json(Value::String(session_id.to_owned())),
        );
    }
    (p, vars)
}

struct RunState {
    outcomes: Vec<Option<Arc<Outcome>>>,
    skipped: Vec<bool>,
}

impl RunState {
    fn edge_live(&self, e: &InEdge) -> bool {
        !self.skipped[e.src]
            && self.outcomes[e.src]
                .as_ref()
                .is_some_and(|o| !o.stopped.contains(&e.output))
    }
}

/// Run a compiled flow. When `events` is given, streaming events are sent on it — ending
/// with `end` (the response) or `error` — and a closed receiver cancels the run.
/// Cancelling `cancel` (or dropping the future) stops every node and model call in flight.
pub async fn execute(
    compiled: &CompiledFlow,
    req: RunRequest,
    ctx: &dyn RunContext,
    events: Option<Sender<Event>>,
    cancel: CancellationToken,
) -> Result<RunOutput, RunError> {
    let result = tokio::select! {
        r = execute_inner(compiled, &req, ctx, events.as_ref(), &cancel) => r,
        _ = cancel.cancelled() => Err(RunError::Cancelled),
    };
    if let Some(tx) = &events {
        let ev = match &result {
            Ok(v) => Some(Event::End(v.to_value())),
            Err(RunError::Cancelled) => None,
            Err(e) => Some(Event::Error(e.to_string())),
        };
        if let Some(ev) = ev {
            let _ = tx.send(ev).await;
        }
    }
    result
}

async fn execute_inner(
    c: &CompiledFlow,
    req: &RunRequest,
    ctx: &dyn RunContext,
    events: Option<&Sender<Event>>,
    cancel: &CancellationToken,
) -> Result<RunOutput, RunError> {
    let ov = plan_tweaks(c, req)?;
    let session_id: String = req
        .session_id
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| c.flow_id.clone());
    let run_id = crate::value::new_id();
    let n = c.nodes.len();
    let mut st = RunState {
        outcomes: vec![None; n],
        skipped: vec![false; n],
    };
    let mut waiting: Vec<usize> = (0..n)
        .map(|i| c.nodes[i].preds.iter().filter(|&&p| c.runs[p]).count())
        .collect();
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| c.runs[i] && waiting[i] == 0).collect();
    let mut running: FuturesUnordered<NodeFuture<'_>> = FuturesUnordered::new();
    let session_ref = session_id.as_str();
    let run_ref = run_id.as_str();
    let done = |i: usize, ready: &mut VecDeque<usize>, waiting: &mut Vec<usize>| {
        for &s in &c.nodes[i].succs {
            if c.runs[s] {
                waiting[s] -= 1;
                if waiting[s] == 0 {
                    ready.push_back(s);
                }
            }
        }
    };
    loop {
        while let Some(i) = ready.pop_front() {
            let node = &c.nodes[i];
            let live: Vec<&InEdge> = node.incoming.iter().filter(|e| st.edge_live(e)).collect();
            if !node.incoming.is_empty() && live.is_empty() {
                st.skipped[i] = true;
                done(i, &mut ready, &mut waiting);
                continue;
            }
            let (mut params, vars) = base_params(c, i, &ov, req, session_ref);
            let mut lists: HashMap<&str, Vec<Val>> = HashMap::new();
            for e in &live {
                let Some(v) = st.outcomes[e.src].as_ref().and_then(|o| o.get(&e.output)) else {
                    continue;
                };
                if e.list {
                    let entry = lists.entry(e.field.as_str()).or_default();
                    match v {
                        Val::List(items) => entry.extend(items.iter().cloned()),
                        other => entry.push(other.clone()),
                    }
                } else {
                    params.set(e.field.clone(), v.clone());
                }
            }
            for (f, items) in lists {
                params.set(f, Val::List(items));
            }
            let upstream = node.incoming.first().map(|e| {
                let src = &c.nodes[e.src];
                let model = st.outcomes[e.src]
                    .as_ref()
                    .and_then(|o| o.model_name.clone());
                Upstream {
                    id: src.id.clone(),
                    display_name: src.display_name.clone(),
                    source: model.unwrap_or_else(|| src.display_name.clone()),
                }
            });
            let upstream_usage = if registry::is_output_type(&node.component_type) {
                let usages: Vec<Usage> = node
                    .ancestors
                    .iter()
                    .filter_map(|&a| st.outcomes[a].as_ref().and_then(|o| o.token_usage))
                    .collect();
                Usage::sum(usages.iter())
            } else {
                None
            };
            running.push(Box::pin(async move {
                let mut params = params;
                for (field, var) in vars {
                    match ctx.variable(&var).await {
                        Some(v) => params.set(field, Val::Json(Value::String(v))),
                        None => {
                            return (
                                i,
                                Err(ComponentError::Failed(format!(
                                    "Variable {var} (field \"{field}\") not found"
                                ))),
                            );
                        }
                    }
                }
                let env = NodeEnv {
                    node_id: &node.id,
                    display_name: &node.display_name,
                    kind: node.kind,
                    flow_id: &c.flow_id,
                    session_id: session_ref,
                    run_id: run_ref,
                    ctx,
                    events,
                    cancel,
                    connected_to_chat_input: node.connected_to_chat_input,
                    connected_to_chat_output: node.connected_to_chat_output,
                    upstream,
                    upstream_usage,
                };
                let r = components::build(&env, &params, &node.compute).await;
                (i, r)
            }));
        }
        let Some((i, result)) = running.next().await else {
            break;
        };
        let node = &c.nodes[i];
        match result {
            Ok(mut o) => {
                for (_, v) in &mut o.values {
                    if let Val::Message(m) = v
                        && m.flow_id.is_none()
                    {
                        m.flow_id = Some(c.flow_id.clone());
                    }
                }
                st.outcomes[i] = Some(Arc::new(o));
                done(i, &mut ready, &mut waiting);
            }
            Err(ComponentError::Cancelled) => return Err(RunError::Cancelled),
            Err(ComponentError::Failed(message)) => {
                return Err(RunError::Component {
                    component: node.display_name.clone(),
                    node_id: node.id.clone(),
                    message,
                });
            }
            Err(ComponentError::BadInput(message)) => {
                return Err(RunError::Invalid(format!(
                    "Error building Component {}: {message}",
                    node.display_name
                )));
            }
            Err(ComponentError::Upstream { status, message }) => {
                return Err(RunError::Upstream {
                    component: node.display_name.clone(),
                    node_id: node.id.clone(),
                    status,
                    message,
                });
            }
        }
    }
    drop(running);
    Ok(response(c, req, session_id, &st))
}

fn is_interface(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::ChatInput | Kind::ChatOutput | Kind::TextInput | Kind::TextOutput
    )
}

fn selected_nodes(c: &CompiledFlow, req: &RunRequest, st: &RunState) -> Vec<usize> {
    let ran = |i: &usize| st.outcomes[*i].is_some();
    if let Some(oc) = &req.output_component {
        return (0..c.nodes.len())
            .filter(|&i| c.nodes[i].id == *oc || c.nodes[i].display_name == *oc)
            .filter(ran)
            .collect();
    }
    let is_out = |i: &usize| registry::is_output_type(&c.nodes[*i].component_type);
    let picked: Vec<usize> = (0..c.nodes.len())
        .filter(ran)
        .filter(|i| match req.output_type {
            OutputType::Debug => true,
            OutputType::Any => is_out(i),
            OutputType::Chat => c.nodes[*i].kind == Kind::ChatOutput,
            OutputType::Text => c.nodes[*i].kind == Kind::TextOutput,
        })
        .collect();
    if picked.is_empty() {
        (0..c.nodes.len()).filter(ran).filter(is_out).collect()
    } else {
        picked
    }
}

/// A run's response (Langflow's `RunResponse`), serialised straight from the run's outcomes:
/// building it as a `serde_json::Value` tree first cost more CPU than the rest of a simple run.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub session_id: String,
    pub input_value: Option<String>,
    pub outputs: Vec<NodeResult>,
}

/// One `ResultData` object: what one selected node produced.
#[derive(Debug, Clone)]
pub struct NodeResult {
    pub node_id: String,
    pub display_name: String,
    kind: Kind,
    is_output: bool,
    pub outcome: Arc<Outcome>,
}

impl RunOutput {
    /// The response as a JSON value (tests, streaming's `end` event).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a run response serialises")
    }
}

impl Serialize for RunOutput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Inputs<'a>(&'a Option<String>);
        impl Serialize for Inputs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                if let Some(v) = self.0 {
                    m.serialize_entry("input_value", v)?;
                }
                m.end()
            }
        }
        struct Run<'a>(&'a RunOutput);
        impl Serialize for Run<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("inputs", &Inputs(&self.0.input_value))?;
                m.serialize_entry("outputs", &self.0.outputs)?;
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("session_id", &self.session_id)?;
        m.serialize_entry("outputs", &[Run(self)])?;
        m.end()
    }
}

/// `{"path": ...}` per file, as artifacts and output messages list them.
struct FilePaths<'a>(&'a [String]);

impl Serialize for FilePaths<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|path| {
            let mut one = Map::with_capacity(1);
            one.insert("path".into(), Value::String(path.clone()));
            one
        }))
    }
}

/// A node's outputs as a map from output name to `f(value)`.
struct ByName<'a, F>(&'a [(String, Val)], F);

impl<'a, T: Serialize, F: Fn(&'a Val) -> T> Serialize for ByName<'a, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(name, v)| (name, (self.1)(v))))
    }
}

/// `{"message": raw, "type": type}` (outputs) or `{"repr", "raw", "type"}` (artifacts).
struct Logged<'a> {
    value: &'a Val,
    with_repr: bool,
}

impl Serialize for Logged<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if self.with_repr {
            match self.value.raw_artifact() {
                RawArtifact::Text(t) => m.serialize_entry("repr", t)?,
                other => m.serialize_entry(
                    "repr",
                    &serde_json::to_string(&other).map_err(serde::ser::Error::custom)?,
                )?,
            }
            m.serialize_entry("raw", &self.value.raw_artifact())?;
        } else {
            m.serialize_entry("message", &self.value.raw_artifact())?;
        }
        m.serialize_entry("type", self.value.artifact_type())?;
        m.end()
    }
}

struct TextArtifact<'a>(&'a str);

impl Serialize for TextArtifact<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("repr", self.0)?;
        map.serialize_entry("raw", self.0)?;
        map.serialize_entry("type", "text")?;
        map.end()
    }
}

struct OutputMessage<'a> {
    msg: &'a Message,
    component_id: &'a str,
}

impl Serialize for OutputMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.msg;
        let mut map = s.serialize_map(Some(8))?;
        map.serialize_entry("message", &m.text)?;
        map.serialize_entry("sender", m.sender.as_deref().unwrap_or("Machine"))?;
        map.serialize_entry("sender_name", m.sender_name.as_deref().unwrap_or("AI"))?;
        map.serialize_entry("session_id", &m.session_id)?;
        map.serialize_entry("stream_url", &None::<()>)?;
        map.serialize_entry("component_id", self.component_id)?;
        map.serialize_entry("files", &FilePaths(&m.files))?;
        map.serialize_entry("type", "text")?;
        map.end()
    }
}

impl NodeResult {
    fn interface(&self) -> bool {
        is_interface(self.kind)
    }

    fn messages(&self) -> impl Iterator<Item = &Message> {
        self.outcome.values.iter().filter_map(|(_, v)| match v {
            Val::Message(m) => Some(m),
            _ => None,
        })
    }
}

struct Artifacts<'a>(&'a NodeResult);

impl Serialize for Artifacts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let node = self.0;
        let values = &node.outcome.values;
        if !node.interface() {
            let logged = |value| Logged {
                value,
                with_repr: true,
            };
            return ByName(values, logged).serialize(s);
        }
        if matches!(node.kind, Kind::ChatInput | Kind::ChatOutput) {
            // One set of keys for the node; with several messages the last one's values win.
            let mut map = s.serialize_map(None)?;
            if let Some(m) = node.messages().last() {
                for (k, v) in [
                    ("message", ChatField::Text(m)),
                    ("sender", ChatField::Sender(m)),
                    ("sender_name", ChatField::SenderName(m)),
                    ("files", ChatField::Files(m)),
                    ("type", ChatField::Object),
                ] {
                    map.serialize_entry(k, &v)?;
                }
            }
            return map.end();
        }
        s.collect_map(values.iter().filter_map(|(name, v)| match v {
            Val::Message(m) => Some((name, TextArtifact(&m.text))),
            _ => None,
        }))
    }
}

enum ChatField<'a> {
    Text(&'a Message),
    Sender(&'a Message),
    SenderName(&'a Message),
    Files(&'a Message),
    Object,
}

impl Serialize for ChatField<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ChatField::Text(m) => m.text.serialize(s),
            ChatField::Sender(m) => m.sender.serialize(s),
            ChatField::SenderName(m) => m.sender_name.serialize(s),
            ChatField::Files(m) => FilePaths(&m.files).serialize(s),
            ChatField::Object => s.serialize_str("object"),
        }
    }
}

impl Serialize for NodeResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let values = &self.outcome.values;
        let interface = self.interface();
        let mut m = s.serialize_map(Some(11))?;
        let results: &[(String, Val)] = if interface { values } else { &[] };
        m.serialize_entry("results", &ByName(results, |v| v))?;
        m.serialize_entry("artifacts", &Artifacts(self))?;
        let logged = |value| Logged {
            value,
            with_repr: false,
        };
        m.serialize_entry("outputs", &ByName(values, logged))?;
        m.serialize_entry("logs", &ByName(values, |_| [(); 0]))?;
        let component_id = self.node_id.as_str();
        let messages: Vec<OutputMessage<'_>> = if interface {
            self.messages()
                .filter(|msg| !msg.text.is_empty())
                .map(|msg| OutputMessage { msg, component_id })
                .collect()
        } else {
            Vec::new()
        };
        m.serialize_entry("messages", &messages)?;
        m.serialize_entry("timedelta", &None::<()>)?;
        m.serialize_entry("duration", &None::<()>)?;
        m.serialize_entry("component_display_name", &self.display_name)?;
        m.serialize_entry("component_id", &self.node_id)?;
        m.serialize_entry("used_frozen_result", &false)?;
        let usage = if self.is_output {
            None
        } else {
            self.outcome.token_usage
        };
        m.serialize_entry("token_usage", &usage)?;
        m.end()
    }
}

fn response(c: &CompiledFlow, req: &RunRequest, session_id: String, st: &RunState) -> RunOutput {
    let outputs = selected_nodes(c, req, st)
        .into_iter()
        .filter_map(|i| {
            let node = &c.nodes[i];
            st.outcomes[i].as_ref().map(|o| NodeResult {
                node_id: node.id.clone(),
                display_name: node.display_name.clone(),
                kind: node.kind,
                is_output: registry::is_output_type(&node.component_type),
                outcome: o.clone(),
            })
        })
        .collect();
    RunOutput {
        session_id,
        input_value: req.input_value.clone(),
        outputs,
    }
}
