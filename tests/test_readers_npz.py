"""The .npz reader (serialization.load_arrays, gpudl.load): bad archives are refused from their directory and
headers, before any array is read, and a failed load leaves the model exactly as it was."""
import os
import subprocess
import sys
import zipfile

import numpy
import pytest

import gpudl
from gpudl import nn
from gpudl.readers import FileFormatError
from gpudl.serialization import FORMAT_KEY, load_arrays, save_arrays
from bad_files import (SPECIAL_PATHS, assert_refused, assert_refused_special, npy_bytes, npy_header, snapshot,
                       write_npz)


def net(seed=0):
    gpudl.manual_seed(seed)
    return nn.Sequential(nn.Dense(3, 4), nn.Tanh(), nn.Dense(4, 2))


def weights(model):
    return {name: gpudl.to_numpy(p.data).copy() for name, p in model.named_parameters()}


def members_of(model, **changes):
    """The .npy members gpudl.save writes for `model`, with `changes` ({name: array or bytes}) applied."""
    arrays = {**weights(model), FORMAT_KEY: numpy.array(1)}
    arrays.update(changes)
    return {f"{name}.npy": data if isinstance(data, bytes) else npy_bytes(data) for name, data in arrays.items()}


def assert_load_refused(path, *patterns, error=FileFormatError):
    """gpudl.load refuses `path` and leaves a model's parameters as they were (all or nothing)."""
    model = net(1)
    before = weights(model)
    message = assert_refused(lambda p: gpudl.load(model, p), path, *patterns, error=error)
    after = weights(model)
    assert all(numpy.array_equal(before[name], after[name]) for name in before)
    return message


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """A ~9 MB .npz whose one deflated member of zeros unpacks to 2 GiB (an honest header: shape (2**28,) float64)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    header = npy_header("<f8", (1 << 28,))
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("0.W.npy", "w", force_zip64=True) as member:
            member.write(header)
            for _ in range(2048):
                member.write(zeros)
    return path


def test_a_good_file_round_trips_through_the_checked_reader(tmp_path):
    model, other = net(0), net(1)
    gpudl.save(model, tmp_path / "net.npz")
    gpudl.load(other, tmp_path / "net.npz")
    assert all(numpy.array_equal(a, b) for a, b in zip(weights(model).values(), weights(other).values()))
    compressed = tmp_path / "compressed.npz"
    numpy.savez_compressed(compressed, **weights(model))
    assert set(load_arrays(compressed)) == set(weights(model))


# ---------------------------------------------------------------- not a readable file





@pytest.mark.parametrize("kind", SPECIAL_PATHS)
def test_paths_that_are_not_regular_files(tmp_path, kind):
    assert_refused_special(assert_load_refused, tmp_path, "net.npz", "checkpoint file", kind)


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04 half a zip"])
def test_not_a_zip(tmp_path, content):
    (tmp_path / "junk.npz").write_bytes(content)
    assert_load_refused(tmp_path / "junk.npz", "not a readable .npz")


def test_truncated_archive(tmp_path):
    gpudl.save(net(0), tmp_path / "net.npz")
    whole = (tmp_path / "net.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[:len(whole) - 40])
    assert_load_refused(tmp_path / "cut.npz", "not a readable .npz|truncated|past the end")


# ---------------------------------------------------------------- sizes claimed by the directory or the headers

def test_zip_bomb_is_refused_from_the_directory(zip_bomb):
    assert os.path.getsize(zip_bomb) < (16 << 20)
    assert_refused(load_arrays, zip_bomb, r"would unpack to 2147483776 bytes \(2\.0 GiB\) from a file of \d+ bytes")


def test_zip_bomb_named_outside_the_model_is_refused_by_name(zip_bomb):
    assert_load_refused(zip_bomb, "does not fit this model", "missing")


def test_header_claiming_a_terabyte_in_a_small_member(tmp_path):
    write_npz(tmp_path / "huge.npz", {"x.npy": npy_header("<f8", (1 << 40,)) + bytes(64)})
    assert_refused(load_arrays, tmp_path / "huge.npz", r"header claims shape \(1099511627776,\)", "8.0 TiB")


def test_dims_whose_product_overflows_int64(tmp_path):
    write_npz(tmp_path / "overflow.npz", {"x.npy": npy_header("<f4", (1 << 40, 1 << 40)) + bytes(16)})
    assert_refused(load_arrays, tmp_path / "overflow.npz", "more elements than a 64-bit index")


def test_header_claiming_fewer_bytes_than_the_member_holds(tmp_path):
    write_npz(tmp_path / "short.npz", {"x.npy": npy_header("<f8", (2,)) + bytes(24)})
    assert_refused(load_arrays, tmp_path / "short.npz", "header claims shape", "24 bytes of data follow")


def test_negative_dimension(tmp_path):
    write_npz(tmp_path / "negative.npz", {"x.npy": npy_header("<f8", (-1,)) + bytes(8)})
    assert_refused(load_arrays, tmp_path / "negative.npz", "invalid shape|unreadable .npy header")


def test_header_length_beyond_the_member(tmp_path):
    claim = b"\x93NUMPY\x02\x00" + (1 << 31).to_bytes(4, "little") + b"{}"
    write_npz(tmp_path / "header.npz", {"x.npy": claim})
    assert_refused(load_arrays, tmp_path / "header.npz", "header of 2147483648 bytes is longer than the file")


# ---------------------------------------------------------------- members that are not plain arrays

def test_member_that_is_not_npy(tmp_path):
    write_npz(tmp_path / "readme.npz", {"readme.txt": b"hello"})
    assert_refused(load_arrays, tmp_path / "readme.npz", "member 'readme.txt' is not a .npy array")


def test_member_named_twice(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        write_npz(tmp_path / "twice.npz", {"x.npy": npy_bytes(numpy.zeros(2))})
        with zipfile.ZipFile(tmp_path / "twice.npz", "a") as archive:
            archive.writestr("x.npy", npy_bytes(numpy.ones(2)))
    assert_refused(load_arrays, tmp_path / "twice.npz", "appears twice")


def test_pickled_objects(tmp_path):
    write_npz(tmp_path / "evil.npz", members_of(net(0), **{"0.W": numpy.array([{"payload": 1}], dtype=object)}))
    assert_load_refused(tmp_path / "evil.npz", "pickled Python objects", "never unpickles")


def test_structured_dtype(tmp_path):
    record = numpy.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")])
    write_npz(tmp_path / "record.npz", {"x.npy": npy_bytes(record)})
    assert_refused(load_arrays, tmp_path / "record.npz", "structured")


def test_datetime_dtype(tmp_path):
    write_npz(tmp_path / "dates.npz", {"x.npy": npy_bytes(numpy.array(["2024-01-01"], dtype="datetime64[D]"))})
    assert_refused(load_arrays, tmp_path / "dates.npz", "dtype datetime64")


def test_member_without_npy_magic(tmp_path):
    write_npz(tmp_path / "magic.npz", {"x.npy": b"just some bytes, no header"})
    assert_refused(load_arrays, tmp_path / "magic.npz", r"member 'x.npy': does not start with the .npy magic")


def test_unparsable_npy_header(tmp_path):
    write_npz(tmp_path / "garbage.npz", {"x.npy": npy_header(None, None, text="{'descr': <f8, shape}")})
    assert_refused(load_arrays, tmp_path / "garbage.npz", "unreadable .npy header")


def test_unknown_npy_version(tmp_path):
    write_npz(tmp_path / "version.npz", {"x.npy": npy_header("<f8", (1,), version=(9, 9)) + bytes(8)})
    assert_refused(load_arrays, tmp_path / "version.npz", "format version 9.9")


def test_bzip2_member(tmp_path):
    write_npz(tmp_path / "bz.npz", {"x.npy": npy_bytes(numpy.zeros(3))}, compression=zipfile.ZIP_BZIP2)
    assert_refused(load_arrays, tmp_path / "bz.npz", "compression method 12")


def test_corrupt_deflate_stream(tmp_path):
    write_npz(tmp_path / "deflate.npz", {"x.npy": npy_bytes(numpy.arange(4000.0))}, compression=zipfile.ZIP_DEFLATED)
    data = bytearray((tmp_path / "deflate.npz").read_bytes())
    data[2000:2060] = bytes(range(60))   # inside the compressed array data, well after the .npy header
    (tmp_path / "deflate.npz").write_bytes(bytes(data))
    assert_refused(load_arrays, tmp_path / "deflate.npz", "corrupt data")


def test_stored_member_with_a_wrong_checksum(tmp_path):
    gpudl.save(net(0), tmp_path / "net.npz")
    data = bytearray((tmp_path / "net.npz").read_bytes())
    header_end = data.index(b"\n", data.index(b"0.W.npy")) + 1   # the first member's array data starts here
    data[header_end + 4] ^= 0xFF
    (tmp_path / "net.npz").write_bytes(bytes(data))
    assert_load_refused(tmp_path / "net.npz", "corrupt data", "Bad CRC-32")


# ---------------------------------------------------------------- gpudl.load: all or nothing

def test_missing_parameter(tmp_path):
    members = members_of(net(0))
    del members["2.b.npy"]
    write_npz(tmp_path / "missing.npz", members)
    assert_load_refused(tmp_path / "missing.npz", r"missing \['2.b'\]")


def test_unexpected_parameter(tmp_path):
    write_npz(tmp_path / "extra.npz", members_of(net(0), **{"9.W": numpy.zeros(2)}))
    assert_load_refused(tmp_path / "extra.npz", r"unexpected \['9.W'\]")


def test_wrong_shape_in_the_last_parameter_changes_nothing(tmp_path):
    write_npz(tmp_path / "shape.npz", members_of(net(0), **{"2.b": numpy.zeros(3, numpy.float32)}))
    assert_load_refused(tmp_path / "shape.npz", r"parameter 2.b has shape \(3,\), the model has \(2,\)")


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf])
def test_non_finite_weights(tmp_path, bad):
    values = numpy.zeros(2, numpy.float32)
    values[1] = bad
    write_npz(tmp_path / "nonfinite.npz", members_of(net(0), **{"2.b": values}))
    assert_load_refused(tmp_path / "nonfinite.npz", "parameter 2.b holds NaN or infinite values")


@pytest.mark.parametrize("dtype", [numpy.complex64, numpy.bool_, numpy.int32, numpy.float16, "<U3"])
def test_weights_of_a_dtype_other_than_float32_or_float64(tmp_path, dtype):
    write_npz(tmp_path / "dtype.npz", members_of(net(0), **{"2.b": numpy.zeros(2, dtype)}))
    assert_load_refused(tmp_path / "dtype.npz", f"parameter 2.b has dtype {numpy.dtype(dtype)}; expected float32")


def test_float64_values_beyond_float32(tmp_path):
    write_npz(tmp_path / "range.npz", members_of(net(0), **{"2.b": numpy.array([1.0, 1e300])}))
    assert_load_refused(tmp_path / "range.npz", "beyond the range of float32")


def test_newer_file_format(tmp_path):
    write_npz(tmp_path / "future.npz", members_of(net(0), **{FORMAT_KEY: numpy.array(2)}))
    assert_load_refused(tmp_path / "future.npz", "file format 2")


def test_format_key_of_the_wrong_shape(tmp_path):
    write_npz(tmp_path / "format.npz", members_of(net(0), **{FORMAT_KEY: numpy.zeros(1000, numpy.int64)}))
    assert_load_refused(tmp_path / "format.npz", rf"field {FORMAT_KEY} has shape \(1000,\), expected \(\)")


def test_checkpoint_without_an_epoch_names_the_field(tmp_path):
    from gpudl import optim
    from gpudl.train import save_checkpoint
    model = net(0)
    save_checkpoint(tmp_path / "checkpoint.npz", model, optim.SGD(model.parameters(), lr=0.1), epoch=3)
    arrays = load_arrays(tmp_path / "checkpoint.npz")
    del arrays["epoch"]
    save_arrays(tmp_path / "checkpoint.npz", arrays)
    fields = {"epoch": ((), "iu", True), "history": ((), "U", True), "loader_rng": ((), "U", False)}
    parameters = {f"model/{name}": p.shape for name, p in model.named_parameters()}
    assert_refused(lambda p: load_arrays(p, parameters, fields, other_prefixes=("optim/",)),
                   tmp_path / "checkpoint.npz", r"missing \['epoch'\]")


# ---------------------------------------------------------------- the atomic write cleans up after killed writers

def test_save_removes_temporaries_that_killed_writers_of_the_same_file_left(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = f".tmp-net.npz-{dead_pid}-abcd_123.npz"
    kept = [f".tmp-net.npz-{os.getppid()}-abcdefgh.npz",    # a live writer's file
            f".tmp-other.npz-{dead_pid}-abcdefgh.npz",      # another target's
            ".tmp-zyxwvuts.npz",                             # not our pattern
            f".tmp-net.npz-{dead_pid}-abc.npz"]              # not mkstemp's name
    for name in [stale] + kept:
        (tmp_path / name).write_bytes(b"PK\x03\x04 half a zip")
    gpudl.save(net(0), tmp_path / "net.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["net.npz"])


def test_a_failed_load_leaves_the_folder_unchanged(tmp_path):
    gpudl.save(net(0), tmp_path / "net.npz")
    before = snapshot(tmp_path)
    with pytest.raises(FileFormatError):
        gpudl.load(nn.Sequential(nn.Dense(5, 2)), tmp_path / "net.npz")
    assert snapshot(tmp_path) == before
