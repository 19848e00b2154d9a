//! `dlm_model_*`, tokenizing and default parameters: everything that needs only a model.

use super::args::{c_bytes, c_str, id_slice, out_ptr};
use super::handles::{dlm_model, free_model, model_ref};
use super::params::dlm_params;
use super::status::{DLM_ERR_BUFFER_TOO_SMALL, Failure, guard};
use dlm_runtime::Engine;
use std::ffi::{c_char, c_int};
use std::path::PathBuf;
use std::sync::Arc;

// The model is shared across threads by contract.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<Engine>();
};

fn path_of(bytes: &[u8]) -> Result<PathBuf, Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes)
            .map(PathBuf::from)
            .map_err(|_| Failure::new(super::status::DLM_ERR_UTF8, "path is not valid UTF-8"))
    }
}

/// Open the `.dlm` file at `path` and store a new model handle in `*out` (NULL on failure).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or points to writable storage
/// for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_model_open(path: *const c_char, out: *mut *mut dlm_model) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { open_with(path, std::ptr::null(), out, 0) }
}

/// Check every tensor against its checksum while opening (`dlm_model_open_verified`).
pub const DLM_OPEN_VERIFY: u32 = 1;

/// [`dlm_model_open`] with `flags`: `DLM_OPEN_VERIFY` also checks every tensor against its
/// checksum (reads the whole file once; flipped bytes give `DLM_ERR_CORRUPT`). Unknown bits are
/// `DLM_ERR_INVALID_ARG`.
///
/// # Safety
/// As [`dlm_model_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_model_open_verified(
    path: *const c_char,
    flags: u32,
    out: *mut *mut dlm_model,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { open_with(path, std::ptr::null(), out, flags) }
}

/// [`dlm_model_open`] on `device`: `"cpu"` (also when NULL), `"cuda"` or `"cuda:N"` (a
/// library built with the `cuda` feature, on a machine with an NVIDIA driver and GPU).
///
/// # Safety
/// `path` and `device` are NULL or NUL-terminated strings; `out` is NULL or points to
/// writable storage for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_model_open_on(
    path: *const c_char,
    device: *const c_char,
    out: *mut *mut dlm_model,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { open_with(path, device, out, 0) }
}

/// # Safety
/// As [`dlm_model_open_on`].
unsafe fn open_with(
    path: *const c_char,
    device: *const c_char,
    out: *mut *mut dlm_model,
    flags: u32,
) -> c_int {
    guard(|| {
        let out = out_ptr(out, "out")?;
        // SAFETY: checked non-null and aligned; the caller gives writable storage.
        unsafe { out.write(std::ptr::null_mut()) };
        if flags & !DLM_OPEN_VERIFY != 0 {
            return Err(Failure::invalid(format!("unknown open flags {flags:#x}")));
        }
        // SAFETY: the caller's contract on `path`.
        let path = path_of(unsafe { c_bytes(path, "path") }?)?;
        if path.as_os_str().is_empty() {
            return Err(Failure::invalid("path is empty"));
        }
        let device = if device.is_null() {
            "cpu".to_string()
        } else {
            // SAFETY: the caller's contract on `device`.
            let bytes = unsafe { c_bytes(device, "device") }?;
            std::str::from_utf8(bytes)
                .map_err(|_| {
                    Failure::new(super::status::DLM_ERR_UTF8, "device is not valid UTF-8")
                })?
                .to_string()
        };
        let engine = crate::device::open_model(&path, &device)
            .and_then(|m| Engine::with_verify(m, flags & DLM_OPEN_VERIFY != 0))
            .map_err(|e| {
                let mut f = Failure::from(e);
                f.message = format!("{}: {}", path.display(), f.message);
                f
            })?;
        // SAFETY: as above.
        unsafe { out.write(dlm_model::new_boxed(Arc::new(engine))) };
        Ok(())
    })
}

/// Free a model. NULL is a no-op; a pointer that is not a live model is left alone (and the
/// last error says so). Sessions made from it stay usable.
///
/// # Safety
/// `model` is NULL or from `dlm_model_open`, and is not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_model_free(model: *mut dlm_model) {
    guard(|| {
        if model.is_null() {
            return Ok(());
        }
        // SAFETY: the caller's contract; the tag check catches a freed handle best-effort.
        unsafe { model_ref(model, "model") }?;
        // SAFETY: a live handle, and the caller gives up its pointer.
        unsafe { free_model(model) };
        Ok(())
    });
}

/// Token ids of `text` (no BOS/EOS added; special tokens written in the text become their
/// ids). Writes the count to `*n_out`; when it exceeds `cap`, nothing is written to `ids` and
/// the status is `DLM_ERR_BUFFER_TOO_SMALL` (`ids` may be NULL when `cap` is 0).
///
/// # Safety
/// `model` is NULL or a live model; `text` is NULL or NUL-terminated; `ids` is NULL or has
/// room for `cap` ids; `n_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_tokenize(
    model: *const dlm_model,
    text: *const c_char,
    ids: *mut u32,
    cap: usize,
    n_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract on each pointer.
        let m = unsafe { model_ref(model, "model") }?;
        let n_out = out_ptr(n_out, "n_out")?;
        // SAFETY: as above.
        let text = unsafe { c_str(text, "text") }?;
        let got = m.engine.tokenizer().encode(text);
        // SAFETY: checked non-null and aligned.
        unsafe { n_out.write(got.len()) };
        if got.len() > cap {
            return Err(Failure::new(
                DLM_ERR_BUFFER_TOO_SMALL,
                format!("{} ids do not fit in cap {cap}", got.len()),
            ));
        }
        if got.is_empty() {
            return Ok(());
        }
        let ids = out_ptr(ids, "ids")?;
        // SAFETY: `ids` has room for `cap` ≥ got.len() ids per the caller; no overlap with a
        // fresh Vec.
        unsafe { std::ptr::copy_nonoverlapping(got.as_ptr(), ids, got.len()) };
        Ok(())
    })
}

/// The text of `n` ids (special tokens included) as UTF-8 plus a NUL, into `buf` of `cap`
/// bytes. Writes the text's length (without the NUL) to `*len_out`; when `cap` is less than
/// that plus one, nothing is written to `buf` and the status is `DLM_ERR_BUFFER_TOO_SMALL`.
/// Unknown ids are `DLM_ERR_TOKENIZER`; bytes that do not form UTF-8 become U+FFFD.
///
/// # Safety
/// `model` is NULL or a live model; `ids` is NULL or holds `n` ids; `buf` is NULL or has room
/// for `cap` bytes; `len_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_detokenize(
    model: *const dlm_model,
    ids: *const u32,
    n: usize,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract on each pointer.
        let m = unsafe { model_ref(model, "model") }?;
        let len_out = out_ptr(len_out, "len_out")?;
        // SAFETY: as above.
        let ids = unsafe { id_slice(ids, n, "ids") }?;
        let text = m.engine.tokenizer().decode(ids, false)?;
        // SAFETY: checked non-null and aligned.
        unsafe { len_out.write(text.len()) };
        if text.len() >= cap {
            return Err(Failure::new(
                DLM_ERR_BUFFER_TOO_SMALL,
                format!("{} bytes and a NUL do not fit in cap {cap}", text.len()),
            ));
        }
        let buf = out_ptr(buf, "buf")?;
        // SAFETY: `buf` has room for cap > text.len() bytes per the caller.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            buf.add(text.len()).write(0);
        }
        Ok(())
    })
}

/// Fill the caller's `dlm_params` of `size` bytes (`sizeof(dlm_params)` as the caller
/// compiled it) with the model's decoding defaults (from the file's `diffusion.*` keys),
/// `chat` set when the model has a chat template, and `struct_size`/`version` set.
///
/// # Safety
/// `model` is NULL or a live model; `out` is NULL or writable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_params_default(
    model: *const dlm_model,
    out: *mut dlm_params,
    size: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        let out = out_ptr(out, "out")?;
        let p = dlm_params::from_decode(m.engine.defaults(), m.engine.chat().is_some())?;
        // SAFETY: checked non-null and aligned; writable for `size` bytes by contract.
        unsafe { p.write_sized(out, size) }
    })
}
