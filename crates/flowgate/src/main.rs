//! The `flowgate` command.

mod cli;
mod commands;
mod flows_cmd;
mod run_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, DbArgs};

/// mimalloc instead of glibc's malloc. Measured (BENCHMARKS.md, "Run"): under load, a run's
/// message rows are allocated on the async workers and freed on the SQLite writer's thread, and
/// glibc's per-arena locks made threads sleep on each other (`__lll_lock_wait_private` was a
/// sixth of the writer's context switches); its malloc/free were 13 % of the workers' CPU.
/// It also replaces C's `malloc` (the crate's `override` feature), which SQLite allocates its
/// page cache and statements with: with glibc's, 8 % of the message writer's time went to
/// `_int_malloc`/`_int_free` and to faulting in heap pages that `free` had just given back to
/// the kernel; run p99 4.1-4.6 against 7.9-9.8 ms side by side (BENCHMARKS.md, "Run").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    load_env_file();
    cli::apply_env_aliases();
    let cli = Cli::parse();
    let _log_guard = init_logging();
    // A worker about to park has nothing else to do: the moment for SQLite's message writer to
    // write the runs that finished meanwhile, in one transaction (see the hook's docs).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(flowgate_store::wake_deferred_writers)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// `--env-file PATH` (or FLOWGATE_ENV_FILE) when given, else `./.env` when present. Read
/// before clap so the file can set any option. Variables already set win.
fn load_env_file() {
    let args: Vec<String> = std::env::args().collect();
    let explicit = args
        .iter()
        .position(|a| a == "--env-file")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--env-file=").map(String::from))
        })
        .or_else(|| std::env::var("FLOWGATE_ENV_FILE").ok());
    match explicit {
        Some(path) => {
            if let Err(e) = dotenvy::from_path(&path) {
                eprintln!("error: cannot read the env file {path}: {e}");
                std::process::exit(2);
            }
        }
        None => {
            let _ = dotenvy::dotenv();
        }
    }
}

/// Logs go to stderr through a background thread so a busy server never blocks on it. The
/// thread writes through a 64 KiB buffer (one `write(2)` per batch, not per line) and holds at
/// most 8,192 pending lines; past that, lines are dropped rather than slowing requests down.
/// `FLOWGATE_LOG` filters (default `info`), `FLOWGATE_LOG_FORMAT=json` for JSON lines.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let buffered = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(8192)
        .lossy(true)
        .finish(buffered);
    let filter = EnvFilter::try_from_env("FLOWGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    if std::env::var("FLOWGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

/// Errors are one clear line: the context chain joined, no backtrace.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/flowgate"),
        None => PathBuf::from("flowgate-data"),
    }
}

/// The server configuration implied by the database options alone (CLI commands).
pub fn config_from_db_args(db: &DbArgs) -> flowgate_server::Config {
    let mut config =
        flowgate_server::Config::new(db.data_dir.clone().unwrap_or_else(default_data_dir));
    config.database_url = db.database_url.clone();
    config.superuser = db.superuser_name.clone();
    config.superuser_password = db.superuser_password.clone();
    config
}
