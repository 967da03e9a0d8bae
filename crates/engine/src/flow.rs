//! Typed view of a Langflow flow (`data: {nodes, edges, viewport}`).
//!
//! The original JSON is kept verbatim in [`Flow::raw`] so that exporting a
//! flow returns exactly what was imported.

use serde_json::{Map, Value};
use std::collections::HashMap;

/// Why a flow's JSON cannot be read at all (as opposed to [`crate::check::Problem`]s,
/// which describe a readable flow that cannot run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowFormatError {
    #[error("flow data must be a JSON object")]
    NotAnObject,
    #[error("flow data has no `{0}` field")]
    Missing(&'static str),
    #[error("flow data field `{0}` must be an array")]
    NotAnArray(&'static str),
    #[error("node #{0} is not an object")]
    NodeNotObject(usize),
    #[error("node #{0} has no `id`")]
    NodeWithoutId(usize),
    #[error("node {0} has no `data.type`")]
    NodeWithoutType(String),
    #[error("duplicate node id {0}")]
    DuplicateNodeId(String),
    #[error("edge #{0} is not an object")]
    EdgeNotObject(usize),
}

/// One declared output of a node (`data.node.outputs[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDef {
    pub name: String,
    pub method: Option<String>,
    pub types: Vec<String>,
    pub selected: Option<String>,
    pub cache: bool,
    pub allows_loop: bool,
}

/// A node of the flow. Note nodes (`type: "noteNode"`) are kept with `is_note = true`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Position in the JSON `nodes` array.
    pub index: usize,
    pub id: String,
    /// `type` of the node itself: `genericNode` or `noteNode`.
    pub kind: String,
    pub is_note: bool,
    /// `data.type`: the component type, e.g. `ChatInput`.
    pub component_type: String,
    pub display_name: String,
    /// `data.node.template` (field name -> field object), in JSON order.
    pub template: Map<String, Value>,
    pub outputs: Vec<OutputDef>,
    pub edited: bool,
    pub frozen: bool,
    pub code_hash: Option<String>,
    /// `template.code.value`, when present.
    pub code: Option<String>,
}

impl Node {
    /// A template field object, if the node has it.
    pub fn field(&self, name: &str) -> Option<&Map<String, Value>> {
        self.template.get(name).and_then(Value::as_object)
    }

    pub fn output(&self, name: &str) -> Option<&OutputDef> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// An edge, read from `edge.data` (falling back to the `œ`-encoded handle strings).
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub index: usize,
    pub id: Option<String>,
    pub source: String,
    pub target: String,
    /// `sourceHandle.name`: the output of the source node.
    pub source_output: Option<String>,
    /// `targetHandle.fieldName` (or `name` for a loop-back handle).
    pub target_field: Option<String>,
    /// The target handle carried `name` instead of `fieldName` (loop back into an output).
    pub loop_back: bool,
}

/// A parsed flow. Cheap to clone relative to JSON re-parsing; immutable after parse.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// The original `data` object, untouched.
    pub raw: Value,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    index_by_id: HashMap<String, usize>,
}

impl Flow {
    /// The JSON this flow was parsed from (export(import(x)) == x).
    pub fn export(&self) -> &Value {
        &self.raw
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.index_by_id.get(id).map(|&i| &self.nodes[i])
    }

    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.index_by_id.get(id).copied()
    }

    /// Runnable (non-note) nodes.
    pub fn components(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| !n.is_note)
    }
}

fn str_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

fn parse_node(index: usize, v: &Value) -> Result<Node, FlowFormatError> {
    let obj = v.as_object().ok_or(FlowFormatError::NodeNotObject(index))?;
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(FlowFormatError::NodeWithoutId(index)),
    };
    let kind = str_of(obj.get("type")).unwrap_or_else(|| "genericNode".into());
    let is_note = kind == "noteNode";
    let data = obj.get("data").and_then(Value::as_object);
    let component_type = data.and_then(|d| d.get("type")).and_then(Value::as_str);
    let component_type = match component_type {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ if is_note => String::new(),
        _ => return Err(FlowFormatError::NodeWithoutType(id)),
    };
    let node = data.and_then(|d| d.get("node")).and_then(Value::as_object);
    let display_name = node
        .and_then(|n| str_of(n.get("display_name")))
        .unwrap_or_else(|| component_type.clone());
    let template = node
        .and_then(|n| n.get("template"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let outputs = node
        .and_then(|n| n.get("outputs"))
        .and_then(Value::as_array)
        .map(|outs| {
            outs.iter()
                .filter_map(Value::as_object)
                .filter_map(|o| {
                    Some(OutputDef {
                        name: str_of(o.get("name"))?,
                        method: str_of(o.get("method")),
                        types: o
                            .get("types")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(|t| str_of(Some(t))).collect())
                            .unwrap_or_default(),
                        selected: str_of(o.get("selected")),
                        cache: o.get("cache").and_then(Value::as_bool).unwrap_or(true),
                        allows_loop: o
                            .get("allows_loop")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let edited = node
        .and_then(|n| n.get("edited"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let frozen = node
        .and_then(|n| n.get("frozen"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let code_hash = node
        .and_then(|n| n.get("metadata"))
        .and_then(|m| m.get("code_hash"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let code = template
        .get("code")
        .and_then(|c| c.get("value"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Node {
        index,
        id,
        kind,
        is_note,
        component_type,
        display_name,
        template,
        outputs,
        edited,
        frozen,
        code_hash,
        code,
    })
}

/// Decode a top-level `sourceHandle`/`targetHandle` string (JSON with `"` written as `œ`).
fn decode_handle(v: Option<&Value>) -> Option<Value> {
    match v? {
        Value::Object(_) => v.cloned(),
        Value::String(s) => serde_json::from_str(&s.replace('œ', "\"")).ok(),
        _ => None,
    }
}

fn parse_edge(index: usize, v: &Value) -> Result<Edge, FlowFormatError> {
    let obj = v.as_object().ok_or(FlowFormatError::EdgeNotObject(index))?;
    let data = obj.get("data").and_then(Value::as_object);
    let sh = data
        .and_then(|d| d.get("sourceHandle"))
        .filter(|h| h.is_object())
        .cloned()
        .or_else(|| decode_handle(obj.get("sourceHandle")));
    let th = data
        .and_then(|d| d.get("targetHandle"))
        .filter(|h| h.is_object())
        .cloned()
        .or_else(|| decode_handle(obj.get("targetHandle")));
    let source = str_of(obj.get("source"))
        .or_else(|| sh.as_ref().and_then(|h| str_of(h.get("id"))))
        .unwrap_or_default();
    let target = str_of(obj.get("target"))
        .or_else(|| th.as_ref().and_then(|h| str_of(h.get("id"))))
        .unwrap_or_default();
    let source_output = sh.as_ref().and_then(|h| str_of(h.get("name")));
    let (target_field, loop_back) = match th.as_ref() {
        Some(h) => match str_of(h.get("fieldName")) {
            Some(f) => (Some(f), false),
            None => (str_of(h.get("name")), h.get("name").is_some()),
        },
        None => (None, false),
    };
    Ok(Edge {
        index,
        id: str_of(obj.get("id")),
        source,
        target,
        source_output,
        target_field,
        loop_back,
    })
}

/// Parse the flow's `data` object.
pub fn parse_flow(data: &Value) -> Result<Flow, FlowFormatError> {
    let obj = data.as_object().ok_or(FlowFormatError::NotAnObject)?;
    let nodes_v = obj.get("nodes").ok_or(FlowFormatError::Missing("nodes"))?;
    let edges_v = obj.get("edges").ok_or(FlowFormatError::Missing("edges"))?;
    let nodes_a = nodes_v
        .as_array()
        .ok_or(FlowFormatError::NotAnArray("nodes"))?;
    let edges_a = edges_v
        .as_array()
        .ok_or(FlowFormatError::NotAnArray("edges"))?;
    let mut nodes = Vec::with_capacity(nodes_a.len());
    let mut index_by_id = HashMap::with_capacity(nodes_a.len());
    for (i, n) in nodes_a.iter().enumerate() {
        let node = parse_node(i, n)?;
        if index_by_id.insert(node.id.clone(), i).is_some() {
            return Err(FlowFormatError::DuplicateNodeId(node.id));
        }
        nodes.push(node);
    }
    let edges = edges_a
        .iter()
        .enumerate()
        .map(|(i, e)| parse_edge(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Flow {
        raw: data.clone(),
        nodes,
        edges,
        index_by_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn format_errors() {
        assert_eq!(parse_flow(&json!([])), Err(FlowFormatError::NotAnObject));
        assert_eq!(
            parse_flow(&json!({"edges": []})),
            Err(FlowFormatError::Missing("nodes"))
        );
        assert_eq!(
            parse_flow(&json!({"nodes": []})),
            Err(FlowFormatError::Missing("edges"))
        );
        assert_eq!(
            parse_flow(&json!({"nodes": {}, "edges": []})),
            Err(FlowFormatError::NotAnArray("nodes"))
        );
        assert_eq!(
            parse_flow(&json!({"nodes": [], "edges": 3})),
            Err(FlowFormatError::NotAnArray("edges"))
        );
        assert_eq!(
            parse_flow(&json!({"nodes": [{"data": {"type": "X"}}], "edges": []})),
            Err(FlowFormatError::NodeWithoutId(0))
        );
        assert_eq!(
            parse_flow(&json!({"nodes": [{"id": "a", "data": {}}], "edges": []})),
            Err(FlowFormatError::NodeWithoutType("a".into()))
        );
        let dup = json!({"nodes": [{"id": "a", "data": {"type": "X"}}, {"id": "a", "data": {"type": "Y"}}], "edges": []});
        let err = parse_flow(&dup).unwrap_err();
        assert_eq!(err.to_string(), "duplicate node id a");
    }

    #[test]
    fn note_nodes_need_no_type() {
        let f = parse_flow(
            &json!({"nodes": [{"id": "n", "type": "noteNode", "data": {"node": {}}}], "edges": []}),
        )
        .unwrap();
        assert!(f.nodes[0].is_note);
        assert_eq!(f.components().count(), 0);
    }

    #[test]
    fn edge_from_encoded_handles() {
        let f = parse_flow(&json!({"nodes": [], "edges": [{
            "source": "A", "target": "B",
            "sourceHandle": "{œdataTypeœ:œChatInputœ,œidœ:œAœ,œnameœ:œmessageœ,œoutput_typesœ:[œMessageœ]}",
            "targetHandle": "{œfieldNameœ:œinput_valueœ,œidœ:œBœ,œinputTypesœ:[œMessageœ],œtypeœ:œstrœ}"
        }]}))
        .unwrap();
        assert_eq!(f.edges[0].source_output.as_deref(), Some("message"));
        assert_eq!(f.edges[0].target_field.as_deref(), Some("input_value"));
    }

    #[test]
    fn starters_parse_and_roundtrip() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/langflow-starters"
        );
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let path = e.unwrap().path();
            let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let data = v.get("data").unwrap();
            let f = parse_flow(data).unwrap();
            assert_eq!(f.export(), data);
            assert!(!f.nodes.is_empty());
        }
    }
}
