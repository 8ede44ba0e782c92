"""Ready-made models: the Rosenblatt perceptron, multilayer perceptrons, LeNet-5 and the character LSTM."""
from .charlm import CharLSTM, load_charlm, perplexity, report_perplexity, sample, save_charlm
from .lenet import LeNet5
from .mlp import MLP
from .perceptron import Perceptron, PerceptronFit

__all__ = ["CharLSTM", "LeNet5", "MLP", "Perceptron", "PerceptronFit", "load_charlm", "perplexity",
           "report_perplexity", "sample", "save_charlm"]
