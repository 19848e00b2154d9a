//! The opaque handles `dlm_model` and `dlm_session`, and the tag check that turns a freed or
//! foreign pointer into `DLM_ERR_INVALID_HANDLE` instead of a crash, as far as it can.
//!
//! Each handle starts with a tag word. `_free` overwrites it before the memory goes back to
//! the allocator, so a second free or a call on a freed handle usually sees a wrong tag. This
//! is best-effort only: in C, using a freed pointer is still undefined behaviour (the memory may
//! already hold a new handle, or be unmapped).

use super::status::{DLM_ERR_BUSY, DLM_ERR_INVALID_HANDLE, Failure};
use dlm_runtime::Engine;
use dlm_runtime::decode::GenerateOutput;
use std::cell::UnsafeCell;
use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Tag of a live `dlm_model` ("dlmMODEL").
const MODEL_TAG: u64 = 0x646c_6d4d_4f44_454c;
/// Tag of a live `dlm_session` ("dlmSESSN").
const SESSION_TAG: u64 = 0x646c_6d53_4553_534e;
/// Written over the tag by `_free`.
const FREED_TAG: u64 = 0xdead_dead_dead_dead;

/// A loaded model: read-only, shareable across threads.
#[allow(non_camel_case_types)]
#[repr(C)]
pub struct dlm_model {
    tag: u64,
    /// The engine; sessions hold their own reference, so a model may be freed before them.
    pub(crate) engine: Arc<Engine>,
}

/// What a session keeps from its last generation.
#[derive(Default)]
pub(crate) struct SessionState {
    /// The last run's result, `None` before the first and after a failed one.
    pub out: Option<GenerateOutput>,
    /// The answer text, NUL-terminated; empty when `out` is `None`.
    pub text: CString,
}

/// One generation state bound to a model; used by one thread at a time.
#[allow(non_camel_case_types)]
#[repr(C)]
pub struct dlm_session {
    tag: u64,
    pub(crate) engine: Arc<Engine>,
    /// Set while a call holds `state`; a second caller gets `DLM_ERR_BUSY`.
    busy: AtomicBool,
    state: UnsafeCell<SessionState>,
}

impl dlm_model {
    /// A boxed live handle.
    pub(crate) fn new_boxed(engine: Arc<Engine>) -> *mut dlm_model {
        Box::into_raw(Box::new(dlm_model {
            tag: MODEL_TAG,
            engine,
        }))
    }
}

impl dlm_session {
    /// A boxed live handle.
    pub(crate) fn new_boxed(engine: Arc<Engine>) -> *mut dlm_session {
        Box::into_raw(Box::new(dlm_session {
            tag: SESSION_TAG,
            engine,
            busy: AtomicBool::new(false),
            state: UnsafeCell::new(SessionState::default()),
        }))
    }

    /// Exclusive access to the state until the returned guard drops; `DLM_ERR_BUSY` when
    /// another call (another thread, or this session's own step callback) holds it.
    pub(crate) fn lock(&self) -> Result<StateGuard<'_>, Failure> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(Failure::new(
                DLM_ERR_BUSY,
                "the session is in use by another call (one thread at a time; not from its own callback)",
            ));
        }
        Ok(StateGuard { session: self })
    }

    /// Take the state for good: for `_free`, which must not free a session another call holds.
    pub(crate) fn lock_forever(&self) -> Result<(), Failure> {
        std::mem::forget(self.lock()?);
        Ok(())
    }
}

/// Exclusive access to a session's state; releases the session when dropped (also on panic).
pub(crate) struct StateGuard<'a> {
    session: &'a dlm_session,
}

impl StateGuard<'_> {
    /// The state.
    pub fn state(&mut self) -> &mut SessionState {
        // SAFETY: `busy` was swapped from false to true by `lock`, and only this guard resets
        // it, so no other reference to the state exists while the guard lives.
        unsafe { &mut *self.session.state.get() }
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        self.session.busy.store(false, Ordering::Release);
    }
}

/// Read the tag word at the start of a handle.
///
/// # Safety
/// `p` is non-null and points to readable memory of at least 8 bytes, 8-aligned.
unsafe fn read_tag<T>(p: *const T) -> u64 {
    // SAFETY: per the contract; volatile so the read is not assumed from an earlier one.
    unsafe { std::ptr::read_volatile(p.cast::<u64>()) }
}

/// The model behind `p`, or why not.
///
/// # Safety
/// `p` is NULL, or a pointer returned by `dlm_model_open` (the tag check catches a freed one
/// on a best-effort basis only).
pub(crate) unsafe fn model_ref<'a>(
    p: *const dlm_model,
    arg: &str,
) -> Result<&'a dlm_model, Failure> {
    if p.is_null() {
        return Err(Failure::null(arg));
    }
    if !p.cast::<u64>().is_aligned() {
        return Err(bad_handle(arg, "dlm_model"));
    }
    // SAFETY: non-null and aligned; the caller promises it came from dlm_model_open.
    if unsafe { read_tag(p) } != MODEL_TAG {
        return Err(bad_handle(arg, "dlm_model"));
    }
    // SAFETY: the tag says this is a live dlm_model, which is only ever shared.
    Ok(unsafe { &*p })
}

/// The session behind `p`, or why not.
///
/// # Safety
/// `p` is NULL, or a pointer returned by `dlm_session_new` (the tag check catches a freed one
/// on a best-effort basis only).
pub(crate) unsafe fn session_ref<'a>(
    p: *const dlm_session,
    arg: &str,
) -> Result<&'a dlm_session, Failure> {
    if p.is_null() {
        return Err(Failure::null(arg));
    }
    if !p.cast::<u64>().is_aligned() {
        return Err(bad_handle(arg, "dlm_session"));
    }
    // SAFETY: non-null and aligned; the caller promises it came from dlm_session_new.
    if unsafe { read_tag(p) } != SESSION_TAG {
        return Err(bad_handle(arg, "dlm_session"));
    }
    // SAFETY: the tag says this is a live dlm_session; all mutation goes through `lock`.
    Ok(unsafe { &*p })
}

fn bad_handle(arg: &str, ty: &str) -> Failure {
    Failure::new(
        DLM_ERR_INVALID_HANDLE,
        format!("{arg} is not a live {ty} (already freed, or another kind of pointer)"),
    )
}

/// Poison the tag and free the model.
///
/// # Safety
/// `p` was checked by [`model_ref`] and no reference to it outlives this call.
pub(crate) unsafe fn free_model(p: *mut dlm_model) {
    // SAFETY: `p` is a live handle from Box::into_raw; the volatile write is not elided
    // although the memory is freed right after.
    unsafe {
        std::ptr::write_volatile(&raw mut (*p).tag, FREED_TAG);
        drop(Box::from_raw(p));
    }
}

/// Poison the tag and free the session.
///
/// # Safety
/// `p` was checked by [`session_ref`], is not locked, and no reference to it outlives this call.
pub(crate) unsafe fn free_session(p: *mut dlm_session) {
    // SAFETY: as in `free_model`.
    unsafe {
        std::ptr::write_volatile(&raw mut (*p).tag, FREED_TAG);
        drop(Box::from_raw(p));
    }
}
