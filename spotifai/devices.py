"""Which torch device a command runs on: ``cpu``, ``cuda`` or ``cuda:N``, checked once with a clear error.

Asking for CUDA on a machine without it is one :class:`ValueError` saying so (not a later "unreadable
checkpoint" from ``torch.load(map_location="cuda")``), and ``cuda:N`` must name a visible GPU.
"""

from __future__ import annotations

import re

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d{1,3}))?$")


def check_device(name: str) -> str:
    """``name`` when this machine can run on it, else ValueError naming the device and what is missing."""
    match = _DEVICE.match(str(name).strip().lower())
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise ValueError(f"device {name!r}: expected cpu, cuda or cuda:N (N = GPU number)")
    kind, number = match.group(1), match.group(2)
    if kind == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}, no GPU visible"
        raise ValueError(f"device {name!r}: CUDA is not available on this machine (torch {torch.__version__}, {build});"
                         " use --device cpu")
    if number is not None and int(number) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")
    return f"cuda:{int(number)}" if number is not None else "cuda"
