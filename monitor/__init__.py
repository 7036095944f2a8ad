"""Media monitoring of bans of Chinese surveillance technology."""

__version__ = "0.1.0"
