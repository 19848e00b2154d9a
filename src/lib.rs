//! The `dlm` library: the C ABI over the runtime (`include/dlm.h`), built as a static and a
//! shared library. Rust programs use `dlm-runtime` directly.

pub mod device;
pub mod ffi;

/// `error: cause: cause` as one line, leaving out a cause whose text the message already
/// contains. The CLI prints it; the C ABI keeps it as the last error.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    msg
}
