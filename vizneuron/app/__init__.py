"""The Streamlit app as a package: `shell` (the table of views and one rerun), `sidebar` (model,
index, unit), `common` (the `Context` every panel takes, the per-model lock, running a job,
kept choices, uploads), `concepts` (concept inputs) and `views/` (one module per panel, each
`show(ctx)`). Only this package imports streamlit; it reaches the library through public names.
Start it with `streamlit run streamlit_app.py`."""
