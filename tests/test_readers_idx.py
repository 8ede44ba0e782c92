"""The IDX reader (read_idx, load_mnist): headers against the file's real size, gzip decompressed a chunk at a time
and never past what the header promises (nor past GZIP_RATIO_CAP times the file)."""
import functools
import gzip
import os
import zlib

import numpy
import pytest

from gpudl.data import IDXError, load_mnist, read_idx
from gpudl.readers import FileFormatError
from bad_files import SPECIAL_PATHS, assert_refused, assert_refused_special


def idx(magic, dims, body=None):
    body = bytes(int(numpy.prod(dims))) if body is None else body
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + body


def write(path, data, gz=False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory):
    """A ~1 MB .gz of an honest IDX labels file: 512 MiB of zeros behind a header that says so."""
    path = tmp_path_factory.mktemp("bomb") / "bomb-labels-idx1-ubyte.gz"
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    with open(path, "wb") as f:
        f.write(compressor.compress(idx(2049, (512 << 20,), b"")))
        for _ in range(512):
            f.write(compressor.compress(zeros))
        f.write(compressor.flush())
    return path


def test_errors_are_file_format_errors():
    assert issubclass(IDXError, FileFormatError) and issubclass(IDXError, ValueError)


@pytest.mark.parametrize("gz", [False, True])
def test_a_good_file_reads_back(tmp_path, gz):
    body = bytes(range(24))
    path = write(tmp_path / "good", idx(2051, (2, 3, 4), body), gz)
    numpy.testing.assert_array_equal(read_idx(path, 2051), numpy.arange(24, dtype=numpy.uint8).reshape(2, 3, 4))


def test_gzip_bomb_is_refused_after_its_header(gzip_bomb):
    assert os.path.getsize(gzip_bomb) < (4 << 20)
    assert_refused(read_idx, gzip_bomb, r"header promises 536870912 = 536870912 bytes",
                   "refuses more than 100 times the compressed size", error=IDXError)


def test_small_gzip_claiming_two_gigabytes(tmp_path):
    path = write(tmp_path / "claim.gz", idx(2049, (2 << 30,), bytes(1000)), gz=True)
    assert_refused(read_idx, path, "header promises 2147483648", error=IDXError)


def test_dims_whose_product_overflows_int64(tmp_path):
    path = write(tmp_path / "overflow", idx(2051, (2**32 - 1,) * 3, bytes(10)))
    assert_refused(read_idx, path, r"truncated: the header promises 4294967295x4294967295x4294967295", error=IDXError)


def test_dims_whose_product_overflows_int64_gzipped(tmp_path):
    path = write(tmp_path / "overflow.gz", idx(2051, (2**32 - 1,) * 3, bytes(10)), gz=True)
    assert_refused(read_idx, path, "refuses more than 100 times", error=IDXError)


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic(tmp_path, gz):
    path = write(tmp_path / "magic", idx(2049, (3,)), gz)
    assert_refused(lambda p: read_idx(p, 2051), path, "magic number 2049, expected 2051", error=IDXError)


def test_not_unsigned_bytes(tmp_path):
    path = write(tmp_path / "floats", bytes([0, 0, 0x0D, 1]) + (1).to_bytes(4, "big") + bytes(4))
    assert_refused(read_idx, path, "not an IDX file of unsigned bytes", error=IDXError)


def test_zero_dimensions(tmp_path):
    path = write(tmp_path / "nodims", bytes([0, 0, 8, 0]))
    assert_refused(read_idx, path, "header of 0 dimension", error=IDXError)


def test_truncated_dimensions(tmp_path):
    path = write(tmp_path / "dims", bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big"))
    assert_refused(read_idx, path, "header of 3 dimension.* truncated", error=IDXError)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data(tmp_path, gz):
    path = write(tmp_path / "short", idx(2049, (100,), bytes(60)), gz)
    assert_refused(read_idx, path, "truncated: the header promises 100 = 100 bytes of data, the file holds 60",
                   error=IDXError)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_data(tmp_path, gz):
    path = write(tmp_path / "long", idx(2049, (4,), bytes(9)), gz)
    assert_refused(read_idx, path, "unexpected byte", error=IDXError)


def test_gzip_with_a_wrong_checksum(tmp_path):
    data = bytearray(gzip.compress(idx(2049, (50,), bytes(range(50)))))
    data[-8] ^= 0xFF   # the CRC-32 of the gzip trailer
    path = write(tmp_path / "crc.gz", bytes(data))
    assert_refused(read_idx, path, "corrupt or truncated gzip data", error=IDXError)


def test_truncated_gzip(tmp_path):
    data = gzip.compress(idx(2049, (5000,), numpy.random.default_rng(0).bytes(5000)))
    path = write(tmp_path / "cut.gz", data[:len(data) // 2])
    assert_refused(read_idx, path, "corrupt or truncated gzip data", error=IDXError)


def test_gzip_magic_followed_by_garbage(tmp_path):
    path = write(tmp_path / "garbage.gz", b"\x1f\x8b" + b"this is not deflate data at all")
    assert_refused(read_idx, path, "corrupt or truncated gzip data", error=IDXError)


def test_empty_file(tmp_path):
    path = write(tmp_path / "empty", b"")
    assert_refused(read_idx, path, r"too short to be an IDX file \(0 bytes\)", error=IDXError)






def test_mnist_folder_with_no_images(tmp_path):
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx(2051, (0, 28, 28)), gz=True)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx(2049, (0,)), gz=True)
    assert_refused(lambda p: load_mnist(os.path.dirname(p), "test"), tmp_path / "t10k-images-idx3-ubyte.gz",
                   "holds no images", error=IDXError)


@pytest.mark.parametrize("kind", SPECIAL_PATHS)
def test_paths_that_are_not_regular_files(tmp_path, kind):
    assert_refused_special(functools.partial(assert_refused, read_idx), tmp_path, "missing", "IDX file", kind)
