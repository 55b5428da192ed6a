"""Stage 2, the plan: from (host, request) to exactly what a container gets.

- :mod:`.request` — :class:`~nvlow.plan.request.PlanRequest`, every raw input, and the pure choices
  made from it alone (selection source, capabilities, the container's final environment);
- :mod:`.decide` — :func:`~nvlow.plan.decide.plan_for`, the one decision every path calls;
- :mod:`.select` — a selection resolved against the host's GPUs and MIG devices;
- :mod:`.require` — ``NVIDIA_REQUIRE_*`` and ``CUDA_VERSION`` checks;
- :mod:`.plan` — the :class:`~nvlow.plan.plan.Plan` record, device mappings and the engine's view;
- :mod:`.render` — a plan as ``docker run`` arguments, JSON and compose fragments;
- :mod:`.volume` — the ``nvidia_driver_<version>`` driver volume a plan may mount;
- :mod:`.slurm` — a Slurm job's GPU allocation (the default selection inside a job, and its bound)
  and the node's ``gres.conf``.

May import: the leaf modules, :mod:`nvlow.host` and :mod:`nvlow.engine` (to read an engine command
line into a request). Never the CLI, ``serve``, CDI or remote modules.
"""
