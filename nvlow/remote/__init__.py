"""Remote mode: ``--host URL``, a plan decided by ``nvlow serve`` (or nvidia-docker 1.0's plugin) on
the engine's machine.

- :mod:`.client` — the HTTP exchange (one deadline, bounded answers) and the 1.0 fallback;
- :mod:`.answer` — every remote answer checked and rebuilt into arguments nvlow would have written
  itself, so that no answer can widen what a container gets.

May import: the leaf modules, :mod:`nvlow.host` (the driver-file tables answers are checked against),
:mod:`nvlow.plan` and :mod:`nvlow.engine`.
"""
