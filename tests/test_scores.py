"""Per-example forgetting scores: Toneva's statistics on hand-built histories, pooling over seeds, the rank
agreement of seeds, and `forgetting scores` on a committed probe study and on a store's examples.npz."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import forgetting as fg
from forgetting import config, datasets
from forgetting.analysis import scores as fs
from forgetting.errors import UserError
from helpers import REPO_ROOT, image_arrays
from test_cli import assert_one_line_error, run_cli


def _flat(histories: dict[int, list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Presentations, one per epoch of each example (correctness by epoch), shuffled: index, epoch, correct."""
    rows = [(i, e, c) for i, seq in histories.items() for e, c in enumerate(seq)]
    rows = [rows[k] for k in np.random.default_rng(0).permutation(len(rows))]
    index, epoch, correct = (np.array(col) for col in zip(*rows))
    return index, epoch, correct


def test_toneva_statistics_of_hand_built_histories():
    histories = {
        7: [1, 1, 1, 1],  # learned at once, never forgotten: unforgettable
        3: [0, 1, 0, 1],  # learned in epoch 1, forgotten once
        5: [1, 0, 1, 0],  # two events
        9: [0, 0, 0, 0],  # never learned: no event (never correct), not unforgettable
        2: [0, 0, 1, 1],  # learned in epoch 2, unforgettable
    }
    index, epoch, correct = _flat(histories)
    df = fs.presentation_stats(index, epoch, epoch, correct)
    assert df["index"].tolist() == [2, 3, 5, 7, 9]
    df = fs.with_unforgettable(df.assign(seed=0, label=0)).set_index("index")
    assert df["forgetting_events"].to_dict() == {2: 0, 3: 1, 5: 2, 7: 0, 9: 0}
    assert df["first_learned_epoch"].to_dict() == {2: 2, 3: 1, 5: 0, 7: 0, 9: -1}
    assert df["never_learned"].to_dict() == {2: False, 3: False, 5: False, 7: False, 9: True}
    assert df["unforgettable"].to_dict() == {2: True, 3: False, 5: False, 7: True, 9: False}
    assert (df["presentations"] == 4).all()


def test_presentations_within_an_epoch_count_in_step_order():
    # example 4 is shown twice in epoch 0 (steps 0 and 3: right, then wrong) and once in epoch 1 (right)
    df = fs.presentation_stats([4, 4, 4], [1, 0, 0], [5, 3, 0], [True, False, True]).set_index("index")
    assert df.loc[4, "forgetting_events"] == 1 and df.loc[4, "presentations"] == 3
    assert df.loc[4, "first_learned_epoch"] == 0


def _reference_events(index, step, correct) -> dict[int, int]:
    """Toneva's count by a loop over each example's presentations: the definition, written plainly."""
    events = {}
    for i in np.unique(index):
        seq = correct[index == i][np.argsort(step[index == i])]
        events[int(i)] = int(sum(a and not b for a, b in zip(seq[:-1], seq[1:])))
    return events


def test_events_agree_with_the_definition_on_random_histories():
    rng = np.random.default_rng(1)
    index, step = rng.integers(0, 40, 600), rng.permutation(600)
    correct = rng.random(600) < 0.6
    df = fs.presentation_stats(index, step // 100, step, correct)
    assert dict(zip(df["index"], df["forgetting_events"])) == _reference_events(index, step, correct)


def _seeds(values: dict[int, list[int]], never: dict[int, list[bool]] | None = None) -> pd.DataFrame:
    """Per-run rows from events by seed ({index: [events in seed 0, seed 1, ...]}, None: not presented)."""
    rows = []
    for i, per_seed in values.items():
        for s, e in enumerate(per_seed):
            if e is not None:
                nl = bool(never and never.get(i, [False] * len(per_seed))[s])
                rows.append(dict(seed=s, index=i, label=i % 3, forgetting_events=e, first_learned_epoch=-1 if nl else s,
                                 never_learned=nl))
    return pd.DataFrame(rows)


def test_pooled_scores_take_the_mean_over_the_seeds_that_presented_each_example():
    per_run = _seeds({0: [1, 3, 2], 1: [0, 0, 0], 2: [4, None, None], 3: [0, None, 2]})
    table = fs.pooled_scores(per_run, n_boot=200).set_index("index")
    assert table["n_seeds"].to_dict() == {0: 3, 1: 3, 2: 1, 3: 2}
    assert table["forgetting_events"].to_dict() == {0: 2.0, 1: 0.0, 2: 4.0, 3: 1.0}
    assert table["unforgettable"].to_dict() == {0: 0.0, 1: 1.0, 2: 0.0, 3: 0.5}
    assert table.loc[1, ["forgetting_events_lo", "forgetting_events_hi"]].tolist() == [0.0, 0.0]  # no spread
    lo, hi = table.loc[0, ["forgetting_events_lo", "forgetting_events_hi"]]
    assert 1 <= lo < 2 < hi <= 3
    assert np.isnan(table.loc[2, "forgetting_events_lo"])  # one seed: no interval
    assert table["first_learned_epoch"].to_dict() == {0: 1.0, 1: 1.0, 2: 0.0, 3: 1.0}


def test_the_rank_agreement_of_identical_and_of_independent_rankings():
    rng = np.random.default_rng(2)
    events = rng.poisson(2, size=2000)
    same = fs.rank_agreement(_seeds({i: [int(e), int(e)] for i, e in enumerate(events)}), n_boot=300)
    assert same["rho"] == pytest.approx(1.0) and same["n_pairs"] == 1
    assert same["rho_lo"] == pytest.approx(1.0) and same["rho_hi"] == pytest.approx(1.0)
    other = rng.poisson(2, size=2000)
    apart = fs.rank_agreement(_seeds({i: [int(a), int(b)] for i, (a, b) in enumerate(zip(events, other))}), n_boot=300)
    assert abs(apart["rho"]) < 0.06
    assert apart["rho_lo"] < 0 < apart["rho_hi"] and apart["rho_hi"] - apart["rho_lo"] < 0.5


def test_never_learned_examples_rank_as_the_most_forgotten():
    per_run = _seeds({0: [0, 0], 1: [1, 1], 2: [3, 3], 3: [0, 0]}, never={3: [True, False]})
    score = fs.ranking_score(per_run)
    assert score[(per_run["index"] == 3) & (per_run["seed"] == 0)].item() > per_run["forgetting_events"].max()


def test_unforgettable_share_against_the_seeds_pooled():
    # 4 examples in 2 seeds: 0 unforgettable in both, 1 in seed 0 only, 2 in neither, 3 presented by seed 0 only
    per_run = _seeds({0: [0, 0], 1: [0, 2], 2: [1, 1], 3: [0, None]})
    table = fs.unforgettable_by_seeds(per_run).set_index("seeds")
    assert table.loc[1, "share"] == pytest.approx((3 + 1) / (4 + 3))  # seed 0: 0, 1, 3 of 4; seed 1: 0 of 3
    assert table.loc[2, "share"] == pytest.approx(1 / 3) and table.loc[2, "examples"] == 3


def test_histogram_and_class_counts_per_seed():
    per_run = _seeds({0: [0, 0], 1: [2, 1], 2: [1, 1], 3: [0, 0]}, never={3: [True, True]})
    hist = fs.events_histogram(per_run).set_index("forgetting_events")
    assert hist["share"].to_dict() == {-1: 0.25, 0: 0.25, 1: 0.375, 2: 0.125}
    assert hist.loc[0, "n"] == 2
    counts = fs.class_counts(per_run).set_index(["label", "kind"])["count"]
    assert counts[(0, "unforgettable")] == 1 and counts[(0, "never_learned")] == 1  # indices 0 and 3: class 0
    assert counts[(1, "forgotten")] == 1 and counts[(2, "forgotten")] == 1


# ---------------------------------------------------------------------------------------------
# `forgetting scores` and `forgetting.scores` on stored studies


def test_scores_command_on_a_committed_probe_study(tmp_path):
    folder = tmp_path / "cpu-probe-5seeds"
    shutil.copytree(REPO_ROOT / "results" / "cpu-probe-5seeds", folder)
    r = run_cli("scores", str(folder), "--condition", "half-noaug", "--multiplier", "4", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Spearman rho" in r.stdout and "probe_examples.csv" in r.stdout
    written = sorted(p.name for p in (folder / "scores").iterdir())
    stem = "scores_half-noaug_x4_2560"
    assert written == sorted(f"{stem}{s}" for s in (".csv", ".json", *(
        f"_{f}.{e}" for f in ("events", "pooled", "classes") for e in ("png", "svg"))))
    table = pd.read_csv(folder / "scores" / f"{stem}.csv")
    probed = pd.read_csv(folder / "probe_examples.csv")
    chosen = probed[(probed["condition"] == "half-noaug") & (probed["multiplier"] == 4)]
    assert table["index"].tolist() == sorted(chosen["index"].unique())
    assert table["n_seeds"].sum() == len(chosen)  # every (seed, example) row pooled once
    one = chosen.groupby("index")["forgetting_events"].mean()
    np.testing.assert_allclose(table.set_index("index")["forgetting_events"], one.sort_index())
    summary = json.loads((folder / "scores" / f"{stem}.json").read_text())
    assert summary["agreement"]["n_seeds"] == 5 and len(summary["runs"]) == 5
    # the API gives the same table
    api = fg.scores(folder, condition="half-noaug", multiplier=4)
    np.testing.assert_allclose(api["forgetting_events_hi"], table["forgetting_events_hi"], equal_nan=True)


def test_scores_refuses_in_one_line_where_it_cannot_pool(tmp_path):
    for name in ("cpu-probe-5seeds", "cpu-lr-sweep-page"):
        shutil.copytree(REPO_ROOT / "results" / name, tmp_path / "store" / name)
    store = str(tmp_path / "store")
    with pytest.raises(UserError, match="holds 2 studies: name one of cpu-lr-sweep-page, cpu-probe-5seeds"):
        fg.scores(store)
    with pytest.raises(UserError, match="choose one with --multiplier: x1, x4$"):
        fg.scores(store, "cpu-probe-5seeds", condition="full-aug")
    with pytest.raises(UserError, match="no finished run of condition 'none'; its groups: full-aug x1, full-aug x4"):
        fg.scores(store, "cpu-probe-5seeds", condition="none")
    # one group named in full: the committed study grows piece by piece, so --multiplier alone may not be
    lacking = run_cli("scores", store, "cpu-lr-sweep-page", "--multiplier", "1", "--subset", "2560", tmp_path=tmp_path)
    assert_one_line_error(lacking, "examples.npz", "probe_examples.csv", "forgetting sweep-lr cpu-lr-sweep-page")


def _fake_store(tmp_path, data, data_path) -> tuple:
    """A store of one lr-sweep study: 3 finished runs (seeds) with examples.npz of random correctness."""
    folder = tmp_path / "store" / "tiny"
    rng = np.random.default_rng(3)
    rows, per_run = [], []
    for seed in range(3):
        cfg = config.bind_data(config.TrainConfig(subset=60, seed=seed, epochs=4, batch_size=20), data.identity)
        run = config.run_id(cfg)
        subset = datasets.balanced_subset(data.train_y, 60, seed)
        order = np.stack([rng.permutation(subset) for _ in range(4)])
        correct = rng.random(order.shape) < 0.7
        (folder / "runs" / run).mkdir(parents=True)
        (folder / "runs" / run / "config.json").write_text(json.dumps(cfg.to_dict()))
        np.savez(folder / "runs" / run / "examples.npz", order=order, correct=correct, loss=np.zeros(order.shape))
        rows.append(dict(run=run, condition="", multiplier=1, subset=60, seed=seed, test_loss=1.0, diverged=False,
                         status="finished"))
        stats = fs.count_forgetting(order, correct, data.train_size)
        per_run.append(stats.assign(seed=seed, label=data.train_y[stats["index"]]))
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    (folder / "study.json").write_text(json.dumps(dict(name="tiny", kind="lr-sweep", scale="test")))
    return folder, pd.concat(per_run, ignore_index=True)


def test_scores_from_each_run_s_examples_with_the_data_set_s_labels(tmp_path, any_size_data):
    np.savez(tmp_path / "data.npz", **image_arrays(200, 50))
    data = datasets.load_dataset("cifar10", tmp_path / "data.npz")
    folder, per_run = _fake_store(tmp_path, data, tmp_path / "data.npz")
    table = fg.scores(folder.parent, "tiny", data=str(tmp_path / "data.npz"), n_boot=100)
    expected = fs.pooled_scores(per_run, n_boot=100)
    pd.testing.assert_frame_equal(table, expected)
    assert (table["label"] == data.train_y[table["index"]]).all()  # index: the position in train_x/train_y
    other = datasets.make_dataset("cifar10", image_arrays(200, 50, seed=9), "other")
    with pytest.raises(UserError, match="belongs to data set"):
        fg.scores(folder.parent, "tiny", data=other)
