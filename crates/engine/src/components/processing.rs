//! `ParserComponent`/`parser`, `CombineText`, `SplitText` (lfx `processing/`).

use super::{ComponentError, Outcome, Params, py_format, py_str, safe_convert};
use crate::value::{Data, Message, Val};
use serde_json::{Map, Value};

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

/// Parser.parsed_text: each row/item formatted with `pattern`, joined by `sep`;
/// `mode: Stringify` converts the input to text instead.
pub fn parser(p: &Params) -> Result<Outcome, ComponentError> {
    let input = p.get("input_data").cloned().unwrap_or(Val::Null);
    if p.text_or("mode", "Parser")? == "Stringify" {
        let text = match &input {
            Val::List(items) => items
                .iter()
                .map(safe_convert)
                .collect::<Result<Vec<_>, _>>()?
                .join("\n"),
            other => safe_convert(other)?,
        };
        return Ok(Outcome::single(
            "parsed_text",
            Val::Message(Message::with_text(text)),
        ));
    }
    let pattern = p.text_or("pattern", "Text: {text}")?;
    let sep = p.text_or("sep", "\n")?;
    let mut lines = Vec::new();
    let format_data = |d: &Data| -> Result<String, ComponentError> {
        let default = d.default_value.clone().unwrap_or_default();
        py_format(&pattern, |k| {
            Some(d.data.get(k).map(py_str).unwrap_or_else(|| default.clone()))
        })
    };
    match &input {
        Val::DataFrame(rows) => {
            for r in rows {
                // DataFrame rows: a missing column is a KeyError in lfx.
                lines.push(py_format(&pattern, |k| r.data.get(k).map(py_str))?);
            }
        }
        Val::Data(d) => lines.push(format_data(d)?),
        Val::Message(m) => lines.push(format_data(&m.to_data())?),
        Val::List(items)
            if items
                .iter()
                .all(|i| matches!(i, Val::Data(_) | Val::Message(_))) =>
        {
            for i in items {
                match i {
                    Val::Data(d) => lines.push(format_data(d)?),
                    Val::Message(m) => lines.push(format_data(&m.to_data())?),
                    _ => unreachable!(),
                }
            }
        }
        Val::Json(Value::Object(o)) => lines.push(format_data(&Data::new(o.clone()))?),
        other => {
            return Err(ComponentError::Failed(format!(
                "Unsupported input type: {}. Expected DataFrame, Data, or list[Data].",
                type_name(other)
            )));
        }
    }
    Ok(Outcome::single(
        "parsed_text",
        Val::Message(Message::with_text(lines.join(&sep))),
    ))
}

fn type_name(v: &Val) -> &'static str {
    match v {
        Val::Null => "NoneType",
        Val::Json(Value::String(_)) => "str",
        Val::Json(_) => "dict",
        Val::Message(_) => "Message",
        Val::Data(_) => "Data",
        Val::DataFrame(_) => "DataFrame",
        Val::List(_) => "list",
        Val::Opaque(_) => "object",
    }
}

/// CombineText.combined_text: `delimiter.join([text1, text2])`.
pub fn combine_text(p: &Params) -> Result<Outcome, ComponentError> {
    let combined = [p.text("text1")?, p.text("text2")?].join(&p.text_or("delimiter", " ")?);
    Ok(Outcome::single(
        "combined_text",
        Val::Message(Message::with_text(combined)),
    ))
}

/// langchain `CharacterTextSplitter` split step (literal separator).
fn split_with_separator(text: &str, sep: &str, keep: &str) -> Vec<String> {
    let pieces: Vec<String> = if sep.is_empty() {
        text.chars().map(String::from).collect()
    } else if keep == "false" {
        text.split(sep).map(str::to_owned).collect()
    } else {
        let parts: Vec<&str> = text.split(sep).collect();
        let mut out = Vec::with_capacity(parts.len());
        if keep == "end" {
            for (i, part) in parts.iter().enumerate() {
                if i + 1 < parts.len() {
                    out.push(format!("{part}{sep}"));
                } else {
                    out.push((*part).to_owned());
                }
            }
        } else {
            // "start" / true: the separator opens the following piece.
            for (i, part) in parts.iter().enumerate() {
                if i == 0 {
                    out.push((*part).to_owned());
                } else {
                    out.push(format!("{sep}{part}"));
                }
            }
        }
        out
    };
    pieces.into_iter().filter(|s| !s.is_empty()).collect()
}

/// langchain `TextSplitter._merge_splits` (length = characters, whitespace stripped).
fn merge_splits(splits: &[String], sep: &str, chunk_size: usize, overlap: usize) -> Vec<String> {
    let sep_len = sep.chars().count();
    let len = |s: &str| s.chars().count();
    let join = |docs: &[&str]| -> Option<String> {
        let t = docs.join(sep).trim().to_owned();
        (!t.is_empty()).then_some(t)
    };
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut total = 0usize;
    for d in splits {
        let l = len(d);
        let extra = if current.is_empty() { 0 } else { sep_len };
        if total + l + extra > chunk_size && !current.is_empty() {
            if let Some(doc) = join(&current) {
                out.push(doc);
            }
            while total > overlap
                || (total + l + if current.is_empty() { 0 } else { sep_len } > chunk_size
                    && total > 0)
            {
                let had_more = current.len() > 1;
                let first = current.remove(0);
                total = total.saturating_sub(len(first) + if had_more { sep_len } else { 0 });
                if current.is_empty() {
                    total = 0;
                    break;
                }
            }
        }
        current.push(d);
        total += l + if current.len() > 1 { sep_len } else { 0 };
    }
    if let Some(doc) = join(&current) {
        out.push(doc);
    }
    out
}

/// SplitText.dataframe: chunks of the input texts as a DataFrame (`text` + metadata columns).
pub fn split_text(p: &Params) -> Result<Outcome, ComponentError> {
    let mut sep = p.text_or("separator", "\n")?;
    if sep == "/n" {
        sep = "\n".into();
    } else if sep == "/t" {
        sep = "\t".into();
    }
    let sep = unescape(&sep);
    let text_key = p.text_or("text_key", "text")?;
    let chunk_size = p.i64_or("chunk_size", 1000).max(1) as usize;
    let overlap = p.i64_or("chunk_overlap", 200).max(0) as usize;
    if overlap > chunk_size {
        return Err(ComponentError::Failed(format!(
            "Error splitting text: Got a larger chunk overlap ({overlap}) than chunk size ({chunk_size}), should be smaller."
        )));
    }
    let keep = p.text_or("keep_separator", "False")?.to_lowercase();
    let clean = p.bool_or("clean_output", false);
    // Documents: (text, metadata).
    let doc_of = |d: &Data| -> Result<(String, Map<String, Value>), ComponentError> {
        let text = match d.data.get(&text_key) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => py_str(v),
            None => {
                return Err(ComponentError::Failed(format!(
                    "Error splitting text: Data has no \"{text_key}\" key"
                )));
            }
        };
        let mut meta = d.data.clone();
        meta.remove(&text_key);
        Ok((text, meta))
    };
    let docs: Vec<(String, Map<String, Value>)> = match p.get("data_inputs") {
        None | Some(Val::Null) => {
            return Err(ComponentError::Failed("No data inputs provided".into()));
        }
        Some(Val::Message(m)) => vec![(m.text.clone(), Map::new())],
        Some(Val::Json(Value::String(s))) => vec![(s.clone(), Map::new())],
        Some(Val::Data(d)) => vec![doc_of(d)?],
        Some(Val::DataFrame(rows)) => {
            if rows.is_empty() {
                return Err(ComponentError::Failed("DataFrame is empty".into()));
            }
            rows.iter().map(doc_of).collect::<Result<_, _>>()?
        }
        Some(Val::List(items)) => items
            .iter()
            .filter_map(|i| match i {
                Val::Data(d) => Some(doc_of(d)),
                Val::Message(m) => Some(Ok((m.text.clone(), Map::new()))),
                _ => None,
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ComponentError::Failed(format!(
                "No valid Data inputs found in {}",
                type_name(other)
            )));
        }
    };
    let merge_sep = if keep == "false" { sep.as_str() } else { "" };
    let mut rows = Vec::new();
    for (text, meta) in docs {
        let splits = split_with_separator(&text, &sep, &keep);
        for chunk in merge_splits(&splits, merge_sep, chunk_size, overlap) {
            let mut row = Map::new();
            row.insert("text".into(), Value::String(chunk));
            if !clean {
                for (k, v) in &meta {
                    row.insert(k.clone(), v.clone());
                }
            }
            rows.push(Data::new(row));
        }
    }
    Ok(Outcome::single("dataframe", Val::DataFrame(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Data {
        Data::new(serde_json::from_value(v).unwrap())
    }

    fn text_of(o: &Outcome, name: &str) -> String {
        o.get(name).unwrap().to_text().unwrap()
    }

    #[test]
    fn parser_modes() {
        let mut p = Params::new();
        p.set("pattern", Val::Json(json!("{name}: {age}")));
        p.set("sep", Val::Json(json!(" | ")));
        p.set(
            "input_data",
            Val::DataFrame(vec![
                data(json!({"name": "a", "age": 1})),
                data(json!({"name": "b", "age": 2.5})),
            ]),
        );
        assert_eq!(
            text_of(&parser(&p).unwrap(), "parsed_text"),
            "a: 1 | b: 2.5"
        );
        // Data: missing keys become the default value.
        p.set("input_data", Val::Data(data(json!({"name": "c"}))));
        assert_eq!(text_of(&parser(&p).unwrap(), "parsed_text"), "c: ");
        // DataFrame: missing column is an error.
        p.set(
            "input_data",
            Val::DataFrame(vec![data(json!({"name": "a"}))]),
        );
        assert!(parser(&p).is_err());
        // Stringify.
        p.set("mode", Val::Json(json!("Stringify")));
        p.set("input_data", Val::Message(Message::with_text("raw")));
        assert_eq!(text_of(&parser(&p).unwrap(), "parsed_text"), "raw");
        // Unsupported input.
        p.set("mode", Val::Json(json!("Parser")));
        p.set("input_data", Val::Json(json!("str")));
        assert!(
            parser(&p)
                .unwrap_err()
                .to_string()
                .contains("Unsupported input type: str")
        );
    }

    #[test]
    fn combine() {
        let mut p = Params::new();
        p.set("text1", Val::Message(Message::with_text("a")));
        p.set("text2", Val::Json(json!("b")));
        assert_eq!(text_of(&combine_text(&p).unwrap(), "combined_text"), "a b");
        p.set("delimiter", Val::Json(json!("-")));
        assert_eq!(text_of(&combine_text(&p).unwrap(), "combined_text"), "a-b");
    }

    #[test]
    fn split_like_langchain() {
        let mut p = Params::new();
        p.set(
            "data_inputs",
            Val::Message(Message::with_text("aaa\nbbb\nccc\nddd")),
        );
        p.set("chunk_size", Val::Json(json!(7)));
        p.set("chunk_overlap", Val::Json(json!(3)));
        let o = split_text(&p).unwrap();
        let Some(Val::DataFrame(rows)) = o.get("dataframe") else {
            panic!()
        };
        let texts: Vec<_> = rows
            .iter()
            .map(|r| r.data["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(texts, vec!["aaa\nbbb", "bbb\nccc", "ccc\nddd"]);
        // Metadata columns are kept unless clean_output.
        p.set(
            "data_inputs",
            Val::Data(data(json!({"text": "x\ny", "src": "f"}))),
        );
        let o = split_text(&p).unwrap();
        let Some(Val::DataFrame(rows)) = o.get("dataframe") else {
            panic!()
        };
        assert_eq!(rows[0].data["src"], "f");
        p.set("clean_output", Val::Json(json!(true)));
        let o = split_text(&p).unwrap();
        let Some(Val::DataFrame(rows)) = o.get("dataframe") else {
            panic!()
        };
        assert!(rows[0].data.get("src").is_none());
        // Overlap larger than chunk size.
        p.set("chunk_overlap", Val::Json(json!(100)));
        assert!(split_text(&p).is_err());
    }

    #[test]
    fn split_keep_separator() {
        assert_eq!(
            split_with_separator("a.b.c", ".", "end"),
            vec!["a.", "b.", "c"]
        );
        assert_eq!(
            split_with_separator("a.b.c", ".", "start"),
            vec!["a", ".b", ".c"]
        );
        assert_eq!(split_with_separator("a..b", ".", "false"), vec!["a", "b"]);
    }
}
