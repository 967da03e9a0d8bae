//! `TextInput`, `TextOutput` (lfx `input_output/text*.py`) and `Webhook`.

use super::{ComponentError, Outcome, Params};
use crate::value::{Data, Message, Val};
use serde_json::{Map, Value};

/// TextInput.text: `Message(text=input_value)`.
pub fn text_input(p: &Params) -> Result<Outcome, ComponentError> {
    Ok(Outcome::single(
        "text",
        Val::Message(Message::with_text(p.text("input_value")?)),
    ))
}

/// TextOutput.text: `Message(text=input_value)`.
pub fn text_output(p: &Params) -> Result<Outcome, ComponentError> {
    Ok(Outcome::single(
        "text",
        Val::Message(Message::with_text(p.text("input_value")?)),
    ))
}

/// Webhook.output_data: the JSON payload as Data (`{"payload": raw}` when it is not JSON).
pub fn webhook(p: &Params) -> Result<Outcome, ComponentError> {
    let raw = p.text("data")?;
    let data = if raw.is_empty() {
        Data::new(Map::new())
    } else {
        let fixed = raw.replace("\"\n\"", "\"\\n\"");
        match serde_json::from_str::<Value>(&fixed) {
            Ok(Value::Object(m)) => Data::new(m),
            Ok(other) => {
                let mut m = Map::new();
                m.insert("payload".into(), other);
                Data::new(m)
            }
            Err(_) => {
                let mut m = Map::new();
                m.insert("payload".into(), Value::String(raw));
                Data::new(m)
            }
        }
    };
    Ok(Outcome::single("output_data", Val::Data(data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_nodes_echo() {
        let mut p = Params::new();
        p.set("input_value", Val::Message(Message::with_text("x")));
        assert_eq!(
            text_input(&p)
                .unwrap()
                .get("text")
                .unwrap()
                .to_text()
                .unwrap(),
            "x"
        );
        assert_eq!(
            text_output(&p)
                .unwrap()
                .get("text")
                .unwrap()
                .to_text()
                .unwrap(),
            "x"
        );
        assert_eq!(
            text_output(&Params::new())
                .unwrap()
                .get("text")
                .unwrap()
                .to_text()
                .unwrap(),
            ""
        );
    }

    #[test]
    fn webhook_payloads() {
        let mut p = Params::new();
        p.set("data", Val::Json(json!("{\"a\": 1}")));
        let Some(Val::Data(d)) = webhook(&p).unwrap().get("output_data").cloned() else {
            panic!()
        };
        assert_eq!(d.data["a"], 1);
        p.set("data", Val::Json(json!("not json")));
        let Some(Val::Data(d)) = webhook(&p).unwrap().get("output_data").cloned() else {
            panic!()
        };
        assert_eq!(d.data["payload"], "not json");
        let Some(Val::Data(d)) = webhook(&Params::new()).unwrap().get("output_data").cloned()
        else {
            panic!()
        };
        assert!(d.data.is_empty());
    }
}
