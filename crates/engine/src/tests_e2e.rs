//! End-to-end runs of whole flows.

use crate::context::{Event, LlmTimeouts};
use crate::run::{InputType, OutputType, RunError, RunRequest, compile, execute};
use crate::testutil::TestCtx;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn load(name: &str) -> Option<Value> {
    let bytes = std::fs::read(fixtures().join(name)).ok()?;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    Some(v.get("data").cloned().unwrap_or(v))
}

fn compiled(data: &Value, flow_id: &str) -> crate::CompiledFlow {
    let f = crate::parse_flow(data).unwrap();
    compile(flow_id, &f).unwrap()
}

async fn run(c: &crate::CompiledFlow, req: RunRequest, ctx: &TestCtx) -> Result<Value, RunError> {
    execute(c, req, ctx, None, CancellationToken::new())
        .await
        .map(|out| out.to_value())
}

fn chat(input: &str) -> RunRequest {
    RunRequest {
        input_value: Some(input.into()),
        ..Default::default()
    }
}

/// The transcript's run of chat-echo (non-stream, input "hello").
fn transcript_chat_echo() -> Option<Value> {
    let text = std::fs::read_to_string(fixtures().join("langflow-1.13-transcripts.md")).ok()?;
    let section = text
        .split("### POST /api/v1/run/{id}?stream=false ChatInput->ChatOutput")
        .nth(1)?;
    let line = section.lines().find(|l| l.starts_with("{\"session_id\""))?;
    serde_json::from_str(line).ok()
}

/// Same keys in the same order, recursively; values compared except volatile ones.
fn same_shape(a: &Value, b: &Value, path: &str) {
    const VOLATILE: &[&str] = &[
        "timestamp",
        "id",
        "run_id",
        "flow_id",
        "session_id",
        "graph_run_id",
    ];
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<_> = x.keys().collect();
            let ky: Vec<_> = y.keys().collect();
            assert_eq!(kx, ky, "keys differ at {path}");
            for (k, v) in x {
                same_shape(v, &y[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "length differs at {path}");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                same_shape(v, w, &format!("{path}[{i}]"));
            }
        }
        _ => {
            let last = path.rsplit('.').next().unwrap_or("");
            if !VOLATILE.contains(&last) {
                assert_eq!(a, b, "value differs at {path}");
            }
        }
    }
}

#[tokio::test]
async fn chat_echo_matches_transcript() {
    let (Some(data), Some(expected)) = (load("chat-echo.json"), transcript_chat_echo()) else {
        return;
    };
    let flow_id = "5a19da4f-b512-4628-a0df-a8e8db17c1b8";
    let c = compiled(&data, flow_id);
    let ctx = TestCtx::default();
    let got = run(&c, chat("hello"), &ctx).await.unwrap();
    same_shape(&got, &expected, "$");
    assert_eq!(got["session_id"], flow_id);
    let msg = &got["outputs"][0]["outputs"][0]["results"]["message"];
    assert_eq!(msg["text"], "hello");
    assert_eq!(msg["data"]["flow_id"], flow_id);
    assert_eq!(
        msg["data"]["run_id"],
        msg["data"]["session_metadata"]["graph_run_id"]
    );
    // Both messages were stored: the user's and the bot's.
    let stored = ctx.stored.lock().unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].sender.as_deref(), Some("User"));
    assert_eq!(stored[1].id.as_deref(), msg["data"]["id"].as_str());
}

#[tokio::test]
async fn chat_echo_session_tweaks_and_empty_body() {
    let Some(data) = load("chat-echo.json") else {
        return;
    };
    let c = compiled(&data, "flow-1");
    let ctx = TestCtx::default();
    let mut req = chat("hi with session");
    req.session_id = Some("sess-123".into());
    req.tweaks = json!({"ChatOutput-bbbb2": {"sender_name": "Bot"}})
        .as_object()
        .unwrap()
        .clone();
    let got = run(&c, req, &ctx).await.unwrap();
    assert_eq!(got["session_id"], "sess-123");
    let out = &got["outputs"][0]["outputs"][0];
    assert_eq!(out["results"]["message"]["sender_name"], "Bot");
    assert_eq!(out["results"]["message"]["session_id"], "sess-123");
    assert_eq!(out["messages"][0]["sender_name"], "Bot");
    // No input: inputs {} and no messages entry for empty text.
    let got = run(&c, RunRequest::default(), &ctx).await.unwrap();
    assert_eq!(got["outputs"][0]["inputs"], json!({}));
    assert_eq!(got["outputs"][0]["outputs"][0]["messages"], json!([]));
    assert_eq!(
        got["outputs"][0]["outputs"][0]["results"]["message"]["text"],
        ""
    );
}

#[tokio::test]
async fn chat_echo_stream_events() {
    let Some(data) = load("chat-echo.json") else {
        return;
    };
    let c = compiled(&data, "flow-1");
    let ctx = TestCtx::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut req = chat("hello");
    req.stream = true;
    let res = execute(&c, req, &ctx, Some(tx), CancellationToken::new())
        .await
        .unwrap()
        .to_value();
    let mut evs = Vec::new();
    while let Some(e) = rx.recv().await {
        evs.push(e);
    }
    let names: Vec<_> = evs.iter().map(Event::name).collect();
    assert_eq!(names, ["add_message", "add_message", "end"]);
    let Event::AddMessage(user) = &evs[0] else {
        panic!()
    };
    assert_eq!(user["sender"], "User");
    assert_eq!(user.as_object().unwrap().keys().next_back().unwrap(), "id");
    assert_eq!(evs[2], Event::End(res));
    let line = evs[2].to_sse_chunk();
    assert!(line.starts_with("{\"event\": \"end\", \"data\": {\"result\": {\"session_id\": "));
    assert!(line.ends_with("}\n\n"));
}

fn node(id: &str, ty: &str, display: &str, template: Value, outputs: &[&str]) -> Value {
    let outs: Vec<Value> = outputs
        .iter()
        .map(|o| json!({"name": o, "method": "m", "types": ["Message"], "selected": "Message", "cache": true, "allows_loop": false}))
        .collect();
    json!({"id": id, "type": "genericNode", "data": {"id": id, "type": ty, "node": {
        "display_name": display, "template": template, "outputs": outs, "edited": false, "base_classes": ["Message"]}}})
}

fn edge(s: &str, out: &str, t: &str, field: &str) -> Value {
    json!({"source": s, "target": t, "data": {
        "sourceHandle": {"dataType": "X", "id": s, "name": out, "output_types": ["Message"]},
        "targetHandle": {"fieldName": field, "id": t, "inputTypes": ["Message"], "type": "str"}}})
}

fn str_field(v: &str) -> Value {
    json!({"type": "str", "value": v, "show": true, "list": false, "required": false})
}

fn text_flow() -> Value {
    json!({"nodes": [
        node("TextInput-cccc3", "TextInput", "Text Input", json!({"input_value": str_field("")}), &["text"]),
        node("Prompt-dddd4", "Prompt", "Prompt", json!({
            "template": {"type": "prompt", "value": "Echo: {text}", "show": true},
            "text": {"type": "str", "value": "", "show": true, "input_types": ["Message"]},
            "use_double_brackets": {"type": "bool", "value": false, "show": true}}), &["prompt"]),
        node("TextOutput-eeee5", "TextOutput", "Text Output", json!({"input_value": str_field("")}), &["text"]),
    ], "edges": [
        edge("TextInput-cccc3", "text", "Prompt-dddd4", "text"),
        edge("Prompt-dddd4", "prompt", "TextOutput-eeee5", "input_value"),
    ]})
}

#[tokio::test]
async fn text_prompt_flow_like_transcript() {
    let c = compiled(&text_flow(), "3c6eba1e");
    let ctx = TestCtx::default();
    let req = RunRequest {
        input_value: Some("hello".into()),
        input_type: InputType::Text,
        output_type: OutputType::Text,
        ..Default::default()
    };
    let got = run(&c, req, &ctx).await.unwrap();
    let out = &got["outputs"][0]["outputs"][0];
    assert_eq!(out["results"]["text"]["text"], "Echo: hello");
    assert_eq!(out["results"]["text"]["data"]["session_id"], "");
    assert_eq!(
        out["results"]["text"]["data"]["session_metadata"],
        Value::Null
    );
    assert_eq!(
        out["artifacts"],
        json!({"text": {"repr": "Echo: hello", "raw": "Echo: hello", "type": "text"}})
    );
    assert_eq!(
        out["outputs"],
        json!({"text": {"message": "Echo: hello", "type": "text"}})
    );
    assert_eq!(out["logs"], json!({"text": []}));
    assert_eq!(
        out["messages"][0],
        json!({"message": "Echo: hello", "sender": "Machine", "sender_name": "AI",
        "session_id": "", "stream_url": null, "component_id": "TextOutput-eeee5", "files": [], "type": "text"})
    );
    assert_eq!(out["component_display_name"], "Text Output");
    // Chat input type does not reach a TextInput; chat output type selects nothing -> all outputs.
    let req = RunRequest {
        input_value: Some("hello".into()),
        ..Default::default()
    };
    let got = run(&c, req, &ctx).await.unwrap();
    assert_eq!(
        got["outputs"][0]["outputs"][0]["results"]["text"]["text"],
        "Echo: "
    );
    // any input type reaches the TextInput; debug lists every node in order.
    let req = RunRequest {
        input_value: Some("x".into()),
        input_type: InputType::Any,
        output_type: OutputType::Debug,
        ..Default::default()
    };
    let got = run(&c, req, &ctx).await.unwrap();
    let ids: Vec<_> = got["outputs"][0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["component_id"].clone())
        .collect();
    assert_eq!(ids, ["TextInput-cccc3", "Prompt-dddd4", "TextOutput-eeee5"]);
    let prompt = &got["outputs"][0]["outputs"][1];
    assert_eq!(prompt["results"], json!({}));
    assert_eq!(
        prompt["outputs"]["prompt"],
        json!({"message": "Echo: x", "type": "text"})
    );
    // output_component by display name.
    let req = RunRequest {
        input_value: Some("y".into()),
        input_type: InputType::Text,
        output_component: Some("Prompt".into()),
        ..Default::default()
    };
    let got = run(&c, req, &ctx).await.unwrap();
    assert_eq!(
        got["outputs"][0]["outputs"][0]["component_id"],
        "Prompt-dddd4"
    );
}

fn tweaks(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn tweak_rules() {
    let c = compiled(&text_flow(), "f");
    let ctx = TestCtx::default();
    let text_req = |t: Value| RunRequest {
        input_value: Some("hello".into()),
        input_type: InputType::Text,
        tweaks: tweaks(t),
        ..Default::default()
    };
    // By id.
    let got = run(
        &c,
        text_req(json!({"Prompt-dddd4": {"template": "Say {text}!"}})),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(
        got["outputs"][0]["outputs"][0]["results"]["text"]["text"],
        "Say hello!"
    );
    // By display name.
    let got = run(
        &c,
        text_req(json!({"Prompt": {"template": "P {text}"}})),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(
        got["outputs"][0]["outputs"][0]["results"]["text"]["text"],
        "P hello"
    );
    // Scalar tweak applies to every node with the field.
    let got = run(&c, text_req(json!({"template": "S {text}"})), &ctx)
        .await
        .unwrap();
    assert_eq!(
        got["outputs"][0]["outputs"][0]["results"]["text"]["text"],
        "S hello"
    );
    // Unknown node: 422 naming it; empty object ignored.
    let e = run(&c, text_req(json!({"Nope-1": {"x": 1}})), &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 422);
    assert!(e.to_string().contains("Nope-1"));
    assert!(
        run(&c, text_req(json!({"ChatInput-8a86T": {}})), &ctx)
            .await
            .is_ok()
    );
    // Unknown field: 422 naming it.
    let e = run(
        &c,
        text_req(json!({"Prompt-dddd4": {"tempalte": "x"}})),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 422);
    assert!(e.to_string().contains("tempalte"), "{e}");
    let e = run(&c, text_req(json!({"no_such_field": 1})), &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 422);
    // Code is refused: the `code` field and any field of type code.
    let mut flow = text_flow();
    flow["nodes"][1]["data"]["node"]["template"]["snippet"] =
        json!({"type": "code", "value": "", "show": true});
    let c2 = compiled(&flow, "f");
    let e = run(
        &c2,
        text_req(json!({"Prompt-dddd4": {"snippet": "import os"}})),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 422);
    assert!(e.to_string().contains("cannot change the code"), "{e}");
    let e = run(
        &c2,
        text_req(json!({"Prompt-dddd4": {"code": "import os"}})),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 422);
    assert!(e.to_string().contains("code"));
    // input_value clash: 400 with Langflow's text.
    let e = run(
        &c,
        text_req(json!({"TextInput-cccc3": {"input_value": "x"}})),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(
        e.to_string(),
        "If you pass an input_value to the text input, you cannot pass a tweak with the same name."
    );
    // Without a body input_value the tweak is fine.
    let req = RunRequest {
        input_type: InputType::Text,
        tweaks: tweaks(json!({"TextInput-cccc3": {"input_value": "tw"}})),
        ..Default::default()
    };
    let got = run(&c, req, &ctx).await.unwrap();
    assert_eq!(
        got["outputs"][0]["outputs"][0]["results"]["text"]["text"],
        "Echo: tw"
    );
    // Chat clash on the chat-echo flow.
    if let Some(data) = load("chat-echo.json") {
        let c = compiled(&data, "f");
        let mut req = chat("a");
        req.tweaks = tweaks(json!({"ChatInput-aaaa1": {"input_value": "b"}}));
        let e = run(&c, req, &ctx).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "If you pass an input_value to the chat input, you cannot pass a tweak with the same name."
        );
    }
    // Unknown output_component.
    let mut req = text_req(json!({}));
    req.output_component = Some("Ghost".into());
    assert_eq!(run(&c, req, &ctx).await.unwrap_err().status(), 422);
}

#[tokio::test]
async fn only_the_chat_connected_part_runs_and_router_branches() {
    // ChatInput -> If-Else -> (true) TextOutput A, (false) TextOutput B; a disconnected TextInput->TextOutput C.
    let flow = json!({"nodes": [
        node("ChatInput-1", "ChatInput", "Chat Input", json!({"input_value": str_field(""), "should_store_message": {"type": "bool", "value": false, "show": true}}), &["message"]),
        node("If-1", "ConditionalRouter", "If-Else", json!({
            "input_text": str_field(""), "match_text": str_field("yes"), "operator": str_field("equals"),
            "case_sensitive": {"type": "bool", "value": false, "show": true}}), &["true_result", "false_result"]),
        node("TextOutput-A", "TextOutput", "A", json!({"input_value": str_field("")}), &["text"]),
        node("TextOutput-B", "TextOutput", "B", json!({"input_value": str_field("")}), &["text"]),
        node("TextInput-C", "TextInput", "C in", json!({"input_value": str_field("ingest")}), &["text"]),
        node("TextOutput-C", "TextOutput", "C", json!({"input_value": str_field("")}), &["text"]),
    ], "edges": [
        edge("ChatInput-1", "message", "If-1", "input_text"),
        edge("If-1", "true_result", "TextOutput-A", "input_value"),
        edge("If-1", "false_result", "TextOutput-B", "input_value"),
        edge("TextInput-C", "text", "TextOutput-C", "input_value"),
    ]});
    let c = compiled(&flow, "f");
    let ctx = TestCtx::default();
    let mut req = chat("YES");
    req.output_type = OutputType::Any;
    let got = run(&c, req, &ctx).await.unwrap();
    let outs = got["outputs"][0]["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 1, "{outs:#?}");
    assert_eq!(outs[0]["component_id"], "TextOutput-A");
    assert_eq!(outs[0]["results"]["text"]["text"], "YES");
    let mut req = chat("no");
    req.output_type = OutputType::Any;
    let got = run(&c, req, &ctx).await.unwrap();
    let outs = got["outputs"][0]["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0]["component_id"], "TextOutput-B");
}

#[tokio::test]
async fn list_fields_collect_in_edge_order_and_failures_name_component() {
    let flow = json!({"nodes": [
        node("T1", "TextInput", "One", json!({"input_value": str_field("a")}), &["text"]),
        node("T2", "TextInput", "Two", json!({"input_value": str_field("b")}), &["text"]),
        node("Out", "ChatOutput", "Chat Output", json!({"input_value": {"type": "other", "list": true, "show": true, "value": ""},
            "should_store_message": {"type": "bool", "value": false, "show": true}}), &["message"]),
    ], "edges": [edge("T2", "text", "Out", "input_value"), edge("T1", "text", "Out", "input_value")]});
    let c = compiled(&flow, "f");
    let ctx = TestCtx::default();
    let got = run(&c, RunRequest::default(), &ctx).await.unwrap();
    assert_eq!(
        got["outputs"][0]["outputs"][0]["results"]["message"]["text"],
        "b\na"
    );
    // A failing component is named.
    let flow = json!({"nodes": [
        node("T1", "TextInput", "One", json!({"input_value": str_field("a")}), &["text"]),
        node("S", "SplitText", "Split Text", json!({"data_inputs": {"type": "other", "show": true, "value": ""},
            "chunk_size": {"type": "int", "value": 10, "show": true}, "chunk_overlap": {"type": "int", "value": "50", "show": true}}), &["dataframe"]),
    ], "edges": [edge("T1", "text", "S", "data_inputs")]});
    let c = compiled(&flow, "f");
    let e = run(&c, RunRequest::default(), &ctx).await.unwrap_err();
    assert_eq!(e.status(), 500);
    assert!(e.to_string().starts_with("Error building Component Split Text: Error splitting text: Got a larger chunk overlap (50)"), "{e}");
}

#[test]
fn execute_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let c = compiled(&text_flow(), "f");
    let ctx = TestCtx::default();
    let fut = execute(
        &c,
        RunRequest::default(),
        &ctx,
        None,
        CancellationToken::new(),
    );
    assert_send(&fut);
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<crate::CompiledFlow>();
}

// ------------------------------------------------------------------ fake OpenAI server

#[derive(Clone)]
enum Reply {
    Json(u16, Value),
    Sse(Vec<String>),
    Slow(Duration),
    /// Send the headers and part of a stream, then close the connection.
    DropMidStream,
    /// Close without answering.
    Drop,
}

struct FakeServer {
    base: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<(String, Value)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
    Some((head, body))
}

async fn fake_server(reply: Reply) -> FakeServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let reqs = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            let reqs = reqs.clone();
            tokio::spawn(async move {
                let Some(req) = read_request(&mut sock).await else {
                    return;
                };
                reqs.lock().unwrap().push(req);
                match reply {
                    Reply::Json(status, body) => {
                        let b = body.to_string();
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                            b.len()
                        );
                        let _ = sock.write_all(resp.as_bytes()).await;
                    }
                    Reply::Sse(events) => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                            .await;
                        for e in events {
                            let _ = sock.write_all(format!("data: {e}\n\n").as_bytes()).await;
                            let _ = sock.flush().await;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    Reply::Slow(d) => {
                        tokio::time::sleep(d).await;
                    }
                    Reply::DropMidStream => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                            .await;
                        let chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\n";
                        let _ = sock
                            .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
                            .await;
                        let _ = sock.flush().await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Reply::Drop => {}
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    FakeServer {
        base: format!("http://{addr}/v1"),
        requests,
    }
}

fn llm_ctx(server: &FakeServer) -> TestCtx {
    let mut ctx = TestCtx::default();
    ctx.vars
        .insert("OPENAI_BASE_URL".into(), server.base.clone());
    ctx.vars.insert("OPENAI_API_KEY".into(), "sk-test".into());
    ctx
}

fn basic_prompting() -> Option<(crate::CompiledFlow, String)> {
    let data = load("langflow-starters/Basic Prompting.json")?;
    let f = crate::parse_flow(&data).unwrap();
    let llm = f
        .components()
        .find(|n| n.component_type == "LanguageModelComponent")
        .unwrap()
        .id
        .clone();
    Some((compile("bp-flow", &f).unwrap(), llm))
}

fn bp_request(llm: &str, input: &str) -> RunRequest {
    RunRequest {
        input_value: Some(input.into()),
        tweaks: tweaks(
            json!({llm: {"model": [{"name": "gpt-4o-mini", "provider": "OpenAI"}], "max_tokens": 5}}),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn basic_prompting_non_stream() {
    let Some((c, llm)) = basic_prompting() else {
        return;
    };
    let server = fake_server(Reply::Json(
        200,
        json!({"choices": [{"message": {"role": "assistant", "content": "Hi there!"}}],
               "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}),
    ))
    .await;
    let ctx = llm_ctx(&server);
    let got = run(&c, bp_request(&llm, "hello"), &ctx).await.unwrap();
    let out = &got["outputs"][0]["outputs"][0];
    let msg = &out["results"]["message"];
    assert_eq!(msg["text"], "Hi there!");
    assert_eq!(
        msg["properties"]["usage"],
        json!({"input_tokens": 11, "output_tokens": 3, "total_tokens": 14})
    );
    assert_eq!(msg["properties"]["source"]["source"], "gpt-4o-mini");
    assert_eq!(msg["properties"]["source"]["id"], llm.as_str());
    assert_eq!(out["token_usage"], Value::Null);
    let (head, body) = server.requests.lock().unwrap()[0].clone();
    assert!(head.starts_with("POST /v1/chat/completions"));
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer sk-test")
    );
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["max_tokens"], 5);
    assert_eq!(body["temperature"], 0.1);
    assert!(body.get("stream").is_none());
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.last().unwrap()["role"], "user");
    assert!(
        messages.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .contains("hello")
    );
    // debug output reports the model's token usage.
    let mut req = bp_request(&llm, "hello");
    req.output_type = OutputType::Debug;
    let got = run(&c, req, &ctx).await.unwrap();
    let llm_out = got["outputs"][0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["component_id"] == llm.as_str())
        .unwrap()
        .clone();
    assert_eq!(llm_out["token_usage"]["total_tokens"], 14);
}

#[tokio::test]
async fn basic_prompting_stream() {
    let Some((c, llm)) = basic_prompting() else {
        return;
    };
    let server = fake_server(Reply::Sse(vec![
        json!({"choices": [{"delta": {"role": "assistant", "content": ""}}]}).to_string(),
        json!({"choices": [{"delta": {"content": "Hel"}}]}).to_string(),
        json!({"choices": [{"delta": {"content": "lo!"}}]}).to_string(),
        json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).to_string(),
        "[DONE]".into(),
    ]))
    .await;
    let ctx = llm_ctx(&server);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut req = bp_request(&llm, "hello");
    req.stream = true;
    let res = execute(&c, req, &ctx, Some(tx), CancellationToken::new())
        .await
        .unwrap()
        .to_value();
    let mut evs = Vec::new();
    while let Some(e) = rx.recv().await {
        evs.push(e);
    }
    let names: Vec<_> = evs.iter().map(Event::name).collect();
    assert_eq!(
        names,
        [
            "add_message",
            "add_message",
            "token",
            "token",
            "add_message",
            "add_message",
            "end"
        ]
    );
    let Event::AddMessage(partial) = &evs[1] else {
        panic!()
    };
    assert_eq!(partial["properties"]["state"], "partial");
    let id = partial["id"].as_str().unwrap().to_owned();
    assert_eq!(
        evs[2],
        Event::Token {
            chunk: "Hel".into(),
            id: id.clone()
        }
    );
    let Event::AddMessage(complete) = &evs[4] else {
        panic!()
    };
    assert_eq!(complete["text"], "Hello!");
    assert_eq!(complete["properties"]["usage"]["total_tokens"], 7);
    let Event::AddMessage(final_msg) = &evs[5] else {
        panic!()
    };
    assert_eq!(final_msg["id"], id.as_str());
    let msg = &res["outputs"][0]["outputs"][0]["results"]["message"];
    assert_eq!(msg["text"], "Hello!");
    assert_eq!(msg["properties"]["usage"]["total_tokens"], 7);
    let body = &server.requests.lock().unwrap()[0].1;
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn upstream_errors_keep_status() {
    let Some((c, llm)) = basic_prompting() else {
        return;
    };
    let server = fake_server(Reply::Json(
        401,
        json!({"error": {"message": "Incorrect API key provided"}}),
    ))
    .await;
    let ctx = llm_ctx(&server);
    let e = run(&c, bp_request(&llm, "hi"), &ctx).await.unwrap_err();
    assert_eq!(e.status(), 401);
    assert_eq!(
        e.to_string(),
        "Error building Component Language Model: Model provider returned 401: Incorrect API key provided"
    );
    let server = fake_server(Reply::Json(500, json!({"error": {"message": "boom"}}))).await;
    let ctx = llm_ctx(&server);
    assert_eq!(
        run(&c, bp_request(&llm, "hi"), &ctx)
            .await
            .unwrap_err()
            .status(),
        502
    );
    // The stream reports failures as an error event.
    let server = fake_server(Reply::Json(429, json!({"error": {"message": "slow down"}}))).await;
    let ctx = llm_ctx(&server);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut req = bp_request(&llm, "hi");
    req.stream = true;
    let e = execute(&c, req, &ctx, Some(tx), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 429);
    let mut last = None;
    while let Some(ev) = rx.recv().await {
        last = Some(ev);
    }
    assert_eq!(last, Some(Event::Error(e.to_string())));
}

#[tokio::test]
async fn slow_and_dropped_providers() {
    let Some((c, llm)) = basic_prompting() else {
        return;
    };
    let server = fake_server(Reply::Slow(Duration::from_secs(5))).await;
    let mut ctx = llm_ctx(&server);
    ctx.timeouts = LlmTimeouts {
        total: Duration::from_millis(200),
        idle: Duration::from_millis(200),
    };
    let e = run(&c, bp_request(&llm, "hi"), &ctx).await.unwrap_err();
    assert_eq!(e.status(), 502);
    assert!(e.to_string().contains("timeout"), "{e}");

    let server = fake_server(Reply::Drop).await;
    let ctx = llm_ctx(&server);
    let e = run(&c, bp_request(&llm, "hi"), &ctx).await.unwrap_err();
    assert_eq!(e.status(), 502);

    let server = fake_server(Reply::DropMidStream).await;
    let ctx = llm_ctx(&server);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut req = bp_request(&llm, "hi");
    req.stream = true;
    let e = execute(&c, req, &ctx, Some(tx), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 502);
    let mut names = Vec::new();
    while let Some(ev) = rx.recv().await {
        names.push(ev.name());
    }
    assert!(names.contains(&"token"));
    assert_eq!(names.last(), Some(&"error"));
}

#[tokio::test]
async fn cancellation_stops_the_model_call() {
    let Some((c, llm)) = basic_prompting() else {
        return;
    };
    let server = fake_server(Reply::Slow(Duration::from_secs(30))).await;
    let ctx = llm_ctx(&server);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c2.cancel();
    });
    let started = std::time::Instant::now();
    let e = execute(&c, bp_request(&llm, "hi"), &ctx, None, cancel)
        .await
        .unwrap_err();
    assert_eq!(e, RunError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn missing_model_is_a_component_error() {
    let Some((c, _)) = basic_prompting() else {
        return;
    };
    let ctx = TestCtx::default();
    let e = run(&c, chat("hi"), &ctx).await.unwrap_err();
    assert_eq!(e.status(), 500);
    assert!(
        e.to_string()
            .starts_with("Error building Component Language Model: No model selected"),
        "{e}"
    );
}
