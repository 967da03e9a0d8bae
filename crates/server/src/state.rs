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
}

impl AppState {
    pub fn new(config: Config, store: Store, jwt_secret: &[u8]) -> Self {
        let login_limiter = LoginLimiter::new(config.login_failures_per_minute);
        Self(Arc::new(Inner {
            config,
            store,
            keys: KeyCache::default(),
            jwt: JwtKeys::new(jwt_secret),
            login_limiter,
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
