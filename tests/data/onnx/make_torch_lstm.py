"""Writes the torch_lstm_*.onnx files beside it and torch_lstm.npz, once; tests/test_onnx_recurrent.py reads them
without PyTorch, so CI (which does not install torch) covers what PyTorch's exporters write for a recurrent model.

    pip install torch==2.13.0 onnxscript      # onnxscript: the dynamo exporter's dependency
    python tests/data/onnx/make_torch_lstm.py

The model is nn.LSTM(5, 4) (batch_first True or False) followed by nn.Linear(4, 3), seeded, exported from an example
input of batch 2 and 6 steps with a symbolic batch axis (and time axis, where the exporter keeps it symbolic), by
the TorchScript-based exporter (dynamo=False) and by the dynamo exporter (dynamo=True, weights in the file, not in an
external .data file). The dynamo exporter's per-node metadata (the PyTorch source and stack trace of each node,
about 10 KB) is dropped; the graphs are otherwise as written. torch_lstm.npz holds, per file, an input "NAME.x"
(batch 3, 6 steps) and PyTorch's own output for it, "NAME.y". Written with torch 2.13.0+cpu, onnxscript 0.7.2,
onnx 1.23.2.
"""
import os
import warnings

import numpy
import onnx
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


class LSTMThenLinear(torch.nn.Module):
    def __init__(self, batch_first):
        super().__init__()
        self.lstm = torch.nn.LSTM(5, 4, batch_first=batch_first)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.lstm(x)[0])


def export(net, batch_first, dynamo, path):
    example = torch.zeros((2, 6, 5) if batch_first else (6, 2, 5))
    batch, time = (0, 1) if batch_first else (1, 0)
    if dynamo:
        dims = {"x": {batch: torch.export.Dim("batch"), time: torch.export.Dim("time")}}
        torch.onnx.export(net, (example,), path, input_names=["x"], output_names=["y"], dynamic_shapes=dims,
                          dynamo=True, external_data=False)
        model = onnx.load(path)
        for node in model.graph.node:
            del node.metadata_props[:]
        onnx.save(model, path)
    else:
        axes = {batch: "batch", time: "time"}
        torch.onnx.export(net, (example,), path, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": axes}, dynamo=False)


def main():
    warnings.simplefilter("ignore")
    arrays = {}
    for seed, (exporter, batch_first) in enumerate([("script", True), ("script", False), ("dynamo", True),
                                                    ("dynamo", False)]):
        torch.manual_seed(seed)
        net = LSTMThenLinear(batch_first).eval()
        name = f"torch_lstm_{exporter}_{'batch_first' if batch_first else 'time_major'}"
        export(net, batch_first, exporter == "dynamo", os.path.join(HERE, name + ".onnx"))
        x = torch.randn((3, 6, 5) if batch_first else (6, 3, 5), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            arrays[name + ".x"], arrays[name + ".y"] = x.numpy(), net(x).numpy()
    numpy.savez(os.path.join(HERE, "torch_lstm.npz"), **arrays)


if __name__ == "__main__":
    main()
