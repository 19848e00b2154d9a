//! The `dlm` library: the C ABI over the runtime.
