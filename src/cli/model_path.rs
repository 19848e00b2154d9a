//! Where a command's model comes from: a `.dlm` file, or a Hugging Face folder or llama.cpp GGUF
//! file that is converted once into the cache and reused, or (for `run`) the demo model shipped
//! in `models/`.

use super::convert::convert_folder;
use dlm_runtime::Engine;
use dlm_runtime::model::Model;
use std::error::Error;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// The folders searched for the demo model (`demo/`, a Hugging Face folder, or `demo.dlm`),
/// in order: `$DLM_MODELS`; `./models`; beside the binary (`<bin>/models`,
/// `<bin>/../share/dlm/models`, and `<bin>/../../models` for a cargo build's
/// `target/<profile>/dlm`); `$XDG_DATA_HOME/dlm/models` (or `~/.local/share/dlm/models`).
pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("DLM_MODELS") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("models"));
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(bin.join("models"));
        dirs.push(bin.join("../share/dlm/models"));
        dirs.push(bin.join("../../models"));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d).join("dlm/models"));
    } else if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".local/share/dlm/models"));
    }
    dirs
}

/// The demo model, used when a command is given no `-m`: the first `demo/` folder (with its
/// `config.json`) or `demo.dlm` file of [`model_dirs`].
pub fn default_model() -> Result<PathBuf, Box<dyn Error>> {
    let dirs = model_dirs();
    for d in &dirs {
        let folder = d.join("demo");
        if folder.join("config.json").is_file() {
            return Ok(folder);
        }
        let file = d.join("demo.dlm");
        if file.is_file() {
            return Ok(file);
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "no -m MODEL given and the demo model (demo/ or demo.dlm) is in none of: {}; give -m, or set DLM_MODELS to a folder holding it (the repository's models/)",
        looked.join(", ")
    )
    .into())
}

/// The model a command runs: `-m` when given, else the demo model.
pub fn model_or_demo(model: &Option<PathBuf>) -> Result<PathBuf, Box<dyn Error>> {
    match model {
        Some(m) => Ok(m.clone()),
        None => default_model(),
    }
}

/// Open `path` as a model on `device` (`cpu`, `cuda`, `cuda:N`): a `.dlm` file directly, a
/// Hugging Face folder or GGUF file through the cache (converted with `quant`, or keeping the
/// checkpoint's own types).
pub fn load(path: &Path, device: &str, quant: Option<&str>) -> Result<Model, Box<dyn Error>> {
    Ok(dlm::device::open_model(&resolve(path, quant)?, device)?)
}

/// Open `path` as an engine (model, tokenizer, chat format, defaults) on `device`.
pub fn load_engine(
    path: &Path,
    device: &str,
    quant: Option<&str>,
) -> Result<Engine, Box<dyn Error>> {
    load_engine_with(path, device, quant, false)
}

/// Open `path` as an engine on `device`; with `verify`, every tensor is checked against its
/// checksum and every matrix for NaN/Inf first (`run --verify`).
pub fn load_engine_with(
    path: &Path,
    device: &str,
    quant: Option<&str>,
    verify: bool,
) -> Result<Engine, Box<dyn Error>> {
    Ok(Engine::with_verify(load(path, device, quant)?, verify)?)
}

/// The cached conversion of `path` with `policy`, converted on first use (the size to be
/// written is printed before any of it is).
fn cached_conversion(path: &Path, policy: &str) -> Result<PathBuf, Box<dyn Error>> {
    // Checked before anything is named after it.
    dlm_convert::QuantPolicy::from_name(policy)?;
    let cached = cache_dir()?.join(cache_name(path, policy)?);
    if !cached.exists() {
        eprintln!(
            "converting {} to {} with policy {policy} (first use)",
            path.display(),
            cached.display()
        );
        convert_folder(path, &cached, policy)?;
        // What `dlm cache list` shows as the source; losing it loses only that line.
        let _ = std::fs::write(
            source_note(&cached),
            path.canonicalize()
                .unwrap_or_else(|_| path.to_path_buf())
                .to_string_lossy()
                .as_bytes(),
        );
    }
    Ok(cached)
}

/// The file beside a cached conversion that names its source.
pub fn source_note(cached: &Path) -> PathBuf {
    cached.with_extension("source")
}

/// The `.dlm` file for `path`, converting a Hugging Face folder or a GGUF file on first use:
/// with the `quant` policy when given, else keeping the checkpoint's own storage (a bf16
/// folder stays bf16, a GGUF file keeps its quantization). Concurrent first uses each convert
/// (to unique temporary files) and the last rename wins; every one of them gets a complete
/// file.
pub fn resolve(path: &Path, quant: Option<&str>) -> Result<PathBuf, Box<dyn Error>> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(format!("model {} does not exist", path.display()).into());
        }
        if !dlm_convert::gguf::is_gguf(path) {
            if let Some(q) = quant {
                return Err(format!(
                    "--quant {q} converts a Hugging Face folder or GGUF file; {} is already a .dlm file (dlm convert makes another)",
                    path.display()
                )
                .into());
            }
            return Ok(path.to_path_buf());
        }
        return cached_conversion(path, quant.unwrap_or("keep"));
    }
    if !path.join("config.json").exists() {
        return Err(format!(
            "{} is a folder without config.json: give a .dlm file or a Hugging Face folder",
            path.display()
        )
        .into());
    }
    cached_conversion(path, quant.unwrap_or("keep"))
}

/// For the commands that read a `.dlm` file only (inspect, verify): an error that says what
/// to do with a Hugging Face folder or a GGUF file instead of a format error.
pub fn require_dlm_file(path: &Path) -> Result<(), Box<dyn Error>> {
    let p = path.display();
    if path.is_dir() {
        if path.join("config.json").exists() {
            return Err(format!(
                "{p} is a Hugging Face folder, not a .dlm file: `dlm convert {p} -o model.dlm` makes one (run, chat, serve, eval and bench also take the folder and convert it on first use)"
            )
            .into());
        }
        return Err(format!("{p} is a folder, not a .dlm file").into());
    }
    if path.exists() && dlm_convert::gguf::is_gguf(path) {
        return Err(format!(
            "{p} is a llama.cpp GGUF file, not a .dlm file: `dlm convert {p} -o model.dlm` makes one (run, chat, serve, eval and bench also take it and convert it on first use)"
        )
        .into());
    }
    Ok(())
}

/// The cache folder: `$DLM_CACHE` (taken as given), else `$XDG_CACHE_HOME/dlm`,
/// `~/.cache/dlm`, or a per-user `dlm-cache-<uid>` under the temp dir, created private (0700);
/// one of those that another user owns, or that others can write to, is refused: whoever
/// controls it controls the models run.
pub fn cache_dir() -> Result<PathBuf, Box<dyn Error>> {
    if let Some(d) = std::env::var_os("DLM_CACHE") {
        let dir = PathBuf::from(d);
        create_private_dir(&dir)
            .map_err(|e| format!("cannot create cache folder {}: {e}", dir.display()))?;
        return Ok(dir);
    }
    let dir = if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(d).join("dlm")
    } else if let Some(h) = std::env::var_os("HOME") {
        PathBuf::from(h).join(".cache/dlm")
    } else {
        std::env::temp_dir().join(format!("dlm-cache-{}", user_id()?))
    };
    create_private_dir(&dir)
        .map_err(|e| format!("cannot create cache folder {}: {e}", dir.display()))?;
    check_private_dir(&dir)?;
    Ok(dir)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// The calling user's id: the owner of `/proc/self`, or of a file this process creates (no
/// libc call needed).
#[cfg(unix)]
fn user_id() -> Result<u32, Box<dyn Error>> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(md) = std::fs::metadata("/proc/self") {
        return Ok(md.uid());
    }
    let probe = dlm_formats::TempFile::beside(&std::env::temp_dir().join("dlm-uid-probe"))?;
    Ok(std::fs::metadata(probe.path())?.uid())
}

#[cfg(not(unix))]
fn user_id() -> Result<u32, Box<dyn Error>> {
    Ok(0)
}

#[cfg(unix)]
fn check_private_dir(dir: &Path) -> Result<(), Box<dyn Error>> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(dir)?;
    let uid = user_id()?;
    if !md.is_dir() {
        return Err(format!(
            "cache folder {} is not a directory (a symlink?); remove it or set DLM_CACHE",
            dir.display()
        )
        .into());
    }
    if md.uid() != uid || md.mode() & 0o022 != 0 {
        return Err(format!(
            "cache folder {} is owned by uid {} with mode {:o}; it must be yours and not writable by others (remove it or set DLM_CACHE)",
            dir.display(),
            md.uid(),
            md.mode() & 0o7777
        )
        .into());
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_dir(_: &Path) -> Result<(), Box<dyn Error>> {
    Ok(())
}

/// A name that changes whenever the folder's files (or the one file) change: names, sizes,
/// modification and status-change times (ctime cannot be set back by a user, so an edit that
/// keeps size and mtime still changes it), inode and device (a file replaced by another); and
/// whenever the converter, the `.dlm` format or the dlm binary changes; and per conversion
/// policy. No file is hashed: a 16 GB checkpoint costs a `stat` per file.
fn cache_name(folder: &Path, policy: &str) -> Result<String, Box<dyn Error>> {
    let mut entries: Vec<(std::ffi::OsString, std::fs::Metadata)> = if folder.is_dir() {
        std::fs::read_dir(folder)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            // Follows symlinks: the key is of the data the conversion reads.
            .map(|e| Ok((e.file_name(), std::fs::metadata(e.path())?)))
            .collect::<std::io::Result<_>>()?
    } else {
        let name = folder.file_name().unwrap_or_default().to_os_string();
        vec![(name, std::fs::metadata(folder)?)]
    };
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    policy.to_ascii_lowercase().hash(&mut h);
    dlm_formats::layout::VERSION.hash(&mut h);
    // A rebuilt dlm may convert differently: the binary's identity is part of the name.
    if let Ok(md) = std::env::current_exe().and_then(std::fs::metadata) {
        stat_key(&md).hash(&mut h);
    }
    for (name, md) in entries {
        name.hash(&mut h);
        stat_key(&md).hash(&mut h);
    }
    let canon = folder.canonicalize()?;
    let stem = if folder.is_dir() {
        canon.file_name()
    } else {
        canon.file_stem()
    }
    .map(|s| s.to_string_lossy().into_owned())
    .unwrap_or_else(|| "model".into());
    let policy = policy.to_ascii_lowercase();
    Ok(format!("{stem}-{policy}-{:016x}.dlm", h.finish()))
}

/// What identifies a file's version without reading it.
fn stat_key(md: &std::fs::Metadata) -> Vec<i128> {
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(-1, |d| d.as_nanos() as i128);
    #[allow(unused_mut)]
    let mut key = vec![md.len() as i128, mtime];
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        key.extend([
            md.ino() as i128,
            md.dev() as i128,
            md.ctime() as i128,
            md.ctime_nsec() as i128,
        ]);
    }
    key
}
