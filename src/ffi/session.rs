//! `dlm_session_*` and `dlm_generate*`: one generation state bound to a model, the step
//! callback, and the getters of the last output.

use super::args::{c_str, id_slice, out_ptr};
use super::handles::{dlm_model, dlm_session, free_session, model_ref, session_ref};
use super::params::dlm_params;
use super::status::{Failure, guard, guard_value};
use dlm_runtime::chat::Role;
use std::ffi::{CString, c_char, c_int, c_void};

/// Called after every denoising step with the whole canvas (`len` ids: the prompt's
/// `prompt_len` ids, then the generated region), the masks left in the generated region, the
/// step index (from 0) and the caller's `user_data`. Return nonzero to cancel the run.
#[allow(non_camel_case_types)]
pub type dlm_step_callback = Option<
    unsafe extern "C" fn(
        canvas: *const u32,
        len: usize,
        prompt_len: usize,
        masks_left: usize,
        step: usize,
        user_data: *mut c_void,
    ) -> c_int,
>;

/// Make a session on `model` and store it in `*out` (NULL on failure). The session keeps the
/// model's data alive: the model handle may be freed first.
///
/// # Safety
/// `model` is NULL or a live model; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_new(
    model: *const dlm_model,
    out: *mut *mut dlm_session,
) -> c_int {
    guard(|| {
        let out = out_ptr(out, "out")?;
        // SAFETY: checked non-null and aligned.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        // SAFETY: as above.
        unsafe { out.write(dlm_session::new_boxed(m.engine.clone())) };
        Ok(())
    })
}

/// Free a session and its output. NULL is a no-op; a pointer that is not a live session, or a
/// session in use (from its own callback), is left alone and the last error says so.
///
/// # Safety
/// `session` is NULL or from `dlm_session_new`, and is not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_free(session: *mut dlm_session) {
    guard(|| {
        if session.is_null() {
            return Ok(());
        }
        // SAFETY: the caller's contract; the tag check is best-effort.
        let s = unsafe { session_ref(session, "session") }?;
        s.lock_forever()?;
        // SAFETY: live, and now held by no call; the caller gives up its pointer.
        unsafe { free_session(session) };
        Ok(())
    });
}

enum Prompt<'a> {
    Text(&'a str),
    Ids(&'a [u32]),
}

fn generate(
    s: &dlm_session,
    prompt: Prompt<'_>,
    params: *const dlm_params,
    cb: dlm_step_callback,
    user_data: *mut c_void,
) -> Result<(), Failure> {
    let mut guard = s.lock()?;
    let state = guard.state();
    state.out = None;
    state.text = CString::default();
    let engine = &*s.engine;
    let defaults = dlm_params::from_decode(engine.defaults(), engine.chat().is_some())?;
    let c_params = if params.is_null() {
        defaults
    } else {
        if !params.is_aligned() {
            return Err(Failure::invalid("params is misaligned"));
        }
        // SAFETY: non-null and aligned; the caller gives a dlm_params of its struct_size.
        unsafe { dlm_params::read_sized(params, defaults) }?
    };
    let decode = c_params.to_decode()?;
    let ids_owned;
    let ids: &[u32] = match prompt {
        Prompt::Ids(ids) => ids,
        Prompt::Text(text) if c_params.chat != 0 => {
            ids_owned = engine.chat_ids(&[(Role::User, text)])?;
            &ids_owned
        }
        Prompt::Text(text) => {
            ids_owned = engine.tokenizer().encode(text);
            &ids_owned
        }
    };
    let out = engine.generate(ids, &decode, &mut |ev| {
        let Some(f) = cb else { return true };
        // SAFETY: the caller gives a valid callback; the canvas pointer and length describe a
        // live slice for the duration of the call.
        let stop = unsafe {
            f(
                ev.canvas.as_ptr(),
                ev.canvas.len(),
                ev.prompt_len,
                ev.masks_left,
                ev.step,
                user_data,
            )
        };
        stop == 0
    })?;
    let text = engine.answer_text(&out)?;
    state.text = CString::new(text.replace('\0', "\u{fffd}"))
        .map_err(|_| Failure::invalid("answer text holds a NUL"))?;
    state.out = Some(out);
    Ok(())
}

/// Generate an answer to `prompt` (UTF-8, NUL-terminated), wrapped in the chat template when
/// `params->chat` is set. `params` NULL means the model's defaults. `callback` may be NULL.
/// Returns `DLM_CANCELLED` when the callback asked to stop; the output is then empty.
///
/// # Safety
/// `session` is NULL or a live session; `prompt` is NULL or NUL-terminated; `params` is NULL
/// or readable; `callback` is NULL or a valid function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_generate(
    session: *mut dlm_session,
    prompt: *const c_char,
    params: *const dlm_params,
    callback: dlm_step_callback,
    user_data: *mut c_void,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(session, "session") }?;
        // SAFETY: as above.
        let text = unsafe { c_str(prompt, "prompt") }?;
        generate(s, Prompt::Text(text), params, callback, user_data)
    })
}

/// Like `dlm_generate` from `n` prompt ids (no template; `params->chat` is ignored).
///
/// # Safety
/// As `dlm_generate`; `ids` is NULL or holds `n` ids.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_generate_ids(
    session: *mut dlm_session,
    ids: *const u32,
    n: usize,
    params: *const dlm_params,
    callback: dlm_step_callback,
    user_data: *mut c_void,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(session, "session") }?;
        // SAFETY: as above.
        let ids = unsafe { id_slice(ids, n, "ids") }?;
        generate(s, Prompt::Ids(ids), params, callback, user_data)
    })
}

/// The answer text of the last generation (up to the first stop token, special tokens left
/// out), "" when there is none. Valid until the next generate on this session or its free.
/// NULL for an invalid or busy session (see `dlm_last_error`).
///
/// # Safety
/// `session` is NULL or a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_text(session: *const dlm_session) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(session, "session") }?;
        let mut g = s.lock()?;
        Ok(g.state().text.as_ptr())
    })
}

/// The whole canvas of the last generation (prompt ids, then the generated ids, stop and pad
/// tokens included) in `*ids` and `*n`; NULL and 0 when there is none. Valid as the text.
///
/// # Safety
/// `session` is NULL or a live session; `ids` and `n` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_output_ids(
    session: *const dlm_session,
    ids: *mut *const u32,
    n: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(session, "session") }?;
        let ids = out_ptr(ids, "ids")?;
        let n = out_ptr(n, "n")?;
        let mut g = s.lock()?;
        let (p, len) = match &g.state().out {
            Some(o) => (o.canvas.as_ptr(), o.canvas.len()),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: both checked non-null and aligned.
        unsafe {
            ids.write(p);
            n.write(len);
        }
        Ok(())
    })
}

/// Read one count of the last output (0 when there is none).
fn output_count(
    session: *const dlm_session,
    value: *mut usize,
    get: fn(&dlm_runtime::decode::GenerateOutput) -> usize,
) -> c_int {
    guard(|| {
        // SAFETY: the exported callers pass their caller's contract on.
        let s = unsafe { session_ref(session, "session") }?;
        let value = out_ptr(value, "value")?;
        let mut g = s.lock()?;
        let v = g.state().out.as_ref().map_or(0, get);
        // SAFETY: checked non-null and aligned.
        unsafe { value.write(v) };
        Ok(())
    })
}

/// Forward passes of the last generation in `*nfe` (0 when there is none).
///
/// # Safety
/// `session` is NULL or a live session; `nfe` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_nfe(session: *const dlm_session, nfe: *mut usize) -> c_int {
    output_count(session, nfe, |o| o.nfe)
}

/// Length of the prompt at the start of the last output's canvas in `*prompt_len`.
///
/// # Safety
/// `session` is NULL or a live session; `prompt_len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_prompt_len(
    session: *const dlm_session,
    prompt_len: *mut usize,
) -> c_int {
    output_count(session, prompt_len, |o| o.prompt_len)
}
