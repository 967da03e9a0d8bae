//! Flows: CRUD with Langflow's shapes, endpoint names, problems, upload/download, round trips,
//! bad input, and the isolation matrix.

mod common;

use std::io::Write;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

fn fixture(name: &str) -> Value {
    let path = format!("{FIXTURES}/{name}");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

fn starters() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(format!("{FIXTURES}/langflow-starters"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            (
                name,
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 25);
    out
}

async fn post_flow(s: &TestServer, token: &str, body: &Value) -> (StatusCode, Value) {
    split(
        s.client
            .post(s.url("/api/v1/flows/"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn upload(s: &TestServer, token: &str, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
    let form = reqwest::multipart::Form::new().part("file", part);
    split(
        s.client
            .post(s.url("/api/v1/flows/upload/"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn create_read_list_update_and_delete_with_langflows_shapes() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let (status, flow) = post_flow(&s, &token, &fixture("chat-echo.json")).await;
    assert_eq!(status, 201, "{flow}");
    let keys: Vec<&str> = flow
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        &keys[..9],
        [
            "name",
            "description",
            "icon",
            "icon_bg_color",
            "gradient",
            "data",
            "is_component",
            "updated_at",
            "webhook"
        ]
    );
    assert_eq!(flow["name"], "peer-chat-echo");
    assert_eq!(flow["endpoint_name"], "peer-chat-echo");
    assert_eq!(flow["access_type"], "PRIVATE");
    assert_eq!(flow["problems"], json!([]), "chat-echo is runnable");
    assert_eq!(flow["data"]["nodes"].as_array().unwrap().len(), 2);
    let id = flow["id"].as_str().unwrap().to_string();

    // Same name and endpoint again: de-duplicated as Langflow does.
    let (status, second) = post_flow(&s, &token, &fixture("chat-echo.json")).await;
    assert_eq!(status, 201);
    assert_eq!(second["name"], "peer-chat-echo (1)");
    assert_eq!(second["endpoint_name"], "peer-chat-echo-1");
    let (_, third) = post_flow(&s, &token, &fixture("chat-echo.json")).await;
    assert_eq!(third["name"], "peer-chat-echo (2)");
    assert_eq!(third["endpoint_name"], "peer-chat-echo-2");

    // Read by id and by endpoint name.
    let (status, by_id) = s
        .get_with_token(&format!("/api/v1/flows/{id}"), &token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_id["id"], id.as_str());
    let (status, by_name) = s
        .get_with_token("/api/v1/flows/peer-chat-echo", &token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_name["id"], id.as_str());

    // Listing: full, and headers only.
    let (status, list) = s.get_with_token("/api/v1/flows/", &token).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (_, headers) = s
        .get_with_token(
            "/api/v1/flows/?header_flows=true&get_all=true&remove_example_flows=true",
            &token,
        )
        .await;
    let first = &headers[0];
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        &keys[..6],
        [
            "id",
            "name",
            "folder_id",
            "is_component",
            "endpoint_name",
            "description"
        ]
    );
    assert_eq!(first["data"], Value::Null);

    // PATCH: endpoint name rules.
    let patch = |body: Value| {
        s.client
            .patch(s.url(&format!("/api/v1/flows/{id}")))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let (status, body) = split(patch(json!({"endpoint_name": "bad name/x"})).await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"detail": [{"type": "value_error", "loc": ["body", "endpoint_name"], "msg": "Value error, Endpoint name must contain only letters, numbers, hyphens, and underscores"}]})
    );
    let (status, body) = split(
        patch(json!({"endpoint_name": "peer-chat-echo-1"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            detail("Endpoint name must be unique")
        )
    );
    let (status, body) = split(patch(json!({"name": "peer-chat-echo (1)"})).await.unwrap()).await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, detail("Name must be unique"))
    );
    let (status, body) = split(
        patch(json!({"endpoint_name": "renamed", "description": "d2"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["endpoint_name"], "renamed");
    assert_eq!(body["description"], "d2");
    assert_eq!(body["name"], "peer-chat-echo", "untouched fields stay");
    assert_eq!(
        s.get_with_token("/api/v1/flows/renamed", &token).await.0,
        200
    );
    assert_eq!(
        s.get_with_token("/api/v1/flows/peer-chat-echo", &token)
            .await
            .0,
        404
    );
    let (status, body) = split(patch(json!({"endpoint_name": null})).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["endpoint_name"], Value::Null);
    let (status, body) = split(patch(json!({"data": {"nodes": []}})).await.unwrap()).await;
    assert_eq!(status, 422, "{body}");

    // DELETE.
    let (status, body) = split(
        s.client
            .delete(s.url(&format!("/api/v1/flows/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"message": "Flow deleted successfully"})
        )
    );
    let (status, body) = split(
        s.client
            .delete(s.url(&format!("/api/v1/flows/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, detail("Flow not found"))
    );
    let (status, body) = s
        .get_with_token(&format!("/api/v1/flows/{id}"), &token)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, detail("Flow not found"))
    );
}

#[tokio::test]
async fn put_upserts_and_refuses_clashes() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let id = "0b0e5b9e-1c1a-4c53-9f2e-6a3a3f6d1a01";
    let mut doc = fixture("chat-echo.json");
    let put = |body: Value| {
        s.client
            .put(s.url(&format!("/api/v1/flows/{id}")))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let (status, created) = split(put(doc.clone()).await.unwrap()).await;
    assert_eq!(status, 201);
    assert_eq!(created["id"], id);
    doc["description"] = json!("replaced");
    let (status, replaced) = split(put(doc.clone()).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(replaced["description"], "replaced");
    assert_eq!(
        replaced["name"], "peer-chat-echo",
        "replacing keeps its own name"
    );
    let (_, other) = post_flow(
        &s,
        &token,
        &json!({"name": "other", "endpoint_name": "taken", "data": {"nodes": [], "edges": []}}),
    )
    .await;
    assert_eq!(other["problems"], json!([]));
    doc["endpoint_name"] = json!("taken");
    let (status, body) = split(put(doc).await.unwrap()).await;
    assert_eq!(
        (status, body),
        (StatusCode::CONFLICT, detail("Endpoint name must be unique"))
    );
}

#[tokio::test]
async fn every_starter_round_trips_and_reports_its_problems() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let supported = [
        "ChatInput",
        "ChatOutput",
        "TextInput",
        "TextOutput",
        "Prompt",
        "Prompt Template",
        "LanguageModelComponent",
        "OpenAIModel",
        "ParserComponent",
        "parser",
        "CombineText",
        "SplitText",
        "ConditionalRouter",
        "Memory",
        "Webhook",
    ];
    let mut runnable = Vec::new();
    for (file, doc) in starters() {
        let (status, flow) = post_flow(&s, &token, &doc).await;
        assert_eq!(status, 201, "{file}: {flow}");
        let id = flow["id"].as_str().unwrap();
        // Problems name every node whose component type this engine lacks, by node id.
        let problems = flow["problems"].as_array().unwrap();
        for node in doc["data"]["nodes"].as_array().unwrap() {
            if node["type"] != "genericNode" {
                continue;
            }
            let kind = node["data"]["type"].as_str().unwrap();
            let node_id = node["id"].as_str().unwrap();
            let unsupported = problems.iter().any(|p| p["node_id"] == node_id && p["message"] == format!("Component type \"{kind}\" (node {node_id}) is not supported by this server"));
            assert_eq!(
                unsupported,
                !flowgate_engine::registry::is_supported(kind),
                "{file}: node {node_id} ({kind}): {problems:?}"
            );
            if !supported.contains(&kind) {
                assert!(unsupported, "{file}: {kind} is not a core component yet");
            }
        }
        if problems.is_empty() {
            runnable.push(file.clone());
        }
        // Round trip: the export equals the import apart from the fields the server owns.
        let res = s
            .client
            .post(s.url("/api/v1/flows/download/"))
            .bearer_auth(&token)
            .json(&json!([id]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut exported: Value = res.json().await.unwrap();
        let mut original = doc.clone();
        for key in ["id", "user_id", "folder_id", "updated_at"] {
            exported.as_object_mut().unwrap().remove(key);
            original.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(exported, original, "{file} did not round-trip");
        // The starter's own id was free, so it was kept.
        assert_eq!(id, doc["id"].as_str().unwrap());
    }
    assert!(
        runnable.contains(&"Basic Prompting".to_string()),
        "{runnable:?}"
    );
    // Agent-based starters are stored but say exactly that Agent is missing.
    let (_, list) = s
        .get_with_token("/api/v1/flows/?header_flows=true", &token)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 25);
    let simple = list
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Simple Agent")
        .unwrap();
    assert!(
        simple["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "Agent"),
        "{simple}"
    );
}

#[tokio::test]
async fn uploads_json_lists_and_zips_and_downloads_zips() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let chat = fixture("chat-echo.json");
    let (status, one) = upload(&s, &token, "flow.json", serde_json::to_vec(&chat).unwrap()).await;
    assert_eq!(status, 201, "{one}");
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["name"], "peer-chat-echo");

    let mut a = chat.clone();
    a["name"] = json!("A");
    a["endpoint_name"] = json!("a");
    let mut b = chat.clone();
    b["name"] = json!("B");
    b["endpoint_name"] = json!("b");
    let (status, two) = upload(
        &s,
        &token,
        "flows.json",
        serde_json::to_vec(&json!({"flows": [a, b]})).unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(two.as_array().unwrap().len(), 2);

    let zip = zip_bytes(&[
        ("one.json", serde_json::to_vec(&starters()[0].1).unwrap()),
        (
            "dir/two.json",
            serde_json::to_vec(&starters()[1].1).unwrap(),
        ),
        ("readme.txt", b"ignored".to_vec()),
    ]);
    let (status, zipped) = upload(&s, &token, "flows.zip", zip).await;
    assert_eq!(status, 201, "{zipped}");
    assert_eq!(zipped.as_array().unwrap().len(), 2);

    // Download several → a ZIP holding one JSON per flow.
    let ids: Vec<&str> = two
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    let res = s
        .client
        .post(s.url("/api/v1/flows/download/"))
        .bearer_auth(&token)
        .json(&ids)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/x-zip-compressed"
    );
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".zip")
    );
    let bytes = res.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    assert_eq!(archive.len(), 2);
    let mut names: Vec<String> = (0..2)
        .map(|i| archive.by_index(i).unwrap().name().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["A.json", "B.json"]);
    // Re-uploading that ZIP replaces the same flows (their ids are the caller's).
    let (status, again) = upload(&s, &token, "back.zip", bytes.to_vec()).await;
    assert_eq!(status, 201, "{again}");
    let (_, list) = s
        .get_with_token("/api/v1/flows/?header_flows=true", &token)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 5);
    let (status, body) = split(
        s.client
            .post(s.url("/api/v1/flows/download/"))
            .bearer_auth(&token)
            .json(&json!(["00000000-0000-4000-8000-000000000000"]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, detail("No flows found."))
    );
}

fn zip_bytes(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[tokio::test]
async fn bad_uploads_get_clear_4xx_and_store_nothing() {
    let s = TestServer::start_with(&[("FLOWGATE_MAX_UPLOAD_BYTES", "1048576")]).await;
    let token = s.admin_token().await;
    let chat = fixture("chat-echo.json");
    let count = async || {
        s.get_with_token("/api/v1/flows/?header_flows=true", &token)
            .await
            .1
            .as_array()
            .unwrap()
            .len()
    };

    let (status, body) = upload(&s, &token, "x.json", b"not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON file"),
        "{body}"
    );
    let (status, body) = upload(&s, &token, "x.json", b"[1, 2]".to_vec()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            detail("Invalid JSON: expected an object with 'flows' or a single flow object")
        )
    );
    let (status, body) = upload(
        &s,
        &token,
        "x.json",
        serde_json::to_vec(&json!({"name": "n", "data": {"edges": []}})).unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("Flow must have nodes"),
        "{body}"
    );
    let (status, body) = upload(&s, &token, "x.json", Vec::new()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            detail("The uploaded file is empty")
        )
    );

    // Duplicate ids in one upload; a good flow before the bad one is not stored either.
    let mut dup = chat.clone();
    dup["id"] = json!("6f1c5a8e-8f55-4d6a-9c77-2b0a8f3f2e11");
    let (status, body) = upload(
        &s,
        &token,
        "x.json",
        serde_json::to_vec(&json!({"flows": [chat, dup.clone(), dup.clone()]})).unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            detail("Invalid upload: duplicate flow IDs are not allowed")
        )
    );
    let (status, _) = upload(
        &s,
        &token,
        "x.json",
        serde_json::to_vec(&json!({"flows": [chat, {"name": "broken", "data": {"nodes": []}}]}))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(count().await, 0, "nothing half-stored");

    // Too big.
    let big = vec![b' '; 1_200_000];
    let status = oversized_status(|c| {
        let part = reqwest::multipart::Part::bytes(big.clone()).file_name("big.json");
        c.post(s.url("/api/v1/flows/upload/"))
            .bearer_auth(&token)
            .multipart(reqwest::multipart::Form::new().part("file", part))
    })
    .await;
    assert_eq!(status, 413);

    // ZIP with a path escaping upwards, and a ZIP bomb.
    let (status, body) = upload(
        &s,
        &token,
        "evil.zip",
        zip_bytes(&[("../../etc/x.json", serde_json::to_vec(&chat).unwrap())]),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Unsafe file name"),
        "{body}"
    );
    let bomb = zip_bytes(&[("bomb.json", vec![b' '; 50 * 1024 * 1024])]);
    assert!(
        bomb.len() < 1_048_576,
        "the bomb compresses small: {}",
        bomb.len()
    );
    let (status, _) = upload(&s, &token, "bomb.zip", bomb).await;
    assert_eq!(status, 413);
    let (status, body) = upload(&s, &token, "broken.zip", b"PK\x03\x04garbage".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(count().await, 0);

    // Odd Unicode and wrong types in a create body.
    let (status, _) = post_flow(
        &s,
        &token,
        &json!({"name": "bad\u{202E}name", "data": {"nodes": [], "edges": []}}),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = post_flow(&s, &token, &json!({"name": 5})).await;
    assert_eq!(status, 422);
    let (status, _) = post_flow(&s, &token, &json!([1])).await;
    assert_eq!(status, 422);
    let (status, body) = post_flow(
        &s,
        &token,
        &json!({"name": "ok", "endpoint_name": "no spaces please"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "endpoint_name"]));
    assert_eq!(count().await, 0);
}

/// Two users × every flows route × by id and by endpoint name: each answers as a missing flow.
#[tokio::test]
async fn isolation_matrix_for_flows() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let (_, alice) = s.user(&admin, "alice").await;
    let (_, bob) = s.user(&admin, "bob").await;
    let (bob_key, _) = s.key(&bob, json!({"name": "bob"})).await;
    let mut doc = fixture("chat-echo.json");
    doc["endpoint_name"] = json!("shared-name");
    let (_, alices) = post_flow(&s, &alice, &doc).await;
    let alice_id = alices["id"].as_str().unwrap().to_string();
    // Bob may use the same endpoint name for his own flow.
    let (status, bobs) = post_flow(&s, &bob, &doc).await;
    assert_eq!(status, 201);
    assert_eq!(
        bobs["endpoint_name"], "shared-name",
        "endpoint names are unique per user only"
    );
    let bob_flow_id = bobs["id"].as_str().unwrap().to_string();

    let missing = "00000000-0000-4000-8000-000000000000";
    for cred in [("token", bob.as_str()), ("key", bob_key.as_str())] {
        let with = |req: reqwest::RequestBuilder| {
            if cred.0 == "token" {
                req.bearer_auth(cred.1)
            } else {
                req.header("x-api-key", cred.1)
            }
        };
        for target in [alice_id.as_str(), missing, "no-such-endpoint"] {
            let path = format!("/api/v1/flows/{target}");
            let (status, body) =
                split(with(s.client.get(s.url(&path))).send().await.unwrap()).await;
            assert_eq!(
                (status, body),
                (StatusCode::NOT_FOUND, detail("Flow not found")),
                "GET {target}"
            );
            let (status, body) = split(
                with(s.client.patch(s.url(&path)))
                    .json(&json!({"description": "pwned"}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                (status, body),
                (StatusCode::NOT_FOUND, detail("Flow not found")),
                "PATCH {target}"
            );
            let (status, body) =
                split(with(s.client.delete(s.url(&path))).send().await.unwrap()).await;
            assert_eq!(
                (status, body),
                (StatusCode::NOT_FOUND, detail("Flow not found")),
                "DELETE {target}"
            );
        }
        // By endpoint name, bob reaches his own flow, never alice's.
        let (status, body) = split(
            with(s.client.get(s.url("/api/v1/flows/shared-name")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["id"], bob_flow_id.as_str());
        // PUT on alice's id cannot overwrite it.
        let (status, body) = split(
            with(s.client.put(s.url(&format!("/api/v1/flows/{alice_id}"))))
                .json(&doc)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, detail("Flow not found"))
        );
        // Download and batch delete skip foreign flows.
        let (status, body) = split(
            with(s.client.post(s.url("/api/v1/flows/download/")))
                .json(&json!([alice_id]))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, detail("No flows found."))
        );
        let (status, body) = split(
            with(s.client.delete(s.url("/api/v1/flows/")))
                .json(&json!([alice_id]))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, body), (StatusCode::OK, json!({"deleted": 0})));
        // Listing never shows alice's flow.
        let (_, list) = split(
            with(s.client.get(s.url("/api/v1/flows/")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(!list.to_string().contains(&alice_id));
        // Upload with alice's id: refused, nothing stored, alice's flow untouched.
        let mut stolen = doc.clone();
        stolen["id"] = json!(alice_id);
        stolen["description"] = json!("pwned");
        let part = reqwest::multipart::Part::bytes(serde_json::to_vec(&stolen).unwrap())
            .file_name("x.json");
        let (status, body) = split(
            with(s.client.post(s.url("/api/v1/flows/upload/")))
                .multipart(reqwest::multipart::Form::new().part("file", part))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 409, "{body}");
        let (status, body) = split(
            with(s.client.post(s.url("/api/v1/flows/")))
                .json(&stolen)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 409, "{body}");
    }
    let (status, still) = s
        .get_with_token(&format!("/api/v1/flows/{alice_id}"), &alice)
        .await;
    assert_eq!(status, 200);
    assert_eq!(still["description"], doc["description"]);
    let (_, bob_list) = s.get_with_token("/api/v1/flows/", &bob).await;
    assert_eq!(bob_list.as_array().unwrap().len(), 1);
}

#[test]
fn cli_import_export_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let starters_dir = format!("{FIXTURES}/langflow-starters");
    let out = cli_in(
        dir.path(),
        &[
            "flows",
            "import",
            &starters_dir,
            &format!("{FIXTURES}/chat-echo.json"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().filter(|l| l.contains(": imported ")).count(),
        26,
        "{text}"
    );
    assert!(
        text.contains("26 flows imported from 26 files, 0 files not imported"),
        "{text}"
    );
    let simple = text
        .lines()
        .find(|l| l.contains("Simple Agent.json"))
        .unwrap();
    assert!(simple.contains("Component type \"Agent\""), "{simple}");
    let echo = text.lines().find(|l| l.contains("chat-echo.json")).unwrap();
    assert!(echo.ends_with("runnable"), "{echo}");

    // A broken file is reported and the others still go in.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let out = cli_in(
        dir.path(),
        &[
            "flows",
            "import",
            bad.to_str().unwrap(),
            &format!("{FIXTURES}/chat-echo.json"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("bad.json: not imported: Invalid JSON file"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("1 flows imported from 2 files, 1 files not imported"));

    let target = dir.path().join("echo.json");
    let out = cli_in(
        dir.path(),
        &[
            "flows",
            "export",
            "peer-chat-echo",
            "--out",
            target.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut exported: Value =
        serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    let mut original = fixture("chat-echo.json");
    for key in ["id", "user_id", "folder_id", "updated_at"] {
        exported.as_object_mut().unwrap().remove(key);
        original.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(exported, original);
    let out = cli_in(
        dir.path(),
        &["flows", "export", "nope", "--out", "/dev/null"],
    );
    assert_eq!(out.status.code(), Some(1));

    // check: exit 0 when runnable, 1 with a line per problem otherwise.
    let out = std::process::Command::new(BIN)
        .args(["check", &format!("{FIXTURES}/chat-echo.json")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = std::process::Command::new(BIN)
        .args(["check", &format!("{starters_dir}/Simple Agent.json")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let problems = stdout(&out);
    assert!(
        problems
            .lines()
            .any(|l| l.contains("(Agent): Component type \"Agent\"")),
        "{problems}"
    );
    let out = std::process::Command::new(BIN)
        .args(["check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Every kind of problem is reported with the node named, and the flow is stored anyway.
#[tokio::test]
async fn problems_name_customised_code_broken_edges_and_duplicate_inputs() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let base = fixture("chat-echo.json");

    let mut edited = base.clone();
    edited["data"]["nodes"][0]["data"]["node"]["edited"] = json!(true);
    let mut rehashed = base.clone();
    rehashed["data"]["nodes"][1]["data"]["node"]["metadata"]["code_hash"] = json!("000000000000");
    let mut dangling = base.clone();
    dangling["data"]["edges"][0]["target"] = json!("ChatOutput-gone");
    dangling["data"]["edges"][0]["data"]["targetHandle"]["id"] = json!("ChatOutput-gone");
    let mut doubled = base.clone();
    let edge = doubled["data"]["edges"][0].clone();
    doubled["data"]["edges"].as_array_mut().unwrap().push(edge);

    let cases: [(&str, Value, &str); 4] = [
        ("edited", edited, "has customised code (edited)"),
        ("rehashed", rehashed, "is not the stock one"),
        ("dangling", dangling, "which does not exist"),
        ("doubled", doubled, "receives 2 edges but accepts only one"),
    ];
    for (name, mut doc, expected) in cases {
        doc["name"] = json!(name);
        doc["endpoint_name"] = json!(name);
        let (status, flow) = post_flow(&s, &token, &doc).await;
        assert_eq!(status, 201, "{name}: stored anyway");
        let problems = flow["problems"].as_array().unwrap();
        assert!(!problems.is_empty(), "{name}");
        assert!(
            problems
                .iter()
                .any(|p| p["message"].as_str().unwrap().contains(expected)),
            "{name}: {problems:?}"
        );
        assert!(
            problems
                .iter()
                .all(|p| p["node_id"].as_str().is_some_and(|id| !id.is_empty()))
        );
    }
}

/// Concurrent writers neither fail (SQLite's snapshot conflicts must not surface as 503) nor
/// race the name de-duplication.
#[tokio::test]
async fn concurrent_creates_all_succeed_with_unique_names() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let doc = fixture("chat-echo.json");
    let creates = (0..24).map(|_| post_flow(&s, &token, &doc));
    let results = futures::future::join_all(creates).await;
    let mut names = std::collections::BTreeSet::new();
    let mut endpoints = std::collections::BTreeSet::new();
    for (status, flow) in results {
        assert_eq!(status, 201, "{flow}");
        names.insert(flow["name"].as_str().unwrap().to_string());
        endpoints.insert(flow["endpoint_name"].as_str().unwrap().to_string());
    }
    assert_eq!(names.len(), 24);
    assert_eq!(endpoints.len(), 24);
    assert!(
        names.contains("peer-chat-echo") && names.contains("peer-chat-echo (23)"),
        "{names:?}"
    );
}
