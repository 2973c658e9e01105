"""A small ranking with known answers, shared by the metric and evaluation tests.

Three queries over a gallery of 8 items: scores and binary relevance. Item 7 of query 0 is relevant but ranked
last, so recall@5 < 1 and average precision's denominator matters; query 1 has no relevant item.
"""

import numpy as np

SCORES = np.array([
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
    [0.1, 0.9, 0.8, 0.2, 0.7, 0.6, 0.5, 0.05],
    [0.3, 0.2, 0.9, 0.1, 0.8, 0.4, 0.6, 0.7],
])
RELEVANT = np.array([
    [1, 0, 1, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 1, 1, 1, 1, 0],
], dtype=bool)
