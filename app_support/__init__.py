"""Glue shared by the app's pages (app.py lists only app_pages/ to st.navigation), one concern a
module:

- ``state``: the one owner of session state: each piece (specs, the current configuration, the
  requests shown, the target class) under one registered ``Key``; also the page files and the
  environment the server started with;
- ``resources``: cached model and training set, torch threads, the open run, and cached reads and
  look-ups keyed by stage folders (a rerun reads no shard);
- ``forms``: the pages' input forms, which refuse out-of-range values with a message;
- ``jobs``: heavy work, started from buttons and queued one at a time per server;
- ``views``: what the pages draw besides figures: progress bars and the live grid fed by the
  engine, image grids, pickers, captions, the sidebar;
- ``figures``: the Plotly figures (cluster map, histograms, accuracy, copies, sweep, whole run);
- ``access`` and ``limits``: the locked mode of a shared server (what a visitor may open) and the
  caps its locked visitors meet.

Every stage and every number comes from ``side_core``; nothing here re-implements the method.
"""
