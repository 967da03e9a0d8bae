//! Running flows over HTTP: `/run` (stream and not), `/run/advanced`, `/process`, `/predict`,
//! `/webhook`; every run-route auth text and the isolation matrix; LLM flows against a fake
//! OpenAI-compatible server; chat history (Memory) and the monitor routes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

fn fixture(name: &str) -> Value {
    let path = format!("{FIXTURES}/{name}");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

/// The JSON body captured under a transcript heading.
fn transcript(heading: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/langflow-1.13-transcripts.md")).unwrap();
    let section = text
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("no section {heading}"));
    let line = section.lines().find(|l| l.starts_with('{')).unwrap();
    serde_json::from_str(line).unwrap()
}

/// Same keys in the same order, recursively; values equal except volatile ones.
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

async fn post_flow(s: &TestServer, token: &str, body: &Value) -> Value {
    let res = s
        .client
        .post(s.url("/api/v1/flows/"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let (status, flow) = split(res).await;
    assert_eq!(status, 201, "{flow}");
    flow
}

/// POST with an API key header and an optional JSON body.
async fn run(
    s: &TestServer,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut rb = s.client.post(s.url(path));
    if let Some(k) = key {
        rb = rb.header("x-api-key", k);
    }
    if let Some(b) = body {
        rb = rb.json(b);
    }
    split(rb.send().await.unwrap()).await
}

async fn run_raw(s: &TestServer, path: &str, key: &str, body: &str) -> (StatusCode, Value) {
    let res = s
        .client
        .post(s.url(path))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    split(res).await
}

/// A streamed run: (status, content-type, raw body).
async fn stream(
    s: &TestServer,
    path: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, String, String) {
    let res = s
        .client
        .post(s.url(path))
        .header("x-api-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, res.text().await.unwrap())
}

/// The events of a stream body: each `{"event": ..., "data": ...}` followed by a blank line.
fn events(body: &str) -> Vec<Value> {
    assert!(
        body.ends_with("\n\n"),
        "every event ends with a blank line: {body:?}"
    );
    body.split("\n\n")
        .filter(|c| !c.is_empty())
        .map(|c| {
            assert!(!c.starts_with("data:"), "no SSE data: prefix");
            assert!(
                c.starts_with("{\"event\": "),
                "Python json.dumps framing: {c}"
            );
            serde_json::from_str(c).unwrap_or_else(|e| panic!("{e}: {c}"))
        })
        .collect()
}

fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

struct Setup {
    s: TestServer,
    token: String,
    key: String,
    flow_id: String,
}

async fn setup_with(env: &[(&str, &str)]) -> Setup {
    let s = TestServer::start_with(env).await;
    let token = s.admin_token().await;
    let (key, _) = s.key(&token, json!({"name": "run"})).await;
    let flow = post_flow(&s, &token, &fixture("chat-echo.json")).await;
    let flow_id = flow["id"].as_str().unwrap().to_string();
    Setup {
        s,
        token,
        key,
        flow_id,
    }
}

async fn setup() -> Setup {
    setup_with(&[]).await
}

fn hello() -> Value {
    json!({"input_value": "hello", "input_type": "chat", "output_type": "chat"})
}

#[tokio::test]
async fn chat_echo_by_id_and_endpoint_name_matches_the_transcript() {
    let Setup {
        s, key, flow_id, ..
    } = setup().await;
    let expected = transcript("### POST /api/v1/run/{id}?stream=false ChatInput->ChatOutput");
    for ident in [flow_id.as_str(), "peer-chat-echo"] {
        let (status, got) = run(
            &s,
            &format!("/api/v1/run/{ident}?stream=false"),
            Some(&key),
            Some(&hello()),
        )
        .await;
        assert_eq!(status, 200, "{got}");
        same_shape(&got, &expected, "$");
        assert_eq!(got["session_id"], flow_id.as_str());
        let msg = &got["outputs"][0]["outputs"][0]["results"]["message"];
        assert_eq!(msg["text"], "hello");
        assert_eq!(msg["data"]["flow_id"], flow_id.as_str());
    }
    // Session and tweaks, as the transcript.
    let expected = transcript("### POST /api/v1/run/{id} with session_id and tweaks");
    let body = json!({"input_value": "hi with session", "input_type": "chat", "output_type": "chat",
        "session_id": "sess-123", "tweaks": {"ChatOutput-bbbb2": {"sender_name": "Bot"}}});
    let (status, got) = run(
        &s,
        &format!("/api/v1/run/{flow_id}"),
        Some(&key),
        Some(&body),
    )
    .await;
    assert_eq!(status, 200);
    same_shape(&got, &expected, "$");
    assert_eq!(got["session_id"], "sess-123");
    // No body and an empty object: defaults.
    let expected = transcript("### POST /api/v1/run/{id} no body");
    let (status, got) = run(&s, &format!("/api/v1/run/{flow_id}"), Some(&key), None).await;
    assert_eq!(status, 200, "{got}");
    same_shape(&got, &expected, "$");
    let (status, got) = run(
        &s,
        &format!("/api/v1/run/{flow_id}"),
        Some(&key),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200);
    same_shape(&got, &expected, "$");
    // /run/advanced, as the transcript.
    let expected = transcript("### POST /api/v1/run/advanced/{id} with key");
    let body = json!({"inputs": [{"components": [], "input_value": "adv"}], "outputs": [], "tweaks": {}, "stream": false});
    let (status, got) = run(
        &s,
        &format!("/api/v1/run/advanced/{flow_id}"),
        Some(&key),
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    same_shape(&got, &expected, "$");
}

#[tokio::test]
async fn the_seeds_bodies_and_urls_work() {
    let Setup {
        s, key, flow_id, ..
    } = setup().await;
    let text_of = |v: &Value| v["outputs"][0]["outputs"][0]["results"]["message"]["text"].clone();
    // The seed's older body, on /run, /process and /predict.
    for route in ["run", "process", "predict"] {
        let body = json!({"inputs": {"text": "from the seed"}, "tweaks": {}});
        let (status, got) = run(
            &s,
            &format!("/api/v1/{route}/{flow_id}"),
            Some(&key),
            Some(&body),
        )
        .await;
        assert_eq!(status, 200, "{route}: {got}");
        assert_eq!(text_of(&got), "from the seed", "{route}");
    }
    let body = json!({"inputs": {"input_value": "iv"}});
    let (_, got) = run(
        &s,
        &format!("/api/v1/run/{flow_id}"),
        Some(&key),
        Some(&body),
    )
    .await;
    assert_eq!(text_of(&got), "iv");
    // The first seed document: /process with an empty text.
    let body = json!({"inputs": {"text": ""}, "tweaks": {}});
    let (status, _) = run(
        &s,
        &format!("/api/v1/process/{flow_id}"),
        Some(&key),
        Some(&body),
    )
    .await;
    assert_eq!(status, 200);
    // The second seed document's URL, with its second '?'.
    let res = s
        .client
        .post(s.url(&format!(
            "/api/v1/run/{flow_id}?x-api-key={key}?stream=false"
        )))
        .json(&hello())
        .send()
        .await
        .unwrap();
    let (status, got) = split(res).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(text_of(&got), "hello");
    // ...and the key as a regular query parameter.
    let res = s
        .client
        .post(s.url(&format!(
            "/api/v1/run/{flow_id}?stream=false&x-api-key={key}"
        )))
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn stream_true_sends_langflows_event_framing() {
    let Setup {
        s, key, flow_id, ..
    } = setup().await;
    let (status, ct, body) = stream(
        &s,
        &format!("/api/v1/run/{flow_id}?stream=true"),
        &key,
        &hello(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "text/event-stream; charset=utf-8");
    let evs = events(&body);
    assert_eq!(names(&evs), ["add_message", "add_message", "end"]);
    assert_eq!(evs[0]["data"]["sender"], "User");
    assert_eq!(evs[0]["data"]["text"], "hello");
    assert_eq!(evs[1]["data"]["sender"], "Machine");
    let expected = transcript("### POST /api/v1/run/{id}?stream=false ChatInput->ChatOutput");
    same_shape(&evs[2]["data"]["result"], &expected, "$");
    // The ChatOutput event carries the same message id as the end result.
    assert_eq!(
        evs[1]["data"]["id"],
        evs[2]["data"]["result"]["outputs"][0]["outputs"][0]["results"]["message"]["data"]["id"]
    );

    // `stream` in the body (langflow-sdk) is honoured; the query wins when both are given.
    let mut body = hello();
    body["stream"] = json!(true);
    let (_, ct, _) = stream(&s, &format!("/api/v1/run/{flow_id}"), &key, &body).await;
    assert_eq!(ct, "text/event-stream; charset=utf-8");
    let (_, ct, _) = stream(
        &s,
        &format!("/api/v1/run/{flow_id}?stream=false"),
        &key,
        &body,
    )
    .await;
    assert_eq!(ct, "application/json");
    // A request refused before anything runs is an HTTP error, not a stream.
    let body = json!({"input_value": "x", "tweaks": {"NoSuchNode-1": {"x": 1}}});
    let (status, ct, text) = stream(
        &s,
        &format!("/api/v1/run/{flow_id}?stream=true"),
        &key,
        &body,
    )
    .await;
    assert_eq!(status, 422, "{text}");
    assert!(ct.starts_with("application/json"));
}

#[tokio::test]
async fn every_run_route_auth_failure_has_langflows_text() {
    let Setup {
        s,
        token,
        key,
        flow_id,
    } = setup().await;
    let path = format!("/api/v1/run/{flow_id}?stream=false");
    let missing = detail("An API key must be passed as query or header");
    let invalid = detail("Invalid or missing API key");
    let (status, body) = run(&s, &path, None, Some(&hello())).await;
    assert_eq!((status, body), (StatusCode::FORBIDDEN, missing.clone()));
    for bad in [
        "nope",
        "sk-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "fgk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000",
    ] {
        let (status, body) = run(&s, &path, Some(bad), Some(&hello())).await;
        assert_eq!(
            (status, body),
            (StatusCode::FORBIDDEN, invalid.clone()),
            "{bad}"
        );
    }
    // A login token is not an API key here.
    let res = s
        .client
        .post(s.url(&path))
        .bearer_auth(&token)
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(split(res).await, (StatusCode::FORBIDDEN, missing.clone()));
    // Nonexistent flow without a key: the key is checked first.
    let (status, body) = run(&s, "/api/v1/run/no-such-endpoint", None, None).await;
    assert_eq!((status, body), (StatusCode::FORBIDDEN, missing.clone()));

    // Deleted key.
    let (doomed, doomed_id) = s.key(&token, json!({"name": "to-delete"})).await;
    assert_eq!(run(&s, &path, Some(&doomed), Some(&hello())).await.0, 200);
    let res = s
        .client
        .delete(s.url(&format!("/api/v1/api_key/{doomed_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        run(&s, &path, Some(&doomed), Some(&hello())).await,
        (StatusCode::FORBIDDEN, invalid.clone())
    );

    // Expired key (it worked before it expired).
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let (expiring, _) = s
        .key(&token, json!({"name": "expiring", "expires_at": soon}))
        .await;
    assert_eq!(run(&s, &path, Some(&expiring), Some(&hello())).await.0, 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        run(&s, &path, Some(&expiring), Some(&hello())).await,
        (StatusCode::FORBIDDEN, invalid.clone())
    );

    // Deactivated owner.
    let (carol_id, carol) = s.user(&token, "carol").await;
    let (carol_key, _) = s.key(&carol, json!({"name": "c"})).await;
    let mut carols_flow = fixture("chat-echo.json");
    carols_flow["endpoint_name"] = json!("userc-chat-echo");
    post_flow(&s, &carol, &carols_flow).await;
    assert_eq!(
        run(
            &s,
            "/api/v1/run/userc-chat-echo",
            Some(&carol_key),
            Some(&hello())
        )
        .await
        .0,
        200
    );
    let res = s
        .client
        .patch(s.url(&format!("/api/v1/users/{carol_id}")))
        .bearer_auth(&token)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        run(
            &s,
            "/api/v1/run/userc-chat-echo",
            Some(&carol_key),
            Some(&hello())
        )
        .await,
        (StatusCode::FORBIDDEN, invalid.clone())
    );

    // The other run routes use the same texts.
    for route in ["run/advanced", "process", "predict"] {
        let p = format!("/api/v1/{route}/{flow_id}");
        assert_eq!(
            run(&s, &p, None, Some(&json!({}))).await,
            (StatusCode::FORBIDDEN, missing.clone()),
            "{route}"
        );
        assert_eq!(
            run(&s, &p, Some("nope"), Some(&json!({}))).await,
            (StatusCode::FORBIDDEN, invalid.clone()),
            "{route}"
        );
    }
    // Webhooks have their own.
    let p = format!("/api/v1/webhook/{flow_id}");
    assert_eq!(
        run(&s, &p, None, Some(&json!({"any": "payload"}))).await,
        (
            StatusCode::FORBIDDEN,
            detail("API key required when webhook authentication is enabled")
        )
    );
    assert_eq!(
        run(&s, &p, Some("nope"), Some(&json!({}))).await,
        (StatusCode::FORBIDDEN, detail("Invalid API key"))
    );
    // GET is not a run.
    let res = s
        .client
        .get(s.url(&path))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        split(res).await,
        (StatusCode::METHOD_NOT_ALLOWED, detail("Method Not Allowed"))
    );
}

#[tokio::test]
async fn keys_reach_only_their_owners_flows_and_their_flow_list() {
    let Setup {
        s,
        token,
        key,
        flow_id,
    } = setup().await;
    let (_, bob) = s.user(&token, "bob").await;
    let (bob_key, _) = s.key(&bob, json!({"name": "b"})).await;
    let mut bobs = fixture("chat-echo.json");
    bobs["endpoint_name"] = json!("userb-chat-echo");
    let bobs_flow = post_flow(&s, &bob, &bobs).await;
    let bobs_id = bobs_flow["id"].as_str().unwrap();
    let not_found = |x: &str| detail(&format!("Flow identifier {x} not found"));
    // bob -> alice's flow, by id and by endpoint name.
    for ident in [flow_id.as_str(), "peer-chat-echo"] {
        let (status, body) = run(
            &s,
            &format!("/api/v1/run/{ident}?stream=false"),
            Some(&bob_key),
            Some(&hello()),
        )
        .await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found(ident)));
    }
    // The superuser's key -> bob's flow: no exception for superusers.
    for ident in [bobs_id, "userb-chat-echo"] {
        let (status, body) = run(
            &s,
            &format!("/api/v1/run/{ident}"),
            Some(&key),
            Some(&hello()),
        )
        .await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found(ident)));
    }
    // Each on their own: fine.
    assert_eq!(
        run(
            &s,
            "/api/v1/run/userb-chat-echo",
            Some(&bob_key),
            Some(&hello())
        )
        .await
        .0,
        200
    );
    // Missing flows.
    for ident in [
        "00000000-0000-4000-8000-000000000000",
        "no-such-endpoint",
        "not a valid name",
    ] {
        let (status, body) = run(
            &s,
            &format!("/api/v1/run/{}", ident.replace(' ', "%20")),
            Some(&key),
            None,
        )
        .await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found(ident)));
    }
    // A key limited to one flow reaches only that one (by id or endpoint name).
    let other = post_flow(&s, &token, &fixture("chat-echo.json")).await;
    let other_id = other["id"].as_str().unwrap().to_string();
    let (limited, _) = s
        .key(&token, json!({"name": "limited", "flows": [flow_id]}))
        .await;
    assert_eq!(
        run(&s, &format!("/api/v1/run/{flow_id}"), Some(&limited), None)
            .await
            .0,
        200
    );
    assert_eq!(
        run(&s, "/api/v1/run/peer-chat-echo", Some(&limited), None)
            .await
            .0,
        200
    );
    let (status, body) = run(&s, &format!("/api/v1/run/{other_id}"), Some(&limited), None).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, not_found(&other_id))
    );
    let (status, _) = run(&s, "/api/v1/run/peer-chat-echo-1", Some(&limited), None).await;
    assert_eq!(status, 404);
    // Webhooks too.
    let (status, _) = run(
        &s,
        &format!("/api/v1/webhook/{other_id}"),
        Some(&limited),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_bodies_and_flows_with_problems_are_422() {
    let Setup {
        s,
        token,
        key,
        flow_id,
    } = setup().await;
    let path = format!("/api/v1/run/{flow_id}");
    // Malformed JSON: FastAPI's shape, as the transcript.
    let (status, body) = run_raw(&s, &path, &key, "{\"input_value\":").await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    assert_eq!(body["detail"][0]["msg"], "JSON decode error");
    for (bad, field) in [
        (json!({"input_type": "foo"}), "input_type"),
        (json!({"output_type": "bogus"}), "output_type"),
        (json!({"tweaks": []}), "tweaks"),
        (json!({"tweaks": "x"}), "tweaks"),
        (json!({"input_value": 3}), "input_value"),
        (json!({"session_id": {"a": 1}}), "session_id"),
        (json!({"stream": "sometimes"}), "stream"),
        (json!({"inputs": 5}), "inputs"),
    ] {
        let (status, body) = run(&s, &path, Some(&key), Some(&bad)).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body.to_string().contains(field), "{bad}: {body}");
    }
    let (status, body) = run(&s, &path, Some(&key), Some(&json!({"input_type": "foo"}))).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["detail"][0]["msg"],
        "input_type must be one of chat, text, any"
    );
    let (status, _) = run(&s, &path, Some(&key), Some(&json!([1, 2]))).await;
    assert_eq!(status, 422);
    let (status, _) = run(&s, &format!("{path}?stream=perhaps"), Some(&key), None).await;
    assert_eq!(status, 422);
    // A tweak naming an unknown node is refused by the engine (422 naming it).
    let (status, body) = run(
        &s,
        &path,
        Some(&key),
        Some(&json!({"tweaks": {"NoSuchNode-1": {"x": 1}}})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["detail"].as_str().unwrap().contains("NoSuchNode-1"),
        "{body}"
    );
    // The input_value / ChatInput tweak clash is 400.
    let body = json!({"input_value": "a", "tweaks": {"ChatInput-aaaa1": {"input_value": "b"}}});
    let (status, _) = run(&s, &path, Some(&key), Some(&body)).await;
    assert_eq!(status, 400);
    // An oversized body is 413.
    let big = json!({"input_value": "x".repeat(3 * 1024 * 1024)});
    let status =
        oversized_status(|c| c.post(s.url(&path)).header("x-api-key", &key).json(&big)).await;
    assert_eq!(status, 413);

    // A flow with problems (an unsupported Agent) is stored, and running it is 422 naming the node.
    let agent = post_flow(&s, &token, &fixture("langflow-starters/Simple Agent.json")).await;
    let problems = agent["problems"].as_array().unwrap();
    let agent_node = problems
        .iter()
        .find(|p| p["type"] == "Agent")
        .expect("the Agent is named")["node_id"]
        .as_str()
        .unwrap();
    let agent_id = agent["id"].as_str().unwrap();
    for route in ["run", "run/advanced", "process", "webhook"] {
        let (status, body) = run(
            &s,
            &format!("/api/v1/{route}/{agent_id}"),
            Some(&key),
            Some(&json!({})),
        )
        .await;
        assert_eq!(status, 422, "{route}: {body}");
        let text = body["detail"].as_str().unwrap();
        assert!(
            text.contains(&format!(
                "Component type \"Agent\" (node {agent_node}) is not supported by this server"
            )),
            "{text}"
        );
    }
}

#[tokio::test]
async fn flow_changes_reach_runs_at_once() {
    let Setup {
        s,
        token,
        key,
        flow_id,
    } = setup().await;
    assert_eq!(
        run(&s, "/api/v1/run/peer-chat-echo", Some(&key), None)
            .await
            .0,
        200
    );
    // Rename the endpoint: the old name is gone, the new one runs.
    let res = s
        .client
        .patch(s.url(&format!("/api/v1/flows/{flow_id}")))
        .bearer_auth(&token)
        .json(&json!({"endpoint_name": "renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        run(&s, "/api/v1/run/peer-chat-echo", Some(&key), None)
            .await
            .0,
        404
    );
    assert_eq!(
        run(&s, "/api/v1/run/renamed", Some(&key), None).await.0,
        200
    );
    // Change the flow itself: the next run uses the new version.
    let mut doc = fixture("chat-echo.json");
    doc["data"]["nodes"][1]["data"]["node"]["template"]["sender_name"]["value"] = json!("Changed");
    let res = s
        .client
        .patch(s.url(&format!("/api/v1/flows/{flow_id}")))
        .bearer_auth(&token)
        .json(&json!({"data": doc["data"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, got) = run(&s, "/api/v1/run/renamed", Some(&key), Some(&hello())).await;
    assert_eq!(
        got["outputs"][0]["outputs"][0]["results"]["message"]["sender_name"], "Changed",
        "{got}"
    );
    // Delete it: 404.
    let res = s
        .client
        .delete(s.url(&format!("/api/v1/flows/{flow_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        run(&s, "/api/v1/run/renamed", Some(&key), None).await.0,
        404
    );
    assert_eq!(
        run(&s, &format!("/api/v1/run/{flow_id}"), Some(&key), None)
            .await
            .0,
        404
    );
}

// ---- A fake OpenAI-compatible provider -------------------------------------------------------

#[derive(Default)]
struct Fake {
    requests: AtomicUsize,
    last: Mutex<Value>,
    /// Set when a streamed reply was abandoned by its client before the end.
    abandoned: AtomicBool,
}

struct DropFlag(Arc<Fake>, std::cell::Cell<bool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.1.get() {
            self.0.abandoned.store(true, Ordering::SeqCst);
        }
    }
}

async fn completions(State(f): State<Arc<Fake>>, axum::Json(body): axum::Json<Value>) -> Response {
    f.requests.fetch_add(1, Ordering::SeqCst);
    *f.last.lock().unwrap() = body.clone();
    let model = body["model"].as_str().unwrap_or("").to_string();
    match model.as_str() {
        "fail-401" => {
            let e = json!({"error": {"message": "Incorrect API key provided: x", "type": "invalid_request_error"}});
            return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(e)).into_response();
        }
        "fail-500" => {
            let e =
                json!({"error": {"message": "The server had an error", "type": "server_error"}});
            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(e)).into_response();
        }
        _ => {}
    }
    let usage = json!({"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9});
    if body["stream"] != json!(true) {
        let reply = json!({"id": "c1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello world"}, "finish_reason": "stop"}],
            "usage": usage});
        return axum::Json(reply).into_response();
    }
    let slow = model == "slow";
    let tokens: Vec<String> = if slow {
        (0..200).map(|i| format!("t{i} ")).collect()
    } else {
        vec!["Hello".into(), " world".into()]
    };
    let n = tokens.len();
    let chunks = futures::stream::unfold(
        (0usize, DropFlag(f.clone(), std::cell::Cell::new(false))),
        move |(i, flag)| {
            let tokens = tokens.clone();
            let usage = usage.clone();
            async move {
                if slow {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let data = if i < n {
                    json!({"choices": [{"index": 0, "delta": {"content": tokens[i]}}]}).to_string()
                } else if i == n {
                    json!({"choices": [], "usage": usage}).to_string()
                } else if i == n + 1 {
                    "[DONE]".to_string()
                } else {
                    flag.1.set(true);
                    return None;
                };
                Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {data}\n\n"))),
                    (i + 1, flag),
                ))
            }
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(chunks))
        .unwrap()
}

async fn fake_provider() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), fake)
}

async fn basic_prompting(s: &TestServer, token: &str) -> (String, String) {
    let doc = fixture("langflow-starters/Basic Prompting.json");
    let flow = post_flow(s, token, &doc).await;
    assert_eq!(flow["problems"], json!([]), "Basic Prompting is runnable");
    let llm = doc["data"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["data"]["type"] == "LanguageModelComponent")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (flow["id"].as_str().unwrap().to_string(), llm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_prompting_against_a_fake_provider() {
    let (base, fake) = fake_provider().await;
    let Setup { s, token, key, .. } = setup_with(&[("OPENAI_BASE_URL", &base)]).await;
    let (flow_id, llm) = basic_prompting(&s, &token).await;
    let tweaks = |model: &str| json!({llm.clone(): {"model": model, "api_key": "x"}});
    let path = format!("/api/v1/run/{flow_id}");

    // Not streamed.
    let body = json!({"input_value": "hi", "tweaks": tweaks("gpt-4o-mini")});
    let (status, got) = run(&s, &path, Some(&key), Some(&body)).await;
    assert_eq!(status, 200, "{got}");
    let result = &got["outputs"][0]["outputs"][0];
    assert_eq!(result["results"]["message"]["text"], "Hello world");
    assert_eq!(
        result["results"]["message"]["properties"]["usage"],
        json!({"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}),
        "{result}"
    );
    let sent = fake.last.lock().unwrap().clone();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(
        sent["messages"].as_array().unwrap().last().unwrap()["content"],
        "hi"
    );

    // Streamed: the user's message, the partial LLM message, tokens, the complete one, the
    // ChatOutput's stored message, end.
    let (status, ct, text) = stream(&s, &format!("{path}?stream=true"), &key, &body).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "text/event-stream; charset=utf-8");
    let evs = events(&text);
    assert_eq!(
        names(&evs),
        [
            "add_message",
            "add_message",
            "token",
            "token",
            "add_message",
            "add_message",
            "end"
        ],
        "{text}"
    );
    assert_eq!(evs[2]["data"]["chunk"], "Hello");
    assert_eq!(evs[3]["data"]["chunk"], " world");
    assert_eq!(evs[1]["data"]["properties"]["state"], "partial");
    assert_eq!(evs[4]["data"]["text"], "Hello world");
    let end = &evs[6]["data"]["result"]["outputs"][0]["outputs"][0];
    assert_eq!(end["results"]["message"]["text"], "Hello world");
    assert_eq!(
        end["results"]["message"]["properties"]["usage"]["total_tokens"],
        9
    );

    // Upstream failures: a client error keeps its status, a server error is 502.
    let (status, got) = run(
        &s,
        &path,
        Some(&key),
        Some(&json!({"input_value": "hi", "tweaks": tweaks("fail-401")})),
    )
    .await;
    assert_eq!(status, 401, "{got}");
    let detail = got["detail"].as_str().unwrap();
    assert!(
        detail.contains("Incorrect API key provided")
            && detail.starts_with("Error building Component"),
        "{detail}"
    );
    let (status, got) = run(
        &s,
        &path,
        Some(&key),
        Some(&json!({"input_value": "hi", "tweaks": tweaks("fail-500")})),
    )
    .await;
    assert_eq!(status, 502, "{got}");
    // When streaming, a failure after the start is an error event.
    let (status, _, text) = stream(
        &s,
        &format!("{path}?stream=true"),
        &key,
        &json!({"input_value": "hi", "tweaks": tweaks("fail-500")}),
    )
    .await;
    assert_eq!(status, 200);
    let evs = events(&text);
    assert_eq!(names(&evs).last().unwrap(), "error", "{text}");
    assert!(
        evs.last().unwrap()["data"]["error"]
            .as_str()
            .unwrap()
            .contains("The server had an error")
    );

    // A client that goes away cancels the run and the provider request in flight.
    let res = s
        .client
        .post(s.url(&format!("{path}?stream=true")))
        .header("x-api-key", &key)
        .json(&json!({"input_value": "hi", "tweaks": tweaks("slow")}))
        .send()
        .await
        .unwrap();
    let mut res = res;
    let mut seen = String::new();
    while !seen.contains("\"token\"") {
        let chunk = res.chunk().await.unwrap().expect("tokens arrive");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(res);
    eventually("the provider stream to be abandoned", async || {
        fake.abandoned.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn the_global_variable_header_supplies_the_api_key() {
    let (base, fake) = fake_provider().await;
    let Setup { s, token, key, .. } = setup_with(&[("OPENAI_BASE_URL", &base)]).await;
    let (flow_id, llm) = basic_prompting(&s, &token).await;
    // api_key left as the starter ships it (a variable reference); the header supplies it.
    let body = json!({"input_value": "hi", "tweaks": {llm: {"model": "gpt-4o-mini"}}});
    let res = s
        .client
        .post(s.url(&format!("/api/v1/run/{flow_id}")))
        .header("x-api-key", &key)
        .header("X-LANGFLOW-GLOBAL-VAR-OPENAI_API_KEY", "from-header")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, got) = split(res).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
}

fn node(id: &str, ty: &str, display: &str, template: Value, outputs: Value) -> Value {
    json!({"id": id, "type": "genericNode", "position": {"x": 0, "y": 0},
        "data": {"id": id, "type": ty, "node": {"display_name": display, "template": template,
            "outputs": outputs, "base_classes": ["Message"], "edited": false}}})
}

fn edge(s: &str, out: &str, out_types: &[&str], t: &str, field: &str) -> Value {
    json!({"source": s, "target": t, "data": {
        "sourceHandle": {"dataType": "X", "id": s, "name": out, "output_types": out_types},
        "targetHandle": {"fieldName": field, "id": t, "inputTypes": ["Message", "Data"], "type": "str"}}})
}

fn output(name: &str, ty: &str) -> Value {
    json!([{"name": name, "method": name, "types": [ty], "selected": ty, "cache": true}])
}

fn str_field(value: &str) -> Value {
    json!({"type": "str", "value": value, "show": true, "advanced": false, "required": false, "list": false})
}

/// ChatInput + Memory -> Prompt -> ChatOutput: each answer shows the history it saw.
fn memory_flow() -> Value {
    let echo = fixture("chat-echo.json");
    let chat_in = echo["data"]["nodes"][0].clone();
    let chat_out = echo["data"]["nodes"][1].clone();
    let memory = node(
        "Memory-mmmm1",
        "Memory",
        "Message History",
        json!({
            "mode": str_field("Retrieve"),
            "n_messages": {"type": "int", "value": 100, "show": true},
            "order": str_field("Ascending"),
            "sender_type": str_field("Machine and User"),
            "sender_name": str_field(""),
            "session_id": str_field(""),
            "context_id": str_field(""),
            "template": str_field("{sender_name}: {text}"),
        }),
        output("messages_text", "Message"),
    );
    let prompt = node(
        "Prompt-pppp1",
        "Prompt",
        "Prompt",
        json!({
            "template": {"type": "prompt", "value": "[{history}] {question}", "show": true},
            "history": str_field(""),
            "question": str_field(""),
        }),
        output("prompt", "Message"),
    );
    json!({"name": "memory-test", "endpoint_name": "memory-test", "data": {
        "nodes": [chat_in, memory, prompt, chat_out],
        "edges": [
            edge("ChatInput-aaaa1", "message", &["Message"], "Prompt-pppp1", "question"),
            edge("Memory-mmmm1", "messages_text", &["Message"], "Prompt-pppp1", "history"),
            edge("Prompt-pppp1", "prompt", &["Message"], "ChatOutput-bbbb2", "input_value"),
        ],
        "viewport": {"x": 0, "y": 0, "zoom": 1}}})
}

#[tokio::test]
async fn memory_sees_earlier_turns_and_the_monitor_lists_them() {
    let Setup {
        s,
        token,
        key,
        flow_id: echo_id,
    } = setup().await;
    let flow = post_flow(&s, &token, &memory_flow()).await;
    assert_eq!(flow["problems"], json!([]), "{}", flow["problems"]);
    let flow_id = flow["id"].as_str().unwrap().to_string();
    let mut answers = Vec::new();
    for turn in ["first", "second", "third"] {
        let body = json!({"input_value": turn, "session_id": "conv-1"});
        let (status, got) = run(&s, "/api/v1/run/memory-test", Some(&key), Some(&body)).await;
        assert_eq!(status, 200, "{got}");
        answers.push(
            got["outputs"][0]["outputs"][0]["results"]["message"]["text"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let third = &answers[2];
    assert!(
        third.contains("User: first") && third.contains("User: second"),
        "{answers:?}"
    );
    assert!(
        third.contains(&format!("AI: {}", answers[0])),
        "{answers:?}"
    );
    assert!(third.ends_with("third"), "{third}");
    // Another session starts empty.
    let (_, got) = run(
        &s,
        "/api/v1/run/memory-test",
        Some(&key),
        Some(&json!({"input_value": "other", "session_id": "conv-2"})),
    )
    .await;
    let text = got["outputs"][0]["outputs"][0]["results"]["message"]["text"]
        .as_str()
        .unwrap();
    assert!(!text.contains("first"), "{text}");

    // The monitor: Langflow's MessageResponse, oldest first, filtered.
    let (status, list) = s
        .get_with_token(
            &format!("/api/v1/monitor/messages?flow_id={flow_id}&session_id=conv-1"),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 6, "three turns, two messages each");
    let keys: Vec<&str> = list[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "flow_id",
            "timestamp",
            "sender",
            "sender_name",
            "session_id",
            "context_id",
            "text",
            "files",
            "edit",
            "duration",
            "properties",
            "category",
            "content_blocks",
            "session_metadata"
        ]
    );
    assert_eq!(list[0]["text"], "first");
    assert_eq!(list[0]["sender"], "User");
    assert_eq!(list[0]["files"], "[]");
    assert_eq!(list[5]["text"], third.as_str());
    let (_, machine) = s
        .get_with_token(
            &format!("/api/v1/monitor/messages?flow_id={flow_id}&session_id=conv-1&sender=Machine"),
            &token,
        )
        .await;
    assert_eq!(machine.as_array().unwrap().len(), 3);
    let (_, desc) = s
        .get_with_token(
            "/api/v1/monitor/messages?session_id=conv-1&order=DESC",
            &token,
        )
        .await;
    assert_eq!(desc[0]["text"], third.as_str());
    let (status, _) = s
        .get_with_token("/api/v1/monitor/messages?flow_id=not-a-uuid", &token)
        .await;
    assert_eq!(status, 422);
    let (status, _) = s
        .get_with_token("/api/v1/monitor/messages?order_by=password", &token)
        .await;
    assert_eq!(status, 400);

    // Only the owner's: bob sees none of them and cannot delete them.
    let (_, bob) = s.user(&token, "bob").await;
    let (_, bobs) = s
        .get_with_token(&format!("/api/v1/monitor/messages?flow_id={flow_id}"), &bob)
        .await;
    assert_eq!(bobs, json!([]));
    let (_, bobs) = s
        .get_with_token("/api/v1/monitor/messages?session_id=conv-1", &bob)
        .await;
    assert_eq!(bobs, json!([]));
    let res = s
        .client
        .delete(s.url("/api/v1/monitor/messages/session/conv-1"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (_, still) = s
        .get_with_token("/api/v1/monitor/messages?session_id=conv-1", &token)
        .await;
    assert_eq!(still.as_array().unwrap().len(), 6);
    // Never without credentials.
    let res = s
        .client
        .get(s.url("/api/v1/monitor/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        split(res).await,
        (
            StatusCode::FORBIDDEN,
            detail("No authentication credentials provided")
        )
    );
    let res = s
        .client
        .delete(s.url("/api/v1/monitor/messages/session/conv-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // A full API key works like a login.
    let (status, via_key) = s
        .get_with_key("/api/v1/monitor/messages?session_id=conv-1", &key)
        .await;
    assert_eq!(status, 200);
    assert_eq!(via_key.as_array().unwrap().len(), 6);
    // The owner deletes the session: 204, and memory starts over.
    let res = s
        .client
        .delete(s.url("/api/v1/monitor/messages/session/conv-1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (_, gone) = s
        .get_with_token("/api/v1/monitor/messages?session_id=conv-1", &token)
        .await;
    assert_eq!(gone, json!([]));
    let (_, got) = run(
        &s,
        "/api/v1/run/memory-test",
        Some(&key),
        Some(&json!({"input_value": "again", "session_id": "conv-1"})),
    )
    .await;
    let text = got["outputs"][0]["outputs"][0]["results"]["message"]["text"]
        .as_str()
        .unwrap();
    assert!(!text.contains("first"), "{text}");

    // Messages of chat-echo runs are listed under their flow too.
    run(
        &s,
        &format!("/api/v1/run/{echo_id}"),
        Some(&key),
        Some(&hello()),
    )
    .await;
    let (_, echo) = s
        .get_with_token(
            &format!("/api/v1/monitor/messages?flow_id={echo_id}"),
            &token,
        )
        .await;
    assert_eq!(echo.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn webhooks_run_in_the_background_and_their_messages_are_stored() {
    let Setup { s, token, key, .. } = setup().await;
    let echo = fixture("chat-echo.json");
    let hook = node(
        "Webhook-wwww1",
        "Webhook",
        "Webhook",
        json!({"data": str_field("")}),
        output("output_data", "Data"),
    );
    let doc = json!({"name": "hook", "endpoint_name": "hook", "data": {
        "nodes": [hook, echo["data"]["nodes"][1].clone()],
        "edges": [edge("Webhook-wwww1", "output_data", &["Data"], "ChatOutput-bbbb2", "input_value")]}});
    let flow = post_flow(&s, &token, &doc).await;
    assert_eq!(flow["problems"], json!([]), "{}", flow["problems"]);
    let flow_id = flow["id"].as_str().unwrap().to_string();
    for ident in [flow_id.as_str(), "hook"] {
        let (status, body) = run(
            &s,
            &format!("/api/v1/webhook/{ident}"),
            Some(&key),
            Some(&json!({"any": "hook-payload-123"})),
        )
        .await;
        assert_eq!(
            (status, body),
            (
                StatusCode::ACCEPTED,
                json!({"message": "Task started in the background", "status": "in progress"})
            )
        );
    }
    let path = format!("/api/v1/monitor/messages?flow_id={flow_id}");
    eventually("the webhook's messages", async || {
        let (_, list) = s.get_with_token(&path, &token).await;
        list.as_array().is_some_and(|l| l.len() == 2)
    })
    .await;
    let (_, list) = s.get_with_token(&path, &token).await;
    assert!(
        list[0]["text"]
            .as_str()
            .unwrap()
            .contains("hook-payload-123"),
        "{list}"
    );
    // Unknown flow: 404 right away.
    let (status, body) = run(&s, "/api/v1/webhook/nope", Some(&key), None).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            detail("Flow identifier nope not found")
        )
    );
}

#[tokio::test]
async fn queued_messages_are_written_at_shutdown() {
    let Setup {
        s,
        token,
        key,
        flow_id,
    } = setup().await;
    for i in 0..20 {
        let body = json!({"input_value": format!("m{i}"), "session_id": "shutdown"});
        assert_eq!(
            run(
                &s,
                &format!("/api/v1/run/{flow_id}"),
                Some(&key),
                Some(&body)
            )
            .await
            .0,
            200
        );
    }
    drop(token);
    let dir = s.stop_keep_dir();
    let s2 = TestServer::start_in(dir, &[]).await;
    let token = s2.admin_token().await;
    let (_, list) = s2
        .get_with_token("/api/v1/monitor/messages?session_id=shutdown", &token)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 40);
}

#[tokio::test]
async fn a_cli_import_in_another_process_reaches_a_running_server() {
    let Setup {
        s, key, flow_id, ..
    } = setup().await;
    let sender =
        |v: &Value| v["outputs"][0]["outputs"][0]["results"]["message"]["sender_name"].clone();
    let (_, got) = run(
        &s,
        &format!("/api/v1/run/{flow_id}"),
        Some(&key),
        Some(&hello()),
    )
    .await;
    assert_eq!(sender(&got), "AI");
    // The same flow (same id), changed, imported by the CLI straight into the database.
    let mut doc = fixture("chat-echo.json");
    doc["id"] = json!(flow_id);
    doc["data"]["nodes"][1]["data"]["node"]["template"]["sender_name"]["value"] = json!("FromCli");
    let file = s.data_dir().join("changed.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = s.cli(&["flows", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, got) = run(
        &s,
        &format!("/api/v1/run/{flow_id}"),
        Some(&key),
        Some(&hello()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        sender(&got),
        "FromCli",
        "the server's compiled flow was replaced"
    );
}

/// A flow id in upper case (or without hyphens) names the same flow, as Langflow's UUID parsing
/// does; a 404 still echoes the identifier as given.
#[tokio::test]
async fn flow_ids_are_case_insensitive_on_run_routes() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/chat-echo.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let res = s
        .client
        .post(s.url("/api/v1/flows/"))
        .bearer_auth(&token)
        .json(&doc)
        .send()
        .await
        .unwrap();
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (key, _) = s.key(&token, serde_json::json!({"name": "k"})).await;
    for ident in [id.to_uppercase(), id.replace('-', "")] {
        let res = s
            .client
            .post(s.url(&format!("/api/v1/run/{ident}")))
            .header("x-api-key", &key)
            .json(&serde_json::json!({"input_value": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{ident}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(
            body["outputs"][0]["outputs"][0]["results"]["message"]["text"],
            "hi"
        );
    }
    let missing = "0000000A-0000-4000-8000-000000000000";
    let res = s
        .client
        .post(s.url(&format!("/api/v1/run/{missing}")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        common::detail(&format!("Flow identifier {missing} not found"))
    );
}

/// A file uploaded for a flow and named in a ChatInput `files` tweak reaches the model as an
/// image content part (the seed script's `upload_file` + tweak pattern), and another user's
/// file path is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_image_reaches_the_model_through_a_file_tweak() {
    let (base, fake) = fake_provider().await;
    let Setup { s, token, key, .. } = setup_with(&[("OPENAI_BASE_URL", &base)]).await;
    let (flow_id, llm) = basic_prompting(&s, &token).await;
    let doc = fixture("langflow-starters/Basic Prompting.json");
    let chat_input = doc["data"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["data"]["type"] == "ChatInput")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A 1×1 PNG.
    let png: Vec<u8> = [
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0,
        0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ]
    .to_vec();
    let part = reqwest::multipart::Part::bytes(png.clone()).file_name("dot.png");
    let res = s
        .client
        .post(s.url(&format!("/api/v1/upload/{flow_id}")))
        .header("x-api-key", &key)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let uploaded: Value = res.json().await.unwrap();
    let file_path = uploaded["file_path"].as_str().unwrap().to_string();
    assert!(file_path.starts_with(&format!("{flow_id}/")), "{file_path}");

    let body = json!({"input_value": "what is this?", "tweaks": {
        chat_input.clone(): {"files": [file_path.clone()]},
        llm.clone(): {"model": "gpt-4o-mini", "api_key": "x"},
    }});
    let (status, got) = run(
        &s,
        &format!("/api/v1/run/{flow_id}"),
        Some(&key),
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    let sent = fake.last.lock().unwrap().clone();
    let content = &sent["messages"].as_array().unwrap().last().unwrap()["content"];
    let parts = content
        .as_array()
        .unwrap_or_else(|| panic!("expected content parts, got {content}"));
    let image = parts
        .iter()
        .find(|p| p["type"] == "image_url")
        .unwrap_or_else(|| panic!("no image part in {content}"));
    let url = image["image_url"]["url"].as_str().unwrap();
    assert!(url.starts_with("data:image/png;base64,"), "{url}");
    assert!(
        parts
            .iter()
            .any(|p| p["type"] == "text" && p["text"].as_str().unwrap().contains("what is this?")),
        "{content}"
    );

    // Bob cannot name alice's file in his own run.
    let (_, bob) = s.user(&token, "bob").await;
    let (bob_key, _) = s.key(&bob, json!({"name": "bob"})).await;
    let mut bobs_doc = doc.clone();
    bobs_doc.as_object_mut().unwrap().remove("id");
    let bob_flow = post_flow(&s, &bob, &bobs_doc).await;
    let bob_flow_id = bob_flow["id"].as_str().unwrap();
    let (status, got) = run(
        &s,
        &format!("/api/v1/run/{bob_flow_id}"),
        Some(&bob_key),
        Some(&body),
    )
    .await;
    assert_eq!(
        status, 422,
        "a file that is not the caller's is bad input: {got}"
    );
    assert!(
        got["detail"]
            .as_str()
            .unwrap()
            .contains("Could not read file"),
        "{got}"
    );
    assert!(!got.to_string().contains("base64"), "{got}");
}
