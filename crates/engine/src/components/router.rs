//! `ConditionalRouter` (If-Else, lfx `flow_controls/conditional_router.py`).

use super::{ComponentError, Outcome, Params};
use crate::value::{Message, Val};

pub fn evaluate(input: &str, match_text: &str, operator: &str, case_sensitive: bool) -> bool {
    let (input, match_text) = if !case_sensitive && operator != "regex" {
        (input.to_lowercase(), match_text.to_lowercase())
    } else {
        (input.to_owned(), match_text.to_owned())
    };
    match operator {
        "equals" => input == match_text,
        "not equals" => input != match_text,
        "contains" => input.contains(&match_text),
        "starts with" => input.starts_with(&match_text),
        "ends with" => input.ends_with(&match_text),
        // Python `re.match`: anchored at the start only. An invalid pattern is False.
        "regex" => regex::Regex::new(&format!("^(?:{match_text})"))
            .map(|r| r.is_match(&input))
            .unwrap_or(false),
        "less than" | "less than or equal" | "greater than" | "greater than or equal" => {
            match (
                input.trim().parse::<f64>(),
                match_text.trim().parse::<f64>(),
            ) {
                (Ok(a), Ok(b)) => match operator {
                    "less than" => a < b,
                    "less than or equal" => a <= b,
                    "greater than" => a > b,
                    _ => a >= b,
                },
                _ => false,
            }
        }
        _ => false,
    }
}

/// The override case message, or the input text when the override is blank.
fn case_message(p: &Params, field: &str, input: &str) -> Message {
    match p.get(field) {
        Some(Val::Message(m)) if !m.text.is_empty() || !m.files.is_empty() => m.clone(),
        Some(v) => match v.to_text() {
            Ok(t) if !t.is_empty() => Message::with_text(t),
            _ => Message::with_text(input),
        },
        None => Message::with_text(input),
    }
}

/// Computes `true_result` / `false_result` (whichever are requested); the branch not
/// taken is stopped.
pub fn build(p: &Params, outputs: &[String]) -> Result<Outcome, ComponentError> {
    let input = p.text("input_text")?;
    let match_text = p.text("match_text")?;
    let operator = p.text_or("operator", "equals")?;
    let result = evaluate(
        &input,
        &match_text,
        &operator,
        p.bool_or("case_sensitive", true),
    );
    let mut out = Outcome::default();
    for name in outputs {
        match name.as_str() {
            "true_result" => {
                if result {
                    out.values.push((
                        name.clone(),
                        Val::Message(case_message(p, "true_case_message", &input)),
                    ));
                    out.stopped.push("false_result".into());
                } else {
                    out.values
                        .push((name.clone(), Val::Message(Message::with_text(""))));
                    out.stopped.push("true_result".into());
                }
            }
            "false_result" => {
                if !result {
                    out.values.push((
                        name.clone(),
                        Val::Message(case_message(p, "false_case_message", &input)),
                    ));
                    out.stopped.push("true_result".into());
                } else {
                    out.values
                        .push((name.clone(), Val::Message(Message::with_text(""))));
                    out.stopped.push("false_result".into());
                }
            }
            _ => {}
        }
    }
    out.stopped.sort();
    out.stopped.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators() {
        assert!(evaluate("Hello", "hello", "equals", false));
        assert!(!evaluate("Hello", "hello", "equals", true));
        assert!(evaluate("abc", "b", "contains", true));
        assert!(evaluate("abc", "a", "starts with", true));
        assert!(evaluate("abc", "c", "ends with", true));
        assert!(evaluate("abc", "x", "not equals", true));
        assert!(evaluate("abc123", "[a-c]+\\d", "regex", true));
        assert!(!evaluate("xabc", "abc", "regex", true));
        assert!(!evaluate("abc", "(", "regex", true));
        assert!(evaluate("2", "10", "less than", true));
        assert!(evaluate("10", "10", "greater than or equal", true));
        assert!(!evaluate("x", "10", "greater than", true));
    }

    #[test]
    fn routes_and_stops() {
        let mut p = Params::new();
        p.set("input_text", Val::Message(Message::with_text("yes")));
        p.set("match_text", Val::Json(json!("yes")));
        let outs = vec!["true_result".to_string(), "false_result".to_string()];
        let o = build(&p, &outs).unwrap();
        assert_eq!(o.get("true_result").unwrap().to_text().unwrap(), "yes");
        assert_eq!(o.stopped, vec!["false_result"]);
        p.set("match_text", Val::Json(json!("no")));
        p.set("false_case_message", Val::Json(json!("nope")));
        let o = build(&p, &outs).unwrap();
        assert_eq!(o.get("false_result").unwrap().to_text().unwrap(), "nope");
        assert_eq!(o.stopped, vec!["true_result"]);
    }
}
