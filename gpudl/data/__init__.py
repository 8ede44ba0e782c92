"""Datasets and the batch loader: XOR and separable points, handwritten digits (scikit-learn's 8x8 set, resized),
MNIST from IDX files in a folder the user names, text corpora for character models, and a seeded shuffling loader
that hands batches to a device."""
from .augment import random_shift
from .digits import load_digits, resize_bilinear
from .loader import DataLoader
from .mnist import IDXError, load_mnist, read_idx
from .points import separable_points, xor
from .text import SequenceBatches, TextBatches, Vocabulary, default_corpus, load_text

__all__ = ["DataLoader", "IDXError", "load_digits", "load_mnist", "random_shift", "read_idx", "resize_bilinear",
           "separable_points", "xor", "SequenceBatches", "TextBatches", "Vocabulary", "default_corpus", "load_text"]
