//! The C ABI of `include/dlm.h`: opaque handles, status codes, a thread-local last error, a
//! step callback, and a panic boundary around every entry point.
//!
//! Every exported function checks its pointers (NULL → `DLM_ERR_NULL`), its strings (not
//! UTF-8 → `DLM_ERR_UTF8`), its lengths (past `DLM_MAX_IDS` → `DLM_ERR_INVALID_ARG`) and its
//! handles (a tag word; a freed handle → `DLM_ERR_INVALID_HANDLE`, best-effort), and runs
//! inside `catch_unwind` so that no panic crosses into C.

mod args;
mod handles;
mod model;
mod params;
mod session;
mod status;

pub use handles::{dlm_model, dlm_session};
pub use model::{
    DLM_OPEN_VERIFY, dlm_detokenize, dlm_model_free, dlm_model_open, dlm_model_open_on,
    dlm_model_open_verified, dlm_params_default, dlm_tokenize,
};
pub use params::*;
pub use session::{
    dlm_generate, dlm_generate_ids, dlm_session_free, dlm_session_new, dlm_session_nfe,
    dlm_session_output_ids, dlm_session_prompt_len, dlm_session_text, dlm_step_callback,
};
pub use status::*;

use std::ffi::c_char;

/// The library version, e.g. "0.1.0"; a static string.
#[unsafe(no_mangle)]
pub extern "C" fn dlm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last failed call on this thread ("" when none failed). Valid until the
/// next failing call on this thread; successful calls leave it unchanged.
#[unsafe(no_mangle)]
pub extern "C" fn dlm_last_error() -> *const c_char {
    last_error_ptr()
}
