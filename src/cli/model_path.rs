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
    Ok(Engine::new(load(path, device)?)?)
}

/// The `.dlm` file for `path`, converting a Hugging Face folder at f32 (or a GGUF file with its
/// own quantization) on first use.
pub fn resolve(path: &Path) -> Result<PathBuf, Box<dyn Error>> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(format!("model {} does not exist", path.display()).into());
        }
        if !dlm_convert::gguf::is_gguf(path) {
            return Ok(path.to_path_buf());
        }
        let cached = cache_dir()?.join(cache_name(path)?);
        if !cached.exists() {
            eprintln!(
                "converting {} to {} (first use)",
                path.display(),
                cached.display()
            );
            convert_folder(path, &cached, "keep")?;
        }
        return Ok(cached);
    }
    if !path.join("config.json").exists() {
        return Err(format!(
            "{} is a folder without config.json: give a .dlm file or a Hugging Face folder",
            path.display()
        )
        .into());
    }
    let cached = cache_dir()?.join(cache_name(path)?);
    if !cached.exists() {
        eprintln!(
            "converting {} to {} (first use)",
            path.display(),
            cached.display()
        );
        convert_folder(path, &cached, "f32")?;
    }
    Ok(cached)
}

fn cache_dir() -> Result<PathBuf, Box<dyn Error>> {
    let dir = if let Some(d) = std::env::var_os("DLM_CACHE") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(d).join("dlm")
    } else if let Some(h) = std::env::var_os("HOME") {
        PathBuf::from(h).join(".cache/dlm")
    } else {
        std::env::temp_dir().join("dlm-cache")
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create cache folder {}: {e}", dir.display()))?;
    Ok(dir)
}

/// A name that changes whenever the folder's files (or the one file) change (names, sizes,
/// modification times) or the dlm binary changes.
fn cache_name(folder: &Path) -> Result<String, Box<dyn Error>> {
    let mut entries: Vec<(std::ffi::OsString, std::fs::Metadata)> = if folder.is_dir() {
        std::fs::read_dir(folder)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| Ok((e.file_name(), e.metadata()?)))
            .collect::<std::io::Result<_>>()?
    } else {
        let name = folder.file_name().unwrap_or_default().to_os_string();
        vec![(name, std::fs::metadata(folder)?)]
    };
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    // A rebuilt dlm may convert differently: the binary's identity is part of the name.
    if let Ok(md) = std::env::current_exe().and_then(std::fs::metadata) {
        md.len().hash(&mut h);
        if let Ok(t) = md.modified() {
            t.hash(&mut h);
        }
    }
    for (name, md) in entries {
        name.hash(&mut h);
        md.len().hash(&mut h);
        if let Ok(t) = md.modified() {
            t.hash(&mut h);
        }
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
