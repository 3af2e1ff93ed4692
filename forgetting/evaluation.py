"""A model's loss and accuracy on images: per example, and as means over steps and epochs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from forgetting.device import amp_dtype

# Images per forward pass when evaluating. On CPU, 256 ran 1.4x faster than 1,000 (activations that
# fit in cache); on a GPU larger batches keep it busy.
EVAL_BATCH = {"cpu": 256, "cuda": 1024}


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """A batch as the model takes it: channels-last on every device (see `train.build_model`)."""
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def per_example(
    model, x: torch.Tensor, y: torch.Tensor, batch: int | None = None, precision: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss (fp32) and correctness on the device, in whatever mode ``model`` is in."""
    device = x.device
    batch = batch or EVAL_BATCH.get(device.type, 256)
    dt = amp_dtype(device, precision)
    losses, correct = [], []
    for i in range(0, len(x), batch):
        xb = channels_last(x[i : i + batch])
        with torch.autocast(device.type, dtype=dt, enabled=dt is not None):
            logits = model(xb)
        losses.append(F.cross_entropy(logits.float(), y[i : i + batch], reduction="none"))
        correct.append(logits.argmax(1) == y[i : i + batch])
    return torch.cat(losses), torch.cat(correct)


def evaluate(model, x: torch.Tensor, y: torch.Tensor, precision: str = "auto") -> tuple[float, float]:
    """Mean loss and accuracy in eval mode (BN running statistics)."""
    was = model.training
    model.eval()
    loss, correct = per_example(model, x, y, precision=precision)
    model.train(was)
    return float(loss.mean()), float(correct.float().mean())


def per_step_mean(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Mean of each step's slice of per-example ``values`` (steps of ``sizes`` examples, in order)."""
    if (sizes == sizes[0]).all():
        return values.reshape(len(sizes), -1).mean(1)  # the committed runs' arithmetic, kept bit for bit
    return np.add.reduceat(values.astype(np.float64), np.r_[0, np.cumsum(sizes)[:-1]]) / sizes


def epoch_mean(step_values: np.ndarray, sizes: np.ndarray) -> float:
    """An epoch's mean over examples from per-step means (a partial batch weighs what it holds)."""
    if (sizes == sizes[0]).all():
        return float(step_values.mean())
    return float((step_values * sizes).sum() / sizes.sum())
