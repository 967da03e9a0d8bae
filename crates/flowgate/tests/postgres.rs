//! Several instances on one PostgreSQL database (issue: PostgreSQL backend), and PostgreSQL
//! going away and coming back. These need FLOWGATE_TEST_DATABASE_URL (`.ci/run` sets it); on
//! SQLite-only runs they say so and pass without running.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
/// Both instances sign tokens with the same secret, as a real deployment must.
const SHARED_SECRET: &str = "two-instances-share-this-secret-key-0123456789";

fn chat_echo() -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/chat-echo.json")).unwrap())
        .unwrap()
}

fn postgres_or_skip(test: &str) -> bool {
    if test_database_admin_url().is_none() {
        eprintln!("{test}: skipped, FLOWGATE_TEST_DATABASE_URL is not set (PostgreSQL only)");
        return false;
    }
    true
}

async fn run_flow(
    s: &TestServer,
    ident: &str,
    key: &str,
    input: &str,
    session: &str,
) -> (StatusCode, Value) {
    let res = s
        .client
        .post(s.url(&format!("/api/v1/run/{ident}")))
        .header("x-api-key", key)
        .json(&json!({"input_value": input, "session_id": session}))
        .send()
        .await
        .unwrap();
    split(res).await
}

fn output_sender_name(body: &Value) -> &str {
    body["outputs"][0]["outputs"][0]["messages"][0]["sender_name"]
        .as_str()
        .unwrap_or_default()
}

/// The texts of a session's stored messages, read through `s`.
async fn session_texts(s: &TestServer, key: &str, session: &str) -> Vec<String> {
    let (status, messages) = s
        .get_with_key(
            &format!("/api/v1/monitor/messages?session_id={session}"),
            key,
        )
        .await;
    assert_eq!(status, 200, "{messages}");
    messages
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

async fn send(rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
    split(rb.send().await.unwrap()).await
}

/// Background runs on both instances for the whole test: changes must be honoured while they
/// are busy, not just when idle. Bounded: 4 workers, stopped at the end (or after 60 s).
struct Load {
    stop: CancellationToken,
    done: AtomicU64,
    failed: AtomicU64,
}

fn start_load(a: &TestServer, b: &TestServer, key: &str) -> Arc<Load> {
    let load = Arc::new(Load {
        stop: CancellationToken::new(),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    for (i, base) in [&a.base, &b.base, &a.base, &b.base].into_iter().enumerate() {
        let (load, base, key) = (load.clone(), base.clone(), key.to_string());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let started = Instant::now();
            while !load.stop.is_cancelled() && started.elapsed() < Duration::from_secs(60) {
                let res = client
                    .post(format!("{base}/api/v1/run/load-echo"))
                    .header("x-api-key", &key)
                    .json(&json!({"input_value": "load", "session_id": format!("load-{i}")}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => load.done.fetch_add(1, Ordering::Relaxed),
                    _ => load.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_database_are_one_service() {
    if !postgres_or_skip("two_instances_on_one_database_are_one_service") {
        return;
    }
    let env = [
        ("FLOWGATE_SECRET_KEY", SHARED_SECRET),
        ("FLOWGATE_USAGE_FLUSH_MS", "100"),
    ];
    let a = TestServer::start_with(&env).await;
    let url = a.database_url().expect("a PostgreSQL database");
    let b = TestServer::start_on_database(&url, &env).await;
    // Both hear each other's changes through LISTEN/NOTIFY (not the re-validating fallback).
    for s in [&a, &b] {
        assert_cache_is(s, "live").await;
    }

    // A token from A works on B (shared secret, shared users).
    let admin = a.admin_token().await;
    let (_, alice) = a.user(&admin, "alice").await;
    let (status, me) = b.get_with_token("/api/v1/users/whoami", &alice).await;
    assert_eq!(
        (status, me["username"].as_str()),
        (StatusCode::OK, Some("alice"))
    );

    // Load: a separate user's runs on both instances throughout.
    let (_, loader) = a.user(&admin, "loader").await;
    let (load_key, _) = a.key(&loader, json!({"name": "load"})).await;
    let mut load_flow = chat_echo();
    load_flow["name"] = json!("load-echo");
    load_flow["endpoint_name"] = json!("load-echo");
    let (status, _) = send(
        a.client
            .post(a.url("/api/v1/flows/"))
            .bearer_auth(&loader)
            .json(&load_flow),
    )
    .await;
    assert_eq!(status, 201);
    let load = start_load(&a, &b, &load_key);

    // 1. A key created on A works on B at once.
    let (key, key_id) = a.key(&alice, json!({"name": "k1"})).await;
    let (status, _) = b.get_with_key("/api/v1/users/whoami", &key).await;
    assert_eq!(status, 200, "a key created on A is known to B");

    // 2. A flow created on A runs on B at once; updated, renamed, deleted likewise.
    let (status, flow) = send(
        a.client
            .post(a.url("/api/v1/flows/"))
            .bearer_auth(&alice)
            .json(&chat_echo()),
    )
    .await;
    assert_eq!(status, 201, "{flow}");
    let flow_id = flow["id"].as_str().unwrap().to_string();
    let (status, body) = run_flow(&b, "peer-chat-echo", &key, "hi from B", "s-ab").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(output_sender_name(&body), "AI");

    let mut data = flow["data"].clone();
    for node in data["nodes"].as_array_mut().unwrap() {
        if node["id"] == "ChatOutput-bbbb2" {
            node["data"]["node"]["template"]["sender_name"]["value"] = json!("Bot v2");
        }
    }
    let (status, _) = send(
        a.client
            .patch(a.url(&format!("/api/v1/flows/{flow_id}")))
            .bearer_auth(&alice)
            .json(&json!({"data": data})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = run_flow(&b, "peer-chat-echo", &key, "again", "s-ab").await;
    assert_eq!(
        (status, output_sender_name(&body)),
        (StatusCode::OK, "Bot v2"),
        "B runs the updated flow"
    );

    let (status, _) = send(
        a.client
            .patch(a.url(&format!("/api/v1/flows/{flow_id}")))
            .bearer_auth(&alice)
            .json(&json!({"endpoint_name": "renamed-echo"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = run_flow(&b, "peer-chat-echo", &key, "old name", "s-ab").await;
    assert_eq!(status, 404, "the old endpoint name is gone on B");
    let (status, _) = run_flow(&b, "renamed-echo", &key, "new name", "s-ab").await;
    assert_eq!(status, 200, "the new endpoint name works on B");

    // 3. Chat history written through one instance is read through the other at once.
    let (status, _) = run_flow(&a, &flow_id, &key, "written on A", "s-history").await;
    assert_eq!(status, 200);
    let texts = session_texts(&b, &key, "s-history").await;
    assert_eq!(
        texts.len(),
        2,
        "the run's input and output messages: {texts:?}"
    );
    assert!(texts.iter().all(|t| *t == "written on A"), "{texts:?}");

    let (status, _) = send(
        a.client
            .delete(a.url(&format!("/api/v1/flows/{flow_id}")))
            .bearer_auth(&alice),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = run_flow(&b, &flow_id, &key, "deleted", "s-ab").await;
    assert_eq!(status, 404, "a flow deleted on A is gone on B");

    // 4. A key revoked on A is refused by B on its very next request (B had it cached).
    let (status, _) = b.get_with_key("/api/v1/users/whoami", &key).await;
    assert_eq!(status, 200);
    let (status, _) = send(
        a.client
            .delete(a.url(&format!("/api/v1/api_key/{key_id}")))
            .bearer_auth(&alice),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = b.get_with_key("/api/v1/users/whoami", &key).await;
    assert_eq!(status, 403, "revoked on A, refused by B: {body}");

    // 5. A user deactivated on A: B refuses their (cached) key at once.
    let (bob_id, bob) = a.user(&admin, "bob").await;
    let (bob_key, _) = a.key(&bob, json!({"name": "bob"})).await;
    assert_eq!(
        b.get_with_key("/api/v1/users/whoami", &bob_key).await.0,
        200
    );
    let (status, _) = send(
        a.client
            .patch(a.url(&format!("/api/v1/users/{bob_id}")))
            .bearer_auth(&admin)
            .json(&json!({"is_active": false})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        b.get_with_key("/api/v1/users/whoami", &bob_key).await.0,
        403,
        "deactivated on A, refused by B"
    );

    // 6. An expiring key: accepted by both while valid, refused by both once expired.
    let expires = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (short_key, _) = a
        .key(
            &alice,
            json!({"name": "short", "expires_at": expires.to_rfc3339()}),
        )
        .await;
    assert_eq!(
        b.get_with_key("/api/v1/users/whoami", &short_key).await.0,
        200
    );
    assert_eq!(
        a.get_with_key("/api/v1/users/whoami", &short_key).await.0,
        200
    );
    let wait =
        (expires - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(50);
    tokio::time::sleep(wait).await;
    assert_eq!(
        b.get_with_key("/api/v1/users/whoami", &short_key).await.0,
        403
    );
    assert_eq!(
        a.get_with_key("/api/v1/users/whoami", &short_key).await.0,
        403
    );

    // 7. Usage counted by both instances adds up.
    let (counted, counted_id) = a.key(&alice, json!({"name": "counted"})).await;
    for s in [&a, &b, &b, &a, &b] {
        assert_eq!(
            s.get_with_key("/api/v1/users/whoami", &counted).await.0,
            200
        );
    }
    eventually("usage from both instances adds up", async || {
        let (_, list) = a.get_with_token("/api/v1/api_key/", &alice).await;
        list["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == counted_id.as_str() && k["total_uses"] == 5)
    })
    .await;

    // The fallback was never needed: the caches stayed live throughout.
    for s in [&a, &b] {
        assert_cache_is(s, "live").await;
        assert!(s.logs().contains("listening for changes on PostgreSQL"));
    }
    load.stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (done, failed) = (
        load.done.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    assert!(done > 20, "the load ran meanwhile ({done} runs)");
    assert_eq!(failed, 0, "no background run failed");
}

async fn assert_cache_is(s: &TestServer, expected: &str) {
    eventually(
        &format!("/health_check says cache: {expected}"),
        async || {
            let (_, body) = split(s.client.get(s.url("/health_check")).send().await.unwrap()).await;
            body["cache"] == expected
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_on_a_fresh_database_do_not_race() {
    if !postgres_or_skip("instances_starting_together_on_a_fresh_database_do_not_race") {
        return;
    }
    let owner = tempfile::tempdir().unwrap();
    let url = database_url_for(owner.path()).unwrap();
    let env = [("FLOWGATE_SECRET_KEY", SHARED_SECRET)];
    // Three instances migrate and create the superuser at the same moment.
    let (a, b, c) = tokio::join!(
        TestServer::start_on_database(&url, &env),
        TestServer::start_on_database(&url, &env),
        TestServer::start_on_database(&url, &env),
    );
    let token = a.admin_token().await;
    for s in [&a, &b, &c] {
        let (status, me) = s.get_with_token("/api/v1/users/whoami", &token).await;
        assert_eq!(
            (status, me["username"].as_str()),
            (StatusCode::OK, Some("langflow"))
        );
    }
    let (_, users) = c
        .get_with_token("/api/v1/users/?skip=0&limit=50", &token)
        .await;
    assert_eq!(users["total_count"], 1, "one superuser, not three: {users}");
    let migrations = run_sql(owner.path(), "SELECT count(*) FROM _sqlx_migrations");
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../store/migrations/postgres"
    ))
    .unwrap()
    .filter(|f| {
        f.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|e| e == "sql")
    })
    .count();
    assert!(files >= 5, "{files} migrations");
    assert_eq!(migrations, files.to_string(), "each migration applied once");
}

/// A TCP proxy in front of PostgreSQL that the test can cut (every connection closed, new ones
/// refused) and restore: PostgreSQL "going away" without stopping the shared server.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    cut: std::sync::Mutex<CancellationToken>,
}

impl Proxy {
    async fn start(upstream: String) -> Arc<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Arc::new(Proxy {
            port: listener.local_addr().unwrap().port(),
            down: Arc::new(AtomicBool::new(false)),
            cut: std::sync::Mutex::new(CancellationToken::new()),
        });
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if p.down.load(Ordering::Acquire) {
                    let _ = client.shutdown().await;
                    continue;
                }
                let cut = p.cut.lock().unwrap().clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        proxy
    }

    fn cut(&self) {
        self.down.store(true, Ordering::Release);
        let mut cut = self.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    fn restore(&self) {
        self.down.store(false, Ordering::Release);
    }
}

/// `postgres://user@host:port/db?...` → (`host:port`, the URL with `127.0.0.1:<port>` instead).
fn through_proxy(url: &str, port: u16) -> (String, String) {
    let after = url.find("://").unwrap() + 3;
    let rest = &url[after..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..host_end];
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    };
    let proxied = format!(
        "{}{userinfo}127.0.0.1:{port}{}",
        &url[..after],
        &rest[host_end..]
    );
    (hostport, proxied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_going_away_gives_fast_503s_and_recovers_without_a_restart() {
    if !postgres_or_skip("postgres_going_away_gives_fast_503s_and_recovers_without_a_restart") {
        return;
    }
    // A database of its own (made by a throw-away data dir), reached through the proxy.
    let owner = tempfile::tempdir().unwrap();
    let direct = database_url_for(owner.path()).unwrap();
    let (upstream, _) = through_proxy(&direct, 0);
    let proxy = Proxy::start(upstream).await;
    let (_, proxied) = through_proxy(&direct, proxy.port);
    let s = TestServer::start_on_database(&proxied, &[("FLOWGATE_USAGE_FLUSH_MS", "100")]).await;

    let admin = s.admin_token().await;
    let (key, _) = s.key(&admin, json!({"name": "k"})).await;
    let (status, _) = send(
        s.client
            .post(s.url("/api/v1/flows/"))
            .bearer_auth(&admin)
            .json(&chat_echo()),
    )
    .await;
    assert_eq!(status, 201);
    // Acknowledged before the outage: these must survive it.
    for i in 0..5 {
        let (status, _) =
            run_flow(&s, "peer-chat-echo", &key, &format!("before {i}"), "outage").await;
        assert_eq!(status, 200);
    }

    assert_cache_is(&s, "live").await;
    proxy.cut();
    // The server notices the notification connection is gone and re-validates every request.
    assert_cache_is(&s, "revalidating").await;
    // Every kind of request that needs the database fails fast with a 503 naming the problem.
    let started = Instant::now();
    let (status, body) = run_flow(&s, "peer-chat-echo", &key, "during", "outage").await;
    assert_eq!(status, 503, "a run while PostgreSQL is away: {body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Database unavailable"),
        "{body}"
    );
    let (status, body) = s.get_with_token("/api/v1/flows/", &admin).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["detail"], "Database unavailable, try again shortly");
    let res = s.login_response(ADMIN, ADMIN_PW).await;
    assert_eq!(res.status(), 503);
    let (status, _) = s.get_with_key("/api/v1/users/whoami", &key).await;
    assert_eq!(
        status, 503,
        "while changes cannot be heard, cached keys are re-validated"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "four requests took {:?}",
        started.elapsed()
    );
    let (status, _) = s.get_with_token("/health", &admin).await;
    assert_eq!(status, 200, "the process itself stays up");

    proxy.restore();
    // Back by itself: no restart.
    eventually(
        "requests succeed again once PostgreSQL is back",
        async || {
            run_flow(&s, "peer-chat-echo", &key, "after", "outage")
                .await
                .0
                == 200
        },
    )
    .await;
    let texts = session_texts(&s, &key, "outage").await;
    for i in 0..5 {
        let before = format!("before {i}");
        assert_eq!(
            texts.iter().filter(|t| **t == before).count(),
            2,
            "run {i}'s messages survived: {texts:?}"
        );
    }
    assert!(
        !texts.iter().any(|t| t == "during"),
        "the refused run stored nothing: {texts:?}"
    );
    assert!(texts.iter().any(|t| t == "after"));
    // The change listener is back too.
    assert_cache_is(&s, "live").await;
    let (status, _) = s.get_with_key("/api/v1/users/whoami", &key).await;
    assert_eq!(status, 200);
    drop(owner);
}
