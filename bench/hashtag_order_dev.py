"""Choose the hashtag order and concept ranking on the dev subject photos only (never the held-out set).

The dev subjects are the 34 labelled dev photos (``bench/checksets/realphotos_dev_subjects.csv``) plus 24 more labelled
for this (``bench/checksets/hashtag_dev_subjects.csv``, committed before any model ran on them): 58 photos. Every
variant is scored on them (subject first, subject in the top 5, per group) and on the 45 gold-tagged dev photos
(``bench/checksets/realphotos_dev.csv``, F1@5). Eligible, as in ``python -m hashtag tune-order``: dev gold F1@5 at least the
concept tagger's under the same ranking; then the best mean of subject@1 and subject@5; ties go to the shipped rule
(a change must earn its place). Also the dev candidate ceiling: the subject among every word the concept tagger gives
any weight. Result: ``bench/results/hashtag_order_dev.json``.

    python bench/hashtag_order_dev.py
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.metrics import write_result  # noqa: E402
from hashtag.concepts import CANDIDATES, FUSION, RANKING, ConceptRanking, ConceptTagger, fuse_all  # noqa: E402
from hashtag.evaluate import per_image_scores  # noqa: E402
from hashtag.order import NO_ORDER, ORDER, OrderRule  # noqa: E402
from hashtag.subjects import DEV_SUBJECTS, candidate_ceiling, load_subject_set, subject_scores  # noqa: E402

log = logging.getLogger("hashtag_order_dev")
MORE_DEV = ROOT / "bench" / "checksets" / "hashtag_dev_subjects.csv"
Lists = list[list[str]]


def same_evidence(tagger: ConceptTagger, probs: np.ndarray, fused: list[tuple]) -> list[tuple]:
    """A tried rule (not shipped): drop a hypernym word whose supporting classes on this photo are exactly those of
    a hypernym word already kept (#home after #house on a palace), so one idea takes one place."""
    idx, sup, depth = tagger._index, tagger.table.support, tagger.table.depth
    live, kept = probs > 0, []
    for t, s, src in fused:
        if t in idx and depth[idx[t]] > 0 and any(
                k in idx and depth[idx[k]] > 0 and np.array_equal(sup[live, idx[t]], sup[live, idx[k]])
                for k, _, _ in kept):
            continue
        kept.append((t, s, src))
    return kept


class DevSets:
    """The dev subject photos and the gold-tagged dev photos, encoded once, with the decoder's lists."""

    def __init__(self, service) -> None:
        # the model stack (torch, keras) loads when a run starts, so --help answers at once
        from hashtag.subjects import base_lists

        self.service = service
        self.photos = load_subject_set(DEV_SUBJECTS) + load_subject_set(MORE_DEV)
        base = base_lists(service, self.photos)
        grids, gold, _, _ = service.real_photo_set("dev")
        self.gold = gold
        self.sets = {"subjects": (base["grids"], service.tagger.predict_grids(base["grids"], CANDIDATES),
                                  base["likeness"], base["transparent"]),
                     "gold": (grids, service.tagger.predict_grids(grids, CANDIDATES), service.dev_likeness(grids),
                              service.photo_set_transparency("dev"))}
        self.max_transparent = float(max(base["transparent"].max(), self.sets["gold"][3].max()))

    def lists(self, name: str, tagger: ConceptTagger, rule, order: OrderRule,
              post: Optional[Callable] = None) -> "tuple[Lists, Lists]":
        """(fused top 5, concept top 5) of set ``name`` under a ranking (``tagger``), fusion rule and order."""
        grids, learned, likeness, transparent = self.sets[name]
        concepts = tagger.predict_grids(grids, CANDIDATES)
        k = 5 if post is None else 40
        fused = fuse_all(learned, concepts, likeness, tagger.masses(grids), tagger, rule, k, order=order,
                         confidence=tagger.confidence(grids), transparent=transparent)
        if post is not None:
            probs = tagger.probabilities(grids)
            fused = [post(tagger, p, f) for p, f in zip(probs, fused)]
        return [[t for t, _, _ in f[:5]] for f in fused], [[t for t, _ in c[:5]] for c in concepts]

    def row(self, name: str, ranking: ConceptRanking = RANKING, rule=FUSION, order: OrderRule = ORDER,
            post: Optional[Callable] = None) -> dict[str, Any]:
        tagger = ConceptTagger(self.service.encoder, ranking=ranking)
        fused, concepts = self.lists("subjects", tagger, rule, order, post)
        gold_fused, gold_concepts = self.lists("gold", tagger, rule, order, post)
        s, c = subject_scores(fused, self.photos), subject_scores(concepts, self.photos)

        def f1(lists_: Lists) -> float:
            return round(float(per_image_scores([[(t, 1.0) for t in x] for x in lists_], self.gold)["f1@5"].mean()), 4)

        return {"name": name, "subject@1": s["subject@1"], "subject@5": s["subject@5"],
                "objective": round((s["subject@1"] + s["subject@5"]) / 2, 4), "dev_f1@5": f1(gold_fused),
                "concepts_dev_f1@5": f1(gold_concepts), "concepts_subject@1": c["subject@1"],
                "concepts_subject@5": c["subject@5"],
                "by_group": {g: {"photos": v["photos"], "subject@1": v["subject@1"], "subject@5": v["subject@5"],
                                 "concepts_subject@1": c["by_group"][g]["subject@1"],
                                 "concepts_subject@5": c["by_group"][g]["subject@5"]}
                             for g, v in s["by_group"].items()}}


def variants(dev: DevSets) -> list[dict[str, Any]]:
    """The shipped rule first (it wins ties), then every alternative tried."""
    rows = [dev.row("shipped")]
    for share in (0.0, 0.5, 0.7, 0.8):
        rows.append(dev.row(f"basic={share}", rule=replace(FUSION, basic=share)))
    for field in ("collapse", "collapse_head", "general_last", "general_out", "family_second"):
        rows.append(dev.row(f"order:{field}={not getattr(ORDER, field)}",
                            order=replace(ORDER, **{field: not getattr(ORDER, field)})))
    rows.append(dev.row("unordered", order=NO_ORDER))
    rows.append(dev.row("same-evidence collapse", post=same_evidence))
    for everyday, breadth in itertools.product((1.0, 2.0, 3.0), (0.0, 0.1, 0.2, 0.3)):
        if (everyday, breadth) != (RANKING.everyday, RANKING.breadth_penalty):
            rows.append(dev.row(f"ranking everyday={everyday} breadth={breadth}",
                                ranking=replace(RANKING, everyday=everyday, breadth_penalty=breadth)))
    return rows


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # torch loads when a run starts, so --help answers at once
    import torch

    # the model stack (torch, keras) loads when a run starts, so --help answers at once
    from hashtag.service import HashtagService

    service = HashtagService()
    torch.set_num_threads(1)
    dev = DevSets(service)
    rows = variants(dev)
    for r in rows:
        log.info("%-40s subject@1 %.3f @5 %.3f dev F1@5 %.4f (concepts %.4f)", r["name"], r["subject@1"],
                 r["subject@5"], r["dev_f1@5"], r["concepts_dev_f1@5"])
    eligible = [r for r in rows if r["dev_f1@5"] >= r["concepts_dev_f1@5"]]
    best = max(eligible, key=lambda r: r["objective"])  # max keeps the first of ties: the shipped rule
    every = service.concepts.predict_grids(dev.sets["subjects"][0], len(service.concepts.table.words))
    result = {"dev_photos": len(dev.photos), "gold_dev_photos": len(dev.gold), "chosen": best["name"],
              "eligible": [r["name"] for r in eligible], "rows": rows,
              "max_transparent_share": round(dev.max_transparent, 4),
              "ceiling_concept_words": candidate_ceiling([[t for t, _ in c] for c in every], dev.photos)}
    write_result("hashtag_order_dev", result)
    print(f"chosen: {best['name']} (subject@1 {best['subject@1']}, @5 {best['subject@5']}); "
          f"{len(eligible)} of {len(rows)} eligible; dev ceiling {result['ceiling_concept_words']['ceiling']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
