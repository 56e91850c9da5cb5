"""Make PyPI's torchvision importable next to a CPU torch, for the vLLM CPU test environment (.venv-vllm) only.

vLLM's Qwen-VL models import transformers' Qwen2-VL image processor, which imports torchvision. PyPI's torchvision
wheels are CUDA builds: their C++ ops (``_C.so``) need ``libtorch_cuda`` and do not load next to CPU torch.
torchvision then runs on without them (``extension._has_ops()`` is False), except that two fake-tensor
registrations in ``_meta_registrations.py`` (``nms``, ``qnms``) are not guarded by that check and fail at import.
This script guards them the way the file guards all the others (``register_meta``), so the pure-PyTorch part
(transforms, what the HF processors use) imports. Idempotent; fails loudly if the file looks different.

Usage (the Makefile's setup-vllm target runs it):
    .venv-vllm/bin/python scripts/patch_torchvision_cpu.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

UNGUARDED = '@torch.library.register_fake("torchvision::{op}")\n'
GUARDED = '@register_meta("{op}")\n'
OPS = ("nms", "qnms")


def meta_registrations_file() -> Path:
    spec = importlib.util.find_spec("torchvision")  # finds the package without importing it (that would fail)
    if spec is None or spec.origin is None:
        raise SystemExit("torchvision is not installed in this environment")
    return Path(spec.origin).parent / "_meta_registrations.py"


def patch(text: str) -> str:
    for op in OPS:
        unguarded, guarded = UNGUARDED.format(op=op), GUARDED.format(op=op)
        if unguarded in text:
            text = text.replace(unguarded, guarded)
        elif guarded not in text:
            raise SystemExit(f"unexpected torchvision/_meta_registrations.py: no registration of {op!r} found")
    return text


def main() -> None:
    path = meta_registrations_file()
    text = path.read_text(encoding="utf-8")
    patched = patch(text)
    if patched != text:
        path.write_text(patched, encoding="utf-8")
    print(f"{path}: {'patched' if patched != text else 'already patched'}", file=sys.stderr)


if __name__ == "__main__":
    main()
