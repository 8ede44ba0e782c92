"""gpudl without the onnx extra: the library (gpudl.onnx included) imports, and the ONNX functions name the extra."""
import os
import subprocess
import sys

import pytest

import gpudl.onnx
from gpudl import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpudl_imports_without_onnx_and_does_not_import_it():
    code = ("import sys; sys.modules['onnx'] = sys.modules['onnxruntime'] = None\n"
            "import gpudl, gpudl.models, gpudl.onnx\n"
            "sys.modules.pop('onnx'); sys.modules.pop('onnxruntime')\n"
            "import gpudl.onnx.exporter, gpudl.onnx.importer\n"
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules, 'onnx imported eagerly'\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_the_functions_name_the_extra_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)     # what `import onnx` meets where the package is missing
    hint = 'install the onnx extra: pip install "gpudl\\[onnx\\]"'
    with pytest.raises(ImportError, match=hint):
        gpudl.onnx.export(nn.Sequential(nn.Dense(2, 1)), tmp_path / "m.onnx", (2,))
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(ImportError, match=hint):
        gpudl.onnx.load(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").read_bytes()
