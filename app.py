"""SIDE Explorer: `streamlit run app.py`. The router and frame: page list, shared sidebar, and the
environment's problems; each page lives in app_pages/.

Not pages/: Streamlit treats a folder of that name as the old automatic page list until app.py first
calls st.navigation, so the first visitor of a fresh server who opens a link to a page would run
that page without this frame (no session defaults: a KeyError) or see "Page not found"."""

import streamlit as st

from app_support import jobs, resources, state, views
from side_core.errors import SideError

st.set_page_config(page_title="SIDE Explorer", page_icon=":material/face_retouching_off:", layout="wide")
env = state.read_env()  # cheap: read on every run, so a test can change it
resources.configure_torch(env.threads)
state.init_state(env)

PAGES = [  # file, title, icon: in the order a user works through SIDE
    (state.MODEL_PAGE, "Model and data", ":material/database:"),
    (state.CLUSTER_PAGE, "Generate and cluster", ":material/scatter_plot:"),
    (state.CLASSIFIER_PAGE, "Surrogate classifier", ":material/model_training:"),
    (state.GUIDED_PAGE, "Guided extraction", ":material/explore:"),
    (state.REPORT_PAGE, "Report", ":material/summarize:"),
]
# Each URL is the file's name without its number: "4_guided_extraction.py" -> /guided_extraction.
page = st.navigation(
    [
        st.Page(f"app_pages/{file}", title=title, icon=icon, url_path=file.split("_", 1)[1].removesuffix(".py"))
        for file, title, icon in PAGES
    ]
)


def shown(path) -> str:
    """A path as a user reads it: relative to the project when inside it."""
    path = path.resolve()
    return str(path.relative_to(state.PROJECT)) if path.is_relative_to(state.PROJECT) else str(path)


with st.sidebar:  # what is open, the current configuration, and which of its stages are stored
    config = state.config()
    st.caption(f"Model: `{st.session_state[state.MODEL]}` · data: `{st.session_state[state.DATA]}`")
    st.caption(
        f"N_syn {config.n_syn} · feature {config.cluster.feature} · K {config.cluster.k} · "
        f"{config.cluster.keep_rule} "
        f"· classifier {config.classifier_train.steps} steps"
    )
    try:
        run = resources.open_run()
    except SideError:
        st.caption("Model or data not loaded: see the Model and data page.")
    else:
        found = jobs.surrogate(config).stored(run)
        status = {
            "samples and clusters": found is not None,
            "UMAP map": found is not None and jobs.umap_map(found, config).stored(run) is not None,
            "SIDE classifier": jobs.surrogate(config, ("side",)).stored(run) is not None,
            "Cond classifier": jobs.surrogate(config, ("cond",)).stored(run) is not None,
        }
        st.caption(
            "  \n".join(
                f"{':material/check_circle:' if ok else ':material/radio_button_unchecked:'} {name}"
                for name, ok in status.items()
            )
        )
    st.caption(f"Run store: `{shown(env.runs)}` (+ read-only `{shown(env.store)}`)")

for problem in env.problems:  # bad environment values: named, with the fix; the app runs on defaults
    st.error(problem, icon=":material/error:")
with views.errors_shown():  # bad input the page did not catch itself is still a message, never a traceback
    page.run()
