//! `flowgate flows ...` and `flowgate check`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use flowgate_server::flowdoc;
use flowgate_server::routes::flows::documents_in_upload;
use flowgate_store::{FlowRecord, OnClash, OnOwnId, Store};
use serde_json::Value;

use crate::cli::FlowsCommand;

/// Largest file `import` and `check` read.
const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

pub async fn run(command: FlowsCommand) -> anyhow::Result<()> {
    match command {
        FlowsCommand::Import { db, paths, user } => {
            let (config, store) = crate::commands::open(&db).await?;
            let owner = crate::commands::owner(&store, &config, user.as_deref()).await?;
            import(&store, &owner.id, &paths).await
        }
        FlowsCommand::Export {
            db,
            flow,
            out,
            user,
        } => {
            let (config, store) = crate::commands::open(&db).await?;
            let owner = crate::commands::owner(&store, &config, user.as_deref()).await?;
            let record = store
                .flow_by_id_or_endpoint(&owner.id, &flowdoc::canonical_ident(&flow))
                .await?
                .with_context(|| format!("no flow {flow:?} for user {:?}", owner.username))?;
            let text = serde_json::to_string_pretty(&flowdoc::export_document(&record))?;
            if out == Path::new("-") {
                println!("{text}");
            } else {
                std::fs::write(&out, text + "\n")
                    .with_context(|| format!("cannot write {}", out.display()))?;
                eprintln!("exported {:?} to {}", record.name, out.display());
            }
            Ok(())
        }
        FlowsCommand::List { db, user } => {
            let (config, store) = crate::commands::open(&db).await?;
            let owner = crate::commands::owner(&store, &config, user.as_deref()).await?;
            for flow in store.list_flows(&owner.id, true).await? {
                let problems = flowdoc::problems_json(&flow).as_array().map_or(0, Vec::len);
                println!(
                    "{}  {}  {}  {}",
                    flow.id,
                    flow.endpoint_name.as_deref().unwrap_or("-"),
                    if problems == 0 {
                        "runnable".to_string()
                    } else {
                        format!("{problems} problems")
                    },
                    flow.name
                );
            }
            Ok(())
        }
    }
}

/// Files named, and the `.json`/`.zip` files inside named directories, sorted.
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read the directory {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                            e.eq_ignore_ascii_case("json") || e.eq_ignore_ascii_case("zip")
                        })
                })
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn read_documents(path: &Path) -> Result<Vec<Value>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() as usize > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    documents_in_upload(&bytes, MAX_FILE_BYTES).map_err(|e| e.to_string())
}

/// Imports each file in its own transaction, so one bad file does not stop the others; prints
/// a line per file and a progress bar on a terminal.
async fn import(store: &Store, user_id: &str, paths: &[PathBuf]) -> anyhow::Result<()> {
    let files = expand(paths)?;
    if files.is_empty() {
        bail!("no .json or .zip files found");
    }
    let progress = std::io::stderr().is_terminal();
    let (mut imported, mut failed) = (0usize, 0usize);
    for (i, file) in files.iter().enumerate() {
        if progress {
            draw_progress(i, files.len());
        }
        let line = match import_file(store, user_id, file).await {
            Ok(lines) => {
                imported += lines.len();
                lines.join("\n")
            }
            Err(reason) => {
                failed += 1;
                format!("{}: not imported: {reason}", file.display())
            }
        };
        if progress {
            eprint!("\r\x1b[2K");
        }
        println!("{line}");
    }
    if progress {
        draw_progress(files.len(), files.len());
        eprintln!();
    }
    println!(
        "{imported} flows imported from {} files, {failed} files not imported",
        files.len()
    );
    if failed > 0 {
        bail!("{failed} of {} files could not be imported", files.len());
    }
    Ok(())
}

fn draw_progress(done: usize, total: usize) {
    const WIDTH: usize = 30;
    let filled = WIDTH * done / total.max(1);
    eprint!(
        "\r[{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled)
    );
    let _ = std::io::stderr().flush();
}

async fn import_file(store: &Store, user_id: &str, file: &Path) -> Result<Vec<String>, String> {
    let docs = read_documents(file)?;
    let mut records: Vec<FlowRecord> = Vec::with_capacity(docs.len());
    for doc in &docs {
        let record = flowdoc::record_from_document(doc, user_id).map_err(|e| e.to_string())?;
        if record.data.is_none() {
            return Err("a flow needs data with nodes and edges".into());
        }
        records.push(record);
    }
    let saved = store
        .save_flows(user_id, records, OnClash::Rename, OnOwnId::Replace)
        .await
        .map_err(|e| e.to_string())?;
    Ok(saved
        .iter()
        .map(|flow| {
            let problems: Vec<flowgate_engine::Problem> =
                serde_json::from_str(&flow.problems).unwrap_or_default();
            let verdict = if problems.is_empty() {
                "runnable".to_string()
            } else {
                let list: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
                format!("{} problems: {}", problems.len(), list.join("; "))
            };
            format!(
                "{}: imported {:?} as {} — {verdict}",
                file.display(),
                flow.name,
                flow.id
            )
        })
        .collect())
}

/// `flowgate check`: exit 0 when every flow is runnable, else one line per problem and exit 1.
pub fn check(files: &[PathBuf]) -> anyhow::Result<bool> {
    let mut clean = true;
    for file in files {
        let docs = match read_documents(file) {
            Ok(docs) => docs,
            Err(reason) => {
                println!("{}: cannot read: {reason}", file.display());
                clean = false;
                continue;
            }
        };
        for doc in docs {
            let name = doc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)")
                .to_string();
            let Some(data) = doc.get("data") else {
                println!("{}: {name:?}: no data (nodes and edges)", file.display());
                clean = false;
                continue;
            };
            match flowgate_engine::parse_flow(data) {
                Err(e) => {
                    println!("{}: {name:?}: {e}", file.display());
                    clean = false;
                }
                Ok(flow) => {
                    let problems = flowgate_engine::check_flow(&flow);
                    if problems.is_empty() {
                        println!("{}: {name:?}: runnable", file.display());
                    }
                    for p in problems {
                        println!(
                            "{}: {name:?}: {} ({}): {}",
                            file.display(),
                            p.node_id,
                            p.component_type,
                            p.message
                        );
                        clean = false;
                    }
                }
            }
        }
    }
    Ok(clean)
}
