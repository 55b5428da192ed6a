"""The hot paths' string parsers against the regular expressions they replace.

`nvlow args`, `info`, `list`, `doctor` and `cdi generate` import no `re` (its import with `enum`,
`functools` and `collections` is about 6 ms, half of the interpreter's own start-up; README
"Performance"), so the patterns they used became plain string code. Each case here runs the old
expression (the reference) and the new function over generated text and wants the same answer. Where
the new code is deliberately stricter, the test says how: the old ``$`` accepted one trailing newline
(``re.match("a$", "a\\n")`` matches), which the Go CDI library and the kernel's names never have.
"""
from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from nvlow.cdi import yaml as cdi_yaml
from nvlow.cdi.rules import is_device_name, is_vendor_name
from nvlow.engine.argv import _basename
from nvlow.host.extradevices import parse_feature_node
from nvlow.host.procfs import char_devices, parse_bus_id, parse_driver_version, parse_drm_node_name
from nvlow.plan import decide, slurm
from nvlow.plan.plan import _is_plugin_name
from nvlow.plan.require import _major
from nvlow.plan.select import _split
from nvlow.text import isolated_version, numbered, word_after

#: characters that matter to the patterns, and some that only look like them
ALPHABET = "0123456789abcdefABCDEF.:_-/ \t\n,xX@+=٣²\u00a0\u2028é"
TEXT = st.text(alphabet=ALPHABET, max_size=40)
MANY = settings(max_examples=400, deadline=None)


# ------------------------------------------------------------------------ numbered names
@MANY
@given(st.sampled_from(["nvidia", "card", "renderD", "channel", "nvidia-fs", "infiniband/uverbs"]),
       st.text(alphabet="0123456789٣²x\n ", max_size=10))
@example("nvidia", "0")
@example("nvidia", "01")
@example("nvidia", "9999999")
@example("nvidia", "10000000")
def test_numbered_is_the_kernel_name_pattern(prefix, tail):
    ref = re.match(re.escape(prefix) + r"(0|[1-9][0-9]{0,6})\Z", prefix + tail)
    assert numbered(prefix + tail, prefix) == (int(ref.group(1)) if ref else None)


@MANY
@given(TEXT)
@example("card1\n")  # the old "$" took the newline; a /sys directory entry with one is no DRM node
def test_drm_node_names(name):
    ref = re.match(r"^(card|renderD)(0|[1-9][0-9]{0,6})\Z", name)
    want = (ref.group(1), int(ref.group(2))) if ref and int(ref.group(2)) <= (1 << 20) - 1 else None
    assert parse_drm_node_name(name) == want


@MANY
@given(st.sampled_from(["nvidia-fs", "infiniband/uverbs", "infiniband/rdma_cm", "gdrdrv", "nvidia-nvswitchctl",
                        "nvidia-nvswitch", "uverbs", "rdma_cm", "nvidia-fs-x"]), st.text("0123456789x", max_size=9))
def test_feature_node_names(stem, tail):
    rel = stem + tail
    patterns = (("gds", "", r"nvidia-fs(0|[1-9][0-9]{0,6})\Z"), ("mofed", "infiniband/", r"uverbs(0|[1-9][0-9]{0,6})\Z"),
                ("mofed", "infiniband/", r"(?:rdma_cm)()\Z"), ("gdrcopy", "", r"(?:gdrdrv)()\Z"),
                ("nvswitch", "", r"(?:nvidia-nvswitchctl)()\Z"), ("nvswitch", "", r"nvidia-nvswitch(0|[1-9][0-9]{0,6})\Z"))
    want = None
    for feature, prefix, pattern in patterns:
        m = re.match(pattern, rel[len(prefix):]) if rel.startswith(prefix) else None
        if m:
            want = (feature, int(m.group(1)) if m.group(1) else -1)
            break
    assert parse_feature_node(rel) == want


# ------------------------------------------------------------------------ /proc/devices, bus ids
@MANY
@given(st.lists(TEXT, max_size=6))
@example(["508 nvidia-uvm   # dynamic", "  195 nvidia", "12abc x", "7"])
def test_proc_devices_lines(lines):
    text = "Character devices:\n" + "\n".join(line.replace("\n", " ") for line in lines) + "\n\nBlock devices:\n"
    want, seen = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if seen:
                break
            continue
        if line.lower().startswith("block devices"):
            break
        if line.lower().startswith("character devices"):
            continue
        m = re.match(r"^\s*([0-9]+)\s+(\S+)", line)
        if m is None:
            continue
        seen = True
        if len(m.group(1).lstrip("0")) <= 10:
            want.append((int(m.group(1)), m.group(2)))
    assert char_devices(text) == want


@MANY
@given(st.text(alphabet="0123456789abcdefABCDEFgG:. \n", max_size=20))
@example("0000:B7:00.0")
@example("10000:01:00.0")
@example("0:7:0.0")
@example("00000000:07:00.8")
def test_bus_ids(text):
    ref = re.match(r"^([0-9a-fA-F]{1,8}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])\Z", text.strip())
    assert parse_bus_id(text) == (tuple(int(g, 16) for g in ref.groups()) if ref else None)


# ------------------------------------------------------------------------ the driver's version banner
VERSION_RE = re.compile(r"(?<![\w.:])([0-9]{1,10}\.[0-9]{1,10}(?:\.[0-9]{1,10})?)(?![\w.:])")


@MANY
@given(st.text(alphabet="0123456789.:_ ax٣\t-", max_size=30), st.integers(0, 30))
@example("x86_64  560.35.03  Release", 0)
@example("v560.35.03 1.2.3.4 5.6", 0)
@example("1.2 3.4", 1)
def test_isolated_version(text, start):
    ref = VERSION_RE.search(text, start)
    assert isolated_version(text, start) == (ref.group(1) if ref else None)


@MANY
@given(st.lists(st.sampled_from(["NVIDIA", "UNIX", "Open", "Kernel", "Module", "for", "x86_64", "aarch64",
                                 "Kernel Module", "NVIDIA UNIX", " ", "\t", "  ", "550.54.15", "forx"]),
                max_size=12))
def test_banner_architecture(words):
    text = " ".join(words)
    prop = re.search(r"NVIDIA UNIX\s+(\S+)\s+Kernel Module", text)
    opn = re.search(r"Open Kernel Module\s+for\s+(\S+)", text)
    assert word_after(text, ("NVIDIA UNIX",), "Kernel Module") == (prop.group(1) if prop else None)
    assert word_after(text, ("Open Kernel Module", "for")) == (opn.group(1) if opn else None)


def test_driver_banners_of_real_drivers():
    """The banners of shipped drivers (proprietary, open, old, aarch64) parse as before."""
    cases = {
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024":
            ("550.54.15", False, "x86_64"),
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build  (dvs-builder@U16)":
            ("560.35.03", True, "x86_64"),
        "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.65.06  Release Build":
            ("580.65.06", True, "aarch64"),
        "NVRM version: NVIDIA UNIX Kernel Module  340.108  Wed Dec 11 15:02:23 PST 2019": ("340.108", False, None),
        "NVRM version: NVIDIA UNIX ppc64le Kernel Module  418.87.00  Thu Aug  8 15:19:35 CDT 2019":
            ("418.87.00", False, "ppc64le"),
    }
    for banner, want in cases.items():
        v = parse_driver_version(banner + "\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
        assert (v.version, v.open_module, v.arch) == want, banner


# ------------------------------------------------------------------------ names and tokens
@MANY
@given(st.text(alphabet="abcXYZ019_.-:/ \n@é", max_size=70))
@example("nvidia-docker")
@example("a" * 64)
@example("a" * 65)
@example("x\n")
def test_plugin_names(name):
    assert _is_plugin_name(name) == bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name))


@MANY
@given(st.text(alphabet="aZ09_.:-/ \n", max_size=12))
@example("nvidia.com")
@example("gpu0\n")  # the old "$" let this through; the CDI library's Go expression does not
def test_cdi_names(name):
    assert is_vendor_name(name) == bool(re.match(r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?\Z", name))
    assert is_device_name(name) == bool(re.match(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?\Z", name))


@MANY
@given(st.text(alphabet="aZ09_./=+@,:- \n'\"#é", max_size=12))
def test_yaml_plain_scalars(value):
    plain = bool(re.fullmatch(r"[A-Za-z/_][A-Za-z0-9_./=+@,:-]*", value)) and not value.endswith(":") and \
        value not in cdi_yaml.BOOL_TRUE and value not in cdi_yaml.BOOL_FALSE and value not in cdi_yaml.NULLS
    assert (cdi_yaml._scalar(value) == value) == plain


@MANY
@given(TEXT, st.booleans())
@example("0, 1\t2,,3", True)
@example(" 0 ,1 ", False)
def test_selection_split(spec, spaces):
    want = [t.strip() for t in re.split(r"[,\s]+" if spaces else r",", spec.strip()) if t.strip()]
    assert _split(spec, spaces=spaces) == want


@MANY
@given(TEXT)
@example("  12.4")
@example("٣.1")
def test_requirement_major(version):
    m = re.match(r"^\s*([0-9]+)", version)
    want = int(m.group(1).lstrip("0") or "0") if m and len(m.group(1).lstrip("0")) <= 10 else None
    assert _major(version) == want


@MANY
@given(st.text(alphabet="ab/\\.exe", max_size=20))
def test_program_basename(program):
    assert _basename(program) == re.split(r"[\\/]", program)[-1]


def test_slurm_guard_names_the_module_variable():
    """decide.py skips loading nvlow.plan.slurm when SLURM_JOB_ID is absent; it must be slurm's name."""
    assert slurm.JOB_ID == "SLURM_JOB_ID"
    import inspect

    assert '"SLURM_JOB_ID"' in inspect.getsource(decide._resolve)


# ------------------------------------------------------------------------ JSON of the engines
# nvlow.engine.jsondoc replaces json.loads on exec's path (json imports re): every document json.loads
# accepts gives the same value, and every text it refuses is refused (JsonError, a ValueError).
def _json_reference(text):
    """json.loads without its NaN/Infinity extension; None when it refuses the text."""
    import json

    def no_constants(name):
        raise ValueError(name)

    try:
        return ("ok", json.loads(text, parse_constant=no_constants))
    except (ValueError, RecursionError):
        return None


def _jsondoc(text):
    from nvlow.engine.jsondoc import JsonError, loads

    try:
        return ("ok", loads(text))
    except JsonError:
        return None


def _same(a, b):
    """Equal, NaN-free values with the same types (1 and 1.0 and True are equal in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from('"\\/\b\f\n\r\t\x00\x1f\x7f\u2028é😀')),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@MANY
@given(JSON_VALUES, st.sampled_from([None, 0, 2]), st.booleans())
def test_engine_json_reads_what_json_writes(value, indent, ascii_only):
    import json

    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    got = _jsondoc(text)
    assert got is not None and _same(got[1], json.loads(text)), text


#: JSON's characters and near misses: broken escapes, surrogates, numbers' edges, constants, controls
JSON_ALPHABET = st.sampled_from(list('{}[]:,"\\/ \t\n\r0123456789-+.eEtruefalsnNIiy\x00\x1f\ufeff') +
                                ["\\u", "\\ud83d", "\\ude00", "\\u00e9", "true", "false", "null", "NaN",
                                 "Infinity", '"a"', '"k":', "1e999", "-0", "0.5e-3", "é", "😀"])


@MANY
@given(st.lists(JSON_ALPHABET, max_size=30).map("".join))
@example('{"a": 1, "a": 2}')
@example('"\\ud83d\\ude00 \\ud83d \\ude00"')
@example("[1.0, -0, 0e0, 1E+2, 10]")
@example("[NaN]")
@example('"\x1f"')
@example("\ufeff[]")
@example("01")
@example("1.")
@example(".5")
@example("-")
@example("[1,]")
@example('{"a" 1}')
@example(" \n[ ] \t")
@example("")
@example('"\\x"')
@example('"\\u12g4"')
@example("[" * 100 + "]" * 100)
def test_engine_json_agrees_with_json_loads(text):
    ref = _json_reference(text)
    got = _jsondoc(text)
    if ref is None:
        assert got is None, text
    else:
        assert got is not None and _same(got[1], ref[1]), text


def test_engine_json_refuses_deep_nesting_and_huge_integers_with_its_own_error():
    from nvlow.engine.jsondoc import MAX_DEPTH, JsonError, loads

    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    for text in ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), '{"a":' * 5000, "9" * 5000, "[NaN]", "Infinity"):
        try:
            loads(text)
        except JsonError as exc:
            assert str(exc).startswith("invalid JSON: ")
        else:
            raise AssertionError(text[:20])


# ------------------------------------------------------------------------ requirement conditions
# every CUDA image's NVIDIA_REQUIRE_CUDA is parsed on every wrapped run: no re there either
@MANY
@given(st.text(alphabet="aAzZ_cudriv=!<>0123456789.,\n x٣é", max_size=16))
@example("cuda>=12.4")
@example("driver==535.104.05\n")
@example("a=5\nx")
@example("Brand!=tesla")
@example("_=")
def test_requirement_condition_split(token):
    from nvlow.plan.require import _split_condition

    ref = re.match(r"^([A-Za-z_]+)(==|!=|<=|>=|=|<|>)(.*)$", token)
    assert _split_condition(token) == (ref.groups() if ref else None)


@MANY
@given(st.text(alphabet="0123456789.٣² x\n", max_size=14))
@example("12.4.1")
@example("1..2")
@example("12.")
@example(".5")
def test_requirement_numbers(text):
    from nvlow.plan.require import _is_dotted_number, _leading_number, _major_minor

    assert _is_dotted_number(text) == bool(re.match(r"^[0-9]+(\.[0-9]+)*\Z", text))
    mm = re.match(r"^([0-9]+)\.([0-9]+)", text)
    assert _major_minor(text) == (mm.groups() if mm else None)
    lead = re.match(r"^[0-9]+(\.[0-9]+)*", text)
    assert _leading_number(text) == (lead.group(0) if lead else None)
