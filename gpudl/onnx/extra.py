"""The optional `onnx` extra: imported only when an ONNX function runs, never by `import gpudl`."""
import importlib

INSTALL_HINT = 'pip install "gpudl[onnx]"'


def require(module="onnx"):
    """Import and return `onnx` (or `onnxruntime`), or raise an ImportError that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"gpudl.onnx needs the {module!r} package, which is not installed ({exc}); "
                          f"install the onnx extra: {INSTALL_HINT}") from None
