"""Check the hand-written cdefs against NVIDIA's real headers.

The headers come from the ``nvidia-nvml-dev`` / ``nvidia-nvml-dev-cu12`` and
``nvidia-cuda-runtime`` wheels listed in ``tests/data/nvidia-header-wheels.txt``, which
``tests/fetch_headers.sh`` downloads before the tests run (tests/run.sh and tests/ci_matrix.sh
call it; no test uses the network). They are never committed (CUDA EULA). The cdef is compiled in cffi API mode
against the header: every struct's size and field offsets, every typedef's
size and every integer constant are compared with nvlow's ABI ffi, and every
declared function must be declared by the (preprocessed) header. A wheel that was not
downloaded skips the case, except under ``CI=true``, where it fails.
"""
from __future__ import annotations

import ctypes
import glob
import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from typing import Any, Callable, Dict, List

import pytest

from fakes.build import declared_functions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
cffi = pytest.importorskip("cffi")

WHEEL_LIST = os.path.join(REPO, "tests", "data", "nvidia-header-wheels.txt")
WHEELS = os.environ.get("NVLOW_HEADER_WHEELS") or os.path.join(REPO, ".venv", "nvidia-headers")


def _header_params() -> List[Any]:
    out = []
    with open(WHEEL_LIST, encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and not line.startswith("#"):
                header, requirement = line.split()
                label = ("nvml-" if header == "nvml.h" else "cuda-") + ".".join(requirement.split("==")[1].split(".")[:2])
                out.append(pytest.param(header, requirement, id=label))
    return out


HEADERS = _header_params()

PRELUDES = {
    "nvml.h": '#define NVML_NO_UNVERSIONED_FUNC_DEFS\n#include "nvml.h"\n',
    "cuda.h": '#include <stdlib.h>\n#include <stdint.h>\n#include "cuda.h"\n',
}

ABI_MODULES = {"nvml.h": "nvlow.native._nvml_ffi", "cuda.h": "nvlow.native._cuda_ffi"}


@pytest.fixture(scope="session")
def fetch_header(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], str]:
    """``fetch(header, requirement) -> include dir``: the header taken out of its downloaded wheel once."""
    cache: Dict[str, str] = {}

    def fetch(header: str, requirement: str) -> str:
        if requirement in cache:
            return cache[requirement]
        base = tmp_path_factory.mktemp("headers")
        wheels = sorted(glob.glob(os.path.join(WHEELS, requirement, "*.whl")))
        if not wheels:
            why = (f"{requirement} (for cdefs/{header}) is not in {WHEELS}: run bash tests/fetch_headers.sh "
                   "(tests/run.sh does)")
            if os.environ.get("CI") == "true":
                pytest.fail(why)
            pytest.skip(why)
        include = base / "include"
        include.mkdir()
        with zipfile.ZipFile(wheels[0]) as zf:
            names = [n for n in zf.namelist() if n.endswith("/include/" + header)]
            assert names, f"{wheels[0]} has no include/{header}"
            (include / header).write_bytes(zf.read(names[0]))  # the header only
        cache[requirement] = str(include)
        return cache[requirement]

    return fetch


def _cdef_text(header: str) -> str:
    with open(os.path.join(REPO, "cdefs", header), encoding="utf-8") as fh:
        return fh.read()


def _compile_api_module(header: str, include: str, work: str, modname: str) -> Any:
    """Compile the cdef against the real header (API mode) and import it."""
    text = _cdef_text(header)
    # the module references every function; a stub library provides the symbols
    stub_c = os.path.join(work, "stub.c")
    with open(stub_c, "w", encoding="utf-8") as fh:
        fh.write("".join(f"void {name}(void) {{}}\n" for name in declared_functions(text)))
    stub_so = os.path.join(work, "libnvlowstub.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", stub_so, stub_c], check=True)
    ctypes.CDLL(stub_so, mode=ctypes.RTLD_GLOBAL)
    api = cffi.FFI()
    api.cdef(text)
    api.set_source(modname, PRELUDES[header], include_dirs=[include],
                   extra_compile_args=["-Werror=implicit-function-declaration",
                                       "-Werror=incompatible-pointer-types"],
                   extra_link_args=["-Wl,--unresolved-symbols=ignore-all"])
    so_path = api.compile(tmpdir=work, verbose=False)
    loader = importlib.machinery.ExtensionFileLoader(modname, so_path)
    spec = importlib.util.spec_from_file_location(modname, so_path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _compare(abi: Any, api_ffi: Any, api_lib: Any, text: str) -> List[str]:
    problems: List[str] = []

    def check(what: str, get_abi: Callable[[], Any], get_api: Callable[[], Any]) -> None:
        try:
            a, b = get_abi(), get_api()
        except (api_ffi.error, abi.error, AttributeError, TypeError) as exc:
            problems.append(f"{what}: {exc}")
            return
        if a != b:
            problems.append(f"{what}: cdef says {a}, header says {b}")

    typedefs, structs, _unions = abi.list_types()
    for name in typedefs + ["struct " + s for s in structs]:
        ct = abi.typeof(name)
        try:
            abi.sizeof(name)
        except abi.error:
            continue  # opaque (struct nvmlDevice_st): only pointers to it are passed
        check(f"sizeof({name})", lambda: abi.sizeof(name), lambda: api_ffi.sizeof(name))
        if ct.kind == "struct":
            check(f"alignof({name})", lambda: abi.alignof(name), lambda: api_ffi.alignof(name))
            for fname, field in ct.fields:
                check(f"offsetof({name}, {fname})", lambda: abi.offsetof(name, fname),
                      lambda: api_ffi.offsetof(name, fname))
                check(f"sizeof({name}.{fname})", lambda: abi.sizeof(field.type),
                      lambda: api_ffi.sizeof(dict(api_ffi.typeof(name).fields)[fname].type))
    constants = re.findall(r"^\s*#define\s+(\w+)", text, flags=re.M)
    for name in typedefs:
        ct = abi.typeof(name)
        if ct.kind == "enum":
            constants += list(ct.relements)
    for name in constants:
        check(f"value of {name}", lambda: abi.integer_const(name), lambda: getattr(api_lib, name))
    return problems


@pytest.mark.parametrize("header,requirement", HEADERS)
def test_cdef_matches_the_real_header(fetch_header, tmp_path, header: str, requirement: str) -> None:
    include = fetch_header(header, requirement)
    text = _cdef_text(header)
    modname = "_nvlow_verify_" + re.sub(r"\W", "_", requirement)
    module = _compile_api_module(header, include, str(tmp_path), modname)
    abi = importlib.import_module(ABI_MODULES[header]).ffi
    problems = _compare(abi, module.ffi, module.lib, text)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("header,requirement", HEADERS)
def test_every_declared_function_is_in_the_header(fetch_header, tmp_path, header: str, requirement: str) -> None:
    include = fetch_header(header, requirement)
    src = tmp_path / "prelude.c"
    src.write_text(PRELUDES[header])
    pre = subprocess.run(["gcc", "-E", "-P", "-I", include, str(src)], capture_output=True, text=True, check=True)
    missing = [name for name in declared_functions(_cdef_text(header))
               if not re.search(r"\b" + name + r"\s*\(", pre.stdout)]
    assert missing == []
