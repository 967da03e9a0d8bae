//! `Memory` (Message History, lfx `models_and_agents/memory.py`): retrieve or store chat messages.

use super::{ComponentError, NodeEnv, Outcome, Params, py_format, py_str};
use crate::context::HistoryQuery;
use crate::value::{Data, Message, Val};

pub async fn build(
    env: &NodeEnv<'_>,
    p: &Params,
    outputs: &[String],
) -> Result<Outcome, ComponentError> {
    if p.text_or("mode", "Retrieve")? == "Store" {
        return store(env, p).await;
    }
    let n = p.i64_or("n_messages", 100).max(0) as usize;
    let descending = p.text_or("order", "Ascending")? == "Descending";
    let sender = match p.text_or("sender_type", "Machine and User")?.as_str() {
        "Machine and User" | "" => None,
        s => Some(s.to_owned()),
    };
    let sender_name = Some(p.text("sender_name")?).filter(|s| !s.is_empty());
    let session = Some(p.text("session_id")?)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| env.session_id.to_owned());
    let mut messages = if n == 0 {
        Vec::new()
    } else {
        let q = HistoryQuery {
            flow_id: env.flow_id.to_owned(),
            session_id: session,
            context_id: p.text("context_id")?,
            sender,
            sender_name,
            limit: n,
        };
        env.ctx.history(&q).await.map_err(ComponentError::Failed)?
    };
    // History comes newest first.
    messages.truncate(n);
    if !descending {
        messages.reverse();
    }
    let template = p.text_or("template", "{sender_name}: {text}")?;
    let mut out = Outcome::default();
    for name in outputs {
        match name.as_str() {
            "messages_text" => {
                let lines = messages
                    .iter()
                    .map(|m| {
                        let d = m.to_data();
                        py_format(&template, |k| {
                            Some(d.data.get(k).map(py_str).unwrap_or_default())
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.values.push((
                    name.clone(),
                    Val::Message(Message::with_text(lines.join("\n"))),
                ));
            }
            "dataframe" => {
                let rows: Vec<Data> = messages.iter().map(Message::to_data).collect();
                out.values.push((name.clone(), Val::DataFrame(rows)));
            }
            _ => {}
        }
    }
    Ok(out)
}

async fn store(env: &NodeEnv<'_>, p: &Params) -> Result<Outcome, ComponentError> {
    let mut msg = match p.get("message") {
        Some(Val::Message(m)) => {
            let mut m = m.clone();
            m.id = None;
            m
        }
        Some(v) => Message::with_text(v.to_text()?),
        None => Message::default(),
    };
    let ctx_id = p.text("context_id")?;
    if !ctx_id.is_empty() {
        msg.context_id = ctx_id;
    }
    let session = p.text("session_id")?;
    if !session.is_empty() {
        msg.session_id = session;
    }
    if msg.session_id.is_empty() {
        msg.session_id = env.session_id.to_owned();
    }
    let sender = p.text("sender")?;
    msg.sender = Some(if !sender.is_empty() {
        sender
    } else {
        msg.sender.clone().unwrap_or_else(|| "Machine".into())
    });
    let sender_name = p.text("sender_name")?;
    msg.sender_name = Some(if !sender_name.is_empty() {
        sender_name
    } else {
        msg.sender_name.clone().unwrap_or_else(|| "AI".into())
    });
    if msg.session_id.is_empty() {
        return Err(ComponentError::Failed(
            "No messages were stored. Please ensure that the session ID and sender are properly set.".into(),
        ));
    }
    msg.id = Some(crate::value::new_id());
    msg.flow_id = Some(env.flow_id.to_owned());
    env.ctx.store_message(&msg);
    Ok(Outcome::single("stored_messages", Val::Message(msg)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Kind;
    use crate::testutil::TestCtx;
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    fn msg(sender: &str, text: &str) -> Message {
        Message {
            text: text.into(),
            sender: Some(sender.into()),
            sender_name: Some(if sender == "User" { "User" } else { "AI" }.into()),
            session_id: "s".into(),
            id: Some(crate::value::new_id()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn retrieve_and_store() {
        let ctx = TestCtx::default();
        // newest first
        ctx.history
            .lock()
            .unwrap()
            .extend([msg("Machine", "hello!"), msg("User", "hi")]);
        let cancel = CancellationToken::new();
        let env = NodeEnv {
            node_id: "Memory-1",
            display_name: "Message History",
            kind: Kind::Memory,
            flow_id: "f",
            session_id: "s",
            run_id: "r",
            ctx: &ctx,
            events: None,
            cancel: &cancel,
            connected_to_chat_input: false,
            connected_to_chat_output: false,
            upstream: None,
            upstream_usage: None,
        };
        let outs = vec!["messages_text".to_string(), "dataframe".to_string()];
        let o = build(&env, &Params::new(), &outs).await.unwrap();
        assert_eq!(
            o.get("messages_text").unwrap().to_text().unwrap(),
            "User: hi\nAI: hello!"
        );
        let Some(Val::DataFrame(rows)) = o.get("dataframe") else {
            panic!()
        };
        assert_eq!(rows.len(), 2);
        let q = ctx.queries.lock().unwrap()[0].clone();
        assert_eq!(q.session_id, "s");
        assert_eq!(q.limit, 100);
        // Descending, limited.
        let mut p = Params::new();
        p.set("order", Val::Json(json!("Descending")));
        p.set("n_messages", Val::Json(json!(1)));
        let o = build(&env, &p, &outs).await.unwrap();
        assert_eq!(
            o.get("messages_text").unwrap().to_text().unwrap(),
            "AI: hello!"
        );
        // Store mode.
        let mut p = Params::new();
        p.set("mode", Val::Json(json!("Store")));
        p.set("message", Val::Json(json!("remember")));
        let o = build(&env, &p, &[]).await.unwrap();
        assert_eq!(
            o.get("stored_messages").unwrap().to_text().unwrap(),
            "remember"
        );
        assert_eq!(ctx.stored.lock().unwrap().last().unwrap().text, "remember");
    }
}
