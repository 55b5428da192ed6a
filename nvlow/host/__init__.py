"""Stage 1, the host: what this machine (or a ``--root`` tree) has, read without judging it.

- :mod:`.root` — every host path goes through :class:`~nvlow.host.root.HostRoot` (``--root``, symlink
  containment, bounded reads);
- :mod:`.procfs` — parsers of ``/proc/driver/nvidia`` and ``/proc/devices`` (pure functions of text);
- :mod:`.scan` and :mod:`.migcaps` — device nodes, GPUs and MIG access nodes from procfs and ``/dev``;
- :mod:`.extradevices` — the multi-node nodes (GDS, InfiniBand, GDRCopy, NVSwitch), checked by the scanner;
- :mod:`.discover` — the :class:`~nvlow.model.Host` record: the scan, plus NVML when it is needed;
- :mod:`.ldcache`, :mod:`.elf`, :mod:`.driverfiles` — the driver's libraries, binaries and files;
- :mod:`.capabilities` — which driver files each ``NVIDIA_DRIVER_CAPABILITIES`` value needs;
- :mod:`.cudaversions` — the CUDA version a driver branch supports;
- :mod:`.status` — live readings for ``nvlow status``.

May import: the leaf modules (:mod:`nvlow.errors`, :mod:`nvlow.model`, :mod:`nvlow.records`,
:mod:`nvlow.text`) only. The C bindings are passed in (``nvlow.native`` imports this package, never the
reverse); no plan, engine or CLI knowledge lives here. ``tests/test_layout.py`` enforces the direction.
"""
