"""Plugin mode: ``nvlow serve``.

- :mod:`.server` — the HTTP servers (REST on TCP, volume plugin on a unix socket), robustness, graceful stop.
- :mod:`.api_v1` — nvidia-docker-plugin 1.0's endpoints (``/gpu/info``, ``/docker/cli``, ...), versioned and not.
- :mod:`.api_v2` — nvlow's JSON (``/v2/args``, ``/v2/info``, ``/v2/status``, ``/healthz``).
- :mod:`.volume_plugin` — Docker's legacy volume plugin protocol serving ``nvidia_driver_<version>``.
- :mod:`.cache` — discovery cached per kernel-module version text; live status.
- :mod:`.gpuinfo` — 1.0's info/status documents, text tables and Go-compatible encodings.

May import: every stage below the CLI (host, native, plan, engine, cdi, remote, simulate).
"""
