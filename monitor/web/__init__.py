"""The archive: search pages and a JSON API over the store (FastAPI, Jinja2)."""
