//! A Jinja chat template from arbitrary bytes through the reducer `dlm convert` uses: every
//! template either reduces (and the pieces re-assemble its renders, which `reduce` checks) or
//! is an error, within the fuel, nesting and output bounds; never a hang or an abort.
#![no_main]

use dlm_convert::chat::{Template, reduce};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = Template::new(src, "<s>", "</s>") {
        let _ = reduce(&t);
    }
});
