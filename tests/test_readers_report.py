"""read_report (a run folder's report.json): strict JSON (no NaN or Infinity), an object with a "config" that names
the model and its arguments; anything else is refused in one line that names the file."""
import functools
import json

import pytest

from gpudl.readers import MAX_REPORT_BYTES, read_report
from bad_files import SPECIAL_PATHS, assert_refused, assert_refused_special, sparse_file

GOOD = {"config": {"model": "xor", "model_args": {"hidden": 4}, "seed": 0}, "status": "converged"}


def write(tmp_path, text):
    path = tmp_path / "report.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_good_report_reads_back(tmp_path):
    assert read_report(write(tmp_path, json.dumps(GOOD))) == GOOD


def test_empty_object(tmp_path):
    assert_refused(read_report, write(tmp_path, "{}"), 'has no "config" object')


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_constants(tmp_path, constant):
    text = json.dumps(GOOD)[:-1] + f', "loss": {constant}}}'
    assert_refused(read_report, write(tmp_path, text), f"not valid JSON.*{constant} is not a JSON number")


def test_number_that_overflows(tmp_path):
    assert_refused(read_report, write(tmp_path, json.dumps(GOOD)[:-1] + ', "loss": 1e999}'), "1e999 overflows")


@pytest.mark.parametrize("top", ["[]", '"config"', "3", "null"])
def test_not_an_object(tmp_path, top):
    assert_refused(read_report, write(tmp_path, top), "expected a JSON object")


def test_config_that_is_not_an_object(tmp_path):
    assert_refused(read_report, write(tmp_path, '{"config": "xor"}'), 'has no "config" object')


@pytest.mark.parametrize("config", [{"model_args": {}}, {"model": "", "model_args": {}}, {"model": 3}])
def test_config_without_a_model_name(tmp_path, config):
    assert_refused(read_report, write(tmp_path, json.dumps({"config": config})), "names no model")


def test_config_without_model_args(tmp_path):
    assert_refused(read_report, write(tmp_path, '{"config": {"model": "xor"}}'), 'no "model_args" object')


def test_truncated_json(tmp_path):
    assert_refused(read_report, write(tmp_path, json.dumps(GOOD)[:30]), "not valid JSON .* at line 1 column")


def test_repeated_key(tmp_path):
    text = '{"config": {"model": "xor", "model_args": {}}, "config": {"model": "lenet5", "model_args": {}}}'
    assert_refused(read_report, write(tmp_path, text), "key 'config' appears twice")


def test_nested_too_deeply(tmp_path):
    assert_refused(read_report, write(tmp_path, "[" * 100_000 + "]" * 100_000), "nested too deeply")


def test_not_utf8(tmp_path):
    assert_refused(read_report, write(tmp_path, b'{"config": "\xff"}'), "not UTF-8 text")


@pytest.mark.parametrize("text", [b"", b"  \n"])
def test_empty_file(tmp_path, text):
    assert_refused(read_report, write(tmp_path, text), "is empty")


def test_larger_than_any_report_is_refused_before_reading(tmp_path):
    path = sparse_file(tmp_path / "report.json", MAX_REPORT_BYTES + 1)   # would be all NULs if read
    assert_refused(read_report, path, "larger than any report.json gpudl reads")


@pytest.mark.parametrize("kind", SPECIAL_PATHS)
def test_paths_that_are_not_regular_files(tmp_path, kind):
    assert_refused_special(functools.partial(assert_refused, read_report), tmp_path, "report.json", "report.json", kind)
