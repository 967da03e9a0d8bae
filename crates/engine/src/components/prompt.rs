//! `Prompt` / `Prompt Template` (lfx `models_and_agents/prompt.py`).
//!
//! `{var}` variables (f-string mode) or `{{var}}` (mustache mode, `use_double_brackets`)
//! are filled from the node's fields of the same name; `{{`/`}}` are literal braces in
//! f-string mode. Image files of Message variables travel with the prompt.

use super::{ComponentError, Outcome, Params, py_format};
use crate::value::{Message, Val};

/// Variable names of an f-string template, in order of appearance.
pub fn fstring_variables(template: &str) -> Vec<String> {
    let mut vars = Vec::new();
    let b = template.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' if b.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if b.get(i + 1) == Some(&b'}') => i += 2,
            b'{' => {
                if let Some(end) = template[i + 1..].find('}') {
                    let name = template[i + 1..i + 1 + end].trim().to_owned();
                    if !name.is_empty() && !vars.contains(&name) {
                        vars.push(name);
                    }
                    i += end + 2;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    vars
}

fn mustache_render(template: &str, mut lookup: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                out.push_str(&lookup(name));
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_image(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Prompt.prompt: the rendered template as a Message.
pub fn build_prompt(p: &Params) -> Result<Outcome, ComponentError> {
    let template = p.text("template")?;
    let mustache = p.bool_or("use_double_brackets", false);
    let value_of = |name: &str| -> Result<String, ComponentError> {
        match p.get(name) {
            Some(v) => v.to_text().map_err(ComponentError::Failed),
            None => Ok(String::new()),
        }
    };
    let text = if mustache {
        let mut err = None;
        let t = mustache_render(&template, |n| {
            value_of(n).unwrap_or_else(|e| {
                err = Some(e);
                String::new()
            })
        });
        if let Some(e) = err {
            return Err(e);
        }
        t
    } else {
        let mut values = std::collections::HashMap::new();
        for var in fstring_variables(&template) {
            let v = value_of(&var)?;
            values.insert(var, v);
        }
        py_format(&template, |k| {
            Some(values.get(k).cloned().unwrap_or_default())
        })?
    };
    let mut msg = Message::with_text(text);
    // Images attached to Message variables go along with the prompt.
    let vars = if mustache {
        Vec::new()
    } else {
        fstring_variables(&template)
    };
    for var in vars {
        if let Some(Val::Message(m)) = p.get(&var) {
            msg.attachments
                .extend(m.files.iter().filter(|f| is_image(f)).cloned());
            msg.attachments.extend(m.attachments.iter().cloned());
        }
    }
    msg.extra
        .insert("template".into(), serde_json::Value::String(template));
    Ok(Outcome::single("prompt", Val::Message(msg)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(p: &Params) -> Message {
        match build_prompt(p).unwrap().get("prompt").cloned() {
            Some(Val::Message(m)) => m,
            _ => panic!(),
        }
    }

    #[test]
    fn fstring_and_literal_braces() {
        let mut p = Params::new();
        p.set("template", Val::Json(json!("Echo: {text} {{literal}}")));
        p.set("text", Val::Message(Message::with_text("hello")));
        assert_eq!(run(&p).text, "Echo: hello {literal}");
        assert_eq!(fstring_variables("{a} {{b}} {c}{a}"), vec!["a", "c"]);
        // Missing variable field renders empty.
        p.remove("text");
        assert_eq!(run(&p).text, "Echo:  {literal}");
    }

    #[test]
    fn mustache_mode() {
        let mut p = Params::new();
        p.set("template", Val::Json(json!("Hi {{ name }} {x}")));
        p.set("use_double_brackets", Val::Json(json!(true)));
        p.set("name", Val::Json(json!("Bob")));
        assert_eq!(run(&p).text, "Hi Bob {x}");
    }

    #[test]
    fn images_travel_with_prompt() {
        let mut p = Params::new();
        p.set("template", Val::Json(json!("Describe {img}")));
        let mut m = Message::with_text("this");
        m.files = vec!["f/cat.png".into(), "f/notes.txt".into()];
        p.set("img", Val::Message(m));
        let out = run(&p);
        assert_eq!(out.text, "Describe this");
        assert_eq!(out.attachments, vec!["f/cat.png"]);
    }
}
