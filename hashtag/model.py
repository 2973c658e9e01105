"""Show, Attend and Tell for hashtags: encoder grid → soft attention → 2-layer LSTM, one tag per step.

The CNN is frozen and lives in ``core.encoders`` (its 7×7×1280 grid is cached once per dataset); this
module is only the decoder, so it trains on a CPU in minutes. Per step t:

    α_t = softmax(w · tanh(W_e a + W_h h²_{t-1}))        soft attention over the 49 regions
    z_t = σ(f_β(h²_{t-1})) ⊙ Σ_i α_ti a_i                 gated context (Xu et al. 2015, §4.2.1)
    h¹_t = LSTM₁([E y_{t-1}; z_t]),  h²_t = LSTM₂(h¹_t)   2 layers, embedding 256, hidden 512
    p(y_t) = softmax(W_o dropout([h²_t; z_t]))

h/c of both layers start from the mean grid vector. Training adds the doubly stochastic penalty
λ Σ_i (1 − Σ_t α_ti)² so that, across its tags, the decoder looks at every part of the image.

Decoding is beam search with tags already emitted masked out (a hashtag list never repeats), ending at
``<end>``; each tag's score is the probability mass of the finished beams that contain it, which ranks
tags by how sure the model is of them rather than by where they sit in one sequence.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from core.artifacts import ArtifactError, atomic_path, read_json, write_json
from hashtag.data import Vocab

log = logging.getLogger(__name__)

PAD_ID, START_ID, END_ID = 0, 1, 2


@dataclass
class DecoderConfig:
    """Architecture hyper-parameters, saved in the checkpoint manifest so a model rebuilds itself."""

    vocab_size: int
    encoder_dim: int = 1280
    embed_dim: int = 256
    hidden_dim: int = 512
    attention_dim: int = 256  # the W_e·a projection over 49×1280 regions dominates a CPU step; 256 halves it
    layers: int = 2
    dropout: float = 0.5
    feature_dropout: float = 0.2
    init_pool: str = "mean"  # "mean" (the paper) or "meanmax": h0/c0 also see the max-pooled grid kNN searches on

    def to_json(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    """Additive (Bahdanau) attention over the grid's regions."""

    def __init__(self, encoder_dim: int, hidden_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.enc = nn.Linear(encoder_dim, attention_dim)
        self.dec = nn.Linear(hidden_dim, attention_dim)
        self.full = nn.Linear(attention_dim, 1)

    def forward(self, feats: torch.Tensor, feats_proj: torch.Tensor, h: torch.Tensor
                ) -> "tuple[torch.Tensor, torch.Tensor]":
        """feats (B,L,E), feats_proj (B,L,A) precomputed once per image, h (B,H) → context (B,E), α (B,L)."""
        scores = self.full(torch.tanh(feats_proj + self.dec(h).unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(scores, dim=1)
        return torch.bmm(alpha.unsqueeze(1), feats).squeeze(1), alpha


@dataclass
class Hypothesis:
    """One finished beam: tag ids (no specials), its log-probability, per-step probabilities and α maps."""

    ids: list[int]
    logprob: float
    step_probs: list[float] = field(default_factory=list)
    alphas: list[np.ndarray] = field(default_factory=list)


class HashtagDecoder(nn.Module):
    """The attention LSTM decoder. Input: grids (B, C, h, w) from the frozen encoder."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = c = config
        self.feat_norm = nn.LayerNorm(c.encoder_dim)
        self.attention = Attention(c.encoder_dim, c.hidden_dim, c.attention_dim)
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=PAD_ID)
        init_dim = c.encoder_dim * (2 if c.init_pool == "meanmax" else 1)
        self.init_h = nn.Linear(init_dim, c.layers * c.hidden_dim)
        self.init_c = nn.Linear(init_dim, c.layers * c.hidden_dim)
        self.cells = nn.ModuleList(
            [nn.LSTMCell(c.embed_dim + c.encoder_dim if i == 0 else c.hidden_dim, c.hidden_dim) for i in range(c.layers)]
        )
        self.f_beta = nn.Linear(c.hidden_dim, c.encoder_dim)
        self.dropout = nn.Dropout(c.dropout)
        self.feat_dropout = nn.Dropout(c.feature_dropout)
        self.out = nn.Linear(c.hidden_dim + c.encoder_dim, c.vocab_size)

    # -- pieces -------------------------------------------------------------------------------
    def prepare(self, grids: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor, list, list]":
        """grids (B,C,h,w) → regions (B,L,C), their attention projection, and initial (h, c) per layer."""
        b, ch = grids.shape[:2]
        feats = self.feat_norm(grids.float().reshape(b, ch, -1).transpose(1, 2))
        feats = self.feat_dropout(feats)
        mean = feats.mean(dim=1)
        if self.config.init_pool == "meanmax":
            mean = torch.cat([mean, feats.max(dim=1).values], dim=1)
        hs = list(torch.tanh(self.init_h(mean)).chunk(self.config.layers, dim=1))
        cs = list(self.init_c(mean).chunk(self.config.layers, dim=1))
        return feats, self.attention.enc(feats), hs, cs

    def step(self, tokens: torch.Tensor, feats: torch.Tensor, proj: torch.Tensor, hs: list, cs: list
             ) -> "tuple[torch.Tensor, torch.Tensor, list, list]":
        """One decoding step: previous tokens (B,) → logits (B,V), α (B,L), new states."""
        context, alpha = self.attention(feats, proj, hs[-1])
        context = torch.sigmoid(self.f_beta(hs[-1])) * context
        x = torch.cat([self.embedding(tokens), context], dim=1)
        new_h, new_c = [], []
        for i, cell in enumerate(self.cells):
            h, c = cell(x, (hs[i], cs[i]))
            new_h.append(h)
            new_c.append(c)
            x = self.dropout(h) if i + 1 < len(self.cells) else h
        logits = self.out(self.dropout(torch.cat([x, context], dim=1)))
        return logits, alpha, new_h, new_c

    def forward(self, grids: torch.Tensor, tokens: torch.Tensor, sample_prob: float = 0.0,
                generator: Optional[torch.Generator] = None) -> "tuple[torch.Tensor, torch.Tensor]":
        """Teacher forcing. tokens (B,T) = ``<start> t1 … <end> <pad>…`` → logits (B,T-1,V), α (B,T-1,L).

        ``sample_prob`` > 0 is scheduled sampling: each step's input is, with that probability, the model's
        own previous argmax instead of the true tag (so it learns to continue after its own mistakes).
        """
        feats, proj, hs, cs = self.prepare(grids)
        logits, alphas = [], []
        for t in range(tokens.shape[1] - 1):
            inp = tokens[:, t]
            if sample_prob > 0 and t > 0:
                own = logits[-1].detach().argmax(dim=1)
                use = torch.rand(inp.shape[0], generator=generator) < sample_prob
                inp = torch.where(use & (inp != PAD_ID), own, inp)
            out, alpha, hs, cs = self.step(inp, feats, proj, hs, cs)
            logits.append(out)
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1)

    # -- decoding ------------------------------------------------------------------------------
    @torch.no_grad()
    def beam_search(self, grid: torch.Tensor, *, beam: int = 5, max_len: int = 8,
                    banned: Optional[list[int]] = None) -> list[Hypothesis]:
        """Beam search for one image's grid (C,h,w): finished hypotheses, most probable first.

        A tag already in a hypothesis is masked out (no repeats); ``<pad>``/``<start>`` and ``banned`` ids
        never appear; after ``max_len`` tags ``<end>`` is forced. Length is not normalised: the
        probability of a whole tag list is what the tag scores are built from.
        """
        was_training = self.training
        self.eval()
        feats, proj, hs, cs = self.prepare(grid.unsqueeze(0))
        vocab = self.config.vocab_size
        never = torch.zeros(vocab, dtype=torch.bool)
        never[[PAD_ID, START_ID]] = True
        if banned:
            never[banned] = True
        seqs: list[list[int]] = [[]]
        probs: list[list[float]] = [[]]
        alps: list[list[np.ndarray]] = [[]]
        scores = torch.zeros(1)
        tokens = torch.tensor([START_ID])
        finished: list[Hypothesis] = []
        for t in range(max_len + 1):
            n = len(seqs)
            logits, alpha, hs_n, cs_n = self.step(
                tokens, feats.expand(n, -1, -1), proj.expand(n, -1, -1), hs, cs
            )
            logp = F.log_softmax(logits, dim=1)
            mask = never.unsqueeze(0).repeat(n, 1)
            for i, seq in enumerate(seqs):
                if seq:
                    mask[i, seq] = True
            if t == max_len:  # force the end
                mask[:, :] = True
                mask[:, END_ID] = False
            logp = logp.masked_fill(mask, -math.inf)
            total = (scores.unsqueeze(1) + logp).view(-1)
            k = min(beam, int(torch.isfinite(total).sum()))
            top, idx = total.topk(k)
            keep_rows, keep_tok, keep_score = [], [], []
            for s, flat in zip(top.tolist(), idx.tolist()):
                row, tok = divmod(flat, vocab)
                p = float(logp[row, tok].exp())
                if tok == END_ID:
                    finished.append(Hypothesis(list(seqs[row]), s, probs[row] + [p], list(alps[row])))
                else:
                    keep_rows.append(row)
                    keep_tok.append(tok)
                    keep_score.append(s)
            if len(finished) >= beam or not keep_rows:
                break
            a_np = alpha.numpy()
            seqs = [seqs[r] + [tok] for r, tok in zip(keep_rows, keep_tok)]
            probs = [probs[r] + [float(logp[r, tok].exp())] for r, tok in zip(keep_rows, keep_tok)]
            alps = [alps[r] + [a_np[r]] for r in keep_rows]
            rows = torch.tensor(keep_rows)
            hs = [h[rows] for h in hs_n]
            cs = [c[rows] for c in cs_n]
            scores = torch.tensor(keep_score)
            tokens = torch.tensor(keep_tok)
        if was_training:
            self.train()
        finished.sort(key=lambda h: -h.logprob)
        return finished[:beam]


def tag_scores(hyps: list[Hypothesis]) -> "list[tuple[int, float, Optional[np.ndarray]]]":
    """Rank tags by the normalised probability mass of the beams containing them.

    Returns ``(tag id, score in [0, 1], attention map of the best beam that emitted it)``, best first;
    ties keep the order of the most probable beam. Why not just the best beam: a single beam is often
    three tags long; summing over beams yields a calibrated, longer ranked list (better F1@5 on val).
    """
    if not hyps:
        return []
    logps = np.array([h.logprob for h in hyps])
    w = np.exp(logps - logps.max())
    w /= w.sum()
    score: dict[int, float] = {}
    first: dict[int, tuple[int, int]] = {}
    attn: dict[int, np.ndarray] = {}
    for rank, (h, weight) in enumerate(zip(hyps, w)):
        for pos, tid in enumerate(h.ids):
            score[tid] = score.get(tid, 0.0) + float(weight)
            if tid not in first:
                first[tid] = (rank, pos)
                attn[tid] = h.alphas[pos] if pos < len(h.alphas) else None
    order = sorted(score, key=lambda t: (-round(score[t], 9), first[t]))
    return [(t, score[t], attn[t]) for t in order]


def masked_loss(logits: torch.Tensor, alphas: torch.Tensor, targets: torch.Tensor, *,
                alpha_c: float = 1.0, label_smoothing: float = 0.1) -> "tuple[torch.Tensor, torch.Tensor]":
    """Cross-entropy over real steps + the doubly stochastic attention penalty; returns (total, ce)."""
    mask = targets != PAD_ID
    ce = F.cross_entropy(logits[mask], targets[mask], label_smoothing=label_smoothing)
    coverage = (alphas * mask.unsqueeze(2)).sum(dim=1)  # (B, L): Σ_t α_ti over the real steps
    # The paper's λ Σ_i (1 − Σ_t α_ti)². With T tags over L = 49 regions it is minimised by an even spread
    # of the tags' attention (Σ_t α_ti = T/L); the paper's λ = 1 is the default, tuned on val.
    penalty = ((1.0 - coverage) ** 2).sum(dim=1).mean()
    return ce + alpha_c * penalty, ce


# ----------------------------------------------------------------------------------------------
# checkpoints and inference (shared by training, the service and the CLI)

TRAIN_HINT = "python -m hashtag train"


def model_dir(dataset_root: Path) -> Path:
    """Checkpoints live beside the dataset they were trained on."""
    return Path(dataset_root) / "model"


def save_checkpoint(model: HashtagDecoder, folder: Path, manifest: dict[str, Any]) -> None:
    """Best weights as safetensors (no pickle) + a JSON manifest (config, vocab, encoder, data, scores)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / "hashtag.safetensors") as tmp:
        save_file(state, str(tmp))
    write_json(folder / "hashtag.json", manifest)


def load_checkpoint(folder: Path) -> tuple[HashtagDecoder, dict[str, Any]]:
    """Rebuild the decoder from its manifest and weights; a missing/corrupt one says how to retrain."""
    folder = Path(folder)
    mpath, wpath = folder / "hashtag.json", folder / "hashtag.safetensors"
    if not mpath.is_file() or not wpath.is_file():
        raise ArtifactError(f"No trained hashtag model in {folder}. Train one with `{TRAIN_HINT}`.")
    manifest = read_json(mpath)
    if manifest.get("kind") != "hashtag-decoder":
        raise ArtifactError(f"{mpath} is not a hashtag model. Retrain with `{TRAIN_HINT} --force`.")
    model = HashtagDecoder(DecoderConfig(**manifest["config"]))
    try:
        model.load_state_dict(load_file(str(wpath)))
    except Exception as exc:  # noqa: BLE001 - safetensors/shape errors → one clear message
        raise ArtifactError(f"{wpath} could not be loaded ({exc}). Retrain with `{TRAIN_HINT} --force`.") from exc
    model.eval()
    return model, manifest


@dataclass
class TagResult:
    """One predicted hashtag and who proposed it (``learned``, ``concept`` or ``both``).

    ``attention`` is the (h, w) map behind the tag: where the decoder looked when it wrote a learned tag,
    or the class activation map of the ImageNet classes behind a concept tag.
    """

    tag: str
    score: float
    attention: Optional[np.ndarray] = None
    source: str = "learned"

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "score": round(float(self.score), 4), "source": self.source}


class ModelTagger:
    """The attention LSTM behind the common ``predict_grids`` interface (beam search + summed-beam scores)."""

    name = "model"

    def __init__(self, model: HashtagDecoder, vocab: Vocab, *, beam: int = 5, max_len: int = 8) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.beam = beam
        self.max_len = max_len

    def explain_grid(self, grid: np.ndarray, k: int = 10) -> list[TagResult]:
        """Tags for one (C,h,w) grid with scores and attention maps, best first, at most ``k``."""
        h, w = grid.shape[1:]
        hyps = self.model.beam_search(torch.from_numpy(np.asarray(grid, np.float32)), beam=self.beam,
                                      max_len=self.max_len)
        out = []
        for tid, score, alpha in tag_scores(hyps)[:k]:
            out.append(TagResult(self.vocab.tags[tid], score, None if alpha is None else alpha.reshape(h, w)))
        return out

    def predict_grids(self, grids: np.ndarray, k: int = 10) -> list[list[tuple[str, float]]]:
        with torch.no_grad():
            return [[(r.tag, r.score) for r in self.explain_grid(g, k)] for g in grids]
