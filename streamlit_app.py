"""vizneuron in the browser: `streamlit run streamlit_app.py [-- --root FOLDER ... --home FOLDER]`
(or VIZNEURON_APP_ROOTS / VIZNEURON_APP_HOME): roots are read, home is written. The app itself is
the package `vizneuron.app`: a shell, a sidebar and one module per panel, each a view over library
calls the CLI makes too."""

from vizneuron.app.shell import main

main()
