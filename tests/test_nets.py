"""forgetting.nets: the registry, airbench94 against its reference, and a user's network by import path."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pandas as pd
import pytest
import torch
from torch import nn

from forgetting import config, grid, nets, studies, sweep
from forgetting.errors import UserError
from forgetting.execution.settings import ExecutorSettings

# sum(p.numel() for p in make_net().parameters()) of KellerJordan/cifar10-airbench legacy/airbench94.py at
# commit f1c599c, instantiated on CPU (the whitening layer's 312 and BN weights included; 1,971,352 train).
AIRBENCH94_PARAMETERS = 1_972_792
AIRBENCH94_TRAINABLE = 1_971_352


def n_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def test_airbench94_has_the_reference_s_parameter_count():
    net = nets.build("airbench94", 10, 3)
    assert n_params(net) == AIRBENCH94_PARAMETERS
    assert n_params(net, trainable_only=True) == AIRBENCH94_TRAINABLE
    widths = [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [24, 64, 64, 256, 256, 256, 256]  # whitening 2x2 (2 x 3 x 2 x 2), then 64/256/256
    assert net[0].kernel_size == (2, 2) and not net[0].weight.requires_grad


@pytest.mark.parametrize("net", nets.BUILT_IN)
@pytest.mark.parametrize("shape, classes", [((3, 32, 32), 10), ((1, 28, 28), 100)])
def test_built_ins_take_the_class_count_and_input_channels(net, shape, classes):
    model = nets.build(net, classes, shape[0], width=0.25)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes) and torch.isfinite(out).all()


def test_airbench_whitening_from_data_decorrelates_patches():
    torch.manual_seed(0)
    net = nets.build("airbench94", 10, 3)
    mixing = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    images = torch.einsum("ij,njhw->nihw", mixing, torch.randn(200, 3, 16, 16))  # correlated channels
    net.init_from_data(images)
    with torch.no_grad():
        out = nn.functional.conv2d(images, net[0].weight[:12])  # the first half: scaled eigenvectors
    flat = out.permute(1, 0, 2, 3).reshape(12, -1)
    cov = flat @ flat.T / flat.shape[1]
    assert torch.allclose(cov, torch.eye(12), atol=0.01)  # whitened (eps 5e-4 shrinks each variance a hair)


def test_a_built_in_s_own_settings_are_refused_elsewhere():
    with pytest.raises(UserError, match="takes no shortcut"):
        config.TrainConfig(net="resnet9", shortcut="johnson")
    with pytest.raises(UserError, match="takes no bn_init"):
        config.TrainConfig(net="airbench94", bn_init="uniform")
    with pytest.raises(UserError, match="unknown net 'vgg'"):
        config.TrainConfig(net="vgg")


FACTORY = """
from torch import nn


def small_net(num_classes, in_channels, width):
    c = max(1, round(8 * width)) * {scale}
    return nn.Sequential(
        nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)
    )
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A network factory in a module of its own, importable by name (its folder on sys.path)."""
    name = f"user_nets_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "mods" / f"{name}.py"
    path.parent.mkdir()
    path.write_text(FACTORY.format(scale=1))
    monkeypatch.syspath_prepend(str(path.parent))
    return name, path


def tiny_study(net: str):
    base = dict(multipliers=[1.0, 2.0], sizes=[100], epochs=1, batch_size=50, width=0.5, base_lr=0.05, seeds=[0])
    return studies.load_study("cpu-lr-sweep").with_overrides(net=net, **base)


def test_a_user_network_is_named_by_its_source(user_module):
    name, path = user_module
    net = f"{name}:small_net"
    ids = [s.id for s in grid.expand(tiny_study(net), 0.05)]
    model = nets.build(net, 10, 3, 1.0)
    assert isinstance(model[0], nn.Conv2d) and model[0].out_channels == 8
    path.write_text(FACTORY.format(scale=2))  # an edit of the module renames its runs ...
    edited = [s.id for s in grid.expand(tiny_study(net), 0.05)]
    assert not set(ids) & set(edited)
    assert nets.build(net, 10, 3, 1.0)[0].out_channels == 16  # ... and the edit is what trains
    cfg = grid.expand(tiny_study(net), 0.05)[0].config
    with pytest.raises(UserError, match="source has changed"):  # a run named by the old source is not rebuilt
        nets.build(net, 10, 3, 1.0, source=dataclasses.replace(cfg, net_source="0" * 12).net_source)


def test_a_study_file_names_a_user_network(user_module, tmp_path):
    name, _ = user_module
    toml = (
        (studies.STUDIES_DIR / "cpu-lr-sweep.toml").read_text().replace('net = "dawn18"', f'net = "{name}:small_net"')
    )
    (tmp_path / "mine.toml").write_text(toml)
    assert studies.load_study(str(tmp_path / "mine.toml")).train["net"] == f"{name}:small_net"
    with pytest.raises(UserError, match="train.net"):
        (tmp_path / "bad.toml").write_text(toml.replace(f"{name}:small_net", "not a net"))
        studies.load_study(str(tmp_path / "bad.toml"))


def test_a_user_network_trains_in_two_worker_processes(user_module, tmp_path, synthetic_cifar):
    name, _ = user_module
    out = sweep.run_sweep(tiny_study(f"{name}:small_net"), tmp_path, synthetic_cifar, ExecutorSettings(workers=2))
    assert (out.table["status"] == "finished").all() and len(out.table) == 2
    saved = json.loads((out.store.run_dir(out.specs[0]) / "config.json").read_text())
    assert saved["net"] == f"{name}:small_net" and saved["net_source"] == out.specs[0].config.net_source != ""


def test_a_closure_trains_in_this_process_only(tmp_path, synthetic_cifar):
    def closure_net(num_classes, in_channels, width):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 32 * 32, num_classes))

    study = tiny_study(nets.name_of(closure_net))
    try:
        out = sweep.run_sweep(study, tmp_path / "a", synthetic_cifar, ExecutorSettings(workers=1))
        assert (out.table["status"] == "finished").all()
        with pytest.raises(UserError, match="registered in this process only"):
            sweep.run_sweep(study, tmp_path / "b", synthetic_cifar, ExecutorSettings(workers=2))
    finally:
        nets.registry.REGISTRY.pop("closure_net")


@pytest.mark.integration
def test_a_user_network_trains_as_ray_tasks(user_module, tmp_path, synthetic_cifar):
    ray = pytest.importorskip("ray")
    name, _ = user_module
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        settings = ExecutorSettings(executor="ray", device="cpu", cpus_per_run=1)
        out = sweep.run_sweep(tiny_study(f"{name}:small_net"), tmp_path, synthetic_cifar, settings)
    finally:
        ray.shutdown()
    table = pd.read_csv(out.store.results)
    assert (table["status"] == "finished").all() and len(table) == 2
