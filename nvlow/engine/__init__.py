"""The container engine's side: its command line, its images and its API.

- :mod:`.dockerflags` — docker/podman ``run``/``create`` flag tables (which flags take a value);
- :mod:`.argv` — an engine command line parsed and rewritten with those tables;
- :mod:`.gpusflag` — docker's ``--gpus`` value;
- :mod:`.environ` — the container's environment from ``-e``/``--env``/``--env-file``;
- :mod:`.image` — an image's environment and labels (Engine API, then the CLI);
- :mod:`.client` — a minimal Engine API client over the unix socket;
- :mod:`.jsondoc` — the JSON the engines send, read without the ``json`` package (exec's start-up).

May import: the leaf modules (:mod:`nvlow.errors`, :mod:`nvlow.model`, :mod:`nvlow.text`) only; it
knows nothing of GPUs or plans.
"""
