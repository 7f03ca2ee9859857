"""Glue shared by the app's pages (app.py lists only app_pages/ to st.navigation), one concern a
module:

- ``state``: what lives in the session (specs, the current configuration, requests, ids), the page
  files, and the environment the server started with;
- ``resources``: cached model and training set, torch threads, the open run, cached look-ups;
- ``forms``: the pages' input forms, which refuse out-of-range values with a message;
- ``jobs``: heavy work, started from buttons and queued one at a time per server, with progress;
- ``views``: figures, image grids, captions, the sidebar.

Every stage and every number comes from ``side_core``; nothing here re-implements the method.
"""
