"""SIDE Explorer: `streamlit run app.py`. The router and frame: page list, shared sidebar, and the
environment's problems; each page lives in app_pages/.

Not pages/: Streamlit treats a folder of that name as the old automatic page list until app.py first
calls st.navigation, so the first visitor of a fresh server who opens a link to a page would run
that page without this frame (no session defaults: a KeyError) or see "Page not found"."""

import streamlit as st

from app_support import access, jobs, resources, state, views
from side_core.errors import SideError

# A local image, not a Material or emoji icon: Streamlit fetches those favicons from the web, and the
# app must paint offline. Four of the bundled training faces.
st.set_page_config(page_title="SIDE Explorer", page_icon=str(state.PROJECT / "app_support" / "icon.png"), layout="wide")
# The whole run inside: SIDE_SCRIPT_TIMES records what the server spends per script run (benchmarks.load).
with state.timed_script_run():
    env = state.read_env()  # cheap: read on every run, so a test can change it
    resources.configure_torch(env.threads)
    state.init_state(env)

    # Each URL is the file's name without its number: "4_guided_extraction.py" -> /guided_extraction.
    page = st.navigation(
        [
            st.Page(f"app_pages/{file}", title=title, icon=icon, url_path=file.split("_", 1)[1].removesuffix(".py"))
            for file, title, icon in state.PAGES
        ]
    )

    # The shared sidebar: what is open, the current configuration, which of its stages are stored, and
    # whether this visitor is locked (what a visitor may open: app_support.access).
    config = state.CONFIG.get()
    try:
        stored = jobs.stored_stages(resources.open_run(), config)
    except SideError:  # the Model and data page shows the message, with the form to fix it
        stored = None
    visitor = access.current()
    views.sidebar(env, config, stored, visitor)

    # bad environment values: named, with the fix; the app runs on defaults
    for problem in visitor.problems(env.problems):  # a locked visitor gets one notice, no server details
        st.error(problem, icon=":material/error:")
    with views.errors_shown():  # bad input the page did not catch itself is still a message, never a traceback
        page.run()
