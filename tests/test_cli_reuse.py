"""What the command line says about reuse: each stage is logged as reused (and from which store) or
made, --fresh makes every stage under the run store, and report.md says where and when each of its
timings was measured."""

from __future__ import annotations

import json
import logging
import re

import pytest
from conftest import TINY_CLI

from side_core.cli import build_parser, main
from side_core.report_files import timings_text

STAGE_LINE = re.compile(r"^(reused|made) (\w+)-[0-9a-f]{12}")


def compare(model, data, out, caplog, *extra: str) -> list[str]:
    """Run `compare` and return what its log said about stages."""
    caplog.clear()
    args = ["compare", "--model", str(model), "--data", str(data), "--n-samples", "24", *TINY_CLI, "--out", str(out)]
    with caplog.at_level(logging.INFO):
        assert main([*args, *extra]) == 0
    return [record.getMessage() for record in caplog.records]


@pytest.mark.slow
def test_the_log_and_the_report_say_what_was_reused_and_where_each_timing_comes_from(
    bright_dark_model_dir, bright_dark_data_dir, tmp_path, monkeypatch, caplog
):
    bundled = tmp_path / "first"
    said = compare(bright_dark_model_dir, bright_dark_data_dir, bundled, caplog)
    made = [line for line in said if line.startswith("made ")]
    assert len(made) >= 10 and not [line for line in said if line.startswith("reused ")]
    assert all(f"in the run store {bundled / 'store'}" in line for line in made)
    assert not [line for line in said if "generating" in line]

    # the first run's store as the bundled store: everything is reused from it, nothing is made
    monkeypatch.setattr("side_core.models.BUNDLED_STORE", bundled / "store")
    again = tmp_path / "again"
    said = compare(bright_dark_model_dir, bright_dark_data_dir, again, caplog)
    reused = [line for line in said if line.startswith("reused ")]
    assert not [line for line in said if line.startswith("made ")]
    assert {STAGE_LINE.match(line).group(2) for line in reused} == {STAGE_LINE.match(line).group(2) for line in made}
    assert all(f"from the read-only store {bundled / 'store'}" in line for line in reused)
    assert not (again / "store").exists()  # --help: OUT/store is made when a stage is made
    report = (again / "report.md").read_text()
    assert "Where and when the timings were measured:" in report
    assert f"reused from the read-only store `{bundled / 'store'}`" in report
    assert "the side-by-side timing of a plain sample, a guided sample and a classifier step" in report
    assert re.search(r"measured on `[^`]+` \(.+, \d+ cores, 1 torch thread, device cpu, torch ", report)
    timings = json.loads((again / "report.json").read_text())["timings"]
    assert all(source["read_only"] and source["made"]["host"] for source in timings.values())

    # --fresh: the bundled store is ignored, every stage is made under the new run store
    fresh = tmp_path / "fresh"
    said = compare(bright_dark_model_dir, bright_dark_data_dir, fresh, caplog, "--fresh")
    assert not [line for line in said if line.startswith("reused ")]
    assert {STAGE_LINE.match(line).group(2) for line in said if line.startswith("made ")} == {
        STAGE_LINE.match(line).group(2) for line in made
    }
    report = (fresh / "report.md").read_text()
    assert f"stored in the run store `{fresh / 'store'}`" in report and "read-only" not in report
    fresh_rows, first_rows = (json.loads((o / "report.json").read_text())["methods"] for o in (fresh, bundled))
    for rows in (fresh_rows, first_rows):
        for row in rows.values():
            row.pop("seconds")  # wall times differ from run to run
    assert fresh_rows == first_rows  # the same stages, made again: the same numbers

    # again with --fresh on the same OUT: its own run store's stages are reused, and said to be
    said = compare(bright_dark_model_dir, bright_dark_data_dir, fresh, caplog, "--fresh")
    assert said and all(f"from the run store {fresh / 'store'}" in line for line in said if "reused" in line)
    assert not [line for line in said if line.startswith("made ")]


def test_fresh_refuses_the_bundled_store_as_its_run_store(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("side_core.models.BUNDLED_STORE", tmp_path / "bundled")
    assert main(["prepare", "--model", "default", "--store", str(tmp_path / "bundled"), "--fresh"]) == 2
    err = capsys.readouterr().err
    assert "--fresh ignores the bundled store, but --store" in err and "leave out --fresh" in err


def test_help_documents_fresh_and_the_run_store():
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name in ("compare", "extract", "prepare"):
        text = " ".join(subcommands[name].format_help().split())
        assert "--fresh" in text and "ignore the bundled store" in text, name
        assert "unless --fresh, from the bundled store assets/store" in text, name
    assert "default OUT/store, made when a stage is made" in " ".join(subcommands["compare"].format_help().split())


def test_stages_without_a_record_are_said_to_be_reused_without_one():
    timings = {
        "pool samples": {"stage": "generate-x", "store": "assets/store", "read_only": True, "made": None},
        "features": {"stage": "features-y", "store": "assets/store", "read_only": True, "made": None},
    }
    assert timings_text(timings) == [
        "- pool samples, features: reused from the read-only store `assets/store`, which does not record where "
        "or when they were measured."
    ]
