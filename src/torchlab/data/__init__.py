"""Datasets, splits, loaders and the featurizers that turn raw input into model input."""

from torchlab.data.base import Batch, DataBundle, DataSpec, TensorSplit
from torchlab.data.featurizers import Featurizer, load_featurizer
from torchlab.data.loaders import build_loader

__all__ = [
    "Batch",
    "DataBundle",
    "DataSpec",
    "Featurizer",
    "TensorSplit",
    "build_loader",
    "load_featurizer",
]
