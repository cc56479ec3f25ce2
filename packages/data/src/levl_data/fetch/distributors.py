"""Make `--distributor pyspark|ray` work on one machine as it does on a cluster.

img2dataset takes the distributor by name and, left to itself, starts Spark with a 16 GB driver
heap and `python3` from PATH as the worker interpreter (not levl's environment), lets Ray
auto-start on every core whatever `--processes` says and keeps it running, and with `ray` not
installed silently downloads nothing. Here instead: a one-line error when the extra is missing,
and a local SparkSession or Ray instance sized by `--processes` when none is running, stopped
afterwards. A session or cluster the user already runs is used as it is: Spark's through
`--master` in PYSPARK_SUBMIT_ARGS, Ray's through RAY_ADDRESS or `ray start`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec

from levl_data.errors import DataError

# distributor -> (module it imports, levl-data extra that installs it)
EXTRAS = {"pyspark": ("pyspark", "spark"), "ray": ("ray", "ray")}
# The Spark driver only schedules shard tasks and collects (status, shard) pairs; the Python
# workers download, decode and encode. img2dataset's 16G would reserve most of a laptop.
SPARK_DRIVER_MEMORY = "2g"


def check_distributor(name: str) -> None:
    """Refuse, before any work, a distributor that cannot start here.

    Without this a missing `ray` makes img2dataset skip every shard without a word, and a
    missing `pyspark` or Java ends in a traceback from deep inside img2dataset or py4j.
    """
    if name not in EXTRAS:
        return
    module, extra = EXTRAS[name]
    if find_spec(module) is None:
        raise DataError(f"--distributor {name} needs {module}: pip install 'levl-data[{extra}]'")
    if name == "pyspark" and not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise DataError(
            "--distributor pyspark needs Java 17 or newer: install a JRE (e.g. Debian's "
            "openjdk-17-jre-headless) or set JAVA_HOME"
        )


def worker_env(distributor: str) -> dict[str, str]:
    """Environment a distributor's workers need beyond levl's own (added for the fetch only).

    Spark starts its Python workers with $PYSPARK_PYTHON, else `python3` from PATH, which is not
    the interpreter levl-data runs in unless its venv is activated: default it to this one.
    """
    if distributor == "pyspark":
        return {"PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON") or sys.executable}
    return {}


@contextmanager
def distributor_running(distributor: str, processes: int, env: dict[str, str]) -> Iterator[None]:
    """Have `distributor` ready for img2dataset for the duration (nothing to do for
    multiprocessing). Enter it after `env` is in os.environ: local workers inherit it."""
    if distributor == "pyspark":
        with _spark_session(processes, env):
            yield
    elif distributor == "ray":
        with _ray_instance(processes, env):
            yield
    else:
        yield


@contextmanager
def _spark_session(processes: int, env: dict[str, str]) -> Iterator[None]:
    """Use the active SparkSession (spark-submit, a notebook), else start one: on the cluster
    named by `--master` in PYSPARK_SUBMIT_ARGS (Spark's own variable), else `local[processes]`.

    Executors on other nodes inherit their worker daemon's environment, not this process's, so
    levl's worker environment goes as `spark.executorEnv.*`. img2dataset picks up whichever
    session is active and leaves it running, so the one started here is stopped here.
    """
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is not None:
        yield
        return
    builder = SparkSession.builder.appName("levl-data fetch")
    builder = builder.config("spark.driver.memory", SPARK_DRIVER_MEMORY)
    for key, value in env.items():
        builder = builder.config(f"spark.executorEnv.{key}", value)
    if "--master" not in os.environ.get("PYSPARK_SUBMIT_ARGS", "").split():
        builder = builder.master(f"local[{processes}]")
    spark = builder.getOrCreate()
    try:
        yield
    finally:
        spark.stop()


@contextmanager
def _ray_instance(processes: int, env: dict[str, str]) -> Iterator[None]:
    """Join the Ray cluster this process would join, else start a local instance of `processes`
    CPUs (one shard task per CPU); disconnect or shut down afterwards.

    Left to itself, img2dataset's first `.remote()` auto-starts Ray on every core and never shuts
    it down. A cluster is RAY_ADDRESS or the last `ray start` on this node (Ray's own lookup);
    its workers may run on other nodes, so levl's worker environment (the pixel ceiling OpenCV
    enforces before decoding) travels as the job's `env_vars`.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    runtime_env = {"env_vars": env}
    if _ray_cluster_address() is None:
        ray.init(num_cpus=processes, include_dashboard=False, runtime_env=runtime_env)
    else:
        ray.init(runtime_env=runtime_env)
    try:
        yield
    finally:
        ray.shutdown()


def _ray_cluster_address() -> str | None:
    """The address `ray.init()` would connect to, or None when it would start a new instance.

    Ray's own lookup (RAY_ADDRESS, then /tmp/ray/ray_current_cluster from `ray start`); its
    public API offers none, and `num_cpus` is refused when joining a cluster.
    """
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(None)
