"""Hashtags tab: image → hashtags with a soft-attention LSTM over a frozen CNN grid."""
