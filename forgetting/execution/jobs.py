"""The jobs themselves, as they run wherever a backend puts them: a run's training, a run's probe.

Each is a module-level function ``fn(worker, **kwargs)`` (it travels by pickle), the same in this
process, a local worker process, a Ray task or a SLURM array task.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from forgetting import datasets, nets
from forgetting.config import TrainConfig
from forgetting.device import resolve_device
from forgetting.execution.base import Worker
from forgetting.store import RunFolder, json_bytes, read_json
from forgetting.train import Callbacks, train


def shippable(data):
    """What travels to a worker for ``data`` (`datasets.Dataset`): its file where it came from one (every
    node reads it, checked to be the same data), else the arrays themselves."""
    return datasets.shippable(data)


def load_data(shipped):
    """The data set a worker holds, from what `shippable` sent it."""
    return shipped.load() if isinstance(shipped, datasets.DataFile) else shipped


def network_roots(jobs) -> tuple[str, ...]:
    """Refuse, before any job starts, a network that another process cannot find by its name; the folders
    its modules are found in (for a process that does not share this one's sys.path: a Ray task, a node)."""
    for job in jobs:
        nets.check_portable(job.spec.config.net)
    return tuple(sorted({root for job in jobs if (root := nets.import_root(job.spec.config.net))}))


def find_networks(roots: tuple[str, ...]) -> None:
    """Where a job runs: a user's network module is found where the driver found it."""
    sys.path[:0] = [p for p in roots if p not in sys.path]


def execute_run(
    cfg_dict: dict,
    meta: dict,
    data=None,
    device: str = "auto",
    checkpoint: str | None = None,
    threads: int | None = None,
    callbacks=None,
    cache=None,
) -> dict[str, bytes]:
    """Train one run and return its files (name -> bytes), ready to write (`RunFolder.write`)."""
    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict(cfg_dict)
    out = train(
        cfg,
        data,
        resolve_device(device),
        checkpoint=Path(checkpoint) if checkpoint else None,
        callbacks=callbacks,
        cache=cache,
    )
    return {**out.files(), RunFolder.meta.name: json_bytes(meta)}  # RunFolder.write puts result.json last


class Fanout(Callbacks):
    """Several progress hooks as one: a run reports once, every listener hears it."""

    def __init__(self, *listeners):
        self.listeners = [c for c in listeners if c is not None]

    def start_epoch(self, epoch: int, steps: int) -> None:
        for c in self.listeners:
            c.start_epoch(epoch, steps)

    def step(self, epoch: int, step: int) -> bool | None:
        return any([c.step(epoch, step) for c in self.listeners])  # a list: every listener hears the step

    def end_epoch(self, row: dict) -> None:
        for c in self.listeners:
            c.end_epoch(row)


def train_job(worker: Worker, cfg: dict, meta: dict, checkpoint: str | None = None, reporter=None) -> dict[str, bytes]:
    """A run's training; ``reporter`` (picklable progress hooks, e.g. TensorBoard's) travels with it."""
    if checkpoint is not None and worker.shares_disk:
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    else:
        checkpoint = None  # no shared disk: a retried task starts again from the start
    from forgetting.execution import jobs  # through the module: a test may put its own execute_run there

    hooks = Fanout(worker.callbacks, reporter) if reporter is not None else worker.callbacks
    return jobs.execute_run(cfg, meta, worker.data, worker.device, checkpoint, callbacks=hooks, cache=worker.cache)


def probe_job(worker: Worker, run_dir: str, last_epochs: int, bn: str, files: dict | None = None):
    """A finished run's probe (`probe.probe_run`): its tables and its seconds. ``files``: the run's files,
    shipped to a worker that does not share the store's disk."""
    from forgetting.replay import probe_run
    from forgetting.train import prepare

    with tempfile.TemporaryDirectory() as scratch:
        if files is not None:
            run_dir = str(Path(scratch) / Path(run_dir).name)
            RunFolder(Path(run_dir)).dir.mkdir()
            RunFolder(Path(run_dir)).write(files)
        dev = resolve_device(worker.device)
        cache = worker.cache if worker.cache is not None else {}
        config = RunFolder(Path(run_dir)).config
        if config.exists():  # (a run without one is probe_run's to refuse, with its one line)
            # data preparation is shared by all runs: not the probe's cost
            prepare(TrainConfig.from_dict(read_json(config)), worker.data, dev, cache)
        t0 = time.perf_counter()
        probed = probe_run(Path(run_dir), worker.data, dev, last_epochs, bn, cache, callbacks=worker.callbacks)
        return probed, time.perf_counter() - t0
