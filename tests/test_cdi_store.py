"""Spec directories: reading, listing with engine precedence, atomic writes."""
from __future__ import annotations

import json
import os
import stat
from typing import Any, Dict, List

import pytest

from nvlow.cdi.store import (ListedDevice, existing_document, list_devices, other_specs_with_kind, parse_spec_text,
                             read_spec, spec_device_names, spec_files, write_atomic)
from nvlow.cdi.yaml import YamlError
from nvlow.errors import HostError
from nvlow.host.root import HostRoot


def spec(kind: str, *names: str) -> Dict[str, Any]:
    return {"cdiVersion": "0.5.0", "kind": kind,
            "devices": [{"name": n, "containerEdits": {"deviceNodes": [{"path": f"/dev/{n}"}]}} for n in names]}


def put(root: str, path: str, doc: Any) -> str:
    real = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(real), exist_ok=True)
    with open(real, "w") as fh:
        fh.write(doc if isinstance(doc, str) else json.dumps(doc))
    return real


def test_spec_files_order_and_filter(tmp_path: Any) -> None:
    r = str(tmp_path)
    b = put(r, "/etc/cdi/b.yaml", "kind: x/y\n")
    a = put(r, "/etc/cdi/a.json", "{}")
    put(r, "/etc/cdi/notes.txt", "")
    put(r, "/etc/cdi/.nvidia.yaml.abc.tmp", "")
    put(r, "/etc/cdi/sub/c.json", "{}")  # no recursion
    z = put(r, "/var/run/cdi/0.json", "{}")
    assert spec_files(HostRoot(r)) == [(0, a), (0, b), (1, z)]


def test_list_later_dir_wins(tmp_path: Any) -> None:
    r = str(tmp_path)
    put(r, "/etc/cdi/nvidia.yaml", "---\n" + "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n"
        "- name: \"0\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\n"
        "- name: \"1\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia1\n")
    late = put(r, "/var/run/cdi/nvidia.json", spec("nvidia.com/gpu", "0", "all"))
    devices, warnings = list_devices(HostRoot(r))
    assert devices == [
        ListedDevice("nvidia.com/gpu=0", late),
        ListedDevice("nvidia.com/gpu=1", os.path.join(r, "etc/cdi/nvidia.yaml")),
        ListedDevice("nvidia.com/gpu=all", late),
    ]
    assert warnings == []


def test_list_conflict_in_one_directory(tmp_path: Any) -> None:
    r = str(tmp_path)
    a = put(r, "/var/run/cdi/a.json", spec("nvidia.com/gpu", "0", "1"))
    b = put(r, "/var/run/cdi/b.json", spec("nvidia.com/gpu", "0"))
    put(r, "/etc/cdi/c.json", spec("nvidia.com/gpu", "0"))
    devices, warnings = list_devices(HostRoot(r))
    assert devices == [ListedDevice("nvidia.com/gpu=1", a)]
    assert warnings == [f"conflicting device nvidia.com/gpu=0 (specs {a}, {b}): engines cannot use it"]


def test_list_skips_broken_files(tmp_path: Any) -> None:
    r = str(tmp_path)
    bad = put(r, "/etc/cdi/bad.json", '{"cdiVersion": "0.5.0", "kind": "gpu"')
    invalid = put(r, "/etc/cdi/invalid.json", spec("gpu", "0"))
    good = put(r, "/etc/cdi/other.json", spec("example.org/accel", "x"))
    devices, warnings = list_devices(HostRoot(r))
    assert devices == [ListedDevice("example.org/accel=x", good)]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{bad}: not a valid JSON or YAML spec: ")
    assert warnings[1] == (f"{invalid}: kind: invalid (empty) vendor name in 'gpu' (use vendor/class, e.g. "
                           f"nvidia.com/gpu); skipped (see 'nvlow cdi validate {invalid}')")


def test_list_custom_dirs(tmp_path: Any) -> None:
    r = str(tmp_path)
    p = put(r, "/srv/cdi/a.json", spec("a.b/c", "d"))
    assert list_devices(HostRoot(r), ["/srv/cdi"]) == ([ListedDevice("a.b/c=d", p)], [])
    assert list_devices(HostRoot(r)) == ([], [])


def test_other_specs_with_kind(tmp_path: Any) -> None:
    r = str(tmp_path)
    mine = put(r, "/var/run/cdi/nvidia.yaml", "kind: nvidia.com/gpu\n")
    other = put(r, "/etc/cdi/nvidia.json", spec("nvidia.com/gpu", "0"))
    put(r, "/etc/cdi/x.json", spec("x.org/y", "0"))
    assert other_specs_with_kind(HostRoot(r), "nvidia.com/gpu", mine) == [(other, ["nvidia.com/gpu=0"])]


def test_read_spec_errors(tmp_path: Any) -> None:
    with pytest.raises(HostError, match="cannot read .*missing.json: No such file or directory"):
        read_spec(str(tmp_path / "missing.json"))
    p = put(str(tmp_path), "/x.yaml", "a: [\n")
    with pytest.raises(HostError, match=r"x.yaml: not a valid JSON or YAML spec: line 2 column 1: did not find "
                                        r"expected node content$"):
        read_spec(p)
    assert existing_document(p) is None
    assert existing_document(str(tmp_path / "none.yaml")) is None


def test_write_atomic_creates_dir_and_mode(tmp_path: Any) -> None:
    path = str(tmp_path / "run" / "cdi" / "nvidia.yaml")
    old = os.umask(0o077)
    try:
        write_atomic(path, b"kind: a/b\n")
    finally:
        os.umask(old)
    assert open(path).read() == "kind: a/b\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    write_atomic(path, b"kind: c/d\n")
    assert open(path).read() == "kind: c/d\n"
    assert os.listdir(os.path.dirname(path)) == ["nvidia.yaml"]


@pytest.mark.parametrize("failing", ["write", "fsync", "rename"])
def test_write_atomic_failure_keeps_old_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    path = str(tmp_path / "nvidia.yaml")
    with open(path, "w") as fh:
        fh.write("old\n")
    calls: List[str] = []

    def boom(*args: Any, **kwargs: Any) -> Any:
        calls.append(failing)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(HostError, match=r"cannot write .*nvidia.yaml: No space left on device"):
        write_atomic(path, b"new\n" * 1000)
    monkeypatch.undo()
    assert calls == [failing]
    assert open(path).read() == "old\n"
    assert os.listdir(str(tmp_path)) == ["nvidia.yaml"]  # temp file removed


def test_write_atomic_unwritable_dir(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HostError, match="cannot create .*file"):
        write_atomic(str(blocker / "cdi" / "nvidia.yaml"), b"x")


BROKEN = {  # file name: (content, what the one-line report says); each was read silently or crashed before
    "colon.yaml": (":", "line 1 column 1: did not find expected key"),
    "plain-colon.yaml": ("cdiVersion: 0.5.0\nkind: x.org/y\nnote: see: docs\n",
                         "line 3 column 10: mapping values are not allowed in this context"),
    "deep.yaml": ("a: " + "[" * 5000, "line 1 column 203: collections nested deeper than 200 levels"),
    "escape.yaml": ('kind: "\\UFFFFFFFF"\n', "line 1 column 10: found invalid Unicode character escape code"),
    "slash.json": ('{"kind": "x.org\\/y"}', "line 1 column 16: found unknown escape character"),
    "dup.json": ('{"kind": "x.org/y", "kind": "x.org/z"}', "line 1 column 21: duplicate key 'kind'"),
    "nul.yaml": ("kind: x.org/y\x00\n", "line 1 column 14: control characters are not allowed (U+0000)"),
    "latin1.yaml": (b"kind: caf\xe9\n", "line 1 column 10: invalid UTF-8"),
}


def test_list_reports_and_skips_broken_files_like_engines(tmp_path: Any) -> None:
    r = str(tmp_path)
    good = put(r, "/etc/cdi/good.yaml", "\ufeffcdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\"\n"
                                        "  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\n")
    paths = {}
    for name, (content, _message) in BROKEN.items():
        paths[name] = os.path.join(r, "etc/cdi", name)
        with open(paths[name], "wb") as fh:
            fh.write(content if isinstance(content, bytes) else content.encode("utf-8"))
    devices, warnings = list_devices(HostRoot(r))
    assert devices == [ListedDevice("nvidia.com/gpu=0", good)]
    expected = sorted(f"{paths[name]}: not a valid JSON or YAML spec: {message}" for name, (_c, message) in
                      BROKEN.items())
    got = sorted(w for w in warnings)
    assert len(got) == len(expected)
    for line, start in zip(got, expected):
        assert line.startswith(start) and line.endswith("; skipped") and "\n" not in line


def test_parse_spec_text_reads_bytes_and_json_as_go_yaml_does() -> None:
    assert parse_spec_text(b'\xef\xbb\xbf{"kind": "a.b/c", "n": 0755}') == {"kind": "a.b/c", "n": 493}
    assert parse_spec_text('{"a": NaN, "b": 1e400, "c": 08}') == {"a": "NaN", "b": "1e400", "c": 8.0}
    with pytest.raises(YamlError, match="duplicate key 'a'"):
        parse_spec_text('{"a": 1, "a": 2}')


def test_spec_device_names_and_other_specs_tolerate_odd_documents(tmp_path: Any) -> None:
    assert spec_device_names({"kind": "a.b/c", "devices": True}) == []
    assert spec_device_names({"kind": "a.b/c", "devices": "xyz"}) == []
    r = str(tmp_path)
    mine = put(r, "/var/run/cdi/nvidia.yaml", "kind: nvidia.com/gpu\n")
    odd = put(r, "/etc/cdi/odd.yaml", "kind: nvidia.com/gpu\ndevices: yes\n")
    put(r, "/etc/cdi/broken.yaml", "kind: nvidia.com/gpu\nnote: see: docs\n")
    assert other_specs_with_kind(HostRoot(r), "nvidia.com/gpu", mine) == [(odd, [])]
