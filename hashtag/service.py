"""The tab's public face: load a trained model + baselines once, tag an image, explain tags, evaluate.

The CLI and the Streamlit tab both call ``HashtagService``; neither reaches into the model's internals. The
calls every tab's service offers (``sources``, ``open``, ``query``, ``record_feedback``, ``explain``, ``card``;
``core.contract``) are at the end of this module.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from core.artifacts import ArtifactError, read_json, write_json
from core.contract import (Answer, Handles, Metric, ModelCard, Person, Request, Source, built_date, committed,
                           metrics_of, read_results, source_of)
from core.datasets import DataUnavailable
from core.encoders import get_image_encoder
from core.feedback import FeedbackError
from core.images import ImageSource, load_any, load_image
from core.jobs import JobQueue, worker as job_worker
from core.jobs.uploads import save_upload
from core.locks import LazyValue
from hashtag.concepts import (CANDIDATES, FUSION, FUSION_SIMILARITY, ConceptTagger, FusionRule, acceptable_tags,
                              fuse_all, load_photo_set, photo_grids)
from hashtag.data import DEFAULT_DATASET, HashtagDataset, Vocab, grid_cache, load_dataset
from hashtag.evaluate import (MostFrequent, Prediction, candidate_ceiling, headline_scores, judged_scores, pool_grids,
                              score_predictions, tune_knn)
from hashtag.feedback import pending_edits, record_tag_edits, review_edit  # noqa: F401 - the tab and review page
from hashtag.imports import ImportRefused, import_zip
from hashtag.gate import PhotoGate, load_or_fit, out_of_fold, transparency
from hashtag.model import TRAIN_HINT, ModelTagger, TagResult, load_checkpoint, model_dir  # noqa: F401 - the tab
from hashtag.openvocab import OpenVocabTagger, fuse_open
from hashtag.order import ORDER, OrderRule, order_tags
from hashtag.versions import (BASE, VersionError, list_versions, served_dir, serving_version,  # noqa: F401 - the Data page
                              set_serving, version_dir, RETRAIN_HANDLER, RETRAIN_KIND)

log = logging.getLogger(__name__)

#: Fewest installed dev photos the photo gate is fitted on (fewer: the similarity rule).
MIN_GATE_PHOTOS = 10
#: How many concept candidates the evaluation's ``ceiling`` counts (the product fuses the top ``CANDIDATES``).
CEILING_CONCEPTS = 40

METHODS = ("fused", "model", "concepts", "knn", "most_frequent")
#: The five methods every evaluation table reports, in the order the docs print them.
EVALUATED = ("model", "knn", "most_frequent", "concepts", "fused")


@dataclass(frozen=True)
class Picture:
    """What the fusion made of one picture: its gate score, the head's confidence and the decoder's share."""

    likeness: float
    threshold: float
    decoder_weight: float
    gate: str
    confidence: float = 0.0
    confident: float = 2.0
    #: Share of see-through pixels (-1: unknown) and the share the cut-out guard asks of clip art (0: off).
    transparent: float = -1.0
    cutout: float = 0.0

    @property
    def opaque(self) -> bool:
        """The gate called it clip-art-like, but it is not a cut-out: the decoder's stamps all are."""
        return self.likeness >= self.threshold and 0 <= self.transparent < self.cutout

    @property
    def guarded(self) -> bool:
        """The gate called it clip-art-like, but the ImageNet head is so sure of one class that it is a photo."""
        return self.likeness >= self.threshold and self.confidence >= self.confident

    @property
    def is_photo(self) -> bool:
        return self.likeness < self.threshold or self.guarded or self.opaque

    def sentence(self) -> str:
        """One line for the tab: why learned tags do or do not take part in the fused list."""
        score = f"{self.gate} {self.likeness:.2f}, threshold {self.threshold:.2f}"
        if self.opaque:
            return (f"Looks like a real photo: the gate found it clip-art-like ({score}), but it has no transparent "
                    "background, which every picture the decoder learned from has; the hashtags come from the "
                    "ImageNet concepts.")
        if self.guarded:
            return (f"Looks like a real photo: the gate found it clip-art-like ({score}), but the ImageNet head is "
                    f"{self.confidence:.0%} sure of one class (≥ {self.confident:.0%}), which drawings rarely reach; "
                    "the hashtags come from the ImageNet concepts.")
        if self.decoder_weight <= 0:
            return (f"Looks like a real photo ({score}): the hashtags come from the ImageNet concepts; the "
                    f"decoder, which learned from clip art, adds its own words only where the concepts run out.")
        return (f"Looks like the pictures the decoder learned from ({score}): its learned tags weigh "
                f"{self.decoder_weight:.0%} beside the concepts.")

    def to_json(self) -> dict[str, Any]:
        return {"likeness": round(self.likeness, 4), "threshold": self.threshold, "gate": self.gate,
                "decoder_weight": self.decoder_weight, "is_photo": self.is_photo,
                "confidence": round(self.confidence, 4), "confident": self.confident,
                "transparent": round(self.transparent, 4), "cutout": self.cutout}


class HashtagService:
    """A trained model, its dataset, the encoder and both baselines, loaded once (the UI caches this)."""

    def __init__(self, dataset_root: str | Path = DEFAULT_DATASET, *, encoder=None, beam: Optional[int] = None,
                 weights: Optional[str] = None) -> None:
        """``weights``: the state-dict file of a ResNet backbone the model was trained with (Lite0/Lite2 ship)."""
        self.dataset: HashtagDataset = load_dataset(dataset_root)
        #: The model version served (``hashtag.versions``: the pointer's, else the model folder itself).
        self.version = serving_version(self.dataset.root)
        self.folder = version_dir(self.dataset.root, self.version)
        self.model, self.manifest = load_checkpoint(self.folder)
        if self.manifest.get("dataset", {}).get("checksum") != self.dataset.checksum:
            raise ArtifactError(f"The hashtag model was trained on other data than {self.dataset.root}. "
                                f"Retrain with `{TRAIN_HINT} --force`.")
        spec = self.manifest["encoder"]
        self.encoder = encoder or get_image_encoder(spec["backbone"], spec["pooling"],
                                                    input_size=spec["input_size"], weights=weights)
        if {k: v for k, v in self.encoder.spec.items()} != spec:
            raise ArtifactError(f"The hashtag model was trained with encoder {spec}, but {self.encoder.spec} is "
                                f"loaded. Retrain with `{TRAIN_HINT} --force`.")
        train_cfg = self.manifest.get("train", {})
        self.tagger = ModelTagger(self.model, Vocab(self.manifest["vocab"]),
                                  beam=beam or int(train_cfg.get("beam", 5)),
                                  max_len=int(train_cfg.get("max_tags", 8)))
        self._baselines: LazyValue[dict[str, Any]] = LazyValue(self._build_baselines)
        self._concepts: LazyValue[ConceptTagger] = LazyValue(lambda: ConceptTagger(self.encoder))
        self._gate: LazyValue[Optional[PhotoGate]] = LazyValue(self._build_gate)
        #: How the fused list is put in the order a person writes hashtags (``hashtag.order``).
        self.order: OrderRule = ORDER

    # -- baselines (built lazily: they need the cached grids) -------------------------------------
    def baselines(self) -> dict[str, Any]:
        """kNN and most-frequent baselines, built once per service even when sessions ask together."""
        return self._baselines.get()

    def _build_baselines(self) -> dict[str, Any]:
        arrays = grid_cache(self.dataset, self.encoder, flips=bool(self.manifest["train"].get("flips", True)))
        grids = arrays["grids"]
        ex = self.dataset.examples
        tr = [i for i, e in enumerate(ex) if e.split == "train"]
        va = [i for i, e in enumerate(ex) if e.split == "val"]
        knn = tune_knn(grids[tr], [ex[i].tags for i in tr], [ex[i].id for i in tr], grids[va],
                       [ex[i].tags for i in va])
        return {"grids": grids, "knn": knn, "most_frequent": MostFrequent([ex[i].tags for i in tr])}

    # -- the photo gate (is this picture like the decoder's training images?) ---------------------
    def gate(self) -> Optional[PhotoGate]:
        """The model's photo gate (``hashtag.gate``), fitted on first use if the checkpoint has none; ``None``
        when fewer than ``MIN_GATE_PHOTOS`` dev photos are installed (fusion then uses the similarity rule)."""
        return self._gate.get()

    def _build_gate(self) -> Optional[PhotoGate]:
        photos = load_photo_set("dev", require_all=False)
        if len(photos) < MIN_GATE_PHOTOS:
            log.warning("only %d real dev photos are installed (the photo gate needs %d): fused hashtags use the "
                        "nearest-image similarity rule instead", len(photos), MIN_GATE_PHOTOS)
            return None
        return load_or_fit(self.folder, str(self.manifest.get("key")), self.training_grids,
                           [p.id for p in photos], lambda: photo_grids(self.encoder, photos))

    def training_grids(self) -> np.ndarray:
        """The decoder's training-split grids (the gate's "like the training images" class)."""
        rows = [i for i, e in enumerate(self.dataset.examples) if e.split == "train"]
        return np.asarray(self.baselines()["grids"][rows], np.float32)

    def gate_name(self) -> str:
        """Which signal the fusion rule thresholds: the photo gate, or the similarity fallback."""
        return "photo gate" if self.gate() is not None else "nearest-image similarity"

    def fusion_rule(self) -> FusionRule:
        """``FUSION`` when the photo gate exists, else the rule chosen for the similarity gate."""
        return FUSION if self.gate() is not None else FUSION_SIMILARITY

    def likeness(self, grids: np.ndarray) -> np.ndarray:
        """Per grid: the score the fusion rule's threshold reads (the gate's probability, or the similarity)."""
        gate = self.gate()
        return gate(grids) if gate is not None else self.nearest_similarity(grids)

    def dev_likeness(self, grids: np.ndarray) -> np.ndarray:
        """``likeness`` for the dev photos themselves: cross-fitted, since they are the gate's own examples."""
        if self.gate() is None:
            return self.nearest_similarity(grids)
        return out_of_fold(self.training_grids(), np.asarray(grids, np.float32))

    @property
    def concepts(self) -> ConceptTagger:
        """The concept tagger on this service's encoder (WordNet loads on first use; a clear error if absent)."""
        return self._concepts.get()

    def method(self, name: str):
        if name == "model":
            return self.tagger
        if name == "concepts":
            return self.concepts
        if name not in METHODS:
            raise ValueError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.")
        return self.baselines()[name]

    # -- inference --------------------------------------------------------------------------------
    def grid(self, image: ImageSource) -> np.ndarray:
        """One image (path, bytes, PIL...) → its (C,h,w) grid; bad input raises ``core.images.ImageError``."""
        img = load_image(image)
        return self.encoder.grid([img])[0]

    def predict(self, image: ImageSource, *, method: str = "fused", k: int = 5) -> list[TagResult]:
        """Hashtags for an image with one method, best first.

        ``fused`` (the default) merges the decoder's and the concept tagger's lists; learned tags carry
        the decoder's attention map, concept tags a class activation map.
        """
        img = load_image(image)
        grid = self.encoder.grid([img])[0]
        if method == "model":
            return self.tagger.explain_grid(grid, k)
        if method == "concepts":
            return self._concept_results(grid, k)
        if method == "fused":
            return self._fused_results(grid, k, transparent=transparency(img))[0]
        return [TagResult(t, s, source="baseline") for t, s in self.method(method).predict_grids(grid[None], k)[0]]

    def _concept_results(self, grid: np.ndarray, k: int) -> list[TagResult]:
        tags = self.concepts.explain_grid(grid, k)
        return [TagResult(c.tag, c.score, self.concepts.activation_map(grid, c), "concept") for c in tags]

    def predict_fused(self, image: ImageSource, k: int = 5, *, open_vocabulary: Optional[OpenVocabTagger] = None
                      ) -> "tuple[list[TagResult], Picture]":
        """The fused hashtags and what the photo gate made of the picture (the tab shows both).

        ``open_vocabulary``: an opt-in ``OpenVocabTagger`` whose zero-shot words join the fused list."""
        img = load_image(image)
        open_tags = open_vocabulary.predict_images([img], 2 * CANDIDATES)[0] if open_vocabulary else None
        return self._fused_results(self.encoder.grid([img])[0], k, open_tags, transparency(img))

    def _fused_results(self, grid: np.ndarray, k: int, open_tags: Optional[Prediction] = None,
                       transparent: Optional[float] = None) -> "tuple[list[TagResult], Picture]":
        n = max(k, CANDIDATES)
        learned = {r.tag: r for r in self.tagger.explain_grid(grid, n)}
        concepts = {c.tag: c for c in self.concepts.explain_grid(grid, n)}
        likeness, rule = self.likeness(grid[None]), self.fusion_rule()
        confidence = self.concepts.confidence(grid[None])
        see_through = None if transparent is None else np.array([transparent], np.float32)
        fused = fuse_all([[(r.tag, r.score) for r in learned.values()]],
                         [[(c.tag, c.score) for c in concepts.values()]], likeness,
                         self.concepts.masses(grid[None]), self.concepts, rule, 2 * n, confidence=confidence,
                         transparent=see_through)[0]
        picture = Picture(float(likeness[0]), rule.threshold,
                          float(rule.weights(likeness, confidence, see_through)[0]), self.gate_name(),
                          float(confidence[0]), rule.confident,
                          -1.0 if transparent is None else float(transparent), rule.cutout)
        if open_tags:
            fused = fuse_open(fused, open_tags, k=len(fused) + len(open_tags))
        fused = order_tags(fused, rule=self.order, is_photo=picture.is_photo, family=self.concepts.is_family, k=k)[:k]
        out = []
        for tag, score, source in fused:
            if source == "learned":
                heat = learned[tag].attention
            elif tag in concepts:  # concept or both: the classifier's evidence is the map that holds on photos
                heat = self.concepts.activation_map(grid, concepts[tag])
            else:  # an open-vocabulary word: the model scores the whole photo, there is no map
                heat = None
            out.append(TagResult(tag, score, heat, source))
        return out, picture

    # -- evaluation -------------------------------------------------------------------------------
    def nearest_similarity(self, grids: np.ndarray) -> np.ndarray:
        """Per grid: cosine similarity of its pooled vector to the nearest training image (the fusion gate)."""
        knn = self.baselines()["knn"]
        _, sims = knn.index.search(pool_grids(grids, knn.pooling), 1)
        return np.asarray(sims, np.float32)[:, 0]

    def predictions(self, grids: np.ndarray, k: int = 10, *, rule: Optional[FusionRule] = None,
                    likeness: Optional[np.ndarray] = None) -> dict[str, list[Prediction]]:
        """Ranked lists of all five methods for the same grids (the decoder's beam search runs once).

        ``rule``/``likeness``: the fusion rule and the gate scores (default: the service's own).
        """
        lists, _ = self._all_lists(grids, k, rule=rule, likeness=likeness)
        return {name: [p[:k] for p in lists[name]] for name in EVALUATED}

    def _all_lists(self, grids: np.ndarray, k: int, *, rule: Optional[FusionRule] = None,
                   likeness: Optional[np.ndarray] = None, candidates: int = CANDIDATES,
                   order: Optional[OrderRule] = None, transparent: Optional[np.ndarray] = None
                   ) -> "tuple[dict[str, list[Prediction]], list[list[tuple[str, float, str]]]]":
        """Every method's list (the concept tagger's ``candidates`` long, for the evaluation's ceiling) and the
        fused lists with each tag's source."""
        b = self.baselines()
        m = max(k, CANDIDATES)  # the decoder and fusion see the product's candidate count
        out = {"model": self.tagger.predict_grids(grids, m), "knn": b["knn"].predict_grids(grids, k),
               "most_frequent": b["most_frequent"].predict_grids(grids, k),
               "concepts": self.concepts.predict_grids(grids, max(m, candidates))}
        likeness = self.likeness(grids) if likeness is None else likeness
        fused = fuse_all(out["model"], [p[:m] for p in out["concepts"]], likeness,
                         self.concepts.masses(grids), self.concepts, rule or self.fusion_rule(), k,
                         order=self.order if order is None else order, confidence=self.concepts.confidence(grids),
                         transparent=transparent) if len(grids) else []
        out["fused"] = [[(t, s) for t, s, _ in f] for f in fused]
        return out, fused

    def real_photo_grids(self, photo_set: str = "dev") -> "tuple[np.ndarray, list[list[str]], list[str]]":
        """(grids, gold tags, ids) of a real-photo set, read from the installed packages."""
        grids, gold, ids, _ = self.real_photo_set(photo_set)
        return grids, gold, ids

    def real_photo_set(self, photo_set: str = "dev"
                       ) -> "tuple[np.ndarray, list[list[str]], list[str], list[Optional[list[str]]]]":
        """(grids, gold tags, ids, judged acceptable tags or ``None`` per photo) of a real-photo set."""
        photos = load_photo_set(photo_set)
        return (photo_grids(self.encoder, photos), [p.tags for p in photos], [p.id for p in photos],
                acceptable_tags(photos))

    def example_transparency(self, rows: list[int]) -> np.ndarray:
        """Each dataset image's share of see-through pixels (the cut-out guard's input), read from its file."""
        return np.array([transparency(load_any(self.dataset.examples[i].image)) for i in rows], np.float32)

    def photo_set_transparency(self, photo_set: str) -> np.ndarray:
        """Each photo's share of see-through pixels in a real-photo set, read from its file."""
        return np.array([transparency(load_any(p.path)) for p in load_photo_set(photo_set)], np.float32)

    def evaluate(self, split: str = "test", photo_set: Optional[str] = "dev",
                 check_set: Optional[str] = "check") -> dict[str, Any]:
        """All five methods on the held-out split and on the real-photo sets; also saved as ``evaluate.json``.

        Returns ``{method: metrics}`` for the Tux Paint (or other dataset) split, plus ``real_photos``:
        ``{method: metrics}`` on the photos of ``photo_set`` (the dev set everything is tuned on; ``None``
        skips it) and ``real_photos_check`` on ``check_set`` (object photos never tuned on: the held-out
        estimate; skipped with a warning when its package is not installed). Every method's row has
        precision/recall/F1 at 1, 3, 5, BLEU, hit@1, and 95 % bootstrap intervals of the headline four.
        """
        b = self.baselines()
        rows = [i for i, e in enumerate(self.dataset.examples) if e.split == split]
        if not rows:
            log.warning("the %s split of %s is empty; its metrics are all 0", split, self.dataset.root)
        gold = [self.dataset.examples[i].tags for i in rows]
        table: dict[str, Any] = self._score_all(b["grids"][rows], gold,
                                                transparent=self.example_transparency(rows))
        info = {"split": split, "images": len(rows), "knn_neighbours": b["knn"].neighbours,
                "beam": self.tagger.beam, "dataset": self.dataset.manifest.get("name"),
                "model_key": self.manifest.get("key"), "fusion": self.fusion_rule().to_json(),
                "fusion_gate": self.gate_name(),
                "concept_ranking": self.concepts.ranking.to_json()}
        real = None
        if photo_set:
            grids, photo_gold, _, judged = self.real_photo_set(photo_set)
            # the dev photos are the gate's own examples: each is scored by a gate fitted without it
            likeness = self.dev_likeness(grids) if photo_set == "dev" else None
            real = self._score_all(grids, photo_gold, judged, likeness,
                                   transparent=self.photo_set_transparency(photo_set))
            table["real_photos"] = real
            info["real_photos"] = {"set": photo_set, "images": len(photo_gold)}
        if check_set and check_set != photo_set:
            try:
                grids, check_gold, check_ids, judged = self.real_photo_set(check_set)
            except DataUnavailable as exc:
                log.warning("no held-out photo check: %s", exc)
            else:
                table["real_photos_check"] = self._score_all(grids, check_gold, judged, ids=check_ids,
                                                             transparent=self.photo_set_transparency(check_set))
                info["real_photos_check"] = {"set": check_set, "images": len(check_gold)}
        if split == "test":
            write_json(self.folder / "evaluate.json",
                       {"results": {m: table[m] for m in EVALUATED}, "real_photos": real,
                        "real_photos_check": table.get("real_photos_check"), "info": info})
        return table

    def _score_all(self, grids: np.ndarray, gold: list[list[str]],
                   acceptable: Optional[list[Optional[list[str]]]] = None,
                   likeness: Optional[np.ndarray] = None, ids: Optional[list[str]] = None,
                   transparent: Optional[np.ndarray] = None) -> dict[str, Any]:
        """Every method's metrics; with judged ``acceptable`` lists also ``precision@5_acceptable``/``hit@1_acceptable``
        and the ``ceiling`` of any ranking over both taggers' candidates; with ``ids`` the fused top 5 per photo."""
        lists, fused = self._all_lists(grids, 5, likeness=likeness, candidates=CEILING_CONCEPTS,
                                       transparent=transparent)
        preds = {name: [p[:5] for p in lists[name]] for name in EVALUATED}
        table: dict[str, Any] = {name: {**score_predictions(preds[name], gold), **headline_scores(preds[name], gold)}
                                 for name in EVALUATED}
        if acceptable is not None and any(a is not None for a in acceptable):
            for name in EVALUATED:
                judged = judged_scores(preds[name], acceptable)
                table[name].update({k: v for k, v in judged.items() if k != "ci95"})
                table[name]["ci95"].update(judged["ci95"])
            # how far any fusion rule could go: a perfect ranking of everything both taggers propose
            pool = [[t for t, _ in c] + [t for t, _ in m] for c, m in zip(lists["concepts"], lists["model"])]
            table["ceiling"] = {**candidate_ceiling(pool, acceptable),
                                "candidates": f"concept tagger's top {CEILING_CONCEPTS} and decoder's top {CANDIDATES}"}
        if ids is not None:
            table["per_photo"] = [{"photo": pid, "fused": [[t, src] for t, _, src in f[:5]],
                                   "acceptable": None if a is None else sum(t in set(a) for t, _, _ in f[:5])}
                                  for pid, f, a in zip(ids, fused, acceptable or [None] * len(ids))]
        return table


def open_vocabulary_tagger(name_or_dir: str, *, allow_download: bool = False) -> OpenVocabTagger:
    """The opt-in open-vocabulary tagger (``hashtag.openvocab``): weights from a folder, or the hub only when
    ``allow_download``; ``OpenVocabUnavailable`` (a ``DataUnavailable``) with one clear sentence otherwise."""
    return OpenVocabTagger(name_or_dir, allow_download=allow_download)


def saved_evaluation(dataset_root: str | Path = DEFAULT_DATASET) -> Optional[dict[str, Any]]:
    """The last ``evaluate.json`` written for the served model version, if any (the app shows it)."""
    path = served_dir(Path(dataset_root)) / "evaluate.json"
    try:
        return read_json(path) if path.is_file() else None
    except ArtifactError:
        return None


# ----------------------------------------------------------------------------------------------
# model versions and imported tagged photos (the Data page and the tab's caption)

Permission = tuple[bool, str]


def _allowed(permission: Permission, what: str) -> None:
    """Refuse unless ``core.identity.may_run_heavy`` allowed this person, at the moment they asked."""
    allowed, why = permission
    if not allowed:
        raise VersionError(why or f"Only administrators may {what}.")


def serving_summary(dataset_root: str | Path = DEFAULT_DATASET) -> Optional[dict[str, Any]]:
    """The served version's row of ``list_versions`` (what it was trained on, its val F1@5), if any."""
    return next((row for row in list_versions(dataset_root) if row["serving"]), None)


def switch_version(dataset_root: str | Path, version: str, *, permission: Permission) -> dict[str, Any]:
    """An administrator serves ``version`` by hand (also one a retrain kept because it scored lower)."""
    _allowed(permission, "switch the served model")
    return set_serving(dataset_root, version, reason="switched by an administrator", by="administrator")


def import_photos(store, profile: str, archive: bytes, *, label: str, permission: Permission) -> dict[str, Any]:
    """Store a zip of tagged photos as an import of ``profile`` (``hashtag.imports``); returns its report.

    An administrator's import is accepted for training at once; anyone else's waits on the Review page.
    Raises ``ImportRefused`` (one sentence, nothing stored) for an unusable zip.
    """
    return import_zip(store, profile, archive, label=label, reviewer=profile if permission[0] else None)


IMPORT_KIND, IMPORT_HANDLER = "hashtag.import", "hashtag.jobs:import_job"


def queue_import(profile: str, archive: bytes, *, label: str, permission: Permission,
                 dataset_root: str | Path = DEFAULT_DATASET, images_dir: Optional[str | Path] = None,
                 queue=None) -> int:
    """Keep the uploaded zip under a random name and queue its import for ``profile``; returns the job id.

    Why a job: decoding, shrinking and storing up to a thousand photos takes a minute of CPU, which must not
    run in the app. The permission is taken now, at the click: an administrator's import is accepted for
    training at once (and queues a retrain when stored), anyone else's waits for review.
    """
    if not archive:
        raise ImportRefused("Choose a .zip of photos with their hashtags first.")
    queue = queue or JobQueue()
    params = {"profile": profile, "upload": str(save_upload(archive, ".zip")), "label": str(label)[:200],
              "reviewer": profile if permission[0] else None, "dataset": str(Path(dataset_root).resolve()),
              "images_dir": str(images_dir) if images_dir else None}
    job = queue.submit(IMPORT_KIND, IMPORT_HANDLER, "Import tagged photos", params, owner=profile)
    job_worker.ensure_worker(queue.url)
    return job


def import_jobs(profile: str, limit: int = 3, queue=None) -> list:
    """This person's latest photo imports, newest first (nobody else's: the reports name their files)."""
    if not profile:
        return []
    return [j for j in (queue or JobQueue()).list(limit=50) if j.kind == IMPORT_KIND and j.owner == profile][:limit]


def imports(store, profile: Optional[str] = None) -> list:
    """Imports of tagged photos (one profile's, or everyone's), newest first."""
    return store.import_batches(profile)


def remove_import(store, batch_id: int, *, profile: str, permission: Permission) -> dict[str, int]:
    """Remove one import and its photos: its owner may, and so may an administrator."""
    return store.remove_import(batch_id, None if permission[0] else profile)


def review_import(store, batch_id: int, decision: str, *, reviewer: str, permission: Permission) -> int:
    """An administrator accepts (for training) or rejects every photo of one import; returns how many."""
    if not permission[0]:
        raise FeedbackError(permission[1] or "Only administrators may review imports.")
    return store.review_import(batch_id, decision, reviewer or "this-machine")


def queue_retrain(dataset_root: str | Path = DEFAULT_DATASET, *, store, permission: Permission,
                  owner: Optional[str] = None, config: Optional[dict[str, Any]] = None, queue=None) -> int:
    """Queue "retrain with imported photos" (an administrator's decision); returns the job id.

    A retrain still waiting in the queue will read every accepted photo when it starts, so a second request
    while one waits returns that job instead of stacking another.
    """
    _allowed(permission, "retrain the hashtag model")
    root = str(Path(dataset_root).resolve())
    queue = queue or JobQueue()
    waiting = [j for j in queue.list(limit=50, statuses=["queued"])
               if j.kind == RETRAIN_KIND and j.params.get("dataset") == root]
    if waiting:
        return waiting[0].id
    params = {"dataset": root, "images_dir": str(store.images_dir), "config": config or {}}
    job = queue.submit(RETRAIN_KIND, RETRAIN_HANDLER, "Retrain the hashtag model with imported photos", params,
                       owner=owner)
    job_worker.ensure_worker(queue.url)
    return job


def retrain_jobs(limit: int = 10, queue=None) -> list:
    """The latest retrains, newest first (every session sees the same list)."""
    return [j for j in (queue or JobQueue()).list(limit=50) if j.kind == RETRAIN_KIND][:limit]


def cancel_retrain(job_id: int, *, permission: Permission, queue=None):
    _allowed(permission, "cancel retrains")
    return (queue or JobQueue()).cancel(job_id)


# ----------------------------------------------------------------------------------------------
# the contract every tab's service offers (core.contract)

#: Who proposed a tag, as the tab and the CLI name it.
SOURCE_LABELS = {"learned": "decoder", "concept": "concept", "both": "decoder + concept", "baseline": "baseline",
                 "open-vocabulary": "open-vocabulary", "concept+open-vocabulary": "concept + open-vocabulary",
                 "both+open-vocabulary": "decoder + concept + open-vocabulary",
                 "learned+open-vocabulary": "decoder + open-vocabulary", "user": "you"}
CONCEPT_LIMITS = ("Concept tags come from the 1,000 ImageNet concepts the encoder was trained on (animals, plants, "
                  "vehicles, food, objects, scenes), climbed up WordNet to everyday words; they cannot name people, "
                  "places, events or moods.")
LIMITS = (
    CONCEPT_LIMITS,
    "The decoder learned from clip art (Tux Paint stamps); on real photos its own words take part only where "
    "the photo gate finds the picture clip-art-like.",
    "The real-photo sets are small (tens of photos): their intervals are wide.",
)

#: Loaded services, one per (dataset, served checkpoint version), shared by the app's sessions and the CLI.
_HANDLES = Handles(keep=2)


def hashtag_line(tags: list[str]) -> str:
    """``#cat #animal …``: what a person pastes under a post."""
    return " ".join(f"#{t}" for t in tags)


def typed_tags(text: str) -> list[str]:
    """``#beach, sunset dog`` → ``["beach", "sunset", "dog"]`` (the store checks each tag)."""
    return [t for t in re.split(r"[\s,#]+", text or "") if t]


def checkpoint_version(dataset_root: str | Path = DEFAULT_DATASET) -> Optional[float]:
    """The served checkpoint's version: changes whenever it changes (a retrain, a switch); None without one."""
    root = Path(dataset_root)
    folder = served_dir(root)
    files = [folder / "hashtag.safetensors", folder / "hashtag.json"]
    if not all(f.is_file() for f in files):
        return None
    pointer = model_dir(root) / "serving.json"
    return max(f.stat().st_mtime for f in files + ([pointer] if pointer.is_file() else []))


def sources() -> list[Source]:
    """The dataset whose trained model the tab serves, labelled with the served model version."""
    root = Path(DEFAULT_DATASET)
    version = checkpoint_version(root)
    label = root.name
    if version is not None:
        try:
            label = f"{root.name} (model {serving_version(root)})"
        except (ArtifactError, VersionError, OSError) as exc:
            log.info("no served version name: %s", exc)
    return [source_of(str(root), "dataset", None, label, version=version)]


def open(name: str) -> HashtagService:  # noqa: A001 - the contract's name for "give me one"
    """The served model of dataset ``name`` with its encoder, loaded once per checkpoint version and shared;
    ``ArtifactError`` with the command to run when nothing is trained."""
    version = checkpoint_version(name)
    if version is None:
        raise ArtifactError(f"No trained hashtag model for {name}; train it with `{TRAIN_HINT}`.")
    return _HANDLES.get(str(Path(name).resolve()), version, lambda: HashtagService(name))


def query(handle: HashtagService, request: Request, person: Optional[Person] = None) -> Answer:
    """Hashtags for ``request.image``, best first; ``request.options``: ``method`` (default ``fused``) and
    ``open_vocabulary`` (an opt-in tagger). The note is the photo gate's verdict (``extra["picture"]``)."""
    if request.image is None:
        raise ValueError("Upload a photo to get hashtags.")
    method = str(request.options.get("method", "fused"))
    if method != "fused":
        return Answer(handle.predict(request.image, method=method, k=request.k))
    results, picture = handle.predict_fused(request.image, k=request.k,
                                            open_vocabulary=request.options.get("open_vocabulary"))
    return Answer(results, picture.sentence(), {"picture": picture})


def record_feedback(person: Person, handle: HashtagService, item: str, signal: str) -> int:
    """Hashtags learn from a corrected tag list kept with its photo, not from a 👍 on one tag: ``save_tags``.

    Refused with one sentence, so a caller that treats every tab alike learns where the feedback goes.
    """
    # the feedback store (SQLAlchemy) loads where feedback is written, not for `python -m hashtag predict`
    from core.feedback import FeedbackError

    raise FeedbackError("The Hashtags tab keeps your corrected tag list with its photo (save_tags), "
                        "not a like of one tag.")


def save_tags(person: Person, handle: HashtagService, image: ImageSource, suggested: list[str], final: list[str],
              model_version: str):
    """Keep the photo with ``person``'s final tags; what they kept, removed and added becomes training feedback."""
    return record_tag_edits(person.store, str(person.profile), image, suggested, final, model_version=model_version)


def explain(handle: HashtagService, hit: TagResult) -> str:
    """Why a hashtag was proposed: who proposed it, and what its heat map shows."""
    who = SOURCE_LABELS.get(hit.source, hit.source)
    if hit.source.startswith("learned"):
        why = "the decoder wrote it, looking where its attention map is bright"
    elif hit.source.startswith("both"):
        why = "both the decoder and the ImageNet concepts proposed it"
    elif hit.source.startswith("concept"):
        why = "ImageNet classes under this word are likely in the photo, where the class activation map is bright"
    elif hit.source == "open-vocabulary":
        why = "the open-vocabulary model matched the whole photo to this word"
    else:
        why = "the baseline proposed it from similar training images or tag frequency"
    return f"#{hit.tag} ({who}, {hit.score:.0%}): {why}."


def card(name: str) -> ModelCard:
    """The served model's card: decoder and encoder from its checkpoint manifest; test and real-photo quality
    with intervals from its ``evaluate.json``, else the committed ``bench/results/hashtag_evaluate.json``."""
    root = Path(name)
    version = checkpoint_version(root)
    manifest = read_results(served_dir(root) / "hashtag.json") or {}
    data = manifest.get("dataset", {})
    enc = manifest.get("encoder", {})
    model = (f"soft-attention 2-layer LSTM over a frozen {enc.get('backbone', 'EfficientNet')} 7×7 grid, fused "
             "with ImageNet concept words")
    about = (f"{data.get('name', root.name)}: {data.get('splits', {}).get('train', '?')} training images of "
             f"{data.get('images', '?')}" if data else f"{root.name} (no model trained)")
    path, metrics = "", ()
    for path_, found in _evaluations(root):
        metrics = _hashtag_metrics(found)
        if metrics:
            path = str(path_)
            break
    return ModelCard(root.name, model, about, version, built_date(version), metrics, path,
                     protocol=("held-out test split of the dataset (F1@5 against its tags); real photos: acceptable "
                               "tags judged by a person") if metrics else "",
                     limits=LIMITS, command="python -m hashtag evaluate --json")


def _evaluations(root: Path) -> "list[tuple[Path, dict[str, Any]]]":
    """The served version's own evaluation, then the committed one, both as ``{results, real_photos, ...}``."""
    out = []
    own = read_results(served_dir(root) / "evaluate.json")
    if own and "results" in own:
        out.append((served_dir(root) / "evaluate.json", own))
    path = committed("hashtag_evaluate")
    flat = read_results(path)  # the committed file keeps the methods at the top level
    if flat:
        out.append((path, {"results": {m: flat[m] for m in EVALUATED if m in flat},
                           "real_photos": flat.get("real_photos"), "real_photos_check": flat.get("real_photos_check")}))
    return out


def _hashtag_metrics(found: dict[str, Any]) -> "tuple[Metric, ...]":
    """Test F1@5 of the product and its baselines, then the fused list's acceptable share on real photos."""
    test = metrics_of(found.get("results") or {}, [(m, "f1@5") for m in ("fused", "model", "knn", "most_frequent")])
    real = []
    for key, label in (("real_photos_check", "held-out real photos"), ("real_photos", "real dev photos")):
        for m in metrics_of(found.get(key) or {}, [("fused", "precision@5_acceptable")]):
            real.append(replace(m, method=f"fused on {label}"))
    return test + tuple(real)
