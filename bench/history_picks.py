"""Picks from a personal listening export, on a Last.fm-2K model that never saw that listener.

    python bench/history_picks.py --path ../shared/data/lastfm-2k      → bench/results/history_picks.json

Protocol (fixed before any result was looked at):

- 200 Last.fm-2K listeners with at least 20 artists are held out (seeded), split into 100 validation and 100
  test listeners; MF is trained on the other listeners only (``music.mf.train.train``, the app's own trainer,
  in a private models folder).
- Each held-out listener becomes a Spotify *extended streaming history* export (``Streaming_History_Audio_
  2023_0.json``, the real schema): about 600 plays spread over their artists in proportion to their Last.fm
  play counts (every artist at least one play), a third of the artist names written as people or other
  services write them (lower case, accents stripped, "The X" as "X, The"), 15 % extra plays under 30 s (skips),
  and 5 invented artists that no dataset has. The export goes through the product's path end to end:
  ``read_exports`` → the feedback store → ``profile_picks``.
- Matching: every real artist with a counted play must be matched; the invented ones must be reported unmatched.
- Taste: each artist's tags are its 5 most used Last.fm tags, counted over the *training* listeners' tag
  assignments only. A listener's tag profile is the 20 tags with the highest play-weighted count over their
  played artists. A pick scores the share of its 5 tags in that profile (0 for an artist without tags);
  a method scores the mean over its top 10, then the mean over listeners. Bar: history picks ≥ 1.5 × the most
  popular artists not yet played, with a paired 95 % bootstrap interval over listeners.
- Peers on the same listeners: popularity (not yet played), fold-in of the played artists as plain likes
  (no play counts), and fold-in with play counts (raw, rescaled to the training data, or rescaled and
  square-root damped); the play-count scale is chosen on the validation listeners and reported on the test
  listeners.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["RECS_MODELS_DIR"] = tempfile.mkdtemp(prefix="history-picks-models-")
os.environ.setdefault("KERAS_BACKEND", "torch")

from core.feedback.store import FeedbackStore  # noqa: E402
from core.metrics import bootstrap_ci, ratio_ci, write_result  # noqa: E402
from music.data import load_dataset, make_dataset  # noqa: E402
from music.history import normalize, read_exports  # noqa: E402
from music.history.formats import UNKNOWN_ARTISTS  # noqa: E402
from music.mf import feedback  # noqa: E402
from music.mf.feedback import SCALES  # noqa: E402
from music.mf.train import load_bundle, train  # noqa: E402

log = logging.getLogger("history_picks")
HELD_OUT, MIN_ARTISTS, PLAYS, SKIP_SHARE, INVENTED, K = 200, 20, 600, 0.15, 5, 10
TAGS_PER_ARTIST, PROFILE_TAGS = 5, 20


def split_listeners(data, seed: int) -> tuple[list[str], list[str]]:
    """Held-out validation and test listeners (at least ``MIN_ARTISTS`` artists each), seeded."""
    per_user = data.interactions.groupby("user")["item"].nunique()
    eligible = np.array(sorted(per_user[per_user >= MIN_ARTISTS].index))
    chosen = np.random.default_rng(seed).choice(eligible, HELD_OUT, replace=False)
    return sorted(chosen[: HELD_OUT // 2]), sorted(chosen[HELD_OUT // 2:])


def without(data, users: set[str]):
    """The dataset minus ``users`` (interactions, events and tag assignments all), cleaned as any load."""
    keep = lambda f: None if f is None else f[~f["user"].isin(users)]  # noqa: E731
    inter = keep(data.interactions)[["user", "item", "weight"]]
    return make_dataset("lastfm-2k", data.kind, inter, data.items, keep(data.events), dict(data.report),
                        tags=keep(data.tags))


def artist_tags(tags: pd.DataFrame) -> dict[str, list[str]]:
    """item → its ``TAGS_PER_ARTIST`` most used tags (training listeners' assignments only)."""
    counts = tags.groupby(["item", "tag"]).size().reset_index(name="n")
    counts = counts.sort_values(["item", "n", "tag"], ascending=[True, False, True])
    return {item: list(g["tag"][:TAGS_PER_ARTIST]) for item, g in counts.groupby("item")}


def _spelled(name: str, rng: np.random.Generator) -> str:
    """How another service or a person may write the same artist."""
    choice = rng.integers(3)
    if choice == 0:
        return name.lower()
    if choice == 1:  # accents dropped from Latin letters (a Japanese voicing mark is part of the letter)
        out: list[str] = []
        for c in unicodedata.normalize("NFKD", name):
            if not (unicodedata.combining(c) and out and out[-1].isascii()):
                out.append(c)
        return unicodedata.normalize("NFC", "".join(out))
    return f"{name[4:]}, The" if name.lower().startswith("the ") else name.upper()


def spotify_export(listener: pd.DataFrame, names: dict[str, str], rng: np.random.Generator) -> list[dict]:
    """A Spotify extended-history export of about ``PLAYS`` plays for one listener's artist play counts."""
    w = listener["weight"].to_numpy(np.float64)
    counts = np.maximum(1, np.round(w / w.sum() * PLAYS)).astype(int)
    artists = [names[i] for i in listener["item"]]
    spelled = [_spelled(a, rng) if rng.random() < 1 / 3 else a for a in artists]
    plays = [(a, 180_000 + int(rng.integers(60_000))) for a, c in zip(spelled, counts) for _ in range(c)]
    n_skips = int(SKIP_SHARE * len(plays))
    plays += [(spelled[int(rng.integers(len(spelled)))], int(rng.integers(1_000, 29_000))) for _ in range(n_skips)]
    plays += [(f"Zq Garage Band {k}", 200_000) for k in range(INVENTED) for _ in range(3)]
    start = pd.Timestamp("2023-01-01", tz="UTC").value // 10**9
    order = rng.permutation(len(plays))
    return [{"ts": pd.Timestamp((start + 97 * k) * 10**9, tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
             "platform": "android", "ms_played": ms, "conn_country": "SE",
             "master_metadata_track_name": f"Song {j % 7}", "master_metadata_album_artist_name": artist,
             "master_metadata_album_album_name": "Album", "spotify_track_uri": f"spotify:track:{j:022d}",
             "episode_name": None, "episode_show_name": None, "spotify_episode_uri": None,
             "reason_start": "trackdone", "reason_end": "trackdone", "shuffle": False, "skipped": ms < 30_000,
             "offline": False, "incognito_mode": False}
            for k, j in enumerate(order) for artist, ms in [plays[j]]]


def taste(picks: list[str], tags: dict[str, list[str]], profile: set[str]) -> float:
    """Mean share of each pick's tags that are in the listener's tag profile (0 for a pick without tags)."""
    return float(np.mean([len(set(tags.get(p, [])) & profile) / TAGS_PER_ARTIST for p in picks])) if picks else 0.0


def tag_profile(listener: pd.DataFrame, tags: dict[str, list[str]]) -> set[str]:
    weight: dict[str, float] = {}
    for item, w in zip(listener["item"], listener["weight"]):
        for t in tags.get(item, []):
            weight[t] = weight.get(t, 0.0) + float(w)
    return set(sorted(weight, key=lambda t: (-weight[t], t))[:PROFILE_TAGS])


def popular_unplayed(bundle, played: set[str]) -> list[str]:
    c = bundle.mf.catalog
    order = np.argsort(-np.asarray(bundle.popularity.counts, np.float64), kind="stable")
    return [c.items.external(int(i)) for i in order if c.items.external(int(i)) not in played][:K]


def run_listener(store, bundle, user: str, listener: pd.DataFrame, names, tags, rng, folder: Path) -> dict:
    """One held-out listener through the product's import path; the picks of every method and their scores."""
    path = folder / f"Streaming_History_Audio_2023_{user}.json"
    path.write_text(json.dumps(spotify_export(listener, names, rng), ensure_ascii=False), encoding="utf-8")
    history = read_exports([path])
    store.create_profile(f"u{user}")
    store.add_plays(f"u{user}", history.plays.to_dict("records"))
    match = feedback.history_match(store, bundle, f"u{user}")
    played = set(listener["item"])
    profile = tag_profile(listener, tags)
    out = {"user": user, "report": {k: match.report[k] for k in ("plays", "skipped_short", "artists", "matched")},
           # Last.fm-2K lists "[unknown]" (untagged scrobbles) as an artist; an export's reader rightly drops it
           "real_artists": len({normalize(names[i]) for i in played if names[i].lower() not in UNKNOWN_ARTISTS}),
           "real_unmatched": [a for a in match.report["unmatched"] if not a.startswith("Zq Garage")], "invented_unmatched": sum(a.startswith("Zq Garage") for a in match.report["unmatched"])}
    c = bundle.mf.catalog
    picks = {"popularity": popular_unplayed(bundle, played)}
    plain = feedback.picks_for_likes(bundle, [i for i in listener["item"] if i in c.items], [], K)
    picks["fold_in_likes"] = [p.item for p in plain.picks]
    for scale in SCALES:
        picks[f"history_{scale}"] = [p.item for p in feedback.picks_for_likes(bundle, [], [], K, history=match,
                                                                             scale=scale).picks]
    out["played_in_picks"] = {m: len(set(p) & played) for m, p in picks.items()}
    out["taste"] = {m: taste(p, tags, profile) for m, p in picks.items()}
    out["example"] = [p.reason for p in feedback.picks_for_likes(bundle, [], [], 3, history=match).picks]
    return out


def summarize(rows: list[dict], methods: list[str]) -> dict:
    return {m: {"taste": float(np.mean([r["taste"][m] for r in rows])),
                "taste_ci95": bootstrap_ci([r["taste"][m] for r in rows]),
                "played_in_top10": int(sum(r["played_in_picks"][m] for r in rows))} for m in methods}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", default=str(ROOT.parent / "shared" / "data" / "lastfm-2k"))
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    data = load_dataset("lastfm-2k", args.path)
    val_users, test_users = split_listeners(data, args.seed)
    train(data=without(data, set(val_users) | set(test_users)), dataset="lastfm-2k", force=True)
    bundle = load_bundle("lastfm-2k")
    tags = artist_tags(data.tags[~data.tags["user"].isin(set(val_users) | set(test_users))])
    names = dict(zip(data.items["item"], data.items["title"]))
    folder = Path(tempfile.mkdtemp(prefix="history-exports-"))
    store = FeedbackStore.open(f"sqlite:///{folder / 'feedback.sqlite3'}", images_dir=folder / "images")
    rng = np.random.default_rng(args.seed)
    by_user = dict(tuple(data.interactions.groupby("user")))
    rows = {split: [run_listener(store, bundle, u, by_user[u], names, tags, rng, folder) for u in users]
            for split, users in (("validation", val_users), ("test", test_users))}
    methods = ["popularity", "fold_in_likes"] + [f"history_{s}" for s in SCALES]
    val = summarize(rows["validation"], methods)
    chosen = max(SCALES, key=lambda s: val[f"history_{s}"]["taste"])
    test = summarize(rows["test"], methods)
    best = f"history_{chosen}"
    ratio = test[best]["taste"] / max(test["popularity"]["taste"], 1e-12)
    ci = ratio_ci([r["taste"][best] for r in rows["test"]], [r["taste"]["popularity"] for r in rows["test"]])
    all_rows = rows["validation"] + rows["test"]
    matching = {"listeners": len(all_rows),
                "all_real_artists_matched": int(sum(r["report"]["matched"] == r["real_artists"] for r in all_rows)),
                "invented_reported_unmatched": int(sum(r["invented_unmatched"] == INVENTED for r in all_rows)),
                "real_artists_unmatched": sorted({a for r in all_rows for a in r["real_unmatched"]}),
                "listeners_not_all_matched": [{"user": r["user"], "artists": r["real_artists"],
                                               "matched": r["report"]["matched"], "unmatched": r["real_unmatched"]}
                                              for r in all_rows if r["report"]["matched"] != r["real_artists"]],
                "mean_plays": float(np.mean([r["report"]["plays"] for r in all_rows])),
                "mean_skipped_short": float(np.mean([r["report"]["skipped_short"] for r in all_rows]))}
    result = {"command": "python bench/history_picks.py --path ../shared/data/lastfm-2k", "protocol": __doc__.strip(),
              "seed": args.seed, "chosen_scale_on_validation": chosen, "validation": val, "test": test,
              "matching": matching, "headline": {"method": best, "ratio_vs_popularity": round(ratio, 3),
                                                 "ratio_ci95": ci, "bar": 1.5, "bar_met": bool(ratio >= 1.5),
                                                 "ci_above_bar": bool(ci[0] >= 1.5)},
              "example_reasons": rows["test"][0]["example"], "seconds": round(time.time() - t0, 1)}
    write_result("history_picks", result)
    log.info("test taste: %s; ratio %.3f %s; matching %s", {m: round(v["taste"], 4) for m, v in test.items()},
             ratio, ci, matching)
    return 0


if __name__ == "__main__":
    sys.exit(main())
