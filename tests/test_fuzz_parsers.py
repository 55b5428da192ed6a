"""Fuzz every parser of untrusted text or bytes: nothing but an NvlowError may escape.

Input comes from a host tree (procfs files, ld.so.cache, ELF libraries), the command line (GPU selections,
docker's --gpus, env files), an image (NVIDIA_REQUIRE_*, CUDA_VERSION, the com.nvidia.cuda.version label)
or the network (``nvlow serve``'s plan requests). The CLI turns an NvlowError into one line and an exit code;
anything else is an "internal error" -- a bug. Each target is bounded (``max_examples``, no deadline) so
the whole file runs in well under 30 s; the strategies mix in the characters that broke parsers before
(non-ASCII digits such as ``²``/``٣``, 5,000-digit numbers, NULs, separators).
"""
from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvlow.host.elf import EM_AARCH64, EM_X86_64, loadable_problem, parse_elf
from nvlow.engine.environ import assignments, parse_env_file
from nvlow.errors import NvlowError
from nvlow.engine.gpusflag import parse_gpus_flag
from nvlow.host.ldcache import NEW_MAGIC, OLD_MAGIC, parse_ldcache
from nvlow.model import Gpu
from nvlow.host.procfs import (device_names_by_major, normalize_bus_id, parse_bus_id, parse_cap_access,
                               parse_devices, parse_driver_version, parse_drm_node_name, parse_gpu_information,
                               parse_imex_channel_name, parse_mig_cap_name, parse_mig_minors, parse_params)
from nvlow.text import number_or_none, parse_number
from nvlow.plan.request import SelectionChoice, request_from_dict
from nvlow.plan.require import (GpuFacts, HostFacts, check_image, check_label, evaluate, legacy_cuda_version,
                           parse_requirements)
from nvlow.plan.select import resolve_choice, select_gpus
from nvlow.simulate.elfgen import make_elf_so
from nvlow.simulate.ldcache_writer import build_ldcache

T = TypeVar("T")
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_BYTES = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: characters that matter to the parsers, plus the ones that broke them
_ALPHABET = ("0123456789abcdefABCDEF:.,;=-+_/ \t\n\r\"'#<>!xX"
             "GPUMIGaludvicenorl"  # GPU-, MIG-, all, none, void, device=, count=, driver ...
             "²³٣٠١۳３\u00a0\u2028\x00\x7f")
TEXT = st.text(alphabet=_ALPHABET, max_size=80)
HUGE_DIGITS = st.integers(min_value=4300, max_value=6000).map(lambda n: "9" * n)


def _pieces(*words: str) -> st.SearchStrategy[str]:
    """Text built from meaningful words, random text and huge numbers."""
    return st.lists(st.one_of(st.sampled_from(words), TEXT, HUGE_DIGITS), max_size=8).map("".join)


def only_nvlow_errors(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Optional[T]:
    """``fn(*args)``; an NvlowError is a fine answer, anything else fails the test."""
    try:
        return fn(*args, **kwargs)
    except NvlowError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        return None


# ------------------------------------------------------------------ procfs

PROC_WORDS = ("Character devices:\n", "Block devices:\n", "\n", " nvidia\n", " nvidia-uvm\n", "195", "  1 mem\n",
              "NVRM version: NVIDIA UNIX x86_64 Kernel Module  ", "Open Kernel Module for x86_64 ", "550.54.15",
              "Model: \t ", "Device Minor: \t ", "Bus Location: \t ", "0000:07:00.0", "GPU UUID: \t GPU-", "IRQ: ",
              "GPU Excluded: \t Yes\n", "DeviceFileMinor: ", "gpu0/gi1/ci0/access ", "config ", "card", "renderD",
              "channel", "gpu", "/mig/gi", "/access")


@FUZZ
@given(_pieces(*PROC_WORDS))
def test_procfs_parsers_never_raise(text: str) -> None:
    """The procfs parsers take any text: unusable lines are skipped, unusable values are None."""
    parse_devices(text)
    device_names_by_major(text)
    parse_driver_version(text)
    info = parse_gpu_information(text)
    assert info.minor is None or 0 <= info.minor < 10 ** 10
    parse_cap_access(text)
    parse_mig_minors(text)
    parse_params(text)
    for line in text.splitlines() or [text]:
        parse_bus_id(line)
        normalize_bus_id(line)
        parse_mig_cap_name(line)
        parse_drm_node_name(line)
        parse_imex_channel_name(line)
        number_or_none(line)
        number_or_none(line, base=16)
        only_nvlow_errors(parse_number, line, "field")


# ------------------------------------------------------------------ GPU selection

def _host_gpus() -> Tuple[Gpu, ...]:
    from nvlow.api import load_host

    return load_host(simulate="dgx-h100-mig").gpus


GPUS = _host_gpus()
SELECT_WORDS = ("all", "none", "void", "0", "1", "7", "0:1", "1:0", ",", " ", "GPU-", "MIG-", "GPU-4f", "/7/0",
                "00000000:", "07:00.0", "0000:1b:00.0", "nvidia.com/gpu=", "device=", "²", "٣", "٠:١")


@FUZZ
@given(_pieces(*SELECT_WORDS), st.sampled_from(["list", "env", "nv_gpu", "count"]), st.booleans())
def test_selection_raises_only_nvlow_errors(spec: str, grammar: str, nv_gpu: bool) -> None:
    sel = only_nvlow_errors(select_gpus, GPUS, spec, nv_gpu=nv_gpu)
    if sel is not None:
        assert all(g in GPUS for g in sel.gpus)
    only_nvlow_errors(resolve_choice, GPUS, SelectionChoice("fuzz", spec, grammar))


GPUS_FLAG_WORDS = ("all", "device=", "count=", "capabilities=", "driver=", "options=", "\"", "\"\"", ",", "=",
                   "0", "-1", "+3", "compute", "utility", "nvidia", "\n", "9223372036854775808")


@FUZZ
@given(_pieces(*GPUS_FLAG_WORDS))
def test_docker_gpus_flag_raises_only_nvlow_errors(value: str) -> None:
    req = only_nvlow_errors(parse_gpus_flag, value)
    if req is not None and req.count is not None:
        assert -(2 ** 63) <= req.count < 2 ** 63


# ------------------------------------------------------------------ requirements

REQ_WORDS = ("cuda", "driver", "arch", "brand", ">=", "<=", "==", "!=", "=", "<", ">", "12.4", "470.82.01",
             "8.0", "tesla", " ", ",", "CUDA", ".", "v", "-rc1", "+build")
FACTS = st.builds(HostFacts,
                  st.one_of(st.none(), st.sampled_from(["12.4", "11.0", "", "x"]), TEXT, HUGE_DIGITS),
                  st.one_of(st.none(), st.sampled_from(["550.54.15", "470", ""]), TEXT, HUGE_DIGITS),
                  st.lists(st.builds(GpuFacts, st.one_of(st.none(), TEXT, st.just("8.0")),
                                     st.one_of(st.none(), TEXT, st.just("tesla")),
                                     st.one_of(st.none(), st.integers(0, 7))), max_size=3).map(tuple))


@FUZZ
@given(_pieces(*REQ_WORDS), FACTS)
def test_requirements_raise_only_nvlow_errors(text: str, facts: HostFacts) -> None:
    req = only_nvlow_errors(parse_requirements, text)
    if req is not None:
        ok, failure = evaluate(req, facts)
        assert ok or failure
    only_nvlow_errors(legacy_cuda_version, text)
    only_nvlow_errors(check_label, text, facts)
    env = {"NVIDIA_REQUIRE_CUDA": text, "CUDA_VERSION": text, "NVIDIA_REQUIRE_X": text}
    only_nvlow_errors(check_image, env, {"com.nvidia.cuda.version": text}, facts)
    only_nvlow_errors(check_image, {"CUDA_VERSION": text}, {"com.nvidia.cuda.version": text}, facts)
    only_nvlow_errors(check_image, {}, {"com.nvidia.cuda.version": text}, facts)


# ------------------------------------------------------------------ env files

ENV_WORDS = ("NVIDIA_VISIBLE_DEVICES", "=", "#", "\n", "  ", "\r\n", "A", "B=", "\x00", "\ufeff")


@FUZZ
@given(_pieces(*ENV_WORDS), st.dictionaries(TEXT, TEXT, max_size=4), st.lists(TEXT, max_size=6))
def test_env_files_raise_only_nvlow_errors(text: str, env: Dict[str, str], words: List[str]) -> None:
    out = only_nvlow_errors(parse_env_file, text, env)
    assert out is None or all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())
    only_nvlow_errors(assignments, words, env)


# ------------------------------------------------------------------ ld.so.cache

def _ldcache_samples() -> List[bytes]:
    entries = [("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1", 0x0303),
               ("libnvidia-ml.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", 0x0303),
               ("libc.so.6", "/lib/i386-linux-gnu/libc.so.6", 0x0003, 0, None),
               ("libfoo.so.1", "/usr/lib/glibc-hwcaps/x86-64-v3/libfoo.so.1", 0x0303, 0, "x86-64-v3")]
    return [build_ldcache(entries, generator="fuzz"), build_ldcache(entries[:2], fmt="old"),  # type: ignore[arg-type]
            build_ldcache(entries, fmt="compat")]  # type: ignore[arg-type]


LDCACHES = _ldcache_samples()


def _mutated(samples: List[bytes]) -> st.SearchStrategy[bytes]:
    """A sample with random bytes overwritten, cut short or extended."""
    @st.composite
    def build(draw: Callable[..., Any]) -> bytes:
        data = bytearray(draw(st.sampled_from(samples)))
        for _ in range(draw(st.integers(0, 8))):
            pos = draw(st.integers(0, max(0, len(data) - 1)))
            if data:
                data[pos] = draw(st.integers(0, 255))
        for _ in range(draw(st.integers(0, 2))):  # a 32/64-bit field set to something extreme
            pos = draw(st.integers(0, max(0, len(data) - 8)))
            value = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 2 ** 63 - 1, 2 ** 64 - 1]))
            data[pos:pos + 8] = struct.pack("<Q", value)[:len(data[pos:pos + 8])]
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut] if draw(st.booleans()) else data) + draw(st.binary(max_size=16))
    return build()


RAW_LDCACHE = st.one_of(st.binary(max_size=256), st.binary(max_size=200).map(lambda b: NEW_MAGIC + b),
                        st.binary(max_size=200).map(lambda b: OLD_MAGIC + b), _mutated(LDCACHES))


@FUZZ_BYTES
@given(RAW_LDCACHE)
def test_ldcache_parser_raises_only_nvlow_errors(data: bytes) -> None:
    cache = only_nvlow_errors(parse_ldcache, data, "fuzz")
    if cache is not None:
        assert len(cache.entries) <= len(data)
        cache.lookup("libcuda.so.1", "x86-64")


# ------------------------------------------------------------------ ELF

ELFS = [make_elf_so("libnvidia-ml.so.1", ["libc.so.6"], abi_note=(0, 2, 3, 99)),
        make_elf_so("libGL.so.1", ["libnvidia-glcore.so.550.54.15"], machine="i386"),
        make_elf_so(None, machine="aarch64", vaddr_base=0x400000, padding=64)]
RAW_ELF = st.one_of(st.binary(max_size=256), st.binary(max_size=200).map(lambda b: b"\x7fELF" + b),
                    _mutated(ELFS))


@FUZZ_BYTES
@given(RAW_ELF)
def test_elf_reader_and_loader_check_raise_only_nvlow_errors(data: bytes) -> None:
    only_nvlow_errors(parse_elf, data, "fuzz")

    def read(off: int, n: int) -> bytes:
        return data[off:off + n]

    for want in ((64, 1, EM_X86_64), (32, 1, 3), (64, 1, EM_AARCH64)):
        problem = loadable_problem(read, len(data), want)
        assert problem is None or (isinstance(problem, str) and problem and "\n" not in problem)


# ------------------------------------------------------------------ plan requests (serve)

JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT,
                              HUGE_DIGITS),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
FIELDS = ("docker_gpus", "cdi_devices", "gpus", "capabilities", "container_env", "process_env", "image_env",
          "image_labels", "driver_files", "require", "privileged")
PAIRS = st.lists(st.lists(TEXT, min_size=2, max_size=2), max_size=4)
FIELD_VALUES = st.one_of(JSON, PAIRS, st.lists(TEXT, max_size=3), st.sampled_from(["bind", "volume", "plugin"]))
REQUEST = st.one_of(JSON, st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUES, max_size=6),
                    st.dictionaries(st.one_of(st.sampled_from(FIELDS), TEXT), FIELD_VALUES, max_size=4))


@FUZZ
@given(REQUEST)
def test_plan_requests_from_json_raise_only_nvlow_errors(doc: Any) -> None:
    req = only_nvlow_errors(request_from_dict, doc)
    if req is not None:
        assert request_from_dict(req.to_dict()) == req


def test_the_strategies_reach_the_interesting_inputs() -> None:
    """The fixed cases the strategies are built around, once each."""
    assert only_nvlow_errors(select_gpus, GPUS, "٣") is None
    assert only_nvlow_errors(parse_gpus_flag, "9" * 5000) is None
    assert only_nvlow_errors(parse_requirements, "cuda>=" + "9" * 5000) is None
    assert parse_devices("Character devices:\n" + "9" * 5000 + " nvidia\n") == {}
    assert only_nvlow_errors(parse_ldcache, NEW_MAGIC + b"\xff" * 28, "x") is None
    assert only_nvlow_errors(parse_elf, b"\x7fELF\x02\x01" + b"\xff" * 58, "x") is None


@pytest.mark.parametrize("sample", LDCACHES)
def test_ldcache_samples_parse(sample: bytes) -> None:
    assert parse_ldcache(sample, "sample").lookup("libcuda.so.1", "x86-64")


@pytest.mark.parametrize("sample", ELFS)
def test_elf_samples_parse(sample: bytes) -> None:
    assert parse_elf(sample, "sample").elf_class in (32, 64)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_shell_quote_is_shlex_quote(word: str) -> None:
    import shlex

    from nvlow.plan.render import shell_quote

    assert shell_quote(word) == shlex.quote(word)
