//! Host memory: f32 buffers allocated fallibly, so that a size the system refuses is an
//! `Err` rather than an abort, and the CPU's memory limit, which every host buffer and
//! every CPU tensor is checked against before it is allocated.

use std::alloc::{alloc, Layout};
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::{Mutex, OnceLock};

use crate::{memory_left, Error, Result};

/// Bytes of host memory the CPU device admits for one tensor (and any one host buffer):
/// `FOVEA_CPU_MEMORY_LIMIT` when set (bytes, or with a `K`, `M`, `G` or `T` suffix in
/// powers of 1024), else the machine's memory (`MemTotal` in `/proc/meminfo`, or the
/// cgroup's limit when lower), else the most Rust can allocate at once.
pub fn memory_limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let set = std::env::var("FOVEA_CPU_MEMORY_LIMIT").ok();
        set.as_deref()
            .and_then(parse_bytes)
            .or_else(machine_memory)
            .unwrap_or(usize::MAX)
            .min(isize::MAX as usize)
    })
}

/// `1234`, `512M`, `8G`, `1.5T` (powers of 1024) as bytes.
fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, scale) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        (i, 't' | 'T') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = digits.trim().parse().ok()?;
    let bytes = v * scale as f64;
    (bytes.is_finite() && bytes >= 1.0).then(|| bytes.min(usize::MAX as f64) as usize)
}

/// The machine's memory, or its control groups' lowest limit when that is lower (a
/// container, a systemd unit's `MemoryMax`).
fn machine_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = memory_left::meminfo_bytes(&info, "MemTotal")?;
    let least = memory_left::group_limit().map_or(total, |g| g.min(total));
    usize::try_from(least).ok()
}

/// A byte count for messages: `1.50 GiB`.
pub(crate) fn fmt_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// Fails unless `len` f32 values fit the host's memory limit.
fn admit(len: usize) -> Result<Layout> {
    let bytes = len as u128 * 4;
    let limit = memory_limit();
    if bytes > limit as u128 {
        return Err(Error::Backend(format!(
            "{len} values ({}) are more than the {} of host memory the CPU admits (the machine's memory, or FOVEA_CPU_MEMORY_LIMIT)",
            fmt_bytes(bytes),
            fmt_bytes(limit as u128)
        )));
    }
    Layout::array::<f32>(len).map_err(|_| refused(len))
}

/// Fails where a fresh buffer of `len` values is larger than the memory the system has
/// left ([`memory_left::left`]), once the kept buffers and the allocator's free pages have
/// gone back to it: the allocation itself would succeed (Linux overcommits), and writing
/// it would get the process killed, its unsaved work with it. Only buffers past
/// [`HEAP_BLOCKS`] are checked: glibc maps those afresh (with [`keep_freed_memory`]'s
/// settings, and with its own defaults, whose threshold stops there), while smaller ones
/// come from its heap, whose freed memory stays in the process, and reading
/// `/proc/meminfo` and the limited control groups' use (about 13 µs on a 2-core VM) would
/// be a noticeable share of their time. What it cannot see: buffers allocated but not yet
/// written (the system counts pages as they are written), so two threads allocating at
/// once may both pass. `FOVEA_CPU_CHECK_LEFT=0` turns the check off (say, for a program
/// that means to swap).
fn check_left(len: usize) -> Result<()> {
    check_left_after(len, || {
        release_kept();
        trim_heap();
    })
}

/// [`check_left`], calling `make_room` before it refuses.
fn check_left_after(len: usize, make_room: impl FnOnce()) -> Result<()> {
    static CHECK: OnceLock<bool> = OnceLock::new();
    let bytes = (len as u64).saturating_mul(4);
    if bytes <= HEAP_BLOCKS as u64
        || !*CHECK.get_or_init(|| std::env::var("FOVEA_CPU_CHECK_LEFT").map_or(true, |v| v != "0"))
    {
        return Ok(());
    }
    let short = || memory_left::left().filter(|&left| bytes > left);
    if short().is_none() {
        return Ok(());
    }
    make_room();
    let Some(left) = short() else {
        return Ok(());
    };
    Err(Error::Backend(format!(
        "{len} values ({}) are more than the {} of memory the system has left (MemAvailable, or a control group's limit less its use); free some tensors or use a smaller batch (FOVEA_CPU_CHECK_LEFT=0 allocates anyway)",
        fmt_bytes(bytes as u128),
        fmt_bytes(left as u128)
    )))
}

/// Hands the allocator's free heap pages back to the system ([`keep_freed_memory`] keeps
/// them otherwise).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory, under the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn refused(len: usize) -> Error {
    Error::Backend(format!(
        "the system refused to allocate {len} values ({})",
        fmt_bytes(len as u128 * 4)
    ))
}

/// Sets glibc's allocator to keep freed memory in the process: blocks up to
/// [`HEAP_BLOCKS`] (its largest threshold) from the heap rather than `mmap`, and the heap
/// never trimmed. Left to itself glibc maps each block over 128 KiB afresh until it has
/// seen one freed, which the pool of kept buffers below makes rare, so whether a process
/// ran its steps on fresh pages or on reused ones depended on when a buffer happened to
/// leave the pool: the tiny face detector's batch-1 forward ran 22–27 ms in some
/// processes and 11–15 in others (312 000 page faults in a process against 25 600;
/// 2-core Intel Xeon, 2026-12-04), and in none of the slow ones with this. Once per
/// process, where the allocator is glibc's, unless `FOVEA_CPU_KEEP_FREED=0`.
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var("FOVEA_CPU_KEEP_FREED").is_ok_and(|v| v == "0") {
                return;
            }
            // SAFETY: mallopt only sets the allocator's parameters, under its own lock.
            unsafe {
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
                libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BLOCKS as i32);
            }
        });
    }
}

/// The largest block glibc's allocator serves from its heap after [`keep_freed_memory`].
const HEAP_BLOCKS: usize = 32 << 20;

/// Buffers this short (64 KiB) are not kept: the allocator serves them from its own free
/// lists without touching the kernel.
const MIN_KEPT: usize = 16 * 1024;

/// How far the kept buffers and the live tensors together may grow beyond the most bytes
/// tensors ever held at once (the rule of the GPU's buffer pool).
const SLACK: f64 = 1.5;

/// Freed tensor buffers kept for reuse, oldest first. The allocator hands large blocks
/// back to the kernel when they are freed, so every activation of a training step came
/// back as fresh pages, each a fault and a clearing: with the same sizes reused, a LeNet
/// step went from 28 to 22 ms, its ReLUs four times faster.
struct Kept {
    free: VecDeque<Vec<f32>>,
    bytes: u64,
}

static KEPT: Mutex<Kept> = Mutex::new(Kept {
    free: VecDeque::new(),
    bytes: 0,
});

fn kept() -> std::sync::MutexGuard<'static, Kept> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps a freed tensor buffer for reuse, if it is large enough to be worth it: `live` and
/// `peak` are the bytes tensors hold now and the most they ever held. The oldest buffers
/// are released to stay within [`SLACK`] × `peak` (and a quarter of the memory limit).
pub(crate) fn recycle(v: Vec<f32>, live: u64, peak: u64) {
    if v.capacity() < MIN_KEPT {
        return;
    }
    let cap = (SLACK * peak as f64 - live as f64).min(memory_limit() as f64 / 4.0);
    let bytes = v.capacity() as u64 * 4;
    if bytes as f64 > cap {
        return;
    }
    let released = kept().keep(v, cap);
    // Freed outside the lock.
    drop(released);
}

impl Kept {
    /// Keeps `v`, releasing kept buffers until all fit in `cap` bytes: the oldest that the
    /// allocator keeps when freed ([`keep_freed_memory`]), so that it comes back without
    /// faults, and larger ones, which go back to the system, last. Oldest first alone,
    /// MobileNetV2's batch-8 inference had its 38.5 MB expansion mapped afresh each
    /// forward, 9 400 faults of 4 KiB (2026-12-04). Returns what it released.
    fn keep(&mut self, v: Vec<f32>, cap: f64) -> Vec<Vec<f32>> {
        let bytes = v.capacity() as u64 * 4;
        let mut released = Vec::new();
        while (self.bytes + bytes) as f64 > cap {
            let at = self
                .free
                .iter()
                .position(|v| v.capacity() * 4 <= HEAP_BLOCKS);
            let Some(old) = self.free.remove(at.unwrap_or(0)) else {
                break;
            };
            self.bytes -= old.capacity() as u64 * 4;
            released.push(old);
        }
        self.bytes += bytes;
        self.free.push_back(v);
        released
    }
}

/// Frees every kept buffer.
pub(crate) fn release_kept() {
    let released = {
        let mut k = kept();
        k.bytes = 0;
        std::mem::take(&mut k.free)
    };
    drop(released);
}

/// How many freed buffers are kept for reuse.
pub(crate) fn kept_buffers() -> usize {
    kept().free.len()
}

/// A kept buffer of exactly `len` values (emptied), the most recently freed one.
fn reuse(len: usize) -> Option<Vec<f32>> {
    if len < MIN_KEPT {
        return None;
    }
    let mut k = kept();
    let at = k.free.iter().rposition(|v| v.capacity() == len)?;
    let mut v = k.free.remove(at)?;
    k.bytes -= len as u64 * 4;
    v.clear();
    Some(v)
}

/// An empty vector with room for `len` (> 0) values, a kept one if there is one of that
/// size, else a fresh allocation: an error where the size passes the memory limit or the
/// system refuses it.
fn allocate(len: usize) -> Result<Vec<f32>> {
    allocate_after(len, check_left)
}

/// [`allocate`], with `check` in place of [`check_left`] before a fresh allocation.
fn allocate_after(len: usize, check: impl FnOnce(usize) -> Result<()>) -> Result<Vec<f32>> {
    let layout = admit(len)?;
    if let Some(v) = reuse(len) {
        return Ok(v);
    }
    check(len)?;
    // SAFETY: `layout` has a non-zero size (len > 0). A non-null pointer from the global
    // allocator with exactly the layout a `Vec<f32>` of capacity `len` uses is what
    // `Vec::from_raw_parts` requires; the vector starts empty, so nothing is read yet.
    unsafe {
        let ptr = alloc(layout) as *mut f32;
        if ptr.is_null() {
            return Err(refused(len));
        }
        Ok(Vec::from_raw_parts(ptr, 0, len))
    }
}

/// `len` zeros, allocated fallibly (see [`allocate`]) and cleared by writing them. The
/// allocator's lazily zeroed pages (`vec![0.0; len]`) map the shared zero page on the first
/// read, so a kernel that accumulates into its output (`+=`) then takes a second,
/// copy-on-write fault per page whose TLB shootdown interrupts every other core: on this
/// project's 2-core VMs that made a depthwise convolution's backward five times slower
/// than PyTorch's. Written first, each page takes one plain fault.
///
/// From [`ZEROS_SPLIT`] values on, the pool's threads clear it together: an op's output
/// is made before its work is shared out, so one core cleared it while the others
/// waited (a 4.3 MB convolution output was 7% of the naive sliding windows' samples).
pub(crate) fn zeros(len: usize) -> Result<Vec<f32>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut v = allocate(len)?;
    let values = &mut v.spare_capacity_mut()[..len];
    if len >= ZEROS_SPLIT {
        use rayon::prelude::*;
        values
            .par_chunks_mut(ZEROS_SPLIT / 4)
            .for_each(|c| c.fill(MaybeUninit::new(0.0)));
    } else {
        values.fill(MaybeUninit::new(0.0));
    }
    // SAFETY: all `len` values were just written.
    unsafe { v.set_len(len) };
    Ok(v)
}

/// Values from which [`zeros`] clears in parallel (1 MiB).
const ZEROS_SPLIT: usize = 1 << 18;

/// `len` values set by `fill`, allocated fallibly like [`zeros`] but not cleared first:
/// an op that overwrites its whole output would otherwise pay for a memset (a tenth of a
/// MobileNetV2 training step on the CPU went to clearing buffers about to be written).
///
/// # Safety
/// `fill` must write every element of the slice it is given.
pub(crate) unsafe fn written(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> Result<Vec<f32>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut v = allocate(len)?;
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote every value (the caller's promise). Had it panicked, the
    // still empty vector would only have freed the allocation.
    unsafe { v.set_len(len) };
    Ok(v)
}

/// Two vectors of `len` values set together by `fill`, like [`written`]: both are
/// allocated before either is filled, so a refused allocation leaves nothing half made.
///
/// # Safety
/// `fill` must write every element of both slices it is given.
pub(crate) unsafe fn written_pair(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<f32>], &mut [MaybeUninit<f32>]),
) -> Result<(Vec<f32>, Vec<f32>)> {
    if len == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    // Checked together, once: the first, unwritten, would not yet be missing from what
    // the system has left when the second is checked.
    admit(len)?;
    check_left(len.saturating_mul(2))?;
    let unchecked = |len| allocate_after(len, |_| Ok(()));
    let (mut a, mut b) = (unchecked(len)?, unchecked(len)?);
    fill(
        &mut a.spare_capacity_mut()[..len],
        &mut b.spare_capacity_mut()[..len],
    );
    // SAFETY: `fill` wrote every value of both (the caller's promise).
    unsafe {
        a.set_len(len);
        b.set_len(len);
    }
    Ok((a, b))
}

/// `len` copies of `value`, allocated fallibly (see [`zeros`]).
pub(crate) fn filled(len: usize, value: f32) -> Result<Vec<f32>> {
    if value.to_bits() == 0 {
        return zeros(len);
    }
    let mut v = with_capacity(len)?;
    v.resize(len, value);
    Ok(v)
}

/// An empty vector with room for `len` values, allocated fallibly (see [`zeros`]).
pub(crate) fn with_capacity(len: usize) -> Result<Vec<f32>> {
    admit(len)?;
    if let Some(v) = reuse(len) {
        return Ok(v);
    }
    check_left(len)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| refused(len))?;
    Ok(v)
}

/// A copy of `values`, allocated fallibly (see [`zeros`]).
pub(crate) fn copied(values: &[f32]) -> Result<Vec<f32>> {
    let mut v = with_capacity(values.len())?;
    v.extend_from_slice(values);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("1234"), Some(1234));
        assert_eq!(parse_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_bytes(" 2g "), Some(2 << 30));
        assert_eq!(parse_bytes("1.5K"), Some(1536));
        for bad in ["", "G", "-1", "0", "lots", "nanG"] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes_past_the_limit_or_the_address_space_are_errors_not_aborts() {
        // Past the limit: refused before asking the allocator.
        let over = memory_limit() / 4 + 1;
        let msg = zeros(over).unwrap_err().to_string();
        assert!(msg.contains(&over.to_string()), "{msg}");
        assert!(filled(usize::MAX, 1.0).is_err());
        assert!(with_capacity(usize::MAX / 2).is_err());
        // Small sizes work and hold what they should.
        assert_eq!(zeros(3).unwrap(), vec![0.0; 3]);
        assert_eq!(filled(2, -0.0).unwrap()[1].to_bits(), (-0.0f32).to_bits());
        assert_eq!(copied(&[1.0, 2.0]).unwrap(), vec![1.0, 2.0]);
        assert!(zeros(0).unwrap().is_empty());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_fresh_buffer_larger_than_the_memory_left_is_refused() {
        assert!(
            std::env::var("FOVEA_CPU_CHECK_LEFT").map_or(true, |v| v != "0"),
            "FOVEA_CPU_CHECK_LEFT=0 turns off what this test checks"
        );
        // Other tests here count on the kept buffers: none are released.
        let check = |len: usize| check_left_after(len, || {});
        // The largest the limit admits: the machine's memory, more than it has left with
        // this process running.
        let len = memory_limit() / 4;
        if std::env::var_os("FOVEA_CPU_MEMORY_LIMIT").is_none() {
            let msg = check(len).unwrap_err().to_string();
            assert!(
                msg.contains("left") && msg.contains(&len.to_string()),
                "{msg}"
            );
        }
        // Twice what is left (other processes change it between reads), and a buffer
        // past HEAP_BLOCKS well within it.
        let left = memory_left::left().unwrap();
        assert!(check((left / 2) as usize).is_err());
        let some = (HEAP_BLOCKS / 4 + 1).min(left as usize / 8);
        assert!(check(some).is_ok());
        assert!(
            check(HEAP_BLOCKS / 4).is_ok(),
            "small buffers are not checked"
        );
        let mut made_room = false;
        assert!(check_left_after((left / 2) as usize, || made_room = true).is_err());
        assert!(made_room, "kept buffers go back before a refusal");
    }

    #[test]
    fn a_freed_buffer_is_reused_for_its_size_and_cleared_when_zeros_are_asked() {
        // Sizes no other test allocates, so the parallel tests cannot take these buffers;
        // the second is cleared by the pool's threads, in uneven chunks.
        for len in [MIN_KEPT + 12_345, 3 * ZEROS_SPLIT + 12_347] {
            let mut v = zeros(len).unwrap();
            v.fill(7.0);
            let at = v.as_ptr();
            recycle(v, 0, (len * 4) as u64);
            let again = zeros(len).unwrap();
            assert_eq!(again.as_ptr(), at, "the kept buffer is handed out again");
            assert!(again.iter().all(|&x| x == 0.0), "{len} values");
        }
        // Nothing is kept past the slack over the peak, nor buffers too short to matter.
        let len = MIN_KEPT + 23_456;
        recycle(zeros(len).unwrap(), 0, 4);
        assert!(reuse(len).is_none());
        let short = MIN_KEPT - 1;
        recycle(zeros(short).unwrap(), 0, u64::MAX / 2);
        assert!(reuse(short).is_none());
        // A full cache releases its oldest buffers first.
        let (a, b) = (MIN_KEPT + 34_567, MIN_KEPT + 34_568);
        let peak = ((a + b) * 4) as u64;
        recycle(zeros(a).unwrap(), 0, peak);
        recycle(zeros(b).unwrap(), (b * 4) as u64, peak);
        assert!(reuse(a).is_none(), "the older buffer made room");
        assert!(reuse(b).is_some());
        // Released on request.
        let c = MIN_KEPT + 45_678;
        recycle(zeros(c).unwrap(), 0, (c * 4) as u64);
        release_kept();
        assert!(reuse(c).is_none(), "released");
    }

    #[test]
    fn buffers_the_allocator_keeps_are_released_before_larger_ones() {
        // A pool of its own: the shared one also takes other tests' buffers.
        let mut k = Kept {
            free: VecDeque::new(),
            bytes: 0,
        };
        let (big, small, smaller) = (HEAP_BLOCKS / 4 + 16, MIN_KEPT + 2, MIN_KEPT + 1);
        let cap = ((big + small) * 4) as f64;
        assert!(k.keep(vec![0.0; big], cap).is_empty());
        assert!(k.keep(vec![0.0; small], cap).is_empty());
        // No room for a third: the younger small buffer goes, not the oldest, large one.
        let released = k.keep(vec![0.0; smaller], cap);
        let lens = |v: &[Vec<f32>]| v.iter().map(Vec::capacity).collect::<Vec<_>>();
        assert_eq!(lens(&released), [small]);
        assert_eq!(lens(k.free.make_contiguous()), [big, smaller]);
        assert_eq!(k.bytes, ((big + smaller) * 4) as u64);
        // Among buffers of one kind, the oldest goes first.
        let released = k.keep(vec![0.0; small], ((big + smaller + small) * 4) as f64 - 1.0);
        assert_eq!(lens(&released), [smaller]);
    }

    #[test]
    fn the_machine_has_a_memory_limit_below_the_address_space() {
        let limit = memory_limit();
        assert!(limit > 0 && limit <= isize::MAX as usize);
        if std::path::Path::new("/proc/meminfo").exists()
            && std::env::var("FOVEA_CPU_MEMORY_LIMIT").is_err()
        {
            assert!(limit < 1 << 50, "MemTotal was not read: {limit}");
        }
        assert_eq!(fmt_bytes(512), "512 bytes");
        assert_eq!(fmt_bytes(3 << 29), "1.50 GiB");
    }
}
