"""The store: tables, engine and every query."""
