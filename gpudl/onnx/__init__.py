"""ONNX export and import: gpudl models run wherever ONNX runs, and chains of layers from other frameworks train on
in gpudl. Needs the `onnx` extra (`pip install "gpudl[onnx]"`: onnx and onnxruntime), imported only when these
functions run.

    gpudl.onnx.export(model, "lenet.onnx", (1, 28, 28))   # one sample's shape; the batch axis is symbolic
    model = gpudl.onnx.load("lenet.onnx")                 # an nn.Sequential of gpudl layers
    model = gpudl.onnx.load("lstm.onnx")                  # torch's nn.LSTM + nn.Linear: LSTM, SequenceDense
"""
from .exporter import DEFAULT_OPSET, export
from .importer import load
from .sequence import SequenceDense, SwapBatchTime

__all__ = ["DEFAULT_OPSET", "SequenceDense", "SwapBatchTime", "export", "load"]
