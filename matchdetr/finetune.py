"""The public import path of fine-tuning across label sets (``from matchdetr.finetune import load_pretrained``);
the code lives in ``engine/finetune.py``, beside the training run that calls it for ``train.init``."""

from .engine.finetune import class_dependent_keys, load_pretrained

__all__ = ["class_dependent_keys", "load_pretrained"]
