"""Dashboard: Streamlit app that launches and watches runs through the server API."""
