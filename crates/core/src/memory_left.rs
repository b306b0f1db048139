//! How much memory the system has left for this process: the kernel's estimate of what it
//! can hand out without swapping (`MemAvailable` in `/proc/meminfo`), bounded by a control
//! group's headroom where there is one (its limit less its use, the inactive file pages
//! that the kernel reclaims first counted as free). Linux grants allocations it cannot
//! back (overcommit) and kills the process that writes past its memory, so a tensor
//! program that outgrows the machine lost its work without a word; `host` checks each
//! large fresh buffer against this first.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The bytes left, where the system says (Linux).
pub(crate) fn left() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let machine = meminfo_bytes(&info, "MemAvailable")?;
    let group = limited_groups()
        .filter_map(|(dir, limit, [_, current, inactive])| {
            let current = read(&dir.join(current))?;
            let stat = read(&dir.join("memory.stat")).unwrap_or_default();
            headroom(*limit, &current, &stat, inactive)
        })
        .min();
    Some(group.map_or(machine, |g| g.min(machine)))
}

/// The lowest limit of this process's memory control groups, where one has a limit.
pub(crate) fn group_limit() -> Option<u64> {
    limited_groups().map(|&(_, limit, _)| limit).min()
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// [`groups`] of this process that have a limit, with it: cgroup v1's "no limit" is a
/// number near 2⁶³, v2's `max`. Found once per process (the limits of the groups are read
/// then too): each check then reads only `MemAvailable` and the limited groups' use.
fn limited_groups() -> impl Iterator<Item = &'static (PathBuf, u64, [&'static str; 3])> {
    static LIMITED: OnceLock<Vec<(PathBuf, u64, [&'static str; 3])>> = OnceLock::new();
    LIMITED
        .get_or_init(|| {
            let cgroup = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
            groups(&cgroup, Path::new("/sys/fs/cgroup"))
                .into_iter()
                .filter_map(|(dir, files)| {
                    let limit: u64 = read(&dir.join(files[0]))?.trim().parse().ok()?;
                    (limit < 1 << 62).then_some((dir, limit, files))
                })
                .collect()
        })
        .iter()
}

/// The folders of this process's memory control groups (`/proc/self/cgroup`, under
/// `root`), its own first and then each parent up to the hierarchy's root, since a limit
/// set on any of them applies (a systemd unit's `MemoryMax`, a container that shares the
/// host's hierarchy); with each the names of its limit, usage and inactive-file fields:
/// cgroup v2's, or v1's memory controller's (whose "no limit" is a vast number).
fn groups(cgroup: &str, root: &Path) -> Vec<(PathBuf, [&'static str; 3])> {
    const V2: [&str; 3] = ["memory.max", "memory.current", "inactive_file"];
    const V1: [&str; 3] = [
        "memory.limit_in_bytes",
        "memory.usage_in_bytes",
        "total_inactive_file",
    ];
    let mut dirs = Vec::new();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (base, files) = if id == "0" && controllers.is_empty() {
            (root.to_path_buf(), V2)
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), V1)
        } else {
            continue;
        };
        let mut at = Some(Path::new(path));
        while let Some(p) = at {
            let below = p.strip_prefix("/").unwrap_or(p);
            dirs.push((base.join(below), files));
            at = p.parent();
        }
    }
    dirs
}

/// A `/proc/meminfo` field (`MemTotal`, `MemAvailable`) in bytes.
pub(crate) fn meminfo_bytes(info: &str, field: &str) -> Option<u64> {
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// A control group's `limit` less its use, its inactive file pages counted as free.
fn headroom(limit: u64, current: &str, stat: &str, inactive: &str) -> Option<u64> {
    let current: u64 = current.trim().parse().ok()?;
    let cache = stat
        .lines()
        .find_map(|l| {
            l.strip_prefix(inactive)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0u64);
    Some(limit.saturating_sub(current.saturating_sub(cache)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_read_in_bytes() {
        let info = "MemTotal:       24683784 kB\nMemFree:  100 kB\nMemAvailable:   24064212 kB\n";
        assert_eq!(meminfo_bytes(info, "MemTotal"), Some(24683784 * 1024));
        assert_eq!(meminfo_bytes(info, "MemAvailable"), Some(24064212 * 1024));
        // A field is matched whole, not by a prefix of its name.
        assert_eq!(meminfo_bytes(info, "Mem"), None);
        assert_eq!(meminfo_bytes("MemAvailable: lots kB", "MemAvailable"), None);
    }

    #[test]
    fn a_groups_headroom_counts_its_inactive_file_pages_as_free() {
        let stat = "anon 900\nfile 500\ninactive_file 300\nactive_file 200\n";
        assert_eq!(headroom(2000, "1500\n", stat, "inactive_file"), Some(800));
        assert_eq!(headroom(2000, "lots", stat, "inactive_file"), None);
        // Over its limit (the kernel is reclaiming): nothing left.
        assert_eq!(headroom(1000, "1500", "", "inactive_file"), Some(0));
        let v1 = "cache 10\ntotal_inactive_file 100\n";
        assert_eq!(headroom(1000, "600", v1, "total_inactive_file"), Some(500));
    }

    #[test]
    fn every_group_from_the_process_s_own_up_to_the_root_is_read() {
        let root = Path::new("/sys/fs/cgroup");
        let dirs = |cgroup| -> Vec<(String, &str)> {
            groups(cgroup, root)
                .into_iter()
                .map(|(d, f)| (d.display().to_string(), f[0]))
                .collect()
        };
        assert_eq!(
            dirs("0::/user.slice/app.scope\n"),
            [
                ("/sys/fs/cgroup/user.slice/app.scope".into(), "memory.max"),
                ("/sys/fs/cgroup/user.slice".into(), "memory.max"),
                ("/sys/fs/cgroup/".into(), "memory.max"),
            ]
        );
        // A private namespace's own group is its root; v1 names its memory controller.
        assert_eq!(dirs("0::/\n"), [("/sys/fs/cgroup/".into(), "memory.max")]);
        let v1 = "12:cpu,cpuacct:/a\n4:memory:/docker/abc\n";
        assert_eq!(
            dirs(v1),
            [
                (
                    "/sys/fs/cgroup/memory/docker/abc".into(),
                    "memory.limit_in_bytes"
                ),
                (
                    "/sys/fs/cgroup/memory/docker".into(),
                    "memory.limit_in_bytes"
                ),
                ("/sys/fs/cgroup/memory/".into(), "memory.limit_in_bytes"),
            ]
        );
        assert!(dirs("garbage").is_empty());
    }

    #[test]
    fn linux_says_what_is_left_and_it_is_below_the_machines_memory() {
        if !cfg!(target_os = "linux") {
            assert_eq!(left(), None);
            return;
        }
        let left = left().expect("MemAvailable is read");
        let info = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total = meminfo_bytes(&info, "MemTotal").unwrap();
        assert!(left > 0 && left < total, "{left} of {total}");
    }
}
