"""Layers, containers and losses. Every layer: forward(x), backward(dy) -> dx, parameters(), to(device)."""
from .activation import ReLU, Sigmoid, Sign, Softplus, Step, Tanh
from .conv import Conv2D
from .dense import Dense
from .flatten import Flatten
from .init import manual_seed
from .loss import MSELoss, SequenceCrossEntropy, SoftmaxCrossEntropy
from .module import Module, Parameter, Sequential
from .pooling import AvgPool2D, MaxPool2D
from .recurrent import LSTM, RNN
