"""read_npy (what `predict --input` will read): numbers from a regular .npy file, checked against its size before
anything is allocated, never unpickled; an .npz, a text file, strings or an empty array are refused in one line."""
import functools

import numpy
import pytest

from gpudl.readers import read_npy
from bad_files import SPECIAL_PATHS, assert_refused, assert_refused_special, npy_bytes, npy_header


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("array", [numpy.arange(6.0).reshape(2, 3), numpy.asfortranarray(numpy.eye(3)),
                                   numpy.arange(5, dtype=numpy.uint8), numpy.ones((2, 2), numpy.float32)])
def test_good_arrays_read_back(tmp_path, array):
    out = read_npy(write(tmp_path, "x.npy", npy_bytes(array)))
    assert out.dtype == array.dtype
    numpy.testing.assert_array_equal(out, array)


def test_an_npz_archive(tmp_path):
    numpy.savez(tmp_path / "x.npz", a=numpy.zeros(3))
    assert_refused(read_npy, tmp_path / "x.npz", r"is a zip archive \(an .npz\?\), not a .npy array")


def test_a_text_file_never_suggests_pickles(tmp_path):
    assert_refused(read_npy, write(tmp_path, "x.txt", b"1 2 3\n4 5 6\n"), "does not start with the .npy magic")


def test_a_pickle(tmp_path):
    import pickle
    assert_refused(read_npy, write(tmp_path, "x.pkl", pickle.dumps([1, 2])), "does not start with the .npy magic")


def test_pickled_objects(tmp_path):
    path = write(tmp_path, "objects.npy", npy_bytes(numpy.array([{"a": 1}], dtype=object)))
    assert_refused(read_npy, path, "pickled Python objects")


@pytest.mark.parametrize("array, word", [(numpy.array(["a", "b"]), "<U1"), (numpy.array([b"ab"]), "|S2"),
                                         (numpy.array([True]), "bool"), (numpy.array([1j]), "complex128")])
def test_values_that_are_not_real_numbers(tmp_path, array, word):
    assert_refused(read_npy, write(tmp_path, "x.npy", npy_bytes(array)), f"holds {word} values; expected numbers")


def test_structured_array(tmp_path):
    array = numpy.zeros(2, dtype=[("x", "<f4"), ("y", "<f4")])
    assert_refused(read_npy, write(tmp_path, "x.npy", npy_bytes(array)), "structured")


@pytest.mark.parametrize("shape", [(0,), (0, 28, 28), (3, 0)])
def test_empty_arrays(tmp_path, shape):
    assert_refused(read_npy, write(tmp_path, "x.npy", npy_bytes(numpy.zeros(shape))), "holds an empty array")


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf])
def test_non_finite_values(tmp_path, bad):
    assert_refused(read_npy, write(tmp_path, "x.npy", npy_bytes(numpy.array([1.0, bad]))), "NaN or infinite")


def test_header_claiming_a_terabyte(tmp_path):
    path = write(tmp_path, "x.npy", npy_header("<f8", (1 << 40,)) + bytes(80))
    assert_refused(read_npy, path, r"header claims shape \(1099511627776,\)", "80 bytes of data follow")


def test_dims_overflowing_int64(tmp_path):
    path = write(tmp_path, "x.npy", npy_header("<u1", (1 << 32, 1 << 32)) + bytes(8))
    assert_refused(read_npy, path, "more elements than a 64-bit index")


def test_truncated_data(tmp_path):
    data = npy_bytes(numpy.arange(100.0))
    assert_refused(read_npy, write(tmp_path, "x.npy", data[:-8]), "800 bytes.*but 792 bytes of data follow")


def test_truncated_header(tmp_path):
    assert_refused(read_npy, write(tmp_path, "x.npy", npy_bytes(numpy.zeros(3))[:40]), "header of 118 bytes")


def test_too_short(tmp_path):
    assert_refused(read_npy, write(tmp_path, "x.npy", b"\x93NUMPY"), "too short to be a .npy array")


def test_oversize_header_length(tmp_path):
    data = b"\x93NUMPY\x02\x00" + (50_000).to_bytes(4, "little") + b" " * 50_000
    assert_refused(read_npy, write(tmp_path, "x.npy", data), "header of 50000 bytes is longer than the 10000-byte")


def test_format_version_3(tmp_path):
    data = npy_header("<f8", (1,), version=(3, 0)) + bytes(8)
    assert_refused(read_npy, write(tmp_path, "x.npy", data), "format version 3.0")


def test_unparsable_header(tmp_path):
    data = npy_header(None, None, text="{'descr': '<f8', 'shape': (1,)}") + bytes(8)   # no fortran_order
    assert_refused(read_npy, write(tmp_path, "x.npy", data), "unreadable .npy header")


def test_empty_file(tmp_path):
    assert_refused(read_npy, write(tmp_path, "x.npy", b""), r"too short to be a .npy array \(0 bytes\)")


@pytest.mark.parametrize("kind", SPECIAL_PATHS)
def test_paths_that_are_not_regular_files(tmp_path, kind):
    assert_refused_special(functools.partial(assert_refused, read_npy), tmp_path, "x.npy", ".npy array file", kind)
