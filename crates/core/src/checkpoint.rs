//! Checkpoints: a module's state_dict as safetensors. Writes are atomic (a temporary file
//! in the same folder, then a rename), so a crash never leaves a half-written checkpoint;
//! loading checks every name, shape and dtype and reports every mismatch at once, and
//! leaves the module untouched when anything is wrong.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::nn::Module;
use crate::optim::Optimizer;
use crate::{Error, Result, Tensor};

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// Writes named tensors to `path` as safetensors (each in its dtype, F32 or F16),
/// atomically.
pub fn save(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    save_with_metadata(tensors, HashMap::new(), path)
}

/// [`save`] with string metadata in the file's header (exact counters, settings).
pub fn save_with_metadata(
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let header = crate::checkpoint_stream::header(tensors, metadata, path)?;
    write_atomically_with(path, |w, tmp| {
        crate::checkpoint_stream::write(w, &header, tmp)
    })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: readers
/// see the old file or the new one, never half of one. Errors name the path that failed.
///
/// Each write has a temporary name of its own (`.NAME.tmp-PID-N`), so threads and
/// processes saving to one path at once do not collide: the last rename wins. The data is
/// flushed to disk (fsync) before the rename and the folder after it (on Unix), so a
/// power loss leaves the old file or the whole new one. Temporary files that writers
/// killed mid-save left behind are removed by the next save to the same path, once their
/// process is gone (told by `/proc`, so on Linux).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, |w, tmp| {
        w.write_all(bytes).map_err(|source| Error::Io {
            path: path_str(tmp),
            source,
        })
    })
}

/// [`write_atomically`] of what `write` writes (buffered) to the temporary file it is
/// given the path of.
fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write, &Path) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    remove_stale_temps(dir, name);
    let (tmp, file) = create_temp(dir, name)?;
    let mut w = std::io::BufWriter::new(file);
    let written = write(&mut w, &tmp).and_then(|()| {
        let at_tmp = |source| Error::Io {
            path: path_str(&tmp),
            source,
        };
        let file = w.into_inner().map_err(|e| at_tmp(e.into_error()))?;
        file.sync_all().map_err(at_tmp)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            path: path_str(path),
            source: e,
        }
    })?;
    sync_dir(dir).map_err(|source| Error::Io {
        path: path_str(dir),
        source,
    })
}

/// The prefix of every temporary file [`write_atomically`] makes for `name`.
fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// A new temporary file in `dir` for `name`, opened exclusively: its name holds this
/// process's id and a per-process counter, and an existing file is never reused.
fn create_temp(dir: &Path, name: &str) -> Result<(std::path::PathBuf, std::fs::File)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{}{}-{n}", temp_prefix(name), std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            // Left by an earlier process that had this id: take the next number.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(Error::Io {
                    path: path_str(&tmp),
                    source,
                })
            }
        }
    }
}

/// Removes the temporary files for `name` in `dir` whose writer process is gone (killed
/// during a save). Files of live processes, this one included, are left alone, as are
/// all of them where this system cannot tell whether a process lives. Best effort: a
/// file that cannot be removed is left for the next save.
fn remove_stale_temps(dir: &Path, name: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = temp_prefix(name);
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        // `PID-N`, or `PID` alone as earlier versions named them.
        let pid = rest.split('-').next().unwrap_or("");
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Flushes a folder's entries (a rename into it) to disk. Filesystems that cannot sync a
/// folder (they answer "invalid argument") are taken as having nothing to flush.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Saves a module's state_dict.
pub fn save_module(module: &dyn Module, path: &Path) -> Result<()> {
    save(&module.state_dict(), path)
}

/// Tensors by name: shape and f32 values.
pub type NamedArrays = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads every tensor of a safetensors file as f32 (f16 and bf16 are converted).
pub fn load(path: &Path) -> Result<NamedArrays> {
    load_with_metadata(path).map(|(tensors, _)| tensors)
}

/// [`load`], plus the header's string metadata (empty when it has none).
pub fn load_with_metadata(path: &Path) -> Result<(NamedArrays, HashMap<String, String>)> {
    crate::checkpoint_stream::read(path)
}

/// True when a file's tensor of `file` shape loads into a model tensor of `model` shape:
/// the same shape, or (as PyTorch allows for old checkpoints) one value saved as `[1]`
/// for a scalar such as `num_batches_tracked`.
fn fits(file: &[usize], model: &[usize]) -> bool {
    file == model || (model.is_empty() && file == [1])
}

/// Missing or misshaped tensors of `state` in `file`, one line each.
fn mismatches(state: &[(String, Tensor)], file: &NamedArrays) -> Vec<String> {
    state
        .iter()
        .filter_map(|(name, t)| match file.get(name) {
            None => Some(format!("missing {name} {:?}", t.shape())),
            Some((shape, _)) if !fits(shape, t.shape()) => Some(format!(
                "{name}: file has shape {shape:?}, the model {:?}",
                t.shape()
            )),
            Some(_) => None,
        })
        .collect()
}

/// The file's tensors that `state` does not have, sorted.
fn extras(state: &[(String, Tensor)], file: &NamedArrays) -> Vec<String> {
    let known: std::collections::HashSet<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    let mut extra: Vec<String> = file
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .cloned()
        .collect();
    extra.sort();
    extra
}

/// [`mismatches`] plus every tensor of the file that `state` lacks: an exact match.
fn strict_mismatches(state: &[(String, Tensor)], file: &NamedArrays) -> Vec<String> {
    let mut problems = mismatches(state, file);
    problems.extend(
        extras(state, file)
            .iter()
            .map(|k| format!("unexpected {k}")),
    );
    problems
}

fn refuse(path: &Path, problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Format {
        path: path_str(path),
        msg: format!(
            "state_dict does not match the model:\n  {}",
            problems.join("\n  ")
        ),
    })
}

/// Loads the tensors `module` has from a file that may hold more (a backbone inside a
/// bigger checkpoint): every tensor of the module must be present with its shape, as in
/// [`load_module`]; the file's other tensors are left alone and their names returned.
pub fn load_module_subset(module: &dyn Module, path: &Path) -> Result<Vec<String>> {
    let file = load(path)?;
    let state = module.state_dict();
    refuse(path, mismatches(&state, &file))?;
    assign_all(&state, &file)?;
    Ok(extras(&state, &file))
}

fn assign_all(state: &[(String, Tensor)], file: &NamedArrays) -> Result<()> {
    crate::no_grad(|| {
        for (name, t) in state {
            let (shape, values) = &file[name];
            debug_assert!(fits(shape, t.shape()));
            t.assign(&Tensor::from_slice(values, t.shape(), t.device())?)?;
        }
        Ok(())
    })
}

/// Loads a state_dict into `module` by name. Every missing, unexpected or misshaped tensor
/// is listed in one error, and nothing is changed unless everything matches.
pub fn load_module(module: &dyn Module, path: &Path) -> Result<()> {
    let file = load(path)?;
    let state = module.state_dict();
    refuse(path, strict_mismatches(&state, &file))?;
    assign_all(&state, &file)
}

/// Saves everything a run needs to continue exactly where it stopped: the module's
/// state_dict (`model.*`), the optimizer's state (`optimizer.*`), the module's random
/// counters and the caller's progress counters (epoch, step, …) as exact integers.
pub fn save_training(
    module: &dyn Module,
    optimizer: &dyn Optimizer,
    progress: &[(&str, u64)],
    path: &Path,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = module
        .state_dict()
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect();
    let opt = optimizer.state();
    tensors.extend(
        opt.tensors
            .into_iter()
            .map(|(n, t)| (format!("optimizer.{n}"), t)),
    );
    let mut meta: HashMap<String, String> = opt
        .values
        .into_iter()
        .map(|(k, v)| (format!("optimizer.{k}"), v))
        .collect();
    module.visit_counters("", &mut |n, c| {
        meta.insert(
            format!("counter.{n}"),
            c.load(Ordering::Relaxed).to_string(),
        );
    });
    for (k, v) in progress {
        meta.insert(format!("progress.{k}"), v.to_string());
    }
    save_with_metadata(&tensors, meta, path)
}

/// Restores a [`save_training`] file into `module` and `optimizer` and returns the
/// progress counters. Everything is checked first; on any error neither is changed.
pub fn load_training(
    module: &dyn Module,
    optimizer: &mut dyn Optimizer,
    path: &Path,
) -> Result<HashMap<String, u64>> {
    let (file, meta) = load_with_metadata(path)?;
    let mut model = NamedArrays::new();
    let mut opt = NamedArrays::new();
    for (name, value) in file {
        if let Some(n) = name.strip_prefix("model.") {
            model.insert(n.to_string(), value);
        } else if let Some(n) = name.strip_prefix("optimizer.") {
            opt.insert(n.to_string(), value);
        }
    }
    let state = module.state_dict();
    let mut problems = strict_mismatches(&state, &model);
    let mut counters = Vec::new();
    module.visit_counters("", &mut |n, _| match meta
        .get(&format!("counter.{n}"))
        .map(|v| v.parse::<u64>())
    {
        Some(Ok(v)) => counters.push((n.to_string(), v)),
        _ => problems.push(format!("missing counter {n}")),
    });
    refuse(path, problems)?;
    let section = |prefix: &str| -> HashMap<String, String> {
        meta.iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
            .collect()
    };
    let progress = section("progress.")
        .into_iter()
        .map(|(k, v)| {
            v.parse()
                .map(|v| (k.clone(), v))
                .map_err(|_| Error::Format {
                    path: path_str(path),
                    msg: format!("progress counter {k} is not an integer: {v}"),
                })
        })
        .collect::<Result<HashMap<String, u64>>>()?;
    optimizer
        .load_state(&opt, &section("optimizer."))
        .map_err(|e| Error::Format {
            path: path_str(path),
            msg: e.to_string(),
        })?;
    assign_all(&state, &model)?;
    module.visit_counters("", &mut |n, c| {
        if let Some(&(_, v)) = counters.iter().find(|(name, _)| name == n) {
            c.store(v, Ordering::Relaxed);
        }
    });
    Ok(progress)
}

/// What a non-strict load ([`load_state`] with `strict = false`) left out, as PyTorch's
/// `load_state_dict` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The model's tensors that the file does not have (left as they were), in
    /// `state_dict` order.
    pub missing: Vec<String>,
    /// The file's tensors that the model does not have (ignored), sorted.
    pub unexpected: Vec<String>,
}

/// Loads named arrays into `module` by name, PyTorch's `load_state_dict(state, strict)`.
/// Strict: every name must match both ways. Not strict: the tensors both have are loaded
/// and the others reported. Either way a tensor present in both with different shapes is
/// an error listing every such mismatch, and on any error nothing is changed.
pub fn load_state(
    module: &dyn Module,
    file: &NamedArrays,
    strict: bool,
    source: &str,
) -> Result<LoadReport> {
    let state = module.state_dict();
    let report = LoadReport {
        missing: state
            .iter()
            .filter(|(n, _)| !file.contains_key(n))
            .map(|(n, _)| n.clone())
            .collect(),
        unexpected: extras(&state, file),
    };
    let problems = if strict {
        strict_mismatches(&state, file)
    } else {
        mismatches(&state, file)
            .into_iter()
            .filter(|p| !p.starts_with("missing "))
            .collect()
    };
    refuse(Path::new(source), problems)?;
    let present: Vec<(String, Tensor)> = state
        .into_iter()
        .filter(|(n, _)| file.contains_key(n))
        .collect();
    assign_all(&present, file)?;
    Ok(report)
}

/// [`load_state`] from a safetensors file.
pub fn load_module_with(module: &dyn Module, path: &Path, strict: bool) -> Result<LoadReport> {
    load_state(module, &load(path)?, strict, &path_str(path))
}
