//! Sums across the replicas of one data-parallel step, asked for from inside their threads
//! (synchronised batch norm's statistics in forward, their gradients in backward).
//!
//! Each replica thread holds a link to the thread that called
//! [`super::DataParallel::forward_backward`]. That thread collects one request per replica,
//! adds them in replica order (so the result does not depend on thread timing), sums the
//! total across processes with the group's [`AllReduce`] (MPI allows only the thread that
//! initialised it to call it) and answers every replica. A replica that stops early, by an
//! error or a panic, makes the others' pending sums fail instead of waiting forever.

use std::cell::RefCell;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use super::AllReduce;
use crate::{Error, Result, Tensor};

const OP: &str = "sync_batch_norm";

pub(crate) enum Msg {
    Sum {
        replica: usize,
        values: Vec<f64>,
        reply: Sender<Result<Vec<f64>>>,
    },
    Done(usize),
}

/// A replica thread's way to the coordinating thread.
#[derive(Clone)]
pub(crate) struct Link {
    replica: usize,
    tx: Sender<Msg>,
}

thread_local! {
    static LINK: RefCell<Option<Link>> = const { RefCell::new(None) };
}

impl Link {
    fn sum(&self, values: Vec<f64>) -> Result<Vec<f64>> {
        let ended = || {
            Error::op(
                OP,
                format!(
                    "replica {}: the data-parallel step that recorded this sum has ended (backward must run inside forward_backward's loss)",
                    self.replica
                ),
            )
        };
        let (reply, answer) = channel();
        self.tx
            .send(Msg::Sum {
                replica: self.replica,
                values,
                reply,
            })
            .map_err(|_| ended())?;
        answer.recv().map_err(|_| ended())?
    }
}

/// Joins the current thread to a step as `replica` until dropped; dropping it (also while
/// unwinding from a panic) tells the coordinator that this replica has finished.
pub(crate) struct Joined(Link);

pub(crate) fn join(replica: usize, tx: Sender<Msg>) -> Joined {
    let link = Link { replica, tx };
    LINK.with(|l| *l.borrow_mut() = Some(link.clone()));
    Joined(link)
}

impl Drop for Joined {
    fn drop(&mut self) {
        LINK.with(|l| *l.borrow_mut() = None);
        self.0.tx.send(Msg::Done(self.0.replica)).ok();
    }
}

/// A replica's values to sum and where the total goes.
type Request = (Vec<f64>, Sender<Result<Vec<f64>>>);

/// The next message, or `None` once every sender is gone. A caller that is one of
/// rayon's workers (the program's main thread, which the CPU backend joins to the pool)
/// runs the pool's pending work while it waits: blocked here, it would leave the
/// replicas' CPU ops one worker fewer (one of two on a 2-core machine). Between looks it
/// waits on the channel for a short while rather than spinning.
fn receive(rx: &Receiver<Msg>) -> Option<Msg> {
    loop {
        match rayon::yield_now() {
            None => return rx.recv().ok(),
            Some(rayon::Yield::Executed) => match rx.try_recv() {
                Ok(msg) => return Some(msg),
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            },
            Some(rayon::Yield::Idle) => match rx.recv_timeout(Duration::from_micros(200)) {
                Ok(msg) => return Some(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            },
        }
    }
}

/// Answers the replicas' sums until every one of them is done; returns the replicas in the
/// order they finished (the first to fail is the cause of the others' failures).
pub(crate) fn coordinate(rx: Receiver<Msg>, replicas: usize, world: &dyn AllReduce) -> Vec<usize> {
    let mut pending: Vec<Option<Request>> = (0..replicas).map(|_| None).collect();
    let mut done = Vec::new();
    while done.len() < replicas {
        // Every replica sends Done before dropping its sender, so this ends.
        let Some(msg) = receive(&rx) else { break };
        match msg {
            Msg::Sum {
                replica,
                values,
                reply,
            } => pending[replica] = Some((values, reply)),
            Msg::Done(replica) => done.push(replica),
        }
        let waiting = pending.iter().filter(|p| p.is_some()).count();
        if waiting == 0 {
            continue;
        }
        if let Some(&gone) = done.first() {
            for (j, p) in pending.iter_mut().enumerate() {
                if let Some((_, reply)) = p.take() {
                    reply
                        .send(Err(Error::op(
                            OP,
                            format!("replica {gone} left the step (it failed, or had nothing more to sum) while replica {j} waited to sum its batch-norm statistics with it"),
                        )))
                        .ok();
                }
            }
        } else if waiting == replicas {
            let parts: Vec<_> = pending.iter_mut().map(|p| p.take().unwrap()).collect();
            let result = sum_parts(&parts, world);
            for (_, reply) in parts {
                reply
                    .send(result.clone().map_err(|m| Error::op(OP, m)))
                    .ok();
            }
        }
    }
    done
}

fn sum_parts(parts: &[Request], world: &dyn AllReduce) -> std::result::Result<Vec<f64>, String> {
    let len = parts[0].0.len();
    if let Some(j) = parts.iter().position(|(v, _)| v.len() != len) {
        return Err(format!(
            "replica 0 sent {len} values to sum and replica {j} {}: the replicas' models differ",
            parts[j].0.len()
        ));
    }
    let mut sum = vec![0.0f64; len];
    for (v, _) in parts {
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
    }
    world
        .all_reduce_sum_f64(&mut sum)
        .map_err(|e| format!("summing across processes: {e}"))?;
    Ok(sum)
}

/// Sums over every replica of the current data-parallel step and every process, outside
/// the graph: synchronised batch norm's statistics in forward, and in backward (its rule
/// takes one along) the sums its input gradient needs.
#[derive(Clone)]
pub(crate) struct ReplicaSum(Link);

impl ReplicaSum {
    /// The current step's, or `None` outside a step.
    pub(crate) fn current() -> Option<ReplicaSum> {
        LINK.with(|l| l.borrow().clone()).map(ReplicaSum)
    }

    /// `t` and a count beside it, each summed over the replicas and processes.
    pub(crate) fn sum(&self, t: &Tensor, count: f64) -> Result<(Tensor, f64)> {
        let mut values: Vec<f64> = t.to_vec()?.iter().map(|&v| v as f64).collect();
        values.push(count);
        let mut sum = self.0.sum(values)?;
        let total = sum.pop().unwrap_or(0.0);
        let summed = sum.iter().map(|&v| v as f32).collect();
        let out = Tensor::from_vec(summed, t.shape(), t.device())
            .map_err(|e| e.in_op(OP, &[t.shape()]))?;
        Ok((out, total))
    }
}
