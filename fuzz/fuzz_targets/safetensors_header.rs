//! A safetensors file from arbitrary bytes through the header checks `dlm convert` makes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dlm_convert::check_safetensors_bytes(data);
});
