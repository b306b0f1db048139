//! safetensors files read and written a tensor at a time. Read whole (`std::fs::read`,
//! then `SafeTensors::deserialize`), a load held the file beside the values it decoded;
//! written whole (`safetensors::serialize`), a save held every tensor's bytes and then the
//! file they made beside the tensors, twice a checkpoint's size, so a model that filled
//! the machine could not be saved at the end of its training. Here a load holds its
//! values and the header, a save one tensor's values, and both one chunk of bytes (a pipe,
//! whose length is not known ahead, is read whole). The files are byte for byte what
//! `safetensors::serialize` writes (tensors by dtype, widest first, then by name; the
//! header padded with spaces to 8 bytes; string metadata in its map's order, as there).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;

use crate::{DType, Error, Result, Tensor};

/// Bytes read, converted or written at a time.
const CHUNK: usize = 1 << 16;

/// The longest header read: safetensors' own limit.
const MAX_HEADER: u64 = 100_000_000;

/// Tensors by name: shape and f32 values.
pub(crate) type Named = HashMap<String, (Vec<usize>, Vec<f32>)>;

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Format {
        path: path.display().to_string(),
        msg: format!("not a valid safetensors file: {msg}"),
    }
}

/// Every tensor of the safetensors file at `path` as f32 (f16, bf16, i64 and i32
/// converted), and the header's string metadata.
pub(crate) fn read(path: &Path) -> Result<(Named, HashMap<String, String>)> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    // A pipe (`/dev/stdin`, `<(…)`) has no size to check the header against: read whole.
    let (mut r, size): (Box<dyn Read>, u64) = if meta.is_file() {
        let r = std::io::BufReader::with_capacity(CHUNK, file);
        (Box::new(r), meta.len())
    } else {
        let mut all = Vec::new();
        file.read_to_end(&mut all).map_err(io(path))?;
        let size = all.len() as u64;
        (Box::new(std::io::Cursor::new(all)), size)
    };
    let short = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => invalid(path, "shorter than its header says"),
        _ => io(path)(e),
    };
    let mut n = [0u8; 8];
    r.read_exact(&mut n).map_err(short)?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || n > size.saturating_sub(8) {
        return Err(invalid(
            path,
            format!("a header of {n} bytes in a file of {size}"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    r.read_exact(&mut header).map_err(short)?;
    let meta: Metadata = serde_json::from_slice(&header).map_err(|e| invalid(path, e))?;
    let data = size - 8 - n;
    if meta.data_len() as u64 != data {
        let len = meta.data_len();
        return Err(invalid(
            path,
            format!("its header gives {len} bytes of tensors, the file holds {data}"),
        ));
    }
    let mut out = HashMap::new();
    let mut bytes = vec![0u8; CHUNK];
    // In the file's order: the header's offsets run contiguously from 0 (`Metadata`
    // checks), so the values follow one another.
    for name in meta.offset_keys() {
        let info = meta.info(&name).expect("a name the header lists");
        let width = match info.dtype {
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I64 => 8,
            other => {
                return Err(Error::Format {
                    path: path.display().to_string(),
                    msg: format!(
                        "tensor {name} has dtype {other:?}; fovea loads F32, F16, BF16, I64 and I32"
                    ),
                })
            }
        };
        let len = (info.data_offsets.1 - info.data_offsets.0) / width;
        let mut values = crate::host::with_capacity(len).map_err(|e| Error::Format {
            path: path.display().to_string(),
            msg: format!("tensor {name} of shape {:?}: {e}", info.shape),
        })?;
        while values.len() < len {
            let b = &mut bytes[..(len - values.len()).min(CHUNK / width) * width];
            r.read_exact(b).map_err(short)?;
            decode(info.dtype, b, &mut values);
        }
        out.insert(name, (info.shape.clone(), values));
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// Appends the values of `bytes` (little-endian, of a dtype [`read`] takes) as f32.
fn decode(dtype: Dtype, bytes: &[u8], out: &mut Vec<f32>) {
    let two = |b: &[u8]| -> [u8; 2] { [b[0], b[1]] };
    let four = |b: &[u8]| -> [u8; 4] { [b[0], b[1], b[2], b[3]] };
    match dtype {
        Dtype::F32 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(four(b)))),
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes(two(b)).to_f32()),
        ),
        Dtype::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes(two(b)).to_f32()),
        ),
        // PyTorch saves counters such as batch norm's num_batches_tracked as int64.
        Dtype::I64 => out.extend(
            bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32),
        ),
        Dtype::I32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(four(b)) as f32),
        ),
        other => unreachable!("read refuses {other:?}"),
    }
}

/// What [`write`] writes: the header (its length first, padded as `safetensors` pads it)
/// and the tensors in the file's order. Made before any file is opened, so that a
/// checkpoint no reader would take (a duplicated name, a header past [`MAX_HEADER`]) is
/// refused with the old file left as it was.
pub(crate) struct Header<'t> {
    bytes: Vec<u8>,
    order: Vec<&'t Tensor>,
}

/// The [`Header`] of `tensors` (each in its dtype, F32 or F16) and `metadata`; errors
/// name `path`.
pub(crate) fn header<'t>(
    tensors: &'t [(String, Tensor)],
    metadata: HashMap<String, String>,
    path: &Path,
) -> Result<Header<'t>> {
    let refuse = |msg: String| Error::Format {
        path: path.display().to_string(),
        msg,
    };
    let dtype = |t: &Tensor| match t.dtype() {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
    };
    let mut names = std::collections::HashSet::new();
    if let Some((name, _)) = tensors.iter().find(|(n, _)| !names.insert(n)) {
        return Err(refuse(format!("two tensors are named {name:?}")));
    }
    let mut order: Vec<&(String, Tensor)> = tensors.iter().collect();
    order.sort_by(|(a, x), (b, y)| dtype(y).cmp(&dtype(x)).then(a.cmp(b)));
    let mut offset = 0;
    let infos = order
        .iter()
        .map(|(name, t)| {
            let len = t.numel() * dtype(t).bitsize() / 8;
            offset += len;
            let data_offsets = (offset - len, offset);
            let (dtype, shape) = (dtype(t), t.shape().to_vec());
            (
                name.clone(),
                TensorInfo {
                    dtype,
                    shape,
                    data_offsets,
                },
            )
        })
        .collect();
    let metadata = (!metadata.is_empty()).then_some(metadata);
    let meta = Metadata::new(metadata, infos).map_err(|e| refuse(e.to_string()))?;
    let mut json = serde_json::to_vec(&meta).map_err(|e| refuse(e.to_string()))?;
    json.resize(json.len().next_multiple_of(8), b' ');
    if json.len() as u64 > MAX_HEADER {
        return Err(refuse(format!(
            "a header of {} bytes (names and metadata) is more than the {MAX_HEADER} safetensors reads",
            json.len()
        )));
    }
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json);
    Ok(Header {
        bytes,
        order: order.into_iter().map(|(_, t)| t).collect(),
    })
}

/// Writes `header` and its tensors' values to `w` as a safetensors file; io errors name
/// `path` (the file being written).
pub(crate) fn write(w: &mut dyn Write, header: &Header, path: &Path) -> Result<()> {
    let io = io(path);
    w.write_all(&header.bytes).map_err(&io)?;
    let mut bytes = Vec::with_capacity(CHUNK);
    for t in &header.order {
        let values = t.to_vec()?;
        for chunk in values.chunks(CHUNK / 4) {
            bytes.clear();
            match t.dtype() {
                DType::F32 => bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes())),
                // An f16 tensor's values widened exactly, so narrowing them again is exact.
                DType::F16 => bytes.extend(
                    chunk
                        .iter()
                        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes()),
                ),
            }
            w.write_all(&bytes).map_err(&io)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    fn tensors() -> Vec<(String, Tensor)> {
        let dev = Device::cpu();
        let t = |shape: &[usize], seed| Tensor::randn(shape, seed, &dev);
        vec![
            ("b.weight".into(), t(&[3, 70_000], 1)),
            ("a.bias".into(), t(&[3], 2).to_dtype(DType::F16).unwrap()),
            ("a.weight".into(), t(&[2, 2, 3, 3], 3)),
            ("count".into(), t(&[], 4)),
            ("empty".into(), t(&[0, 5], 5).to_dtype(DType::F16).unwrap()),
        ]
    }

    #[test]
    fn a_streamed_file_is_what_safetensors_serializes() {
        use safetensors::tensor::TensorView;
        let tensors = tensors();
        let metadata = HashMap::from([("step".to_string(), "12".to_string())]);
        let mut streamed = Vec::new();
        let head = header(&tensors, metadata.clone(), Path::new("x")).unwrap();
        write(&mut streamed, &head, Path::new("x")).unwrap();
        let host: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, t)| {
                let v = t.to_vec().unwrap();
                let (dtype, bytes) = match t.dtype() {
                    DType::F32 => (Dtype::F32, v.iter().flat_map(|v| v.to_le_bytes()).collect()),
                    DType::F16 => (
                        Dtype::F16,
                        v.iter()
                            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                            .collect(),
                    ),
                };
                (n.clone(), dtype, t.shape().to_vec(), bytes)
            })
            .collect();
        let views = host
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()));
        let whole = safetensors::serialize(views, Some(metadata)).unwrap();
        assert_eq!(streamed.len(), whole.len());
        assert!(streamed == whole, "the same bytes");
    }

    #[test]
    fn checkpoints_no_reader_takes_are_refused_before_writing() {
        let mut tensors = tensors();
        let path = Path::new("model.safetensors");
        // Of one dtype, and of two (which sort apart).
        for copy in [0, 1] {
            let (name, t) = (tensors[0].0.clone(), tensors[copy].1.clone());
            tensors.push((name, t));
            let msg = header(&tensors, HashMap::new(), path)
                .err()
                .unwrap()
                .to_string();
            assert!(msg.contains("two tensors are named \"b.weight\""), "{msg}");
            tensors.pop();
        }
        let long = HashMap::from([("notes".to_string(), "x".repeat(MAX_HEADER as usize))]);
        let msg = header(&tensors, long, path).err().unwrap().to_string();
        assert!(
            msg.contains("a header of") && msg.contains("model.safetensors"),
            "{msg}"
        );
    }

    #[test]
    #[cfg(unix)]
    fn a_pipe_is_read_whole() {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::env::temp_dir().join(format!("fovea-pipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let tensors = tensors();
        let mut file = Vec::new();
        let head = header(&tensors, HashMap::new(), &fifo).unwrap();
        write(&mut file, &head, &fifo).unwrap();
        let at = fifo.clone();
        let writer = std::thread::spawn(move || std::fs::write(at, file).unwrap());
        let (read_back, _) = read(&fifo).unwrap();
        writer.join().unwrap();
        assert_eq!(read_back["b.weight"].1, tensors[0].1.to_vec().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_streamed_file_reads_back_and_damaged_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("fovea-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let tensors = tensors();
        let mut file = Vec::new();
        let metadata = HashMap::from([("k".to_string(), "v".to_string())]);
        let head = header(&tensors, metadata.clone(), &path).unwrap();
        write(&mut file, &head, &path).unwrap();
        std::fs::write(&path, &file).unwrap();
        let (read_back, meta) = read(&path).unwrap();
        assert_eq!(meta, metadata);
        assert_eq!(read_back.len(), tensors.len());
        for (name, t) in &tensors {
            let (shape, values) = &read_back[name];
            assert_eq!(shape, t.shape(), "{name}");
            assert_eq!(values, &t.to_vec().unwrap(), "{name}");
        }
        // Cut short, one byte too long, a header longer than the file, not a header.
        let mut header_past = file.clone();
        header_past[..8].copy_from_slice(&(file.len() as u64).to_le_bytes());
        let mut not_json = file.clone();
        not_json[8] = b'[';
        for (what, bytes, says) in [
            ("short", file[..file.len() - 1].to_vec(), "bytes of tensors"),
            ("long", [&file[..], &[0]].concat(), "bytes of tensors"),
            ("header", header_past, "a header of"),
            ("json", not_json, "not a valid safetensors file"),
            ("empty", Vec::new(), "shorter than its header"),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let msg = read(&path).unwrap_err().to_string();
            assert!(
                msg.contains(says) && msg.contains("t.safetensors"),
                "{what}: {msg}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
