"""One rank's failure stops every rank within seconds, with that rank's message.

A rank that fails alone (a data error, a non-finite loss, a full disk) leaves the others inside
their next collective. On NCCL they would wait out `dist.timeout_s` (600 s by default) and die
of a timeout that names no cause; on gloo they die at once, but of "Connection closed by peer",
and the failing rank's own message was printed nowhere (the CLI speaks for rank 0 only).

`stop_together` guards a multi-rank run. Its side channel is the rendezvous store
(MASTER_ADDR:MASTER_PORT: torchrun's agent store, or rank 0's under srun), reached through
clients of its own, so that a collective blocking the main thread cannot block it:

- the first rank to fail claims the failure (an atomic `add`), writes its message, waits until
  every other rank has seen it (at most ACK_TIMEOUT_S: under srun the store lives in rank 0,
  and rank 0 must print the message before a launcher kills it), then raises its own error;
- a watcher thread on every rank polls the store every POLL_S; on a peer's failure it keeps the
  message (rank 0 prints it: `error: rank R failed: ...`), acknowledges it, aborts the process
  group on NCCL (the blocked collective then raises) and, should the main thread still be inside
  the guard GRACE_S later (a wait nothing interrupts, e.g. DeepSpeed's shared-memory all-reduce),
  ends the process;
- the main thread's own exception (typically a collective broken by the failing rank's exit)
  becomes `PeerFailed`, naming the first failure, which rank 0 has already printed;
- where rank 0 hosts the store (srun), the other ranks of a run that failed inside the group
  leave only after rank 0's process has ended (`outlive_rank0`): `submit` runs srun with
  --kill-on-bad-exit, under which the first task to exit non-zero has the rest killed, and
  rank 0 must first write its result.

So whichever rank fails, the job's output holds one `error:` line, from rank 0, and every path
out of the guard, failure or not, leaves the process group (`shutdown`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist
from tqdm import tqdm

from levl_data.errors import DataError
from levl_model.errors import ModelError
from levl_train.distributed import DistEnv, in_group, shutdown
from levl_train.errors import PeerFailed, TrainError

POLL_S = 0.25
ACK_TIMEOUT_S = 5.0
GRACE_S = 10.0
LEAVE_TIMEOUT_S = 60.0  # rank 0 needs at most ~GRACE_S to leave, plus its result
STORE_TIMEOUT_S = 5.0
PRE_GROUP_TIMEOUT_S = 2.0
EXIT_CODE = 2  # the CLI's exit code for a user-facing error
USER_ERRORS = (TrainError, DataError, ModelError)


@dataclass(frozen=True)
class Failure:
    rank: int | None  # None: the store itself went away (its host exited)
    message: str

    def describe(self) -> str:
        return self.message if self.rank is None else f"rank {self.rank} failed: {self.message}"


def failure_message(err: BaseException) -> str:
    """One line: a user-facing error as it reads, anything else with its type (its traceback
    stays in the failing rank's own output)."""
    text = " ".join(str(err).split())
    if isinstance(err, USER_ERRORS):
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class FailureChannel:
    """One client of the rendezvous store: claim a failure, read it, acknowledge it."""

    def __init__(self, env: DistEnv, timeout_s: float = STORE_TIMEOUT_S) -> None:
        self.env = env
        # torchrun's agent store outlives a restart of its workers: the keys name the restart
        self.prefix = f"levl/failure/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        self.store = dist.TCPStore(env.master_addr, env.master_port, is_master=False,
                                   timeout=timedelta(seconds=timeout_s),
                                   wait_for_workers=False)

    def claim(self, message: str) -> Failure | None:
        """None when this rank failed first (its message is now the run's), else the failure
        that came first (seen, so acknowledged)."""
        if self.store.add(f"{self.prefix}/claims", 1) == 1:
            record = {"rank": self.env.rank, "message": message}
            self.store.set(f"{self.prefix}/message", json.dumps(record))
            self._wait_for_acknowledgements()
            return None
        self.store.wait([f"{self.prefix}/message"], timedelta(seconds=STORE_TIMEOUT_S))
        first = self.read()
        self.acknowledge()
        return first

    def read(self) -> Failure | None:
        key = f"{self.prefix}/message"
        if not self.store.check([key]):
            return None
        record = json.loads(self.store.get(key))
        return Failure(record["rank"], record["message"])

    def acknowledge(self) -> None:
        """Idempotent (one key per rank): the watcher and the main thread may both see it."""
        self.store.set(f"{self.prefix}/seen/{self.env.rank}", "1")

    def _wait_for_acknowledgements(self) -> None:
        others = [f"{self.prefix}/seen/{rank}" for rank in range(self.env.world_size)
                  if rank != self.env.rank]
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while not self.store.check(others) and time.monotonic() < deadline:
            time.sleep(POLL_S / 5)


class FailureWatch:
    """One rank's watcher thread, and the single place that prints a peer's failure."""

    def __init__(self, env: DistEnv) -> None:
        self.env = env
        self.peer: Failure | None = None
        self.left = threading.Event()  # the main thread has left the guard
        self._reported = False
        self._lock = threading.Lock()
        self._leaving = threading.Lock()
        self._has_left = False
        self._thread = threading.Thread(target=self._watch, name="levl-failure-watch",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Wait out a store connect in progress (it cannot be interrupted): a process that
        exits while the thread is inside it aborts ("terminate called without an active
        exception", exit 134) instead of exiting with its own error. A refused connect returns
        after its timeout plus the C++ error's construction (5.7 s measured for a 5 s timeout on
        2 loaded cores), so the wait allows twice the timeout; it ends when the thread does."""
        self.left.set()
        self._thread.join(timeout=2 * STORE_TIMEOUT_S)

    def report(self, failure: Failure) -> None:
        """Rank 0 prints the first failure once, whichever thread learns it first."""
        with self._lock:
            if self._reported or not self.env.is_main:
                return
            self._reported = True
        # tqdm.write: on a line of its own, not after the progress bar's carriage return
        tqdm.write(f"error: {failure.describe()}", file=sys.stderr)
        sys.stderr.flush()

    def _connect(self) -> FailureChannel | None:
        """Under srun the store appears when rank 0 joins the group: retry until it does."""
        while not self.left.is_set():
            try:
                return FailureChannel(self.env)
            except Exception:
                if self.left.wait(POLL_S):
                    break
        return None

    def _watch(self) -> None:
        channel = self._connect()
        while channel is not None and not self.left.wait(POLL_S):
            try:
                failure = channel.read()
            except Exception:  # the store's host (rank 0 under srun, or torchrun) is gone
                if not self.left.wait(1.0):  # not just a normal end on the store's host
                    self._stop(Failure(None, f"rank {self.env.rank} lost the rendezvous store "
                                             f"at {self.env.master_addr}:{self.env.master_port} "
                                             "(rank 0 or the launcher exited)"), None)
                return
            if failure is not None:
                if failure.rank != self.env.rank:  # our own: the main thread is raising it
                    self._stop(failure, channel)
                return

    def _stop(self, failure: Failure, channel: FailureChannel | None) -> None:
        """Keep, print and acknowledge a peer's failure, unblock the main thread, and end the
        process if it is still inside the guard GRACE_S later."""
        self.peer = failure
        self.report(failure)
        with contextlib.suppress(Exception):
            if channel is not None:
                channel.acknowledge()
        backstop = threading.Timer(GRACE_S, self._exit, args=(failure,))
        backstop.daemon = True
        backstop.start()
        abort_blocked_collectives()
        if self.left.wait(GRACE_S + 1):
            backstop.cancel()

    def leave_once(self) -> None:
        """The module's `leave_after_rank0`, once per run, whichever thread comes first (the
        backstop or the main thread leaving the guard): the other waits for it, then returns."""
        with self._leaving:
            if not self._has_left:
                leave_after_rank0(self.env)
                self._has_left = True

    def _exit(self, failure: Failure) -> None:
        if self.left.is_set():
            return
        if not self.env.is_main:
            print(f"levl: rank {self.env.rank} stopped ({failure.describe()})", file=sys.stderr)
            self.leave_once()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODE)


def abort_blocked_collectives() -> None:
    """NCCL can abort a communicator under a blocked collective, which then raises in the main
    thread; gloo cannot (its collectives end when the failing rank's sockets close)."""
    with contextlib.suppress(Exception):
        if dist.is_initialized() and dist.get_backend() == "nccl":
            from torch.distributed.distributed_c10d import _abort_process_group

            _abort_process_group()


@contextlib.contextmanager
def stop_together(env: DistEnv):
    """Guard a run: on one rank's failure every rank stops, rank 0 printing that rank's message;
    and every rank leaves the process group however it leaves (see the module docstring)."""
    watch = FailureWatch(env) if env.multi else None
    if watch is not None:
        watch.start()
    failed_in_group = False
    try:
        yield
    except Exception as err:
        failed_in_group = in_group()  # not dist.is_initialized(): false after an NCCL abort
        first = first_failure(env, err, watch) if watch is not None else None
        if first is not None:
            watch.report(first)
            raise PeerFailed(first.describe()) from err
        raise
    finally:
        if watch is not None:
            watch.stop()
        hosts = store_lives_in_rank0(env)
        peer_failed = watch is not None and watch.peer is not None
        try:  # rank 0 keeps its store for the waiting ranks, even if its own run ended well
            shutdown(keep_store=env.is_main and hosts and (failed_in_group or peer_failed))
        finally:
            if failed_in_group and hosts:
                watch.leave_once()


def store_lives_in_rank0(env: DistEnv) -> bool:
    """Under srun (and any launcher but torchrun with its agent's store) rank 0's process hosts
    the rendezvous store."""
    return env.multi and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"


def leave_after_rank0(env: DistEnv) -> None:
    """On every rank but 0 of a failing run whose store rank 0 hosts: `outlive_rank0`."""
    if not env.is_main and store_lives_in_rank0(env):
        outlive_rank0(env)


def outlive_rank0(env: DistEnv) -> None:
    """Return once rank 0's process has ended (its store's port closes), or after
    LEAVE_TIMEOUT_S. `levl-train submit` runs srun with --kill-on-bad-exit, so that a rank that
    dies without a word (the OOM killer, a segfault) ends the job at once instead of leaving
    NCCL peers blocked until the collective timeout; the price is that the first rank to exit
    non-zero has the rest killed, and rank 0 must have written its result (the one
    `submit --wait` and `status` read, naming the first failure) before that. A failing rank 0
    keeps its store until it exits (`shutdown(keep_store=True)`). A refused connection means
    rank 0 is gone: nothing to wait for. Only a rank that failed inside the group waits: before
    it joined, the group cannot have formed, so rank 0 is still before it or stuck in its
    rendezvous, and has no result to write (`submit --wait` then reads the tasks' logs)."""
    print(f"levl: rank {env.rank} waits for rank 0 to leave", file=sys.stderr, flush=True)
    deadline = time.monotonic() + LEAVE_TIMEOUT_S
    try:
        with socket.create_connection((env.master_addr, env.master_port),
                                      timeout=LEAVE_TIMEOUT_S) as sock:
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            sock.recv(1)  # the store sends nothing unasked: this returns when rank 0 ends
    except OSError:  # refused, reset, or the deadline
        pass


def first_failure(env: DistEnv, err: Exception, watch: FailureWatch) -> Failure | None:
    """None when `err` is the run's first failure, else the failure that came first; without
    the store, what the watcher saw, if anything. Before this rank has joined the group the
    store may not exist yet (srun: rank 0 starts it when it joins), so it is given
    PRE_GROUP_TIMEOUT_S, not the full store timeout: an error every rank meets alike while
    validating its input should not wait for a store no rank will start."""
    if watch.peer is not None:  # a peer claimed first (or the store is gone): nothing to ask
        return watch.peer
    timeout_s = STORE_TIMEOUT_S if dist.is_initialized() else PRE_GROUP_TIMEOUT_S
    try:
        return FailureChannel(env, timeout_s).claim(failure_message(err))
    except Exception:
        return watch.peer
