//! `dlm cache`: the conversions that `-m FOLDER` and `-m FILE.gguf` made on first use.

use super::convert::human_bytes;
use super::{CliResult, model_path};
use dlm_formats::{DlmFile, keys};
use std::path::{Path, PathBuf};

/// List or remove the cached conversions of Hugging Face folders and GGUF files.
///
/// A model given as a folder or GGUF file is converted once into the cache folder
/// ($DLM_CACHE, else $XDG_CACHE_HOME/dlm or ~/.cache/dlm) and reused while its files are
/// unchanged; a rebuilt dlm or a changed checkpoint makes a new entry, so old ones stay
/// until removed.
///
/// Examples:
///   dlm cache list
///   dlm cache remove demo            # every conversion of a folder named demo
///   dlm cache remove --all
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Every cached conversion: name, size, storage policy and source.
    List {
        /// One JSON document: `{"dir", "entries": [{"name", "bytes", "policy", "source"}]}`.
        #[arg(long)]
        json: bool,
    },
    /// Remove entries: by file name (with or without `.dlm`), or every conversion of a source
    /// named NAME (the folder or GGUF file's name), or --all.
    Remove {
        /// The entry or source name.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Remove every entry.
        #[arg(long)]
        all: bool,
    },
}

/// One cached conversion.
struct Entry {
    path: PathBuf,
    bytes: u64,
    policy: String,
    source: String,
}

impl Entry {
    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The source's name as the entry's file name starts: `demo` of `demo-keep-0123….dlm`.
    fn source_stem(&self) -> String {
        let name = self.file_name();
        let name = name.strip_suffix(".dlm").unwrap_or(&name);
        // `<stem>-<policy>-<hash>`: the stem may itself contain dashes.
        let mut parts: Vec<&str> = name.rsplitn(3, '-').collect();
        parts.reverse();
        if parts.len() == 3 {
            parts[0].to_string()
        } else {
            name.to_string()
        }
    }
}

fn entries(dir: &Path) -> Result<Vec<Entry>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the cache folder {}: {e}", dir.display()))?;
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "dlm") || !path.is_file() {
            continue;
        }
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let policy = DlmFile::open_mapped(&path)
            .ok()
            .and_then(|(_, f)| {
                f.get_str(keys::general::QUANT_POLICY)
                    .ok()
                    .map(String::from)
            })
            .unwrap_or_else(|| "?".into());
        let source =
            std::fs::read_to_string(model_path::source_note(&path)).unwrap_or_else(|_| "?".into());
        out.push(Entry {
            path,
            bytes,
            policy,
            source,
        });
    }
    out.sort_by_key(|a| a.file_name());
    Ok(out)
}

pub fn run(a: Args) -> CliResult {
    let dir = model_path::cache_dir()?;
    let list = entries(&dir)?;
    match a.action {
        Action::List { json } => {
            if json {
                use super::json::string;
                let items: Vec<String> = list
                    .iter()
                    .map(|e| {
                        format!(
                            "{{\"name\":{},\"bytes\":{},\"policy\":{},\"source\":{}}}",
                            string(&e.file_name()),
                            e.bytes,
                            string(&e.policy),
                            string(&e.source)
                        )
                    })
                    .collect();
                println!(
                    "{{\"dir\":{},\"entries\":[{}]}}",
                    string(&dir.display().to_string()),
                    items.join(",")
                );
                return Ok(());
            }
            let total: u64 = list.iter().map(|e| e.bytes).sum();
            println!(
                "{}: {} entr{}, {}",
                dir.display(),
                list.len(),
                if list.len() == 1 { "y" } else { "ies" },
                human_bytes(total)
            );
            for e in &list {
                println!(
                    "  {:<40} {:>10} {:<8} {}",
                    e.file_name(),
                    human_bytes(e.bytes),
                    e.policy,
                    e.source
                );
            }
            Ok(())
        }
        Action::Remove { name, all } => {
            let chosen: Vec<&Entry> = match &name {
                _ if all => list.iter().collect(),
                Some(n) => {
                    let file = if n.ends_with(".dlm") {
                        n.clone()
                    } else {
                        format!("{n}.dlm")
                    };
                    list.iter()
                        .filter(|e| e.file_name() == file || e.source_stem() == *n)
                        .collect()
                }
                None => Vec::new(),
            };
            if chosen.is_empty() {
                return Err(format!(
                    "no cache entry named {} in {} (dlm cache list shows them)",
                    name.as_deref().unwrap_or("*"),
                    dir.display()
                )
                .into());
            }
            let mut freed = 0;
            for e in chosen {
                std::fs::remove_file(&e.path)
                    .map_err(|err| format!("cannot remove {}: {err}", e.path.display()))?;
                let _ = std::fs::remove_file(model_path::source_note(&e.path));
                freed += e.bytes;
                eprintln!("removed {}", e.file_name());
            }
            eprintln!("freed {}", human_bytes(freed));
            Ok(())
        }
    }
}
