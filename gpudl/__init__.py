"""gpudl: the classic neural networks, on NumPy or on an NVIDIA GPU through CuPy, from one codebase."""
import importlib.util
from importlib import metadata

if importlib.util.find_spec(__name__ + ".kernels") is None:
    raise ImportError("gpudl.kernels is missing: the kernels live in the checkout's top-level kernels/ folder, which "
                      "only an install maps into the package; run `pip install -e .` in the checkout")
from . import data, distributed, functional, models, nn, optim, train
from .backend import Device, DeviceError, device, get_array_module, gpu_available, to_device, to_numpy
from .functional.threads import get_num_threads, set_num_threads
from .nn.init import manual_seed
from .serialization import load, save

__version__ = metadata.version("gpudl")     # pyproject.toml says it once

__all__ = ["Device", "DeviceError", "__version__", "data", "device", "distributed", "functional",
           "get_array_module", "get_num_threads", "gpu_available", "load", "manual_seed", "models", "nn", "optim",
           "save", "set_num_threads", "to_device", "to_numpy", "train"]
