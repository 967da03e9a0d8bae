//! Validation of a parsed flow without running it.

use crate::flow::{Flow, Node};
use crate::registry;
use serde_json::Value;
use std::collections::HashMap;

/// Why a node of a flow cannot run on this server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub node_id: String,
    #[serde(rename = "type")]
    pub component_type: String,
    pub message: String,
}

impl Problem {
    fn new(node: &Node, message: String) -> Self {
        Problem {
            node_id: node.id.clone(),
            component_type: node.component_type.clone(),
            message,
        }
    }
}

/// `true` for a JSON value Langflow treats as "not set".
pub(crate) fn is_empty_value(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

/// Whether an empty required field is acceptable because it is filled at run time.
///
/// Rule (read from lfx 1.13: Langflow itself never rejects an empty required field before
/// building; the component fails at run time instead). We flag a field only when it is
/// `required: true`, `show: true`, not fed by an edge, empty, and none of:
/// * `type` `other` (handle-only), `code`, `model` (the starters ship `model` empty and
///   expect it to be set by a tweak) or `file` (set by a file tweak / upload);
/// * `load_from_db: true` (a variable name, resolved at run time);
/// * `input_value` of an input node (the run's input is injected there);
/// * `session_id` (the run's session id is injected there).
fn filled_at_run_time(node: &Node, name: &str, field: &serde_json::Map<String, Value>) -> bool {
    let ty = field.get("type").and_then(Value::as_str).unwrap_or("");
    matches!(ty, "other" | "code" | "model" | "file")
        || field.get("load_from_db").and_then(Value::as_bool) == Some(true)
        || (name == "input_value" && registry::is_input_type(&node.component_type))
        || name == "session_id"
}

/// Validate `flow`. An empty result means the flow can run on this server.
pub fn check_flow(flow: &Flow) -> Vec<Problem> {
    let mut problems = Vec::new();

    // Per node: supported type and stock code.
    for node in flow.components() {
        if !registry::is_supported(&node.component_type) {
            problems.push(Problem::new(
                node,
                format!(
                    "Component type \"{}\" (node {}) is not supported by this server",
                    node.component_type, node.id
                ),
            ));
            continue;
        }
        if node.edited {
            problems.push(Problem::new(
                node,
                format!(
                    "Component \"{}\" (node {}, type {}) has customised code (edited); only the stock component can run on this server",
                    node.display_name, node.id, node.component_type
                ),
            ));
            continue;
        }
        let hash_of_code = node.code.as_deref().map(registry::code_hash);
        let declared = node.code_hash.as_deref();
        let customised = [hash_of_code.as_deref(), declared]
            .into_iter()
            .flatten()
            .any(|h| !registry::is_stock_hash(&node.component_type, h));
        if customised {
            problems.push(Problem::new(
                node,
                format!(
                    "Component \"{}\" (node {}, type {}) has customised code (code hash {} is not the stock one); only the stock component can run on this server",
                    node.display_name,
                    node.id,
                    node.component_type,
                    hash_of_code.as_deref().or(declared).unwrap_or("?")
                ),
            ));
        }
    }

    // Edges.
    let mut fed: HashMap<(usize, &str), usize> = HashMap::new();
    for edge in &flow.edges {
        let src = flow.node(&edge.source).filter(|n| !n.is_note);
        let tgt = flow.node(&edge.target).filter(|n| !n.is_note);
        let Some(tgt) = tgt else {
            let (id, ty) = src
                .map(|n| (n.id.clone(), n.component_type.clone()))
                .unwrap_or_else(|| (edge.target.clone(), String::new()));
            problems.push(Problem {
                node_id: id,
                component_type: ty,
                message: format!(
                    "Edge #{} targets node \"{}\", which does not exist",
                    edge.index, edge.target
                ),
            });
            continue;
        };
        let Some(src) = src else {
            problems.push(Problem::new(
                tgt,
                format!(
                    "Edge #{} into node {} comes from node \"{}\", which does not exist",
                    edge.index, tgt.id, edge.source
                ),
            ));
            continue;
        };
        match edge.source_output.as_deref() {
            Some(out) if src.output(out).is_some() => {}
            out => problems.push(Problem::new(
                src,
                format!(
                    "Edge #{} from node {} uses output \"{}\", which node {} does not have",
                    edge.index,
                    src.id,
                    out.unwrap_or(""),
                    src.id
                ),
            )),
        }
        match edge.target_field.as_deref() {
            Some(f) if edge.loop_back && tgt.output(f).is_some() => {}
            Some(f) if !edge.loop_back && tgt.template.contains_key(f) => {
                *fed.entry((tgt.index, f)).or_default() += 1;
            }
            f => problems.push(Problem::new(
                tgt,
                format!(
                    "Edge #{} into node {} targets field \"{}\", which node {} does not have",
                    edge.index,
                    tgt.id,
                    f.unwrap_or(""),
                    tgt.id
                ),
            )),
        }
    }
    let mut multi: Vec<_> = fed
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, n)| (*k, *n))
        .collect();
    multi.sort();
    for ((idx, field), count) in multi {
        let node = &flow.nodes[idx];
        let is_list = node
            .field(field)
            .and_then(|f| f.get("list"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !is_list {
            problems.push(Problem::new(
                node,
                format!(
                    "Field \"{field}\" of node {} receives {count} edges but accepts only one",
                    node.id
                ),
            ));
        }
    }

    // Required inputs.
    for node in flow.components() {
        if !registry::is_supported(&node.component_type) {
            continue;
        }
        for (name, field) in &node.template {
            let Some(field) = field.as_object() else {
                continue;
            };
            let required = field.get("required").and_then(Value::as_bool) == Some(true);
            let shown = field.get("show").and_then(Value::as_bool) == Some(true);
            if !required || !shown || name == "code" || filled_at_run_time(node, name, field) {
                continue;
            }
            if fed.contains_key(&(node.index, name.as_str())) {
                continue;
            }
            if is_empty_value(field.get("value")) {
                let label = field
                    .get("display_name")
                    .and_then(Value::as_str)
                    .unwrap_or(name);
                problems.push(Problem::new(
                    node,
                    format!(
                        "Required input \"{label}\" ({name}) of node {} is empty and not connected",
                        node.id
                    ),
                ));
            }
        }
    }

    if let Some(id) = find_cycle(flow) {
        let node = flow.node(&id).expect("cycle node exists");
        problems.push(Problem::new(
            node,
            format!("Node {id} is part of a cycle; cycles are not supported"),
        ));
    }
    problems
}

/// A node on a cycle among valid edges between runnable nodes, if any.
pub(crate) fn find_cycle(flow: &Flow) -> Option<String> {
    let n = flow.nodes.len();
    let mut adj = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for e in &flow.edges {
        if let (Some(s), Some(t)) = (flow.node_index(&e.source), flow.node_index(&e.target)) {
            adj[s].push(t);
            indeg[t] += 1;
        }
    }
    let mut queue: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = queue.pop() {
        seen += 1;
        for &t in &adj[i] {
            indeg[t] -= 1;
            if indeg[t] == 0 {
                queue.push(t);
            }
        }
    }
    if seen == n {
        None
    } else {
        (0..n)
            .find(|&i| indeg[i] > 0)
            .map(|i| flow.nodes[i].id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::parse_flow;
    use serde_json::json;

    fn fixtures() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
    }

    fn load(name: &str) -> Option<Value> {
        let bytes = std::fs::read(fixtures().join(name)).ok()?;
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        Some(v.get("data").cloned().unwrap_or(v))
    }

    #[test]
    fn chat_echo_and_basic_prompting_are_clean() {
        for name in ["chat-echo.json", "langflow-starters/Basic Prompting.json"] {
            let Some(data) = load(name) else { return };
            let f = parse_flow(&data).unwrap();
            assert_eq!(check_flow(&f), vec![], "{name}");
        }
    }

    #[test]
    fn unsupported_agent_is_named() {
        let Some(data) = load("langflow-starters/Simple Agent.json") else {
            return;
        };
        let f = parse_flow(&data).unwrap();
        let p = check_flow(&f);
        let agent = f
            .components()
            .find(|n| n.component_type == "Agent")
            .unwrap();
        assert!(p.iter().any(|p| p.message
            == format!(
                "Component type \"Agent\" (node {}) is not supported by this server",
                agent.id
            )
            && p.component_type == "Agent"
            && p.node_id == agent.id));
    }

    fn node(id: &str, ty: &str, template: Value, outputs: Value) -> Value {
        json!({"id": id, "type": "genericNode", "data": {"id": id, "type": ty, "node": {
            "display_name": ty, "template": template, "outputs": outputs, "edited": false}}})
    }

    fn edge(s: &str, out: &str, t: &str, field: &str) -> Value {
        json!({"source": s, "target": t, "data": {
            "sourceHandle": {"id": s, "name": out, "output_types": ["Message"], "dataType": "X"},
            "targetHandle": {"id": t, "fieldName": field, "inputTypes": ["Message"], "type": "str"}}})
    }

    fn out(name: &str) -> Value {
        json!([{"name": name, "method": "m", "types": ["Message"], "selected": "Message", "cache": true}])
    }

    #[test]
    fn edges_edits_required_and_multi() {
        let data = json!({"nodes": [
            node("A", "TextInput", json!({"input_value": {"type": "str", "value": "", "show": true, "required": true}}), out("text")),
            node("B", "TextOutput", json!({"input_value": {"type": "str", "value": "", "show": true, "list": false}}), out("text")),
            node("C", "CombineText", json!({"text1": {"type": "str", "value": "", "show": true, "required": true, "display_name": "First Text"}}), out("combined_text")),
            {"id": "D", "type": "genericNode", "data": {"type": "ChatInput", "node": {"display_name": "Chat Input", "edited": true, "template": {}, "outputs": []}}},
            {"id": "E", "type": "genericNode", "data": {"type": "ChatOutput", "node": {"display_name": "Chat Output", "metadata": {"code_hash": "deadbeef0000"}, "template": {}, "outputs": []}}},
            {"id": "note", "type": "noteNode", "data": {"node": {}}},
        ], "edges": [
            edge("A", "text", "B", "input_value"),
            edge("A", "text", "B", "input_value"),
            edge("A", "nope", "B", "input_value"),
            edge("A", "text", "B", "missing_field"),
            edge("Z", "text", "B", "input_value"),
            edge("A", "text", "Y", "input_value"),
        ]});
        let f = parse_flow(&data).unwrap();
        let p = check_flow(&f);
        let msgs: Vec<String> = p
            .iter()
            .map(|p| format!("{}|{}", p.node_id, p.message))
            .collect();
        let has = |s: &str| msgs.iter().any(|m| m.contains(s));
        assert!(
            has("D|Component \"Chat Input\" (node D, type ChatInput) has customised code"),
            "{msgs:#?}"
        );
        assert!(has(
            "E|Component \"Chat Output\" (node E, type ChatOutput) has customised code (code hash deadbeef0000"
        ));
        assert!(has("A|Edge #2 from node A uses output \"nope\""));
        assert!(has("B|Edge #3 into node B targets field \"missing_field\""));
        assert!(has("B|Edge #4 into node B comes from node \"Z\""));
        assert!(has("A|Edge #5 targets node \"Y\""));
        assert!(has("B|Field \"input_value\" of node B receives 3 edges"));
        assert!(has(
            "C|Required input \"First Text\" (text1) of node C is empty"
        ));
        // Input nodes' input_value is filled at run time.
        assert!(!has("A|Required"));
    }

    #[test]
    fn cycles_are_reported() {
        let data = json!({"nodes": [
            node("A", "CombineText", json!({"text1": {"type": "str", "value": "", "show": true}}), out("combined_text")),
            node("B", "CombineText", json!({"text1": {"type": "str", "value": "", "show": true}}), out("combined_text")),
        ], "edges": [edge("A", "combined_text", "B", "text1"), edge("B", "combined_text", "A", "text1")]});
        let p = check_flow(&parse_flow(&data).unwrap());
        assert!(p.iter().any(|p| p.message.contains("cycle")));
    }
}
