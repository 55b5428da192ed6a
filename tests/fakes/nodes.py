"""Real device nodes for a simulated host tree (root only).

nvlow.simulate writes a /dev node as a regular file holding ``SIMULATED_NODE_PREFIX`` and
``major:minor``; the tests and benchmarks that want what a real host has (``--root`` reads ``stat``'s
character devices there) turn each into a character device with ``mknod``.
"""
from __future__ import annotations

import os
import stat

from nvlow.host.root import SIMULATED_NODE_PREFIX


def make_real_nodes(root: str) -> None:
    """Turn the simulated (marked regular file) nodes under ``root``/dev into real character devices."""
    for dirpath, _dirs, files in os.walk(os.path.join(root, "dev")):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                head = fh.read(64)
            if head.startswith(SIMULATED_NODE_PREFIX):
                major, minor = head[len(SIMULATED_NODE_PREFIX):].strip().split(b":")
                os.unlink(path)
                os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(int(major), int(minor)))
