//! Health, login, refresh, logout, whoami and the authentication rules of api.md.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn health_version_and_json_errors_for_unknown_routes() {
    let s = TestServer::start().await;
    let res = s.client.get(s.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    for path in ["/health_check", "/healthz"] {
        // On PostgreSQL the change listener connects just after start.
        eventually("ready, with live caches", async || {
            let (status, body) = split(s.client.get(s.url(path)).send().await.unwrap()).await;
            status == 200
                && body == json!({"status": "ok", "chat": "ok", "db": "ok", "cache": "live"})
        })
        .await;
    }
    let (status, body) = split(s.client.get(s.url("/api/v1/version")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["package"], "flowgate");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    let (status, body) = split(
        s.client
            .get(s.url("/api/v1/no-such-route"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body, detail("Not Found"));
    let (status, body) = split(
        s.client
            .delete(s.url("/api/v1/users/whoami"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(body, detail("Method Not Allowed"));
    let (status, body) = split(
        s.client
            .get(s.url("/api/v1/auto_login"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"detail": {"message": "Auto login is disabled.", "auto_login": false}})
    );
}

#[tokio::test]
async fn login_sets_tokens_and_cookies_and_rejects_bad_credentials() {
    let s = TestServer::start().await;
    let res = s.login_response(ADMIN, ADMIN_PW).await;
    assert_eq!(res.status(), 200);
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("access_token_lf=")
            && c.contains("HttpOnly")
            && c.contains("SameSite=lax")
            && c.contains("Max-Age=3600")),
        "{cookies:?}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("refresh_token_lf=")
            && c.contains("HttpOnly")
            && c.contains("Max-Age=604800")),
        "{cookies:?}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body.as_object().unwrap().len(), 3);

    // Wrong password and unknown user answer the same, with WWW-Authenticate.
    for (user, pw) in [(ADMIN, "nope"), ("nobody", "whatever")] {
        let res = s.login_response(user, pw).await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        assert_eq!(
            res.json::<Value>().await.unwrap(),
            detail("Incorrect username or password")
        );
    }
    // Usernames are case-insensitive.
    s.login("LangFlow", ADMIN_PW).await;

    // A JSON body instead of a form: FastAPI's 422 listing both fields.
    let (status, body) = split(
        s.client
            .post(s.url("/api/v1/login"))
            .json(&json!({"username": ADMIN, "password": ADMIN_PW}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"detail": [
            {"type": "missing", "loc": ["body", "username"], "msg": "Field required"},
            {"type": "missing", "loc": ["body", "password"], "msg": "Field required"}
        ]})
    );
}

#[tokio::test]
async fn whoami_with_bearer_cookie_header_key_and_query_key() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let (status, me) = s.get_with_token("/api/v1/users/whoami", &token).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], ADMIN);
    assert_eq!(me["is_superuser"], true);
    let keys: Vec<&str> = me.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "id",
            "username",
            "profile_image",
            "store_api_key",
            "is_active",
            "is_superuser",
            "create_at",
            "updated_at",
            "last_login_at",
            "optins"
        ]
    );
    assert!(me["create_at"].as_str().unwrap().ends_with('Z'));

    let res = s
        .client
        .get(s.url("/api/v1/users/whoami"))
        .header("cookie", format!("access_token_lf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let (key, _) = s.key(&token, json!({"name": "k"})).await;
    let (status, by_key) = s.get_with_key("/api/v1/users/whoami", &key).await;
    assert_eq!(status, 200);
    assert_eq!(by_key["id"], me["id"]);
    let res = s
        .client
        .get(s.url(&format!("/api/v1/users/whoami?x-api-key={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .client
        .get(s.url("/api/v1/users/whoami"))
        .header("X-API-KEY", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "header names are case-insensitive");
}

#[tokio::test]
async fn authentication_failures_use_langflows_texts() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let (key, _) = s.key(&token, json!({})).await;
    let whoami = s.url("/api/v1/users/whoami");

    let (status, body) = split(s.client.get(&whoami).send().await.unwrap()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            detail("No authentication credentials provided")
        )
    );

    let (status, body) = split(
        s.client
            .get(&whoami)
            .bearer_auth("not-a-jwt")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, detail("Invalid token"))
    );

    // The key with its last character changed (to one it is not: "x" one time in 62).
    let last = if key.ends_with('x') { 'y' } else { 'x' };
    for bad in [
        "nope",
        "sk-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &format!("{}{last}", &key[..52]),
    ] {
        let (status, body) = s.get_with_key("/api/v1/users/whoami", bad).await;
        assert_eq!(
            (status, body),
            (StatusCode::FORBIDDEN, detail("Invalid API key")),
            "{bad}"
        );
    }
    // An empty header counts as absent.
    let (status, body) = s.get_with_key("/api/v1/users/whoami", "").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            detail("No authentication credentials provided")
        )
    );

    // An invalid JWT cookie does not shadow a valid key.
    let res = s
        .client
        .get(&whoami)
        .header("cookie", "access_token_lf=garbage")
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Nor does an invalid bearer token.
    let res = s
        .client
        .get(&whoami)
        .bearer_auth("garbage")
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // When both are present the header wins over the query parameter.
    let res = s
        .client
        .get(s.url("/api/v1/users/whoami?x-api-key=sk-wrong"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .client
        .get(s.url(&format!("/api/v1/users/whoami?x-api-key={key}")))
        .header("x-api-key", "sk-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn expired_access_tokens_say_so() {
    let s = TestServer::start_with(&[("FLOWGATE_ACCESS_TOKEN_EXPIRE_SECONDS", "1")]).await;
    let token = s.admin_token().await;
    assert_eq!(
        s.get_with_token("/api/v1/users/whoami", &token).await.0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = s.get_with_token("/api/v1/users/whoami", &token).await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, detail("Token has expired"))
    );
}

#[tokio::test]
async fn refresh_rotates_and_logout_revokes_server_side() {
    let s = TestServer::start().await;
    let res = s.login_response(ADMIN, ADMIN_PW).await;
    let first: Value = res.json().await.unwrap();
    let refresh1 = first["refresh_token"].as_str().unwrap().to_string();
    let cookie = |t: &str| format!("refresh_token_lf={t}");

    let (status, second) = split(
        s.client
            .post(s.url("/api/v1/refresh"))
            .header("cookie", cookie(&refresh1))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let refresh2 = second["refresh_token"].as_str().unwrap().to_string();
    let access2 = second["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        s.get_with_token("/api/v1/users/whoami", &access2).await.0,
        200
    );

    // A spent refresh token is refused (and ends that user's sessions).
    let (status, body) = split(
        s.client
            .post(s.url("/api/v1/refresh"))
            .header("cookie", cookie(&refresh1))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, detail("Invalid refresh token"))
    );
    let (status, _) = split(
        s.client
            .post(s.url("/api/v1/refresh"))
            .header("cookie", cookie(&refresh2))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        status, 401,
        "reuse of a spent token revokes the whole family"
    );

    // Logout revokes the refresh token it is given.
    let res = s.login_response(ADMIN, ADMIN_PW).await;
    let third: Value = res.json().await.unwrap();
    let refresh3 = third["refresh_token"].as_str().unwrap().to_string();
    let res = s
        .client
        .post(s.url("/api/v1/logout"))
        .header("cookie", cookie(&refresh3))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cleared: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("access_token_lf=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"message": "Logout successful"})
    );
    let (status, _) = split(
        s.client
            .post(s.url("/api/v1/refresh"))
            .header("cookie", cookie(&refresh3))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = split(
        s.client
            .post(s.url("/api/v1/refresh"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, detail("Invalid refresh token"))
    );
    // An access token is not a refresh token.
    let (status, _) = split(
        s.client
            .post(s.url("/api/v1/refresh"))
            .header("cookie", cookie(&access2))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_address() {
    let s = TestServer::start().await;
    for _ in 0..5 {
        let res = s.login_response(ADMIN, "wrong").await;
        assert_eq!(res.status(), 401);
    }
    // Even the right password waits now: the address has used up its failures.
    let res = s.login_response(ADMIN, ADMIN_PW).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let body: Value = res.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Too many failed login attempts")
    );
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_never_500() {
    let s = TestServer::start_with(&[("FLOWGATE_MAX_BODY_BYTES", "4096")]).await;
    let token = s.admin_token().await;
    let post = |body: Vec<u8>| {
        s.client
            .post(s.url("/api/v1/api_key/"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let (status, body) = split(post(b"{\"name\":".to_vec()).await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    assert_eq!(body["detail"][0]["msg"], "JSON decode error");

    let (status, body) = split(post(br#"{"name": 42}"#.to_vec()).await.unwrap()).await;
    assert_eq!(status, 422);
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("invalid type"),
        "{body}"
    );

    let (status, body) = split(post(br#"[1,2]"#.to_vec()).await.unwrap()).await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = split(post(vec![b' '; 5000]).await.unwrap()).await;
    assert_eq!(status, 413);
    assert!(body["detail"].as_str().unwrap().contains("4096"), "{body}");

    let (status, body) = split(post(vec![]).await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "missing");

    let (status, body) = split(post(b"\xff\xfe{}".to_vec()).await.unwrap()).await;
    assert_eq!(status, 422, "{body}");

    for bad in [
        "",
        "   ",
        "a\u{0}b",
        "tab\there",
        "rtl\u{202E}name",
        &"x".repeat(300),
    ] {
        let (status, body) = split(
            post(serde_json::to_vec(&json!({"name": bad})).unwrap())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 422, "{bad:?} → {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "name"]));
    }
    // Ordinary Unicode is a fine name.
    let (status, body) = split(
        post(serde_json::to_vec(&json!({"name": "clé 🔑 日本"})).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "clé 🔑 日本");

    let (status, body) = split(
        s.client
            .delete(s.url("/api/v1/api_key/not-a-uuid"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["path", "api_key_id"]));

    let (status, _) = split(
        s.client
            .get(s.url("/api/v1/users/?limit=abc"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = split(
        s.client
            .get(s.url("/api/v1/users/?limit=100000"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(!s.logs().contains("panicked"));
}
