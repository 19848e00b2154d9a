//! The `dlm` command-line tool.
#![forbid(unsafe_code)]

fn main() {}
