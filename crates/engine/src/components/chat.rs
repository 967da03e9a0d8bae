//! `ChatInput` and `ChatOutput` (lfx `input_output/chat.py`, `chat_output.py`).

use super::{ComponentError, NodeEnv, Outcome, Params, safe_convert};
use crate::value::{Message, Source, Val};

/// ChatInput.message: a user message, stored when a session id is set.
pub async fn chat_input(env: &NodeEnv<'_>, p: &Params) -> Result<Outcome, ComponentError> {
    let session = non_empty(p.text("session_id")?).unwrap_or_else(|| env.session_id.to_owned());
    let mut msg = Message {
        text: p.text("input_value")?,
        sender: Some(p.text_or("sender", "User")?),
        sender_name: Some(p.text_or("sender_name", "User")?),
        session_id: session.clone(),
        context_id: p.text("context_id")?,
        files: p.strings("files"),
        ..Default::default()
    };
    if !session.is_empty() && p.bool_or("should_store_message", true) {
        env.store(&mut msg).await?;
    }
    Ok(Outcome::single("message", Val::Message(msg)))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// ChatOutput.message: the incoming value as a Machine message, stored when a session id is set.
pub async fn chat_output(env: &NodeEnv<'_>, p: &Params) -> Result<Outcome, ComponentError> {
    let input = p.get("input_value").cloned().unwrap_or(Val::Null);
    if matches!(input, Val::Null) {
        return Err(ComponentError::Failed("Input data cannot be None".into()));
    }
    let text = safe_convert(&input)?;
    let (mut msg, existing_session) = match input {
        Val::Message(m) if !env.connected_to_chat_input => {
            let mut m = m;
            m.set_text(text);
            let s = non_empty(m.session_id.clone());
            (m, s)
        }
        _ => (Message::with_text(text), None),
    };
    msg.sender = Some(p.text_or("sender", "Machine")?);
    msg.sender_name = Some(p.text_or("sender_name", "AI")?);
    msg.session_id = non_empty(p.text("session_id")?)
        .or(existing_session)
        .unwrap_or_else(|| env.session_id.to_owned());
    msg.context_id = p.text("context_id")?;
    msg.flow_id = Some(env.flow_id.to_owned());
    msg.properties.source = match &env.upstream {
        Some(u) => Source {
            id: Some(u.id.clone()),
            display_name: Some(u.display_name.clone()),
            source: Some(u.source.clone()),
        },
        None => Source::default(),
    };
    if let Some(u) = env.upstream_usage {
        msg.properties.usage = Some(u);
    }
    if !msg.session_id.is_empty() && p.bool_or("should_store_message", true) {
        env.store(&mut msg).await?;
    }
    Ok(Outcome::single("message", Val::Message(msg)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::Upstream;
    use crate::registry::Kind;
    use crate::testutil::TestCtx;
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    fn env<'a>(ctx: &'a TestCtx, cancel: &'a CancellationToken, kind: Kind) -> NodeEnv<'a> {
        NodeEnv {
            node_id: "N-1",
            display_name: "Node",
            kind,
            flow_id: "flow",
            session_id: "sess",
            run_id: "run",
            ctx,
            events: None,
            cancel,
            connected_to_chat_input: false,
            connected_to_chat_output: false,
            upstream: None,
            upstream_usage: None,
        }
    }

    #[tokio::test]
    async fn chat_input_stores_user_message() {
        let ctx = TestCtx::default();
        let cancel = CancellationToken::new();
        let mut p = Params::new();
        p.set("input_value", Val::Json(json!("hi")));
        p.set("files", Val::Json(json!(["f/a.png"])));
        let out = chat_input(&env(&ctx, &cancel, Kind::ChatInput), &p)
            .await
            .unwrap();
        let Some(Val::Message(m)) = out.get("message") else {
            panic!()
        };
        assert_eq!(m.text, "hi");
        assert_eq!(m.sender.as_deref(), Some("User"));
        assert_eq!(m.session_id, "sess");
        assert_eq!(m.files, vec!["f/a.png"]);
        assert!(m.id.is_some());
        assert_eq!(ctx.stored.lock().unwrap().len(), 1);
        // Not stored without a session or when disabled.
        p.set("should_store_message", Val::Json(json!(false)));
        let out = chat_input(&env(&ctx, &cancel, Kind::ChatInput), &p)
            .await
            .unwrap();
        let Some(Val::Message(m)) = out.get("message") else {
            panic!()
        };
        assert!(m.id.is_none());
    }

    #[tokio::test]
    async fn chat_output_converts_and_sources() {
        let ctx = TestCtx::default();
        let cancel = CancellationToken::new();
        let mut e = env(&ctx, &cancel, Kind::ChatOutput);
        e.upstream = Some(Upstream {
            id: "LLM-1".into(),
            display_name: "Language Model".into(),
            source: "gpt-4o-mini".into(),
        });
        let mut p = Params::new();
        p.set("input_value", Val::Message(Message::with_text("answer")));
        p.set("sender_name", Val::Json(json!("Bot")));
        let out = chat_output(&e, &p).await.unwrap();
        let Some(Val::Message(m)) = out.get("message") else {
            panic!()
        };
        assert_eq!(m.text, "answer");
        assert_eq!(m.sender.as_deref(), Some("Machine"));
        assert_eq!(m.sender_name.as_deref(), Some("Bot"));
        assert_eq!(m.properties.source.source.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(m.content_blocks.len(), 1);
        // Data becomes a JSON code block.
        let mut p = Params::new();
        p.set(
            "input_value",
            Val::Data(crate::value::Data::new(
                serde_json::from_value(json!({"k": "v"})).unwrap(),
            )),
        );
        let out = chat_output(&e, &p).await.unwrap();
        assert_eq!(
            out.get("message").unwrap().to_text().unwrap(),
            "```json\n{\n  \"k\": \"v\"\n}\n```"
        );
        // Nothing connected.
        assert!(chat_output(&e, &Params::new()).await.is_err());
    }
}
