use std::ops::Deref;
use std::sync::Arc;

use flowgate_store::Store;

use crate::config::Config;
use crate::jwt::JwtKeys;
use crate::keys::KeyCache;
use crate::ratelimit::LoginLimiter;

/// Everything a handler can reach. Cloning is one atomic increment.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub keys: KeyCache,
    pub jwt: JwtKeys,
    pub login_limiter: LoginLimiter,
    /// Compiled flows by (owner, id or endpoint name): runs read no flow from the database.
    pub flow_cache: crate::routes::run::FlowCache,
    /// The one HTTP client runs use (model providers), with a connect timeout.
    pub http: reqwest::Client,
    /// `OPENAI_BASE_URL` from the environment, read once.
    pub openai_base_url: Option<String>,
    /// Encrypts Credential variables; derived from the server secret (variables.rs).
    pub variable_cipher: crate::variables::VariableCipher,
}

impl AppState {
    pub fn new(config: Config, store: Store, jwt_secret: &[u8]) -> Self {
        let login_limiter = LoginLimiter::new(config.login_failures_per_minute);
        Self(Arc::new(Inner {
            config,
            store,
            keys: KeyCache::default(),
            jwt: JwtKeys::new(jwt_secret),
            variable_cipher: crate::variables::VariableCipher::from_secret(jwt_secret),
            login_limiter,
            flow_cache: Default::default(),
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .pool_idle_timeout(std::time::Duration::from_secs(90))
                .build()
                .expect("the HTTP client builds (rustls)"),
            openai_base_url: std::env::var("OPENAI_BASE_URL")
                .ok()
                .filter(|u| !u.trim().is_empty()),
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
