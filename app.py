"""SIDE Explorer: `streamlit run app.py`. The router and frame; each page lives in pages/."""

import streamlit as st

import app_support as app

st.set_page_config(page_title="SIDE Explorer", page_icon=":material/face_retouching_off:", layout="wide")
app.init_state()

page = st.navigation(
    [
        st.Page(f"pages/{app.MODEL_PAGE}", title="Model and data", icon=":material/database:", url_path="model"),
        st.Page(
            f"pages/{app.CLUSTER_PAGE}", title="Generate and cluster", icon=":material/scatter_plot:", url_path="clusters"
        ),
        st.Page(
            f"pages/{app.CLASSIFIER_PAGE}", title="Surrogate classifier", icon=":material/model_training:", url_path="classifier"
        ),
        st.Page(f"pages/{app.GUIDED_PAGE}", title="Guided extraction", icon=":material/explore:", url_path="extract"),
        st.Page(f"pages/{app.REPORT_PAGE}", title="Report", icon=":material/summarize:", url_path="report"),
    ]
)
app.render_sidebar()
page.run()
