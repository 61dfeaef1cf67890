"""Datasets read by training: the embedded procedural ``rooms`` and MTAN-layout ``.npy`` folders."""
