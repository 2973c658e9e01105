"""Music picks for a listener: Keras matrix factorisation, popularity and genre baselines, peers.

Rooms: ``data`` (the ``Catalog`` saved beside every model), ``model`` (the catalog-based
recommender base and ``KerasMF``; its docstring documents the factor artifact), ``layer`` (the Keras
layer), ``baselines`` (``Popularity``, ``GenreRecommender``), ``peers`` (implicit and Surprise, for
benchmarks only), ``train`` (the bundle the tab serves), ``evaluate`` (leak-free top-N and rating
evaluation), ``service`` (what the tab and the CLI call).
"""
