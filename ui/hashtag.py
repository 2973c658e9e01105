"""Hashtags tab: upload a photo → hashtags with scores, a copyable ``#tag`` line, and where each tag looked.

The only hashtag module that imports streamlit. The model, encoder and baselines load once per
process and checkpoint version through ``st.cache_resource``; hashtags for a photo are cached on the
photo's hash and the options (``st.cache_data``), so a rerun with the same photo costs nothing.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import streamlit as st
from PIL import Image

from core.contract import Person, Request
from core.images import letterbox, load_image
from core.jobs import JobError
from hashtag import service as hashtags
from hashtag.service import (CONCEPT_LIMITS, DEFAULT_DATASET, SOURCE_LABELS, hashtag_line, open_vocabulary_tagger,
                             queue_retrain, serving_summary, typed_tags)
from ui import model_card
from ui import profile as profiles
from ui.common import (PERSIST, RESULT_ENTRIES, RESULT_TTL, image_digest, image_upload, show_error,
                       Busy, heavy_slot, md_code, md_text)

log = logging.getLogger(__name__)

TRAIN_COMMAND = "python -m hashtag train"


def _service(dataset_root: str):
    """The served model, loaded once per checkpoint version by the service (shared by every session)."""
    with st.spinner("Loading the hashtag model…"):
        return hashtags.open(dataset_root)


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _predict(dataset_root: str, version: float, digest: str, method: str, k: int, _image: Image.Image) -> list:
    """Hashtags for one photo (by content hash) and options: computed once per model version, whichever session asks."""
    return hashtags.query(_service(dataset_root), Request(image=_image, k=k, options={"method": method})).hits


@st.cache_resource(show_spinner="Loading the open-vocabulary model…", max_entries=1)
def _open_vocabulary(name_or_dir: str, allow_download: bool):
    """The opt-in OpenCLIP tagger (its vocabulary's text embeddings are cached on disk per model)."""
    return open_vocabulary_tagger(name_or_dir, allow_download=allow_download)


@st.cache_data(show_spinner=False, max_entries=RESULT_ENTRIES, ttl=RESULT_TTL)
def _predict_fused(dataset_root: str, version: float, digest: str, k: int, _image: Image.Image,
                   clip: Optional[tuple[str, bool]] = None) -> tuple:
    """Fused hashtags and the photo gate's verdict for one photo (by content hash and tagger), computed once."""
    options = {"method": "fused", "open_vocabulary": _open_vocabulary(*clip) if clip else None}
    answer = hashtags.query(_service(dataset_root), Request(image=_image, k=k, options=options))
    return answer.hits, answer.extra["picture"]


def attention_overlay(image: Image.Image, attention: np.ndarray, size: int = 224) -> Image.Image:
    """The image (letterboxed square, as the encoder saw it) with a red heat map of one tag's attention."""
    # matplotlib takes about a second to import; only the attention view draws with it
    from matplotlib import colormaps

    canvas = letterbox(image, size)  # exactly the encoder's view, so the heat map lines up
    att = np.asarray(attention, dtype=np.float32)
    att = (att - att.min()) / max(float(att.max() - att.min()), 1e-8)
    heat = Image.fromarray((att * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    rgba = colormaps["jet"](np.asarray(heat, dtype=np.float32) / 255.0)
    heat_rgb = Image.fromarray((rgba[..., :3] * 255).astype(np.uint8))
    return Image.blend(canvas, heat_rgb, 0.45)


def _about(service) -> None:
    """Where the model comes from; its card (held-out quality beside the baselines) in "About this model"."""
    m = service.manifest
    data = m.get("dataset", {})
    source = {"tuxpaint": "Debian's Tux Paint stamps: real images, each with a caption and a category path that "
                          "give its ground-truth hashtags",
              "flickr8k": "Flickr8k photos; hashtags from their captions"}.get(data.get("name", ""), "your CSV")
    text = (f"Trained on **{data.get('name', '?')}** ({data.get('splits', {}).get('train', '?')} training images of "
            f"{data.get('images', '?')}; {source}). Encoder: {m['encoder']['backbone']} 7×7 grid (frozen); "
            f"decoder: soft-attention 2-layer LSTM, best epoch {m.get('best_epoch', m.get('epoch'))}.")
    st.caption(text)
    _version_caption(service)
    model_card.show(hashtags.card, str(service.dataset.root), key="hashtag_card")


def _version_caption(service) -> None:
    """Which model version is served and what it learned from (imports of tagged photos are on the Data tab)."""
    try:
        row = serving_summary(service.dataset.root)
    except Exception as exc:  # noqa: BLE001 - the caption is information; the tab keeps working without it
        log.info("no model version summary: %s", exc)
        return
    if not row:
        return
    users = ""
    if row.get("user_photos"):
        imports = ", ".join(f"#{i}" for i in row.get("imports") or [])
        users = f" + {row['user_photos']} users' tagged photos" + (f" (imports {imports})" if imports else "")
    score = f"; val F1@5 {row['val_f1@5']:.3f}" if isinstance(row.get("val_f1@5"), (int, float)) else ""
    st.caption(f"Model version **{md_text(row['version'])}** (since {md_text(row['created'][:16].replace('T', ' '))}): "
               f"trained on {md_text(row.get('dataset') or '?')}{users}{score}. Imports, retrains and other "
               "versions are on the Data tab.")


def _train_button(dataset_root: str) -> None:
    """No model yet: say how to train one, and queue its training as a background job (never in this thread)."""
    st.info(f"No trained hashtag model yet. Train it in a terminal with `{TRAIN_COMMAND}` "
            "(a few minutes on a CPU), or queue it here; it trains in the background (progress on the Data tab).")
    if st.button("Train the hashtag model now", key="hashtag_train"):
        try:
            job = queue_retrain(dataset_root, store=profiles.store(), permission=profiles.heavy_permission(),
                                owner=profiles.identity().key or None)
        except (JobError, ValueError) as exc:
            st.error(md_text(str(exc)))
            return
        st.success(f"Training queued as job #{job}; follow it on the Data tab under *Tagged photos*. This tab uses "
                   "the model as soon as it is done.")


def chip(result) -> str:
    """One tag as the tab shows it: ``#dog`` · concept · 87 %."""
    return f"{md_code('#' + result.tag)} · {SOURCE_LABELS.get(result.source, result.source)} · {result.score:.0%}"


def map_caption(result) -> str:
    """What the heat map under a tag is: the decoder's attention, or the classifier's class activation map."""
    kind = "attention" if result.source.startswith("learned") else "class activation map"
    return f"{md_text('#' + result.tag)} ({SOURCE_LABELS.get(result.source, result.source)}: {kind})"


def render_results(image: Image.Image, results, *, key: str = "hashtag") -> None:
    """Chips with source and score, the copyable line, and one heat map per tag."""
    if not results:
        st.warning("The model found no hashtags for this image.")
        return
    left, right = st.columns([1, 2])
    with left:
        st.image(image, caption="Your image", width="stretch")
    with right:
        st.markdown("  \n".join(chip(r) for r in results))
        st.code(hashtag_line([r.tag for r in results]), language=None)
        st.caption("Score — learned: how much of the decoder's beam-search probability mass contains the tag; "
                   "concept: the ImageNet probability of the classes under the word (whole photo and its regions), "
                   "scaled down for rare or very broad words; fused tags weigh both.")
    with_maps = [r for r in results if r.attention is not None]
    if with_maps:
        st.markdown("**Where each tag came from in the picture**")
        cols = st.columns(min(5, len(with_maps)))
        for i, r in enumerate(with_maps):
            with cols[i % len(cols)]:
                st.image(attention_overlay(image, r.attention), caption=map_caption(r), width="stretch")


def _save_tags(image: Image.Image, suggested: list[str], key: str, version: str) -> None:
    """Store the image with the final list (read from the widgets at click time, so nothing typed is lost)."""
    final = list(st.session_state.get(f"{key}_keep", [])) + typed_tags(st.session_state.get(f"{key}_add", ""))
    record = profiles.write(lambda db, p: hashtags.save_tags(Person(db, p), None, image, suggested, final, version))
    if record is not None:
        st.session_state["hashtag_saved_note"] = (f"Saved {len(record.tags)} tags with this photo under profile "
                                                  f"{profiles.display_markdown()}; once an administrator accepts "
                                                  "them they join training with "
                                                  "`python -m hashtag train --with-feedback`.")


def tag_editor(image: Image.Image, results, digest: str, version: str) -> None:
    """Remove suggested tags, add your own, and "save tags" keeps the final list with the image."""
    suggested = [r.tag for r in results]
    key = f"hashtag_edit_{digest[:16]}"
    st.markdown("**Your tags**")
    keep = st.multiselect("Suggested tags you keep (remove the wrong ones)", suggested, default=suggested,
                          key=f"{key}_keep", persist_state=PERSIST)
    added = st.text_input("Add your own tags (space or comma separated)", key=f"{key}_add",
                          persist_state=PERSIST, max_chars=500)
    final = list(keep) + [t for t in typed_tags(added) if t not in keep]
    st.code(hashtag_line(final) or "(no tags)", language=None)
    by_tag = {r.tag: r.source for r in results}
    if final:
        st.caption("Where each tag came from: " + " · ".join(
            f"#{t} ({SOURCE_LABELS.get(by_tag.get(t, 'user'), by_tag.get(t, 'user'))})" for t in final))
    st.button("Save tags", key=f"{key}_save", on_click=_save_tags, args=(image, suggested, key, version),
              help="Stores the photo (shrunk, under its content hash) and this list under your profile.")
    profiles.show_write_error()
    note = st.session_state.pop("hashtag_saved_note", None)
    if note:
        st.success(note)


def render(dataset_root: Optional[str] = None) -> None:
    """The Hashtags tab."""
    root = str(dataset_root or DEFAULT_DATASET)
    st.subheader("Hashtags for a photo")
    st.write("Upload a photo; a soft-attention LSTM trained on captioned images writes hashtags, the encoder's "
             "ImageNet concepts add everyday words for real photos, and each tag shows where in the picture it came "
             "from.")
    st.caption(CONCEPT_LIMITS)
    version = hashtags.checkpoint_version(root)
    if version is None:
        _train_button(root)
        return
    try:
        service = _service(root)
    except Exception as exc:  # noqa: BLE001 - stale/corrupt model (ArtifactError) or worse: say how to fix it
        show_error(exc, "The hashtag model could not be loaded")
        st.info(f"Retrain it with `{TRAIN_COMMAND} --force`.")
        return
    _about(service)
    c1, c2 = st.columns([3, 1])
    with c2:
        k = st.slider("How many hashtags", 1, 10, 5, key="hashtag_k", persist_state=PERSIST)
        method = st.selectbox("Method", ["fused", "model", "concepts", "knn", "most_frequent"], key="hashtag_method",
                              persist_state=PERSIST,
                              format_func=lambda m: {"fused": "Fused: learned + concepts",
                                                     "model": "Attention LSTM (learned)",
                                                     "concepts": "ImageNet concepts (WordNet)",
                                                     "knn": "kNN tag transfer (baseline)",
                                                     "most_frequent": "Most frequent (baseline)"}[m])
        clip = _tagger_settings() if method == "fused" else None
    with c1:
        image = image_upload("Photo (jpg, png, webp, gif)", key="hashtag_upload")
    _batch(root, version, method, k, clip)
    if image is None:
        return
    try:
        with st.spinner("Writing hashtags…"), heavy_slot():
            picture = None
            if method == "fused":
                results, picture = _predict_fused(root, version, image_digest(image), k, image, clip)
            else:
                results = _predict(root, version, image_digest(image), method, k, image)
    except Busy as exc:
        st.info(str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - one readable message instead of a traceback
        show_error(exc, "Could not tag that image")
        return
    if picture is not None:
        st.caption(picture.sentence())
    render_results(image, results)
    if results:
        tag_editor(image, results, image_digest(image), f"{method}@{version:.0f}")


def _tagger_settings() -> Optional[tuple[str, bool]]:
    """The opt-in open-vocabulary tagger: ``(model folder or hub name, allow download)``, or None (concepts only)."""
    tagger = st.selectbox("Tagger", ["concepts", "clip"], key="hashtag_tagger", persist_state=PERSIST,
                          format_func=lambda t: {"concepts": "ImageNet concepts (ships offline)",
                                                 "clip": "Open vocabulary (OpenCLIP, your weights)"}[t])
    if tagger != "clip":
        return None
    name = st.text_input("OpenCLIP model folder (or hub name)", key="hashtag_clip_model", persist_state=PERSIST,
                         help="A folder with open_clip_config.json and open_clip_model.safetensors; a hub name such "
                              "as ViT-B-32/laion2b_s34b_b79k needs the download box.")
    allow = st.checkbox("Allow downloading the weights from the hub", key="hashtag_clip_download",
                        persist_state=PERSIST)
    if not name.strip():
        st.caption("Give a model folder to add open-vocabulary words; until then the concepts are used.")
        return None
    try:
        _open_vocabulary(name.strip(), allow)
    except Exception as exc:  # noqa: BLE001 - no folder, no weights, download not allowed: say which
        show_error(exc, "The open-vocabulary model could not be loaded")
        return None
    st.caption("Open-vocabulary words are zero-shot; their quality with real weights was not measured here.")
    return name.strip(), allow


def batch_rows(named_images, tag_one) -> list[dict]:
    """One row per upload: its hashtags (with source) and the gate's verdict, or the error that stopped it."""
    rows = []
    for name, image in named_images:
        try:
            if isinstance(image, Exception):
                raise image
            results, picture = tag_one(image)
        except Exception as exc:  # noqa: BLE001 - this photo's error, the others go on
            rows.append({"photo": name, "hashtags": "", "verdict": "", "error": str(exc)})
            continue
        rows.append({"photo": name, "hashtags": " ".join(f"#{r.tag} ({SOURCE_LABELS.get(r.source, r.source)})"
                                                          for r in results),
                     "verdict": "" if picture is None else ("photo" if picture.is_photo else "clip-art-like"),
                     "error": ""})
    return rows


#: Photos tagged in one go from the "several photos" uploader (each also under the 20 MB upload cap).
MAX_BATCH = 20


def _batch(root: str, version: float, method: str, k: int, clip: Optional[tuple[str, bool]]) -> None:
    """Several photos at once: one row each, models loaded once; an unreadable file gets its own error row."""
    with st.expander("Several photos at once"):
        files = st.file_uploader("Photos", type=["jpg", "jpeg", "png", "webp", "gif"], accept_multiple_files=True,
                                 key="hashtag_batch")
        if not files:
            return
        if len(files) > MAX_BATCH:
            st.warning(f"{len(files)} photos given; the first {MAX_BATCH} are tagged (one batch at a time keeps the "
                       "app responsive for everyone).")
            files = files[:MAX_BATCH]
        named = []
        for f in files:
            try:
                named.append((f.name, load_image(f.getvalue())))
            except Exception as exc:  # noqa: BLE001 - kept as this file's error row
                named.append((f.name, exc))

        def tag_one(image):
            if method == "fused":
                return _predict_fused(root, version, image_digest(image), k, image, clip)
            return _predict(root, version, image_digest(image), method, k, image), None

        try:
            with st.spinner(f"Tagging {len(named)} photos…"), heavy_slot():
                rows = batch_rows(named, tag_one)
        except Busy as exc:
            st.info(str(exc))
            return
        st.dataframe(rows, hide_index=True)
