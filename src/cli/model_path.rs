//! Where a command's model comes from: a `.dlm` file, or a Hugging Face folder or llama.cpp GGUF
//! file that is converted once into the cache and reused, or (for `run`) the demo model shipped
//! in `models/`.

use super::convert::convert_folder;
use dlm_runtime::Engine;
use dlm_runtime::model::Model;
use std::error::Error;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// The model shipped with the repository, used when `run` is given no `-m`.
pub fn default_model() -> PathBuf {
    let here = PathBuf::from("models/demo");
    if here.join("config.json").exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/demo")
}

/// Open `path` as a model on `device` (`cpu`, `cuda`, `cuda:N`): a `.dlm` file directly, a
/// Hugging Face folder through the cache.
pub fn load(path: &Path, device: &str) -> Result<Model, Box<dyn Error>> {
    Ok(dlm::device::open_model(&resolve(path)?, device)?)
}

/// Open `path` as an engine (model, tokenizer, chat format, defaults) on `device`.
pub fn load_engine(path: &Path, device: &str) -> Result<Engine, Box<dyn Error>> {
    load_engine_with(path, device, false)
}

/// Open `path` as an engine on `device`; with `verify`, every tensor is checked against its
/// checksum and every matrix for NaN/Inf first (`run --verify`).
pub fn load_engine_with(path: &Path, device: &str, verify: bool) -> Result<Engine, Box<dyn Error>> {
    Ok(Engine::with_verify(load(path, device)?, verify)?)
}

/// The cached conversion of `path` with `policy`, converted on first use.
fn cached_conversion(path: &Path, policy: &str) -> Result<PathBuf, Box<dyn Error>> {
    let cached = cache_dir()?.join(cache_name(path)?);
    if !cached.exists() {
        eprintln!(
            "converting {} to {} (first use)",
            path.display(),
            cached.display()
        );
        convert_folder(path, &cached, policy)?;
    }
    Ok(cached)
}

/// The `.dlm` file for `path`, converting a Hugging Face folder at f32 (or a GGUF file with its
/// own quantization) on first use. Concurrent first uses each convert (to unique temporary
/// files) and the last rename wins; every one of them gets a complete file.
pub fn resolve(path: &Path) -> Result<PathBuf, Box<dyn Error>> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(format!("model {} does not exist", path.display()).into());
        }
        if !dlm_convert::gguf::is_gguf(path) {
            return Ok(path.to_path_buf());
        }
        return cached_conversion(path, "keep");
    }
    if !path.join("config.json").exists() {
        return Err(format!(
            "{} is a folder without config.json: give a .dlm file or a Hugging Face folder",
            path.display()
        )
        .into());
    }
    cached_conversion(path, "f32")
}

/// The cache folder: `$DLM_CACHE` (taken as given), else `$XDG_CACHE_HOME/dlm`,
/// `~/.cache/dlm`, or a per-user `dlm-cache-<uid>` under the temp dir, created private (0700);
/// one of those that another user owns, or that others can write to, is refused: whoever
/// controls it controls the models run.
fn cache_dir() -> Result<PathBuf, Box<dyn Error>> {
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
/// whenever the converter, the `.dlm` format or the dlm binary changes. No file is hashed: a
/// 16 GB checkpoint costs a `stat` per file.
fn cache_name(folder: &Path) -> Result<String, Box<dyn Error>> {
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
    Ok(format!("{stem}-{:016x}.dlm", h.finish()))
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
