"""Page 5 shows what a whole SIDE run yields: its pool plus its guided samples against UnCond at the
same total and the same wall time (a curve and the engine's text), and the share of each guided
method's samples that landed in their target class."""

import json

from app_support import jobs
from app_support.state import REPORT_PAGE, CompareRequest
from side_core.data import load_training_set
from side_core.models import load_model
from side_core.run import Run
from side_core.whole_run import whole_run_text

from .helpers import TINY, submit


def test_the_whole_run_and_where_guided_samples_landed(open_app, app_env, tiny_store, tiny_model_dir, tiny_data_dir):
    at = open_app(REPORT_PAGE)
    assert not at.exception
    assert not any(s.value.startswith("The whole SIDE run") for s in at.subheader)  # no report yet

    submit(at, "Compare", n_g=4, compare_steps=5)
    assert not at.error
    run = Run(
        app_env,
        load_model(tiny_model_dir, "cpu"),
        load_training_set(tiny_data_dir, 1, 8),
        read_only_roots=(tiny_store,),
    )
    report = jobs.compare(CompareRequest(n_samples=4, num_steps=5).config(TINY)).stored(run)  # the page's
    whole = report.whole_run
    assert whole is not None and whole.n_total == TINY.n_syn + 4

    assert "The whole SIDE run against UnCond" in [s.value for s in at.subheader]
    captions = [c.value for c in at.caption]
    assert whole_run_text(whole) in captions
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    curves = {trace["name"]: trace["y"] for trace in figure["data"]}
    assert curves["SIDE run: pool, then guided samples"] == list(whole.side_curve)
    assert curves["UnCond: pool, then plain samples"] == list(whole.uncond_curve)

    beyond = whole.beyond_pool()
    shown = {m.label: m.value for m in at.metric}
    assert shown["Beyond pool: SIDE / UnCond"] == f"{beyond['side']} / {beyond['uncond']}"
    assert shown["Pool copies"].startswith(f"{report.extra['reach']['scorer']['found']} / ~")

    landed = next(c for c in captions if c.startswith("Guided samples that landed"))
    for method, name in (("side", "SIDE"), ("cond", "Cond")):
        assert f"{name} {report.methods[method].landed:.0%}" in landed
