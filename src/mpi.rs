//! Data-parallel training across processes and machines through MPI (the `mpi` feature):
//! [`MpiWorld`] is the [`AllReduce`] a [`crate::parallel::DataParallel`] joins with
//! `with_world`, carrying the gradient sums with `MPI_Allreduce` (GPU gradients are staged
//! through the host). Launch with `mpirun -np N target/release/examples/...`.

use std::thread::ThreadId;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

use crate::parallel::AllReduce;
use crate::{Error, Result};

/// `MPI_COMM_WORLD`, initialised once per process.
pub struct MpiWorld {
    _universe: Universe,
    world: SimpleCommunicator,
    owner: ThreadId,
}

// MPI is initialised with the "funneled" threading level: only the thread that created
// the world may call into it. Every method checks that, so sharing the handle is sound.
unsafe impl Send for MpiWorld {}
unsafe impl Sync for MpiWorld {}

impl MpiWorld {
    /// Initialises MPI (once per process) and returns `MPI_COMM_WORLD`.
    pub fn init() -> Result<MpiWorld> {
        let universe = mpi::initialize()
            .ok_or_else(|| Error::op("mpi", "MPI was already initialised in this process"))?;
        let world = universe.world();
        Ok(MpiWorld {
            _universe: universe,
            world,
            owner: std::thread::current().id(),
        })
    }

    fn check_thread(&self) -> Result<()> {
        if std::thread::current().id() != self.owner {
            return Err(Error::op(
                "mpi",
                "called from another thread than the one that initialised MPI",
            ));
        }
        Ok(())
    }
}

impl AllReduce for MpiWorld {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.check_thread()?;
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.check_thread()?;
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn broadcast_from_root(&self, buf: &mut [f32]) -> Result<()> {
        self.check_thread()?;
        self.world.process_at_rank(0).broadcast_into(buf);
        Ok(())
    }
}
