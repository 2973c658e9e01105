"""The music data layer: every source in one ``MusicDataset`` shape, id maps, and the one ``Split`` type.

Rooms: ``dataset`` (the shape, cleaning, ``IdMap``), ``sources`` (real formats: Last.fm-2K,
MovieLens-100K, Last.fm-1K, 30Music, CSV), ``simulate`` (the offline default, reproducible from a fixed random seed), ``splits``
(``Split`` and the interaction splits). ``load_dataset`` is the one entry point by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from music.data import simulate, sources
from music.data.dataset import (
    DATASETS,
    LABELS,
    DataUnavailable,
    IdMap,
    MusicDataset,
    clean_events,
    clean_interactions,
    clean_items,
    make_dataset,
)
from music.data.splits import Split, period_starts, ratio_split, user_holdout_split

__all__ = ["DATASETS", "LABELS", "DataUnavailable", "IdMap", "MusicDataset", "Split", "clean_events",
           "clean_interactions", "clean_items", "load_dataset", "make_dataset", "period_starts", "ratio_split",
           "user_holdout_split"]


def load_dataset(name: str, path: str | Path | None = None, **kwargs: Any) -> MusicDataset:
    """Load a dataset by name. ``path`` is a folder or file where the format needs one.

    ``simulated`` needs nothing (seeded, offline default). ``lastfm-2k`` needs the HetRec folder.
    ``movielens-100k`` reads the recbole wheel in ``data/wheels`` (``download=True`` fetches it
    with pip). ``lastfm-1k``, ``30music``, ``listenbrainz`` (a listens dump) and ``csv`` read the given file or folder.
    """
    if name == "simulated":
        return simulate.simulate(**kwargs)
    if name in ("lastfm-2k", "lastfm2k", "hetrec-lastfm-2k"):
        folder = sources.ensure_lastfm_2k(path, download=bool(kwargs.pop("download", False)))
        return sources.load_lastfm_2k(_need(folder, name), **kwargs)
    if name in ("movielens-100k", "ml-100k"):
        return sources.load_movielens_100k(path, **kwargs)
    if name in ("lastfm-1k", "lastfm1k"):
        return sources.load_lastfm_1k(_need(path, name), **kwargs)
    if name in ("30music", "30Music"):
        return sources.load_30music(_need(path, name), **kwargs)
    if name == "listenbrainz":
        from music.data.listenbrainz import load_listenbrainz_dump

        return load_listenbrainz_dump(_need(path, name))
    if name == "csv":
        return sources.load_csv(_need(path, name), **kwargs)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _need(path: str | Path | None, name: str) -> Path:
    if path is None:
        raise DataUnavailable(f"dataset {name!r} needs --path (a folder or file in its format)")
    p = Path(path)
    if not p.exists():
        raise DataUnavailable(f"{p} does not exist (dataset {name!r})")
    return p
