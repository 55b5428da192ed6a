"""pytest fixtures for the compiled fake driver libraries (imported by tests/conftest.py).

- ``fake_libs_factory`` (session): ``factory(drop=()) -> FakeLibs`` builds (cached) the
  fakes without the ``drop``ped symbols.
- ``fake_libs`` (session): the full build (``.nvml``, ``.cuda`` absolute paths).
- ``fake_driver`` (function): ``fake_driver(preset_or_text, drop=(), rc=(), extra=(),
  **preset_overrides) -> FakeDriver``; writes the scenario, points
  ``$NVLOW_FAKE_SCENARIO`` at it (monkeypatched os.environ, which the C fakes read) and
  returns the env mapping for the loader (``NVLOW_NVML_LIBRARY``/``NVLOW_CUDA_LIBRARY``).
  ``FakeDriver.install(root_dir)`` copies the libraries into a fake host root instead.

Without gcc the native tests skip, except in CI (``CI=true``), where that is a failure;
a fake that does not compile is always a failure.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, Union

import pytest

from nvlow.host.root import HostRoot
from nvlow.simulate.presets import Preset

from fakes.build import CompilerMissing, FakeLibs, build_fakes
from fakes.scenario import scenario_from_preset

__all__ = ["FakeDriver", "fake_libs_factory", "fake_libs", "fake_driver"]


@dataclass
class FakeDriver:
    """One fake driver setup: libraries, scenario file, and the env for the loader."""

    libs: FakeLibs
    scenario_path: str
    env: Dict[str, str] = field(default_factory=dict)

    def install(self, root_dir: str, libdir: str = "/usr/lib/x86_64-linux-gnu",
                cuda: bool = True) -> HostRoot:
        """Copy the fakes to ``root_dir + libdir`` (a fake host root) and return that root."""
        dest = os.path.join(root_dir, libdir.lstrip("/"))
        os.makedirs(dest, exist_ok=True)
        shutil.copy(self.libs.nvml, os.path.join(dest, "libnvidia-ml.so.1"))
        if cuda:
            shutil.copy(self.libs.cuda, os.path.join(dest, "libcuda.so.1"))
        return HostRoot(root_dir)

    @property
    def root_env(self) -> Dict[str, str]:
        """The env without the library overrides (for loading through a fake root)."""
        return {k: v for k, v in self.env.items() if not k.endswith("_LIBRARY")}


@pytest.fixture(scope="session")
def fake_libs_factory() -> Iterator[Callable[..., FakeLibs]]:
    def factory(drop: Iterable[str] = ()) -> FakeLibs:
        try:
            return build_fakes(drop)
        except CompilerMissing as exc:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"fake driver libraries: {exc}")
            pytest.skip(f"fake driver libraries unavailable: {exc}")
            raise  # unreachable; pytest.skip raises

    yield factory


@pytest.fixture(scope="session")
def fake_libs(fake_libs_factory: Callable[..., FakeLibs]) -> FakeLibs:
    return fake_libs_factory()


@pytest.fixture
def fake_driver(fake_libs_factory: Callable[..., FakeLibs], tmp_path: "os.PathLike[str]",
                monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeDriver]:
    counter = [0]

    def make(scenario: Union[str, Preset], *, drop: Iterable[str] = (), **kwargs: object) -> FakeDriver:
        text = scenario if isinstance(scenario, str) else scenario_from_preset(scenario, **kwargs)
        counter[0] += 1
        path = os.path.join(str(tmp_path), f"scenario-{counter[0]}.txt")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        monkeypatch.setenv("NVLOW_FAKE_SCENARIO", path)
        libs = fake_libs_factory(drop)
        env = {"NVLOW_NVML_LIBRARY": libs.nvml, "NVLOW_CUDA_LIBRARY": libs.cuda, "NVLOW_FAKE_SCENARIO": path}
        return FakeDriver(libs=libs, scenario_path=path, env=env)

    return make
