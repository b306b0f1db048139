//! Moving digits: short clips of a real MNIST digit sliding across a blank square, in one
//! of eight directions, for 3-D (space-time) convolution. One frame alone cannot tell the
//! direction; the stack of frames can. The digit is the central 20×20 of its 28×28 image,
//! the box MNIST normalises every digit into.

use super::InMemoryDataset;
use crate::{Device, Error, Result, Tensor};

/// How clips are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MovingOptions {
    /// frames per clip
    pub frames: usize,
    /// side of each square frame in pixels (at least 20 + the distance travelled)
    pub size: usize,
    /// pixels moved per frame along each moving axis
    pub speed: usize,
}

impl Default for MovingOptions {
    fn default() -> Self {
        MovingOptions {
            frames: 8,
            size: 32,
            speed: 1,
        }
    }
}

/// Side of the digit's box within its 28×28 image (rows and columns 4 to 23).
const DIGIT: usize = 20;

/// The eight directions of motion, in label order: (dx, dy) per frame in units of speed
/// (y grows downwards).
pub const DIRECTIONS: [(i64, i64); 8] = [
    (1, 0),
    (1, 1),
    (0, 1),
    (-1, 1),
    (-1, 0),
    (-1, -1),
    (0, -1),
    (1, -1),
];

/// Names of [`DIRECTIONS`] for printing.
pub const DIRECTION_NAMES: [&str; 8] = [
    "right",
    "down-right",
    "down",
    "down-left",
    "left",
    "up-left",
    "up",
    "up-right",
];

/// Moving-digit clips: `[N, 1, frames, size, size]` values in [0, 1], and per clip the
/// direction (index into [`DIRECTIONS`]) and the digit's class.
#[derive(Clone, Debug, PartialEq)]
pub struct MovingDigits {
    /// the clips, `[N, 1, T, S, S]` row-major
    pub clips: Vec<f32>,
    /// direction of each clip
    pub directions: Vec<usize>,
    /// class of each clip's digit
    pub digits: Vec<usize>,
    /// the options they were drawn with
    pub opts: MovingOptions,
}

impl MovingDigits {
    /// The clips from `start` (up to `len` of them) as a tensor on `device`.
    pub fn tensor(&self, start: usize, len: usize, device: &Device) -> Result<Tensor> {
        let o = &self.opts;
        let per = o.frames * o.size * o.size;
        let end = (start + len).min(self.directions.len());
        let values = self.clips[start * per..end * per].to_vec();
        Tensor::from_vec(values, &[end - start, 1, o.frames, o.size, o.size], device)
    }
}

/// `count` clips of digits from `source` (28×28 values in [0, 1]: load with mean 0, std 1),
/// each starting where its whole path stays inside the frame; deterministic from `seed`.
pub fn moving_digits(
    source: &InMemoryDataset,
    count: usize,
    opts: &MovingOptions,
    seed: u64,
) -> Result<MovingDigits> {
    const OP: &str = "moving_digits";
    let travel = (opts.frames.saturating_sub(1) * opts.speed) as i64;
    if source.shape != [1, 28, 28] || source.labels.is_empty() {
        return Err(Error::op(
            OP,
            format!(
                "needs a non-empty set of 1×28×28 digits, got items of shape {:?}",
                source.shape
            ),
        ));
    }
    if opts.frames == 0 || (opts.size as i64) < DIGIT as i64 + travel {
        return Err(Error::op(
            OP,
            format!(
                "a {0}×{0} frame cannot hold a 20×20 digit moving {travel} pixels over {1} frames",
                opts.size, opts.frames
            ),
        ));
    }
    let (s, t) = (opts.size, opts.frames);
    let mut state = seed;
    let mut next = |n: u64| {
        // SplitMix64, as the other generated data sets.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    };
    let mut out = MovingDigits {
        clips: vec![0.0; count * t * s * s],
        directions: Vec::with_capacity(count),
        digits: Vec::with_capacity(count),
        opts: *opts,
    };
    let room = (s - DIGIT) as i64;
    for i in 0..count {
        let k = next(source.labels.len() as u64) as usize;
        let dir = next(8) as usize;
        let (dx, dy) = DIRECTIONS[dir];
        let (vx, vy) = (dx * opts.speed as i64, dy * opts.speed as i64);
        // A start from which every frame's position stays in [0, room].
        let mut start = |v: i64| -> i64 {
            let lo = if v < 0 { travel } else { 0 };
            let hi = if v > 0 { room - travel } else { room };
            lo + next((hi - lo + 1) as u64) as i64
        };
        let (x0, y0) = (start(vx), start(vy));
        let digit = &source.values[k * 784..(k + 1) * 784];
        for f in 0..t {
            let (x, y) = ((x0 + vx * f as i64) as usize, (y0 + vy * f as i64) as usize);
            let frame = &mut out.clips[(i * t + f) * s * s..][..s * s];
            for r in 0..DIGIT {
                let row = (r + 4) * 28 + 4;
                frame[(y + r) * s + x..][..DIGIT].copy_from_slice(&digit[row..row + DIGIT]);
            }
        }
        out.directions.push(dir);
        out.digits.push(source.labels[k]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot() -> InMemoryDataset {
        // One "digit": a single bright pixel at (row 7, column 9), inside the 20×20 box.
        let mut values = vec![0.0; 784];
        values[7 * 28 + 9] = 1.0;
        InMemoryDataset {
            shape: vec![1, 28, 28],
            values,
            labels: vec![4],
            classes: 10,
            background: 0.0,
        }
    }

    #[test]
    fn the_digit_moves_one_step_per_frame_in_its_direction() {
        let opts = MovingOptions {
            frames: 5,
            size: 40,
            speed: 2,
        };
        let m = moving_digits(&dot(), 64, &opts, 3).unwrap();
        assert_eq!(m, moving_digits(&dot(), 64, &opts, 3).unwrap());
        let mut seen = [false; 8];
        for i in 0..64 {
            let (dx, dy) = DIRECTIONS[m.directions[i]];
            seen[m.directions[i]] = true;
            assert_eq!(m.digits[i], 4);
            let bright = |f: usize| {
                let frame = &m.clips[(i * 5 + f) * 1600..][..1600];
                let q = frame
                    .iter()
                    .position(|&v| v == 1.0)
                    .expect("the dot is in every frame");
                ((q % 40) as i64, (q / 40) as i64)
            };
            let (x0, y0) = bright(0);
            for f in 1..5 {
                assert_eq!(bright(f), (x0 + 2 * dx * f as i64, y0 + 2 * dy * f as i64));
            }
        }
        assert!(
            seen.iter().all(|&s| s),
            "all eight directions occur in 64 clips"
        );
        let t = m.tensor(60, 10, &Device::cpu()).unwrap();
        assert_eq!(t.shape(), &[4, 1, 5, 40, 40]);
    }

    #[test]
    fn a_frame_too_small_for_the_path_is_an_error() {
        let opts = MovingOptions {
            frames: 8,
            size: 26,
            speed: 1,
        };
        let Err(e) = moving_digits(&dot(), 1, &opts, 0) else {
            panic!("a 26×26 frame was accepted");
        };
        let e = e.to_string();
        assert!(
            e.starts_with("moving_digits:") && e.contains("26×26"),
            "{e}"
        );
    }
}
