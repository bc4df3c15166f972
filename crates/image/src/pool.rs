//! A small worker pool whose workers report progress to the calling thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use crate::{Error, Progress, Result};

/// What a job gets: a way to report progress and to see that the pull is abandoned.
pub(crate) struct Ctx<'a> {
    tx: mpsc::Sender<Progress>,
    abort: &'a AtomicBool,
    cancel: Option<&'a AtomicBool>,
}

impl Ctx<'_> {
    pub(crate) fn send(&self, p: Progress) {
        let _ = self.tx.send(p);
    }

    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed) || self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Runs `work` over `jobs` on up to `workers` threads; progress messages are passed to
/// `progress` on this thread. After the first error no new job starts and running ones
/// see [`Ctx::aborted`]; the first error is returned. Setting `cancel` abandons the jobs
/// the same way (they fail with [`Error::Cancelled`]).
pub(crate) fn run<J, F>(
    jobs: Vec<J>,
    workers: usize,
    cancel: Option<&AtomicBool>,
    progress: &mut dyn FnMut(Progress),
    work: F,
) -> Result<()>
where
    J: Send,
    F: Fn(J, &Ctx<'_>) -> Result<()> + Sync,
{
    let n = workers.max(1).min(jobs.len());
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<J>>());
    let abort = AtomicBool::new(false);
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..n {
            let ctx = Ctx {
                tx: tx.clone(),
                abort: &abort,
                cancel,
            };
            let (queue, first_err, work) = (&queue, &first_err, &work);
            s.spawn(move || loop {
                if ctx.aborted() {
                    break;
                }
                let job = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(job) = job else { break };
                if let Err(e) = work(job, &ctx) {
                    if !ctx.abort.swap(true, Ordering::Relaxed) || !matches!(e, Error::Cancelled) {
                        let mut slot = first_err.lock().unwrap_or_else(|e| e.into_inner());
                        if slot.is_none() {
                            *slot = Some(e);
                        }
                    }
                    break;
                }
            });
        }
        drop(tx);
        for p in rx {
            progress(p);
        }
    });
    match first_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) => Err(Error::Cancelled),
        None => Ok(()),
    }
}
