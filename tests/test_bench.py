"""The benchmark runner: CI runs the quick CPU benchmark once here, so it cannot rot. No timing is a pass/fail."""
import importlib.util
import json
import time
import types

import numpy
import pytest

from gpudl import nn
from gpudl.bench import Target, main, time_call
from gpudl.bench.cases import all_cases
from gpudl.bench.common import Unavailable, fwd_and_bwd, torch_variant
from gpudl.bench.layer_cases import layer_build
from gpudl.bench import model_cases
from gpudl.bench.model_cases import char_lstm_cases, lenet_cases, torch_twin
from gpudl.bench.report import check_target
from gpudl.bench.targets import targets
from gpudl.bench.timing import peak_bytes_cupy

OP_CASES = {"dense fwd", "dense fwd+bwd", "conv2d fwd", "conv2d fwd+bwd", "maxpool2d fwd", "maxpool2d fwd+bwd",
            "avgpool2d fwd", "avgpool2d fwd+bwd", "im2col", "col2im", "lstm gates fwd", "lstm gates fwd+bwd",
            "lstm cell step fwd", "lstm cell step fwd+bwd"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    status = main(["--quick", "--device", "cpu", "--out", str(out)])
    with open(out / "bench.json") as f:
        return status, json.load(f), out


def test_quick_cpu_run_writes_the_report(quick_run):
    status, report, out = quick_run
    assert status == 0
    assert report["settings"]["quick"] is True and report["settings"]["devices"] == ["cpu"]
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    assert {"python", "numpy", "gpudl"} <= set(report["versions"])
    assert report["copy_bandwidth_gb_per_s"]["cpu"] > 0
    assert not [s for s in report["skipped"] if s.get("error")], report["skipped"]
    mine = [r for r in report["results"] if r["impl"] == "gpudl"]
    assert OP_CASES <= {r["name"] for r in mine}
    for r in report["results"]:
        assert r["device"] == "cpu"
        assert 0 < r["ms"]["min"] <= r["ms"]["median"] <= r["ms"]["max"], r
        assert r["repeats"] >= 1 and r["calls_per_repeat"] >= 1
    for r in mine:
        if r["name"] in ("im2col", "col2im") or "pool" in r["name"]:
            assert r["gb_per_s"] > 0 and r["copy_fraction"] > 0
        if r["name"].startswith(("dense", "conv2d", "lstm cell")):
            assert r["tflop_per_s"] > 0
    startup = [r for r in mine if r["kind"] == "startup"]
    assert len(startup) == 1 and startup[0]["kernels_compiled"] == 0
    assert [t["status"] for t in report["targets"]] in (["met"], ["missed"])
    if importlib.util.find_spec("matplotlib"):
        assert (out / "bench.png").stat().st_size > 0


def test_every_case_that_did_not_run_says_why(quick_run):
    _, report, _ = quick_run
    ran = {(r["name"], r["size"], r["impl"], r["peer"]) for r in report["results"]}
    skipped = {(s["name"], s["size"], s["impl"], s["peer"]) for s in report["skipped"]}
    for s in report["skipped"]:
        assert s["skipped"]
    for case in all_cases(quick=True):
        assert (case.name, case.size, "gpudl", None) in ran | skipped, case.key



def test_one_builder_makes_the_fwd_and_the_fwd_bwd_case():
    built = []

    def build(dev, backward):
        built.append(("gpudl", dev, backward))
        return lambda: None

    def peer(dev, backward):
        built.append(("peer", dev, backward))
        return lambda: None
    fwd, both = fwd_and_bwd("op", "b1", build, {"eager": peer}, ("cpu",), bytes=(3, 5))
    assert (fwd.key, both.key) == ("op fwd [b1]", "op fwd+bwd [b1]")
    assert (fwd.bytes, both.bytes, fwd.flops, both.devices) == (3, 8, None, ("cpu",))
    fwd.build("cpu")
    both.build("cpu")
    both.peers["eager"]("cuda")
    assert built == [("gpudl", "cpu", False), ("gpudl", "cpu", True), ("peer", "cuda", True)]


def test_a_layer_case_runs_the_backward_only_in_its_fwd_bwd_variant():
    made = []

    def dense():
        made.append(nn.Dense(3, 2))
        return made[-1]
    build = layer_build(dense, (4, 3))
    assert build("cpu", backward=False)().shape == (4, 2)
    assert not made[0].W.grad.any()
    build("cpu", backward=True)()
    assert made[1].W.grad.any() and made[1].b.grad.any()


def test_the_torch_side_infers_without_grad_or_computes_fresh_gradients():
    torch = pytest.importorskip("torch")
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    outputs = []

    def forward():
        outputs.append(x * x)
    torch_variant(torch, forward, [x], None, backward=False)()
    assert not outputs[0].requires_grad and x.grad is None
    step = torch_variant(torch, lambda: (x * x).sum(), [x], torch.tensor(1.0), backward=True)
    step()
    step()  # cleared before each call, not accumulated
    assert x.grad.tolist() == [2.0, -4.0]

class FakeDevice:
    """Work is queued by a call and done (1 ms per call) only at synchronize, like a GPU stream."""

    def __init__(self):
        self.queued = 0

    def launch(self):
        self.queued += 1

    def synchronize(self):
        time.sleep(0.001 * self.queued)
        self.queued = 0


def test_timer_reads_the_clock_after_the_device_finished():
    device = FakeDevice()
    timing = time_call(device.launch, device.synchronize, repeat=3, warmup_s=0.0, repeat_s=0.005, budget_s=1.0)
    assert timing.median >= 0.0009  # without the synchronize before the clock, a call would cost microseconds
    assert timing.min <= timing.median <= timing.max
    assert timing.repeats == 3 and timing.number >= 1
    assert device.queued == 0


def _check(measure, limit, mine, peer=None, **extra):
    result = {"machine": {}, "results": [dict(name="c", size="s", device="cpu", impl="gpudl", peer=None,
                                              ms={"median": mine}, **extra)]}
    if peer is not None:
        result["results"].append(dict(name="c", size="s", device="cpu", impl="torch", peer="eager",
                                      ms={"median": peer}))
    return check_target(Target("t", "cpu", "c", "s", measure, limit), result)


def test_targets_say_by_how_much_they_are_missed():
    assert _check("ratio", 2.0, 3.0, peer=2.0)["status"] == "met"
    missed = _check("ratio", 1.2, 3.0, peer=1.0)
    assert missed["status"] == "missed" and "missed by 2.50x" in missed["detail"]
    assert _check("ratio", 1.0, 1.0)["status"] == "not measured"
    faster = _check("ratio", 1 / 3, 1.0, peer=2.0)
    assert faster["status"] == "missed" and "2.00x faster" in faster["detail"]
    short = _check("bandwidth", 0.6, 1.0, copy_fraction=0.45)
    assert short["status"] == "missed" and "15 points short" in short["detail"]
    assert _check("seconds", 2.0, 1500.0, kernels_compiled=0)["status"] == "met"
    assert _check("seconds", 2.0, 1500.0, kernels_compiled=3)["status"] == "missed"


def test_list_filter_and_bad_arguments(capsys):
    assert main(["--quick", "--list", "--filter", "im2col"]) == 0
    listed = capsys.readouterr().out
    assert "im2col" in listed and "conv2d" not in listed
    assert main(["--quick", "--profile", "--device", "cpu", "--filter", "col2im"]) == 0
    profiled = capsys.readouterr().out
    assert "col2im [" in profiled and "_col2im" in profiled  # cProfile names the function that did the work
    with pytest.raises(SystemExit):
        main(["--quick", "--filter", "no-such-case"])
    with pytest.raises(SystemExit):
        main(["--quick", "--repeat", "0"])


def test_cuda_without_a_gpu_is_a_clear_error():
    from gpudl.backend import gpu_available
    if gpu_available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(SystemExit, match="--device cuda"):
        main(["--quick", "--device", "cuda", "--filter", "im2col"])


def test_torch_twin_computes_what_the_gpudl_model_computes():
    torch = pytest.importorskip("torch")
    nn.manual_seed(0)
    model = nn.Sequential(nn.Conv2D(1, 3, 5, padding="same"), nn.ReLU(), nn.MaxPool2D(2),
                          nn.Sequential(nn.Conv2D(3, 4, 3), nn.Tanh(), nn.AvgPool2D(2)), nn.Flatten(),
                          nn.Dense(4 * 2 * 2, 5), nn.Sigmoid())
    x = numpy.random.default_rng(0).standard_normal((2, 1, 12, 12)).astype(numpy.float32)
    twin = torch_twin(model, torch)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    numpy.testing.assert_allclose(model.forward(x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(Unavailable, match="Sign"):
        torch_twin(nn.Sequential(nn.Sign()), torch)


@pytest.mark.gpu
def test_peak_gpu_memory_counts_what_a_call_holds(cupy):
    def hold_four_mib():
        a = cupy.empty(1 << 20, dtype=cupy.float32)
        b = a + 1
        return b
    before = cupy.get_default_memory_pool().used_bytes()
    assert peak_bytes_cupy(hold_four_mib) >= before + 2 * (4 << 20)


@pytest.mark.gpu
def test_quick_gpu_run(cupy, tmp_path):
    assert main(["--quick", "--device", "cuda", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "bench.json") as f:
        report = json.load(f)
    assert report["machine"]["gpu"]["name"]
    assert report["copy_bandwidth_gb_per_s"]["cuda"] > 0
    assert all(r["device"] == "cuda" and r["ms"]["median"] > 0 for r in report["results"])
    models = [r for r in report["results"] if r["kind"] == "model"]
    assert all(r["peak_bytes"] > 0 for r in models)


def test_every_target_names_a_case_and_peer_that_run():
    cases = {(c.name, c.size): c for c in all_cases(quick=False)}
    for target in targets():
        case = cases[(target.name, target.size)]
        assert target.device in case.devices, target.text
        if target.measure == "ratio":
            assert target.peer in case.peers, target.text
        if target.measure == "bandwidth":
            assert case.bytes, target.text


def _fake_result(figures):
    """A result dict as run() makes it: figures maps (name, size, impl, peer) to a median in ms (or to the
    copy_fraction for a bandwidth figure)."""
    results = []
    for (name, size, impl, peer), value in figures.items():
        entry = dict(name=name, size=size, device="cuda", impl=impl, peer=peer, ms={"median": value})
        if peer == "copy":
            entry.update(peer=None, copy_fraction=value)
        results.append(entry)
    return {"machine": {"gpu": {"name": "H200"}}, "results": results}


def test_issue_10_and_20_targets_say_met_or_missed_and_by_how_much():
    found = {t.text: t for t in targets()}
    lenet = ("lenet5 step", "b256")
    result = _fake_result({lenet + ("gpudl", None): 1.0, lenet + ("torch", "eager"): 2.5,
                           lenet + ("torch", "CUDA graph"): 0.8,
                           ("lstm seq fwd+bwd", "b64 T128 in128 H256", "gpudl", None): 10.0,
                           ("lstm seq fwd+bwd", "b64 T128 in128 H256", "torch", "nn.LSTM"): 5.0,
                           ("lstm seq fwd+bwd", "b64 T128 in128 H256", "torch", "LSTMCell loop"): 70.0,
                           ("maxpool2d fwd", "64x64x112x112 2x2", "gpudl", "copy"): 0.45,
                           ("maxpool2d fwd+bwd", "64x64x112x112 2x2", "gpudl", "copy"): 0.45,
                           ("bias gradient", "lenet5 b1024 conv1 1024x6x784", "gpudl", "copy"): 0.72})

    def check(text):
        return check_target(found[text], result)
    eager = check("LeNet-5 step b256 <= 0.5x PyTorch eager")
    assert eager["status"] == "met" and "2.50x faster than eager (target >= 2x)" in eager["detail"]
    graph = check("LeNet-5 step b256 no slower than PyTorch's whole-step CUDA graph")
    assert graph["status"] == "missed" and "CUDA graph" in graph["detail"] and "missed by 1.25x" in graph["detail"]
    assert check("LeNet-5 step b64 <= 0.5x PyTorch eager")["status"] == "not measured"
    cudnn = check("LSTM b64 T128 in128 H256 fwd+bwd no slower than cuDNN nn.LSTM")
    assert cudnn["status"] == "missed" and "missed by 2.00x" in cudnn["detail"]
    cells = check("LSTM b64 T128 in128 H256 fwd+bwd >= 6x faster than an LSTMCell loop")
    assert cells["status"] == "met" and "7.00x faster than LSTMCell loop" in cells["detail"]
    assert check("maxpool2d fwd+bwd >= 50% of copy bandwidth")["status"] == "missed"
    forward = check("maxpool2d fwd >= 75% of copy bandwidth")
    assert forward["status"] == "missed" and "30 points short" in forward["detail"]
    bias = check("bias gradient of LeNet-5 b1024 conv1 >= 70% of copy bandwidth")
    assert bias["status"] == "met" and "72% of copy bandwidth" in bias["detail"]
    assert check("LeNet-5 step b256 <= 0.8x PyTorch's whole-step CUDA graph (stretch)")["status"] == "missed"


@pytest.mark.parametrize("case, peer", [(lenet_cases([2])[0], "CUDA graph"),
                                        (char_lstm_cases(2, 3, 4, 5)[0], "nn.LSTM CUDA graph")])
def test_cuda_graph_peer_is_unavailable_off_the_gpu(case, peer):
    with pytest.raises(Unavailable, match="GPU only, not on cpu"):
        case.peers[peer]("cpu")


def test_quick_cpu_run_says_why_the_graph_peer_did_not_run(quick_run):
    pytest.importorskip("torch", reason="without PyTorch the bench times no peer at all")
    _, report, _ = quick_run
    graph = [s for s in report["skipped"] if s["peer"] == "CUDA graph" and s["name"] == "lenet5 step"]
    assert graph and all("GPU only" in s["skipped"] and not s.get("error") for s in graph)


class FakeGraphTorch:
    """Just enough of torch.cuda to follow _torch_graphed_step: each call lands in `events`."""

    def __init__(self, fail_capture=False):
        self.events, self.on_side_stream, self.fail_capture = [], False, fail_capture
        fake = self

        class Stream:
            def wait_stream(self, other):
                fake.events.append("side waits" if self is not fake.current else "main waits")

        class StreamContext:
            def __enter__(self):
                fake.on_side_stream = True

            def __exit__(self, *exc):
                fake.on_side_stream = False

        class Capture:
            def __enter__(self):
                if fake.fail_capture:
                    raise RuntimeError("operation not permitted when stream is capturing")
                fake.events.append("capture begins")

            def __exit__(self, *exc):
                fake.events.append("capture ends")

        class CUDAGraph:
            def replay(self):
                fake.events.append("replay")

        self.current = Stream()
        self.cuda = types.SimpleNamespace(Stream=Stream, current_stream=lambda: self.current,
                                          stream=lambda s: StreamContext(), graph=lambda g: Capture(),
                                          CUDAGraph=CUDAGraph)

    def record(self, what):
        self.events.append(what + (" (side)" if self.on_side_stream else ""))


def _graphed_parts(fake):
    class Optimizer:
        def zero_grad(self, set_to_none=False):
            fake.record(f"zero_grad set_to_none={set_to_none}")

        def step(self):
            fake.record("update")

    class Loss:
        def backward(self):
            fake.record("backward")

    class Static:
        def copy_(self, batch):
            fake.record(f"copy {batch}")

    def loss():
        fake.record("forward")
        return Loss()
    return Optimizer(), loss, [(Static(), "x"), (Static(), "y")]


def test_graphed_step_warms_up_on_a_side_stream_captures_once_then_copies_and_replays():
    fake = FakeGraphTorch()
    step = model_cases._torch_graphed_step(fake, *_graphed_parts(fake))
    warmup = ["zero_grad set_to_none=True (side)", "forward (side)", "backward (side)", "update (side)"]
    assert fake.events == (["side waits"] + warmup * model_cases.WARMUP_STEPS +
                           ["main waits", "zero_grad set_to_none=True", "capture begins", "forward", "backward",
                            "update", "capture ends"])
    fake.events.clear()
    step()
    step()
    assert fake.events == ["copy x", "copy y", "replay"] * 2


def test_a_step_pytorch_cannot_capture_is_unavailable_not_an_error():
    fake = FakeGraphTorch(fail_capture=True)
    with pytest.raises(Unavailable, match="could not capture the step as a CUDA graph: operation not permitted"):
        model_cases._torch_graphed_step(fake, *_graphed_parts(fake))
