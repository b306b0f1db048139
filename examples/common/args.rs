//! Bounds for the examples' numeric flags, checked by clap as it parses them: a zero that
//! would divide, or a count or width no machine holds (a layer of 10¹¹ channels, 10¹¹
//! canvases), is refused with the flag's name and its range before any work, where it
//! had ended in a panic or an aborted allocation.

use clap::builder::RangedU64ValueParser;

/// A `usize` flag within `lo..=hi` ("invalid value '0' for '--batch <BATCH>': 0 is not
/// in 1..=65536").
pub fn within(lo: u64, hi: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(lo..=hi)
}
