//! Global variables and uploaded files over the real binary: Langflow's shapes and status
//! codes, Credential values never readable (responses or database bytes), name rules, size
//! limits, and the isolation matrix (another user's variables and files do not exist for you).

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
const SECRET: &str = "sk-live-7f3c9a1e5b2d4f6a8c0e";

fn chat_echo() -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/chat-echo.json")).unwrap())
        .unwrap()
}

async fn send(s: &TestServer, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let _ = s;
    split(req.send().await.unwrap()).await
}

async fn create_var(s: &TestServer, token: &str, body: Value) -> (StatusCode, Value) {
    send(
        s,
        s.client
            .post(s.url("/api/v1/variables/"))
            .bearer_auth(token)
            .json(&body),
    )
    .await
}

async fn list_vars(s: &TestServer, token: &str) -> Value {
    let (status, body) = s.get_with_token("/api/v1/variables/", token).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn new_flow(s: &TestServer, token: &str) -> String {
    let (status, flow) = send(
        s,
        s.client
            .post(s.url("/api/v1/flows/"))
            .bearer_auth(token)
            .json(&chat_echo()),
    )
    .await;
    assert_eq!(status, 201, "{flow}");
    flow["id"].as_str().unwrap().to_string()
}

async fn upload_to(
    s: &TestServer,
    token: &str,
    route: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
    let form = reqwest::multipart::Form::new().part("file", part);
    send(
        s,
        s.client
            .post(s.url(route))
            .bearer_auth(token)
            .multipart(form),
    )
    .await
}

#[tokio::test]
async fn variables_crud_with_langflows_shapes_and_credentials_never_in_clear() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;

    let (status, cred) = create_var(
        &s,
        &token,
        json!({"name": "OPENAI_API_KEY", "value": SECRET, "type": "Credential", "default_fields": ["api_key"]}),
    )
    .await;
    assert_eq!(status, 201, "{cred}");
    let keys: Vec<&str> = cred
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "name",
            "type",
            "value",
            "has_value",
            "default_fields",
            "is_owner",
            "can_manage_shares",
            "validation_error",
            "is_valid"
        ]
    );
    assert_eq!(cred["name"], "OPENAI_API_KEY");
    assert_eq!(cred["type"], "Credential");
    assert_eq!(cred["value"], Value::Null, "a Credential is never returned");
    assert_eq!(cred["has_value"], true);
    assert_eq!(cred["default_fields"], json!(["api_key"]));
    let cred_id = cred["id"].as_str().unwrap().to_string();

    // Type defaults to Credential, as in Langflow.
    let (status, implicit) = create_var(
        &s,
        &token,
        json!({"name": "IMPLICIT", "value": "hidden-too"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(implicit["type"], "Credential");
    assert_eq!(implicit["value"], Value::Null);

    let (status, generic) = create_var(
        &s,
        &token,
        json!({"name": "REGION", "value": "eu-west-1", "type": "Generic"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        generic["value"], "eu-west-1",
        "Generic values come back as stored"
    );
    assert_eq!(generic["default_fields"], json!([]));
    let generic_id = generic["id"].as_str().unwrap().to_string();

    // Listed by name.
    let list = list_vars(&s, &token).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["IMPLICIT", "OPENAI_API_KEY", "REGION"]);

    // PATCH: rename and new value; the id in the body is optional.
    let (status, patched) = send(
        &s,
        s.client
            .patch(s.url(&format!("/api/v1/variables/{cred_id}")))
            .bearer_auth(&token)
            .json(&json!({"id": cred_id, "name": "OPENAI_KEY", "value": format!("{SECRET}-2")})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "OPENAI_KEY");
    assert_eq!(patched["value"], Value::Null);
    let (status, patched) = send(
        &s,
        s.client
            .patch(s.url(&format!("/api/v1/variables/{generic_id}")))
            .bearer_auth(&token)
            .json(&json!({"value": "us-east-2", "default_fields": ["region"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["value"], "us-east-2");
    assert_eq!(patched["default_fields"], json!(["region"]));

    // Credential → Generic without a new value would expose the secret: refused.
    let (status, body) = send(
        &s,
        s.client
            .patch(s.url(&format!("/api/v1/variables/{cred_id}")))
            .bearer_auth(&token)
            .json(&json!({"type": "Generic"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Generic → Credential hides the value from then on.
    let (status, body) = send(
        &s,
        s.client
            .patch(s.url(&format!("/api/v1/variables/{generic_id}")))
            .bearer_auth(&token)
            .json(&json!({"type": "Credential"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["value"], Value::Null);
    assert_eq!(body["has_value"], true);

    // No response ever carried the secret, and the database holds no clear copy.
    let everything = list_vars(&s, &token).await.to_string();
    assert!(!everything.contains(SECRET) && !everything.contains("hidden-too"));
    assert!(!everything.contains("us-east-2"), "now a Credential");
    let db = s.database_bytes();
    assert!(!db.is_empty());
    // (The old Generic value "us-east-2" was legitimately stored in clear before the switch.)
    for plain in [SECRET, "hidden-too"] {
        let needle = plain.as_bytes();
        assert!(
            !db.windows(needle.len()).any(|w| w == needle),
            "{plain} in clear in the database"
        );
    }
    // Nor does the server's log.
    assert!(!s.logs().contains(SECRET));

    // DELETE → 204, then 404.
    let res = s
        .client
        .delete(s.url(&format!("/api/v1/variables/{cred_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(res.text().await.unwrap().is_empty());
    let (status, body) = send(
        &s,
        s.client
            .delete(s.url(&format!("/api/v1/variables/{cred_id}")))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, detail("Variable not found"))
    );
    let (status, _) = send(
        &s,
        s.client
            .delete(s.url("/api/v1/variables/not-a-uuid"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn variable_names_are_unique_per_user_and_bodies_are_checked() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let (_, alice) = s.user(&admin, "alice").await;
    let (_, bob) = s.user(&admin, "bob").await;

    let (status, _) = create_var(&s, &alice, json!({"name": "TOKEN", "value": "a"})).await;
    assert_eq!(status, 201);
    let (status, body) = create_var(&s, &alice, json!({"name": "TOKEN", "value": "b"})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            detail("Variable name already exists")
        )
    );
    // Another user may use the same name.
    let (status, _) = create_var(&s, &bob, json!({"name": "TOKEN", "value": "c"})).await;
    assert_eq!(status, 201);

    // Renaming onto an existing name is the same 400.
    let (status, other) = create_var(&s, &alice, json!({"name": "OTHER", "value": "x"})).await;
    assert_eq!(status, 201);
    let (status, body) = send(
        &s,
        s.client
            .patch(s.url(&format!(
                "/api/v1/variables/{}",
                other["id"].as_str().unwrap()
            )))
            .bearer_auth(&alice)
            .json(&json!({"name": "TOKEN"})),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            detail("Variable name already exists")
        )
    );

    // Langflow's empty-field texts.
    let (status, body) = create_var(&s, &alice, json!({"name": "", "value": ""})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            detail("Variable name and value cannot be empty")
        )
    );
    let (status, body) = create_var(&s, &alice, json!({"name": "", "value": "v"})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            detail("Variable name cannot be empty")
        )
    );
    let (status, body) = create_var(&s, &alice, json!({"name": "N", "value": ""})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            detail("Variable value cannot be empty")
        )
    );
    let (status, body) = create_var(
        &s,
        &alice,
        json!({"name": "N", "value": "v", "type": "Secret"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string()
            .contains("type must be Credential or Generic")
    );
    let (status, _) = create_var(&s, &alice, json!({"name": "a\u{0}b", "value": "v"})).await;
    assert_eq!(status, 422);
    let (status, _) = send(
        &s,
        s.client
            .post(s.url("/api/v1/variables/"))
            .bearer_auth(&alice)
            .body("{not json"),
    )
    .await;
    assert_eq!(status, 422);

    // No credentials at all.
    let (status, body) = send(&s, s.client.get(s.url("/api/v1/variables/"))).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            detail("No authentication credentials provided")
        )
    );
}

#[tokio::test]
async fn isolation_matrix_for_variables_and_files() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let (_, alice) = s.user(&admin, "alice").await;
    let (_, bob) = s.user(&admin, "bob").await;
    let (bob_key, _) = s.key(&bob, json!({"name": "bob"})).await;

    let (status, var) = create_var(
        &s,
        &alice,
        json!({"name": "ALICE_ONLY", "value": "alice-generic-value", "type": "Generic"}),
    )
    .await;
    assert_eq!(status, 201);
    let var_id = var["id"].as_str().unwrap().to_string();
    let flow = new_flow(&s, &alice).await;
    let (status, up) = upload_to(
        &s,
        &alice,
        &format!("/api/v1/files/upload/{flow}"),
        "private.txt",
        b"alice's bytes".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{up}");
    let stored = up["file_path"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    // Bob, by token and by API key, sees nothing of Alice's.
    for auth in ["token", "key"] {
        let with = |req: reqwest::RequestBuilder| match auth {
            "token" => req.bearer_auth(&bob),
            _ => req.header("x-api-key", &bob_key),
        };
        let (status, list) = send(&s, with(s.client.get(s.url("/api/v1/variables/")))).await;
        assert_eq!(status, 200);
        assert_eq!(list, json!([]), "{auth}");
        let (status, body) = send(
            &s,
            with(
                s.client
                    .patch(s.url(&format!("/api/v1/variables/{var_id}"))),
            )
            .json(&json!({"value": "bob was here"})),
        )
        .await;
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, detail("Variable not found")),
            "{auth}"
        );
        let (status, body) = send(
            &s,
            with(
                s.client
                    .delete(s.url(&format!("/api/v1/variables/{var_id}"))),
            ),
        )
        .await;
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, detail("Variable not found")),
            "{auth}"
        );

        let flow_not_found = detail("Flow not found");
        for route in ["/api/v1/files/upload/", "/api/v1/upload/"] {
            let part = reqwest::multipart::Part::bytes(b"bob's".to_vec()).file_name("b.txt");
            let form = reqwest::multipart::Form::new().part("file", part);
            let (status, body) = send(
                &s,
                with(s.client.post(s.url(&format!("{route}{flow}")))).multipart(form),
            )
            .await;
            assert_eq!(
                (status, &body),
                (StatusCode::NOT_FOUND, &flow_not_found),
                "{route} {auth}"
            );
        }
        let (status, body) = send(
            &s,
            with(s.client.get(s.url(&format!("/api/v1/files/list/{flow}")))),
        )
        .await;
        assert_eq!((status, &body), (StatusCode::NOT_FOUND, &flow_not_found));
        let (status, body) = send(
            &s,
            with(
                s.client
                    .get(s.url(&format!("/api/v1/files/download/{flow}/{stored}"))),
            ),
        )
        .await;
        assert_eq!((status, &body), (StatusCode::NOT_FOUND, &flow_not_found));
        let (status, body) = send(
            &s,
            with(
                s.client
                    .delete(s.url(&format!("/api/v1/files/delete/{flow}/{stored}"))),
            ),
        )
        .await;
        assert_eq!((status, &body), (StatusCode::NOT_FOUND, &flow_not_found));
    }

    // Bob's own flow does not reach Alice's folder either.
    let bob_flow = new_flow(&s, &bob).await;
    let (status, body) = s
        .get_with_token(&format!("/api/v1/files/download/{bob_flow}/{stored}"), &bob)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, detail("File not found"))
    );

    // Alice's things are intact.
    let list = list_vars(&s, &alice).await;
    assert_eq!(list[0]["value"], "alice-generic-value");
    let (status, files) = s
        .get_with_token(&format!("/api/v1/files/list/{flow}"), &alice)
        .await;
    assert_eq!(status, 200);
    assert_eq!(files, json!({"files": [stored]}));

    // Deleting the flow makes its files unreachable, even by their owner.
    let (status, _) = send(
        &s,
        s.client
            .delete(s.url(&format!("/api/v1/flows/{flow}")))
            .bearer_auth(&alice),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = s
        .get_with_token(&format!("/api/v1/files/download/{flow}/{stored}"), &alice)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, detail("Flow not found"))
    );
}

#[tokio::test]
async fn files_upload_on_both_routes_list_download_and_delete() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let flow = new_flow(&s, &token).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();

    let (status, up) = upload_to(
        &s,
        &token,
        &format!("/api/v1/files/upload/{flow}"),
        "data.bin",
        bytes.clone(),
    )
    .await;
    assert_eq!(status, 201, "{up}");
    let keys: Vec<&str> = up.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["flowId", "file_path"]);
    assert_eq!(up["flowId"], flow.as_str());
    let path = up["file_path"].as_str().unwrap();
    let (prefix, stored) = path.split_once('/').unwrap();
    assert_eq!(prefix, flow);
    // <YYYY-mm-dd_HH-MM-SS>_<name>
    assert_eq!(stored.len(), 20 + "data.bin".len(), "{stored}");
    assert!(
        stored.ends_with("_data.bin") && stored.as_bytes()[4] == b'-',
        "{stored}"
    );
    let stored = stored.to_string();

    // The older route used by the seed's `upload_file` helper.
    let (status, old) = upload_to(
        &s,
        &token,
        &format!("/api/v1/upload/{flow}"),
        "notes é.txt",
        b"hello notes".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{old}");
    assert_eq!(old["flowId"], flow.as_str());
    let old_stored = old["file_path"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap()
        .1
        .to_string();
    assert!(old_stored.ends_with("_notes é.txt"));

    // Stored where the docs say, mode 0700 folders.
    let on_disk = s
        .data_dir()
        .join("files")
        .join(
            s.get_with_token("/api/v1/users/whoami", &token).await.1["id"]
                .as_str()
                .unwrap(),
        )
        .join(&flow);
    assert_eq!(std::fs::read(on_disk.join(&stored)).unwrap(), bytes);

    let (status, list) = s
        .get_with_token(&format!("/api/v1/files/list/{flow}"), &token)
        .await;
    assert_eq!(status, 200);
    let mut expected = vec![stored.clone(), old_stored.clone()];
    expected.sort();
    assert_eq!(list, json!({"files": expected}));

    let res = s
        .client
        .get(s.url(&format!("/api/v1/files/download/{flow}/{stored}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes);
    // A name needing percent-encoding in the URL.
    let encoded = old_stored.replace(' ', "%20").replace('é', "%C3%A9");
    let res = s
        .client
        .get(s.url(&format!("/api/v1/files/download/{flow}/{encoded}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"hello notes");

    // Flow by endpoint name works as on the flow routes.
    let (status, list) = s
        .get_with_token("/api/v1/files/list/peer-chat-echo", &token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["files"].as_array().unwrap().len(), 2);

    let (status, body) = send(
        &s,
        s.client
            .delete(s.url(&format!("/api/v1/files/delete/{flow}/{stored}")))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"message": format!("File {stored} deleted successfully")})
    );
    let (status, body) = send(
        &s,
        s.client
            .delete(s.url(&format!("/api/v1/files/delete/{flow}/{stored}")))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, detail("File not found"))
    );
    let (status, list) = s
        .get_with_token(&format!("/api/v1/files/list/{flow}"), &token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list, json!({"files": [old_stored]}));

    // Unknown flow, and a form without a file.
    let missing = uuid_like();
    let (status, body) = upload_to(
        &s,
        &token,
        &format!("/api/v1/files/upload/{missing}"),
        "a.txt",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, detail("Flow not found"))
    );
    let form = reqwest::multipart::Form::new().text("other", "x");
    let (status, _) = send(
        &s,
        s.client
            .post(s.url(&format!("/api/v1/files/upload/{flow}")))
            .bearer_auth(&token)
            .multipart(form),
    )
    .await;
    assert_eq!(status, 422);
}

fn uuid_like() -> &'static str {
    "0b9e7f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
}

#[tokio::test]
async fn bad_file_names_are_400_and_oversize_uploads_413() {
    let s = TestServer::start_with(&[("FLOWGATE_MAX_UPLOAD_BYTES", "100000")]).await;
    let token = s.admin_token().await;
    let flow = new_flow(&s, &token).await;
    let upload = format!("/api/v1/files/upload/{flow}");

    for bad in ["../x", "..", "a/b", "a\\b", "a\u{0}b", "a\nb"] {
        let (status, body) = upload_to(&s, &token, &upload, bad, b"x".to_vec()).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        // A NUL or newline may already break the multipart headers: still a 400.
        let text = body["detail"].as_str().unwrap();
        assert!(
            text.starts_with("Invalid file name") || text.starts_with("Could not read the upload"),
            "{body}"
        );
    }
    let long = "a".repeat(300);
    let (status, body) = upload_to(&s, &token, &upload, &long, b"x".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("longer than"));

    // The same names in download/delete paths (percent-encoded, decoded by the router).
    for bad in ["..%2Fx", "..", "a%5Cb", "a%00b", &"b".repeat(300)] {
        for (method, route) in [
            (reqwest::Method::GET, "download"),
            (reqwest::Method::DELETE, "delete"),
        ] {
            let (status, body) = send(
                &s,
                s.client
                    .request(
                        method.clone(),
                        s.url(&format!("/api/v1/files/{route}/{flow}/{bad}")),
                    )
                    .bearer_auth(&token),
            )
            .await;
            assert!(
                status == 400 || status == 404,
                "{route} {bad:?}: {status} {body}"
            );
            if status == 404 {
                // Only when the router itself split the path elsewhere (never a file).
                assert_ne!(body, json!({"files": []}));
            }
        }
    }
    let (status, body) = s
        .get_with_token(
            &format!("/api/v1/files/download/{flow}/..%2F..%2Fsecret_key"),
            &token,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = s
        .get_with_token(&format!("/api/v1/files/download/{flow}/a%00b"), &token)
        .await;
    assert_eq!(status, 400);

    // Size: at the limit is fine, one byte more is 413 and leaves nothing behind.
    let (status, body) = upload_to(&s, &token, &upload, "ok.bin", vec![7u8; 100_000]).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = upload_to(&s, &token, &upload, "big.bin", vec![7u8; 100_001]).await;
    assert_eq!(status, 413, "{body}");
    // Far over the limit: the server answers before reading it all and closes that
    // connection, so send it on a client of its own.
    let status = oversized_status(|c| {
        let part = reqwest::multipart::Part::bytes(vec![7u8; 3_000_000]).file_name("huge.bin");
        c.post(s.url(&upload))
            .bearer_auth(&token)
            .multipart(reqwest::multipart::Form::new().part("file", part))
    })
    .await;
    assert_eq!(status, 413);
    let (_, list) = s
        .get_with_token(&format!("/api/v1/files/list/{flow}"), &token)
        .await;
    let files = list["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{list}");
    assert!(files[0].as_str().unwrap().ends_with("_ok.bin"));
    let user_dir = s.data_dir().join("files");
    let leftovers: Vec<_> = walk(&user_dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
