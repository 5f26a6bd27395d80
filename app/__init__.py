"""CoAtNet Lens, the web app: ``streamlit run app/main.py`` (or ``make app``).

``main.py`` draws the sidebar (model, image) and routes to one module per page under ``views/``; every
cached computation lives in :mod:`app.cache`; widgets that only return values in :mod:`app.widgets`;
figure and result downloads in :mod:`app.render`. Pages render; the analysis layer computes.
"""
