"""Shared ground for every tab: image decoding, image/text encoders, vector search, artifacts, datasets.

Nothing here knows about a tab or imports streamlit; tabs import from here, never the other way.
"""
