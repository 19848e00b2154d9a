//! Status codes, the thread-local last-error message, and the panic boundary that every entry
//! point runs inside.

use dlm_formats::FormatError;
use dlm_runtime::RuntimeError;
use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Success.
pub const DLM_OK: c_int = 0;
/// A required pointer argument was NULL.
pub const DLM_ERR_NULL: c_int = 1;
/// An argument is out of range or the request cannot be honoured (lengths, parameters).
pub const DLM_ERR_INVALID_ARG: c_int = 2;
/// A string argument is not valid UTF-8.
pub const DLM_ERR_UTF8: c_int = 3;
/// Reading the model file failed (missing, unreadable).
pub const DLM_ERR_IO: c_int = 4;
/// The model file is malformed.
pub const DLM_ERR_FORMAT: c_int = 5;
/// The model file or request needs something this build cannot do.
pub const DLM_ERR_UNSUPPORTED: c_int = 6;
/// An output buffer is too small; the needed size was written to the length output.
pub const DLM_ERR_BUFFER_TOO_SMALL: c_int = 7;
/// The step callback returned nonzero and the generation stopped.
pub const DLM_CANCELLED: c_int = 8;
/// A bug: the library panicked; the message is the last error.
pub const DLM_ERR_PANIC: c_int = 9;
/// Text could not be tokenized or ids could not be decoded.
pub const DLM_ERR_TOKENIZER: c_int = 10;
/// The handle is not a live object of the expected type (freed, or another type).
pub const DLM_ERR_INVALID_HANDLE: c_int = 11;
/// The session is in use (a generation is running on it, possibly from its own callback).
pub const DLM_ERR_BUSY: c_int = 12;
/// A buffer the file or the request needs could not be allocated.
pub const DLM_ERR_OUT_OF_MEMORY: c_int = 13;
/// The model file is well-formed but its weights are corrupt (checksum, NaN/Inf norms).
pub const DLM_ERR_CORRUPT: c_int = 14;

/// Every status code with its name in `include/dlm.h` (the header test compares the two).
pub const STATUS_CODES: &[(&str, c_int)] = &[
    ("DLM_OK", DLM_OK),
    ("DLM_ERR_NULL", DLM_ERR_NULL),
    ("DLM_ERR_INVALID_ARG", DLM_ERR_INVALID_ARG),
    ("DLM_ERR_UTF8", DLM_ERR_UTF8),
    ("DLM_ERR_IO", DLM_ERR_IO),
    ("DLM_ERR_FORMAT", DLM_ERR_FORMAT),
    ("DLM_ERR_UNSUPPORTED", DLM_ERR_UNSUPPORTED),
    ("DLM_ERR_BUFFER_TOO_SMALL", DLM_ERR_BUFFER_TOO_SMALL),
    ("DLM_CANCELLED", DLM_CANCELLED),
    ("DLM_ERR_PANIC", DLM_ERR_PANIC),
    ("DLM_ERR_TOKENIZER", DLM_ERR_TOKENIZER),
    ("DLM_ERR_INVALID_HANDLE", DLM_ERR_INVALID_HANDLE),
    ("DLM_ERR_BUSY", DLM_ERR_BUSY),
    ("DLM_ERR_OUT_OF_MEMORY", DLM_ERR_OUT_OF_MEMORY),
    ("DLM_ERR_CORRUPT", DLM_ERR_CORRUPT),
];

/// A failed call: the status it returns and the message kept as the last error.
#[derive(Debug)]
pub(crate) struct Failure {
    /// One of the `DLM_*` codes, never `DLM_OK`.
    pub status: c_int,
    /// What went wrong, for `dlm_last_error`.
    pub message: String,
}

impl Failure {
    /// A failure with `status` and `message`.
    pub fn new(status: c_int, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// `DLM_ERR_NULL` naming the argument.
    pub fn null(arg: &str) -> Self {
        Failure::new(DLM_ERR_NULL, format!("{arg} is NULL"))
    }

    /// `DLM_ERR_INVALID_ARG`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(DLM_ERR_INVALID_ARG, message)
    }
}

impl From<RuntimeError> for Failure {
    fn from(e: RuntimeError) -> Self {
        let status = match &e {
            RuntimeError::Format(FormatError::Io(_)) => DLM_ERR_IO,
            RuntimeError::Format(FormatError::Checksum { .. }) => DLM_ERR_CORRUPT,
            RuntimeError::Format(_) => DLM_ERR_FORMAT,
            RuntimeError::Unsupported(_) => DLM_ERR_UNSUPPORTED,
            RuntimeError::InvalidRequest(_) => DLM_ERR_INVALID_ARG,
            RuntimeError::Tokenizer(_) => DLM_ERR_TOKENIZER,
            RuntimeError::Cancelled => DLM_CANCELLED,
            RuntimeError::OutOfMemory { .. } => DLM_ERR_OUT_OF_MEMORY,
            RuntimeError::Corrupt(_) => DLM_ERR_CORRUPT,
            _ => DLM_ERR_UNSUPPORTED,
        };
        Failure::new(status, crate::error_chain(&e))
    }
}

thread_local! {
    /// The message of the last failure on this thread, NUL-terminated.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Keep `message` as this thread's last error (interior NULs become spaces).
pub(crate) fn set_last_error(message: &str) {
    let bytes: Vec<u8> = message
        .bytes()
        .map(|b| if b == 0 { b' ' } else { b })
        .collect();
    let c = CString::new(bytes).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// A pointer to this thread's last error; valid until the next failing call on this thread.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Run one entry point's body: a failure becomes its status code and last error, a panic
/// becomes `DLM_ERR_PANIC` with the panic's message. Nothing unwinds past this.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Failure>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => DLM_OK,
        Ok(Err(fail)) => {
            set_last_error(&fail.message);
            fail.status
        }
        Err(payload) => {
            set_last_error(&format!("panic in dlm: {}", panic_message(&*payload)));
            DLM_ERR_PANIC
        }
    }
}

/// Like [`guard`] for entry points that return a value instead of a status: `fallback` on
/// failure or panic.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> Result<T, Failure>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(fail)) => {
            set_last_error(&fail.message);
            fallback
        }
        Err(payload) => {
            set_last_error(&format!("panic in dlm: {}", panic_message(&*payload)));
            fallback
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: the pointer is to this thread's live CString.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn panic_becomes_status_and_message() {
        let st = guard(|| panic!("boom {}", 42));
        assert_eq!(st, DLM_ERR_PANIC);
        assert!(last().contains("boom 42"), "{}", last());
        let v = guard_value(7, || panic!("static str"));
        assert_eq!(v, 7);
        assert!(last().contains("static str"));
    }

    #[test]
    fn failure_kept_and_success_leaves_it() {
        assert_eq!(
            guard(|| Err(Failure::invalid("bad\0thing"))),
            DLM_ERR_INVALID_ARG
        );
        assert_eq!(last(), "bad thing");
        assert_eq!(guard(|| Ok(())), DLM_OK);
        assert_eq!(last(), "bad thing");
    }

    #[test]
    fn runtime_errors_map_to_codes() {
        let io = RuntimeError::Format(FormatError::Io(std::io::Error::other("x")));
        assert_eq!(Failure::from(io).status, DLM_ERR_IO);
        assert_eq!(
            Failure::from(RuntimeError::Format(FormatError::BadMagic(*b"abcd"))).status,
            DLM_ERR_FORMAT
        );
        assert_eq!(Failure::from(RuntimeError::Cancelled).status, DLM_CANCELLED);
        assert_eq!(
            Failure::from(RuntimeError::Tokenizer("t".into())).status,
            DLM_ERR_TOKENIZER
        );
        assert_eq!(
            Failure::from(RuntimeError::InvalidRequest("r".into())).status,
            DLM_ERR_INVALID_ARG
        );
        assert_eq!(
            Failure::from(RuntimeError::Unsupported("u".into())).status,
            DLM_ERR_UNSUPPORTED
        );
    }
}
