"""Load a torchvision ImageNet ResNet state-dict file into ``matchdetr.models.backbone``.

The file is used as downloaded (``resnet50-0676ba61.pth`` or a ``.safetensors`` export): our ResNet keeps
torchvision's names, so nothing is renamed. ``fc.*`` (the ImageNet classifier) and BatchNorm's
``num_batches_tracked`` counters are dropped, as are the stages a backbone did not build (e.g. ``layer4.*``
when only C3 is used). Everything else must match exactly: any missing, unexpected or mis-shaped key raises a
``ValueError`` whose one-line message names the file, so a wrong depth or width fails loudly instead of
training from a half-loaded net.
"""

from __future__ import annotations

import os
import pickle
import re

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ..io.safe_load import refusal_reason

_MAX_LISTED = 10
_STAGE = re.compile(r"^layer(\d+)\.")


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return f"[{shown}{f', ... and {more} more' if more > 0 else ''}]"


def read_state_dict(path: str | os.PathLike[str], unwrap: tuple[str, ...] = ()) -> dict[str, Tensor]:
    """Read a flat ``{name: tensor}`` file (``.safetensors``, else ``torch.load`` with ``weights_only=True``);
    a dict holding the state dict under one of the keys ``unwrap`` (Microsoft's Swin files: ``model``) is opened.

    Raises ``FileNotFoundError`` / ``ValueError`` with a one-line message naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    if path.endswith(".safetensors"):
        try:
            obj: object = load_file(path, device="cpu")
        except Exception as err:  # safetensors raises its own SafetensorError for damaged files
            raise ValueError(f"{path}: cannot read as safetensors: {_one_line(err)}") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            # weights_only refuses arbitrary pickled objects (they could run code); a torchvision download
            # never contains any, so this is either a different kind of checkpoint or an untrusted file.
            raise ValueError(f"{path}: refused by torch.load(weights_only=True): not a plain state dict of "
                             f"tensors ({refusal_reason(err)}); matchdetr never unpickles arbitrary objects: save "
                             "one with torch.save(model.state_dict(), path)") from None
        except Exception as err:
            raise ValueError(f"{path}: cannot read as a PyTorch file: {_one_line(err)}") from None
    wrapper = next((k for k in unwrap if isinstance(obj, dict) and isinstance(obj.get(k), dict)), None)
    obj = obj[wrapper] if wrapper is not None else obj
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        what = f"dict with keys {_listing([str(k) for k in obj])}" if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: expected a flat state dict {{name: tensor}}, got a {what}")
    return obj


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"


def load_torchvision_resnet(backbone_or_body: nn.Module, path: str | os.PathLike[str]) -> None:
    """Copy a torchvision ResNet state-dict file into a ``Backbone`` (its ``.body``) or a ``ResNetBody``.

    Values are copied in place, so ``requires_grad`` (frozen stages) and the module's dtype/device are kept.
    """
    body = getattr(backbone_or_body, "body", backbone_or_body)
    num_stages = getattr(body, "num_stages", 4)
    path = os.fspath(path)
    state = read_state_dict(path)

    def wanted(key: str) -> bool:
        stage = _STAGE.match(key)
        return not (key.startswith("fc.") or (stage is not None and int(stage.group(1)) > num_stages))

    load_checked(body, {k: v for k, v in state.items() if wanted(k)}, path,
                 "is it a torchvision ResNet of the same depth?", "different ResNet depth or width?")


def load_checked(body: nn.Module, state: dict[str, Tensor], path: str, keys_hint: str, shape_hint: str) -> None:
    """Copy ``state`` into ``body`` after checking that its keys and shapes are exactly the body's.

    BatchNorm step counters are bookkeeping, not weights: a trainable-BatchNorm backbone (norm "bn") has them, a
    frozen one does not, and a file may or may not carry them; they are neither required nor loaded. Any other
    missing, unexpected or mis-shaped key raises a one-line ``ValueError`` naming ``path``.
    """
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    expected = {k: v for k, v in body.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{path}: keys do not match the backbone ({keys_hint}): "
                         f"missing {_listing(missing)}; unexpected {_listing(unexpected)}")
    for key, target in expected.items():  # module order, so the first mismatch reported is the shallowest
        if state[key].shape != target.shape:
            raise ValueError(f"{path}: shape mismatch for '{key}': file has {tuple(state[key].shape)}, backbone "
                             f"expects {tuple(target.shape)} ({shape_hint})")
    body.load_state_dict(state, strict=False)  # strict over the weights: every key was checked above
