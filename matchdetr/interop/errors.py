"""The converters' one error type, in a module of its own: the weight loaders the model builder uses (Swin,
EfficientNet-Lite, torchvision ResNet) raise it without importing a converter that imports the public API."""

from __future__ import annotations


class ConversionError(ValueError):
    """A source that cannot be converted; the one-line message names the file and the keys."""
