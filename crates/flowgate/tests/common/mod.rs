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

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let res = self
            .client
            .post(self.url("/api/v1/login"))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .unwrap();
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

    /// The database file and its WAL, as raw bytes.
    pub fn database_bytes(&self) -> Vec<u8> {
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

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
