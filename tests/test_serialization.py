"""gpudl.save / gpudl.load: identical outputs after a round trip, no pickle, clear errors."""
import os

import numpy as np
import pytest

import gpudl
from gpudl import nn


def small_net(seed):
    gpudl.manual_seed(seed)
    return nn.Sequential(nn.Conv2D(1, 2, 3, padding="same"), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(),
                         nn.Dense(2 * 3 * 3, 3))


def test_save_then_load_gives_identical_outputs(tmp_path):
    x = np.random.default_rng(0).random((4, 1, 6, 6)).astype(np.float32)
    original, other = small_net(1), small_net(2)
    assert not np.array_equal(original(x), other(x))
    gpudl.save(original, tmp_path / "net.npz")
    gpudl.load(other, tmp_path / "net.npz")
    np.testing.assert_array_equal(original(x), other(x))
    assert os.listdir(tmp_path) == ["net.npz"]   # the temporary file of the atomic write is gone


def test_file_holds_plain_named_arrays(tmp_path):
    gpudl.save(small_net(0), tmp_path / "net.npz")
    with np.load(tmp_path / "net.npz", allow_pickle=False) as f:
        assert {"0.W", "0.b", "4.W", "4.b"} <= set(f.files)
        assert f["0.W"].shape == (2, 1, 3, 3)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    arrays = {name: gpudl.to_numpy(p.data) for name, p in small_net(0).named_parameters()}
    arrays["0.W"] = np.array([{"payload": "code"}], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="pickled Python objects"):
        gpudl.load(small_net(0), path)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        gpudl.load(small_net(0), tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable .npz"):
        gpudl.load(small_net(0), tmp_path / "junk.npz")
    gpudl.save(nn.Sequential(nn.Dense(3, 2)), tmp_path / "other.npz")
    with pytest.raises(ValueError, match="does not fit this model"):
        gpudl.load(small_net(0), tmp_path / "other.npz")
    gpudl.save(nn.Sequential(nn.Dense(3, 2)), tmp_path / "shape.npz")
    with pytest.raises(ValueError, match="has shape"):
        gpudl.load(nn.Sequential(nn.Dense(4, 2)), tmp_path / "shape.npz")


def test_load_keeps_the_models_dtype(tmp_path):
    gpudl.save(small_net(0), tmp_path / "net.npz")
    model = small_net(1).to(dtype=np.float64)
    gpudl.load(model, tmp_path / "net.npz")
    assert all(p.data.dtype == np.float64 for p in model.parameters())


@pytest.mark.gpu
def test_save_leaves_a_gpu_model_on_the_gpu(cupy, tmp_path):
    model = small_net(0).to("cuda")
    gpudl.save(model, tmp_path / "net.npz")
    assert all(isinstance(p.data, cupy.ndarray) for p in model.parameters())
    cpu_model = gpudl.load(small_net(5), tmp_path / "net.npz")
    x = np.random.default_rng(0).random((2, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(gpudl.to_numpy(model(cupy.asarray(x))), cpu_model(x), rtol=1e-5, atol=1e-6)
