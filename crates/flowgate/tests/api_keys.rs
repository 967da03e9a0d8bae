//! API keys over REST: shapes, masking, expiry, revocation, isolation, secrecy, usage.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn create_list_masked_and_delete_with_langflows_shapes() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let res = s
        .client
        .post(s.url("/api/v1/api_key/"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let created: Value = res.json().await.unwrap();
    let keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        &keys[..8],
        [
            "name",
            "last_used_at",
            "total_uses",
            "is_active",
            "expires_at",
            "id",
            "api_key",
            "user_id"
        ]
    );
    assert_eq!(created["name"], "bench");
    assert_eq!(created["total_uses"], 0);
    assert_eq!(created["is_active"], true);
    assert_eq!(created["expires_at"], Value::Null);
    let key = created["api_key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 53);
    assert!(key.starts_with("fgk_"));

    // An empty body makes a nameless key, as in Langflow.
    let (status, nameless) = split(
        s.client
            .post(s.url("/api/v1/api_key/"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(nameless["name"], Value::Null);

    // Listing never shows a key again: the first 8 characters, then stars.
    let (status, list) = s.get_with_token("/api/v1/api_key/", &token).await;
    assert_eq!(status, 200);
    assert_eq!(list["total_count"], 2);
    assert_eq!(list["user_id"], created["user_id"]);
    let first = &list["api_keys"][0];
    assert_eq!(first["api_key"], format!("{}{}", &key[..8], "*".repeat(45)));
    assert!(first["created_at"].as_str().unwrap().ends_with("+00:00"));
    assert!(!list.to_string().contains(&key[8..20]));
    // Also reachable without the trailing slash.
    assert_eq!(s.get_with_token("/api/v1/api_key", &token).await.0, 200);

    let id = created["id"].as_str().unwrap();
    let (status, body) = split(
        s.client
            .delete(s.url(&format!("/api/v1/api_key/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, detail("API Key deleted")));
    let (status, body) = split(
        s.client
            .delete(s.url(&format!("/api/v1/api_key/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, detail("API Key not found"))
    );
    let (_, list) = s.get_with_token("/api/v1/api_key/", &token).await;
    assert_eq!(list["total_count"], 1);

    let (status, body) = split(
        s.client
            .get(s.url("/api/v1/api_key/"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            detail("No authentication credentials provided")
        )
    );
}

#[tokio::test]
async fn a_key_can_manage_keys_as_its_owner() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let (key, _) = s.key(&token, json!({"name": "bench"})).await;
    let res = s
        .client
        .post(s.url("/api/v1/api_key/"))
        .header("x-api-key", &key)
        .json(&json!({"name": "via-key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, list) = s.get_with_key("/api/v1/api_key/", &key).await;
    assert_eq!(list["total_count"], 2);
}

#[tokio::test]
async fn a_deleted_key_is_refused_on_the_very_next_request() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let (key, id) = s.key(&token, json!({"name": "to-delete"})).await;
    // Warm the cache with several uses.
    for _ in 0..3 {
        assert_eq!(s.get_with_key("/api/v1/users/whoami", &key).await.0, 200);
    }
    let res = s
        .client
        .delete(s.url(&format!("/api/v1/api_key/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        s.get_with_key("/api/v1/users/whoami", &key).await,
        (StatusCode::FORBIDDEN, detail("Invalid API key"))
    );
}

#[tokio::test]
async fn expiry_in_the_past_is_refused_and_expiring_keys_stop_on_time() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let (status, body) = split(
        s.client
            .post(s.url("/api/v1/api_key/"))
            .bearer_auth(&token)
            .json(&json!({"name": "old", "expires_at": "2020-01-01T00:00:00Z"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "expires_at"]));
    assert_eq!(body["detail"][0]["msg"], "expires_at must be in the future");
    let (status, _) = split(
        s.client
            .post(s.url("/api/v1/api_key/"))
            .bearer_auth(&token)
            .json(&json!({"expires_at": "next tuesday"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let (_, list) = s.get_with_token("/api/v1/api_key/", &token).await;
    assert_eq!(list["total_count"], 0, "nothing half-written");

    let expires = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let stamp = expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let res = s
        .client
        .post(s.url("/api/v1/api_key/"))
        .bearer_auth(&token)
        .json(&json!({"name": "expiring", "expires_at": stamp}))
        .send()
        .await
        .unwrap();
    let created: Value = res.json().await.unwrap();
    assert!(created["expires_at"].as_str().unwrap().ends_with("+00:00"));
    let key = created["api_key"].as_str().unwrap();
    assert_eq!(
        s.get_with_key("/api/v1/users/whoami", key).await.0,
        200,
        "valid before its time"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        s.get_with_key("/api/v1/users/whoami", key).await,
        (StatusCode::FORBIDDEN, detail("Invalid API key"))
    );
}

/// The isolation matrix for keys: two users, every key route, by their own and the other's
/// credentials. Another user's key is indistinguishable from a missing one.
#[tokio::test]
async fn bob_can_neither_list_use_nor_delete_alices_keys() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let (alice_id, alice) = s.user(&admin, "alice").await;
    let (bob_id, bob) = s.user(&admin, "bob").await;
    let (alice_key, alice_key_id) = s.key(&alice, json!({"name": "alice-key"})).await;
    let (bob_key, _) = s.key(&bob, json!({"name": "bob-key"})).await;

    for bob_cred in [Cred::Token(&bob), Cred::Key(&bob_key)] {
        // Listing shows only bob's own key.
        let (status, list) = bob_cred.get(&s, "/api/v1/api_key/").await;
        assert_eq!(status, 200);
        assert_eq!(list["user_id"], bob_id.as_str());
        assert_eq!(list["total_count"], 1);
        assert_eq!(list["api_keys"][0]["name"], "bob-key");
        assert!(!list.to_string().contains(&alice_key_id));
        // Deleting alice's key answers exactly as for a missing key.
        let (status, body) = bob_cred
            .delete(&s, &format!("/api/v1/api_key/{alice_key_id}"))
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, detail("API Key not found"))
        );
        let (status, body) = bob_cred
            .delete(&s, "/api/v1/api_key/00000000-0000-4000-8000-000000000000")
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, detail("API Key not found"))
        );
        // whoami says who the credential belongs to.
        let (_, me) = bob_cred.get(&s, "/api/v1/users/whoami").await;
        assert_eq!(me["id"], bob_id.as_str());
    }
    // Alice's key still works and still belongs to alice.
    let (status, me) = s.get_with_key("/api/v1/users/whoami", &alice_key).await;
    assert_eq!(status, 200);
    assert_eq!(me["id"], alice_id.as_str());
    let (_, list) = s.get_with_key("/api/v1/api_key/", &alice_key).await;
    assert_eq!(list["total_count"], 1);
    // And bob's key creation landed on bob.
    let res = s
        .client
        .post(s.url("/api/v1/api_key/"))
        .header("x-api-key", &bob_key)
        .json(&json!({"name": "bob-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["user_id"],
        bob_id.as_str()
    );
    // Neither can administer users.
    for cred in [Cred::Key(&bob_key), Cred::Key(&alice_key)] {
        assert_eq!(cred.get(&s, "/api/v1/users/").await.0, 403);
        assert_eq!(
            cred.delete(&s, &format!("/api/v1/users/{alice_id}"))
                .await
                .0,
            403
        );
    }
}

enum Cred<'a> {
    Token(&'a str),
    Key(&'a str),
}

impl Cred<'_> {
    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Cred::Token(t) => req.bearer_auth(t),
            Cred::Key(k) => req.header("x-api-key", *k),
        }
    }
    async fn get(&self, s: &TestServer, path: &str) -> (StatusCode, Value) {
        split(self.apply(s.client.get(s.url(path))).send().await.unwrap()).await
    }
    async fn delete(&self, s: &TestServer, path: &str) -> (StatusCode, Value) {
        split(
            self.apply(s.client.delete(s.url(path)))
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn the_key_is_never_stored_or_logged_in_clear() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let (key, _) = s.key(&token, json!({"name": "secret"})).await;
    // Use it by header and by query so it passes through the access log both ways.
    assert_eq!(s.get_with_key("/api/v1/users/whoami", &key).await.0, 200);
    let res = s
        .client
        .get(s.url(&format!("/api/v1/users/whoami?x-api-key={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A login with a distinctive password, right and wrong, must not reach the log either.
    let (_, carol) = s.user(&token, "carol").await;
    let res = s.login_response("carol", "Carol-Wrong-Secret-77").await;
    assert_eq!(res.status(), 401);
    tokio::time::sleep(Duration::from_millis(1300)).await; // let the usage flush write
    let db = s.database_bytes();
    assert!(!db.is_empty());
    let needle = key.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "the key is in the database file"
    );
    // Only the 8-character display prefix may appear.
    assert!(!db.windows(20).any(|w| w == &needle[..20]));
    let logs = s.logs();
    assert!(logs.contains("x-api-key=[redacted]"), "{logs}");
    assert!(!logs.contains(&key), "the key is in the log");
    assert!(!logs.contains(&token), "the token is in the log");
    assert!(!logs.contains(&carol), "a token is in the log");
    assert!(
        !logs.contains("carol-Passw0rd!"),
        "a password is in the log"
    );
    assert!(
        !logs.contains("Carol-Wrong-Secret-77"),
        "a wrong password is in the log"
    );
    assert!(
        !String::from_utf8_lossy(&db).contains("carol-Passw0rd!"),
        "a password is in the database"
    );
}

#[tokio::test]
async fn usage_is_counted_in_memory_and_flushed_in_batches() {
    let s = TestServer::start_with(&[("FLOWGATE_USAGE_FLUSH_MS", "200")]).await;
    let token = s.admin_token().await;
    let (key, _) = s.key(&token, json!({"name": "counted"})).await;
    for _ in 0..7 {
        assert_eq!(s.get_with_key("/api/v1/users/whoami", &key).await.0, 200);
    }
    eventually("usage to be flushed", async || {
        let (_, list) = s.get_with_token("/api/v1/api_key/", &token).await;
        list["api_keys"][0]["total_uses"] == 7
    })
    .await;
    let (_, list) = s.get_with_token("/api/v1/api_key/", &token).await;
    let last_used = list["api_keys"][0]["last_used_at"].as_str().unwrap();
    assert!(last_used.ends_with("+00:00"));
}

#[tokio::test]
async fn usage_counters_are_flushed_on_shutdown() {
    // A flush interval far beyond the test: only the shutdown flush can write the count.
    let mut s = TestServer::start_with(&[("FLOWGATE_USAGE_FLUSH_MS", "3600000")]).await;
    let token = s.admin_token().await;
    let (key, _) = s.key(&token, json!({"name": "counted"})).await;
    for _ in 0..4 {
        assert_eq!(s.get_with_key("/api/v1/users/whoami", &key).await.0, 200);
    }
    assert!(s.stop().success());
    let out = s.cli(&["api-key", "list"]);
    let table = stdout(&out);
    let row = table.lines().find(|l| l.contains("counted")).expect(&table);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[5], "4", "{table}");
}

#[tokio::test]
async fn run_scoped_keys_cannot_manage_and_leaked_keys_can_be_revoked() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let (run_key, _) = s
        .key(
            &token,
            json!({"name": "runner", "scope": "run", "flows": ["my-flow"]}),
        )
        .await;
    assert_eq!(
        s.get_with_key("/api/v1/users/whoami", &run_key).await,
        (
            StatusCode::FORBIDDEN,
            detail("This API key is not allowed to do that")
        )
    );
    let (_, list) = s.get_with_token("/api/v1/api_key/", &token).await;
    assert_eq!(list["api_keys"][0]["scope"], "run");
    assert_eq!(list["api_keys"][0]["flows"], json!(["my-flow"]));
    let (status, _) = split(
        s.client
            .post(s.url("/api/v1/api_key/"))
            .bearer_auth(&token)
            .json(&json!({"scope": "admin"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);

    let (leaked, _) = s.key(&token, json!({"name": "leaked"})).await;
    assert_eq!(s.get_with_key("/api/v1/users/whoami", &leaked).await.0, 200);
    let revoke = |k: String| {
        s.client
            .post(s.url("/api/v1/api_key/revoke"))
            .json(&json!({"api_key": k}))
            .send()
    };
    let (status, answer) = split(revoke(leaked.clone()).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(s.get_with_key("/api/v1/users/whoami", &leaked).await.0, 403);
    // The same answer for a key that never existed: no oracle.
    let (status2, answer2) = split(revoke("fgk_nothing".into()).await.unwrap()).await;
    assert_eq!((status2, answer2), (status, answer));
}
