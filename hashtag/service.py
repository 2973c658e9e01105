"""The tab's public face: load a trained model + baselines once, tag an image, explain tags, evaluate.

The CLI and the Streamlit tab both call ``HashtagService``; neither reaches into the model's internals.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from core.artifacts import ArtifactError, read_json, write_json
from core.images import ImageSource, load_image
from core.locks import LazyValue
from hashtag.data import DEFAULT_DATASET, HashtagDataset, Vocab, grid_cache, load_dataset
from hashtag.evaluate import MostFrequent, evaluate_methods, tune_knn
from hashtag.model import TRAIN_HINT, ModelTagger, TagResult, load_checkpoint, model_dir

log = logging.getLogger(__name__)

METHODS = ("model", "knn", "most_frequent")


class HashtagService:
    """A trained model, its dataset, the encoder and both baselines, loaded once (the UI caches this)."""

    def __init__(self, dataset_root: str | Path = DEFAULT_DATASET, *, encoder=None, beam: Optional[int] = None,
                 weights: Optional[str] = None) -> None:
        """``weights``: the state-dict file of a ResNet backbone the model was trained with (Lite0/Lite2 ship)."""
        from core.encoders import get_image_encoder

        self.dataset: HashtagDataset = load_dataset(dataset_root)
        self.model, self.manifest = load_checkpoint(model_dir(self.dataset.root))
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

    def method(self, name: str):
        if name == "model":
            return self.tagger
        if name not in METHODS:
            raise ValueError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.")
        return self.baselines()[name]

    # -- inference --------------------------------------------------------------------------------
    def grid(self, image: ImageSource) -> np.ndarray:
        """One image (path, bytes, PIL...) → its (C,h,w) grid; bad input raises ``core.images.ImageError``."""
        img = load_image(image)
        return self.encoder.grid([img])[0]

    def predict(self, image: ImageSource, *, method: str = "model", k: int = 5) -> list[TagResult]:
        """Hashtags for an image with one method, best first; the model's results carry attention maps."""
        grid = self.grid(image)
        if method == "model":
            return self.tagger.explain_grid(grid, k)
        return [TagResult(t, s) for t, s in self.method(method).predict_grids(grid[None], k)[0]]

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, split: str = "test") -> dict[str, dict[str, float]]:
        """Model and both baselines on the same held-out images; also saved as ``evaluate.json``."""
        b = self.baselines()
        rows = [i for i, e in enumerate(self.dataset.examples) if e.split == split]
        if not rows:
            log.warning("the %s split of %s is empty; its metrics are all 0", split, self.dataset.root)
        gold = [self.dataset.examples[i].tags for i in rows]
        table = evaluate_methods([self.tagger, b["knn"], b["most_frequent"]], b["grids"][rows], gold)
        info = {"split": split, "images": len(rows), "knn_neighbours": b["knn"].neighbours,
                "beam": self.tagger.beam, "dataset": self.dataset.manifest.get("name"),
                "model_key": self.manifest.get("key")}
        if split == "test":
            write_json(model_dir(self.dataset.root) / "evaluate.json", {"results": table, "info": info})
        return table


def saved_evaluation(dataset_root: str | Path = DEFAULT_DATASET) -> Optional[dict[str, Any]]:
    """The last ``evaluate.json`` written for this dataset's model, if any (the app shows it)."""
    path = model_dir(Path(dataset_root)) / "evaluate.json"
    try:
        return read_json(path) if path.is_file() else None
    except ArtifactError:
        return None
