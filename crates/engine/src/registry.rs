//! The one source of truth for which Langflow component types flowgate runs natively.
//!
//! Stock code hashes: Langflow stamps every node with `metadata.code_hash`, which is
//! `sha256(source_code)` as lowercase hex, truncated to 12 characters, where the source is
//! the component's module file (the same text Langflow embeds in `template.code.value`).
//! The hashes below are those of lfx 1.13.0 (and of lfx-openai 0.2.1 for `OpenAIModel`),
//! checked against the starter flows shipped with Langflow 1.13.

/// What implementation a component type maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ChatInput,
    ChatOutput,
    TextInput,
    TextOutput,
    Prompt,
    LanguageModel,
    OpenAIModel,
    Parser,
    CombineText,
    SplitText,
    ConditionalRouter,
    Memory,
    Webhook,
}

/// A supported component type.
#[derive(Debug, Clone, Copy)]
pub struct ComponentSpec {
    pub type_name: &'static str,
    pub kind: Kind,
    /// `metadata.code_hash` values of the unmodified component, per supported Langflow release.
    pub stock_hashes: &'static [&'static str],
}

const SPECS: &[ComponentSpec] = &[
    ComponentSpec {
        type_name: "ChatInput",
        kind: Kind::ChatInput,
        stock_hashes: &["45974e6b1909"],
    },
    ComponentSpec {
        type_name: "ChatOutput",
        kind: Kind::ChatOutput,
        stock_hashes: &["0aab1c78e1dc"],
    },
    ComponentSpec {
        type_name: "TextInput",
        kind: Kind::TextInput,
        stock_hashes: &["2811c0e0496f"],
    },
    ComponentSpec {
        type_name: "TextOutput",
        kind: Kind::TextOutput,
        stock_hashes: &["3ececc60ddaf"],
    },
    ComponentSpec {
        type_name: "Prompt",
        kind: Kind::Prompt,
        stock_hashes: &["e3714ffe5d15"],
    },
    ComponentSpec {
        type_name: "Prompt Template",
        kind: Kind::Prompt,
        stock_hashes: &["e3714ffe5d15"],
    },
    ComponentSpec {
        type_name: "LanguageModelComponent",
        kind: Kind::LanguageModel,
        stock_hashes: &["1bfa98a19c39"],
    },
    ComponentSpec {
        type_name: "OpenAIModel",
        kind: Kind::OpenAIModel,
        stock_hashes: &["a0c641e5c067"],
    },
    ComponentSpec {
        type_name: "ParserComponent",
        kind: Kind::Parser,
        stock_hashes: &["7ab5fd0e0a10"],
    },
    ComponentSpec {
        type_name: "parser",
        kind: Kind::Parser,
        stock_hashes: &["7ab5fd0e0a10"],
    },
    ComponentSpec {
        type_name: "CombineText",
        kind: Kind::CombineText,
        stock_hashes: &["6cc244d8ad0c"],
    },
    ComponentSpec {
        type_name: "SplitText",
        kind: Kind::SplitText,
        stock_hashes: &["3a5005b9e7e7"],
    },
    ComponentSpec {
        type_name: "ConditionalRouter",
        kind: Kind::ConditionalRouter,
        stock_hashes: &["1d14fd882a0a"],
    },
    ComponentSpec {
        type_name: "Memory",
        kind: Kind::Memory,
        stock_hashes: &["c1e8d1b5f1ea"],
    },
    ComponentSpec {
        type_name: "Webhook",
        kind: Kind::Webhook,
        stock_hashes: &["e99e2452d56e"],
    },
];

/// The spec of a supported component type.
pub fn spec(component_type: &str) -> Option<&'static ComponentSpec> {
    SPECS.iter().find(|s| s.type_name == component_type)
}

pub fn is_supported(component_type: &str) -> bool {
    spec(component_type).is_some()
}

pub fn supported_types() -> impl Iterator<Item = &'static str> {
    SPECS.iter().map(|s| s.type_name)
}

/// `true` when `hash` is a stock hash of `component_type`.
pub fn is_stock_hash(component_type: &str, hash: &str) -> bool {
    spec(component_type).is_some_and(|s| s.stock_hashes.contains(&hash))
}

/// Langflow's code hash: first 12 hex chars of sha256 of the source text.
pub fn code_hash(code: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(code.as_bytes());
    let mut h = hex::encode(digest);
    h.truncate(12);
    h
}

/// Node types that read the run's input (`input_value`).
pub fn is_input_type(component_type: &str) -> bool {
    matches!(component_type, "ChatInput" | "TextInput" | "Webhook")
}

/// Node types whose result is a run output.
pub fn is_output_type(component_type: &str) -> bool {
    matches!(component_type, "ChatOutput" | "TextOutput" | "DataOutput")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert!(is_supported("ChatInput"));
        assert!(is_supported("Prompt Template"));
        assert!(!is_supported("Agent"));
        assert!(supported_types().any(|t| t == "parser"));
        assert!(is_stock_hash("ChatOutput", "0aab1c78e1dc"));
        assert!(!is_stock_hash("ChatOutput", "000000000000"));
    }

    #[test]
    fn hash_matches_langflow() {
        assert_eq!(code_hash("abc"), "ba7816bf8f01");
    }

    #[test]
    fn starter_code_hashes_are_stock() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/langflow-starters"
        );
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut seen = 0;
        for e in entries {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            let f = crate::flow::parse_flow(&v["data"]).unwrap();
            for n in f.components().filter(|n| is_supported(&n.component_type)) {
                let code = n.code.as_deref().unwrap();
                assert!(
                    is_stock_hash(&n.component_type, &code_hash(code)),
                    "{}",
                    n.id
                );
                seen += 1;
            }
        }
        assert!(seen > 10);
    }
}
