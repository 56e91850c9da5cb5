"""Export a Lightning checkpoint of a policy module to a Hugging Face model directory."""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import torch

from longvila_r1.modules.policy_module import CHECKPOINT_KEY, VideoPolicyModule


def export_checkpoint(ckpt_path: str | Path, output_dir: str | Path) -> Path:
    """Load ``ckpt_path`` (written by ``longvila-r1 fit``) and write its policy to ``output_dir``.

    The result loads with ``transformers.AutoModelForImageTextToText.from_pretrained(output_dir)`` and back into
    training with ``model.path: output_dir``.

    Example:
        >>> export_checkpoint("outputs/sft/checkpoints/last.ckpt", "outputs/sft/hf")  # doctest: +SKIP
    """
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path} not found")
    try:
        header = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:  # truncated copy, not a checkpoint
        raise ValueError(f"{ckpt_path} is not a readable checkpoint ({exc})") from exc
    info = header.get(CHECKPOINT_KEY)
    if info is None:
        raise ValueError(f"{ckpt_path} was not written by a longvila-r1 module (no '{CHECKPOINT_KEY}' entry)")
    module_name, _, class_name = info["module_class"].rpartition(".")
    module_class = getattr(importlib.import_module(module_name), class_name)
    if not issubclass(module_class, VideoPolicyModule):
        raise TypeError(f"{info['module_class']} is not a VideoPolicyModule")
    module = module_class.load_from_checkpoint(ckpt_path, map_location="cpu")
    return module.export(output_dir)
