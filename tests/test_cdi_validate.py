"""CDI validation rules (table-driven: each rule passes and fails) and host checks."""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List

import pytest

from nvlow.cdi.validate import (compatibility_notes, driver_version_of, host_problems, required_version,
                                validate_document)

V = "550.54.15"


def base() -> Dict[str, Any]:
    return {
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "devices": [
            {"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0", "type": "c", "major": 195,
                                                              "minor": 0}]}},
            {"name": "all", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}},
        ],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [{"path": "/dev/nvidiactl", "hostPath": "/srv/dev/nvidiactl"}],
            "mounts": [{"hostPath": f"/usr/lib/libcuda.so.{V}", "containerPath": "/usr/local/nvidia/lib64/libcuda.so.1",
                        "options": ["ro", "nosuid", "nodev", "bind"]}],
            "hooks": [{"hookName": "createContainer", "path": "/usr/bin/hook", "args": ["hook"], "env": ["A=1"],
                       "timeout": 5}],
        },
    }


def edit(fn: Callable[[Dict[str, Any]], None]) -> Dict[str, Any]:
    doc = base()
    fn(doc)
    return doc


def dev0(doc: Dict[str, Any]) -> Dict[str, Any]:
    return doc["devices"][0]  # type: ignore[no-any-return]


def common(doc: Dict[str, Any]) -> Dict[str, Any]:
    return doc["containerEdits"]  # type: ignore[no-any-return]


def test_base_is_valid() -> None:
    assert validate_document(base()) == []


# (id, mutation that keeps the spec valid, mutation that breaks it, expected problem lines)
RULES: List[Any] = [
    ("top-level mapping", lambda d: None, None, None),
    ("unknown top field", lambda d: d.update(annotations={"a": "b"}, cdiVersion="0.6.0"),
     lambda d: d.update(bogus=1), ['spec: unknown field \'bogus\'']),
    ("case of a field", lambda d: None, lambda d: d.update(CdiVersion="0.5.0"),
     ["spec: unknown field 'CdiVersion' (did you mean 'cdiVersion'?)"]),
    ("version missing", lambda d: None, lambda d: d.pop("cdiVersion"), ["spec: cdiVersion is missing"]),
    ("version empty", lambda d: None, lambda d: d.update(cdiVersion=""), ["spec: invalid (empty) cdiVersion"]),
    ("version type", lambda d: None, lambda d: d.update(cdiVersion=0.5), ["spec.cdiVersion: must be a string, not a number"]),
    ("version unknown", lambda d: d.update(cdiVersion="1.1.0"), lambda d: d.update(cdiVersion="0.9.0"),
     ["cdiVersion: invalid version '0.9.0' (known: 0.1.0, 0.2.0, 0.3.0, 0.4.0, 0.5.0, 0.6.0, 0.7.0, 0.8.0, 1.0.0, 1.1.0; "
      "a leading 'v' is allowed)"]),
    ("numeric name needs 0.5.0", lambda d: (d.update(cdiVersion="0.4.0"), dev0(d).update(name="gpu0"),
                                            common(d)["deviceNodes"][0].pop("hostPath")),
     lambda d: (d.update(cdiVersion="0.4.0"), common(d)["deviceNodes"][0].pop("hostPath")),
     ['cdiVersion: version 0.4.0 is below 0.5.0, which device name "0" (starts with a digit) needs']),
    ("hostPath needs 0.5.0", lambda d: None,
     lambda d: (d.update(cdiVersion="0.4.0"), dev0(d).update(name="gpu0")),
     ["cdiVersion: version 0.4.0 is below 0.5.0, which a device node 'hostPath' (containerEdits) needs"]),
    ("mount type needs 0.4.0", lambda d: common(d)["mounts"][0].update(type="bind"),
     lambda d: (d.update(cdiVersion="0.3.0"), dev0(d).update(name="gpu0"),
                common(d)["deviceNodes"][0].pop("hostPath"), common(d)["mounts"][0].update(type="bind")),
     ["cdiVersion: version 0.3.0 is below 0.4.0, which a mount 'type' (containerEdits) needs"]),
    ("annotations need 0.6.0", lambda d: d.update(cdiVersion="0.6.0", annotations={"a": "b"}),
     lambda d: dev0(d).update(annotations={"a": "b"}),
     ["cdiVersion: version 0.5.0 is below 0.6.0, which 'annotations' (devices[0]) needs"]),
    ("dot in class needs 0.6.0", lambda d: d.update(cdiVersion="0.6.0", kind="nvidia.com/g.pu"),
     lambda d: d.update(kind="nvidia.com/g.pu"),
     ["cdiVersion: version 0.5.0 is below 0.6.0, which a '.' in the class name of 'nvidia.com/g.pu' needs"]),
    ("additionalGids need 0.7.0", lambda d: (d.update(cdiVersion="0.7.0"), common(d).update(additionalGids=[44])),
     lambda d: common(d).update(additionalGids=[44]),
     ["cdiVersion: version 0.5.0 is below 0.7.0, which 'additionalGids' (containerEdits) needs"]),
    ("netDevices need 1.1.0",
     lambda d: (d.update(cdiVersion="1.1.0"), common(d).update(netDevices=[{"hostInterfaceName": "e", "name": "n"}])),
     lambda d: (d.update(cdiVersion="1.0.0"), common(d).update(netDevices=[{"hostInterfaceName": "e", "name": "n"}])),
     ["cdiVersion: version 1.0.0 is below 1.1.0, which 'netDevices' (containerEdits) needs"]),
    ("intelRdt", lambda d: (d.update(cdiVersion="0.7.0"), common(d).update(intelRdt={"closID": "x"})),
     lambda d: (d.update(cdiVersion="0.7.0"), common(d).update(intelRdt={"closID": 3, "bogus": 1})),
     ["containerEdits.intelRdt: unknown field 'bogus'", "containerEdits.intelRdt.closID: must be a string, not a number"]),
    ("kind missing", lambda d: None, lambda d: d.pop("kind"), ["spec: kind is missing"]),
    ("kind without vendor", lambda d: None, lambda d: d.update(kind="gpu"),
     ["kind: invalid (empty) vendor name in 'gpu' (use vendor/class, e.g. nvidia.com/gpu)"]),
    ("kind vendor start", lambda d: d.update(kind="a_b-c.d/x-1"), lambda d: d.update(kind="-nvidia.com/gpu"),
     ["kind: invalid vendor '-nvidia.com' (start with a letter, end with a letter or digit, only letters, digits, "
      "'_', '.', '-')"]),
    ("kind class char", lambda d: None, lambda d: d.update(kind="nvidia.com/g pu"),
     ["kind: invalid class 'g pu' (start with a letter, end with a letter or digit, only letters, digits, "
      "'_', '.', '-')"]),
    ("kind empty class", lambda d: None, lambda d: d.update(kind="nvidia.com/"),
     ["kind: invalid (empty) class name in 'nvidia.com/'"]),
    ("devices missing", lambda d: None, lambda d: d.pop("devices"), ["spec: devices is missing"]),
    ("devices empty", lambda d: None, lambda d: d.update(devices=[]),
     ["devices: no devices (a spec needs at least one)"]),
    ("devices type", lambda d: None, lambda d: d.update(devices={}), ["devices: must be a list, not a mapping"]),
    ("device unknown field", lambda d: None, lambda d: dev0(d).update(bogus=1),
     ["devices[0]: unknown field 'bogus'"]),
    ("device name empty", lambda d: None, lambda d: dev0(d).update(name=""),
     ["devices[0]: invalid (empty) device name"]),
    ("device name syntax", lambda d: dev0(d).update(name="MIG-1a2b.3:4_x-y"), lambda d: dev0(d).update(name="gpu/0"),
     ["devices[0].name: invalid device name 'gpu/0' (letters, digits, '_', '.', ':', '-'; start and end with a "
      "letter or digit)"]),
    ("device name end", lambda d: None, lambda d: dev0(d).update(name="gpu-"),
     ["devices[0].name: invalid device name 'gpu-' (letters, digits, '_', '.', ':', '-'; start and end with a "
      "letter or digit)"]),
    ("duplicate name", lambda d: None, lambda d: d["devices"][1].update(name="0"),
     ["devices[1].name: duplicate device name '0' (also devices[0])"]),
    ("device edits empty", lambda d: None, lambda d: dev0(d).update(containerEdits={}),
     ["devices[0].containerEdits: invalid device, empty device edits"]),
    ("device edits missing", lambda d: None, lambda d: dev0(d).pop("containerEdits"),
     ["devices[0].containerEdits: invalid device, empty device edits (containerEdits is missing)"]),
    ("env shape", lambda d: common(d)["env"].append("A="), lambda d: common(d)["env"].extend(["FOO", "=x"]),
     ["containerEdits.env[1]: invalid environment variable 'FOO' (needs NAME=VALUE)",
      "containerEdits.env[2]: invalid environment variable '=x' (needs NAME=VALUE)"]),
    ("env type", lambda d: None, lambda d: common(d).update(env=[1]),
     ["containerEdits.env[0]: must be a string, not a number"]),
    ("node path missing", lambda d: None, lambda d: common(d)["deviceNodes"][0].pop("path"),
     ["containerEdits.deviceNodes[0]: path is missing"]),
    ("node path empty", lambda d: None, lambda d: common(d)["deviceNodes"][0].update(path=""),
     ["containerEdits.deviceNodes[0]: invalid (empty) device path"]),
    ("node path relative", lambda d: None, lambda d: common(d)["deviceNodes"][0].update(path="dev/nvidiactl"),
     ["containerEdits.deviceNodes[0].path: 'dev/nvidiactl' is not an absolute path"]),
    ("node hostPath empty", lambda d: None, lambda d: common(d)["deviceNodes"][0].update(hostPath=""),
     ["containerEdits.deviceNodes[0]: invalid (empty) hostPath"]),
    ("node type", lambda d: common(d)["deviceNodes"][0].update(type="b"),
     lambda d: common(d)["deviceNodes"][0].update(type="x"),
     ["containerEdits.deviceNodes[0].type: invalid type 'x' (use b, c, u or p)"]),
    ("node major type", lambda d: common(d)["deviceNodes"][0].update(major=195, minor=255, fileMode=0o666, uid=0),
     lambda d: common(d)["deviceNodes"][0].update(major="195", minor=True),
     ["containerEdits.deviceNodes[0].major: must be an integer, not a string",
      "containerEdits.deviceNodes[0].minor: must be an integer, not a boolean"]),
    ("node uid range", lambda d: None, lambda d: common(d)["deviceNodes"][0].update(uid=-1),
     ["containerEdits.deviceNodes[0].uid: -1 is out of range"]),
    ("node permissions", lambda d: common(d)["deviceNodes"][0].update(permissions="rw"),
     lambda d: common(d)["deviceNodes"][0].update(permissions="rwz"),
     ["containerEdits.deviceNodes[0].permissions: invalid permissions 'rwz' (a subset of rwm)"]),
    ("node unknown field", lambda d: None, lambda d: common(d)["deviceNodes"][0].update(bogus=1),
     ["containerEdits.deviceNodes[0]: unknown field 'bogus'"]),
    ("node not a mapping", lambda d: None, lambda d: common(d).update(deviceNodes=["/dev/x"]),
     ["containerEdits.deviceNodes[0]: must be a mapping, not a string"]),
    ("deviceNodes not a list", lambda d: None, lambda d: common(d).update(deviceNodes={}),
     ["containerEdits.deviceNodes: must be a list, not a mapping"]),
    ("mount host path", lambda d: None, lambda d: common(d)["mounts"][0].pop("hostPath"),
     ["containerEdits.mounts[0]: invalid mount, empty host path"]),
    ("mount container path", lambda d: None, lambda d: common(d)["mounts"][0].pop("containerPath"),
     ["containerEdits.mounts[0]: invalid mount, empty container path"]),
    ("mount container path relative", lambda d: None,
     lambda d: common(d)["mounts"][0].update(containerPath="usr/lib/x"),
     ["containerEdits.mounts[0].containerPath: 'usr/lib/x' is not an absolute path"]),
    ("mount options", lambda d: common(d)["mounts"][0].update(options=[]),
     lambda d: common(d)["mounts"][0].update(options="ro"),
     ["containerEdits.mounts[0].options: must be a list, not a string"]),
    ("hook name", lambda d: common(d)["hooks"][0].update(hookName="poststop"),
     lambda d: common(d)["hooks"][0].update(hookName="bogusHook"),
     ["containerEdits.hooks[0].hookName: invalid hook name 'bogusHook' (one of prestart, createRuntime, "
      "createContainer, startContainer, poststart, poststop)"]),
    ("hook path", lambda d: None, lambda d: common(d)["hooks"][0].update(path="hook"),
     ["containerEdits.hooks[0].path: 'hook' is not an absolute path"]),
    ("hook env", lambda d: None, lambda d: common(d)["hooks"][0].update(env=["X"]),
     ["containerEdits.hooks[0].env[0]: invalid environment variable 'X' (needs NAME=VALUE)"]),
    ("hook timeout", lambda d: None, lambda d: common(d)["hooks"][0].update(timeout="5"),
     ["containerEdits.hooks[0].timeout: must be an integer, not a string"]),
    ("edits unknown field", lambda d: None, lambda d: common(d).update(bogus=[]),
     ["containerEdits: unknown field 'bogus'"]),
    ("annotations values", lambda d: d.update(cdiVersion="0.6.0", annotations={"a": "b"}),
     lambda d: d.update(cdiVersion="0.6.0", annotations={"a": 1}),
     ["spec.annotations.a: must be a string, not a number"]),
    ("gids values", lambda d: None, lambda d: (d.update(cdiVersion="0.7.0"), common(d).update(additionalGids=["x"])),
     ["containerEdits.additionalGids[0].gid: must be an integer, not a string"]),
]


@pytest.mark.parametrize("rule", RULES, ids=[r[0] for r in RULES])
def test_rule(rule: Any) -> None:
    _name, good, bad, expected = rule
    assert validate_document(edit(good)) == []
    if bad is not None:
        assert validate_document(edit(bad)) == expected


KNOWN = "known: 0.1.0, 0.2.0, 0.3.0, 0.4.0, 0.5.0, 0.6.0, 0.7.0, 0.8.0, 1.0.0, 1.1.0; a leading 'v' is allowed"

# cdiVersion as the CDI library reads it: one optional leading "v" (specs-go/version.go newVersion), then a
# known version at least the one the content needs (cases of specs-go/version_test.go TestValidateVersion).
VERSIONS = [
    ("current version", "1.1.0", []),
    ("optional v prefix", "v1.1.0", []),
    ("v prefix on what nvlow emits", "v0.5.0", []),
    ("earliest supported version", "0.3.0", []),
    ("known but unsupported v0.1.0", "0.1.0", ["cdiVersion: version 0.1.0 is below 0.3.0, which the baseline needs"]),
    ("known but unsupported v0.2.0", "v0.2.0",
     ["cdiVersion: version v0.2.0 is below 0.3.0, which the baseline needs"]),
    ("unknown version", "1.2.0", [f"cdiVersion: invalid version '1.2.0' ({KNOWN})"]),
    ("unknown version with v", "v0.9.0", [f"cdiVersion: invalid version 'v0.9.0' ({KNOWN})"]),
    ("malformed version", "not-a-version", [f"cdiVersion: invalid version 'not-a-version' ({KNOWN})"]),
    ("only one v is trimmed", "vv0.5.0", [f"cdiVersion: invalid version 'vv0.5.0' ({KNOWN})"]),
    ("capital V is no prefix", "V0.5.0", [f"cdiVersion: invalid version 'V0.5.0' ({KNOWN})"]),
    ("bare v", "v", [f"cdiVersion: invalid version 'v' ({KNOWN})"]),
]


@pytest.mark.parametrize("case", VERSIONS, ids=[v[0] for v in VERSIONS])
def test_cdi_version(case: Any) -> None:
    _id, version, expected = case
    doc = {"cdiVersion": version, "kind": "nvidia.com/gpu",
           "devices": [{"name": "gpu0", "containerEdits": {"env": ["A=1"]}}]}
    assert validate_document(doc) == expected


@pytest.mark.parametrize("version, ok", [("v0.4.0", False), ("0.4.0", False), ("v0.5.0", True), ("0.5.0", True),
                                         ("v0.6.0", True)])
def test_v_prefixed_version_is_compared_like_the_bare_one(version: str, ok: bool) -> None:
    doc = edit(lambda d: d.update(cdiVersion=version))  # the base needs 0.5.0 (hostPath, device "0")
    problems = validate_document(doc)
    assert (problems == []) is ok
    if not ok:
        assert problems == [f"cdiVersion: version {version} is below 0.5.0, which a device node 'hostPath' "
                            "(containerEdits) needs"]


@pytest.mark.parametrize("version, noted", [("v0.5.0", True), ("v1.1.0", True), ("0.5.0", False),
                                            ("v0.9.0", False), ("vv0.5.0", False), (None, False)])
def test_v_prefix_is_noted_for_older_engines(version: Any, noted: bool) -> None:
    notes = compatibility_notes({"cdiVersion": version})
    assert bool(notes) is noted
    if noted:
        assert notes == [f"cdiVersion {version!r}: the leading 'v' is read by the CDI library since v0.5.4; engines "
                         f"with an older one (podman 4.3) reject the spec; write {version[1:]!r}"]


# intelRdt.closID as the CDI library checks it (pkg/cdi/container-edits.go IntelRdt.Validate; the cases of
# container-edits_test.go "valid/invalid rdt config"): a Linux file name, or "/" for the root CLOS.
CLOS_IDS = [
    ("valid rdt config", "foo.bar", True),
    ("valid rdt config, root clos", "/", True),
    ("empty (unset)", "", True),
    ("4095 bytes", "a" * 4095, True),
    ("dots inside", "..a.", True),
    ("invalid closID (slash)", "foo/bar", False),
    ("invalid closID (dot)", ".", False),
    ("invalid closID (double dot)", "..", False),
    ("invalid closID (newline)", "foo\nbar", False),
    ("slash and more", "//", False),
    ("4096 bytes", "a" * 4096, False),
    ("4096 bytes of UTF-8", "\u00e9" * 2048, False),
]


@pytest.mark.parametrize("case", CLOS_IDS, ids=[c[0] for c in CLOS_IDS])
def test_intel_rdt_clos_id(case: Any) -> None:
    _id, clos, ok = case
    def dev0_edits(d: Dict[str, Any]) -> Dict[str, Any]:
        return dev0(d)["containerEdits"]  # type: ignore[no-any-return]

    for where, target in (("containerEdits", common), ("devices[0].containerEdits", dev0_edits)):
        def with_clos(d: Dict[str, Any]) -> None:
            d.update(cdiVersion="0.7.0")
            target(d).update(intelRdt={"closID": clos})

        doc = edit(with_clos)
        expected = [] if ok else [
            f"{where}.intelRdt.closID: invalid closID {clos!r} (a file name: no '/' or newline, not '.' or '..', "
            "under 4096 bytes; or '/' for the root CLOS)"]
        assert validate_document(doc) == expected


# The fields that raise the minimum version count only when set, as in the CDI library (a nil pointer,
# an empty list or map, an empty string or false sets nothing).
REQUIRED: List[Any] = [
    ("no annotations", {"annotations": {}}, None, "0.3.0"),
    ("annotations", {"annotations": {"a": "b"}}, None, "0.6.0"),
    ("null intelRdt", None, {"intelRdt": None}, "0.3.0"),
    ("empty intelRdt", None, {"intelRdt": {}}, "0.7.0"),
    ("schemata, even empty", None, {"intelRdt": {"schemata": []}}, "1.1.0"),
    ("monitoring off", None, {"intelRdt": {"enableMonitoring": False}}, "0.7.0"),
    ("monitoring on", None, {"intelRdt": {"enableMonitoring": True}}, "1.1.0"),
    ("no additionalGids", None, {"additionalGids": []}, "0.3.0"),
    ("additionalGids", None, {"additionalGids": [44]}, "0.7.0"),
    ("no netDevices", None, {"netDevices": []}, "0.3.0"),
    ("netDevices", None, {"netDevices": [{"hostInterfaceName": "e", "name": "n"}]}, "1.1.0"),
    ("empty mount type", None, {"mounts": [{"hostPath": "/a", "containerPath": "/a", "type": ""}]}, "0.3.0"),
    ("mount type", None, {"mounts": [{"hostPath": "/a", "containerPath": "/a", "type": "bind"}]}, "0.4.0"),
    ("empty hostPath", None, {"deviceNodes": [{"path": "/dev/x", "hostPath": ""}]}, "0.3.0"),
    ("hostPath", None, {"deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/y"}]}, "0.5.0"),
]


@pytest.mark.parametrize("case", REQUIRED, ids=[r[0] for r in REQUIRED])
def test_required_version_counts_set_fields(case: Any) -> None:
    _id, top, edits, version = case
    doc: Dict[str, Any] = {"kind": "nvidia.com/gpu", "devices": [{"name": "gpu0", "containerEdits": edits or {}}]}
    doc.update(top or {})
    assert required_version(doc)[0] == version


@pytest.mark.parametrize("doc, expected", [
    (None, ["spec: must be a mapping, not null"]),
    ([], ["spec: must be a mapping, not a list"]),
    ("text", ["spec: must be a mapping, not a string"]),
])
def test_not_a_mapping(doc: Any, expected: List[str]) -> None:
    assert validate_document(doc) == expected


def test_required_version_reason() -> None:
    assert required_version(base()) == ("0.5.0", "a device node 'hostPath' (containerEdits)")
    doc = base()
    common(doc)["deviceNodes"][0].pop("hostPath")
    assert required_version(doc) == ("0.5.0", 'device name "0" (starts with a digit)')


# ---------------------------------------------------------------- host checks

@pytest.mark.parametrize("path, version", [
    (f"/usr/lib/x86_64-linux-gnu/libcuda.so.{V}", V),
    ("/usr/lib/libnvidia-ml.so.470.42", "470.42"),
    ("/lib/firmware/nvidia/535.104.05/gsp_ga10x.bin", "535.104.05"),
    ("/usr/lib/libcuda.so.1", None),
    ("/usr/lib/libfoo.so.1.2.3", None),
    ("/usr/bin/nvidia-smi", None),
])
def test_driver_version_of(path: str, version: Any) -> None:
    assert driver_version_of(path) == version


def test_host_problems_fresh_spec() -> None:
    assert host_problems(base(), V, exists=lambda p: True) == []


def test_host_problems_stale_spec() -> None:
    doc = base()
    common(doc)["mounts"] = [
        {"hostPath": f"/usr/lib/{n}.so.535.104.05", "containerPath": f"/x/{n}"} for n in ("libcuda", "libnvidia-ml")
    ] + [{"hostPath": "/usr/bin/nvidia-smi", "containerPath": "/x/smi"}]
    assert host_problems(doc, V, exists=lambda p: True) == [
        "stale: mounts libcuda.so.535.104.05 (and 1 more files of driver 535.104.05) but the running driver is "
        + V]
    # without a running driver, staleness is not checked; the missing old files still are
    assert host_problems(doc, None, exists=lambda p: not p.startswith("/usr/lib")) == [
        "mount hostPath /usr/lib/libcuda.so.535.104.05 does not exist",
        "mount hostPath /usr/lib/libnvidia-ml.so.535.104.05 does not exist",
    ]


def test_host_problems_missing_files() -> None:
    doc = base()
    common(doc)["mounts"].append(copy.deepcopy(common(doc)["mounts"][0]))  # reported once
    problems = host_problems(doc, V, exists=lambda p: False)
    # /dev/nvidia0 has type+major (engines create it without the host file); nvidiactl has neither
    assert problems == [
        f"mount hostPath /usr/lib/libcuda.so.{V} does not exist",
        "device node /srv/dev/nvidiactl does not exist",
        "device node /dev/nvidia0 does not exist",
    ]


def test_host_problems_ignores_malformed() -> None:
    assert host_problems(None, V) == []
    assert host_problems({"containerEdits": {"mounts": [1, {"hostPath": 3}], "deviceNodes": ["x"]}}, V) == []
