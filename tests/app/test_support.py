"""The glue module: look-ups that never compute, selection ids, scale parsing, default settings."""

import pytest

from app_support import AppRun, SurrogateSettings, ids_from_selection, parse_scales, ratio_text, stored_surrogate
from side_core.data import load_training_set
from side_core.errors import SideError
from side_core.models import load_model

from .helpers import TINY


def test_default_settings_are_the_cli_prepare_defaults():
    """The first screen is instant only if the app asks for the stages `prepare` stored."""
    from side_core.cli import build_parser, extraction_config

    args = build_parser().parse_args(["prepare", "--store", "unused"])
    assert SurrogateSettings().config() == extraction_config(args)


def test_stored_finds_stages_and_never_computes(tiny_model_dir, tiny_data_dir, tiny_store, tmp_path):
    model, data = load_model(tiny_model_dir, "cpu"), load_training_set(tiny_data_dir, 1, 8)
    empty = AppRun(tmp_path / "runs", model, data)
    assert stored_surrogate(empty, TINY, ("side",)) is None
    assert not (tmp_path / "runs").exists()  # nothing was begun

    run = AppRun(tmp_path / "runs", model, data, read_only_roots=(tiny_store,))
    surrogate = stored_surrogate(run, TINY, ("side", "cond"))
    assert surrogate is not None and set(surrogate.classifiers) == {"side", "cond"}
    assert surrogate.synthetic.path.parent == tiny_store
    assert not (tmp_path / "runs").exists()


def test_ids_from_selection():
    event = {
        "selection": {
            "points": [{"customdata": [7, 1, 0.5]}, {"customdata": [3, 0, 0.2]}, {"customdata": [7, 1, 0.5]}, {}],
            "point_indices": [0, 1, 0],
        }
    }
    assert ids_from_selection(event) == [7, 3]
    assert ids_from_selection({"selection": {"points": []}}) == []
    assert ids_from_selection(None) == []


def test_parse_scales():
    assert parse_scales("4, 0 ,1; 2.5 2") == (0.0, 1.0, 2.0, 2.5, 4.0)
    for bad in ("", "1, x", "-1"):
        with pytest.raises(SideError):
            parse_scales(bad)


def test_ratio_text():
    def row(ams_high: float, distinct: int) -> dict:
        return {"ams": {"high": ams_high}, "extracted": list(range(distinct))}

    report = {"methods": {"uncond": row(2.0, 0), "cond": row(4.0, 2), "side": row(6.0, 3)}}
    text = ratio_text(report)
    assert "UnCond: AMS high ×3, distinct -" in text
    assert "Cond: AMS high ×1.5, distinct ×1.5" in text
