"""levl-data fetch against a real HTTP server on 127.0.0.1: stats, contents, subsets, resume.

Every metadata row names what the server will do with it, so the expected stats are known by
construction and compared exactly with the manifest (and with the server's own hit counts).
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from levl_data.cli import app
from levl_data.fetch.resume import LEDGER_NAME, WORK_DIR_NAME, keep_complete_shards
from levl_data.fetch.subset import UID_DTYPE, uid_pairs
from levl_data.manifest import read_manifest
from levl_data.testing import COLORS, make_tiny_shards
from levl_data.testing_http import ImageServer

runner = CliRunner()
IMAGE_SIZE = 32
# a 2 s timeout: at 1 s a good image served by this process's busy server timed out on a loaded
# 2-core machine (written 11 of 12); the slow URL still takes twice the timeout
FAST = ["--threads", "4", "--timeout", "2", "--samples-per-shard", "8"]
# each img2dataset process is a spawned interpreter importing torch/cv2/albumentations (seconds
# on a busy CPU): the first fetch runs 2 processes, the others 1 to keep the suite quick
TWO_PROCESSES, ONE_PROCESS = ["--processes", "2"], ["--processes", "1"]
SMALL = ["--image-size", str(IMAGE_SIZE), "--max-pixels", "4000000"]


@pytest.fixture(scope="module")
def server():
    with ImageServer(slow_seconds=4.0, huge_side=3000) as image_server:
        yield image_server


def cc12m_rows(server: ImageServer) -> tuple[list[tuple[str, str]], dict]:
    """22 rows: 12 good (10 direct, 2 via redirect) and 10 failures of known reasons."""
    rows = [(server.url("ok", i), f"photo number {i}") for i in range(10)]
    rows += [(server.url("redirect", 20 + i), f"photo number {20 + i}") for i in range(2)]
    rows += [(server.url("missing", i), f"missing {i}") for i in range(2)]
    rows += [(server.url("slow", 0), "slow"), (server.url("corrupt", 0), "corrupt")]
    rows += [(server.url("html", 0), "an html page"), (server.url("huge", 0), "too many pixels")]
    rows += [(server.url("ok", 0), "same url again"), (server.url("ok", 0), "and again")]
    rows += [(server.url("ok", 30), ""), (server.url("ok", 31), "   ")]
    expected = {
        "attempted": 22,
        "written": 12,
        "failures": {
            "duplicate_url": 2,
            "empty_caption": 2,
            "http_404": 2,
            "image_too_large": 1,
            "timeout": 1,
            "undecodable": 2,
        },
    }
    return rows, expected


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{url}\t{caption}\n" for url, caption in rows), "utf-8")
    return path


def fetch_cc12m(tsv: Path, out: Path, *extra: str):
    args = ["fetch", "cc12m", "--metadata", str(tsv), "--out", str(out), *FAST, *SMALL]
    args += [*extra] or ONE_PROCESS
    return runner.invoke(app, args)


def samples(manifest_path: Path) -> dict[str, dict]:
    """key -> {caption, json, image} over all shards of a manifest."""
    manifest = read_manifest(manifest_path)
    found: dict[str, dict] = {}
    for shard in manifest.shard_paths():
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                found.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return found


@pytest.fixture(scope="module")
def cc12m_fetch(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("cc12m")
    rows, expected = cc12m_rows(server)
    tsv = write_tsv(root / "cc12m.tsv", rows)
    before = Counter(server.hits)
    result = fetch_cc12m(tsv, root / "out", *TWO_PROCESSES)
    assert result.exit_code == 0, result.output
    hits = Counter(server.hits)
    hits.subtract(before)
    return {"tsv": tsv, "out": root / "out", "expected": expected, "hits": +hits, "result": result}


def test_fetch_cc12m_stats_match_what_the_server_served(cc12m_fetch):
    manifest = json.loads((cc12m_fetch["out"] / "manifest.json").read_text())
    stats, expected = manifest["stats"], cc12m_fetch["expected"]
    assert {key: stats[key] for key in expected} == expected
    assert manifest["num_samples"] == expected["written"]
    assert stats["success_rate"] == pytest.approx(12 / 22, abs=1e-6)
    assert manifest["source"]["kind"] == "cc12m"
    # rows 0-7 -> 00000 (8 ok); 8-15 -> 00001 (4 ok); 16-17 -> 00002 (html, huge: nothing
    # written, so the shard is counted in stats but left out of the shard list)
    assert [(s["path"], s["num_samples"]) for s in manifest["shards"]] == [
        ("00000.tar", 8),
        ("00001.tar", 4),
    ]
    hits = cc12m_fetch["hits"]
    # each kept URL fetched exactly once; duplicates and empty captions never requested
    assert hits["/ok/0.jpg"] == 1 and hits["/ok/30.jpg"] == 0 and hits["/ok/31.jpg"] == 0
    assert hits["/redirect/20.jpg"] == 1 and hits["/ok/20.jpg"] == 1
    assert sum(hits.values()) == 18 + 2  # 18 rows sent to img2dataset + 2 redirect targets
    line = cc12m_fetch["result"].stdout.strip().splitlines()[-1]
    assert line.startswith("fetched 12/22 samples into")


def test_fetch_cc12m_shards_hold_resized_images_with_their_captions(cc12m_fetch):
    found = samples(cc12m_fetch["out"] / "manifest.json")
    captions = sorted(sample["txt"].decode() for sample in found.values())
    assert captions == sorted([f"photo number {i}" for i in [*range(10), 20, 21]])
    for sample in found.values():
        index = int(sample["txt"].decode().rsplit(" ", 1)[1])
        image = PIL.Image.open(io.BytesIO(sample["jpg"])).convert("RGB")
        assert min(image.size) == IMAGE_SIZE and image.size == (38, 32)  # 48x40 keep_ratio
        mean = np.asarray(image, dtype=np.float32).mean(axis=(0, 1))
        assert np.abs(mean - list(COLORS.values())[index % len(COLORS)]).max() < 12
        assert json.loads(sample["json"])["status"] == "success"


def test_fetch_rerun_of_a_finished_fetch_downloads_nothing(cc12m_fetch, server):
    before = sum(server.hits.values())
    result = fetch_cc12m(cc12m_fetch["tsv"], cc12m_fetch["out"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("already complete:")
    assert sum(server.hits.values()) == before


def test_verify_decodes_n_images_per_shard_and_info_reports_histograms(cc12m_fetch):
    out = cc12m_fetch["out"]
    manifest = read_manifest(out)
    verified = runner.invoke(app, ["verify", str(out), "--decode", "2"])
    assert verified.exit_code == 0, verified.output
    assert f"{2 * len(manifest.shards)} images decoded" in verified.stdout
    info = runner.invoke(app, ["info", str(out), "--json"])
    assert info.exit_code == 0, info.output
    summary = json.loads(info.stdout)
    assert summary["samples"] == 12 and summary["success_rate"] == pytest.approx(12 / 22, 1e-6)
    histograms = summary["histograms"]
    assert histograms["samples_scanned"] == 12
    assert histograms["image_shorter_side"]["32"] == 12  # every stored image is 38x32
    assert histograms["caption_chars"]["8"] == 12  # "photo number N": 14-15 chars


def test_fetch_resume_redoes_only_broken_shards_and_matches_an_uninterrupted_fetch(
    cc12m_fetch, server, tmp_path
):
    """A killed fetch leaves a truncated tar without stats (shard 1) and, after a crash between
    writes, a truncated tar whose stats survived (shard 2); a rerun must redo exactly those."""
    complete = cc12m_fetch["out"]
    out = tmp_path / "out"
    shutil.copytree(complete, out)
    (out / "manifest.json").unlink()
    for name, drop_stats in [("00001", True), ("00002", False)]:
        tar = out / f"{name}.tar"
        tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
        if drop_stats:
            (out / f"{name}_stats.json").unlink()
    kept = (out / "00000.tar").read_bytes()
    before = Counter(server.hits)
    result = fetch_cc12m(cc12m_fetch["tsv"], out)
    assert result.exit_code == 0, result.output
    assert "resumed with 1 shards kept" in result.stdout
    hits = Counter(server.hits)
    hits.subtract(before)
    assert not any(hits[f"/ok/{i}.jpg"] for i in range(8))  # shard 0's rows: kept, not refetched
    assert sum((+hits).values()) == 10 + 2  # shards 1-2: 10 rows + 2 redirect targets
    assert (out / "00000.tar").read_bytes() == kept
    resumed, uninterrupted = samples(out / "manifest.json"), samples(complete / "manifest.json")
    assert {k: v["txt"] for k, v in resumed.items()} == {
        k: v["txt"] for k, v in uninterrupted.items()
    }
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (out, complete))
    assert a["stats"] == b["stats"] and a["num_samples"] == b["num_samples"]
    assert read_manifest(out).num_samples == 12


def test_shard_checks_in_several_processes_keep_and_drop_what_one_process_does(
    cc12m_fetch, tmp_path
):
    """The checks run in a pool when the fetch has several processes: same records, same
    truncated shard dropped, same ledger as the serial check."""
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        shutil.copytree(cc12m_fetch["out"], out)
        tar = out / "00001.tar"
        tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
        work = out / WORK_DIR_NAME
        (work / LEDGER_NAME).unlink()
        records = keep_complete_shards(out, work, workers=workers)
        results[workers] = ({n: (r.num_samples, r.sha256) for n, r in records.items()},
                            sorted(p.name for p in out.glob("0000*")))
    assert results[1] == results[2]
    assert sorted(results[2][0]) == ["00000", "00002"]
    assert "00001.tar" not in results[2][1]


def kill_fetch_mid_shard(command: list[str], out: Path, shard: str) -> None:
    """Run a fetch in its own process group and SIGKILL the whole group (levl-data and its
    img2dataset workers) while `shard`'s tar is open and its stats not yet written."""
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not (out / f"{shard}.tar").exists():
            assert process.poll() is None, "the fetch ended before the shard was opened"
            assert time.monotonic() < deadline, f"{shard}.tar never appeared"
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert not (out / f"{shard}_stats.json").exists(), "killed too late: the shard finished"


def test_fetch_killed_with_sigkill_mid_shard_finishes_on_rerun_like_an_uninterrupted_one(
    cc12m_fetch, tmp_path
):
    """Shard 1 holds the row the server answers after the client's timeout, so the shard is
    open for over a second: the kill lands inside it. The rerun keeps shard 0 and ends with the
    same samples and stats as the uninterrupted fetch."""
    out = tmp_path / "out"
    command = [str(Path(sys.executable).parent / "levl-data"), "fetch", "cc12m", "--metadata",
               str(cc12m_fetch["tsv"]), "--out", str(out), *FAST, *SMALL, *ONE_PROCESS]
    kill_fetch_mid_shard(command, out, "00001")
    assert not (out / "manifest.json").exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed with 1 shards kept" in rerun.stdout, rerun.stdout
    complete = cc12m_fetch["out"]
    resumed, uninterrupted = samples(out / "manifest.json"), samples(complete / "manifest.json")
    assert {k: v["txt"] for k, v in resumed.items()} == {
        k: v["txt"] for k, v in uninterrupted.items()}
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (out, complete))
    assert a["stats"] == b["stats"] and a["num_samples"] == b["num_samples"] == 12


@pytest.mark.parametrize("distributor", ["pyspark", "ray"])
def test_fetch_on_a_local_spark_or_ray_instance_matches_the_multiprocessing_fetch(
    cc12m_fetch, server, tmp_path, distributor
):
    """`--distributor pyspark` (Spark local mode) and `ray` (a local Ray instance), started by
    levl-data as a user on one machine gets them, write the same samples and stats."""
    out = tmp_path / "out"
    before = Counter(server.hits)
    result = fetch_cc12m(cc12m_fetch["tsv"], out, *ONE_PROCESS, "--distributor", distributor)
    log = out / ".levl-fetch" / "img2dataset.log"
    assert result.exit_code == 0, result.output + (log.read_text() if log.exists() else "")
    hits = Counter(server.hits)
    hits.subtract(before)
    assert +hits == cc12m_fetch["hits"]  # every URL requested as often as by multiprocessing
    complete = cc12m_fetch["out"]
    got, want = samples(out / "manifest.json"), samples(complete / "manifest.json")
    assert {k: v["txt"] for k, v in got.items()} == {k: v["txt"] for k, v in want.items()}
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (out, complete))
    assert a["stats"] == b["stats"] and a["num_samples"] == b["num_samples"] == 12
    assert [s["path"] for s in a["shards"]] == [s["path"] for s in b["shards"]]
    assert a["source"]["params"]["distributor"] == distributor
    assert a["source"]["params"]["processes"] == 1


def fetch_cc12m_process(tsv: Path, out: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    """The CLI in its own process, as a user runs it beside a cluster (a JVM or Ray driver
    started by an earlier in-process fetch would otherwise be reused)."""
    args = ["fetch", "cc12m", "--metadata", str(tsv), "--out", str(out), *FAST, *SMALL, *extra]
    return subprocess.run([str(Path(sys.executable).parent / "levl-data"), *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


def assert_same_fetch(out: Path, complete: Path) -> None:
    got, want = samples(out / "manifest.json"), samples(complete / "manifest.json")
    assert {k: v["txt"] for k, v in got.items()} == {k: v["txt"] for k, v in want.items()}
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (out, complete))
    assert a["stats"] == b["stats"] and a["num_samples"] == b["num_samples"] == 12


def test_fetch_on_a_terminal_shows_shards_done_and_samples_written(cc12m_fetch, tmp_path):
    """img2dataset's output goes to the log; the terminal gets one bar over the shards, with
    the samples written and failed so far (18 rows reach img2dataset: 12 written, 6 failed)."""
    primary, secondary = pty.openpty()
    args = ["fetch", "cc12m", "--metadata", str(cc12m_fetch["tsv"]), "--out",
            str(tmp_path / "out"), *FAST, *SMALL, *ONE_PROCESS]
    process = subprocess.Popen([str(Path(sys.executable).parent / "levl-data"), *args],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_until_closed, args=(primary, chunks))
    reader.start()
    stdout, _ = process.communicate(timeout=600)
    reader.join(timeout=60)
    os.close(primary)
    terminal = b"".join(chunks).decode("utf-8", "replace")
    assert process.returncode == 0, terminal
    assert "fetched 12/22 samples" in stdout.decode()
    final = terminal.replace("\r", "\n").strip().splitlines()[-1]
    assert "fetch: 100%" in final and "3/3" in final, terminal
    assert "written=12" in final and "failed=6" in final, terminal


def _read_until_closed(fd: int, chunks: list[bytes]) -> None:
    """Drain a pty's primary side (a child blocks once the pty buffer is full)."""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: every writer of the secondary side has closed it
            return
        if not data:
            return
        chunks.append(data)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def spark_cluster(tmp_path):
    """A Spark standalone cluster on loopback: a master and two 1-core workers (two "nodes"),
    started with the spark-class launcher pyspark ships; yields (master URL, master log)."""
    import pyspark

    home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    url = f"spark://127.0.0.1:{free_port()}"
    daemons = [("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                           "--port", url.rsplit(":", 1)[1], "--webui-port", str(free_port())])]
    daemons += [(f"worker{n}", ["org.apache.spark.deploy.worker.Worker", url, "--host",
                                "127.0.0.1", "--cores", "1", "--memory", "1g", "--webui-port",
                                str(free_port()), "--work-dir", str(tmp_path / f"work{n}")])
                for n in (1, 2)]
    processes = []
    try:
        for name, args in daemons:
            with open(tmp_path / f"{name}.log", "w") as log:
                processes.append(subprocess.Popen(
                    [str(home / "bin" / "spark-class"), *args], stdout=log,
                    stderr=subprocess.STDOUT, env=env, start_new_session=True))
        master_log = tmp_path / "master.log"
        wait_for(lambda: master_log.read_text().count("Registering worker") == 2, 120,
                 master_log)
        yield url, master_log
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(condition, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def test_fetch_on_a_spark_standalone_cluster_runs_executors_on_both_workers(
    cc12m_fetch, spark_cluster, tmp_path
):
    """`--master` in PYSPARK_SUBMIT_ARGS (Spark's own variable) sends the fetch to a cluster:
    the master launches its executors on both workers and the shards match multiprocessing's."""
    url, master_log = spark_cluster
    out = tmp_path / "out"
    env = {"PYSPARK_SUBMIT_ARGS": f"--master {url} pyspark-shell", "SPARK_LOCAL_IP": "127.0.0.1"}
    done = fetch_cc12m_process(cc12m_fetch["tsv"], out, env, *ONE_PROCESS,
                               "--distributor", "pyspark")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_fetch(out, cc12m_fetch["out"])
    launched = re.findall(r"Launching executor \S+ on worker (\S+)", master_log.read_text())
    assert len(set(launched)) == 2, master_log.read_text()[-3000:]


def test_fetch_joins_a_running_ray_cluster_and_leaves_it_running(cc12m_fetch, tmp_path):
    """RAY_ADDRESS sends the fetch to a two-node Ray cluster (Ray's own cluster_utils: a head
    and a second raylet on this machine); the fetch runs there as a job and disconnects without
    shutting the cluster down."""
    import ray
    from ray._private.state import jobs
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "out"
        done = fetch_cc12m_process(cc12m_fetch["tsv"], out, {"RAY_ADDRESS": cluster.address},
                                   *ONE_PROCESS, "--distributor", "ray")
        assert done.returncode == 0, done.stderr[-3000:]
        assert_same_fetch(out, cc12m_fetch["out"])
        ray.init(address=cluster.address)
        try:
            assert sum(node["Alive"] for node in ray.nodes()) == 2
            fetches = [job for job in jobs() if "levl-data fetch" in job.get("Entrypoint", "")]
            assert len(fetches) == 1 and fetches[0]["IsDead"], jobs()
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()


@pytest.mark.parametrize(
    ("distributor", "module", "extra"), [("pyspark", "pyspark", "spark"), ("ray", "ray", "ray")]
)
def test_fetch_with_a_distributor_whose_extra_is_missing_says_what_to_install(
    monkeypatch, tmp_path, distributor, module, extra
):
    import levl_data.fetch.distributors as distributors

    real = distributors.find_spec
    monkeypatch.setattr(
        distributors, "find_spec", lambda name: None if name == module else real(name)
    )
    tsv = write_tsv(tmp_path / "cc12m.tsv", [("http://127.0.0.1:9/a.jpg", "a")])
    result = fetch_cc12m(tsv, tmp_path / "out", "--distributor", distributor)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: --distributor {distributor} needs {module}: pip install 'levl-data[{extra}]'\n"
    )
    assert not (tmp_path / "out").exists()


def test_fetch_with_pyspark_and_no_java_says_so(monkeypatch, tmp_path):
    import levl_data.fetch.distributors as distributors

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(distributors.shutil, "which", lambda name: None)
    tsv = write_tsv(tmp_path / "cc12m.tsv", [("http://127.0.0.1:9/a.jpg", "a")])
    result = fetch_cc12m(tsv, tmp_path / "out", "--distributor", "pyspark")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --distributor pyspark needs Java 17 or newer")
    assert not (tmp_path / "out").exists()


def test_fetch_refuses_an_out_dir_holding_another_dataset(cc12m_fetch, tmp_path):
    other = make_tiny_shards(tmp_path / "other", n=4).parent
    listing = {p.name: p.read_bytes() for p in other.iterdir()}
    result = fetch_cc12m(cc12m_fetch["tsv"], other)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: out dir {other}: already holds manifest.json")
    assert {p.name: p.read_bytes() for p in other.iterdir()} == listing


def test_fetch_refuses_metadata_without_the_caption_column(tmp_path):
    tsv = tmp_path / "one-column.tsv"
    tsv.write_text("http://127.0.0.1:9/a.jpg\nhttp://127.0.0.1:9/b.jpg\n")
    result = fetch_cc12m(tsv, tmp_path / "out")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: metadata {tsv}: not a CC12M TSV with 2 tab-separated columns")
    assert not (tmp_path / "out").exists()


# ---- DataComp-L: parquet metadata, uid subset, face blurring ------------------------------


def uid(index: int) -> str:
    return f"{index:016x}{index * 7919:016x}"


@pytest.fixture(scope="module")
def datacomp_metadata(server, tmp_path_factory):
    """6 rows: 4 in the subset (2 checkerboards, one with a face box over its left half)."""
    root = tmp_path_factory.mktemp("datacomp")
    urls = [
        server.url("checker", 0),
        server.url("checker", 1),
        server.url("ok", 40),
        server.url("missing", 40),
        server.url("ok", 41),
        server.url("ok", 42),
    ]
    boxes = [[[0.0, 0.0, 0.5, 1.0]], [], [], [], [[0.1, 0.1, 0.2, 0.2]], []]
    table = pa.table(
        {
            "uid": [uid(i) for i in range(6)],
            "url": urls,
            "text": [f"datacomp sample {i}" for i in range(6)],
            "original_width": [64] * 6,
            "original_height": [64] * 6,
            "face_bboxes": pa.array(boxes, pa.list_(pa.list_(pa.float64()))),
        }
    )
    parquet = root / "0000.parquet"
    pq.write_table(table, parquet)
    subset = root / "subset.npy"
    np.save(subset, np.sort(uid_pairs([uid(i) for i in (0, 1, 2, 3)])))
    return {"root": root, "parquet": parquet, "subset": subset}


def test_fetch_datacomp_keeps_the_subset_uids_and_blurs_face_boxes(datacomp_metadata, server):
    out = datacomp_metadata["root"] / "out"
    before = Counter(server.hits)
    args = [
        "fetch",
        "datacomp-l",
        "--metadata",
        str(datacomp_metadata["parquet"]),
        "--subset-uids",
        str(datacomp_metadata["subset"]),
        "--out",
        str(out),
        *FAST,
        *ONE_PROCESS,
        "--image-size",
        "64",
        "--resize-mode",
        "keep_ratio",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    hits = Counter(server.hits)
    hits.subtract(before)
    assert set((+hits).elements()) == {
        "/checker/0.jpg",
        "/checker/1.jpg",
        "/ok/40.jpg",
        "/missing/40.jpg",
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stats"]["attempted"] == 4 and manifest["stats"]["failures"] == {"http_404": 1}
    assert manifest["stats"]["metadata_rows"] == 6 and manifest["stats"]["selected"] == 4
    assert manifest["source"]["subset"]["sha256"] is not None
    assert manifest["image"]["faces_blurred"] is True
    found = {json.loads(s["json"])["uid"]: s for s in samples(out / "manifest.json").values()}
    assert sorted(found) == [uid(0), uid(1), uid(2)]
    blurred = np.asarray(PIL.Image.open(io.BytesIO(found[uid(0)]["jpg"])).convert("L"), float)
    sharp = np.asarray(PIL.Image.open(io.BytesIO(found[uid(1)]["jpg"])).convert("L"), float)
    assert blurred[8:56, 4:28].std() < 0.5 * sharp[8:56, 4:28].std()  # face box: blurred
    assert blurred[8:56, 40:60].std() > 0.8 * sharp[8:56, 40:60].std()  # outside: untouched


def test_fetch_datacomp_refuses_a_subset_file_of_the_wrong_dtype(datacomp_metadata, tmp_path):
    bad = tmp_path / "uids.npy"
    np.save(bad, np.arange(4, dtype=np.int64))
    args = [
        "fetch",
        "datacomp-l",
        "--metadata",
        str(datacomp_metadata["parquet"]),
        "--subset-uids",
        str(bad),
        "--out",
        str(tmp_path / "out"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: subset {bad}: dtype int64 shape (4,), expected")
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_fetch_datacomp_refuses_metadata_missing_columns(tmp_path):
    parquet = tmp_path / "meta.parquet"
    pq.write_table(pa.table({"uid": [uid(1)], "url": ["http://127.0.0.1:9/x.jpg"]}), parquet)
    args = ["fetch", "datacomp-l", "--metadata", str(parquet), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: metadata {parquet}: missing column(s) text, face_bboxes (DataComp metadata has "
        "uid, url, text, face_bboxes; pass the pool's metadata parquet files)\n"
    )
    assert not (tmp_path / "out").exists()


def test_uid_pairs_split_the_128_bit_uid_into_two_u8_halves():
    pairs = uid_pairs(["0123456789abcdef" + "fedcba9876543210"])
    assert pairs.dtype == UID_DTYPE
    assert (int(pairs["f0"][0]), int(pairs["f1"][0])) == (0x0123456789ABCDEF, 0xFEDCBA9876543210)
