"""Text in and out: tokenizers with one transformers-style surface (WordPiece, byte-level BPE,
SentencePiece, GLM's), chat templates, and streaming of generated text.
"""
