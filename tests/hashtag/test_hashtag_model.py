"""Decoder shapes, the one-batch overfit check, beam search rules and tag scoring; plus the metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashtag.evaluate import KnnTransfer, MostFrequent, bleu_scores, prf_at_k, score_predictions
from hashtag.model import END_ID, PAD_ID, START_ID, DecoderConfig, HashtagDecoder, masked_loss, tag_scores


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def test_shapes_follow_the_design():
    cfg = DecoderConfig(vocab_size=40)
    assert (cfg.embed_dim, cfg.hidden_dim, cfg.layers, cfg.encoder_dim) == (256, 512, 2, 1280)
    model = HashtagDecoder(cfg)
    grids = torch.rand(3, 1280, 7, 7)
    tokens = torch.tensor([[START_ID, 5, 6, END_ID, PAD_ID], [START_ID, 7, END_ID, PAD_ID, PAD_ID],
                           [START_ID, 8, 9, 10, END_ID]])
    logits, alphas = model(grids, tokens)
    assert logits.shape == (3, 4, 40)
    assert alphas.shape == (3, 4, 49)
    assert torch.allclose(alphas.sum(-1), torch.ones(3, 4), atol=1e-5)  # soft attention is a distribution
    loss, ce = masked_loss(logits, alphas, tokens[:, 1:])
    assert loss.ndim == 0 and loss >= ce > 0


@pytest.mark.slow(reason="trains the decoder")
def test_one_batch_overfits_and_reproduces_its_tags():
    vocab = 20
    # small widths keep this fast on a busy CPU; test_shapes_follow_the_design covers the real ones
    model = HashtagDecoder(DecoderConfig(vocab_size=vocab, encoder_dim=64, embed_dim=32, hidden_dim=128,
                                         attention_dim=64, dropout=0.0, feature_dropout=0.0))
    g = torch.Generator().manual_seed(1)
    grids = torch.rand(4, 64, 7, 7, generator=g) * 3
    seqs = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [6, 14]]
    tokens = torch.full((4, 6), PAD_ID)
    for i, s in enumerate(seqs):
        tokens[i, : len(s) + 2] = torch.tensor([START_ID, *s, END_ID])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        logits, alphas = model(grids, tokens)
        loss, ce = masked_loss(logits, alphas, tokens[:, 1:], alpha_c=0.0, label_smoothing=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(ce.detach()))
    assert losses[-1] < 0.1 * losses[0]
    for i, s in enumerate(seqs):
        best = model.beam_search(grids[i], beam=3, max_len=6)[0]
        assert best.ids == s


def test_beam_search_never_repeats_and_always_ends():
    model = HashtagDecoder(DecoderConfig(vocab_size=12))
    with torch.no_grad():  # make <end> impossible to prefer: the max_len cut must still end every beam
        model.out.bias.fill_(0.0)
        model.out.bias[END_ID] = -50.0
    hyps = model.beam_search(torch.rand(1280, 7, 7), beam=4, max_len=5)
    assert hyps and len(hyps) <= 4
    for h in hyps:
        assert len(h.ids) == len(set(h.ids)) <= 5
        assert not {PAD_ID, START_ID, END_ID} & set(h.ids)
        assert len(h.alphas) == len(h.ids) and all(a.shape == (49,) for a in h.alphas)
    assert [h.logprob for h in hyps] == sorted((h.logprob for h in hyps), reverse=True)
    ranked = tag_scores(hyps)
    assert len({t for t, _, _ in ranked}) == len(ranked)
    scores = [s for _, s, _ in ranked]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1.0 + 1e-9


def test_metrics_by_hand():
    assert prf_at_k(["a", "b", "x"], ["a", "b", "c", "d"], 3) == pytest.approx((2 / 3, 0.5, 4 / 7))
    assert prf_at_k(["x"], ["a"], 1) == (0.0, 0.0, 0.0)
    assert bleu_scores([["a", "b", "c", "d"]], [["a", "b", "c", "d"]])["bleu4"] == pytest.approx(1.0)
    m = score_predictions([[("a", 1.0), ("b", 0.5)]], [["a", "c"]])
    assert m["precision@1"] == 1.0 and m["recall@1"] == 0.5 and set(m) >= {"f1@5", "bleu1", "bleu4"}


def test_baselines_share_the_interface():
    rng = np.random.default_rng(0)
    grids = rng.random((6, 16, 2, 2)).astype(np.float32)
    tags = [["cat", "animal"], ["cat", "pet"], ["dog", "animal"], ["car"], ["car", "red"], ["tree"]]
    knn = KnnTransfer(grids, tags, [str(i) for i in range(6)], neighbours=1)
    assert [t for t, _ in knn.predict_grids(grids[:1], 5)[0]] == ["cat", "animal"]  # itself first
    mf = MostFrequent(tags)
    assert [t for t, _ in mf.predict_grids(grids[:2], 2)[0]] == ["animal", "car"]


def test_taggers_make_one_table_through_core_evaluation():
    from core.evaluation import Split, evaluate
    from hashtag.evaluate import HEADLINE, TagRanker, headline_scores

    rng = np.random.default_rng(0)
    grids = rng.random((6, 16, 2, 2)).astype(np.float32)
    tags = [["cat", "animal"], ["cat", "pet"], ["dog", "animal"], ["car"], ["car", "red"], ["tree"]]
    methods = [KnnTransfer(grids, tags, [str(i) for i in range(6)], neighbours=1), MostFrequent(tags)]
    table = evaluate([TagRanker(m) for m in methods], Split(grids, tags), HEADLINE, k=5)
    assert list(table) == ["knn", "most_frequent"]
    assert table["knn"].metrics["hit@1"].mean == 1.0  # each image finds itself first
    for m in methods:  # the same numbers as the tab's own headline scores of the method's lists
        own = headline_scores(m.predict_grids(grids, 5), tags)
        assert {k: round(s.mean, 4) for k, s in table[m.name].metrics.items()} == {k: own[k] for k in HEADLINE}
