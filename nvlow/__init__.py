"""nvlow: NVIDIA GPUs in Docker/Podman containers with only the driver installed.

Importing nvlow loads no native library and imports no typer.
"""
__version__ = "0.1.0"
