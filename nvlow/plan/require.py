"""Image requirements: NVIDIA's ``NVIDIA_REQUIRE_*`` language and nvidia-docker 1.0's label check.

The language (libnvidia-container ``src/cli/dsl.c``, toolkit
``internal/config/image/cuda_image.go``): a value is clauses separated by
spaces, any of which may hold (OR); a clause is conditions separated by
commas, all of which must hold (AND). A condition is ``<property><op><value>``
with ``op`` one of ``= == != < <= > >=`` and the properties

====== ============================================== ========================
cuda   the driver's CUDA version (``cuDriverGetVersion``) major.minor compare
driver the NVIDIA driver version                      dotted numeric compare
arch   the GPU's compute capability (``8.0``)         dotted numeric compare
brand  the GPU's brand token (``tesla``, ``geforce``)  = / != only, any case
====== ============================================== ========================

Each ``NVIDIA_REQUIRE_*`` variable is one requirement and all must hold. As in
libnvidia-container, a requirement is evaluated once per selected GPU (``arch``
and ``brand`` take that GPU's values) and holds vacuously for ``arch``/``brand``
when no GPU is selected.

Example:
    >>> req = parse_requirements("cuda>=12.4 brand=tesla,driver>=470,driver<471")
    >>> evaluate(req, HostFacts("12.2", "470.82.01", (GpuFacts("8.0", "tesla"),)))
    (True, None)
    >>> evaluate(req, HostFacts("12.2", "535.104.05", (GpuFacts("8.6", "geforce"),)))
    (False, 'unsatisfied condition: cuda>=12.4 (host CUDA 12.2)')
"""
from __future__ import annotations

from ..frozen import Record
from ..errors import RequirementError, UsageError
from ..text import ASCII_LETTERS, digits_end, is_ascii_digits, lazy_re, number_or_none, parse_number, printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Mapping, Optional, Sequence, Tuple


PROPERTIES = ("cuda", "driver", "arch", "brand")
LABEL_CUDA_VERSION = "com.nvidia.cuda.version"
#: a condition's property, as libnvidia-container reads it: ASCII letters and underscores
_PROPERTY_CHARS = ASCII_LETTERS | frozenset("_")
#: its operators, two-character ones first
_OPERATORS = ("==", "!=", "<=", ">=", "=", "<", ">")
#: significant digits a part of a version may have (CUDA and driver parts are unsigned 32-bit)
_MAX_PART_DIGITS = 10
# Masterminds semver's loose form (NewVersion), which the toolkit parses CUDA_VERSION with
_SEMVER = lazy_re(r"^v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
                     r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
_UINT32 = 2 ** 32 - 1
_LIBCUDA_UNKNOWN = "host CUDA version unknown: libcuda could not be read"


class Condition(Record):
    """One ``<property><op><value>`` test; ``text`` is how it was written."""

    prop: str
    op: str
    value: str
    text: str


class Requirement(Record):
    """OR of clauses, each an AND of conditions. No clause at all means "always holds"."""

    clauses: Tuple[Tuple[Condition, ...], ...]
    text: str


class GpuFacts(Record):
    """What the requirement language knows about one GPU (None = could not be read)."""

    arch: Optional[str]
    brand: Optional[str]
    index: Optional[int] = None


class HostFacts(Record):
    """The host values requirements compare against (None = could not be read)."""

    cuda_version: Optional[str]
    driver_version: Optional[str]
    gpus: Tuple[GpuFacts, ...] = ()


# -- parsing -----------------------------------------------------------------------
def parse_condition(token: str) -> Condition:
    """Parse one condition such as ``driver>=470``; :class:`UsageError` names a bad token."""
    split = _split_condition(token)
    if split is None:
        raise UsageError(f"invalid requirement condition {_shown(token)}: expected <property><operator><value>",
                         hint="e.g. cuda>=12.4 or brand=tesla,driver>=535")
    written, op, value = split
    prop = written.lower()
    if prop not in PROPERTIES:
        raise UsageError(f"invalid requirement condition {_shown(token)}: unknown property {_shown(written)}",
                         hint="properties are cuda, driver, arch and brand")
    if not value or value[0] in "=<>!":
        raise UsageError(f"invalid requirement condition {_shown(token)}: missing or malformed value")
    if prop == "brand":
        if op not in ("=", "==", "!="):
            raise UsageError(f"invalid requirement condition {_shown(token)}: brand only supports = and !=")
    elif not _is_dotted_number(value):
        raise UsageError(f"invalid requirement condition {_shown(token)}: {prop} needs a dotted number, "
                         f"not {_shown(value)}")
    elif _parts(value) is None:
        raise UsageError(f"invalid requirement condition {_shown(token)}: a number in {prop} has more than "
                         f"{_MAX_PART_DIGITS} digits")
    return Condition(prop, op, value, token)


def _split_condition(token: str) -> Optional[Tuple[str, str, str]]:
    """(property as written, operator, value) of ``<property><operator><value>``, or None: the
    expression ``([A-Za-z_]+)(==|!=|<=|>=|=|<|>)(.*)$`` as string code (``re`` is ~6 ms of start-up,
    and every CUDA image's requirement is parsed on every wrapped run)."""
    end = 0
    while end < len(token) and token[end] in _PROPERTY_CHARS:
        end += 1
    if end == 0:
        return None
    rest = token[end:]
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        return None
    value = rest[len(op):]
    if "\n" in value:  # "." stops at a line end, which "$" takes only as the very last character
        value, _, tail = value.partition("\n")
        if tail:
            return None
    return token[:end], op, value


def _is_dotted_number(text: str) -> bool:
    """``[0-9]+(\\.[0-9]+)*``, the whole text."""
    return all(is_ascii_digits(part) for part in text.split("."))


def _major_minor(text: str) -> Optional[Tuple[str, str]]:
    """(major, minor) digits of a text that starts ``[0-9]+\\.[0-9]+``, or None."""
    dot = digits_end(text)
    if dot == 0 or text[dot:dot + 1] != ".":
        return None
    end = digits_end(text, dot + 1)
    return (text[:dot], text[dot + 1:end]) if end > dot + 1 else None


def _leading_number(text: str) -> Optional[str]:
    """The longest prefix ``[0-9]+(\\.[0-9]+)*`` of ``text``, or None."""
    end = digits_end(text)
    if end == 0:
        return None
    while text[end:end + 1] == ".":
        after = digits_end(text, end + 1)
        if after == end + 1:
            break
        end = after
    return text[:end]


def _shown(text: str) -> str:
    """``text`` quoted for a message, cut at 60 characters."""
    return repr(text if len(text) <= 60 else text[:60] + "...")


def parse_requirements(text: str) -> Requirement:
    """Parse one requirement value (``cuda>=12.4 brand=tesla,driver>=470,driver<471``).

    Empty clauses and conditions (repeated spaces or commas) are skipped, as
    libnvidia-container's ``strsep`` loop does.

    >>> [[c.text for c in clause] for clause in parse_requirements("cuda>=11.8  arch>=8.0,,brand=tesla").clauses]
    [['cuda>=11.8'], ['arch>=8.0', 'brand=tesla']]
    """
    clauses = []
    for or_part in text.split():
        conditions = tuple(parse_condition(t) for t in or_part.split(",") if t)
        if conditions:
            clauses.append(conditions)
    return Requirement(tuple(clauses), text.strip())


# -- comparison ------------------------------------------------------------------------
def _parts(text: str) -> Optional[Tuple[int, ...]]:
    """The numbers of a dotted version (``12.4.1``), or None when a part is not ASCII digits or
    has more than :data:`_MAX_PART_DIGITS` significant digits."""
    out = []
    for part in text.split("."):
        n = number_or_none(part, max_digits=_MAX_PART_DIGITS)
        if n is None:
            return None
        out.append(n)
    return tuple(out)


def _numbers(text: str) -> Tuple[int, ...]:
    """:func:`_parts` of a value :func:`parse_condition` accepted (a UsageError otherwise)."""
    parts = _parts(text)
    if parts is None:
        raise UsageError(f"invalid version {_shown(text)} in a requirement: expected a dotted number "
                         f"with parts of at most {_MAX_PART_DIGITS} digits")
    return parts


def _compare(left: Tuple[int, ...], op: str, right: Tuple[int, ...]) -> bool:
    width = max(len(left), len(right))
    a = left + (0,) * (width - len(left))
    b = right + (0,) * (width - len(right))
    if op in ("=", "=="):
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _host_numbers(text: Optional[str], major_minor: bool) -> Optional[Tuple[int, ...]]:
    if not text:
        return None
    text = text.strip()
    if major_minor:
        mm = _major_minor(text)
        if mm is None:
            single = number_or_none(text, max_digits=_MAX_PART_DIGITS)
            return (single,) if single is not None else None
        return _parts(f"{mm[0]}.{mm[1]}")
    lead = _leading_number(text)
    return _parts(lead) if lead else None


def _check(cond: Condition, facts: HostFacts, gpu: Optional[GpuFacts]) -> Tuple[bool, str]:
    """(holds, what the host had) for one condition."""
    if cond.prop == "cuda":
        have = _host_numbers(facts.cuda_version, major_minor=True)
        if have is None:
            return False, _LIBCUDA_UNKNOWN
        want = _numbers(cond.value)[:2]
        return _compare(have, cond.op, want), f"host CUDA {facts.cuda_version}"
    if cond.prop == "driver":
        have = _host_numbers(facts.driver_version, major_minor=False)
        if have is None:
            return False, "host driver version unknown"
        return _compare(have, cond.op, _numbers(cond.value)), f"host driver {facts.driver_version}"
    if gpu is None:  # libnvidia-container: "No device is visible, assume the arch/brand is ok"
        return True, ""
    who = "GPU" if gpu.index is None else f"GPU {gpu.index}"
    if cond.prop == "arch":
        have = _host_numbers(gpu.arch, major_minor=False)
        if have is None:
            return False, f"{who} compute capability unknown"
        return _compare(have, cond.op, _numbers(cond.value)), f"{who} compute capability {gpu.arch}"
    if not gpu.brand:
        return False, f"{who} brand unknown"
    same = gpu.brand.lower() == cond.value.lower()
    return (not same) if cond.op == "!=" else same, f"{who} brand {gpu.brand.lower()}"


def _evaluate_once(req: Requirement, facts: HostFacts, gpu: Optional[GpuFacts]) -> Tuple[bool, Optional[str]]:
    first_failure: Optional[str] = None
    for clause in req.clauses:
        failure = None
        for cond in clause:
            ok, have = _check(cond, facts, gpu)
            if not ok:
                failure = f"unsatisfied condition: {cond.text} ({have})"
                break
        if failure is None:
            return True, None
        if first_failure is None:
            # report the first clause: images put the main rule (cuda>=X.Y) first and
            # the branch-specific alternatives (brand=...,driver>=...) after it
            first_failure = failure
    if first_failure is None:
        return True, None
    return False, first_failure


def evaluate(req: Requirement, facts: HostFacts) -> Tuple[bool, Optional[str]]:
    """(True, None) when ``req`` holds on ``facts``, else (False, sentence naming the failed condition).

    With GPUs the requirement must hold for every GPU; without GPUs ``arch``
    and ``brand`` conditions hold vacuously.
    """
    for gpu in facts.gpus or (None,):
        ok, failure = _evaluate_once(req, facts, gpu)
        if not ok:
            return ok, failure
    return True, None


# -- image check ---------------------------------------------------------------------
def require_disabled(value: Optional[str]) -> bool:
    """Whether an ``NVIDIA_DISABLE_REQUIRE`` value turns the checks off: a true value of Go's
    ``strconv.ParseBool`` (``1 t T TRUE true True``), as the toolkit reads it
    (``internal/config/image/cuda_image.go``, ``HasDisableRequire``); anything else keeps them on."""
    return value in ("1", "t", "T", "TRUE", "true", "True")


def legacy_cuda_version(value: str) -> str:
    """``major.minor`` of a legacy image's ``CUDA_VERSION``, read as the toolkit reads it: a
    semantic version with an optional ``v``, optional minor and patch, pre-release and build
    parts, major and minor at most 4294967295 (``internal/config/image/cuda_image.go``,
    ``parseMajorMinorVersion`` and its tests). Anything else is a UsageError.

    Example:
        >>> legacy_cuda_version("v11.6"), legacy_cuda_version("9.0.116"), legacy_cuda_version("8")
        ('11.6', '9.0', '8.0')
    """
    m = _SEMVER.fullmatch(value) if len(value) <= 256 else None
    if m is None or len(m.group(1)) > 10 or len(m.group(2) or "") > 10:
        raise UsageError(f"invalid CUDA_VERSION {value[:40]!r}: expected a version like 12.4.1")
    major = parse_number(m.group(1), "CUDA_VERSION major", max_digits=10, error=UsageError)
    minor = parse_number(m.group(2) or "0", "CUDA_VERSION minor", max_digits=10, error=UsageError)
    if major > _UINT32 or minor > _UINT32:
        raise UsageError(f"invalid CUDA_VERSION {value[:40]!r}: version number out of range")
    return f"{major}.{minor}"


def image_requirements(env: Mapping[str, str]) -> Tuple[Tuple[str, str], ...]:
    """The (source, requirement text) pairs an image environment asks for, in name order.

    ``NVIDIA_REQUIRE_JETPACK*`` are left out (the toolkit does too: they are
    L4T package versions, not this language). ``CUDA_VERSION`` alone (images
    before ``NVIDIA_REQUIRE_CUDA``) implies ``cuda>=<major.minor>``; an invalid
    one raises UsageError, as the toolkit refuses to start such a container.
    """
    out: List[Tuple[str, str]] = []
    for key in sorted(env):
        if key.startswith("NVIDIA_REQUIRE_") and not key.startswith("NVIDIA_REQUIRE_JETPACK") and env[key].strip():
            out.append((key, env[key]))
    legacy = env.get("CUDA_VERSION", "")
    if legacy and not env.get("NVIDIA_REQUIRE_CUDA"):
        out.append(("CUDA_VERSION", f"cuda>={legacy_cuda_version(legacy)}"))
    return tuple(out)


def check_label(label: Optional[str], facts: HostFacts) -> Optional[str]:
    """nvidia-docker 1.0's ``com.nvidia.cuda.version`` check; the failure sentence or None.

    Both versions are read as ``%d.%d`` (extra parts ignored); it fails when the
    image's major.minor is above the driver's.
    """
    if not label or not label.strip():
        return None
    mm = _major_minor(label.strip())
    want = _parts(f"{mm[0]}.{mm[1]}") if mm is not None else None
    if want is None:
        return f"invalid label {LABEL_CUDA_VERSION}={_shown(label)}: expected a CUDA version like 9.0"
    have = _host_numbers(facts.cuda_version, major_minor=True)
    if have is None:
        # 1.0 printed "driver 0.0 < image X" here (#190, #357, #384)
        return f"unsupported CUDA version: image {printable(label.strip())} ({_LIBCUDA_UNKNOWN})"
    if have < want:
        return f"unsupported CUDA version: driver {facts.cuda_version} < image {printable(label.strip())}"
    return None


def check_image(env: Mapping[str, str], labels: Mapping[str, str], facts: HostFacts) -> Tuple[str, ...]:
    """Every unsatisfied image requirement as a sentence (empty: the image may run).

    Honours ``NVIDIA_DISABLE_REQUIRE``. The 1.0 label is checked only when the
    environment states no requirement: images that have both (CUDA 8/9) say
    the same thing twice, and the env form is the more precise one. A
    malformed requirement is reported as a failure (the image is at fault, and
    ``--no-require`` skips it).
    """
    if require_disabled(env.get("NVIDIA_DISABLE_REQUIRE")):
        return ()
    failures: List[str] = []
    try:
        requirements = image_requirements(env)
    except UsageError as exc:
        return (f"CUDA_VERSION: {exc}",)
    for source, text in requirements:
        try:
            req = parse_requirements(text)
        except UsageError as exc:
            failures.append(f"{source}: {exc}")
            continue
        ok, failure = evaluate(req, facts)
        if not ok and failure is not None and failure not in failures:
            failures.append(failure)
    if not requirements:
        label_failure = check_label(labels.get(LABEL_CUDA_VERSION), facts)
        if label_failure is not None:
            failures.append(label_failure)
    return tuple(failures)


def requirement_error(failures: Sequence[str]) -> RequirementError:
    """One :class:`RequirementError` for ``failures`` with a hint on what to do."""
    message = "the image's requirements are not met: " + "; ".join(failures) if failures else \
        "the image's requirements are not met"
    if any(_LIBCUDA_UNKNOWN in f for f in failures):
        hint = ("nvlow could not load libcuda.so.1 to read the driver's CUDA version ('nvlow doctor' says why); "
                "pass --no-require to skip the check")
    else:
        hint = ("upgrade the NVIDIA driver, use an older image tag built for this driver's CUDA version, "
                "or pass --no-require to skip the check")
    return RequirementError(message, hint=hint)


# -- CUDA forward compatibility ----------------------------------------------------------
def _major(version: str) -> Optional[int]:
    text = (version or "").lstrip()
    return number_or_none(text[:digits_end(text)], max_digits=_MAX_PART_DIGITS)


def compat_applies(host_driver: str, compat_version: str, note: Optional[Mapping[str, Any]], *,
                   host_cuda: Optional[str] = None) -> bool:
    """Whether an image's ``/usr/local/cuda/compat`` libcuda should be used on this host.

    ``compat_version`` is the compat ``libcuda.so.<version>`` version and
    ``note`` the JSON of its ``.note.cuda.fwd_compatibility`` ELF note, when
    present (docs/driver-file-selection.md "CUDA forward compatibility", toolkit ``enable-cuda-compat`` hook):
    compat is used when the host driver branch is listed in ``driver`` and the
    note's ``CUDA version`` is newer than ``host_cuda`` (when known). Without a
    usable note: when the compat major is greater than the host driver's major
    (libnvidia-container's ``ldconfig`` mode). Unreadable versions: False.

    >>> compat_applies("535.104.05", "560.35.03", None)
    True
    >>> compat_applies("560.35.03", "560.35.03", None)
    False
    >>> compat_applies("535.104.05", "580.65.06", {"CUDA version": "13.0", "driver": [570, 575]})
    False
    """
    host_major, compat_major = _major(host_driver), _major(compat_version)
    if host_major is None or compat_major is None:
        return False
    branches = note.get("driver") if isinstance(note, dict) else None
    if isinstance(branches, list):
        listed = {b for b in (_major(str(x)) for x in branches) if b is not None}
        if host_major not in listed:
            return False
        note_cuda = _host_numbers(str(note.get("CUDA version", "")), major_minor=True) if note else None
        have = _host_numbers(host_cuda, major_minor=True)
        if note_cuda is not None and have is not None:
            return note_cuda > have
    return compat_major > host_major
