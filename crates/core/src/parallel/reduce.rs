//! What data-parallel training needs from a group of processes: sums across all of them
//! and a broadcast from the first. MPI implements it (`fovea::mpi`, behind the `mpi`
//! feature); [`LocalWorld`] is the group of one.

use crate::Result;

/// A group of processes that sum buffers together (every member calls each method in the
/// same order with buffers of the same length, as with `MPI_Allreduce`).
pub trait AllReduce: Send + Sync {
    /// This process's index in the group.
    fn rank(&self) -> usize;
    /// How many processes the group has.
    fn size(&self) -> usize;
    /// Replaces `buf` with its elementwise sum over every process.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// The same in f64 (counts and checks that must be exact).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Replaces `buf` with rank 0's.
    fn broadcast_from_root(&self, buf: &mut [f32]) -> Result<()>;
}

/// A group of one process: every operation leaves the buffer as it is.
pub struct LocalWorld;

impl AllReduce for LocalWorld {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast_from_root(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
}
