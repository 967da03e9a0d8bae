//! What each subcommand does. Commands other than `serve` work on the database directly,
//! whether or not a server is running; a running server sees their revocations on its next
//! request (see `flowgate_store::AuthEpoch`).

use std::time::Duration;

use anyhow::{Context, bail};
use flowgate_server::routes::api_keys::{KeySpec, issue_key};
use flowgate_server::{Config, keys, password, timefmt};
use flowgate_store::{NewUser, Store, UserRow, UserUpdate};

use crate::cli::{
    ApiKeyArgs, ApiKeyCommand, Command, DbArgs, ServeArgs, SuperuserArgs, UsersCommand,
    parse_lifetime,
};
use crate::{config_from_db_args, default_data_dir};

/// `flowgate check` found problems: exit 1 with the problems already printed.
#[derive(Debug)]
pub struct CheckFailed;

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("some flows cannot run here (see above)")
    }
}

impl std::error::Error for CheckFailed {}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::ApiKey(args) => api_key(args).await,
        Command::Superuser(args) => superuser(args).await,
        Command::Users { command } => users(command).await,
        Command::Flows { command } => crate::flows_cmd::run(command).await,
        Command::Check { files } => {
            if crate::flows_cmd::check(&files)? {
                Ok(())
            } else {
                Err(anyhow::anyhow!(CheckFailed))
            }
        }
        Command::Run(args) => crate::run_cmd::run(args).await,
        Command::Migrate(db) => {
            let config = config_from_db_args(&db);
            let store = flowgate_server::open_store(&config).await?;
            println!(
                "database at {} is migrated and up to date",
                store.location()
            );
            Ok(())
        }
    }
}

fn serve_config(args: ServeArgs) -> Config {
    let mut config = Config::new(args.db.data_dir.clone().unwrap_or_else(default_data_dir));
    config.host = args.host;
    config.port = args.port;
    config.database_url = args.db.database_url;
    config.db_max_connections = args.db_max_connections.max(1);
    config.db_acquire_timeout = Duration::from_secs_f64(args.db_acquire_timeout);
    config.secret_key = args.secret_key;
    config.superuser = args.db.superuser_name;
    config.superuser_password = args.db.superuser_password;
    config.allow_default_password = args.allow_default_password;
    config.allow_query_api_key = args.allow_query_api_key;
    config.enable_signup = args.enable_signup;
    config.new_user_is_active = args.new_user_is_active;
    config.access_token_ttl = Duration::from_secs(args.access_token_expire_seconds.max(1));
    config.refresh_token_ttl = Duration::from_secs(args.refresh_token_expire_seconds.max(1));
    config.cookie_secure = args.cookie_secure;
    config.max_body_bytes = args.max_body_bytes.max(1024);
    config.max_upload_bytes = args.max_upload_bytes.max(1024);
    config.login_failures_per_minute = args.login_failures_per_minute;
    config.cors_origins = args
        .cors_origins
        .into_iter()
        .filter(|o| !o.is_empty())
        .collect();
    config.usage_flush_interval = Duration::from_millis(args.usage_flush_ms.max(10));
    config.access_log = args.access_log;
    config
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = serve_config(args);
    let superuser = config.superuser.clone();
    let server = flowgate_server::Server::bind(config).await?;
    let store = &server.state().store;
    println!(
        "flowgate {} listening on http://{}",
        env!("CARGO_PKG_VERSION"),
        server.local_addr
    );
    println!("database: {:?} at {}", store.backend(), store.location());
    let warn = move |superuser: &str| {
        let warning = format!(
            "the superuser {superuser:?} still has the default password \"langflow\": \
             change it (flowgate users set-password {superuser}) or set LANGFLOW_SUPERUSER_PASSWORD"
        );
        println!("WARNING: {warning}");
        tracing::warn!("{warning}");
    };
    match server.default_password {
        Some(true) => warn(&superuser),
        Some(false) => {}
        None => {
            // Checked after the port is open so the check does not delay the first answer.
            let store = store.clone();
            let config = server.state().config.clone();
            tokio::spawn(async move {
                if let Ok(true) =
                    flowgate_server::superuser_uses_default_password(&store, &config).await
                {
                    warn(&config.superuser);
                }
            });
        }
    }
    server.run(flowgate_server::shutdown_signal()).await
}

pub async fn open(db: &DbArgs) -> anyhow::Result<(Config, Store)> {
    let config = config_from_db_args(db);
    let store = flowgate_server::open_store(&config).await?;
    Ok((config, store))
}

/// The named user, or the configured superuser (created when missing, as the server would).
pub async fn owner(store: &Store, config: &Config, user: Option<&str>) -> anyhow::Result<UserRow> {
    match user {
        Some(name) => store
            .user_by_username(name)
            .await?
            .with_context(|| format!("no user named {name:?}")),
        None => {
            flowgate_server::bootstrap_superuser(store, config).await?;
            store
                .user_by_username(&config.superuser)
                .await?
                .with_context(|| format!("no superuser named {:?}", config.superuser))
        }
    }
}

async fn api_key(args: ApiKeyArgs) -> anyhow::Result<()> {
    match args.command {
        Some(ApiKeyCommand::List { db, user }) => return list_keys(&db, user.as_deref()).await,
        Some(ApiKeyCommand::Revoke { db, id }) => return revoke_key(&db, &id).await,
        None => {}
    }
    let (config, store) = open(&args.db).await?;
    let user = owner(&store, &config, args.user.as_deref()).await?;
    if !user.is_active {
        bail!("user {:?} is deactivated; activate it first", user.username);
    }
    let now = flowgate_store::now_micros();
    let expires_at = match &args.expires_in {
        Some(text) => {
            Some(now + parse_lifetime(text).map_err(anyhow::Error::msg)? as i64 * 1_000_000)
        }
        None => None,
    };
    let spec = KeySpec {
        name: Some(args.name.clone()),
        expires_at,
        scope: keys::KeyScope::parse(&args.scope).context("scope must be full or run")?,
        flows: (!args.flows.is_empty()).then_some(args.flows.clone()),
    };
    let (_row, key) = issue_key(&store, &user.id, &spec).await?;
    if args.quiet {
        println!("{key}");
    } else {
        print!("{}", key_box(&key, copy_to_clipboard(&key)));
    }
    Ok(())
}

/// The box of keys.md. The clipboard line appears only when copying really worked.
pub fn key_box(key: &str, copied: bool) -> String {
    const INNER: usize = 69;
    let mut lines = vec![
        "API Key Created Successfully:".to_string(),
        String::new(),
        key.to_string(),
        String::new(),
        "This is the only time the API key will be displayed.".to_string(),
        "Make sure to store it in a secure location.".to_string(),
    ];
    if copied {
        lines.push(String::new());
        lines.push("The API key has been copied to your clipboard. Ctrl + V to paste it.".into());
    }
    let mut out = format!("╭{}╮\n", "─".repeat(INNER));
    for line in lines {
        let pad = (INNER - 1).saturating_sub(line.chars().count());
        out.push_str(&format!("│ {line}{}│\n", " ".repeat(pad)));
    }
    out.push_str(&format!("╰{}╯\n", "─".repeat(INNER)));
    out
}

/// Tries the clipboard tools of a desktop session; on a headless server there is none.
fn copy_to_clipboard(text: &str) -> bool {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !has_display {
        return false;
    }
    let tools: &[(&str, &[&str])] = &[
        ("wl-copy", &[]),
        ("xclip", &["-selection", "clipboard"]),
        ("xsel", &["--clipboard", "--input"]),
    ];
    for (tool, tool_args) in tools {
        let Ok(mut child) = Command::new(tool)
            .args(*tool_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            continue;
        };
        let wrote = child
            .stdin
            .take()
            .is_some_and(|mut stdin| stdin.write_all(text.as_bytes()).is_ok());
        if wrote && child.wait().is_ok_and(|s| s.success()) {
            return true;
        }
    }
    false
}

async fn list_keys(db: &DbArgs, user: Option<&str>) -> anyhow::Result<()> {
    let (config, store) = open(db).await?;
    let user = owner(&store, &config, user).await?;
    let rows = store.list_api_keys(&user.id).await?;
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.name.clone().unwrap_or_default(),
                keys::mask(&r.prefix, r.key_length as usize),
                timefmt::second_time(r.created_at),
                r.last_used_at
                    .map(timefmt::second_time)
                    .unwrap_or_else(|| "never".into()),
                r.total_uses.to_string(),
                r.expires_at
                    .map(timefmt::second_time)
                    .unwrap_or_else(|| "never".into()),
                r.scope.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "NAME",
            "KEY",
            "CREATED",
            "LAST USED",
            "USES",
            "EXPIRES",
            "SCOPE",
        ],
        &table,
    );
    Ok(())
}

async fn revoke_key(db: &DbArgs, id: &str) -> anyhow::Result<()> {
    let id = uuid::Uuid::try_parse(id)
        .with_context(|| {
            format!("{id:?} is not a key id (a UUID, as `flowgate api-key list` shows)")
        })?
        .hyphenated()
        .to_string();
    let (_, store) = open(db).await?;
    match store.delete_api_key_any_owner(&id).await? {
        Some(_) => {
            println!("revoked API key {id}");
            Ok(())
        }
        None => bail!("no API key with id {id}"),
    }
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(headers.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        println!("{}", line(row.clone()));
    }
}

fn read_password(given: Option<String>, prompt: &str) -> anyhow::Result<String> {
    let password = match given {
        Some(p) => p,
        None => {
            let first = rpassword::prompt_password(prompt).context(
                "cannot prompt for a password here: pass --password or FLOWGATE_NEW_PASSWORD",
            )?;
            let again = rpassword::prompt_password("Repeat it: ")
                .context("cannot prompt for a password here")?;
            if first != again {
                bail!("the passwords do not match");
            }
            first
        }
    };
    if password.chars().count() < flowgate_server::routes::users::MIN_PASSWORD_CHARS {
        bail!(
            "the password must be at least {} characters",
            flowgate_server::routes::users::MIN_PASSWORD_CHARS
        );
    }
    Ok(password)
}

async fn create_user(
    store: &Store,
    username: &str,
    password: String,
    superuser: bool,
    active: bool,
) -> anyhow::Result<()> {
    if username.trim().is_empty() || username.chars().any(char::is_control) {
        bail!("the username must not be empty or contain control characters");
    }
    if store.user_by_username(username).await?.is_some() {
        bail!("a user named {username:?} already exists");
    }
    let hash = tokio::task::spawn_blocking(move || password::hash(&password)).await??;
    let id = uuid::Uuid::new_v4().to_string();
    store
        .create_user(NewUser {
            id: &id,
            username,
            password_hash: &hash,
            is_active: active,
            is_superuser: superuser,
        })
        .await?;
    let kind = if superuser { "superuser" } else { "user" };
    println!("created {kind} {username} ({id})");
    Ok(())
}

async fn superuser(args: SuperuserArgs) -> anyhow::Result<()> {
    let (_, store) = open(&args.db).await?;
    let username = match args.username {
        Some(u) => u,
        None => bail!("--username is required"),
    };
    let password = read_password(args.password, "Password for the new superuser: ")?;
    create_user(&store, &username, password, true, true).await
}

async fn find_user(store: &Store, username: &str) -> anyhow::Result<UserRow> {
    store
        .user_by_username(username)
        .await?
        .with_context(|| format!("no user named {username:?}"))
}

async fn users(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::List { db } => {
            let (_, store) = open(&db).await?;
            let (_, rows) = store.list_users(0, i64::MAX).await?;
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|u| {
                    vec![
                        u.id.clone(),
                        u.username.clone(),
                        if u.is_active { "active" } else { "inactive" }.into(),
                        if u.is_superuser { "yes" } else { "no" }.into(),
                        timefmt::second_time(u.create_at),
                        u.last_login_at
                            .map(timefmt::second_time)
                            .unwrap_or_else(|| "never".into()),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "USERNAME",
                    "STATUS",
                    "SUPERUSER",
                    "CREATED",
                    "LAST LOGIN",
                ],
                &table,
            );
            Ok(())
        }
        UsersCommand::Create {
            db,
            username,
            password,
            superuser,
            inactive,
        } => {
            let (_, store) = open(&db).await?;
            let password = read_password(password, "Password: ")?;
            create_user(&store, &username, password, superuser, !inactive).await
        }
        UsersCommand::Activate { db, username } => set_active(&db, &username, true).await,
        UsersCommand::Deactivate { db, username } => set_active(&db, &username, false).await,
        UsersCommand::SetPassword {
            db,
            username,
            password,
        } => {
            let (_, store) = open(&db).await?;
            let user = find_user(&store, &username).await?;
            let password = read_password(password, "New password: ")?;
            let hash = tokio::task::spawn_blocking(move || password::hash(&password)).await??;
            let update = UserUpdate {
                password_hash: Some(hash),
                ..Default::default()
            };
            store.update_user(&user.id, update).await?;
            store.revoke_user_refresh_tokens(&user.id).await?;
            println!("password of {username} changed; their login sessions were ended");
            Ok(())
        }
        UsersCommand::Delete { db, username } => {
            let (_, store) = open(&db).await?;
            let user = find_user(&store, &username).await?;
            store.delete_user(&user.id).await?;
            println!("deleted user {username} and everything they owned");
            Ok(())
        }
    }
}

async fn set_active(db: &DbArgs, username: &str, active: bool) -> anyhow::Result<()> {
    let (_, store) = open(db).await?;
    let user = find_user(&store, username).await?;
    let update = UserUpdate {
        is_active: Some(active),
        ..Default::default()
    };
    store.update_user(&user.id, update).await?;
    if !active {
        store.revoke_user_refresh_tokens(&user.id).await?;
    }
    println!(
        "{username} is now {}",
        if active { "active" } else { "deactivated" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_matches_the_documentation() {
        let key = "fgk_".to_string() + &"a".repeat(49);
        let text = key_box(&key, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10);
        for line in &lines {
            assert_eq!(line.chars().count(), 71, "{line:?}");
        }
        assert_eq!(
            lines[8],
            "│ The API key has been copied to your clipboard. Ctrl + V to paste it.│"
        );
        assert!(lines[3].contains(&key));
        assert!(!key_box(&key, false).contains("clipboard"));
    }
}
