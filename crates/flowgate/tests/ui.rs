//! The web UI's server side: CSRF on cookie-authenticated changes, page redirects and access,
//! security headers, escaping, embedded assets. (The browser tests are in `e2e/`.)

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, ETAG, IF_NONE_MATCH, LOCATION, SET_COOKIE,
};
use serde_json::json;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `Set-Cookie` lines of a response, whole.
fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_line<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {lines:?}"))
}

fn cookie_value(line: &str) -> String {
    line.split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

/// A browser session: the cookies a login sets.
struct Browser {
    access: String,
    refresh: String,
    csrf: String,
}

impl Browser {
    async fn login(server: &TestServer, username: &str, password: &str) -> Self {
        let res = server.login_response(username, password).await;
        assert_eq!(res.status(), StatusCode::OK);
        let lines = set_cookies(&res);
        Self {
            access: cookie_value(cookie_line(&lines, "access_token_lf")),
            refresh: cookie_value(cookie_line(&lines, "refresh_token_lf")),
            csrf: cookie_value(cookie_line(&lines, "csrf_token_lf")),
        }
    }

    fn cookies(&self) -> String {
        format!(
            "access_token_lf={}; refresh_token_lf={}; csrf_token_lf={}",
            self.access, self.refresh, self.csrf
        )
    }
}

#[tokio::test]
async fn login_sets_a_readable_csrf_cookie_and_refresh_and_logout_rotate_it() {
    let server = TestServer::start().await;
    let res = server.login_response(ADMIN, ADMIN_PW).await;
    let lines = set_cookies(&res);
    let csrf = cookie_line(&lines, "csrf_token_lf");
    assert!(!csrf.contains("HttpOnly"), "{csrf}");
    assert!(
        csrf.contains("SameSite=lax") && csrf.contains("Path=/"),
        "{csrf}"
    );
    assert!(
        csrf.contains("Max-Age=604800"),
        "as long-lived as the refresh token: {csrf}"
    );
    let token = cookie_value(csrf);
    assert_eq!(token.len(), 64);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    for name in ["access_token_lf", "refresh_token_lf"] {
        let line = cookie_line(&lines, name);
        assert!(
            line.contains("HttpOnly") && line.contains("SameSite=lax"),
            "{line}"
        );
    }

    let session = Browser {
        access: cookie_value(cookie_line(&lines, "access_token_lf")),
        refresh: cookie_value(cookie_line(&lines, "refresh_token_lf")),
        csrf: token.clone(),
    };
    let res = server
        .client
        .post(server.url("/api/v1/refresh"))
        .header(COOKIE, session.cookies())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let lines = set_cookies(&res);
    let fresh = cookie_value(cookie_line(&lines, "csrf_token_lf"));
    assert_ne!(fresh, token, "a refresh issues a new CSRF token");

    let res = server
        .client
        .post(server.url("/api/v1/logout"))
        .header(COOKIE, session.cookies())
        .send()
        .await
        .unwrap();
    let lines = set_cookies(&res);
    let cleared = cookie_line(&lines, "csrf_token_lf");
    assert!(cleared.starts_with("csrf_token_lf=;") && cleared.contains("Max-Age=0"));
}

#[tokio::test]
async fn cookie_authenticated_changes_need_the_csrf_header() {
    let server = TestServer::start().await;
    let browser = Browser::login(&server, ADMIN, ADMIN_PW).await;
    let create = |csrf: Option<&str>| {
        let mut req = server
            .client
            .post(server.url("/api/v1/api_key/"))
            .header(COOKIE, browser.cookies())
            .json(&json!({"name": "from-the-browser"}));
        if let Some(token) = csrf {
            req = req.header("x-csrf-token", token);
        }
        req.send()
    };

    let refused = detail("CSRF token missing or invalid");
    let (status, body) = split(create(None).await.unwrap()).await;
    assert_eq!((status, body), (StatusCode::FORBIDDEN, refused.clone()));
    let wrong = "0".repeat(64);
    let (status, body) = split(create(Some(&wrong)).await.unwrap()).await;
    assert_eq!((status, body), (StatusCode::FORBIDDEN, refused.clone()));
    let (status, body) = split(create(Some("")).await.unwrap()).await;
    assert_eq!((status, body), (StatusCode::FORBIDDEN, refused.clone()));
    let short = &browser.csrf[..10];
    let (status, _) = split(create(Some(short)).await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = split(create(Some(&browser.csrf)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_str().unwrap().to_string();

    // A header without the cookie proves nothing.
    let only_access = format!("access_token_lf={}", browser.access);
    let res = server
        .client
        .delete(server.url(&format!("/api/v1/api_key/{id}")))
        .header(COOKIE, only_access)
        .header("x-csrf-token", &browser.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(split(res).await, (StatusCode::FORBIDDEN, refused.clone()));

    // Reading needs no token.
    let res = server
        .client
        .get(server.url("/api/v1/api_key/"))
        .header(COOKIE, browser.cookies())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Deleting does, and works with it.
    let delete = |csrf: Option<&str>| {
        let mut req = server
            .client
            .delete(server.url(&format!("/api/v1/api_key/{id}")))
            .header(COOKIE, browser.cookies());
        if let Some(token) = csrf {
            req = req.header("x-csrf-token", token);
        }
        req.send()
    };
    assert_eq!(
        split(delete(None).await.unwrap()).await,
        (StatusCode::FORBIDDEN, refused.clone())
    );
    assert_eq!(
        delete(Some(&browser.csrf)).await.unwrap().status(),
        StatusCode::OK
    );

    // PATCH too (a user changing their own password through the cookie).
    let me = server
        .get_with_token("/api/v1/users/whoami", &browser.access)
        .await
        .1;
    let res = server
        .client
        .patch(server.url(&format!("/api/v1/users/{}", me["id"].as_str().unwrap())))
        .header(COOKIE, browser.cookies())
        .json(&json!({"profile_image": "x.png"}))
        .send()
        .await
        .unwrap();
    assert_eq!(split(res).await, (StatusCode::FORBIDDEN, refused));
}

#[tokio::test]
async fn bearer_tokens_and_api_keys_need_no_csrf_token() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let browser = Browser::login(&server, ADMIN, ADMIN_PW).await;
    // Even with the session cookie present, an explicit bearer header is what authenticates.
    let res = server
        .client
        .post(server.url("/api/v1/api_key/"))
        .bearer_auth(&token)
        .header(COOKIE, browser.cookies())
        .json(&json!({"name": "scripted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (key, _) = server.key(&token, json!({"name": "app"})).await;
    let res = server
        .client
        .post(server.url("/api/v1/api_key/"))
        .header("x-api-key", &key)
        .header(COOKIE, browser.cookies())
        .json(&json!({"name": "made-with-a-key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn pages_redirect_to_login_and_back() {
    let server = TestServer::start().await;
    let client = no_redirects();
    let location = |res: &reqwest::Response| {
        res.headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
    };

    let res = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res).as_deref(), Some("/login"));
    for (page, next) in [
        ("/settings/api-keys", "%2Fsettings%2Fapi-keys"),
        ("/admin/users?skip=1", "%2Fadmin%2Fusers%3Fskip%3D1"),
    ] {
        let res = client.get(server.url(page)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{page}");
        assert_eq!(location(&res), Some(format!("/login?next={next}")));
    }
    // An invalid or expired cookie is the same as none.
    let res = client
        .get(server.url("/settings/api-keys"))
        .header(COOKIE, "access_token_lf=garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    let res = client.get(server.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let browser = Browser::login(&server, ADMIN, ADMIN_PW).await;
    let get = |path: &str| {
        client
            .get(server.url(path))
            .header(COOKIE, browser.cookies())
            .send()
    };
    let res = get("/").await.unwrap();
    assert_eq!(location(&res).as_deref(), Some("/flows"));
    let res = get("/settings").await.unwrap();
    assert_eq!(location(&res).as_deref(), Some("/settings/api-keys"));
    let res = get("/login?next=%2Fadmin%2Fusers").await.unwrap();
    assert_eq!(location(&res).as_deref(), Some("/admin/users"));
    for evil in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let query = format!(
            "/login?next={}",
            evil.replace('/', "%2F").replace('\\', "%5C")
        );
        let res = get(&query).await.unwrap();
        assert_eq!(location(&res).as_deref(), Some("/"), "{evil}");
    }
    for page in ["/settings/api-keys", "/admin/users"] {
        let res = get(page).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{page}");
        assert!(
            res.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}

#[tokio::test]
async fn users_page_is_for_superusers_only() {
    let server = TestServer::start().await;
    let admin = server.admin_token().await;
    server.user(&admin, "carol").await;
    let browser = Browser::login(&server, "carol", "carol-Passw0rd!").await;
    let res = no_redirects()
        .get(server.url("/admin/users"))
        .header(COOKIE, browser.cookies())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("You don&#39;t have access to this page"),
        "{html}"
    );
    assert!(
        !html.contains("href=\"/admin/users\""),
        "no link to it either"
    );

    let res = no_redirects()
        .get(server.url("/settings/api-keys"))
        .header(COOKIE, browser.cookies())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.text().await.unwrap().contains("href=\"/admin/users\""));
}

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let server = TestServer::start().await;
    let browser = Browser::login(&server, ADMIN, ADMIN_PW).await;
    let client = no_redirects();
    for path in [
        "/login",
        "/settings/api-keys",
        "/admin/users",
        "/",
        "/static/app.js",
    ] {
        let res = client
            .get(server.url(path))
            .header(COOKIE, browser.cookies())
            .send()
            .await
            .unwrap();
        let h = res.headers();
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        if !path.starts_with("/static/") {
            assert_eq!(h[CACHE_CONTROL], "no-store", "{path}");
        }
    }
    // No inline script or style anywhere: the CSP would block it.
    for path in ["/login", "/settings/api-keys", "/admin/users"] {
        let html = client
            .get(server.url(path))
            .header(COOKIE, browser.cookies())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("<style"),
            "{path}"
        );
        assert!(
            !html.contains(" style=") && !html.contains(" onclick="),
            "{path}"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing from elsewhere: {path}"
        );
    }
}

#[tokio::test]
async fn names_are_escaped_in_server_rendered_html() {
    let server = TestServer::start().await;
    let admin = server.admin_token().await;
    let name = "<script>alert(1)</script>";
    let password = "Passw0rd-for-xss";
    let res = server
        .client
        .post(server.url("/api/v1/users/"))
        .bearer_auth(&admin)
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let browser = Browser::login(&server, name, password).await;
    let html = no_redirects()
        .get(server.url("/settings/api-keys"))
        .header(COOKIE, browser.cookies())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains(name), "the raw name never reaches the page");
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{html}"
    );

    // The login page's next= goes into an attribute, escaped too.
    let html = server
        .client
        .get(server.url("/login?next=%2F%22%3E%3Cscript%3Ex%3C%2Fscript%3E"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("\"><script>x"), "{html}");
}

#[tokio::test]
async fn assets_are_embedded_typed_and_cached_by_version() {
    let server = TestServer::start().await;
    let client = no_redirects();
    let html = client
        .get(server.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let css_url = html
        .split('"')
        .find(|s| s.starts_with("/static/app.css?v="))
        .expect("the page links the stylesheet with its version")
        .to_string();
    for (path, kind) in [
        ("/static/app.css", "text/css; charset=utf-8"),
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/login.js", "text/javascript; charset=utf-8"),
        ("/static/api-keys.js", "text/javascript; charset=utf-8"),
        ("/static/users.js", "text/javascript; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml"),
    ] {
        let res = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()[CONTENT_TYPE], kind, "{path}");
        assert_eq!(res.headers()[CACHE_CONTROL], "no-cache", "{path}");
        assert!(!res.bytes().await.unwrap().is_empty());
    }
    let res = client.get(server.url(&css_url)).send().await.unwrap();
    assert_eq!(
        res.headers()[CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    let etag = res.headers()[ETAG].clone();
    let res = client
        .get(server.url("/static/app.css"))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    let res = client
        .get(server.url("/static/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = client
        .get(server.url("/static/..%2Fsrc%2Flib.rs"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn flow_pages_are_shells_for_the_owner_only() {
    let server = TestServer::start().await;
    let client = no_redirects();
    let admin = server.admin_token().await;
    let res = server
        .client
        .post(server.url("/api/v1/flows/"))
        .bearer_auth(&admin)
        .json(&json!({
            "name": "<script>alert(1)</script>",
            "endpoint_name": "shell-check",
            "data": {"nodes": [], "edges": []},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Signed out: to the login page and back.
    let res = client
        .get(server.url(&format!("/flows/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()[LOCATION].to_str().unwrap();
    assert_eq!(location, format!("/login?next=%2Fflows%2F{id}"));

    let browser = Browser::login(&server, ADMIN, ADMIN_PW).await;
    let get = |path: String| {
        client
            .get(server.url(&path))
            .header(COOKIE, browser.cookies())
            .send()
    };
    for path in [
        "/flows".to_string(),
        format!("/flows/{id}"),
        "/flows/shell-check".to_string(),
    ] {
        let res = get(path.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()["content-security-policy"], CSP, "{path}");
        assert_eq!(res.headers()[CACHE_CONTROL], "no-store", "{path}");
        let html = res.text().await.unwrap();
        assert!(!html.contains("<script>"), "{path}: no inline script");
        assert!(!html.contains(" style="), "{path}: no inline style");
        assert!(
            html.contains("href=\"/flows\" aria-current=\"page\""),
            "{path}"
        );
        assert!(
            !html.contains("alert(1)"),
            "{path}: the name comes from the API, as text"
        );
    }
    // The page carries the canonical id whichever name it was asked by.
    let html = get("/flows/shell-check".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("data-flow-id=\"{id}\"")), "{html}");

    // A missing flow, a malformed name and another user's flow are all the same 404 page.
    server.user(&admin, "dave").await;
    let dave = Browser::login(&server, "dave", "dave-Passw0rd!").await;
    for (who, path) in [
        (
            &browser,
            "/flows/00000000-0000-4000-8000-000000000000".to_string(),
        ),
        (&browser, "/flows/no%20such%20flow".to_string()),
        (&dave, format!("/flows/{id}")),
        (&dave, "/flows/shell-check".to_string()),
    ] {
        let res = client
            .get(server.url(&path))
            .header(COOKIE, who.cookies())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let html = res.text().await.unwrap();
        assert!(html.contains("Flow not found"), "{path}");
        assert!(!html.contains(&id), "{path}: nothing about the flow leaks");
    }
}

#[tokio::test]
async fn variables_page_is_a_shell_for_signed_in_users() {
    let server = TestServer::start().await;
    let client = no_redirects();

    // Signed out (or with a bad cookie): to the login page, and back here after it.
    for cookie in [None, Some("access_token_lf=garbage")] {
        let mut req = client.get(server.url("/settings/variables"));
        if let Some(cookie) = cookie {
            req = req.header(COOKIE, cookie);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{cookie:?}");
        assert_eq!(
            res.headers()[LOCATION],
            "/login?next=%2Fsettings%2Fvariables"
        );
    }

    // A credential of the user's: its value never reaches the page.
    let admin = server.admin_token().await;
    let secret = "sk-never-in-the-page-0123456789";
    let res = server
        .client
        .post(server.url("/api/v1/variables/"))
        .bearer_auth(&admin)
        .json(&json!({"name": "OPENAI_API_KEY", "value": secret, "type": "Credential"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    let browser = Browser::login(&server, ADMIN, ADMIN_PW).await;
    let res = client
        .get(server.url("/settings/variables"))
        .header(COOKIE, browser.cookies())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert!(h[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert_eq!(h["content-security-policy"], CSP);
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h[CACHE_CONTROL], "no-store");
    let html = res.text().await.unwrap();
    assert!(!html.contains(secret));
    assert!(html.contains("/static/variables.js?v="), "{html}");
    assert!(
        html.contains("<a href=\"/settings/variables\" aria-current=\"page\">"),
        "the sidebar marks this page: {html}"
    );
    assert!(!html.contains("<script>") && !html.contains("<style"));
    assert!(!html.contains(" style=") && !html.contains(" onclick="));

    // The API keys page links here too, without marking it.
    let html = client
        .get(server.url("/settings/api-keys"))
        .header(COOKIE, browser.cookies())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<a href=\"/settings/variables\">"), "{html}");
    assert!(html.contains("<a href=\"/settings/api-keys\" aria-current=\"page\">"));

    let res = client
        .get(server.url("/static/variables.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
}
