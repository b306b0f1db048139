//! The program's main thread as one of the CPU backend's workers.
//!
//! Rayon runs a parallel loop called from outside its pool by handing the loop to a
//! worker and putting the caller to sleep until the loop is done, and every worker spins
//! a while before it sleeps. A program that drives the CPU backend from its main thread
//! had three threads on two cores, and each op cost a hand-off and two wake-ups. On a
//! 2-core Intel Xeon (2026-12-04) the face descriptor's batch-1 forward ran 9.9 to 13.4 ms
//! that way (mostly 12 to 13; PyTorch, whose OpenMP threads include the caller, 7.2 to
//! 7.5), with 5 000 to 12 000 involuntary context switches in a fifth of a second; with
//! the main thread in the pool, 7.8 to 11.2 ms (median 10.7 against 12.5, eight
//! alternating rounds, `benches/RESULTS-3.md`).
//!
//! So the first CPU device made on the main thread builds rayon's global pool with that
//! thread as worker 0 (`use_current_thread`): its parallel loops split work onto the
//! pool directly and it does its own share. Nothing changes where the pool already
//! exists, on threads other than the main one, with one thread in all (a pool of the
//! caller alone would leave work that other threads hand it waiting while the main
//! thread waits on them), or with `FOVEA_CPU_JOIN_MAIN=0`: for a program whose main
//! thread runs something else (an event loop) while other threads run the ops, which
//! would then have one worker fewer.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static JOINED: AtomicBool = AtomicBool::new(false);

/// Makes the calling thread worker 0 of rayon's global pool, where it is the main thread
/// and the module's note allows; once per process.
pub(crate) fn join_pool() {
    static ONCE: Once = Once::new();
    // Every `Device::cpu()` asks: after the main thread's one try, a load and no more.
    if ONCE.is_completed() || std::thread::current().name() != Some("main") {
        return;
    }
    ONCE.call_once(|| {
        if std::env::var("FOVEA_CPU_JOIN_MAIN").is_ok_and(|v| v == "0") {
            return;
        }
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads < 2 {
            return;
        }
        let built = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .use_current_thread()
            .build_global();
        JOINED.store(built.is_ok(), Ordering::Relaxed);
        IS_JOINED_MAIN.set(built.is_ok());
    });
}

/// Whether the main thread is one of the pool's workers ([`join_pool`]).
pub fn main_thread_joined() -> bool {
    JOINED.load(Ordering::Relaxed)
}

thread_local! {
    /// On the main thread once it is worker 0 ([`join_pool`]).
    static IS_JOINED_MAIN: Cell<bool> = const { Cell::new(false) };
    /// Inside a [`task`].
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as one task of a parallel loop whose siblings keep the other workers busy
/// (an image of a batch): what it calls is [`nested`], on the main thread too.
pub(super) fn task<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_TASK.set(self.0);
        }
    }
    let _restore = Restore(IN_TASK.replace(true));
    f()
}

/// Whether the calling thread runs one task of a parallel loop, so that splitting its
/// work again would only add hand-offs: inside a [`task`], or on a pool's worker, but
/// for the joined main thread's own work, which is the caller's.
pub(super) fn nested() -> bool {
    IN_TASK.get() || (rayon::current_thread_index().is_some() && !IS_JOINED_MAIN.get())
}

/// A pointer into an output that a parallel loop's tasks write in disjoint parts (a
/// GEMM's blocks of C, a convolution's blocks of rows), handed to each task.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: every user hands different tasks disjoint parts of what it points to.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    // A method, so closures capture the whole (Sync) wrapper rather than the raw field.
    pub(super) fn get(&self) -> *mut f32 {
        self.0
    }
}
