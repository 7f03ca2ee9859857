"""SIDE Explorer: `streamlit run app.py`. The router and frame; each page lives in pages/."""

import streamlit as st

import app_support as app

st.set_page_config(page_title="SIDE Explorer", page_icon=":material/face_retouching_off:", layout="wide")
app.init_state()

PAGES = [  # file, title, icon, url path: in the order a user works through SIDE
    (app.MODEL_PAGE, "Model and data", ":material/database:", "model"),
    (app.CLUSTER_PAGE, "Generate and cluster", ":material/scatter_plot:", "clusters"),
    (app.CLASSIFIER_PAGE, "Surrogate classifier", ":material/model_training:", "classifier"),
    (app.GUIDED_PAGE, "Guided extraction", ":material/explore:", "extract"),
    (app.REPORT_PAGE, "Report", ":material/summarize:", "report"),
]
page = st.navigation(
    [st.Page(f"pages/{file}", title=title, icon=icon, url_path=url) for file, title, icon, url in PAGES]
)
app.render_sidebar()
page.run()
