"""gpudl.distributed: the communicators, the averaged optimizer step and the sharded loader.

The multi-rank tests launch tests/mpi/train_ranks.py under `mpiexec -n N` (the one beside sys.executable first, as
the mpich wheel installs it) and compare what every rank wrote against one process trained here with the same global
batch. They skip, saying why, where mpi4py or mpiexec is missing.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy
import pytest

from gpudl import distributed, nn, optim, to_numpy
from gpudl.data import DataLoader
from gpudl.distributed import DistributedError, DistributedOptimizer, LocalCommunicator, MPICommunicator
from mpi import workload

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "mpi", "train_ranks.py")

LAUNCH_TIMEOUT = 120


def _mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def _require_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install \"gpudl[mpi]\")")
    if _mpiexec() is None:
        pytest.skip("no mpiexec beside the interpreter or on the PATH (pip install mpich)")


def _clean_env():
    """The environment without an MPI launcher's variables (pytest itself may run under one)."""
    env = {k: v for k, v in os.environ.items() if k not in distributed.LAUNCHER_VARIABLES}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _launch(ranks, out, *options, via_mpi4py=False):
    """Run train_ranks.py on `ranks` ranks; the completed process (a hang fails the test after the timeout)."""
    _require_mpi()
    python = [sys.executable, "-m", "mpi4py"] if via_mpi4py else [sys.executable]
    command = [_mpiexec(), "-n", str(ranks), *python, SCRIPT, str(out), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, env=_clean_env(),
                          check=False)


def _params(out, name, rank, when="after"):
    with numpy.load(os.path.join(out, f"{name}-rank{rank}.npz")) as arrays:
        count = sum(k.startswith(when + ".") for k in arrays.files)
        return [arrays[f"{when}.{i}"] for i in range(count)]


def _reference(model_name, optimizer_name, seed=100):
    """One process, global batch workload.BATCH, rank 0's initial weights: the run every rank must reproduce."""
    model = workload.build_model(model_name, seed)
    workload.train(model, workload.build_optimizer(optimizer_name, model.parameters()), workload.loader(model_name))
    return [p.data for p in model.parameters()]


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_agree_and_equal_one_process_with_the_global_batch(tmp_path, ranks):
    done = _launch(ranks, tmp_path)
    assert done.returncode == 0, done.stderr
    for model_name in workload.MODELS:
        for optimizer_name in workload.OPTIMIZERS:
            name = f"{model_name}-{optimizer_name}"
            initial = [_params(tmp_path, name, r, "before") for r in range(ranks)]
            assert not numpy.array_equal(initial[0][0], initial[1][0]), "the ranks should start from different seeds"
            final = [_params(tmp_path, name, r) for r in range(ranks)]
            for rank in range(1, ranks):
                for a, b in zip(final[0], final[rank]):
                    numpy.testing.assert_array_equal(a, b, err_msg=f"{name}: rank {rank} differs from rank 0")
            for got, want in zip(final[0], _reference(model_name, optimizer_name)):
                numpy.testing.assert_allclose(got, want, rtol=0, atol=1e-10, err_msg=name)


def test_one_mpi_rank_is_bit_identical_to_the_plain_optimizer(tmp_path):
    done = _launch(1, tmp_path, "--models", "lenet")
    assert done.returncode == 0, done.stderr
    for optimizer_name in workload.OPTIMIZERS:
        got = _params(tmp_path, f"lenet-{optimizer_name}", 0)
        for a, b in zip(got, _reference("lenet", optimizer_name)):
            numpy.testing.assert_array_equal(a, b)


def test_a_rank_that_raises_aborts_every_rank_and_names_itself(tmp_path):
    done = _launch(2, tmp_path, "--models", "mlp", "--optimizers", "sgd", "--fail", "raise")
    assert done.returncode != 0
    assert "labels must lie in [0, 5)" in done.stderr
    assert "gpudl.distributed: rank 1 of 2 failed (ValueError" in done.stderr
    assert not list(tmp_path.iterdir()), "no rank may finish the run"


def test_a_rank_killed_with_sigkill_ends_every_rank_and_its_pid_is_named(tmp_path):
    done = _launch(2, tmp_path, "--models", "mlp", "--optimizers", "sgd", "--fail", "kill", via_mpi4py=True)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    pids = dict(re.findall(r"rank (\d+) pid (\d+)", output))
    assert set(pids) == {"0", "1"}, output
    # mpiexec names a process that ended by SIGKILL: rank 1, or rank 0 that it then killed (which one it reports is
    # a race); gpudl's start-up line says which rank each pid is
    named = re.search(r"PID (\d+)\b", output)
    assert named and named.group(1) in pids.values() and "signal 9" in output, output
    assert not list(tmp_path.iterdir())


def test_ranks_with_different_models_are_stopped_at_start_up(tmp_path):
    done = _launch(2, tmp_path, "--models", "mlp", "--optimizers", "sgd", "--mismatch-rank", "1")
    assert done.returncode != 0
    assert "parameter 0 is (8, 17) float64 on rank 1 but (8, 16) float64 on rank 0" in done.stderr


class _PretendRanks(LocalCommunicator):
    """Two ranks as seen from rank 0: the other rank's signature is given."""

    size = 2

    def __init__(self, other_model):
        self.other = other_model

    def allgather_text(self, text):
        return [text, json.dumps(distributed._signature(self.other.parameters()))]


def test_a_different_parameter_count_is_named():
    mine, theirs = workload.build_model("mlp", 0), workload.build_model("lenet", 0)
    expected = (r"rank 1 has 10 parameter arrays \(61,706 values\), rank 0 has 4 \(229 values\); "
                r"parameter 0 is \(6, 1, 5, 5\) float64 on rank 1 but \(8, 16\) float64 on rank 0")
    with pytest.raises(DistributedError, match=expected):
        distributed.check_same_parameters(mine.parameters(), _PretendRanks(theirs))
    distributed.check_same_parameters(mine.parameters(), _PretendRanks(workload.build_model("mlp", 1)))


def test_auto_outside_mpiexec_is_one_local_rank_without_mpi():
    code = ("import sys; from gpudl import distributed, gpu_available; c = distributed.init('auto'); "
            "print(c.backend, c.rank, c.size, c.local_rank, 'mpi4py.MPI' in sys.modules, gpu_available())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_clean_env(),
                          check=False)
    backend, rank, size, local_rank, mpi_loaded, gpu = done.stdout.split()
    assert (rank, size, local_rank, mpi_loaded) == ("0", "1", "0", "False"), done.stderr
    assert backend == "local" or (gpu == "True" and backend == "nccl")


def test_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(DistributedError, match=r'pip install "gpudl\[mpi\]"'):
        distributed.init("mpi")


def test_unknown_backend_and_bad_root_are_refused():
    with pytest.raises(ValueError, match="unknown backend 'gloo'"):
        distributed.init("gloo")
    with pytest.raises(ValueError, match=r"root must be a rank in \[0, 1\)"):
        distributed.init("local").broadcast_([numpy.zeros(2)], root=1)


@pytest.mark.parametrize("optimizer_name", workload.OPTIMIZERS)
def test_local_backend_is_bit_identical_to_the_plain_optimizer(optimizer_name):
    model = workload.build_model("lenet", 100)
    comm = distributed.init("local")
    distributed.broadcast_parameters(model, comm)
    wrapped = DistributedOptimizer(workload.build_optimizer(optimizer_name, model.parameters()), comm)
    workload.train(model, wrapped, workload.loader("lenet"))
    for a, b in zip((p.data for p in model.parameters()), _reference("lenet", optimizer_name)):
        numpy.testing.assert_array_equal(a, b)


class _DoubleGradients(LocalCommunicator):
    """A stand-in collective that doubles what it reduces, to see exactly what the optimizer hands it."""

    def __init__(self):
        self.calls = []

    def allreduce_mean_(self, arrays):
        self.calls.append([a.size for a in arrays])
        for a in arrays:
            a *= 2


def test_distributed_optimizer_reduces_one_flat_buffer_once_per_step(xp):
    model = workload.build_model("mlp", 0).to("cpu" if xp is numpy else "cuda")
    comm = _DoubleGradients()
    wrapped = DistributedOptimizer(optim.SGD(model.parameters(), 0.5), comm)
    grads = [numpy.random.default_rng(i).standard_normal(p.grad.shape) for i, p in enumerate(model.parameters())]
    for p, g in zip(model.parameters(), grads):
        p.grad[...] = xp.asarray(g)
    start = [to_numpy(p.data).copy() for p in model.parameters()]
    wrapped.synchronize()
    wrapped.step()                      # already synchronized: no second reduction
    assert comm.calls == [[sum(p.data.size for p in model.parameters())]]
    for p, w, g in zip(model.parameters(), start, grads):
        numpy.testing.assert_allclose(to_numpy(p.data), w - 0.5 * 2 * g, rtol=0, atol=1e-15)
    wrapped.step()
    assert len(comm.calls) == 2


def test_mpi_reduces_any_array_through_a_contiguous_host_copy(xp):
    strided = xp.arange(12.0).reshape(3, 4)[:, ::2]
    MPICommunicator._on_host(strided, lambda host: host.__imul__(3))
    numpy.testing.assert_array_equal(to_numpy(strided), numpy.arange(12.0).reshape(3, 4)[:, ::2] * 3)


@pytest.mark.parametrize("form", ["bytes", "tuple"])
def test_one_nccl_rank_starts_with_the_unique_id_in_the_form_cupy_gives(monkeypatch, form):
    """CuPy 14's get_unique_id gives bytes and its NcclCommunicator takes bytes only; earlier CuPy's, tuples of C
    chars (a stand-in NCCL module of either kind, no GPU chosen)."""
    from mpi.stand_in_nccl import StandInNccl
    nccl = StandInNccl(form)
    monkeypatch.setattr(distributed.NCCLCommunicator, "_use_local_gpu", lambda self: None)
    comm = distributed.NCCLCommunicator(nccl, None)
    assert (comm.rank, comm.size, comm.backend) == (0, 1, "nccl")
    assert nccl.communicators == [(1, nccl.issued, 0)]
    host = numpy.arange(3.0)
    comm.allreduce_mean_([host])                    # a host array on one rank without MPI: itself
    numpy.testing.assert_array_equal(host, numpy.arange(3.0))


def test_an_nccl_unique_id_of_the_wrong_size_is_named():
    class Short:
        def get_unique_id(self):
            return b"\x01" * 64
    with pytest.raises(DistributedError, match="gave 64 bytes, not the 128 of an ncclUniqueId"):
        distributed.exchange_unique_id(Short(), None, 0)


@pytest.mark.parametrize("form", ["bytes", "tuple"])
def test_two_nccl_ranks_get_rank_0s_unique_id_over_mpi(tmp_path, form):
    _require_mpi()
    command = [_mpiexec(), "-n", "2", sys.executable, os.path.join(HERE, "mpi", "nccl_start.py"), str(tmp_path), form]
    done = subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, env=_clean_env(),
                          check=False)
    assert done.returncode == 0, done.stderr
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    issued = ranks[0]["issued"]
    assert issued is not None and ranks[1]["issued"] is None, "only rank 0 asks NCCL for an id"
    assert [(r["size"], r["ndev"], r["rank"], r["id"]) for r in ranks] == [(2, 2, 0, issued), (2, 2, 1, issued)]


@pytest.mark.gpu
def test_nccl_with_one_rank_trains_lenet_as_the_local_backend(cupy):
    if distributed._nccl()[0] is None:
        pytest.skip(distributed._nccl()[1])
    comms = {"local": distributed.init("local"), "nccl": distributed.init("nccl")}
    assert (comms["nccl"].rank, comms["nccl"].size) == (0, 1)
    results = {}
    for name, comm in comms.items():
        model = workload.build_model("lenet", 100).to("cuda")
        distributed.broadcast_parameters(model, comm)
        X, y = workload.data("lenet")
        batches = DataLoader(X, y, workload.BATCH, seed=7, device="cuda", shard=(comm.rank, comm.size))
        workload.train(model, DistributedOptimizer(optim.Adam(model.parameters(), 1e-3), comm), batches)
        results[name] = [to_numpy(p.data) for p in model.parameters()]
    for a, b in zip(results["local"], results["nccl"]):
        numpy.testing.assert_array_equal(a, b)


def test_distributed_optimizer_passes_lr_and_state_through():
    model = workload.build_model("mlp", 0)
    inner = optim.Adam(model.parameters(), 1e-3)
    wrapped = DistributedOptimizer(inner, distributed.init("local"))
    wrapped.lr = 0.25
    assert inner.lr == 0.25 and wrapped.lr == 0.25
    for p in model.parameters():
        p.grad[...] = 1.0
    wrapped.step()
    assert wrapped.steps == 1
    state = wrapped.state_dict()
    assert state["steps"] == 1 and set(state) == set(inner.state_dict())
    other = DistributedOptimizer(optim.Adam(workload.build_model("mlp", 0).parameters()), distributed.init("local"))
    other.load_state_dict(state)
    numpy.testing.assert_array_equal(other.optimizer.m[0], inner.m[0])
    wrapped.zero_grad()
    assert all(not p.grad.any() for p in model.parameters())


def _shards(size, n=23, batch=6, **options):
    """Each rank's list of label batches for two epochs (labels are the row numbers)."""
    X = numpy.arange(n, dtype=numpy.float64)[:, None]
    loaders = [DataLoader(X, numpy.arange(n), batch, seed=3, shard=(r, size), **options) for r in range(size)]
    return loaders, [[[y.tolist() for _, y in loader] for _ in range(2)] for loader in loaders]


def test_shards_cut_each_global_batch_rank_by_rank():
    plain = DataLoader(numpy.zeros((23, 1)), numpy.arange(23), 6, seed=3)
    global_batches = [[y.tolist() for _, y in plain] for _ in range(2)]
    loaders, shards = _shards(3)
    assert [len(loader) for loader in loaders] == [4, 4, 4]
    for epoch in range(2):
        for k, batch in enumerate(global_batches[epoch]):
            assert [shards[r][epoch][k] for r in range(3)] == [batch[r::3] for r in range(3)]
        seen = sorted(row for r in range(3) for batch in shards[r][epoch] for row in batch)
        assert seen == list(range(23)), "every row once per epoch, on exactly one rank"
    assert global_batches[0] != global_batches[1]


def test_a_last_batch_smaller_than_the_ranks_is_dropped():
    loaders, shards = _shards(3, n=13, batch=6)          # 6 + 6 + 1 rows: the last row cannot feed three ranks
    assert [len(loader) for loader in loaders] == [2, 2, 2]
    assert all(len(epoch) == 2 and all(len(b) == 2 for b in epoch) for rank in shards for epoch in rank)
    with pytest.raises(ValueError, match="batch_size 2 is the global batch"):
        DataLoader(numpy.zeros((8, 1)), numpy.zeros(8), 2, shard=(0, 3))
    for shard in [(3, 3), (0, 0), (1,), "01"]:
        with pytest.raises(ValueError, match="shard must be"):
            DataLoader(numpy.zeros((8, 1)), numpy.zeros(8), 4, shard=shard)


def test_one_shard_of_one_is_the_plain_loader():
    X, y = numpy.random.default_rng(0).standard_normal((10, 3)), numpy.arange(10)
    for a, b in zip(DataLoader(X, y, 4, seed=5, shard=(0, 1)), DataLoader(X, y, 4, seed=5)):
        numpy.testing.assert_array_equal(a[0], b[0])


def test_sharded_transforms_keep_the_ranks_in_step_and_resume():
    def shift(x, rng):
        return x + rng.integers(0, 1000, size=x.shape)

    loaders, shards = _shards(2, transform=shift)
    assert shards[0][1] != shards[1][1]
    assert sorted(row for batch in shards[0][1] + shards[1][1] for row in batch) == list(range(23))
    resumed = DataLoader(numpy.arange(23.0)[:, None], numpy.arange(23), 6, seed=3, shard=(1, 2), transform=shift)
    resumed.load_state_dict(loaders[1].state_dict())
    assert loaders[0].state_dict() == loaders[1].state_dict(), "one checkpoint (rank 0's) serves every rank"
    assert [x.tolist() for x, _ in resumed] == [x.tolist() for x, _ in loaders[1]]


def test_mean_loss_over_equal_shards_averages_to_the_global_gradient():
    X, y = workload.data("mlp")
    model = workload.build_model("mlp", 0)
    loss = nn.SoftmaxCrossEntropy()

    def gradient(rows):
        model.zero_grad()
        loss.forward(model.forward(X[rows]), y[rows])
        model.backward(loss.backward())
        return numpy.concatenate([p.grad.ravel() for p in model.parameters()])

    rows = numpy.arange(12)
    averaged = numpy.mean([gradient(rows[r::3]) for r in range(3)], axis=0)
    numpy.testing.assert_allclose(averaged, gradient(rows), rtol=0, atol=1e-14)


def test_clipping_applies_to_the_averaged_gradient():
    model = workload.build_model("mlp", 0)
    grads = [numpy.random.default_rng(i).standard_normal(p.grad.shape) for i, p in enumerate(model.parameters())]
    for p, g in zip(model.parameters(), grads):
        p.grad[...] = g
    start = [p.data.copy() for p in model.parameters()]
    DistributedOptimizer(optim.SGD(model.parameters(), 1.0), _DoubleGradients(), clip_norm=1.0).step()
    doubled = [2 * g for g in grads]         # what the collective hands back; clipped to norm 1 (eps as PyTorch's)
    scale = 1.0 / (numpy.sqrt(sum(float((g ** 2).sum()) for g in doubled)) + 1e-6)
    assert scale < 0.5, "the test needs gradients whose clipping is visible"
    for p, w, g in zip(model.parameters(), start, doubled):
        numpy.testing.assert_allclose(p.data, w - scale * g, rtol=0, atol=1e-12)


def test_backend_follows_the_device_and_the_launcher(monkeypatch):
    for name in distributed.LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)      # as if MPI were never started in this process
    assert [distributed.backend_for(d) for d in ("cpu", "cuda", "cuda:1")] == ["local", "auto", "auto"]
    monkeypatch.setenv("PMI_RANK", "0")
    assert [distributed.backend_for(d) for d in ("cpu", "cuda")] == ["mpi", "auto"]


def test_the_allreduce_bench_case_averages_every_lenet_gradient_on_one_rank():
    from gpudl.bench.distributed_cases import allreduce_cases
    (case,) = allreduce_cases()
    synchronize = case.build("cpu")
    optimizer = synchronize.__self__
    assert optimizer.comm.size == 1 and sum(flat.size for flat, _ in optimizer._buffers) == 61_706
    before = [p.grad.copy() for p in optimizer.params]
    assert any(g.any() for g in before)
    synchronize()
    for p, g in zip(optimizer.params, before):
        numpy.testing.assert_array_equal(p.grad, g)
