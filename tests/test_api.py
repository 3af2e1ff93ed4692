"""The Python API's entry points: one `run_study`, and the two kind-specific names that refuse the other kind."""

import pytest

import forgetting as fg
from forgetting.errors import UserError


def test_the_package_exposes_run_study_and_the_two_kind_specific_names():
    assert {"run_study", "run_sweep", "probe_study"} <= set(dir(fg))
    assert fg.run_study is fg.api.run_study


@pytest.mark.parametrize(
    ("call", "name", "kind"),
    [("run_sweep", "cpu-probe", "probe"), ("probe_study", "cpu-lr-sweep", "lr-sweep")],
)
def test_a_study_of_the_other_kind_is_refused_before_anything_loads(call, name, kind, tmp_path):
    study = fg.load_study(name)
    with pytest.raises(UserError, match=f"is a '{kind}' study"):
        getattr(fg, call)(study, tmp_path / "store")  # no data given: refused before CIFAR-10 would load
    assert not (tmp_path / "store").exists()
