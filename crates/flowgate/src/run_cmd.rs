//! `flowgate run FLOW.json --input TEXT`: runs a flow file in this process, with no server and
//! no database (like `lfx run`). Chat history lives in memory for the run, variables come from
//! the environment, file fields read local paths.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use flowgate_engine::{
    BoxFuture, Event, HistoryQuery, InputType, Message, OutputType, RunContext, RunRequest,
};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// Largest flow file read.
const MAX_FLOW_BYTES: usize = 64 * 1024 * 1024;

#[derive(Args)]
pub struct RunArgs {
    /// A Langflow flow JSON file (as exported by Langflow)
    pub file: PathBuf,
    /// The input text, given to the flow's input nodes (those matching --input-type)
    #[arg(long)]
    pub input: Option<String>,
    /// Tweaks as a JSON object: {"NODE_ID_OR_NAME": {"field": value}, "field": value}
    #[arg(long, value_name = "JSON", value_parser = parse_tweaks)]
    pub tweaks: Option<Map<String, Value>>,
    /// Which input nodes receive --input
    #[arg(long, default_value = "chat", value_parser = ["chat", "text", "any"])]
    pub input_type: String,
    /// Which output nodes make the answer
    #[arg(long, default_value = "chat", value_parser = ["chat", "text", "any", "debug"])]
    pub output_type: String,
    /// Session id for chat history (kept in memory for this run only)
    #[arg(long)]
    pub session_id: Option<String>,
    /// Print tokens as they arrive
    #[arg(long)]
    pub stream: bool,
    /// Print the full run response (Langflow's /run shape); with --stream, one event per line
    #[arg(long)]
    pub json: bool,
}

/// `--tweaks` must be a JSON object (a usage error otherwise: exit 2).
fn parse_tweaks(raw: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("tweaks must be a JSON object".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// The in-process side of a run.
struct LocalContext {
    history: Mutex<Vec<Message>>,
    client: reqwest::Client,
}

impl RunContext for LocalContext {
    fn history<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<Message>, String>> {
        Box::pin(async move {
            let all = self.history.lock().map_err(|_| "history lock poisoned")?;
            Ok(all
                .iter()
                .rev()
                .filter(|m| {
                    m.session_id == query.session_id
                        && m.context_id == query.context_id
                        && m.flow_id.as_deref().is_none_or(|f| f == query.flow_id)
                        && query
                            .sender
                            .as_ref()
                            .is_none_or(|s| m.sender.as_ref() == Some(s))
                        && query
                            .sender_name
                            .as_ref()
                            .is_none_or(|s| m.sender_name.as_ref() == Some(s))
                })
                .take(query.limit)
                .cloned()
                .collect())
        })
    }

    fn store_message(&self, msg: &Message) {
        if let Ok(mut all) = self.history.lock() {
            match all.iter_mut().find(|m| m.id.is_some() && m.id == msg.id) {
                Some(old) => *old = msg.clone(),
                None => all.push(msg.clone()),
            }
        }
    }

    fn variable<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { std::env::var(name).ok() })
    }

    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {path}: {e}"))
        })
    }

    fn http_client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// The flow document in a file: a Langflow export (`{"name", "data": {...}}`), a
/// `{"flows": [one]}` file, or bare `{"nodes", "edges"}`.
fn load_flow(file: &std::path::Path) -> anyhow::Result<(String, Value)> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.len() as usize > MAX_FLOW_BYTES {
        bail!("{} is larger than {MAX_FLOW_BYTES} bytes", file.display());
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let doc: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", file.display()))?;
    let doc = match doc.get("flows").and_then(Value::as_array) {
        Some(flows) if flows.len() == 1 => flows[0].clone(),
        Some(flows) => bail!(
            "{} holds {} flows; run takes one",
            file.display(),
            flows.len()
        ),
        None => doc,
    };
    let id = doc
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let data = if doc.get("nodes").is_some() {
        doc
    } else {
        doc.get("data")
            .cloned()
            .with_context(|| format!("{} has no flow data (nodes and edges)", file.display()))?
    };
    Ok((id, data))
}

/// The answer text of a run response: the first output's message (ChatOutput) or text
/// (TextOutput), else any text the first result carries.
fn answer_text(response: &Value) -> Option<String> {
    let results = response.pointer("/outputs/0/outputs/0/results")?;
    for key in ["message", "text"] {
        if let Some(t) = results
            .pointer(&format!("/{key}/text"))
            .and_then(Value::as_str)
        {
            return Some(t.to_string());
        }
    }
    results
        .as_object()?
        .values()
        .find_map(|v| v.get("text").and_then(Value::as_str).map(str::to_string))
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (flow_id, data) = load_flow(&args.file)?;
    let flow = flowgate_engine::parse_flow(&data)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let problems = flowgate_engine::check_flow(&flow);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!(
                "{}: {} ({}): {}",
                args.file.display(),
                p.node_id,
                p.component_type,
                p.message
            );
        }
        bail!(
            "the flow cannot run: {} problem{} (above)",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    let compiled = flowgate_engine::compile(&flow_id, &flow)?;
    let request = RunRequest {
        input_value: args.input.clone(),
        input_type: args.input_type.parse::<InputType>()?,
        output_type: args.output_type.parse::<OutputType>()?,
        output_component: None,
        tweaks: args.tweaks.clone().unwrap_or_default(),
        session_id: args.session_id.clone(),
        stream: args.stream,
        webhook_payload: None,
    };
    let ctx = LocalContext {
        history: Mutex::new(Vec::new()),
        client: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?,
    };
    let cancel = CancellationToken::new();
    let interrupt = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let result = if args.stream {
        run_streaming(&compiled, request, &ctx, cancel, args.json).await
    } else {
        let response = flowgate_engine::execute(&compiled, request, &ctx, None, cancel)
            .await
            .map_err(run_error)?;
        print_response(&response.to_value(), args.json)
    };
    interrupt.abort();
    result
}

fn run_error(e: flowgate_engine::RunError) -> anyhow::Error {
    match e {
        flowgate_engine::RunError::Cancelled => anyhow::anyhow!("interrupted"),
        other => anyhow::anyhow!("{other}"),
    }
}

fn print_response(response: &Value, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(response)?)?;
    } else {
        writeln!(out, "{}", answer_text(response).unwrap_or_default())?;
    }
    Ok(())
}

/// Prints tokens as they arrive; when the flow produced none (no streaming model), the answer
/// at the end. With `--json`, every event as one JSON line instead.
async fn run_streaming(
    compiled: &flowgate_engine::CompiledFlow,
    request: RunRequest,
    ctx: &LocalContext,
    cancel: CancellationToken,
    json: bool,
) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(64);
    let printer = async move {
        let mut printed_tokens = false;
        while let Some(event) = rx.recv().await {
            let mut out = std::io::stdout().lock();
            if json {
                let _ = writeln!(out, "{}", event.to_json());
            } else {
                match &event {
                    Event::Token { chunk, .. } => {
                        printed_tokens = true;
                        let _ = write!(out, "{chunk}");
                    }
                    Event::End(response) => {
                        if printed_tokens {
                            let _ = writeln!(out);
                        } else {
                            let _ = writeln!(out, "{}", answer_text(response).unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
            let _ = out.flush();
        }
    };
    let run = flowgate_engine::execute(compiled, request, ctx, Some(tx), cancel);
    let (result, ()) = tokio::join!(run, printer);
    result.map(|_| ()).map_err(run_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tweaks_must_be_an_object() {
        assert!(parse_tweaks(r#"{"a": {"b": 1}}"#).is_ok());
        assert!(parse_tweaks("[1]").unwrap_err().contains("object"));
        assert!(parse_tweaks("{bad").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn answer_from_message_or_text() {
        let chat = json!({"outputs": [{"outputs": [{"results": {"message": {"text": "hi"}}}]}]});
        assert_eq!(answer_text(&chat).as_deref(), Some("hi"));
        let text = json!({"outputs": [{"outputs": [{"results": {"text": {"text": "yo"}}}]}]});
        assert_eq!(answer_text(&text).as_deref(), Some("yo"));
        assert_eq!(answer_text(&json!({"outputs": []})), None);
    }
}
