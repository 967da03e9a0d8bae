//! Command-line definitions. Every option also reads an environment variable; Langflow's
//! names are honoured as aliases (see [`apply_env_aliases`]).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flowgate",
    version,
    about = "Serve Langflow flows in production: Langflow's REST API, API keys, a native engine.",
    long_about = "Serve Langflow flows in production: Langflow's REST API, API keys, a native engine.\n\n\
        Every option also reads the environment variable shown; Langflow's variable names \
        (LANGFLOW_HOST, LANGFLOW_PORT, LANGFLOW_DATABASE_URL, LANGFLOW_SECRET_KEY, \
        LANGFLOW_SUPERUSER, LANGFLOW_SUPERUSER_PASSWORD, ...) work as aliases when the FLOWGATE_ \
        one is unset. A .env file in the working directory (or --env-file) is loaded first."
)]
pub struct Cli {
    /// Load environment variables from this file (default: ./.env when present)
    #[arg(long, global = true, env = "FLOWGATE_ENV_FILE")]
    pub env_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (API and web UI)
    Serve(ServeArgs),
    /// Create an API key directly in the database and print it once (or list / revoke keys)
    #[command(name = "api-key", args_conflicts_with_subcommands = true)]
    ApiKey(ApiKeyArgs),
    /// Create a superuser
    Superuser(SuperuserArgs),
    /// Manage users
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Apply database migrations and exit (the server also does this at start)
    Migrate(DbArgs),
    /// Import, export and list stored flows
    Flows {
        #[command(subcommand)]
        command: FlowsCommand,
    },
    /// Validate flow files without running them: exit 1 and one line per problem, 0 when runnable
    Check {
        /// Langflow flow JSON files (or {"flows": [...]} files)
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Run a flow file locally, with no server and no database; prints the answer
    Run(crate::run_cmd::RunArgs),
}

#[derive(Subcommand)]
pub enum FlowsCommand {
    /// Import Langflow JSON files, ZIPs, or directories of them for a user
    Import {
        #[command(flatten)]
        db: DbArgs,
        /// Files or directories
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// Owner of the imported flows [default: the superuser]
        #[arg(long)]
        user: Option<String>,
    },
    /// Write one flow (by id or endpoint name) as Langflow JSON
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// Flow id or endpoint name
        flow: String,
        /// Output file (- for standard output)
        #[arg(long, short)]
        out: std::path::PathBuf,
        /// Owner of the flow [default: the superuser]
        #[arg(long)]
        user: Option<String>,
    },
    /// List a user's flows with their problems
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Whose flows [default: the superuser]
        #[arg(long)]
        user: Option<String>,
    },
}

/// Where the data lives.
#[derive(Args, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (also LANGFLOW_DATABASE_URL)
    /// [default: sqlite file flowgate.db in the data dir]
    #[arg(long, env = "FLOWGATE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Folder for the SQLite database and the generated secret key
    /// [default: ~/.local/share/flowgate]
    #[arg(long, env = "FLOWGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Superuser created at start when missing (also LANGFLOW_SUPERUSER)
    #[arg(long, env = "FLOWGATE_SUPERUSER", default_value = "langflow")]
    pub superuser_name: String,
    /// Its password (also LANGFLOW_SUPERUSER_PASSWORD); the documented default is `langflow`
    #[arg(
        long,
        env = "FLOWGATE_SUPERUSER_PASSWORD",
        default_value = "langflow",
        hide_env_values = true
    )]
    pub superuser_password: String,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (also LANGFLOW_HOST)
    #[arg(long, env = "FLOWGATE_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free one (also LANGFLOW_PORT)
    #[arg(long, env = "FLOWGATE_PORT", default_value_t = 7860)]
    pub port: u16,
    #[command(flatten)]
    pub db: DbArgs,
    /// Most database connections in the pool
    #[arg(long, env = "FLOWGATE_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,
    /// Seconds (fractions allowed) to wait for a database connection before answering 503.
    /// Short, so requests fail fast while the database is unreachable
    #[arg(long, env = "FLOWGATE_DB_ACQUIRE_TIMEOUT", default_value_t = 1.0, value_parser = parse_seconds)]
    pub db_acquire_timeout: f64,
    /// JWT signing secret, ≥ 32 characters (also LANGFLOW_SECRET_KEY)
    /// [default: generated once into DATA_DIR/secret_key]
    #[arg(long, env = "FLOWGATE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Allow listening on a non-loopback address while the superuser password is the default
    #[arg(long, env = "FLOWGATE_ALLOW_DEFAULT_PASSWORD", default_value_t = false)]
    pub allow_default_password: bool,
    /// Accept the API key as the x-api-key query parameter (the header always works)
    #[arg(long, env = "FLOWGATE_ALLOW_QUERY_API_KEY", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_query_api_key: bool,
    /// Allow public sign-up through POST /api/v1/users/ (also LANGFLOW_ENABLE_SIGNUP)
    #[arg(long, env = "FLOWGATE_ENABLE_SIGNUP", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_signup: bool,
    /// Signed-up users start active (also LANGFLOW_NEW_USER_IS_ACTIVE)
    #[arg(long, env = "FLOWGATE_NEW_USER_IS_ACTIVE", default_value_t = false, action = clap::ArgAction::Set)]
    pub new_user_is_active: bool,
    /// Access token lifetime in seconds (also LANGFLOW_ACCESS_TOKEN_EXPIRE_SECONDS)
    #[arg(
        long,
        env = "FLOWGATE_ACCESS_TOKEN_EXPIRE_SECONDS",
        default_value_t = 3600
    )]
    pub access_token_expire_seconds: u64,
    /// Refresh token lifetime in seconds (also LANGFLOW_REFRESH_TOKEN_EXPIRE_SECONDS)
    #[arg(
        long,
        env = "FLOWGATE_REFRESH_TOKEN_EXPIRE_SECONDS",
        default_value_t = 604800
    )]
    pub refresh_token_expire_seconds: u64,
    /// Mark auth cookies Secure (serve behind HTTPS)
    #[arg(long, env = "FLOWGATE_COOKIE_SECURE", default_value_t = false, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,
    /// Largest JSON request body in bytes (larger → 413)
    #[arg(long, env = "FLOWGATE_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest flow upload (JSON or ZIP) or flow body in bytes (larger → 413)
    #[arg(long, env = "FLOWGATE_MAX_UPLOAD_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Failed logins per client IP per minute before 429 (0 = unlimited)
    #[arg(long, env = "FLOWGATE_LOGIN_FAILURES_PER_MINUTE", default_value_t = 5)]
    pub login_failures_per_minute: u32,
    /// Comma-separated origins allowed by CORS; empty = CORS off (also LANGFLOW_CORS_ORIGINS)
    #[arg(long, env = "FLOWGATE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Milliseconds between writes of accumulated API key usage
    #[arg(long, env = "FLOWGATE_USAGE_FLUSH_MS", default_value_t = 1000)]
    pub usage_flush_ms: u64,
    /// One log line per request (keys and tokens are never logged)
    #[arg(long, env = "FLOWGATE_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
}

#[derive(Args)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    pub command: Option<ApiKeyCommand>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Owner of the key [default: the superuser]
    #[arg(long)]
    pub user: Option<String>,
    /// Name shown in listings
    #[arg(long, default_value = "CLI")]
    pub name: String,
    /// Lifetime such as 30d, 12h, 90m or 1y [default: never expires]
    #[arg(long)]
    pub expires_in: Option<String>,
    /// full: acts as its owner everywhere; run: run routes only
    #[arg(long, default_value = "full", value_parser = ["full", "run"])]
    pub scope: String,
    /// Limit the key to these flows (ids or endpoint names, comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub flows: Vec<String>,
    /// Print only the key (for scripts)
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// List keys (masked), as the UI shows them
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Whose keys [default: the superuser]
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke (delete) a key by id; it stops working on the next request
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        /// The key's id, as `flowgate api-key list` shows it
        id: String,
    },
}

#[derive(Args)]
pub struct SuperuserArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Username of the new superuser
    #[arg(long)]
    pub username: Option<String>,
    /// Password (prompted for, without echo, when missing)
    #[arg(long, env = "FLOWGATE_NEW_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List users
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create a user
    Create {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        username: String,
        /// Password (prompted for, without echo, when missing)
        #[arg(long, env = "FLOWGATE_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Make the user a superuser
        #[arg(long)]
        superuser: bool,
        /// Create the user deactivated
        #[arg(long)]
        inactive: bool,
    },
    /// Let a user log in and use their keys again
    Activate {
        #[command(flatten)]
        db: DbArgs,
        username: String,
    },
    /// Stop a user: logins and all of their API keys are refused from the next request on
    Deactivate {
        #[command(flatten)]
        db: DbArgs,
        username: String,
    },
    /// Set a user's password
    SetPassword {
        #[command(flatten)]
        db: DbArgs,
        username: String,
        /// New password (prompted for, without echo, when missing)
        #[arg(long, env = "FLOWGATE_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Delete a user and everything they own
    Delete {
        #[command(flatten)]
        db: DbArgs,
        username: String,
    },
}

/// Langflow's variable names, honoured when the FLOWGATE_ one is unset.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("FLOWGATE_HOST", "LANGFLOW_HOST"),
    ("FLOWGATE_PORT", "LANGFLOW_PORT"),
    ("FLOWGATE_DATABASE_URL", "LANGFLOW_DATABASE_URL"),
    ("FLOWGATE_DATA_DIR", "LANGFLOW_CONFIG_DIR"),
    ("FLOWGATE_SECRET_KEY", "LANGFLOW_SECRET_KEY"),
    ("FLOWGATE_SUPERUSER", "LANGFLOW_SUPERUSER"),
    ("FLOWGATE_SUPERUSER_PASSWORD", "LANGFLOW_SUPERUSER_PASSWORD"),
    ("FLOWGATE_ENABLE_SIGNUP", "LANGFLOW_ENABLE_SIGNUP"),
    ("FLOWGATE_NEW_USER_IS_ACTIVE", "LANGFLOW_NEW_USER_IS_ACTIVE"),
    (
        "FLOWGATE_ACCESS_TOKEN_EXPIRE_SECONDS",
        "LANGFLOW_ACCESS_TOKEN_EXPIRE_SECONDS",
    ),
    (
        "FLOWGATE_REFRESH_TOKEN_EXPIRE_SECONDS",
        "LANGFLOW_REFRESH_TOKEN_EXPIRE_SECONDS",
    ),
    ("FLOWGATE_CORS_ORIGINS", "LANGFLOW_CORS_ORIGINS"),
];

/// Copies Langflow's variables to ours where ours are unset. Runs before any thread starts.
pub fn apply_env_aliases() {
    for (ours, theirs) in ENV_ALIASES {
        if std::env::var_os(ours).is_none()
            && let Some(value) = std::env::var_os(theirs)
        {
            // SAFETY: called at the top of main, before any other thread exists.
            unsafe { std::env::set_var(ours, value) };
        }
    }
    // Boolean flags in Langflow's style ("True"/"False") parse as ours.
    for (ours, _) in ENV_ALIASES {
        if let Ok(value) = std::env::var(ours) {
            let lower = value.to_ascii_lowercase();
            if (lower == "true" || lower == "false") && value != lower {
                // SAFETY: as above.
                unsafe { std::env::set_var(ours, lower) };
            }
        }
    }
}

/// `30d`, `12h`, `90m`, `45s`, `2w`, `1y` → seconds.
pub fn parse_lifetime(input: &str) -> Result<u64, String> {
    let input = input.trim();
    let split = input
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{input:?} needs a unit: s, m, h, d, w or y (e.g. 30d)"))?;
    let (number, unit) = input.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{input:?} must start with a whole number (e.g. 30d)"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {input:?}: use s, m, h, d, w or y"
            ));
        }
    };
    if n == 0 {
        return Err(format!("{input:?} must be longer than zero"));
    }
    n.checked_mul(unit_secs)
        .filter(|s| *s < 100 * 365 * 86_400)
        .ok_or_else(|| format!("{input:?} is too long"))
}

/// A positive, finite number of seconds (at most a day).
fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("30d"), Ok(30 * 86_400));
        assert_eq!(parse_lifetime("12h"), Ok(12 * 3600));
        assert_eq!(parse_lifetime("1y"), Ok(365 * 86_400));
        assert!(parse_lifetime("30").is_err());
        assert!(parse_lifetime("d").is_err());
        assert!(parse_lifetime("0d").is_err());
        assert!(parse_lifetime("5x").is_err());
        assert!(parse_lifetime("99999999999y").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
