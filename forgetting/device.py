"""Where and how a run executes: the device, the chip's name, the precision, compiling, the machine's load.

None of it is part of a run's identity: result.json records it, since it can change a run's digits.
On CPU, fp32 is bit-for-bit repeatable at a fixed torch thread count (recorded in result.json too).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from forgetting.config import TrainConfig
from forgetting.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"device must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def processor_name(device: torch.device) -> str:
    """The chip that trains on ``device``: the GPU's name, else the CPU model. Recorded with every run
    because the same run id gives other digits on another CPU model (Intel vs AMD, 2 threads each)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_load() -> float | None:
    """The 1-minute load average: recorded at a run's start and end, since a run that shared its cores
    with another job ran several times slower (docs/clusters.md: sharing one machine). None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def amp_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype; None = fp32. auto: bf16 where the GPU supports it, else fp16 (with loss
    scaling); fp32 on CPU. bf16 and fp16 autocast on any device, CPU included, through the same code
    (so CPU tests exercise the CUDA path); parameters and BN stay in fp32."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def data_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """Half-precision data under AMP (halves device memory; the first layer autocasts it), else fp32."""
    return torch.float32 if amp_dtype(device, precision) is None else torch.float16


def precision_name(dt: torch.dtype | None) -> str:
    """The precision a run used, as result.json records it (float32, bfloat16 or float16)."""
    return str(dt).replace("torch.", "") if dt else "float32"


def execution(device: torch.device, dt: torch.dtype | None, compiled: bool) -> dict:
    """How a run executed, as result.json records it: device, chip, precision, torch and its threads."""
    return dict(
        device=str(device),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        processor=processor_name(device),
        precision=precision_name(dt),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        compiled=compiled,
    )


def use_compile(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the training step runs through torch.compile: ``cfg.compile``, by default on CUDA only
    (compiling takes minutes per graph on a small CPU). The first step of each batch shape compiles;
    its time is recorded as ``compile_seconds``, apart from ``seconds``."""
    return device.type == "cuda" if cfg.compile is None else bool(cfg.compile)
