//! `flowgate run FLOW.json`: a flow file run in-process, no server and no database.

mod common;

use std::process::{Command, Output, Stdio};

use common::{BIN, stderr, stdout};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

fn chat_echo() -> String {
    format!("{FIXTURES}/chat-echo.json")
}

/// Runs `flowgate run ARGS` in an empty folder with a scrubbed environment.
fn run(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("FLOWGATE_") || name.starts_with("LANGFLOW_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .arg("run")
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run flowgate");
    // No database, no data dir: nothing was written.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    out
}

#[test]
fn prints_the_answer_text() {
    let out = run(&[&chat_echo(), "--input", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
}

#[test]
fn json_prints_langflows_run_response() {
    let out = run(&[
        &chat_echo(),
        "--input",
        "hello",
        "--json",
        "--session-id",
        "s-1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        body["outputs"][0]["outputs"][0]["results"]["message"]["text"],
        "hello"
    );
    assert_eq!(body["session_id"], "s-1");
    assert_eq!(body["outputs"][0]["inputs"]["input_value"], "hello");
}

#[test]
fn tweaks_reach_the_nodes() {
    let out = run(&[
        &chat_echo(),
        "--input",
        "hi",
        "--json",
        "--tweaks",
        r#"{"ChatOutput-bbbb2": {"sender_name": "Echo Bot"}}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let message = &body["outputs"][0]["outputs"][0]["results"]["message"];
    assert_eq!(message["sender_name"], "Echo Bot", "{message}");
    assert_eq!(message["text"], "hi");
}

#[test]
fn streaming_prints_the_answer() {
    let out = run(&[&chat_echo(), "--input", "streamed", "--stream"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "streamed\n");
    let out = run(&[&chat_echo(), "--input", "streamed", "--stream", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["event"], "end");
    assert_eq!(
        last["data"]["result"]["outputs"][0]["outputs"][0]["results"]["message"]["text"],
        "streamed"
    );
}

#[test]
fn a_flow_with_problems_exits_1_naming_the_node() {
    let path = format!("{FIXTURES}/langflow-starters/Simple Agent.json");
    let out = run(&[&path, "--input", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Agent-"), "{err}");
    assert!(err.contains("is not supported by this server"), "{err}");
    assert!(err.lines().last().unwrap().starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"));
    assert!(stdout(&out).is_empty());
}

#[test]
fn bad_tweaks_and_bad_files_are_clear_errors() {
    let out = run(&[&chat_echo(), "--input", "x", "--tweaks", "{not json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.contains("--tweaks") && err.contains("not valid JSON"),
        "{err}"
    );

    let out = run(&[&chat_echo(), "--input", "x", "--tweaks", "[1, 2]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("tweaks must be a JSON object"));

    // A tweak naming an unknown node is refused (flowgate's deliberate difference).
    let out = run(&[
        &chat_echo(),
        "--input",
        "x",
        "--tweaks",
        r#"{"Nope-1": {"a": 1}}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("Nope-1"),
        "{err}"
    );

    let out = run(&["/nonexistent/flow.json", "--input", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot read /nonexistent/flow.json"),
        "{err}"
    );

    let out = run(&[&chat_echo(), "--input-type", "voice"]);
    assert_eq!(out.status.code(), Some(2));
}
