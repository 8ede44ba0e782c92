"""gpudl: the classic neural networks, on NumPy or on an NVIDIA GPU through CuPy, from one codebase."""
from . import data, distributed, functional, models, nn, optim, train
from .backend import Device, DeviceError, device, get_array_module, gpu_available, to_device, to_numpy
from .nn.init import manual_seed
from .serialization import load, save

__version__ = "0.1.0"

__all__ = ["Device", "DeviceError", "__version__", "data", "device", "distributed", "functional",
           "get_array_module", "gpu_available", "load", "manual_seed", "models", "nn", "optim", "save", "to_device", "to_numpy", "train"]
