"""Optimizer as a setting: sgd (Page's, the default: old run ids stay) or adamw, in the study file and the
identity; training, the LR finder and sweeps work with either."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from forgetting import config, grid, studies, sweep, train
from forgetting.errors import UserError
from forgetting.execution.settings import ExecutorSettings
from forgetting.lr_finder import find_lr
from forgetting.study_record import study_record

CFG = config.TrainConfig(width=0.125, subset=100, batch_size=50, epochs=1, lr_knots=((0, 1e-3), (1, 1e-3)))
ADAMW = dataclasses.replace(CFG, optimizer="adamw", betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)


def test_sgd_runs_keep_their_ids_and_adamw_runs_are_named_by_what_adamw_reads():
    sgd = CFG.identity()
    assert not {"optimizer", "betas", "eps"} & set(sgd) and {"momentum", "weight_decay"} <= set(sgd)
    assert dataclasses.replace(CFG, betas=(0.5, 0.5)).identity() == sgd  # sgd does not read them
    adamw = ADAMW.identity()
    assert adamw["optimizer"] == "adamw" and adamw["betas"] == [0.8, 0.99] and adamw["eps"] == 1e-6
    assert "momentum" not in adamw
    assert config.run_id(dataclasses.replace(ADAMW, momentum=0.5)) == config.run_id(ADAMW)
    assert config.TrainConfig.from_dict(__import__("json").loads(__import__("json").dumps(ADAMW.to_dict()))) == ADAMW


def test_the_optimizer_is_built_with_its_hyperparameters():
    model = torch.nn.Linear(3, 2)
    sgd = train.make_optimizer(CFG, model)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    adamw = train.make_optimizer(ADAMW, model)
    assert isinstance(adamw, torch.optim.AdamW)
    assert (adamw.defaults["betas"], adamw.defaults["eps"], adamw.defaults["weight_decay"]) == ((0.8, 0.99), 1e-6, 0.05)


@pytest.mark.parametrize(
    "bad", [dict(optimizer="lion"), dict(betas=(0.9, 1.0)), dict(eps=0.0), dict(momentum=1.5), dict(weight_decay=-1)]
)
def test_bad_optimizer_settings_are_one_line(bad):
    with pytest.raises(UserError):
        config.TrainConfig(**bad)


def tiny_study(**kw):
    base = dict(multipliers=[1.0], sizes=[100], epochs=1, batch_size=50, width=0.125, base_lr="find", seeds=[0])
    return studies.load_study("cpu-lr-sweep").with_overrides(**{**base, **kw})


def test_a_study_file_sets_the_optimizer_and_its_records_stay_comparable(tmp_path):
    text = (studies.STUDIES_DIR / "cpu-lr-sweep.toml").read_text()
    path = tmp_path / "adamw.toml"
    path.write_text(text.replace("[train]", '[train]\noptimizer = "adamw"\nbetas = [0.8, 0.99]\nweight_decay = 0.05'))
    study = studies.load_study(str(path))
    cfg = grid.expand(study, 1e-3)[0].config
    assert (cfg.optimizer, cfg.betas, cfg.weight_decay) == ("adamw", (0.8, 0.99), 0.05)
    path.write_text(text.replace("[train]", "[train]\nbetas = [0.9, 1.5]"))
    with pytest.raises(UserError, match="train.betas"):
        studies.load_study(str(path))
    # a study recorded before optimizers were a setting and one recorded now are the same study
    committed = __import__("json").loads((studies.STUDIES_DIR.parent / "results/cpu-lr-sweep/study.json").read_text())
    assert set(study_record(studies.load_study("cpu-lr-sweep"), 0.1)["train"]) <= set(committed["train"]) | {
        "eval_last",
        "eval_train",
        "precision",
        "drop_last",
        "compile",
    }


def test_adamw_trains_and_its_lr_finder_and_sweep_run(tmp_path, synthetic_cifar, one_thread):
    result = train.train(ADAMW, synthetic_cifar, "cpu").result
    assert not result["diverged"] and result["test_loss"] > 0
    found = find_lr(ADAMW, synthetic_cifar, "cpu", num_steps=12, start_lr=1e-5, end_lr=1.0)
    assert found.suggestion > 0 and found.config["optimizer"] == "adamw"
    out = sweep.run_sweep(tiny_study(optimizer="adamw"), tmp_path, synthetic_cifar, ExecutorSettings(device="cpu"))
    assert (out.table["status"] == "finished").all() and out.specs[0].config.optimizer == "adamw"
    assert (tmp_path / "cpu-lr-sweep" / "lr_find.json").exists()
