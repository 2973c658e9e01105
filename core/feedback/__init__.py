"""The feedback store shared by every tab, and relevance feedback on embeddings.

``FeedbackStore`` (store.py) keeps profiles, likes / dislikes / tag edits, stored hashtag images and
saved lists in SQLite or any SQLAlchemy database (``RECS_DATABASE_URL``); ``rocchio`` (rocchio.py)
turns likes and dislikes into a better query, and rerank.py re-ranks its candidates with every liked and
disliked item (per-example fusion, a linear SVM). Nothing outside this package writes SQL.
"""

from core.feedback.rocchio import RocchioWeights, feedback_note, rocchio
from core.feedback.store import (
    SIGNALS, TABS, EventRecord, FeedbackError, FeedbackStore, ImportBatchRecord, TaggedImageRecord, default_url, normalize_tags,
)

__all__ = [
    "SIGNALS", "TABS", "EventRecord", "FeedbackError", "FeedbackStore", "ImportBatchRecord", "RocchioWeights",
    "TaggedImageRecord",
    "default_url", "feedback_note", "normalize_tags", "rocchio",
]
