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
/// in `.gz`. Bad magic, unsupported types, truncation and trailing bytes are errors naming
/// the file.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format_err(path, format!("not a valid gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 {
        return Err(format_err(
            path,
            format!("{} bytes is too short for an IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format_err(
            path,
            format!(
                "bad magic number {:02x}{:02x}{:02x}{:02x} (an IDX file starts with 00 00)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format_err(
            path,
            format!(
                "element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
                bytes[2]
            ),
        ));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(format_err(
            path,
            format!("header of rank {rank} is truncated"),
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("dimensions {dims:?} overflow")))?;
    let have = bytes.len() - header;
    if have != expected {
        return Err(format_err(
            path,
            format!(
                "dimensions {dims:?} need {expected} bytes of data, the file has {have} ({})",
                if have < expected {
                    "truncated"
                } else {
                    "trailing bytes"
                }
            ),
        ));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}
