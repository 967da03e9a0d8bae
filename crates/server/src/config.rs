//! Server settings. The binary fills this from flags, environment and `.env`; tests build it
//! directly.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The documented default superuser password (Langflow's documentation says `langflow`).
pub const DEFAULT_SUPERUSER_PASSWORD: &str = "langflow";

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: `flowgate.db` in `data_dir`.
    pub database_url: Option<String>,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    /// JWT signing secret; generated once and stored in `data_dir/secret_key` when absent.
    pub secret_key: Option<String>,
    pub superuser: String,
    pub superuser_password: String,
    /// Allows a non-loopback bind while the superuser password is still the default.
    pub allow_default_password: bool,
    /// Whether `?x-api-key=` is accepted (the header always is).
    pub allow_query_api_key: bool,
    pub enable_signup: bool,
    pub new_user_is_active: bool,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Marks auth cookies `Secure` (set behind HTTPS).
    pub cookie_secure: bool,
    /// Largest request body accepted on JSON routes, in bytes.
    pub max_body_bytes: usize,
    /// Largest flow upload (JSON or ZIP) and flow body, in bytes.
    pub max_upload_bytes: usize,
    /// Failed logins allowed per client IP per minute before 429.
    pub login_failures_per_minute: u32,
    /// Origins allowed by CORS; empty = CORS off.
    pub cors_origins: Vec<String>,
    /// How often accumulated API-key usage is written to the database.
    pub usage_flush_interval: Duration,
    /// Log one line per request.
    pub access_log: bool,
}

impl Config {
    /// Defaults for everything; what a test or `flowgate serve` with no options gets.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 7860,
            data_dir,
            database_url: None,
            db_max_connections: 8,
            db_acquire_timeout: Duration::from_secs(1),
            secret_key: None,
            superuser: "langflow".into(),
            superuser_password: DEFAULT_SUPERUSER_PASSWORD.into(),
            allow_default_password: false,
            allow_query_api_key: true,
            enable_signup: false,
            new_user_is_active: false,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(7 * 24 * 3600),
            cookie_secure: false,
            max_body_bytes: 2 * 1024 * 1024,
            max_upload_bytes: 32 * 1024 * 1024,
            login_failures_per_minute: 5,
            cors_origins: Vec::new(),
            usage_flush_interval: Duration::from_secs(1),
            access_log: true,
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| flowgate_store::sqlite_url(&self.data_dir.join("flowgate.db")))
    }

    pub fn uses_default_password(&self) -> bool {
        self.superuser_password == DEFAULT_SUPERUSER_PASSWORD
    }
}
