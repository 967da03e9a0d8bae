//! The `flowgate` command line: keys, users, migrations, help, exit codes, and the server's
//! start-up rules. CLI changes reach a running server on its next request.

mod common;

use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn a_cli_key_is_accepted_by_a_running_server_and_a_cli_revoke_stops_it() {
    let s = TestServer::start().await;
    let out = s.cli(&["api-key", "--quiet", "--name", "from-cli"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    assert_eq!(key.len(), 53);
    let (status, me) = s.get_with_key("/api/v1/users/whoami", &key).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], ADMIN);

    let list = s.cli(&["api-key", "list"]);
    assert!(list.status.success());
    let table = stdout(&list);
    assert!(table.starts_with("ID"), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains("from-cli"))
        .expect(&table);
    assert!(row.contains(&format!("{}{}", &key[..8], "*".repeat(45))));
    assert!(!table.contains(&key));
    let id = row.split_whitespace().next().unwrap();

    // Revoked by another process while the server holds the key in its cache.
    let out = s.cli(&["api-key", "revoke", id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.get_with_key("/api/v1/users/whoami", &key).await,
        (StatusCode::FORBIDDEN, detail("Invalid API key"))
    );

    let again = s.cli(&["api-key", "revoke", id]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        stderr(&again).trim(),
        format!("error: no API key with id {id}")
    );
}

#[tokio::test]
async fn cli_deactivation_reaches_a_running_server_on_the_next_request() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    s.user(&admin, "dave").await;
    let out = s.cli(&["api-key", "--quiet", "--user", "dave"]);
    let key = stdout(&out).trim().to_string();
    assert_eq!(s.get_with_key("/api/v1/users/whoami", &key).await.0, 200);
    let out = s.cli(&["users", "deactivate", "dave"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.get_with_key("/api/v1/users/whoami", &key).await.0, 403);
    let out = s.cli(&["users", "activate", "dave"]);
    assert!(out.status.success());
    assert_eq!(s.get_with_key("/api/v1/users/whoami", &key).await.0, 200);
}

#[test]
fn api_key_box_options_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    // Works with no server and an empty data dir: the database and superuser are created.
    let out = cli_in(dir.path(), &["api-key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("╭{}╮", "─".repeat(69)));
    assert_eq!(
        lines[1],
        "│ API Key Created Successfully:                                       │"
    );
    assert!(lines[3].starts_with("│ fgk_"));
    assert!(text.contains("This is the only time the API key will be displayed."));
    assert!(
        !text.contains("clipboard"),
        "no clipboard on a headless machine: say nothing"
    );
    assert!(lines.iter().all(|l| l.chars().count() == 71));

    let out = cli_in(
        dir.path(),
        &[
            "api-key",
            "--quiet",
            "--name",
            "short-lived",
            "--expires-in",
            "30d",
            "--scope",
            "run",
        ],
    );
    assert!(out.status.success());
    let list = stdout(&cli_in(dir.path(), &["api-key", "list"]));
    let row = list.lines().find(|l| l.contains("short-lived")).unwrap();
    let expected = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    assert!(row.contains(&expected), "{row}");
    assert!(row.trim_end().ends_with("run"));
    // Creating a key never deletes another one (Langflow's CLI does).
    assert_eq!(list.lines().count(), 3, "{list}");

    let bad = cli_in(dir.path(), &["api-key", "--expires-in", "soon"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).starts_with("error: "), "{}", stderr(&bad));
    let bad = cli_in(dir.path(), &["api-key", "--user", "nobody"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(stderr(&bad).trim(), "error: no user named \"nobody\"");
    let usage = cli_in(dir.path(), &["api-key", "--scope", "admin"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn users_and_superuser_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli_in(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("up to date"));

    let out = cli_in(
        dir.path(),
        &[
            "superuser",
            "--username",
            "root2",
            "--password",
            "root2-Passw0rd",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_in(
        dir.path(),
        &[
            "users",
            "create",
            "--username",
            "erin",
            "--password",
            "erin-Passw0rd",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_in(
        dir.path(),
        &[
            "users",
            "create",
            "--username",
            "ERIN",
            "--password",
            "erin-Passw0rd",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let out = cli_in(
        dir.path(),
        &[
            "users",
            "create",
            "--username",
            "weak",
            "--password",
            "short",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at least 8 characters"));
    // No terminal to prompt on: a clear error, not a hang.
    let out = cli_in(dir.path(), &["users", "create", "--username", "nopw"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: "));

    let list = stdout(&cli_in(dir.path(), &["users", "list"]));
    let erin = list.lines().find(|l| l.contains("erin")).unwrap();
    assert!(erin.contains("active") && erin.contains(" no "), "{erin}");
    let root2 = list.lines().find(|l| l.contains("root2")).unwrap();
    assert!(root2.contains(" yes "), "{root2}");

    assert!(
        cli_in(dir.path(), &["users", "deactivate", "erin"])
            .status
            .success()
    );
    let list = stdout(&cli_in(dir.path(), &["users", "list"]));
    assert!(
        list.lines()
            .find(|l| l.contains("erin"))
            .unwrap()
            .contains("inactive")
    );
    let out = cli_in(dir.path(), &["api-key", "--user", "erin"]);
    assert_eq!(out.status.code(), Some(1), "no keys for a deactivated user");
    assert!(
        cli_in(
            dir.path(),
            &[
                "users",
                "set-password",
                "erin",
                "--password",
                "erin-New-Pw-1"
            ]
        )
        .status
        .success()
    );
    assert!(
        cli_in(dir.path(), &["users", "delete", "erin"])
            .status
            .success()
    );
    let out = cli_in(dir.path(), &["users", "delete", "erin"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "error: no user named \"erin\"");
}

#[tokio::test]
async fn cli_set_password_works_against_a_running_server() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    s.user(&admin, "frank").await;
    assert!(
        s.cli(&[
            "users",
            "set-password",
            "frank",
            "--password",
            "frank-New-Pw-1"
        ])
        .status
        .success()
    );
    s.login("frank", "frank-New-Pw-1").await;
    let res = s.login_response("frank", "frank-Passw0rd!").await;
    assert_eq!(res.status(), 401);
}

#[test]
fn help_lists_every_option_with_its_variable_and_default() {
    let out = std::process::Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needle in [
        "FLOWGATE_HOST",
        "LANGFLOW_HOST",
        "FLOWGATE_PORT",
        "[default: 7860]",
        "FLOWGATE_DATABASE_URL",
        "LANGFLOW_DATABASE_URL",
        "FLOWGATE_DATA_DIR",
        "FLOWGATE_SECRET_KEY",
        "FLOWGATE_SUPERUSER",
        "FLOWGATE_ALLOW_DEFAULT_PASSWORD",
        "FLOWGATE_ALLOW_QUERY_API_KEY",
        "FLOWGATE_MAX_BODY_BYTES",
        "FLOWGATE_LOGIN_FAILURES_PER_MINUTE",
        "[default: 127.0.0.1]",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    let help = stdout(&out);
    for cmd in ["serve", "api-key", "superuser", "users", "migrate"] {
        assert!(help.contains(cmd), "{help}");
    }
    let out = std::process::Command::new(BIN)
        .arg("no-such-command")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn default_password_warns_and_refuses_a_public_bind() {
    let s = TestServer::start().await;
    eventually("the default password warning", async || {
        stdout_contains_warning(&s)
    })
    .await;
    drop(s);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env_remove("FLOWGATE_ALLOW_DEFAULT_PASSWORD")
        .env_remove("LANGFLOW_SUPERUSER_PASSWORD")
        .env_remove("FLOWGATE_SUPERUSER_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("refusing to listen on 0.0.0.0"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}

#[tokio::test]
async fn a_configured_superuser_password_is_used_and_never_overwritten() {
    let s = TestServer::start_with(&[
        ("LANGFLOW_SUPERUSER", "boss"),
        ("LANGFLOW_SUPERUSER_PASSWORD", "Boss-Passw0rd-1"),
    ])
    .await;
    let token = s.login("boss", "Boss-Passw0rd-1").await;
    let (_, me) = s.get_with_token("/api/v1/users/whoami", &token).await;
    assert_eq!(me["is_superuser"], true);
    let res = s.login_response("langflow", "langflow").await;
    assert_eq!(
        res.status(),
        401,
        "no default superuser when another is configured"
    );
    assert!(!stdout_contains_warning(&s));
    let dir = s.stop_keep_dir();
    // Restart with another configured password: the stored one stays.
    let s = TestServer::start_in(
        dir,
        &[
            ("LANGFLOW_SUPERUSER", "boss"),
            ("LANGFLOW_SUPERUSER_PASSWORD", "Other-Passw0rd-2"),
        ],
    )
    .await;
    s.login("boss", "Boss-Passw0rd-1").await;
    let res = s.login_response("boss", "Other-Passw0rd-2").await;
    assert_eq!(res.status(), 401);
}

fn stdout_contains_warning(s: &TestServer) -> bool {
    s.logs().contains("default password")
}
