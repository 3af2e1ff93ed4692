"""forgetting.Recorder: a plain training loop fed the toolkit's own batches records what the trainer records
and replays what the probe replays, bit for bit; and what it refuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import forgetting as fg
from forgetting import augment, config, probe, train
from forgetting.analysis import scores as fs
from forgetting.errors import UserError
from forgetting.evaluation import channels_last
from forgetting.run_start import build_model, make_optimizer, prepare
from helpers import make_synthetic

# A partial last batch (330 = 6 x 50 + 30: the trainer's rule for it, the probe's uneven step means) and more
# presentations an epoch than the probe evaluates at once (256 on CPU): the replay's chunks cross a batch.
CFG = dict(net="dawn18", width=0.125, subset=330, epochs=2, batch_size=50, augment=True, seed=3)
CPU = torch.device("cpu")


class Batches:
    """A run's batches rebuilt from (indices, epoch) alone: the epoch's plan drawn again (`augment.plan_epoch`)
    and each example's crop and flip looked up in it."""

    def __init__(self, cfg, prep):
        self.cfg, self.prep, self.plans = cfg, prep, {}

    def plan(self, epoch: int) -> augment.EpochPlan:
        if epoch not in self.plans:
            cfg, prep = self.cfg, self.prep
            draw = (cfg.seed, epoch, prep.augment, cfg.batch_size, cfg.drop_last)
            self.plans[epoch] = augment.plan_epoch(prep.subset, *draw)
        return self.plans[epoch]

    def __call__(self, indices, epoch: int):
        plan, spec = self.plan(epoch), self.prep.augment
        where = {int(i): k for k, i in enumerate(plan.indices)}  # an example is presented once an epoch
        pos = np.array([where[int(i)] for i in indices])
        idx = torch.as_tensor(plan.indices[pos])
        crop, flip, cutout = (torch.as_tensor(a[pos]) for a in (plan.crop, plan.flip, plan.cutout))
        x = augment.apply_choices(self.prep.train_padded[idx], crop, flip, cutout, spec.cutout, spec.image)
        return x, self.prep.train_labels[idx]


def plain_loop(cfg, data, recorder):
    """A plain PyTorch loop over the run's batches, feeding ``recorder``: the model, optimizer and LR schedule
    are the trainer's, built by its own functions."""
    prep = prepare(cfg, data, CPU)
    model, batches = build_model(cfg, CPU, prep), Batches(cfg, prep)
    opt = make_optimizer(cfg, model)
    model.train()
    for epoch in range(cfg.epochs):
        plan = batches.plan(epoch)
        for s in range(plan.steps):
            lr = cfg.schedule(epoch + (s + 1) / plan.steps)
            for group in opt.param_groups:
                group["lr"] = lr
            indices = plan.indices[plan.batch(s)]
            x, y = batches(indices, epoch)
            logits = model(channels_last(x))
            losses = F.cross_entropy(logits.float(), y, reduction="none")
            # the trainer's partial batch: the summed loss over the nominal batch size (Page's loader)
            loss = losses.mean() if len(y) == cfg.batch_size else losses.sum() / cfg.batch_size
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            recorder.step(indices, logits, y, epoch=epoch, lr=lr, inputs=x)
    return model, batches


@pytest.fixture(scope="module")
def both(tmp_path_factory, one_thread):
    """The same run trained by the toolkit's trainer (a run folder) and by a plain loop with a Recorder."""
    data = make_synthetic(400, 100, seed=1)
    cfg = config.bind_data(config.TrainConfig(**CFG, lr_knots=((0, 0), (1, 0.4), (2, 0.4))), data.identity)
    run_dir = tmp_path_factory.mktemp("recorder") / "run"
    train.train_to_dir(cfg, data, run_dir, "cpu")
    recorder = fg.Recorder(seed=cfg.seed)
    model, batches = plain_loop(cfg, data, recorder)
    return dict(data=data, cfg=cfg, run_dir=run_dir, recorder=recorder, model=model, batches=batches)


def test_the_recorder_keeps_the_trainer_s_records_exactly(both):
    rec, run_dir = both["recorder"], both["run_dir"]
    weights = torch.load(run_dir / "model.pt")
    for key, value in both["model"].state_dict().items():
        assert torch.equal(value, weights[key]), key  # the same training, step for step
    with np.load(run_dir / "examples.npz") as f:
        for key, value in rec.examples().items():
            np.testing.assert_array_equal(value, f[key], err_msg=key)
            assert value.dtype == f[key].dtype, key
    steps = pd.read_csv(run_dir / "steps.csv")
    pd.testing.assert_frame_equal(rec.plan()[["epoch", "step", "lr", "loss", "acc", "n"]], steps.drop(columns="digest"))
    assert rec.plan()["n"].tolist() == [50] * 6 + [30] + [50] * 6 + [30]


@pytest.mark.parametrize("bn, last_epochs", [("eval", 0), ("batch", 0), ("eval", 1)])
def test_the_recorder_s_replay_is_the_probe_s_table(both, bn, last_epochs):
    cfg, rec = both["cfg"], both["recorder"]
    probed = probe.probe_run(both["run_dir"], both["data"], CPU, last_epochs=last_epochs, bn=bn)
    replayed = rec.replay(both["model"], both["batches"], bn=bn, precision=cfg.precision, last_epochs=last_epochs)
    pd.testing.assert_frame_equal(replayed, probed.steps, check_exact=True)
    if bn == "eval" and last_epochs == 0:  # the forgetting statistics the probe counts from examples.npz
        columns = ["index", "presentations", "forgetting_events", "first_learned_epoch", "never_learned", "label"]
        pd.testing.assert_frame_equal(rec.forgetting()[columns], probed.examples[columns])


def test_a_replay_of_other_images_or_labels_is_refused(both):
    rec, batches = both["recorder"], both["batches"]
    with pytest.raises(UserError, match="images for step 0 .* are not the ones trained on"):
        rec.replay(both["model"], lambda idx, epoch: batches(idx, epoch + 1))  # another epoch's crops and flips
    with pytest.raises(UserError, match="labels for step 0"):
        rec.replay(both["model"], lambda idx, epoch: (batches(idx, epoch)[0], torch.zeros(len(idx), dtype=torch.long)))


def _fed(seed: int, correct_by_epoch: list[list[bool]]) -> fg.Recorder:
    """A Recorder fed per-example losses and correctness: examples 10..13, one step per epoch."""
    rec = fg.Recorder(seed=seed)
    for epoch, correct in enumerate(correct_by_epoch):
        rec.step([10, 11, 12, 13], torch.ones(4), [0, 1, 0, 1], epoch=epoch, correct=correct)
    return rec


def test_scores_of_recorders_pool_their_seeds_as_forgetting_scores_does():
    a = _fed(0, [[1, 0, 1, 0], [0, 0, 1, 1], [1, 0, 1, 1]])
    b = _fed(1, [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0]])
    table = a.scores(b, n_boot=100).set_index("index")
    assert table["forgetting_events"].to_dict() == {10: 0.5, 11: 0.5, 12: 0.0, 13: 0.0}
    assert table["never_learned"].to_dict() == {10: 0.0, 11: 0.5, 12: 0.0, 13: 0.5}
    assert table["unforgettable"].to_dict() == {10: 0.5, 11: 0.0, 12: 1.0, 13: 0.5}
    per_run = pd.concat([r.forgetting().assign(seed=r.seed) for r in (a, b)], ignore_index=True)
    pd.testing.assert_frame_equal(a.scores(b, n_boot=100), fs.pooled_scores(per_run, n_boot=100))
    with pytest.raises(UserError, match="distinct seeds"):
        a.scores(_fed(0, [[1, 1, 1, 1]]))


def test_what_the_recorder_refuses():
    rec = fg.Recorder()
    with pytest.raises(UserError, match="need correct="):
        rec.step([0, 1], torch.ones(2), [0, 1], epoch=0)
    with pytest.raises(UserError, match="3 indices, 2 labels"):
        rec.step([0, 1, 2], torch.zeros(2, 3), [0, 1], epoch=0)
    with pytest.raises(UserError, match="no step"):
        rec.scores()
    rec.step([0, 1], torch.zeros(2, 3), [0, 1], epoch=1)
    with pytest.raises(UserError, match="epoch 0 after epoch 1"):
        rec.step([0, 1], torch.zeros(2, 3), [0, 1], epoch=0)
