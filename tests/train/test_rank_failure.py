"""One rank's failure stops every rank within seconds, and rank 0 prints that rank's message.

The ranks are started as srun starts them (SLURM_PROCID/SLURM_NTASKS, rank 0 hosting the
rendezvous store), each with its own stderr, on the CPU (gloo).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from failing_shards import shards_failing_on

from levl_data.testing import make_tiny_shards

BIN = Path(sys.executable).parent
COLLECTIVE_TIMEOUT_S = 300
STOP_WITHIN_S = 20  # failures.GRACE_S (10 s) is the longest any rank may linger


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_rank(rank: int, port: int, argv: list[str], log_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "SLURM_PROCID": str(rank), "SLURM_NTASKS": "2",
           "SLURM_LOCALID": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    with open(log_dir / f"rank{rank}.err", "w") as stderr:
        return subprocess.Popen([*map(str, argv)], env=env, stdout=subprocess.DEVNULL,
                                stderr=stderr, start_new_session=True)


def wait_for_line(path: Path, prefix: str, processes: list[subprocess.Popen],
                  timeout: float) -> float:
    """Poll `path` until a line starts with `prefix`; returns when it appeared."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.startswith(prefix) for line in lines(path)):
            return time.monotonic()
        if all(p.poll() is not None for p in processes):
            break
        time.sleep(0.05)
    raise AssertionError(f"no line {prefix!r} in {path}:\n{path.read_text()[-3000:]}")


def lines(path: Path) -> list[str]:
    """stderr lines, tqdm's carriage-return redraws split off."""
    return [part.strip() for line in path.read_text().splitlines() for part in line.split("\r")]


def finish_all(processes: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(0.1, deadline - time.monotonic())) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, 9)


def start_data_error_run(tmp_path: Path, failing: int) -> tuple[Path, list[subprocess.Popen]]:
    """A 2-rank DeepSpeed micro run, started as srun starts it, whose rank `failing` has
    replaced shards; returns the manifest and the two processes."""
    manifest = shards_failing_on(tmp_path, failing)
    argv = [BIN / "levl-train", "run", "micro_synthetic", "--data", manifest,
            "--out", tmp_path / "run", "--set", "engine=deepspeed", "--set", "steps=6",
            "--set", "data.batch_size=8", "--set", "threads=1",
            "--set", f"dist.timeout_s={COLLECTIVE_TIMEOUT_S}"]
    port = free_port()
    return manifest, [start_rank(rank, port, argv, tmp_path) for rank in (0, 1)]


@pytest.mark.parametrize("failing", [1, pytest.param(0, marks=pytest.mark.slow)])
def test_a_data_error_on_one_rank_stops_both_with_its_message(tmp_path, failing):
    """`failing`'s shards were replaced: its loader raises at its first batch while the other
    rank is already inside the step's collectives. Both ranks exit (code 2) seconds
    after, far inside the collective timeout, and rank 0 prints the failing rank's error as the
    one `error:` line; rank 1 prints none. Rank 0 failing is the harder case under srun: the
    store that carries the message lives in rank 0's process."""
    started = time.monotonic()
    manifest, ranks = start_data_error_run(tmp_path, failing)
    reported = wait_for_line(tmp_path / "rank0.err", "error: ", ranks, timeout=240)
    codes = finish_all(ranks, timeout=STOP_WITHIN_S)
    stopped = time.monotonic()
    assert codes == [2, 2], codes
    assert stopped - reported < STOP_WITHIN_S
    assert stopped - started < COLLECTIVE_TIMEOUT_S / 2
    errors = [line for line in lines(tmp_path / "rank0.err") if line.startswith("error: ")]
    who = "rank 1 failed: " if failing == 1 else ""
    assert len(errors) == 1 and errors[0].startswith(f"error: {who}manifest {manifest}: "), errors
    assert f"`levl-data verify {manifest}`" in errors[0], errors  # the loader's DataError
    assert not [line for line in lines(tmp_path / "rank1.err") if "error:" in line]


def finish_as_srun_kills(processes: list[subprocess.Popen], timeout: float
                         ) -> tuple[list[int], list[int]]:
    """What `srun --kill-on-bad-exit` does (levl-train submit passes it): the first task to
    exit non-zero has every other task killed at once. Returns the exit codes (-9: killed)
    and the ranks in the order they ended."""
    deadline, order = time.monotonic() + timeout, []
    while len(order) < len(processes) and time.monotonic() < deadline:
        for rank, process in enumerate(processes):
            if rank not in order and process.poll() is not None:
                order.append(rank)
                if process.returncode != 0:
                    for other in processes:
                        if other.poll() is None:
                            os.killpg(other.pid, 9)
        time.sleep(0.002)
    codes = finish_all(processes, timeout=5)
    order += [rank for rank in range(len(processes)) if rank not in order]
    return codes, order


def test_under_kill_on_bad_exit_the_failing_rank_outlives_rank_0(tmp_path):
    """Rank 1's data error under srun's --kill-on-bad-exit: had rank 1 left first, srun would
    kill rank 0 before it wrote its result (the one `submit --wait` reads). Rank 1 leaves the
    group (rank 0's collective breaks at once) and waits for rank 0's process to end."""
    manifest, ranks = start_data_error_run(tmp_path, failing=1)
    reported = wait_for_line(tmp_path / "rank0.err", "error: ", ranks, timeout=240)
    codes, order = finish_as_srun_kills(ranks, timeout=STOP_WITHIN_S)
    assert time.monotonic() - reported < STOP_WITHIN_S
    assert codes[0] == 2 and order[0] == 0, (codes, order, (tmp_path / "rank0.err").read_text())
    assert codes[1] in (2, -9), codes  # exited after rank 0, or killed by srun waiting for it
    errors = [line for line in lines(tmp_path / "rank0.err") if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: rank 1 failed: manifest {manifest}")
    assert lines(tmp_path / "rank1.err").count("levl: rank 1 waits for rank 0 to leave") == 1


WATCHED_RANK = textwrap.dedent("""
    import sys, time
    import torch.distributed as dist
    from levl_train import failures
    from levl_train.distributed import dist_env, init_process_group
    from levl_train.errors import TrainError

    failures.GRACE_S = 3.0
    env = dist_env()
    with failures.stop_together(env):
        init_process_group(env, "gloo", 300)
        dist.barrier()
        if env.rank == 1:
            raise TrainError("loss is nan at step 3; lower optim.lr")
        time.sleep(120)  # a wait nothing interrupts (NCCL without abort, a shm all-reduce)
""")


def test_a_rank_stuck_where_nothing_interrupts_it_is_stopped_by_the_watcher(tmp_path):
    """Rank 0 sits in a wait no error reaches (on NCCL a collective whose peer died hangs so
    until the timeout): its watcher prints rank 1's message, and ends the process GRACE_S
    later, while rank 1 exits with its own error."""
    script = tmp_path / "rank.py"
    script.write_text(WATCHED_RANK)
    port = free_port()
    ranks = [start_rank(rank, port, [sys.executable, script], tmp_path) for rank in (0, 1)]
    reported = wait_for_line(tmp_path / "rank0.err", "error: ", ranks, timeout=120)
    codes = finish_all(ranks, timeout=STOP_WITHIN_S)
    assert codes[0] == 2, (codes, (tmp_path / "rank0.err").read_text())
    assert codes[1] == 1  # a script, not the CLI: the TrainError is a traceback here
    assert time.monotonic() - reported < STOP_WITHIN_S
    errors = [line for line in lines(tmp_path / "rank0.err") if line.startswith("error: ")]
    assert errors == ["error: rank 1 failed: loss is nan at step 3; lower optim.lr"], errors
    assert "TrainError: loss is nan at step 3" in (tmp_path / "rank1.err").read_text()


@pytest.mark.parametrize("fails", [False, True])
def test_every_way_out_of_a_run_leaves_the_process_group(tmp_path, fails):
    """`train` runs inside stop_together: whether the run ends or raises, the group is
    destroyed (NCCL communicators and the store are not left to the interpreter's exit)."""
    import torch.distributed as dist

    from levl_train.distributed import DistEnv
    from levl_train.errors import TrainError
    from levl_train.failures import stop_together

    expected = pytest.raises(TrainError) if fails else contextlib.nullcontext()
    with expected, stop_together(DistEnv()):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/init", rank=0,
                                world_size=1)
        if fails:
            raise TrainError("loss is nan at step 3; lower optim.lr")
    assert not dist.is_initialized()


def test_an_error_before_the_store_exists_exits_with_it_not_an_abort(tmp_path):
    """Rank 0 of 3 (torchrun's variables, no store on the port) refuses its config at once,
    while the watcher thread is still inside its store connect. Exiting then aborted the
    interpreter (exit 134, "terminate called without an active exception") instead of
    leaving with the error."""
    shards = make_tiny_shards(tmp_path / "shards", n=16, image_size=32)
    script = textwrap.dedent(f"""
        from levl_train.errors import TrainError
        from levl_train.golden import golden_config
        from levl_train.loop import train
        try:
            train(golden_config({str(shards)!r}, "deepspeed"), {str(tmp_path / "run")!r})
        except TrainError as err:
            raise SystemExit(f"refused: {{err}}")
    """)
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "refused: data.batch_size=8 is not divisible by world size 3" in result.stderr


PRE_GROUP_RANK = textwrap.dedent("""
    import time
    from levl_train import failures
    from levl_train.distributed import dist_env, init_process_group
    from levl_train.errors import TrainError

    env = dist_env()
    with failures.stop_together(env):
        if env.rank == 1:
            raise TrainError("manifest /mnt/data/m.json: no such file; mount it on every node")
        time.sleep(4)  # rank 0 still reading its own input: its store opens as rank 1 leaves
        init_process_group(env, "gloo", 300)
""")


def test_a_rank_failing_before_the_group_forms_leaves_at_once_and_its_log_says_why(tmp_path):
    """Rank 1 fails before the group forms (its node cannot see the data). Rank 0 cannot get
    past the group's rendezvous without it, so it has no result to write: rank 1 does not wait
    for it (it used to, up to LEAVE_TIMEOUT_S, once rank 0's store was open), srun's
    --kill-on-bad-exit ends rank 0, and `submit --wait` reads the cause from the tasks' logs."""
    from levl_train.submit import logged_failure

    script = tmp_path / "rank.py"
    script.write_text(PRE_GROUP_RANK)
    port = free_port()
    ranks = [start_rank(rank, port, [sys.executable, script], tmp_path) for rank in (0, 1)]
    codes, order = finish_as_srun_kills(ranks, timeout=STOP_WITHIN_S)
    assert order[0] == 1 and codes == [-9, 1], (codes, order, (tmp_path / "rank1.err").read_text())
    logs = [(rank, tmp_path / f"rank{rank}.err") for rank in (0, 1)]
    assert logged_failure(logs) == ("rank 1 failed: manifest /mnt/data/m.json: no such file; "
                                    "mount it on every node")


@pytest.mark.parametrize(("agent_store", "hosts"), [
    (None, True),  # srun (no torchrun agent): rank 0 hosts the store
    ("True", False),  # torchrun's agent hosts it
    ("False", True),  # torchrun without a shared agent store: rank 0 hosts it
])
def test_only_a_store_in_rank_0_makes_a_failing_rank_wait_for_it(monkeypatch, agent_store,
                                                                  hosts):
    """torchrun's agent hosts the store (and outlives every worker): nothing to wait for there.
    Where rank 0 hosts it, a failing rank 1 waits until rank 0's port closes: here a listener
    that closes after 0.5 s stands in for rank 0's store."""
    from levl_train import failures
    from levl_train.distributed import DistEnv

    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    if agent_store is not None:
        monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", agent_store)

    def close_the_waiting_client() -> None:
        with contextlib.suppress(OSError):  # nobody connected: the accept times out
            listener.accept()[0].close()

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(1.0)
        env = DistEnv(rank=1, world_size=2, master_port=listener.getsockname()[1])
        assert failures.store_lives_in_rank0(env) is hosts
        started = time.monotonic()  # before the timer: `waited` >= 0.5 s where it waits
        closer = threading.Timer(0.5, close_the_waiting_client)
        closer.start()
        failures.leave_after_rank0(env)
        waited = time.monotonic() - started
        closer.join()
    assert (waited >= 0.4) is hosts, waited


def test_the_backstop_and_the_main_thread_wait_for_rank_0_once(monkeypatch, capsys):
    """A failing rank's watcher backstop and its main thread can both reach the wait for rank 0
    (the main thread leaves the guard while the backstop waits): one waits, the other waits
    for it, and the line is printed once. A listener that closes its clients after 0.5 s
    stands in for rank 0's store."""
    from levl_train import failures
    from levl_train.distributed import DistEnv

    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)

    def close_clients_after_half_a_second() -> None:
        clients, deadline = [], time.monotonic() + 0.5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                clients.append(listener.accept()[0])
        for client in clients:
            client.close()

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.05)
        watch = failures.FailureWatch(DistEnv(rank=1, world_size=2,
                                              master_port=listener.getsockname()[1]))
        waited = []

        def leave() -> None:
            watch.leave_once()
            waited.append(time.monotonic() - started)

        started = time.monotonic()
        threads = [threading.Thread(target=target) for target in
                   (close_clients_after_half_a_second, leave, leave)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert capsys.readouterr().err.count("levl: rank 1 waits for rank 0 to leave") == 1
    assert len(waited) == 2 and min(waited) >= 0.4, waited  # the second waited for the first


def run_on_a_free_port(source: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a one-process script, its port as argv[1]; it must exit 0."""
    script = tmp_path / "script.py"
    script.write_text(source)
    result = subprocess.run([sys.executable, script, str(free_port())], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


ABORTED = textwrap.dedent("""
    import socket, sys
    from torch.distributed.distributed_c10d import _abort_process_group
    from levl_train.distributed import DistEnv, in_group, init_process_group, shutdown

    port = int(sys.argv[1])
    init_process_group(DistEnv(0, 1, 0, "127.0.0.1", port), "gloo", 60)
    _abort_process_group()  # what the watcher does on NCCL when a peer fails
    socket.create_connection(("127.0.0.1", port), timeout=5).close()  # still serving
    print("in group after the abort:", in_group())
    shutdown()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        print("store closed at shutdown")
""")


def test_the_store_outlives_an_aborted_group_until_the_process_leaves_it(tmp_path):
    """On NCCL the watcher aborts the group when a peer fails, which drops torch's references
    to the store: rank 0's store closed under the ranks waiting on it, and `is_initialized()`
    turned false, so a rank whose collective the abort broke took itself for one that failed
    before joining and did not wait. levl holds the store from joining, and `in_group` says
    where the failure happened. (gloo's abort does the same to the store as NCCL's.)"""
    result = run_on_a_free_port(ABORTED, tmp_path)
    assert "in group after the abort: True" in result.stdout, result.stdout
    assert "store closed at shutdown" in result.stdout, result.stdout


ABORTED_RANK = textwrap.dedent("""
    import time
    import torch.distributed as dist
    from torch.distributed.distributed_c10d import _abort_process_group
    from levl_train import failures
    from levl_train.distributed import dist_env, init_process_group

    env = dist_env()
    with failures.stop_together(env):
        init_process_group(env, "gloo", 300)
        dist.barrier()
        if env.rank == 0:
            time.sleep(3)  # rank 0 writing its result
        else:
            _abort_process_group()  # what the watcher does on NCCL when a peer fails
            raise RuntimeError("NCCL communicator was aborted")  # the collective it broke
""")


def test_a_rank_whose_collective_the_abort_broke_still_waits_for_rank_0(tmp_path):
    """On NCCL a peer's failure reaches a rank as an abort of its group, then an error from the
    collective it broke: that rank failed inside the group and must wait for rank 0 (it used to
    read `dist.is_initialized()`, false after the abort, and leave at once)."""
    script = tmp_path / "rank.py"
    script.write_text(ABORTED_RANK)
    port = free_port()
    ranks = [start_rank(rank, port, [sys.executable, script], tmp_path) for rank in (0, 1)]
    codes, _ = finish_as_srun_kills(ranks, timeout=60)
    # rank 0 finished its work (had rank 1 left first, srun would have killed it: -9); rank 1
    # left when rank 0's store closed, in rank 0's teardown, so either may be seen to end first
    assert codes == [0, 1], (codes, (tmp_path / "rank1.err").read_text())
    assert "levl: rank 1 waits for rank 0 to leave" in lines(tmp_path / "rank1.err")


KEPT_STORE = textwrap.dedent("""
    import socket, sys
    import torch.distributed as dist
    from levl_train.distributed import DistEnv, init_process_group, shutdown

    port = int(sys.argv[1])
    env = DistEnv(0, 1, 0, "127.0.0.1", port)
    init_process_group(env, "gloo", 60)
    dist.distributed_c10d._get_default_store().set("levl/old", "1")
    shutdown(keep_store=True)
    socket.create_connection(("127.0.0.1", port), timeout=5).close()  # still serving
    init_process_group(env, "gloo", 60)  # the same port
    print("old key seen:", dist.distributed_c10d._get_default_store().check(["levl/old"]))
    shutdown()
""")


def test_a_kept_store_serves_until_the_process_joins_a_group_again(tmp_path):
    """A failed rank 0 keeps its store up past `shutdown` for its peers' wait; a group joined
    later in the same process starts a clean store on that port, not the kept one with the
    failed run's keys (torch's default store is multi-tenant: it would be reused)."""
    result = run_on_a_free_port(KEPT_STORE, tmp_path)
    assert "old key seen: False" in result.stdout, result.stdout + result.stderr[-2000:]
