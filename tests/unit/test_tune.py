from pathlib import Path

import optuna
import pytest

from lstm_pipeline import tune
from lstm_pipeline.config import DataConfig, build_config
from lstm_pipeline.data import load_prices
from tests.conftest import make_prices


@pytest.fixture
def prices(tmp_path):
    cfg = DataConfig(source="csv", data_dir=str(tmp_path))
    make_prices(300).to_csv(tmp_path / "AAA.csv", index=False)
    return {"AAA": load_prices("AAA", cfg)}


@pytest.fixture
def base():
    return build_config(
        features__horizon=2, train__max_epochs=5, train__patience=5, train__device="cpu"
    )


def test_suggested_configs_stay_inside_the_search_space(tmp_path, base):
    study = tune.create_study(f"sqlite:///{tmp_path}/s.db", "s", seed=0)
    for _ in range(5):
        cfg = tune.ask(study, f"sqlite:///{tmp_path}/s.db", base).config
        flat = cfg.flat()
        for dotted, (kind, spec) in tune.SEARCH_SPACE.items():
            if kind == "categorical":
                assert flat[dotted] in spec
            else:
                assert spec[0] <= flat[dotted] <= spec[1]
        assert cfg.features.horizon == 2  # untouched keys keep the base value


def test_a_trial_worse_than_the_median_is_pruned_after_the_warm_up(tmp_path, base, prices):
    storage = f"sqlite:///{tmp_path}/s.db"
    study = tune.create_study(storage, "s", seed=0)
    for _ in range(2):  # two finished trials whose val loss was 0 at every epoch
        trial = study.ask()
        for epoch in range(1, 6):
            trial.report(0.0, epoch)
        study.tell(trial, 0.5)
    outcome = tune.run_trial(tune.ask(study, storage, base), prices)
    assert outcome.state == "PRUNED" and outcome.value is None
    assert len(outcome.history) == 2  # epoch 1 is warm-up (steps < 2), epoch 2 is judged


def test_best_config_round_trips_through_yaml(tmp_path, base):
    from lstm_pipeline.config import build_config as load

    tuned = base.model_copy(update={"model": base.model.model_copy(update={"hidden_size": 16})})
    path = tune.write_config(tuned, tmp_path / "best.yaml")
    again = load(path)
    assert again.model.hidden_size == 16 and again.features == tuned.features
    assert again.train == tuned.train


def test_optuna_trial_state_names_match_ours():
    assert {"COMPLETE", "PRUNED"} <= {s.name for s in optuna.trial.TrialState}


def test_the_temporary_study_storage_is_removed_and_a_given_url_is_kept(tmp_path):
    with tune.study_storage(None) as url:
        path = Path(url.removeprefix("sqlite:///"))
        tune.create_study(url, "s", seed=0)
        assert path.is_file()
    assert not path.parent.exists()
    given = f"sqlite:///{tmp_path}/keep.db"
    with tune.study_storage(given) as url:
        assert url == given
        tune.create_study(url, "s", seed=0)
    assert (tmp_path / "keep.db").is_file()
