//! A file written under a unique temporary name beside its target and renamed onto it when
//! complete. The name is created exclusively (`O_CREAT | O_EXCL`), so a file or symlink that
//! someone planted under a predictable name is never opened or followed, and two writers of one
//! target never share a temporary file: the last complete one wins the rename.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// An open temporary file beside `target`; removed when dropped unless [`TempFile::persist`]
/// renamed it onto the target.
#[derive(Debug)]
pub struct TempFile {
    file: Option<File>,
    path: PathBuf,
    target: PathBuf,
}

/// Distinguishes temporary names made by one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    /// Create a new, empty temporary file in the directory of `target`, named
    /// `.<target name>.<pid>.<unique>.tmp`.
    pub fn beside(target: &Path) -> io::Result<TempFile> {
        let name = target.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("output path {} has no file name", target.display()),
            )
        })?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        // A name is tried a few times: another process may pick the same one (O_EXCL says so).
        for _ in 0..64 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let unique = nanos
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(n.wrapping_mul(0xBF58_476D_1CE4_E5B9));
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".{}.{unique:016x}.tmp", std::process::id()));
            let path = dir.join(tmp_name);
            let mut opts = OpenOptions::new();
            opts.read(true).write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o644);
            }
            match opts.open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        file: Some(file),
                        path,
                        target: target.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free temporary name beside {}", target.display()),
        ))
    }

    /// The open file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("TempFile used after persist")
    }

    /// Take the open file out (to wrap it in a buffer); the temporary name stays owned.
    pub fn take_file(&mut self) -> Option<File> {
        self.file.take()
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// fsync `file` (the temporary file's handle), rename onto the target and make the rename
    /// durable (best effort for the directory).
    pub fn persist_file(mut self, file: File) -> io::Result<()> {
        file.sync_all()?;
        drop(file);
        self.file = None;
        fs::rename(&self.path, &self.target)?;
        // Renamed: nothing to remove any more.
        self.path = PathBuf::new();
        if let Some(dir) = self.target.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// fsync, rename onto the target.
    pub fn persist(mut self) -> io::Result<()> {
        let file = self.file.take().ok_or_else(|| {
            io::Error::other("the temporary file was already taken out of its TempFile")
        })?;
        self.persist_file(file)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Write `data` to `target` through a [`TempFile`]: complete or not at all. An error names
/// the path and leaves no temporary file.
pub fn write_atomic(target: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", target.display()));
    let mut tmp = TempFile::beside(target).map_err(named)?;
    tmp.file().write_all(data).map_err(named)?;
    tmp.persist().map_err(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dlm-tempfile-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn unique_names_and_cleanup() {
        let d = dir("unique");
        let target = d.join("out.bin");
        let a = TempFile::beside(&target).unwrap();
        let b = TempFile::beside(&target).unwrap();
        assert_ne!(a.path(), b.path());
        assert!(a.path().exists() && b.path().exists());
        let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
        drop(a);
        assert!(!pa.exists());
        b.persist().unwrap();
        assert!(!pb.exists());
        assert!(target.exists());
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).ok();
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_not_followed() {
        let d = dir("symlink");
        let victim = d.join("victim");
        fs::write(&victim, b"keep").unwrap();
        let target = d.join("out.bin");
        // The old fixed temporary name, planted as a symlink to the victim.
        std::os::unix::fs::symlink(&victim, d.join("out.bin.tmp")).unwrap();
        write_atomic(&target, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(&target).unwrap(), b"new");
        fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn errors_name_the_path() {
        let target = Path::new("/nonexistent-dlm-dir/x.npy");
        let e = write_atomic(target, b"x").unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dlm-dir/x.npy"), "{e}");
    }
}
