//! The IDX file format (`*-ubyte`, optionally gzipped): a big-endian header, then the data.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// An IDX array: its dimensions and its unsigned bytes.
#[derive(Clone, Debug)]
pub struct Idx {
    /// dimensions, outermost first
    pub dims: Vec<usize>,
    /// values in row-major order
    pub data: Vec<u8>,
}

fn format_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// Reads an IDX file of unsigned bytes (type code 0x08), gunzipping when the name ends
/// in `.gz`. Bad magic, unsupported types, zero or overflowing dimensions, truncation and
/// trailing bytes are errors naming the file. The header is checked before any data is
/// read, and a gzipped file is decompressed only as far as its header says the data goes
/// (plus one byte, to see that nothing follows): a small file claiming to hold gigabytes
/// of zeros is refused after its header, not after inflating them all.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let on_disk = file.metadata().map_err(io)?.len();
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let read_err = |e: std::io::Error| {
        if gz {
            format_err(path, format!("not a valid gzip stream: {e}"))
        } else {
            io(e)
        }
    };
    // At most `n` bytes, fewer only at the end of the stream.
    let mut read_up_to = |n: u64, out: &mut Vec<u8>| -> Result<()> {
        (&mut reader)
            .take(n)
            .read_to_end(out)
            .map(|_| ())
            .map_err(read_err)
    };
    let mut magic = Vec::with_capacity(4);
    read_up_to(4, &mut magic)?;
    if magic.len() < 4 {
        return Err(format_err(
            path,
            format!("{} bytes is too short for an IDX header", magic.len()),
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(format_err(
            path,
            format!(
                "bad magic number {:02x}{:02x}{:02x}{:02x} (an IDX file starts with 00 00)",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(format_err(
            path,
            format!(
                "element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
                magic[2]
            ),
        ));
    }
    let rank = magic[3] as usize;
    let mut header = Vec::with_capacity(4 * rank);
    read_up_to(4 * rank as u64, &mut header)?;
    if rank == 0 || header.len() < 4 * rank {
        return Err(format_err(
            path,
            format!("header of rank {rank} is truncated"),
        ));
    }
    let dims: Vec<usize> = header
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    if dims.contains(&0) {
        return Err(format_err(
            path,
            format!("dimensions {dims:?} include a zero: the file holds no items"),
        ));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("dimensions {dims:?} overflow")))?;
    let header_len = 4 + 4 * rank as u64;
    let mismatch = |have: u64| {
        format_err(
            path,
            format!(
                "dimensions {dims:?} need {expected} bytes of data, the file has {have} ({})",
                if have < expected as u64 {
                    "truncated"
                } else {
                    "trailing bytes"
                }
            ),
        )
    };
    // An uncompressed file's size tells before reading whether the data is all there.
    if !gz && on_disk - header_len != expected as u64 {
        return Err(mismatch(on_disk - header_len));
    }
    let mut data = Vec::new();
    // Room for what the file can hold: a gzip stream inflates to at most about 1032 times
    // its size, so a small file's lying header does not reserve gigabytes up front.
    let room = if gz {
        (expected as u64).min(on_disk.saturating_mul(1032))
    } else {
        expected as u64
    };
    data.try_reserve_exact(room as usize).map_err(|_| {
        format_err(
            path,
            format!("dimensions {dims:?} need {expected} bytes, more than the host can allocate"),
        )
    })?;
    read_up_to((expected as u64).saturating_add(1), &mut data)?;
    if data.len() < expected {
        return Err(mismatch(data.len() as u64));
    }
    if data.len() > expected {
        return Err(format_err(
            path,
            format!(
                "dimensions {dims:?} need {expected} bytes of data, the file has more (trailing bytes)"
            ),
        ));
    }
    Ok(Idx { dims, data })
}
