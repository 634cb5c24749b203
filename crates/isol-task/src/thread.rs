//! Threads inherit as clone(2) does under the task isolation patch: a
//! thread created by a configured thread gets its configuration (and
//! activation) when the inheritance says so, at the moment it is created.
//!
//! User space has no hook at clone and cannot ask the kernel which thread
//! created another, so this wraps pthread_create(3): the creating thread's
//! state is taken as it calls, and installed in the new thread before its
//! start routine runs. A dynamically linked program resolves
//! pthread_create here first (libisol.so comes before libc in its link
//! order; a Rust program links this crate before std), and the real one is
//! found with dlsym(RTLD_NEXT). Fully static programs (crt-static) cannot
//! have both definitions; there threads start without isolation state, as
//! the documentation says.

#[cfg(all(feature = "inherit-threads", not(target_feature = "crt-static")))]
mod imp {
    use libc::{c_int, c_void, pthread_attr_t, pthread_t};
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Start = extern "C" fn(*mut c_void) -> *mut c_void;
    type Create =
        unsafe extern "C" fn(*mut pthread_t, *const pthread_attr_t, Start, *mut c_void) -> c_int;

    static REAL: AtomicUsize = AtomicUsize::new(0);

    fn real() -> Option<Create> {
        let mut p = REAL.load(Ordering::Acquire);
        if p == 0 {
            // SAFETY: dlsym with a NUL-terminated name.
            p = unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) } as usize;
            if p == 0 {
                return None;
            }
            REAL.store(p, Ordering::Release);
        }
        // SAFETY: the address of libc's pthread_create, which has this type.
        Some(unsafe { std::mem::transmute::<usize, Create>(p) })
    }

    struct Handoff {
        start: Start,
        arg: *mut c_void,
        state: crate::TaskState,
    }

    extern "C" fn trampoline(p: *mut c_void) -> *mut c_void {
        // SAFETY: `p` is the Box leaked by pthread_create below, handed
        // to exactly one new thread.
        let h = unsafe { Box::from_raw(p as *mut Handoff) };
        let Handoff { start, arg, state } = *h;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::install_inherited(state)
        }));
        start(arg)
    }

    /// pthread_create(3), passing the creating thread's inheritable task
    /// isolation state to the new thread.
    ///
    /// # Safety
    /// As pthread_create(3).
    #[no_mangle]
    pub unsafe extern "C" fn pthread_create(
        thread: *mut pthread_t,
        attr: *const pthread_attr_t,
        start: Start,
        arg: *mut c_void,
    ) -> c_int {
        let Some(real) = real() else {
            return libc::ENOSYS;
        };
        let state = std::panic::catch_unwind(crate::snapshot_for_child)
            .ok()
            .flatten();
        match state {
            None => real(thread, attr, start, arg),
            Some(state) => {
                let h = Box::into_raw(Box::new(Handoff { start, arg, state }));
                let r = real(thread, attr, trampoline, h as *mut c_void);
                if r != 0 {
                    // SAFETY: no thread took it.
                    drop(Box::from_raw(h));
                }
                r
            }
        }
    }

    /// Referenced from configure() so that a Rust program links this
    /// object (and with it the wrapper) before std's reference to
    /// pthread_create is resolved.
    pub fn keep() -> usize {
        pthread_create as *const () as usize
    }
}

/// Whether this build wraps pthread_create (see the module documentation).
#[allow(dead_code)]
pub const INTERPOSED: bool = cfg!(all(
    feature = "inherit-threads",
    not(target_feature = "crt-static")
));

/// Keep the wrapper linked (a no-op where there is none).
pub(crate) fn keep() -> usize {
    #[cfg(all(feature = "inherit-threads", not(target_feature = "crt-static")))]
    return imp::keep();
    #[cfg(not(all(feature = "inherit-threads", not(target_feature = "crt-static"))))]
    0
}
