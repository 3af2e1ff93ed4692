"""forgetting: reproduce and extend Page's "How to Train Your ResNet" Part 2 (catastrophic forgetting).

The Python API (see `forgetting.api`): ``load_data``, ``load_study``, ``train_run``, ``run_study``
(any study; ``run_sweep`` and ``probe_study`` for one kind), ``merge_stores``, ``summarise``, ``figures``,
``scores`` (per-example forgetting scores pooled over seeds), ``ExecutorSettings`` (how a sweep's runs
are executed) and ``Recorder`` (forgetting measured inside your own training loop). They load torch and
pandas on first use, so importing the package (as the command line does) stays cheap.
"""

__version__ = "0.1.0"

# Not `train`, `sweep`, `probe` or `merge`: those are submodules, and a submodule's import replaces a
# package attribute of the same name.
__all__ = [
    *("load_data", "load_study", "train_run", "run_study", "run_sweep", "probe_study", "merge_stores"),
    *("summarise", "figures", "scores"),
    "ExecutorSettings",
    "Recorder",
]


def __getattr__(name: str):
    if name == "ExecutorSettings":
        from forgetting.execution.settings import ExecutorSettings

        return ExecutorSettings
    if name == "Recorder":
        from forgetting.recorder import Recorder

        return Recorder
    if name in __all__:
        from forgetting import api

        return getattr(api, name)
    raise AttributeError(f"module 'forgetting' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
