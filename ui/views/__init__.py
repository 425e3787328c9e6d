"""Streamlit pages of the UI, run by ``st.navigation`` in ``ui/app.py`` (not imported)."""
