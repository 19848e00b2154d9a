//! The `dlm` library: the C ABI over the runtime (`include/dlm.h`), built as a static and a
//! shared library. Rust programs use `dlm-runtime` directly.

pub mod ffi;
