"""Multimodal product search: text (MiniLM) and image (EfficientNet-Lite0) embeddings, fused; see docs/multimodal.md."""
