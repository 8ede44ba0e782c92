"""load_text: UTF-8 text from a regular file, or one line saying why not (binary, NULs, not UTF-8, empty...)."""
import functools
import os

import pytest

from gpudl.data.text import MAX_TEXT_BYTES, load_text
from bad_files import SPECIAL_PATHS, assert_refused, assert_refused_special, sparse_file


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_text_with_a_byte_order_mark_reads_without_it(tmp_path):
    assert load_text(write(tmp_path, "bom.txt", "\ufeffhello\tworld\r\n\x1b[1m".encode())) == "hello\tworld\r\n\x1b[1m"


def test_nul_bytes(tmp_path):
    assert_refused(load_text, write(tmp_path, "zeros.txt", bytes(4096)), "NUL byte at offset 0", "binary")


def test_nul_byte_after_text(tmp_path):
    assert_refused(load_text, write(tmp_path, "late.txt", b"hello\n" * 100 + b"\x00"), "NUL byte at offset 600")


def test_utf16_text(tmp_path):
    assert_refused(load_text, write(tmp_path, "utf16.txt", "hello".encode("utf-16-le")), "NUL byte", "UTF-16")


def test_control_bytes(tmp_path):
    assert_refused(load_text, write(tmp_path, "bell.txt", b"ring \x07 ring"), "control byte 0x07 at offset 5")


def test_executable(tmp_path):
    assert_refused(load_text, write(tmp_path, "prog", b"\x7fELF\x02\x01\x01" + bytes(9)),
                   "control byte 0x02 at offset 4")


def test_latin1(tmp_path):
    assert_refused(load_text, write(tmp_path, "latin.txt", "café".encode("latin-1")),
                   "not UTF-8 text", "byte 0xe9 at offset 3", "iconv")


def test_utf8_cut_inside_a_character(tmp_path):
    assert_refused(load_text, write(tmp_path, "cut.txt", "naïve €".encode()[:-1]),
                   "not UTF-8 text", "byte 0xe2 at offset 7")


def test_empty_file(tmp_path):
    assert_refused(load_text, write(tmp_path, "empty.txt", b""), r"holds no text \(the file is empty\)")


def test_white_space_only(tmp_path):
    assert_refused(load_text, write(tmp_path, "blank.txt", b" \n\t\r\n"), "holds no text")


def test_file_larger_than_the_cap_is_refused_before_reading(tmp_path):
    path = sparse_file(tmp_path / "huge.txt", MAX_TEXT_BYTES + 1)   # would be all NULs if read
    assert_refused(load_text, path, "is more text than gpudl trains on")






@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_dev_null():
    assert_refused(load_text, "/dev/null", "character device")


@pytest.mark.parametrize("kind", SPECIAL_PATHS)
def test_paths_that_are_not_regular_files(tmp_path, kind):
    assert_refused_special(functools.partial(assert_refused, load_text), tmp_path, "nope.txt", "text file", kind)
