//! flowgate's flow engine: parse Langflow flow JSON, validate it, and run it natively.
//!
//! ```text
//! parse_flow(&data) -> Flow            (keeps the JSON: flow.export() == data)
//! check_flow(&flow) -> Vec<Problem>    (empty = runnable)
//! run::compile(flow_id, &flow) -> CompiledFlow   (once per flow version; share in an Arc)
//! run::execute(&compiled, RunRequest, &ctx, events, cancel).await -> Result<RunOutput, RunError>
//! ```

pub mod check;
pub mod components;
pub mod context;
pub mod flow;
pub mod registry;
pub mod run;
pub mod value;

#[cfg(test)]
mod tests_e2e;
#[cfg(test)]
mod testutil;

pub use check::Problem;
pub use context::{BoxFuture, Event, HistoryQuery, LlmTimeouts, RunContext};
pub use flow::{Flow, FlowFormatError};
pub use run::{
    CompileError, CompiledFlow, InputType, NodeResult, OutputType, RunError, RunOutput, RunRequest,
    compile, execute,
};
pub use value::{Message, Usage};

/// Parse once; keep the original JSON so `export(import(x)) == x`.
pub fn parse_flow(data: &serde_json::Value) -> Result<flow::Flow, flow::FlowFormatError> {
    flow::parse_flow(data)
}

/// Validation without running. Empty Vec = runnable.
pub fn check_flow(flow: &flow::Flow) -> Vec<check::Problem> {
    check::check_flow(flow)
}
