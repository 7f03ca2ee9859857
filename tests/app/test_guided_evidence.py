"""Page 4 teaches the mechanism: it opens on the class the attacker-side evidence ranks first (no
training image read), shows that class's pool size, cohesion and near-identical share, how many guided
samples landed in the class, and the class's pool samples next to the guided ones; the ranking by
copies, which reads the training set, is shown beside it and labelled as such."""

from dataclasses import replace

from app_support import state
from app_support.state import GUIDED_PAGE
from side_core.cluster import rank_by_pool, rank_classes
from side_core.data import load_training_set
from side_core.kinds.classifier import Landed
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import Score
from side_core.models import load_model
from side_core.pipeline import build_surrogate
from side_core.run import Run

from .helpers import TINY, captions_of_images, metrics, submit

# A pool whose near-identical pair falls outside the most cohesive class, so that the attacker's
# ranking and the ranking by copies (none among an untrained model's samples: cohesion decides) differ.
SEPARATES = replace(TINY, surrogate_seed=1)


def test_opens_on_the_attacker_ranked_class_with_its_evidence_and_where_samples_landed(
    open_app, app_env, tiny_store, tiny_model_dir, tiny_data_dir
):
    run = Run(
        app_env,
        load_model(tiny_model_dir, "cpu"),
        load_training_set(tiny_data_dir, 1, 8),
        read_only_roots=(tiny_store,),
    )
    surrogate = build_surrogate(run, SEPARATES, ("side",))  # into the app's run store
    evidence = rank_by_pool(surrogate.clusters.clustering(), surrogate.near_identical.partner())
    score = Score.make(run, surrogate.synthetic)
    similarity, index = score.neighbours()
    by_copies = rank_classes(surrogate.clusters.clustering(), similarity[:, 0], index[:, 0], score.bands)
    assert evidence[0].cls != by_copies[0].cls  # the fixture tells the two rankings apart

    at = open_app(GUIDED_PAGE, config=SEPARATES)
    assert not at.exception
    picker = at.selectbox(key=state.TARGET.name)
    assert [int(o.split(" ")[1]) for o in picker.options] == [e.cls for e in evidence]
    assert picker.value == evidence[0].cls
    assert at.session_state[state.TARGET.name] == evidence[0].cls
    best, shown = evidence[0], metrics(at)
    assert shown["Samples"] == str(best.size)
    assert shown["Cohesion"] == f"{best.cohesion:.3f}"
    assert shown["Near-identical"] == f"{best.flagged_share:.0%}" != "0%"

    weak = evidence[-1]
    at.selectbox(key=state.TARGET.name).select(weak.cls).run()
    assert metrics(at)["Samples"] == str(weak.size)
    assert metrics(at)["Near-identical"] == "0%"
    submit(at, "Generate", num_steps=5, n=4)
    assert not at.error
    request = at.session_state[state.GUIDED.name]
    assert request.cls == weak.cls
    generation = run.stored(  # the page's generation, as the page stored it
        lambda r: Generation.make(
            r, request.n, request.seed, request.sample, surrogate.target("side", weak.cls), request.capture_steps
        )
    )
    stored = run.stored(lambda r: Landed.make(r, generation))  # labelled by the guided job, within the queue
    assert stored is not None
    landed = int((stored.labels() == weak.cls).sum())
    assert metrics(at)[f"Landed in class {weak.cls}"] == f"{landed} / 4"
    assert f"class {weak.cls}: its pool samples, what guidance aims at" in captions_of_images(at)

    table = at.dataframe[0].value  # the two rankings side by side, the training set's labelled
    assert list(table["class"]) == [e.cls for e in evidence]
    assert list(table["rank by copies (uses the training set)"]) == [
        [e.cls for e in by_copies].index(e.cls) + 1 for e in evidence
    ]
