"""nvlow.plan.require: the NVIDIA_REQUIRE_* language, the 1.0 label check, CUDA forward-compat decision."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import pytest

from nvlow.errors import RequirementError, UsageError
from nvlow.plan.require import (Condition, GpuFacts, HostFacts, Requirement, check_image, check_label, compat_applies,
                           evaluate, image_requirements, parse_condition, parse_requirements, require_disabled,
                           requirement_error)

BRANDS = ["tesla", "unknown", "nvidia", "nvidiartx", "geforce", "geforcertx", "quadro", "quadrortx", "titan",
          "titanrtx"]


def cuda_image_require(cuda: str, branches: List[Tuple[int, List[str]]]) -> str:
    """NVIDIA_REQUIRE_CUDA as nvidia/container-images/cuda generates it: cuda>=X.Y, then per driver branch
    one brand=<b>,driver>=<N>,driver<<N+1> clause per brand."""
    clauses = [f"cuda>={cuda}"]
    for branch, brands in branches:
        clauses += [f"brand={b},driver>={branch},driver<{branch + 1}" for b in brands]
    return " ".join(clauses)


# The values of the official images (nvidia/cuda:<tag>-base-ubuntu22.04).
REQUIRE_11_8 = cuda_image_require("11.8", [(450, ["tesla"]), (470, BRANDS), (510, BRANDS), (515, BRANDS)])
REQUIRE_12_2 = cuda_image_require("12.2", [(470, BRANDS), (525, BRANDS)])
REQUIRE_12_4 = cuda_image_require("12.4", [(470, BRANDS), (525, BRANDS), (535, BRANDS)])

IMAGES: Dict[str, Dict[str, str]] = {
    "11.8": {"CUDA_VERSION": "11.8.0", "NVIDIA_REQUIRE_CUDA": REQUIRE_11_8},
    "12.2": {"CUDA_VERSION": "12.2.2", "NVIDIA_REQUIRE_CUDA": REQUIRE_12_2},
    "12.4": {"CUDA_VERSION": "12.4.1", "NVIDIA_REQUIRE_CUDA": REQUIRE_12_4},
}


def test_real_value_shape() -> None:
    assert REQUIRE_12_4.startswith("cuda>=12.4 brand=tesla,driver>=470,driver<471 "
                                   "brand=unknown,driver>=470,driver<471 brand=nvidia,driver>=470,driver<471")
    assert REQUIRE_12_4.endswith("brand=titan,driver>=535,driver<536 brand=titanrtx,driver>=535,driver<536")
    req = parse_requirements(REQUIRE_12_4)
    assert len(req.clauses) == 31
    assert req.clauses[1] == (Condition("brand", "=", "tesla", "brand=tesla"),
                              Condition("driver", ">=", "470", "driver>=470"),
                              Condition("driver", "<", "471", "driver<471"))


def host(cuda: Optional[str], driver: Optional[str], *gpus: Tuple[Optional[str], Optional[str]]) -> HostFacts:
    return HostFacts(cuda, driver, tuple(GpuFacts(a, b, i) for i, (a, b) in enumerate(gpus)))


A100 = ("8.0", "tesla")
RTX = ("8.6", "geforce")
H100 = ("9.0", "nvidia")


@pytest.mark.parametrize("image, facts, expected", [
    # new enough driver: the cuda>= clause holds
    ("12.4", host("12.4", "550.54.15", A100), ()),
    ("12.4", host("12.8", "570.124.06", RTX), ()),
    ("11.8", host("12.2", "535.104.05", A100), ()),
    ("12.2", host("12.2", "535.104.05", RTX, A100), ()),
    # older driver, but a listed branch for the brand: the image's compat/minor-version path
    ("12.4", host("12.2", "535.104.05", A100), ()),
    ("12.4", host("12.2", "535.104.05", RTX), ()),
    ("12.4", host("11.4", "470.82.01", ("7.0", "quadrortx")), ()),
    ("11.8", host("11.0", "450.80.02", A100), ()),
    ("12.4", host("12.0", "525.60.13", ("8.9", "unknown")), ()),
    # not listed: branch 545 (CUDA 12.3) for a 12.4 image
    ("12.4", host("12.3", "545.23.08", A100), ("unsatisfied condition: cuda>=12.4 (host CUDA 12.3)",)),
    # 450 is listed for tesla only
    ("11.8", host("11.0", "450.80.02", RTX), ("unsatisfied condition: cuda>=11.8 (host CUDA 11.0)",)),
    # every GPU must satisfy it: the GeForce on 450 fails even though the Tesla passes
    ("11.8", host("11.0", "450.80.02", A100, RTX), ("unsatisfied condition: cuda>=11.8 (host CUDA 11.0)",)),
    # a brand outside the lists (nvs) on a listed branch
    ("12.2", host("12.0", "525.60.13", ("5.0", "nvs")), ("unsatisfied condition: cuda>=12.2 (host CUDA 12.0)",)),
    # no GPU selected: brand conditions are vacuous, the driver branch still counts
    ("12.4", host("12.2", "535.104.05"), ()),
    ("12.4", host("12.3", "545.23.08"), ("unsatisfied condition: cuda>=12.4 (host CUDA 12.3)",)),
    # libcuda unreadable: never "0.0"
    ("12.4", host(None, "545.23.08", A100),
     ("unsatisfied condition: cuda>=12.4 (host CUDA version unknown: libcuda could not be read)",)),
    # ... but a listed branch still lets it through, as the toolkit would
    ("12.4", host(None, "535.104.05", A100), ()),
])
def test_real_images(image: str, facts: HostFacts, expected: Tuple[str, ...]) -> None:
    assert check_image(IMAGES[image], {}, facts) == expected


@pytest.mark.parametrize("op, value, holds", [
    ("=", "12.4", True), ("==", "12.4", True), ("!=", "12.4", False),
    ("<", "12.5", True), ("<", "12.4", False), ("<=", "12.4", True), ("<=", "12.3", False),
    (">", "12.3", True), (">", "12.4", False), (">=", "12.4", True), (">=", "12.10", False),
    ("=", "12.4.1", True),  # cuda compares major.minor only
    (">=", "12", True), (">", "12", True), ("=", "12", False),
])
def test_cuda_operators(op: str, value: str, holds: bool) -> None:
    assert evaluate(parse_requirements(f"cuda{op}{value}"), host("12.4", "550.54.15"))[0] is holds


@pytest.mark.parametrize("op, value, holds", [
    ("=", "535.104.05", True), ("==", "535.104.5", True), ("!=", "535.104.05", False),
    (">=", "535", True), ("<", "536", True), ("<", "535", False), (">", "535", True), ("=", "535", False),
    ("<=", "535.104.05", True), ("<=", "535.104.4", False), (">", "535.104.05", False), (">=", "535.104.6", False),
    (">=", "470.82.01", True), ("<", "1000", True),
])
def test_driver_operators(op: str, value: str, holds: bool) -> None:
    assert evaluate(parse_requirements(f"driver{op}{value}"), host("12.2", "535.104.05"))[0] is holds


@pytest.mark.parametrize("op, value, holds", [
    ("=", "8.0", True), ("==", "8", True), ("!=", "8.0", False), (">=", "7.5", True), (">=", "8.6", False),
    ("<", "9.0", True), ("<=", "8.0", True), (">", "7.10", True), (">", "8.0", False), ("<", "8.0", False),
])
def test_arch_operators(op: str, value: str, holds: bool) -> None:
    assert evaluate(parse_requirements(f"arch{op}{value}"), host("12.2", "535.104.05", A100))[0] is holds


@pytest.mark.parametrize("text, holds", [
    ("brand=tesla", True), ("brand==TESLA", True), ("BRAND=Tesla", True), ("brand!=tesla", False),
    ("brand=geforce", False), ("brand!=geforce", True),
])
def test_brand(text: str, holds: bool) -> None:
    assert evaluate(parse_requirements(text), host("12.2", "535.104.05", A100))[0] is holds


def test_and_or() -> None:
    facts = host("12.2", "535.104.05", A100)
    assert evaluate(parse_requirements("cuda>=12.0,driver>=535,arch>=8.0"), facts) == (True, None)
    assert evaluate(parse_requirements("cuda>=12.0,driver>=550,arch>=8.0"), facts) == (
        False, "unsatisfied condition: driver>=550 (host driver 535.104.05)")
    assert evaluate(parse_requirements("cuda>=12.4 driver>=535"), facts) == (True, None)
    assert evaluate(parse_requirements("driver>=535 cuda>=12.4"), facts) == (True, None)
    # the reported failure is the first clause's first failing condition
    assert evaluate(parse_requirements("cuda>=12.4,arch>=9.0 arch>=9.0"), facts) == (
        False, "unsatisfied condition: cuda>=12.4 (host CUDA 12.2)")
    assert evaluate(parse_requirements("arch>=9.0 brand=geforce"), facts) == (
        False, "unsatisfied condition: arch>=9.0 (GPU 0 compute capability 8.0)")


def test_per_gpu() -> None:
    facts = host("12.4", "550.54.15", H100, A100)
    assert evaluate(parse_requirements("arch>=9.0"), facts) == (
        False, "unsatisfied condition: arch>=9.0 (GPU 1 compute capability 8.0)")
    assert evaluate(parse_requirements("arch>=9.0 brand=tesla"), facts) == (True, None)
    # both conditions per GPU, not each condition over all GPUs
    assert evaluate(parse_requirements("arch>=9.0,brand=tesla"), facts) == (
        False, "unsatisfied condition: brand=tesla (GPU 0 brand nvidia)")
    assert evaluate(parse_requirements("brand=tesla"), HostFacts("12.4", "550.54.15", (GpuFacts("8.0", "geforce"),))
                    ) == (False, "unsatisfied condition: brand=tesla (GPU brand geforce)")


def test_unknown_facts() -> None:
    facts = host(None, None, (None, None))
    assert evaluate(parse_requirements("driver>=470"), facts) == (
        False, "unsatisfied condition: driver>=470 (host driver version unknown)")
    assert evaluate(parse_requirements("arch>=7.0"), facts) == (
        False, "unsatisfied condition: arch>=7.0 (GPU 0 compute capability unknown)")
    assert evaluate(parse_requirements("brand=tesla"), facts) == (
        False, "unsatisfied condition: brand=tesla (GPU 0 brand unknown)")
    assert evaluate(parse_requirements("cuda>=12.0"), HostFacts("garbage", "x", ())) == (
        False, "unsatisfied condition: cuda>=12.0 (host CUDA version unknown: libcuda could not be read)")


def test_no_gpu_is_vacuous_for_arch_and_brand() -> None:
    assert evaluate(parse_requirements("arch>=99.0,brand=nope"), host("12.4", "550.54.15")) == (True, None)


@pytest.mark.parametrize("text", ["", "   ", ",,", " , "])
def test_empty_requirement_holds(text: str) -> None:
    req = parse_requirements(text)
    assert req == Requirement((), text.strip())
    assert evaluate(req, host(None, None, A100)) == (True, None)


@pytest.mark.parametrize("text, message", [
    ("cuda", "invalid requirement condition 'cuda': expected <property><operator><value>"),
    ("cuda~12", "invalid requirement condition 'cuda~12': expected <property><operator><value>"),
    (">=12.0", "invalid requirement condition '>=12.0': expected <property><operator><value>"),
    ("cuda>=", "invalid requirement condition 'cuda>=': missing or malformed value"),
    ("cuda=>12", "invalid requirement condition 'cuda=>12': missing or malformed value"),
    ("cuda>>12", "invalid requirement condition 'cuda>>12': missing or malformed value"),
    ("os=linux", "invalid requirement condition 'os=linux': unknown property 'os'"),
    ("cuda>=12.x", "invalid requirement condition 'cuda>=12.x': cuda needs a dotted number, not '12.x'"),
    ("driver>=535.", "invalid requirement condition 'driver>=535.': driver needs a dotted number, not '535.'"),
    ("arch>=sm_80", "invalid requirement condition 'arch>=sm_80': arch needs a dotted number, not 'sm_80'"),
    ("brand>=tesla", "invalid requirement condition 'brand>=tesla': brand only supports = and !="),
    ("cuda>=12.0 brand=tesla,drivr<3", "invalid requirement condition 'drivr<3': unknown property 'drivr'"),
])
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_requirements(text)
    assert str(exc.value) == message


def test_parse_condition() -> None:
    assert parse_condition("Driver<=535.104.05") == Condition("driver", "<=", "535.104.05", "Driver<=535.104.05")


# -- check_image ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, disabled", [
    # Go's strconv.ParseBool, as the toolkit's HasDisableRequire: a value it cannot parse is false
    (None, False), ("", False), ("0", False), ("false", False), ("FALSE", False), (" 0 ", False),
    ("1", True), ("true", True), ("t", True), ("T", True), ("TRUE", True), ("True", True),
    ("yes", False), ("anything", False), (" 1", False), ("tRuE", False),
])
def test_disable_flag(value: Optional[str], disabled: bool) -> None:
    assert require_disabled(value) is disabled
    env = {"NVIDIA_REQUIRE_CUDA": "cuda>=99.0"}
    if value is not None:
        env["NVIDIA_DISABLE_REQUIRE"] = value
    failures = check_image(env, {"com.nvidia.cuda.version": "99.0"}, host("12.4", "550.54.15"))
    assert bool(failures) is not disabled


def test_image_requirements() -> None:
    env = {"NVIDIA_REQUIRE_CUDA": "cuda>=12.4", "NVIDIA_REQUIRE_ARCH": "arch>=8.0", "NVIDIA_REQUIRE_EMPTY": " ",
           "NVIDIA_REQUIRE_JETPACK": "csi", "NVIDIA_REQUIRE_JETPACK_HOST_MOUNTS": "", "CUDA_VERSION": "12.4.1",
           "NVIDIA_REQUIREMENTS": "cuda>=1", "PATH": "/bin"}
    assert image_requirements(env) == (("NVIDIA_REQUIRE_ARCH", "arch>=8.0"), ("NVIDIA_REQUIRE_CUDA", "cuda>=12.4"))


@pytest.mark.parametrize("cuda_version, implied", [
    ("9.0.176", "cuda>=9.0"), ("10.2.89", "cuda>=10.2"), ("8.0", "cuda>=8.0"), ("11", "cuda>=11.0"),
    # the toolkit's own table (internal/config/image/cuda_image_test.go, TestParseMajorMinorVersionValid)
    ("0", "cuda>=0.0"), ("8", "cuda>=8.0"), ("7.5", "cuda>=7.5"), ("9.0.116", "cuda>=9.0"),
    ("4294967295.4294967295.4294967295", "cuda>=4294967295.4294967295"), ("v11.6", "cuda>=11.6"),
    ("12.4.1-rc1+build.5", "cuda>=12.4"),
])
def test_legacy_cuda_version(cuda_version: str, implied: str) -> None:
    assert image_requirements({"CUDA_VERSION": cuda_version}) == (("CUDA_VERSION", implied),)


def test_legacy_cuda_version_check() -> None:
    assert check_image({"CUDA_VERSION": "10.2.89"}, {}, host("10.1", "418.87.01")) == (
        "unsatisfied condition: cuda>=10.2 (host CUDA 10.1)",)
    assert check_image({"CUDA_VERSION": "10.2.89"}, {}, host("10.2", "440.33.01")) == ()
    # NVIDIA_REQUIRE_CUDA wins over CUDA_VERSION
    assert check_image({"CUDA_VERSION": "10.2.89", "NVIDIA_REQUIRE_CUDA": "cuda>=10.0"}, {},
                       host("10.1", "418.87.01")) == ()
    assert check_image({"CUDA_VERSION": "ten"}, {}, host("10.1", "418.87.01")) == (
        "CUDA_VERSION: invalid CUDA_VERSION 'ten': expected a version like 12.4.1",)
    # NVIDIA_DISABLE_REQUIRE switches the legacy check off too (toolkit TestGetRequirements)
    assert check_image({"CUDA_VERSION": "10.2.89", "NVIDIA_DISABLE_REQUIRE": "true"}, {},
                       host("10.1", "418.87.01")) == ()


# the toolkit's TestParseMajorMinorVersionInvalid table, plus digit bombs and non-ASCII digits
@pytest.mark.parametrize("cuda_version", [
    "foo", "foo.5.10", "9.0.116.50", "9.0.116foo", "7.foo", "9.0.bar", "9.4294967296", "9.0.116.", "9..0",
    "9.", ".5.10", "-9", "+9", "-9.1.116", "-9.-1.-116", "9" * 5000, "\u0663.1", "11.6\n",
])
def test_legacy_cuda_version_invalid(cuda_version: str) -> None:
    with pytest.raises(UsageError, match="invalid CUDA_VERSION"):
        image_requirements({"CUDA_VERSION": cuda_version})
    failures = check_image({"CUDA_VERSION": cuda_version}, {}, host("12.4", "550.54.15"))
    assert len(failures) == 1 and failures[0].startswith("CUDA_VERSION: invalid CUDA_VERSION")


def test_all_requirements_must_hold() -> None:
    env = {"NVIDIA_REQUIRE_CUDA": "cuda>=12.0", "NVIDIA_REQUIRE_ARCH": "arch>=9.0", "NVIDIA_REQUIRE_DRV": "driver>=560"}
    assert check_image(env, {}, host("12.4", "550.54.15", A100)) == (
        "unsatisfied condition: arch>=9.0 (GPU 0 compute capability 8.0)",
        "unsatisfied condition: driver>=560 (host driver 550.54.15)",
    )


def test_malformed_image_requirement_is_a_failure() -> None:
    assert check_image({"NVIDIA_REQUIRE_CUDA": "cuda>=12.4 brand=tesla,drv>=1"}, {}, host("12.4", "550.54.15")) == (
        "NVIDIA_REQUIRE_CUDA: invalid requirement condition 'drv>=1': unknown property 'drv'",)


def test_duplicate_failures_once() -> None:
    env = {"NVIDIA_REQUIRE_A": "cuda>=13.0", "NVIDIA_REQUIRE_B": "cuda>=13.0"}
    assert check_image(env, {}, host("12.4", "550.54.15")) == ("unsatisfied condition: cuda>=13.0 (host CUDA 12.4)",)


# -- the 1.0 label -------------------------------------------------------------------------------
@pytest.mark.parametrize("label, cuda, expected", [
    (None, "8.0", None),
    ("", "8.0", None),
    ("8.0", "8.0", None),
    ("8.0", "9.2", None),
    ("9.0.176", "9.0", None),
    ("9.0.176", "8.0", "unsupported CUDA version: driver 8.0 < image 9.0.176"),
    ("9.2", "9.1", "unsupported CUDA version: driver 9.1 < image 9.2"),
    ("12.6", "12.4", "unsupported CUDA version: driver 12.4 < image 12.6"),
    ("10.0", "9.2", "unsupported CUDA version: driver 9.2 < image 10.0"),
    ("8.0", None, "unsupported CUDA version: image 8.0 (host CUDA version unknown: libcuda could not be read)"),
    ("eight", "8.0", "invalid label com.nvidia.cuda.version='eight': expected a CUDA version like 9.0"),
])
def test_label(label: Optional[str], cuda: Optional[str], expected: Optional[str]) -> None:
    assert check_label(label, host(cuda, "384.81")) == expected


def test_label_via_check_image() -> None:
    labels = {"com.nvidia.volumes.needed": "nvidia_driver", "com.nvidia.cuda.version": "9.0.176"}
    assert check_image({}, labels, host("8.0", "375.26")) == ("unsupported CUDA version: driver 8.0 < image 9.0.176",)
    # with an env requirement the label is not checked twice
    assert check_image({"CUDA_VERSION": "9.0.176", "NVIDIA_REQUIRE_CUDA": "cuda>=9.0"}, labels,
                       host("8.0", "375.26")) == ("unsatisfied condition: cuda>=9.0 (host CUDA 8.0)",)


# -- the error ------------------------------------------------------------------------------------------
def test_requirement_error() -> None:
    err = requirement_error(["unsatisfied condition: cuda>=12.6 (host CUDA 12.4)",
                             "unsatisfied condition: arch>=9.0 (GPU 0 compute capability 8.0)"])
    assert isinstance(err, RequirementError) and err.exit_code == 3
    assert str(err) == ("the image's requirements are not met: unsatisfied condition: cuda>=12.6 (host CUDA 12.4); "
                        "unsatisfied condition: arch>=9.0 (GPU 0 compute capability 8.0)")
    assert err.hint == ("upgrade the NVIDIA driver, use an older image tag built for this driver's CUDA version, "
                        "or pass --no-require to skip the check")
    assert "\n" not in str(err)


def test_requirement_error_libcuda() -> None:
    err = requirement_error(check_image({"NVIDIA_REQUIRE_CUDA": "cuda>=12.0"}, {}, host(None, "550.54.15")))
    assert str(err) == ("the image's requirements are not met: unsatisfied condition: cuda>=12.0 "
                        "(host CUDA version unknown: libcuda could not be read)")
    assert err.hint is not None and "libcuda.so.1" in err.hint and "--no-require" in err.hint
    assert "0.0" not in str(err)


# -- CUDA forward compatibility ----------------------------------------------------------------------------
NOTE_13_1 = {"format": 1, "CUDA version": "13.1", "driver": [535, 550, 570, 575, 580, 590], "device": []}


@pytest.mark.parametrize("host_driver, compat, note, host_cuda, applies", [
    # no note: compat major must be greater than the host's (libnvidia-container "ldconfig" mode)
    ("535.104.05", "560.35.03", None, None, True),
    ("560.35.03", "560.35.03", None, None, False),
    ("570.124.06", "560.35.03", None, None, False),
    # note: host branch listed and the compat CUDA newer than the host's
    ("535.104.05", "590.44.01", NOTE_13_1, "12.2", True),
    ("550.54.15", "590.44.01", NOTE_13_1, "12.4", True),
    ("545.23.08", "590.44.01", NOTE_13_1, "12.3", False),  # branch not listed
    ("590.44.01", "590.44.01", NOTE_13_1, "13.1", False),  # not newer
    ("580.65.06", "590.44.01", NOTE_13_1, "13.0", True),
    # note without a known host CUDA: branch check, then the major comparison
    ("535.104.05", "590.44.01", NOTE_13_1, None, True),
    # driver list with strings, note without a list falls back
    ("535.104.05", "590.44.01", {"CUDA version": "13.1", "driver": ["535"]}, "12.2", True),
    ("535.104.05", "590.44.01", {"CUDA version": "13.1"}, "12.2", True),
    ("535.104.05", "590.44.01", {"driver": "535"}, None, True),
    # unreadable versions never enable compat
    ("", "590.44.01", None, None, False),
    ("535.104.05", "x", None, None, False),
])
def test_compat_applies(host_driver: str, compat: str, note: Optional[dict], host_cuda: Optional[str],  # type: ignore[type-arg]
                        applies: bool) -> None:
    assert compat_applies(host_driver, compat, note, host_cuda=host_cuda) is applies
