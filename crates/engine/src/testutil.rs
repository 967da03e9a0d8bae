//! A RunContext for tests.

use crate::context::{BoxFuture, HistoryQuery, LlmTimeouts, RunContext};
use crate::value::Message;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub struct TestCtx {
    pub stored: Mutex<Vec<Message>>,
    /// Newest first.
    pub history: Mutex<Vec<Message>>,
    pub queries: Mutex<Vec<HistoryQuery>>,
    pub vars: HashMap<String, String>,
    pub files: HashMap<String, Vec<u8>>,
    pub client: reqwest::Client,
    pub base_url: Option<String>,
    pub timeouts: LlmTimeouts,
}

impl Default for TestCtx {
    fn default() -> Self {
        TestCtx {
            stored: Mutex::default(),
            history: Mutex::default(),
            queries: Mutex::default(),
            vars: HashMap::new(),
            files: HashMap::new(),
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
            base_url: None,
            timeouts: LlmTimeouts::default(),
        }
    }
}

impl RunContext for TestCtx {
    fn history<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<Message>, String>> {
        Box::pin(async move {
            self.queries.lock().unwrap().push(query.clone());
            let h = self.history.lock().unwrap();
            Ok(h.iter().take(query.limit).cloned().collect())
        })
    }

    fn store_message(&self, msg: &Message) {
        self.stored.lock().unwrap().push(msg.clone());
    }

    fn variable<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { self.vars.get(name).cloned() })
    }

    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            self.files
                .get(path)
                .cloned()
                .ok_or_else(|| format!("no file {path}"))
        })
    }

    fn http_client(&self) -> &reqwest::Client {
        &self.client
    }

    fn openai_base_url(&self) -> Option<String> {
        self.base_url.clone()
    }

    fn llm_timeouts(&self) -> LlmTimeouts {
        self.timeouts
    }
}
