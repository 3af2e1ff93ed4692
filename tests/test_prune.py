"""The prune study kind: its removal orders (least forgotten first, ties seeded, random of the same size,
nested), its run ids (each kept set its own run; the default leaves ids alone), its pre-registered rule on
tables with known answers, and the kind end to end on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forgetting import config, grid, pruning, report, studies
from forgetting.analysis import prune as reading
from forgetting.errors import UserError
from forgetting.execution.settings import ExecutorSettings
from forgetting.experiments.run import run_study
from forgetting.store import StudyFolder


def scores_table(events, never=None, labels=None) -> pd.DataFrame:
    """A pool's scores: example i has index 10 * i, ``events[i]`` mean forgetting events."""
    n = len(events)
    return pd.DataFrame(
        dict(
            index=10 * np.arange(n),
            label=np.zeros(n, int) if labels is None else labels,
            n_seeds=np.full(n, 2),
            forgetting_events=np.asarray(events, float),
            never_learned=np.zeros(n) if never is None else np.asarray(never, float),
        )
    )


def test_forgetting_removes_the_least_forgotten_first_and_the_never_learned_last():
    pool = scores_table([3, 0, 1, 0.5, 2, 0], never=[0, 0, 0, 0, 0.5, 0])
    order = pruning.removal_order(pool, "forgetting", seed=0)
    events = pool.set_index("index").loc[order, "forgetting_events"].tolist()
    assert sorted(order[:2]) == [10, 50]  # the two unforgettable examples, in some order
    assert events[2:] == [0.5, 1, 3, 2]  # then by mean events; never learned in a seed: last, whatever its events


def test_ties_are_broken_by_a_draw_from_the_seed():
    pool = scores_table([0] * 30 + [1] * 30)
    orders = {seed: pruning.removal_order(pool, "forgetting", seed) for seed in (0, 1)}
    assert np.array_equal(orders[0], pruning.removal_order(pool, "forgetting", 0))  # the same seed, the same order
    assert not np.array_equal(orders[0], orders[1])  # another seed, another order of the ties
    for order in orders.values():
        assert set(order[:30]) == set(10 * np.arange(30))  # the tie draw never crosses a score


def test_random_removal_removes_as_many_and_every_kept_set_is_nested_across_fractions():
    pool = scores_table(np.arange(200) % 7)
    fractions = [0, 0.1, 0.25, 0.4]
    for seed in (0, 3):
        orders = {s: pruning.removal_order(pool, s, seed) for s in ("forgetting", "random")}
        sets = {s: [set(pruning.kept(order, f)) for f in fractions] for s, order in orders.items()}
        for s in sets:
            assert [len(k) for k in sets[s]] == [200, 180, 150, 120]  # round(f x 200) removed by either selection
            assert all(later <= earlier for earlier, later in zip(sets[s], sets[s][1:]))  # nested
        assert sets["forgetting"][2] != sets["random"][2]
    random_order = pruning.removal_order(pool, "random", 0)
    assert sorted(random_order) == sorted(pool["index"])  # a permutation of the pool
    assert not np.array_equal(random_order, pruning.removal_order(pool, "random", 1))


def test_a_run_id_names_its_kept_set_and_the_default_names_none():
    base = dict(width=0.125, epochs=1, batch_size=2)
    plain = config.TrainConfig(subset=3, **base)
    a, b = (config.TrainConfig(subset=3, indices=i, **base) for i in ((1, 2, 3), (1, 2, 4)))
    assert "indices" not in plain.identity()  # every run recorded before the field keeps its id
    assert len({config.run_id(c) for c in (plain, a, b)}) == 3
    assert config.TrainConfig.from_dict(json.loads(json.dumps(a.to_dict()))).identity() == a.identity()  # config.json
    for bad, words in (((3, 2, 1), "sorted"), ((1, 2), "number of indices")):
        with pytest.raises(UserError, match=words):
            config.TrainConfig(subset=3, indices=bad, **base)


def runs_table(diffs: dict, n_seeds: int = 6, noise: float = 0.004) -> pd.DataFrame:
    """Test accuracy per selection, fraction and seed: random 0.6 - f / 4 plus seed noise; forgetting that plus
    ``diffs[f]``; the pool (fraction 0) one run per seed, in both lines."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(n_seeds):
        seed_effect = rng.normal(0, 0.03)  # shared by a seed's runs: the pairing removes it
        for f in [0, *diffs]:
            base = 0.6 - f / 4 + seed_effect
            for s in ("forgetting", "random"):
                acc = base if f == 0 else base + (diffs[f] if s == "forgetting" else 0) + rng.normal(0, noise)
                rows.append(dict(selection=s, fraction=f, seed=seed, test_acc=acc, test_loss=2 - acc))
    runs = pd.DataFrame(rows)
    return runs.drop_duplicates(["selection", "fraction", "seed"])


@pytest.mark.parametrize(
    "diffs, verdict",
    [
        ({0.2: 0.03, 0.4: 0.0}, "better"),
        ({0.2: -0.03, 0.4: -0.04}, "worse"),
        ({0.2: 0.03, 0.4: -0.03}, "mixed"),
        ({0.2: 0.0, 0.4: 0.0}, "not resolved"),
    ],
)
def test_the_rule_reads_the_paired_difference_of_each_fraction(diffs, verdict):
    v = reading.prune_verdict(runs_table(diffs))
    assert v["verdict"] == verdict and v["rule"] == reading.RULE
    by_fraction = {r["fraction"]: r for r in v["fractions"]}
    for f, d in diffs.items():
        r = by_fraction[f]
        assert r["n"] == 6 and r["diff_lo"] <= r["diff"] <= r["diff_hi"]
        assert r["reading"] == ("better" if d > 0 else "worse" if d < 0 else "not resolved")


def test_the_rule_waits_for_missing_runs_and_one_seed_resolves_nothing():
    assert reading.prune_verdict(runs_table({0.2: 0.05}), missing=3)["verdict"] is None
    one = reading.prune_verdict(runs_table({0.2: 0.05}, n_seeds=1))
    assert one["verdict"] == "not resolved" and one["fractions"][0]["diff_lo"] is None


def test_the_cost_reading_gives_the_share_removable_within_a_point():
    runs = runs_table({0.1: 0.0, 0.2: 0.0}, noise=0.001)
    runs.loc[runs["fraction"] > 0, "test_acc"] += runs["fraction"] / 4  # random no worse than the pool ...
    runs.loc[(runs["fraction"] == 0.2) & (runs["selection"] == "forgetting"), "test_acc"] -= 0.05  # ... bar one
    cost = reading.prune_verdict(runs)["cost"]
    assert cost["random"]["removable"] == 0.2 and cost["forgetting"]["removable"] == 0.1


def study_doc(scores_csv, **grid_keys) -> dict:
    return dict(
        study=dict(name="tiny-prune", kind="prune", scale="tiny"),
        train=dict(width=0.125, batch_size=50, epochs=1, warmup=0, augment=False),
        grid=dict(multipliers=[1], base_lr=0.2, seeds=[0, 1], **{"fractions": [0, 0.25, 0.5], **grid_keys}),
        prune=dict(scores=str(scores_csv)),
    )


@pytest.fixture
def scored(tmp_path, synthetic_cifar):
    """A scores table of 200 of the synthetic images (20 per class), as `forgetting scores` writes one."""
    rng = np.random.default_rng(1)
    labels = synthetic_cifar.train_y
    index = np.sort(np.concatenate([np.flatnonzero(labels == c)[:20] for c in range(10)]))
    table = pd.DataFrame(
        dict(
            index=index,
            label=labels[index],
            n_seeds=rng.integers(1, 4, len(index)),
            forgetting_events=rng.integers(0, 4, len(index)).astype(float),
            never_learned=(rng.random(len(index)) < 0.1).astype(float),
            unforgettable=0.0,  # the table's other columns are not read
        )
    )
    path = tmp_path / "scores_x1.csv"
    table.to_csv(path, index=False)
    return path, table


def test_the_grid_trains_each_kept_set_once_and_shares_the_whole_pool(scored):
    study = studies.parse_study(study_doc(scored[0]), "tiny.toml")
    specs = grid.expand(study, 0.2)
    names = [s.meta["condition"] for s in specs if s.config.seed == 0]
    assert sorted(names) == ["forgetting-0.25", "forgetting-0.5", "pool", "random-0.25", "random-0.5"]
    assert len({s.id for s in specs}) == len(specs) == 10
    pool = {s.config.seed: set(s.config.indices) for s in specs if s.meta["condition"] == "pool"}
    assert pool[0] == pool[1] == set(scored[1]["index"])
    removed = {"pool": 0, "forgetting-0.25": 50, "random-0.25": 50, "forgetting-0.5": 100, "random-0.5": 100}
    for s in specs:
        assert s.config.subset == len(s.config.indices) == 200 - removed[s.meta["condition"]]
        assert set(s.config.indices) <= pool[0]


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d["grid"].pop("fractions"), "grid.fractions"),
        (lambda d: d["prune"].update(store="results"), "one of 'prune.scores' and 'prune.store'"),
        (lambda d: d["grid"].update(base_lr="find"), "a number for 'grid.base_lr'"),
        (lambda d: d["grid"].update(fractions=[0, 0.001]), "another number"),
        (lambda d: d["grid"].update(fractions=[0, 1]), "below 1"),
        (lambda d: d["grid"].update(selections=["hardest"]), "grid.selections"),
        (lambda d: d["prune"].update(min_seeds=9), "min_seeds"),
    ],
)
def test_a_bad_prune_study_is_one_line(scored, edit, words):
    doc = study_doc(scored[0])
    edit(doc)
    with pytest.raises(UserError, match=words.replace(".", r"\.")):
        studies.parse_study(doc, "tiny.toml")


def test_a_table_that_is_not_scores_is_refused_in_one_line(tmp_path):
    path = tmp_path / "x.csv"
    pd.DataFrame(dict(index=[1, 2], label=[0, 1])).to_csv(path, index=False)
    with pytest.raises(UserError, match="not a scores table .* lacks n_seeds"):
        studies.parse_study(study_doc(path), "tiny.toml")


def test_the_prune_kind_trains_its_kept_sets_and_reports_by_its_rule(tmp_path, scored, synthetic_cifar):
    study = studies.parse_study(study_doc(scored[0], fractions=[0, 0.5]), "tiny.toml")
    outcome = run_study(study, tmp_path, synthetic_cifar, ExecutorSettings(device="cpu"))
    assert (outcome.table["status"] == "finished").all() and len(outcome.table) == 6
    folder = StudyFolder(outcome.store.dir)
    for spec in outcome.specs:  # the trainer presented exactly the kept images
        with np.load(folder.run(spec.id).examples) as ex:
            assert set(np.unique(ex["order"])) == set(spec.config.indices)
    rep = report.study_report(outcome.store.dir)
    v = rep.summary["verdicts"]["prune"]
    assert v["verdict"] in ("better", "worse", "mixed", "not resolved") and len(v["fractions"]) == 1
    assert {(r["selection"], r["fraction"]) for r in rep.summary["prune"]} == {
        (s, f) for s in ("forgetting", "random") for f in (0, 0.5)
    }
    assert any(p.name == "prune.png" for p in rep.figures)
    assert "prune: removal by forgetting score against random removal" in rep.text()
    record = json.loads(folder.study_json.read_text())
    assert record["prune"]["scores"] == str(scored[0]) and record["grid"]["fractions"] == [0, 0.5]


def test_a_pool_of_another_data_set_is_refused_before_training(tmp_path, scored, synthetic_cifar):
    path, table = scored
    table.assign(label=(table["label"] + 1) % 10).to_csv(path, index=False)
    study = studies.parse_study(study_doc(path), "tiny.toml")
    with pytest.raises(UserError, match="not the data set's"):
        run_study(study, tmp_path, synthetic_cifar, ExecutorSettings(device="cpu"))
    assert not (tmp_path / "tiny-prune").exists()


def test_the_cpu_study_prunes_a_pool_of_the_committed_scores():
    study = studies.load_study("cpu-prune")
    pool = study.experiment.pool(study)
    assert len(pool) == 4181 and (pool.scores["n_seeds"] >= 2).all()
    order = pool.order("forgetting", 0)
    first = pool.scores.set_index("index").loc[order[:50]]
    assert (first["forgetting_events"] == 0).all() and (first["never_learned"] == 0).all()


def test_the_reference_quotes_the_rule_word_for_word():
    from helpers import REPO_ROOT

    text = (REPO_ROOT / "docs" / "reference.md").read_text()
    quoted = " ".join(line[2:] for line in text.splitlines() if line.startswith("> "))
    assert reading.RULE in quoted


def test_forgetting_run_trains_a_prune_study_and_prints_its_reading(tmp_path, scored, synthetic_cifar, any_size_data):
    """`forgetting run` runs a study of any kind by its kind: here a prune study, with progress, the
    pre-registered reading printed and summary.json written; again, it trains nothing new."""
    from typer.testing import CliRunner

    from forgetting.cli import app

    data = tmp_path / "synthetic.npz"
    np.savez(data, **{k: getattr(synthetic_cifar, k) for k in ("train_x", "train_y", "test_x", "test_y")})
    (tmp_path / "tiny.toml").write_text(
        '[study]\nname = "tiny-prune"\nkind = "prune"\nscale = "tiny"\n'
        "[train]\nwidth = 0.125\nbatch_size = 50\nepochs = 1\nwarmup = 0\naugment = false\n"
        "[grid]\nmultipliers = [1]\nbase_lr = 0.2\nseeds = [0]\nfractions = [0, 0.5]\n"
        f'[prune]\nscores = "{scored[0]}"\n'
    )
    args = ["run", str(tmp_path / "tiny.toml"), "--store", str(tmp_path / "store"), "--data", str(data)]
    first = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert "prune: removal by forgetting score against random removal" in first.output
    summary = json.loads((tmp_path / "store" / "tiny-prune" / "summary.json").read_text())
    assert len(summary["verdicts"]["prune"]["fractions"]) == 1 and len(summary["prune"]) == 4
    results = sorted((tmp_path / "store" / "tiny-prune" / "runs").glob("*/result.json"))
    assert len(results) == 3  # the whole pool, and half of it removed by each selection
    written = [p.stat().st_mtime_ns for p in results]
    again = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert [p.stat().st_mtime_ns for p in results] == written  # resumed: nothing trained again
