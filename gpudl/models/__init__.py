"""Ready-made models: the Rosenblatt perceptron, multilayer perceptrons and LeNet-5."""
from .lenet import LeNet5
from .mlp import MLP
from .perceptron import Perceptron, PerceptronFit

__all__ = ["LeNet5", "MLP", "Perceptron", "PerceptronFit"]
