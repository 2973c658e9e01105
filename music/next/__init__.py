""""Up next": predict the next items of a listening sequence (Caser CNN and strong cheap baselines).

Rooms: ``data`` (sessions, baskets, the leave-last-out and global-time splits, training samples),
``model`` (the Caser network in Keras), ``caser`` (Caser behind the shared recommender interface,
with its attributions), ``baselines`` (repeat/recency, session-kNN, MF and popularity adapters),
``train`` (the bundle the tab serves), ``evaluate`` (every method on one split), ``service`` (the
loaded bundle the tab and the CLI call).
"""
