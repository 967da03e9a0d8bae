//! Test harness: the real `flowgate` binary on an ephemeral port with a fresh data dir.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_flowgate");
pub const ADMIN: &str = "langflow";
pub const ADMIN_PW: &str = "langflow";

pub struct TestServer {
    child: Option<Child>,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    stderr_path: PathBuf,
}

/// Environment variables that would change a test server's behaviour if inherited.
fn scrub(cmd: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("FLOWGATE_") || name.starts_with("LANGFLOW_") {
            cmd.env_remove(name);
        }
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts `flowgate serve` with extra environment variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, env).await
    }

    pub async fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        let stderr_path = dir.path().join("server.log");
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let mut cmd = Command::new(BIN);
        scrub(&mut cmd);
        if let Some(url) = database_url_for(dir.path()) {
            cmd.env("FLOWGATE_DATABASE_URL", url);
        }
        cmd.args(["serve", "--port", "0", "--data-dir"])
            .arg(dir.path())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("spawn flowgate");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("flowgate did not start; its log:\n{log}");
            }
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Self {
            child: Some(child),
            base,
            dir,
            client,
            stderr_path,
        }
    }

    /// Starts a server with its own data dir on an existing database (several instances on
    /// one PostgreSQL database).
    pub async fn start_on_database(url: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(DATABASE_MARKER), url).expect("database marker");
        Self::start_in(dir, env).await
    }

    /// The PostgreSQL URL this server uses (`None` on SQLite).
    pub fn database_url(&self) -> Option<String> {
        database_url_for(self.data_dir())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `POST /api/v1/login` with a username and password form; the response as it came.
    pub async fn login_response(&self, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/login"))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .unwrap()
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let res = self.login_response(username, password).await;
        assert_eq!(res.status(), StatusCode::OK, "login as {username}");
        let body: Value = res.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    pub async fn admin_token(&self) -> String {
        self.login(ADMIN, ADMIN_PW).await
    }

    /// Creates an active user as the superuser and returns (id, access token).
    pub async fn user(&self, admin: &str, username: &str) -> (String, String) {
        let password = format!("{username}-Passw0rd!");
        let res = self
            .client
            .post(self.url("/api/v1/users/"))
            .bearer_auth(admin)
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        let id = body["id"].as_str().unwrap().to_string();
        (id, self.login(username, &password).await)
    }

    /// Creates an API key with the given body; returns (key, id).
    pub async fn key(&self, token: &str, body: Value) -> (String, String) {
        let res = self
            .client
            .post(self.url("/api/v1/api_key/"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        (
            body["api_key"].as_str().unwrap().to_string(),
            body["id"].as_str().unwrap().to_string(),
        )
    }

    pub async fn get_with_key(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .get(self.url(path))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        split(res).await
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        split(res).await
    }

    /// Runs the CLI against this server's data dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_in(self.data_dir(), args)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Everything the database holds, as bytes: the SQLite file and its WAL, or a PostgreSQL
    /// `pg_dump` of the test's database.
    pub fn database_bytes(&self) -> Vec<u8> {
        if let Some(url) = database_url_for(self.data_dir()) {
            let out = Command::new("pg_dump")
                .args(["--data-only", "--dbname", &url])
                .output()
                .expect("run pg_dump");
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return out.stdout;
        }
        let mut bytes = Vec::new();
        for name in ["flowgate.db", "flowgate.db-wal", "flowgate.db-shm"] {
            if let Ok(b) = std::fs::read(self.data_dir().join(name)) {
                bytes.extend(b);
            }
        }
        bytes
    }

    /// Stops the server and hands back its data dir, to start another server on it.
    pub fn stop_keep_dir(mut self) -> tempfile::TempDir {
        assert!(self.stop().success());
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("flowgate did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl TestServer {
    /// Runs one SQL statement on this server's database (fixtures a test cannot make through
    /// the API, e.g. a password hash imported from Langflow); returns the first column of the
    /// first row, if any.
    pub fn sql(&self, statement: &str) -> String {
        run_sql(self.data_dir(), statement)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The data dir goes with this server (unless `stop_keep_dir` handed it on): so does its
        // PostgreSQL database.
        drop_test_database(self.data_dir());
    }
}

// --- PostgreSQL -----------------------------------------------------------------------------
//
// With FLOWGATE_TEST_DATABASE_URL set (a PostgreSQL URL the tests may create databases with,
// e.g. postgres://postgres@127.0.0.1:5432/postgres), every test data dir gets a fresh database
// `fgt_<unix time>_<random>` on that server: servers and CLI runs on the dir use it through
// FLOWGATE_DATABASE_URL. It is dropped with the server that owns the dir; anything a crashed
// run left behind is dropped by the next run after three hours, and `.ci/run` sweeps them all.

const DATABASE_MARKER: &str = ".test-database-url";

/// The PostgreSQL server the tests use, if any.
pub fn test_database_admin_url() -> Option<String> {
    std::env::var("FLOWGATE_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn psql(url: &str, sql: &str) -> Output {
    let out = Command::new("psql")
        .args(["-v", "ON_ERROR_STOP=1", "-qAt", "--dbname", url, "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The database URL a data dir's servers and CLI runs use: `None` = SQLite in the dir.
pub fn database_url_for(dir: &Path) -> Option<String> {
    let admin = test_database_admin_url()?;
    let marker = dir.join(DATABASE_MARKER);
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| sweep_stale_databases(&admin));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let name = format!("fgt_{now}_{}", uuid::Uuid::new_v4().simple());
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let url = with_database(&admin, &name);
    std::fs::write(&marker, &url).expect("write the database marker");
    Some(url)
}

fn drop_test_database(dir: &Path) {
    let (Some(admin), Ok(url)) = (
        test_database_admin_url(),
        std::fs::read_to_string(dir.join(DATABASE_MARKER)),
    ) else {
        return;
    };
    if let Some(name) = url.rsplit('/').next().and_then(|n| n.split('?').next()) {
        drop_database(&admin, name);
    }
    let _ = std::fs::remove_file(dir.join(DATABASE_MARKER));
}

/// Best effort: a database still in use by a server that did not stop is dropped anyway.
fn drop_database(admin: &str, name: &str) {
    let _ = Command::new("psql")
        .args(["-qAt", "--dbname", admin, "-c"])
        .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .output();
}

fn sweep_stale_databases(admin: &str) {
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3 * 3600;
    let out = psql(
        admin,
        "SELECT datname FROM pg_database WHERE datname LIKE 'fgt\\_%'",
    );
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        let stamp = name.split('_').nth(1).and_then(|t| t.parse::<u64>().ok());
        if stamp.is_some_and(|t| t < cutoff) {
            drop_database(admin, name);
        }
    }
}

/// Runs one SQL statement on a data dir's database (SQLite file or PostgreSQL); returns the
/// first column of the first row ("" when none).
pub fn run_sql(dir: &Path, statement: &str) -> String {
    let out = match database_url_for(dir) {
        Some(url) => psql(&url, statement),
        None => {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nr=c.execute(sys.argv[2]).fetchone()\nc.commit()\nprint('' if r is None else r[0])",
                ])
                .arg(dir.join("flowgate.db"))
                .arg(statement)
                .output()
                .expect("run python3");
            assert!(
                out.status.success(),
                "sqlite {statement}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out
        }
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

pub async fn split(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub fn detail(text: &str) -> Value {
    json!({ "detail": text })
}

/// Runs `flowgate ARGS --data-dir DIR` with a scrubbed environment.
pub fn cli_in(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    scrub(&mut cmd);
    if let Some(url) = database_url_for(dir) {
        cmd.env("FLOWGATE_DATABASE_URL", url);
    }
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null());
    cmd.output().expect("run flowgate")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls until `f` is true or the time is up.
pub async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The status of a request whose body is over a limit. The server answers 413 and closes the
/// connection while the client may still be writing, which the client can report as a broken
/// pipe instead of the response: use a throwaway client (so no shared pooled connection is left
/// dead) and try again until a response is read.
pub async fn oversized_status(
    build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> StatusCode {
    for _ in 0..10 {
        let client = reqwest::Client::new();
        if let Ok(res) = build(&client).send().await {
            return res.status();
        }
    }
    panic!("no response to an oversized request after 10 attempts");
}
