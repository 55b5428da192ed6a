"""Low-level bindings to libnvidia-ml.so.1 and libcuda.so.1 (cffi, out-of-line ABI mode).

C names appear only in this package. Nothing here loads a library at import.

May import: the leaf modules and :mod:`nvlow.host` (the root, ld.so.cache and ELF readers that find
the libraries).
"""
