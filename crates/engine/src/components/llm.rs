//! `LanguageModelComponent` and `OpenAIModel`: one OpenAI-compatible chat client
//! (`POST {base}/chat/completions`), non-streaming and SSE streaming.

use super::{ComponentError, NodeEnv, Outcome, Params};
use crate::context::Event;
use crate::registry::Kind;
use crate::value::{Message, Usage, Val};
use serde_json::{Value, json};

pub const DEFAULT_OPENAI_BASE: &str = "https://api.openai.com/v1";

/// `(model name, provider)` from a `model` field: `[{"name","provider"}]`, `{"name"}` or a string.
pub fn model_of(v: Option<&Val>) -> (String, Option<String>) {
    match v {
        Some(Val::Json(Value::String(s))) => (s.trim().to_owned(), None),
        Some(Val::Json(Value::Array(a))) => match a.first() {
            Some(Value::Object(o)) => (
                o.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                o.get("provider").and_then(Value::as_str).map(str::to_owned),
            ),
            Some(Value::String(s)) => (s.clone(), None),
            _ => (String::new(), None),
        },
        Some(Val::Json(Value::Object(o))) => (
            o.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            o.get("provider").and_then(Value::as_str).map(str::to_owned),
        ),
        Some(Val::Message(m)) => (m.text.trim().to_owned(), None),
        _ => (String::new(), None),
    }
}

/// Model name a node will use (also the `source` shown on a downstream ChatOutput).
pub fn model_name(kind: Kind, p: &Params) -> String {
    let override_name = p.text("model_name").unwrap_or_default();
    if !override_name.trim().is_empty() {
        return override_name.trim().to_owned();
    }
    match kind {
        Kind::OpenAIModel => String::new(),
        _ => model_of(p.get("model")).0,
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn image_mime(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    let ext = lower.rsplit('.').next()?;
    Some(match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        _ => return None,
    })
}

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let get = |k: &str| u.get(k).and_then(Value::as_u64);
    let input = get("prompt_tokens").or_else(|| get("input_tokens"));
    let output = get("completion_tokens").or_else(|| get("output_tokens"));
    let total = get("total_tokens").or(match (input, output) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    });
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: total,
    })
}

/// The provider's error message from an error body.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| {
                    e.get("message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .or_else(|| e.as_str().map(str::to_owned))
                })
                .or_else(|| v.get("detail").and_then(Value::as_str).map(str::to_owned))
                .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_owned))
        })
        .unwrap_or_else(|| {
            let t = body.trim();
            if t.len() > 500 {
                format!("{}…", &t[..t.floor_char_boundary(500)])
            } else {
                t.to_owned()
            }
        })
}

fn upstream(status: Option<u16>, message: impl Into<String>) -> ComponentError {
    ComponentError::Upstream {
        status,
        message: message.into(),
    }
}

fn transport_error(e: &reqwest::Error) -> ComponentError {
    if e.is_timeout() {
        upstream(None, "The model provider did not answer in time (timeout)")
    } else if e.is_connect() {
        upstream(
            None,
            format!("Could not connect to the model provider: {e}"),
        )
    } else {
        upstream(None, format!("Model provider request failed: {e}"))
    }
}

/// Resolved call settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSettings {
    pub url: String,
    pub api_key: Option<String>,
    pub body: Value,
    pub model: String,
}

async fn settings(
    env: &NodeEnv<'_>,
    p: &Params,
    stream: bool,
) -> Result<CallSettings, ComponentError> {
    let (_, provider) = model_of(p.get("model"));
    let model = match env.kind {
        Kind::OpenAIModel => {
            let m = p.text("model_name")?;
            if m.trim().is_empty() {
                "gpt-4o-mini".to_owned()
            } else {
                m.trim().to_owned()
            }
        }
        _ => model_name(env.kind, p),
    };
    if model.is_empty() {
        return Err(ComponentError::Failed(format!(
            "No model selected. Set the \"model\" field, e.g. with the tweak {{\"{}\": {{\"model\": \"gpt-4o-mini\"}}}}",
            env.node_id
        )));
    }
    // Base URL: the node's own setting, then OPENAI_BASE_URL, then the server default.
    let mut base = p.text("openai_api_base")?.trim().to_owned();
    if base.is_empty() && provider.as_deref() == Some("Ollama") {
        let o = p
            .text("ollama_base_url")?
            .trim()
            .trim_end_matches('/')
            .to_owned();
        if !o.is_empty() {
            base = if o.ends_with("/v1") {
                o
            } else {
                format!("{o}/v1")
            };
        }
    }
    if base.is_empty() {
        base = match env.ctx.variable("OPENAI_BASE_URL").await {
            Some(b) if !b.trim().is_empty() => b.trim().to_owned(),
            _ => env
                .ctx
                .openai_base_url()
                .unwrap_or_else(|| DEFAULT_OPENAI_BASE.to_owned()),
        };
    }
    let url = format!("{}/chat/completions", base.trim_end_matches('/'));
    // API key: the field (already resolved when load_from_db), else OPENAI_API_KEY.
    let mut api_key = p.text("api_key")?.trim().to_owned();
    if api_key.is_empty() {
        api_key = env.ctx.variable("OPENAI_API_KEY").await.unwrap_or_default();
    }
    let api_key = (!api_key.is_empty()).then_some(api_key);

    let input = p.get("input_value").cloned().unwrap_or(Val::Null);
    let system = p.text("system_message")?;
    if input.is_empty() && system.is_empty() {
        return Err(ComponentError::Failed(
            "The message you want to send to the model is empty.".into(),
        ));
    }
    let mut messages = Vec::new();
    if !system.is_empty() {
        messages.push(json!({"role": "system", "content": system}));
    }
    if !input.is_empty() {
        let msg = input.to_message().map_err(ComponentError::Failed)?;
        let is_user = matches!(msg.sender.as_deref(), None | Some("User"));
        let mut images = Vec::new();
        if is_user {
            for f in msg.files.iter().chain(msg.attachments.iter()) {
                if let Some(mime) = image_mime(f) {
                    let bytes = env.ctx.read_file(f).await.map_err(|e| {
                        ComponentError::BadInput(format!("Could not read file {f}: {e}"))
                    })?;
                    images.push(json!({"type": "image_url", "image_url": {"url": format!("data:{mime};base64,{}", base64(&bytes))}}));
                }
            }
        }
        let role = if is_user { "user" } else { "assistant" };
        if images.is_empty() {
            messages.push(json!({"role": role, "content": msg.text}));
        } else {
            let mut parts = vec![json!({"type": "text", "text": msg.text})];
            parts.extend(images);
            messages.push(json!({"role": role, "content": parts}));
        }
    }
    let mut body = json!({"model": model, "messages": messages});
    let is_reasoning = model.starts_with("o1")
        || model.starts_with("o3")
        || model.starts_with("o4")
        || model.starts_with("gpt-5");
    if !is_reasoning {
        body["temperature"] = json!(p.f64_opt("temperature").unwrap_or(0.1));
    }
    let max_tokens = p.i64_or("max_tokens", 0);
    if max_tokens >= 1 {
        body["max_tokens"] = json!(max_tokens);
    }
    if env.kind == Kind::OpenAIModel
        && !is_reasoning
        && let Some(seed) = p.get("seed").and_then(Val::as_i64)
    {
        body["seed"] = json!(seed);
    }
    if env.kind == Kind::OpenAIModel && p.bool_or("json_mode", false) {
        body["response_format"] = json!({"type": "json_object"});
    }
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    Ok(CallSettings {
        url,
        api_key,
        body,
        model,
    })
}

fn request(env: &NodeEnv<'_>, s: &CallSettings) -> reqwest::RequestBuilder {
    let mut rb = env
        .ctx
        .http_client()
        .post(&s.url)
        .timeout(env.ctx.llm_timeouts().total)
        .json(&s.body);
    if let Some(k) = &s.api_key {
        rb = rb.bearer_auth(k);
    }
    rb
}

async fn send(env: &NodeEnv<'_>, s: &CallSettings) -> Result<reqwest::Response, ComponentError> {
    let resp = tokio::select! {
        r = request(env, s).send() => r.map_err(|e| transport_error(&e))?,
        _ = env.cancel.cancelled() => return Err(ComponentError::Cancelled),
    };
    let status = resp.status();
    if !status.is_success() {
        let body = tokio::select! {
            b = resp.text() => b.unwrap_or_default(),
            _ = env.cancel.cancelled() => return Err(ComponentError::Cancelled),
        };
        return Err(upstream(
            Some(status.as_u16()),
            format!(
                "Model provider returned {}: {}",
                status.as_u16(),
                error_message(&body)
            ),
        ));
    }
    Ok(resp)
}

/// Non-streaming call: `(text, usage)`.
pub async fn complete(
    env: &NodeEnv<'_>,
    s: &CallSettings,
) -> Result<(String, Option<Usage>), ComponentError> {
    let resp = send(env, s).await?;
    let body = tokio::select! {
        b = resp.bytes() => b.map_err(|e| transport_error(&e))?,
        _ = env.cancel.cancelled() => return Err(ComponentError::Cancelled),
    };
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| upstream(None, format!("Model provider sent invalid JSON: {e}")))?;
    let text = v
        .pointer("/choices/0/message/content")
        .map(|c| match c {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            other => other.to_string(),
        })
        .ok_or_else(|| {
            upstream(
                None,
                format!(
                    "Model provider sent no choices: {}",
                    error_message(&String::from_utf8_lossy(&body))
                ),
            )
        })?;
    Ok((text, usage_of(&v)))
}

/// Incremental parser of an SSE body.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Feed bytes; returns the `data:` payloads of complete lines.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(data) = line.strip_prefix("data:") {
                out.push(data.trim_start().to_owned());
            }
        }
        out
    }
}

/// Streaming call: emits `token` events for message `id`; returns `(text, usage)`.
pub async fn stream(
    env: &NodeEnv<'_>,
    s: &CallSettings,
    id: &str,
) -> Result<(String, Option<Usage>), ComponentError> {
    let mut resp = send(env, s).await?;
    let idle = env.ctx.llm_timeouts().idle;
    let mut parser = SseParser::default();
    let mut text = String::new();
    let mut usage = None;
    loop {
        let chunk = tokio::select! {
            c = tokio::time::timeout(idle, resp.chunk()) => match c {
                Err(_) => return Err(upstream(None, "The model provider stopped sending (timeout)")),
                Ok(Err(e)) => return Err(upstream(None, format!("The model provider's stream broke off: {e}"))),
                Ok(Ok(c)) => c,
            },
            _ = env.cancel.cancelled() => return Err(ComponentError::Cancelled),
        };
        let Some(chunk) = chunk else { break };
        for data in parser.feed(&chunk) {
            if data == "[DONE]" {
                return Ok((text, usage));
            }
            let Ok(v) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            if let Some(err) = v.get("error") {
                return Err(upstream(
                    None,
                    format!(
                        "Model provider error: {}",
                        error_message(&json!({"error": err}).to_string())
                    ),
                ));
            }
            if let Some(u) = usage_of(&v) {
                usage = Some(u);
            }
            if let Some(delta) = v
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                && !delta.is_empty()
            {
                text.push_str(delta);
                env.emit(Event::Token {
                    chunk: delta.to_owned(),
                    id: id.to_owned(),
                })
                .await?;
            }
        }
    }
    Ok((text, usage))
}

/// Build the node's outputs: `text_output` (a Message with `properties.usage`) and
/// `model_output` (a handle nothing here consumes).
pub async fn build(
    env: &NodeEnv<'_>,
    p: &Params,
    outputs: &[String],
) -> Result<Outcome, ComponentError> {
    let mut out = Outcome {
        model_name: Some(model_name(env.kind, p)).filter(|m| !m.is_empty()),
        ..Default::default()
    };
    for name in outputs {
        if name == "model_output" {
            out.values
                .push((name.clone(), Val::Opaque("LanguageModel")));
            continue;
        }
        if name != "text_output" {
            continue;
        }
        // Tokens stream only to a ChatOutput directly below, when the caller streams.
        let streaming = p.bool_or("stream", false)
            && env.connected_to_chat_output
            && env.events.is_some()
            && !env.session_id.is_empty();
        let s = settings(env, p, streaming).await?;
        if out.model_name.is_none() {
            out.model_name = Some(s.model.clone());
        }
        let msg = if streaming {
            let mut msg = Message {
                sender: Some("Machine".into()),
                sender_name: Some("AI".into()),
                session_id: env.session_id.to_owned(),
                ..Default::default()
            };
            msg.properties.icon = Some(
                if env.kind == Kind::OpenAIModel {
                    "OpenAI"
                } else {
                    "brain-circuit"
                }
                .into(),
            );
            msg.properties.state = "partial";
            msg.properties.source = crate::value::Source {
                id: Some(env.node_id.to_owned()),
                display_name: Some(env.display_name.to_owned()),
                source: Some(s.model.clone()),
            };
            env.store(&mut msg).await?;
            let id = msg.id.clone().unwrap_or_default();
            let (text, usage) = stream(env, &s, &id).await?;
            msg.text = text;
            msg.properties.state = "complete";
            msg.properties.usage = usage;
            out.token_usage = usage;
            env.store(&mut msg).await?;
            msg
        } else {
            let (text, usage) = complete(env, &s).await?;
            let mut msg = Message::with_text(text);
            msg.properties.usage = usage;
            out.token_usage = usage;
            msg
        };
        out.values.push((name.clone(), Val::Message(msg)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_forms() {
        assert_eq!(model_of(Some(&Val::Json(json!("gpt-4o")))).0, "gpt-4o");
        let (m, p) = model_of(Some(&Val::Json(
            json!([{"name": "llama3", "provider": "Ollama"}]),
        )));
        assert_eq!((m.as_str(), p.as_deref()), ("llama3", Some("Ollama")));
        assert_eq!(model_of(Some(&Val::Json(json!("")))).0, "");
        assert_eq!(model_of(None).0, "");
        let mut params = Params::new();
        params.set("model", Val::Json(json!("a")));
        params.set("model_name", Val::Json(json!("b")));
        assert_eq!(model_name(Kind::LanguageModel, &params), "b");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn sse_lines_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.feed(b"data: {\"a\"").is_empty());
        assert_eq!(
            p.feed(b":1}\r\n\r\ndata: [DONE]\n"),
            vec!["{\"a\":1}", "[DONE]"]
        );
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(r#"{"error": {"message": "bad key"}}"#),
            "bad key"
        );
        assert_eq!(error_message("plain"), "plain");
        let u = usage_of(
            &json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
        )
        .unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.total_tokens),
            (Some(3), Some(4), Some(7))
        );
    }
}
