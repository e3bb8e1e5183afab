"""Graceful stops: Ctrl-C (SIGINT) or a preemption notice (SIGTERM: what a TPU VM or Slurm sends) asks the
running training loop to save a checkpoint at the next step boundary and stop; the launcher then says where
the run stopped and the command that resumes it, and exits 128 + the signal number, without a traceback.

    with interrupt.handling_signals():         # the launcher, around the job, in the main thread
        job(config, workdir)

    with interrupt.step_loop(ckpt, writer):    # inside the job, a loop that can stop cleanly
        for step in ...:
            ...
            interrupt.stop_if_requested(step, workdir, save, ckpt, writer)   # at a step boundary

Every loop that checkpoints uses the pair: train_loop, the RL stages (jaxsuite.rl.stages), CPMobius's
self-play and LatentChem's GRPO. Outside a step loop (a job's evaluation, sampling between stages) a signal
stops the process at once, as Python's default would, and the launcher reports the last checkpoint instead. A second
Ctrl-C while a stop is pending also stops at once. In a multi-process run every process must stop at the same
step (the next one is a collective): `should_stop` agrees across processes, every `every` calls.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading

log = logging.getLogger("jaxsuite.interrupt")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"requested": None, "listeners": 0, "installed": False, "calls": 0}


class Stopped(Exception):
    """A loop stopped on request after saving its checkpoint at `step` in `workdir`."""

    def __init__(self, step: int, workdir: str, signum: int):
        self.step, self.workdir, self.signum = int(step), str(workdir), int(signum)
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved in {workdir}")


def _handler(signum, frame):
    if _state["listeners"] > 0 and _state["requested"] is None:
        _state["requested"] = signum
        log.warning("%s received: saving a checkpoint at the end of this step, then stopping%s",
                    signal.Signals(signum).name, " (Ctrl-C again stops at once)" if signum == signal.SIGINT else "")
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def handling_signals():
    """Routes SIGINT and SIGTERM to this module inside the block and restores the previous handlers after it
    (main thread only; elsewhere, or when already routed, a no-op). A stop request left over from an earlier
    block is cleared."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _handler)
    _state["installed"], _state["requested"] = True, None
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state["installed"] = False


def requested() -> int | None:
    """The signal that asked for a stop, or None."""
    return _state["requested"]


@contextlib.contextmanager
def listening():
    """While inside, a signal asks for a stop instead of stopping the process."""
    _state["listeners"] += 1
    try:
        yield
    finally:
        _state["listeners"] -= 1


def should_stop(every: int = 1) -> bool:
    """True when a stop was asked for (on any process of a multi-process run; they are asked every `every`
    calls, a host synchronisation, so that all of them stop at the same step)."""
    import jax
    if jax.process_count() == 1:
        return _state["requested"] is not None
    _state["calls"] += 1
    if _state["calls"] % max(1, int(every)):
        return False
    import numpy as np
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.int32(_state["requested"] or 0))
    signum = int(np.max(flags))
    if signum and _state["requested"] is None:
        _state["requested"] = signum
    return bool(signum)


@contextlib.contextmanager
def step_loop(*closables):
    """The block of a loop that checkpoints: a signal asks for a stop (see `stop_if_requested`) instead of
    stopping the process, and on an error inside it (a bad record, a failed step) `closables` are closed, each
    checkpointer waiting for the save it is writing and each metrics file flushed, before the error goes on, so
    the error is the last thing the run reports, not an asynchronous save cut off at interpreter exit."""
    with listening():
        try:
            yield
        except BaseException:
            for c in closables:
                with contextlib.suppress(Exception):
                    c.close()
            raise


def stop_if_requested(step: int, workdir, save, *closables, every: int = 1) -> None:
    """At a step boundary inside `step_loop`: when a stop was asked for, calls save() (the step's checkpoint;
    a Checkpointer skips a step it already saved), closes `closables` and raises Stopped. In a multi-process
    run every `every`-th call is one small host all-gather (`should_stop`): train_loop passes log_every, as its
    steps are short; the RL loops check every step, whose sampling and update take far longer than that."""
    if should_stop(every=every):
        save()
        for c in closables:
            c.close()
        raise Stopped(step, str(workdir), requested())
