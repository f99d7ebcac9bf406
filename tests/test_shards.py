"""Sharded ``spikec simulate``: local worker processes and a local Dask cluster give the
single-process result byte for byte, also when a worker dies mid-run."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spikec import shards

torch = pytest.importorskip("torch")

N_SAMPLES = 24
BATCH = 4


def _plan_covers(plan, n):
    seen = np.zeros(n, dtype=int)
    for sh in plan:
        seen[sh.start:sh.stop] += 1
    return bool((seen == 1).all())


@pytest.mark.parametrize("n,batch,workers", [(1, 4, 2), (24, 4, 2), (25, 4, 3), (1000, 32, 8),
                                             (7, 100, 4)])
def test_shards_cover_every_sample_once_on_batch_boundaries(n, batch, workers):
    plan = shards.plan_shards(n, batch, workers)
    assert _plan_covers(plan, n)
    assert [sh.index for sh in plan] == list(range(len(plan)))
    assert all(sh.start % batch == 0 for sh in plan)


def _square(x):
    return x * x


def _fail(x):
    from spikec.errors import DataError

    raise DataError(f"bad sample {x}")


def test_results_come_back_in_task_order_and_errors_propagate():
    tasks = [shards.Task(_square, (i,)) for i in range(7)]
    done = []
    assert shards.run_tasks(tasks, workers=2, progress=done.append) == [i * i for i in range(7)]
    assert sum(done) == 7
    from spikec.errors import DataError

    with pytest.raises(DataError, match="bad sample 3"):
        shards.run_tasks([shards.Task(_fail, (3,)), shards.Task(_square, (1,))], workers=2)


@pytest.fixture(scope="module")
def compiled_out(tmp_path_factory):
    """A tiny Spikformer V2 (random weights) compiled for loihi2, and a 24-sample data set."""
    from spikec import models
    from spikec.data import Dataset, save_npz
    from spikec.models.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("shards")
    torch.manual_seed(0)
    ckpt = d / "tiny.pt"
    save_checkpoint(models.create("spikformer_v2_tiny"), ckpt)
    rng = np.random.default_rng(1)
    data = save_npz(Dataset(rng.integers(0, 256, (N_SAMPLES, 1, 28, 28), dtype=np.uint8),
                            rng.integers(0, 10, N_SAMPLES), "tiny", 10), d / "data.npz")
    out = d / "OUT"
    r = subprocess.run([sys.executable, "-m", "spikec.cli", "compile", str(ckpt), "--target",
                        "loihi2", "-o", str(out), "-T", "2"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    return out, data


def _simulate(out, data, *extra, env=None):
    r = subprocess.run([sys.executable, "-m", "spikec.cli", "simulate", str(out), "--data",
                        str(data), "--batch-size", str(BATCH), "--json", *map(str, extra)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def single(compiled_out):
    out, data = compiled_out
    return {stage: _simulate(out, data, "--stage", stage) for stage in ("quantized", "float")}


@pytest.mark.parametrize("stage", ["quantized", "float"])
def test_two_local_workers_equal_one_process_byte_for_byte(compiled_out, single, stage):
    out, data = compiled_out
    sharded = _simulate(out, data, "--stage", stage, "--workers", 2)
    assert sharded == single[stage]
    assert len(json.loads(sharded)["predictions"]) == N_SAMPLES


def test_a_killed_local_worker_has_its_shard_rerun(compiled_out, single, tmp_path):
    import os

    out, data = compiled_out
    marker = tmp_path / "killed"
    env = dict(os.environ, **{shards.KILL_ENV: f"2:{marker}"})
    sharded = _simulate(out, data, "--workers", 2, env=env)
    assert marker.exists(), "the worker running shard 2 was not killed"
    assert sharded == single["quantized"]


def test_a_dask_cluster_of_two_workers_equals_one_process(compiled_out, single, tmp_path):
    import os

    distributed = pytest.importorskip("distributed")
    out, data = compiled_out
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster:
        assert _simulate(out, data, "--cluster", cluster.scheduler_address) == single["quantized"]
        marker = tmp_path / "killed"
        env = dict(os.environ, **{shards.KILL_ENV: f"1:{marker}"})
        sharded = _simulate(out, data, "--cluster", cluster.scheduler_address, env=env)
        assert marker.exists(), "the worker running shard 1 was not killed"
        assert sharded == single["quantized"]


def test_an_unreachable_cluster_is_one_line(compiled_out):
    pytest.importorskip("distributed")
    out, data = compiled_out
    r = subprocess.run([sys.executable, "-m", "spikec.cli", "simulate", str(out), "--data",
                        str(data), "--cluster", "tcp://127.0.0.1:9"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "cannot reach a Dask scheduler" in r.stderr


def test_a_sweep_on_two_workers_equals_one_process(compiled_out):
    out, _ = compiled_out

    def sweep(*extra):
        r = subprocess.run([sys.executable, "-m", "spikec.cli", "estimate", str(out), "--profile",
                            "loihi2", "--sweep", "neurons_per_core=512,1024,2048,4096",
                            "--no-save", "--json", *extra], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    one, two = sweep(), sweep("--workers", "2")
    assert len(one["sweep"]) == 4
    assert two == one
