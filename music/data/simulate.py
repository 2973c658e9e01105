"""A seeded, simulated listening log: the app's offline default. It is simulated, and says so.

Why simulated: no registry ships a music listening log, and the app must work offline. The
simulation is built to have the structure real logs have, so models have something to learn and
sequence models ("up next") have real sessions to cut:

- genres with uneven sizes; artists with one main genre (some a second) and long-tailed
  (Zipf) popularity; songs per artist with long-tailed popularity inside the artist;
- listeners with a taste concentrated on a few genres (Dirichlet α=0.3), a few favourite artists
  and a lognormal activity level;
- sessions separated by gaps of hours to days; inside a session, songs follow each other
  (3–5 minutes apart) with artist continuity (next song by the same artist, p≈0.4), genre
  continuity (another artist of the same genre, p≈0.35), a fresh draw from the listener's taste
  otherwise, and re-listens of earlier songs (p≈0.15).

``interactions`` are play counts per (listener, song); ``events`` are every play with its time.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from music.data.dataset import MusicDataset, make_dataset

log = logging.getLogger(__name__)

GENRES = ["rock", "pop", "electronic", "hip-hop", "jazz", "classical", "metal", "folk", "r&b", "country",
          "reggae", "blues"]
_ADJ = ["Midnight", "Golden", "Broken", "Electric", "Silent", "Neon", "Wild", "Velvet", "Paper", "Crimson",
        "Hollow", "Lucky", "Lonely", "Burning", "Frozen", "Distant", "Sweet", "Restless", "Quiet", "Bright",
        "Fading", "Northern", "Secret", "Endless", "Little", "Blue", "Savage", "Gentle", "Hidden", "Open"]
_NOUN = ["River", "Heart", "Highway", "Dream", "Fire", "Garden", "Ocean", "Mirror", "Letter", "Sky", "Train",
         "Summer", "Shadow", "Echo", "City", "Road", "Storm", "Window", "Moon", "Light", "Song", "Island",
         "Wolves", "Horizon", "Rain", "Season", "Stars", "Lines", "Waves", "Door"]
_BAND = ["Foxes", "Machines", "Lanterns", "Ravens", "Tides", "Pilots", "Saints", "Strangers", "Comets",
         "Owls", "Drifters", "Kings", "Sparrows", "Arrows", "Giants"]
_FIRST = ["Ada", "Leo", "Mara", "Jonas", "Ines", "Theo", "Nina", "Omar", "Lena", "Sami", "Yara", "Ivo", "Rosa", "Kai"]
_LAST = ["Vale", "Hart", "Moreau", "Okafor", "Lind", "Sato", "Reyes", "Novak", "Quinn", "Berg", "Costa", "Ward"]


def _zipf(n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """Long-tailed weights 1/rank^s in a random order, normalised."""
    w = 1.0 / np.arange(1, n + 1) ** s
    rng.shuffle(w)
    return w / w.sum()


def _draw(cum: np.ndarray, rng: np.random.Generator) -> int:
    """Index drawn from a cumulative distribution (much faster than rng.choice in a loop)."""
    return int(min(np.searchsorted(cum, rng.random() * cum[-1], side="right"), len(cum) - 1))


def simulate(
    seed: int = 0,
    n_users: int = 500,
    n_artists: int = 160,
    n_songs: int = 2000,
    sessions_mean: float = 8.0,
    session_len_mean: float = 8.0,
    p_same_artist: float = 0.4,
    p_same_genre: float = 0.35,
    p_relisten: float = 0.15,
    start: str = "2024-01-01",
) -> MusicDataset:
    """Generate the simulated log; the same ``seed`` and sizes always give the same data."""
    rng = np.random.default_rng(seed)
    n_genres = len(GENRES)
    genre_size = rng.dirichlet(np.full(n_genres, 3.0))
    artist_genre = np.array([_draw(np.cumsum(genre_size), rng) for _ in range(n_artists)])
    artist_genre[:n_genres] = np.arange(n_genres)  # every genre has at least one artist
    second = np.where(rng.random(n_artists) < 0.2, rng.integers(0, n_genres, n_artists), -1)
    artist_pop = _zipf(n_artists, 1.0, rng)
    song_artist = np.concatenate([np.arange(n_artists), rng.choice(n_artists, n_songs - n_artists, p=artist_pop)])
    rng.shuffle(song_artist)
    song_pop = np.zeros(n_songs)
    songs_of: list[np.ndarray] = []
    song_cum: list[np.ndarray] = []
    for a in range(n_artists):
        idx = np.flatnonzero(song_artist == a)
        w = _zipf(len(idx), 1.1, rng)
        song_pop[idx] = w * artist_pop[a]
        songs_of.append(idx)
        song_cum.append(np.cumsum(w))
    artists_in = [np.flatnonzero((artist_genre == g) | (second == g)) for g in range(n_genres)]

    users = [f"u{u:04d}" for u in range(n_users)]
    t0 = int(pd.Timestamp(start, tz="UTC").timestamp())
    ev_user: list[int] = []
    ev_song: list[int] = []
    ev_time: list[int] = []
    for u in range(n_users):
        taste = rng.dirichlet(np.full(n_genres, 0.3))
        taste_cum = np.cumsum(taste)
        favourite = rng.choice(n_artists, 3, replace=False)
        boost = np.ones(n_artists)
        boost[favourite] = 8.0
        genre_cum = []
        for g in range(n_genres):
            cand = artists_in[g]
            genre_cum.append((cand, np.cumsum(artist_pop[cand] * boost[cand])))
        n_sessions = max(1, int(rng.poisson(sessions_mean * rng.lognormal(0, 0.5))))
        t = t0 + int(rng.integers(0, 14 * 86400))
        history: list[int] = []
        for _ in range(n_sessions):
            t += int(rng.exponential(2.5 * 86400)) + 3600  # sessions are hours to days apart
            length = max(1, int(rng.poisson(session_len_mean)))
            genre = _draw(taste_cum, rng)
            cand, cum = genre_cum[genre]
            artist = int(cand[_draw(cum, rng)])
            song = int(songs_of[artist][_draw(song_cum[artist], rng)])
            for k in range(length):
                if k > 0:
                    r = rng.random()
                    if history and r < p_relisten:
                        song = history[int(rng.integers(len(history)))]
                        artist = int(song_artist[song])
                    else:
                        r = rng.random()
                        if r >= p_same_artist:
                            if r >= p_same_artist + p_same_genre:
                                genre = _draw(taste_cum, rng)
                            cand, cum = genre_cum[genre]
                            artist = int(cand[_draw(cum, rng)])
                        song = int(songs_of[artist][_draw(song_cum[artist], rng)])
                ev_user.append(u)
                ev_song.append(song)
                ev_time.append(t)
                history.append(song)
                t += int(rng.integers(150, 330))

    titles = _unique_titles(n_songs, rng)
    artist_names = _artist_names(n_artists, rng)
    items = pd.DataFrame({
        "item": [f"s{i:05d}" for i in range(n_songs)],
        "title": titles,
        "artist": [artist_names[a] for a in song_artist],
        "genres": [[GENRES[artist_genre[a]]] + ([GENRES[second[a]]] if second[a] >= 0 and second[a] != artist_genre[a]
                                              else []) for a in song_artist],
    })
    events = pd.DataFrame({
        "user": np.asarray(users)[ev_user],
        "item": items["item"].to_numpy()[ev_song],
        "timestamp": np.asarray(ev_time, dtype=np.int64),
    })
    raw = events.assign(weight=1.0)
    params: dict[str, Any] = {"seed": seed, "n_users": n_users, "n_artists": n_artists, "n_songs": n_songs,
                              "sessions_mean": sessions_mean, "session_len_mean": session_len_mean,
                              "p_same_artist": p_same_artist, "p_same_genre": p_same_genre,
                              "p_relisten": p_relisten}
    report = {"simulated": True, "params": params, "plays": len(events)}
    log.info("simulated %d plays by %d listeners over %d songs", len(events), n_users, n_songs)
    return make_dataset("simulated", "implicit", raw, items, events, report)


def _unique_titles(n: int, rng: np.random.Generator) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for _ in range(n):
        base = f"{_ADJ[rng.integers(len(_ADJ))]} {_NOUN[rng.integers(len(_NOUN))]}"
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base} {['II', 'III', 'IV', 'V'][min(seen[base] - 2, 3)]}"
                   if seen[base] <= 5 else f"{base} ({seen[base]})")
    return out


def _artist_names(n: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    used: set[str] = set()
    while len(names) < n:
        if rng.random() < 0.5:
            name = f"The {_ADJ[rng.integers(len(_ADJ))]} {_BAND[rng.integers(len(_BAND))]}"
        else:
            name = f"{_FIRST[rng.integers(len(_FIRST))]} {_LAST[rng.integers(len(_LAST))]}"
        if name in used:
            name = f"{name} {len(names)}"
        used.add(name)
        names.append(name)
    return names
