//! Reading the raw arguments of a C call: strings, id arrays and output pointers, each check
//! naming the argument in the error.

use super::params::DLM_MAX_IDS;
use super::status::{DLM_ERR_UTF8, Failure};
use std::ffi::{CStr, c_char};

/// A NUL-terminated string argument as bytes.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn c_bytes<'a>(p: *const c_char, arg: &str) -> Result<&'a [u8], Failure> {
    if p.is_null() {
        return Err(Failure::null(arg));
    }
    // SAFETY: non-null, NUL-terminated per the caller's contract.
    Ok(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// As [`c_bytes`].
pub(crate) unsafe fn c_str<'a>(p: *const c_char, arg: &str) -> Result<&'a str, Failure> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { c_bytes(p, arg) }?;
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::new(
            DLM_ERR_UTF8,
            format!("{arg} is not valid UTF-8 (bad byte at {})", e.valid_up_to()),
        )
    })
}

/// An array of `n` token ids; NULL is allowed when `n` is 0.
///
/// # Safety
/// `p` is NULL or points to `n` readable `u32` that live for `'a`.
pub(crate) unsafe fn id_slice<'a>(
    p: *const u32,
    n: usize,
    arg: &str,
) -> Result<&'a [u32], Failure> {
    if n > DLM_MAX_IDS {
        return Err(Failure::invalid(format!(
            "{arg}: {n} ids is more than the limit of {DLM_MAX_IDS}"
        )));
    }
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::null(arg));
    }
    if !p.is_aligned() {
        return Err(Failure::invalid(format!(
            "{arg} is not aligned for uint32_t"
        )));
    }
    // SAFETY: non-null, aligned, `n` elements readable per the caller; n ≤ 2^24 so the byte
    // length fits isize.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Check an output pointer and return it.
pub(crate) fn out_ptr<T>(p: *mut T, arg: &str) -> Result<*mut T, Failure> {
    if p.is_null() {
        Err(Failure::null(arg))
    } else if !p.is_aligned() {
        Err(Failure::invalid(format!("{arg} is misaligned")))
    } else {
        Ok(p)
    }
}
