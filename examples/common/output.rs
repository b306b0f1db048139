//! Where an example's results go, checked before its work starts: a run that trained for
//! minutes must not end in an error about its output folder and lose what it computed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use image::ImageFormat;

/// Makes sure `dir` (the value of `flag`) is a folder that takes files, creating it if
/// needed.
pub fn ready_dir(flag: &str, dir: &Path) -> Result<()> {
    let show = dir.display();
    if dir.exists() && !dir.is_dir() {
        bail!("{flag} {show}: a file is there; give a folder");
    }
    takes_files(dir).with_context(|| format!("{flag} {show}: cannot write there"))
}

/// Makes sure the file `path` (the value of `flag`) can be written: not a folder, its
/// folder one that takes files (created if needed), and, for a picture, an extension
/// naming a format this build writes (PNG or JPEG).
pub fn ready_file(flag: &str, path: &Path, picture: bool) -> Result<()> {
    let show = path.display();
    if path.is_dir() {
        bail!("{flag} {show}: a folder is there; give a file name");
    }
    if picture && !ImageFormat::from_path(path).is_ok_and(|f| f.writing_enabled()) {
        bail!("{flag} {show}: give a picture file ending in .png or .jpg");
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    takes_files(dir).with_context(|| format!("{flag} {show}: cannot write in {}", dir.display()))
}

/// Creates `dir` if needed and writes and removes an empty file in it: writing is the
/// only sure test (permissions, read-only mounts, a file in the way, quotas).
fn takes_files(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".fovea-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    // The probe is empty and ours; leaving it behind costs nothing worth an error.
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
