"""nvlow's YAML reader against go-yaml's recorded verdicts (tests/data/cdi-yaml-corpus, see its README)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Union

import pytest

from nvlow.cdi.yaml import YamlError, dump_yaml, load_yaml
from nvlow.errors import NvlowError

CORPUS = Path(__file__).resolve().parent / "data" / "cdi-yaml-corpus" / "cases.json"
CASES: List[Dict[str, Any]] = json.loads(CORPUS.read_text(encoding="ascii"))


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types (True is not 1, 8.0 is not 8), NaN equal to NaN, dict order ignored."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def document(case: Dict[str, Any]) -> Union[str, bytes]:
    return bytes.fromhex(case["yaml_hex"]) if "yaml_hex" in case else str(case["yaml"])


def test_corpus_shape() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids))
    verdicts = [c["verdict"] for c in CASES]
    assert verdicts.count("accept") >= 40 and verdicts.count("reject") >= 20
    for c in CASES:
        assert c["verdict"] in ("accept", "reject") and c["source"]
        assert ("go_error" in c) == (c["verdict"] == "reject"), c["id"]
        assert c.get("nvlow") in (None, "refuses"), c["id"]


@pytest.mark.parametrize("case", [c for c in CASES if c.get("nvlow") is None], ids=lambda c: c["id"])
def test_same_verdict_and_value_as_go_yaml(case: Dict[str, Any]) -> None:
    if case["verdict"] == "reject":
        with pytest.raises(YamlError) as info:
            load_yaml(document(case))
        assert isinstance(info.value, NvlowError)
        assert re.match(r"^line \d+ column \d+: [^\n]+$", str(info.value)), str(info.value)
        return
    assert same(load_yaml(document(case)), case["value"])


#: go-yaml accepts these, nvlow refuses them on purpose (outside its subset; see the corpus README)
REFUSED = {
    "go2-unmarshal-52", "go2-unmarshal-54", "go2-unmarshal-70", "tag-str",  # tags
    "go2-unmarshal-53", "go2-unmarshal-61",  # %TAG / %YAML directives (and tags)
    "go2-unmarshal-55", "go2-unmarshal-56", "go2-unmarshal-57", "go2-unmarshal-79",  # anchors and aliases
    "go2-limit-1kb-maps", "merge-key",  # anchors, aliases, a merge key
    "go2-unmarshal-81", "complex-key",  # '? key'
    "issue-deep-250",  # nesting deeper than 200 levels
    "key-collision",  # 1 and '1': one JSON key, sigs.k8s.io/yaml keeps either value
    "two-bom",  # a second byte-order mark
}


def test_refusals_are_the_documented_ones() -> None:
    marked = {c["id"] for c in CASES if c.get("nvlow") == "refuses"}
    assert marked == REFUSED
    assert all(c["verdict"] == "accept" and c["nvlow_error"] for c in CASES if c["id"] in REFUSED)
    readme = (CORPUS.parent / "README.md").read_text(encoding="utf-8")
    assert all(f"`{case_id}`" in readme for case_id in REFUSED)


@pytest.mark.parametrize("case", [c for c in CASES if c.get("nvlow") == "refuses"], ids=lambda c: c["id"])
def test_documented_refusals(case: Dict[str, Any]) -> None:
    """go-yaml accepts these; nvlow refuses them on purpose (tags, anchors, >200 levels, ...) with a clear message."""
    with pytest.raises(YamlError, match=r"^line \d+ column \d+: [^\n]*" + re.escape(case["nvlow_error"])):
        load_yaml(document(case))


def test_cdi_shaped_documents_are_inside_the_subset() -> None:
    """What nvidia-ctk, the CDI library's tests and nvlow write is never refused."""
    shaped = [c for c in CASES if c["id"].startswith(("cdi-", "nvidia-ctk", "nvlow-"))]
    assert len(shaped) >= 7
    for case in shaped:
        assert same(load_yaml(document(case)), case["value"]), case["id"]


@pytest.mark.parametrize("golden", sorted((CORPUS.parent.parent.parent / "golden").glob("cdi-*.json")),
                         ids=lambda p: p.name)
def test_golden_specs_in_every_shape_nvlow_and_go_write(golden: Path) -> None:
    """nvlow's golden CDI specs, as nvlow's emitter writes them and as JSON (pretty and compact, as Go's
    encoder writes it), are read back unchanged."""
    spec = json.loads(golden.read_text(encoding="utf-8"))
    texts = [dump_yaml(spec, header=["generated"], document_start=True), dump_yaml(spec),
             json.dumps(spec, indent=2), json.dumps(spec, separators=(",", ":")), json.dumps(spec, indent="\t"),
             json.dumps(spec, ensure_ascii=False)]
    for text in texts:
        assert same(load_yaml(text), spec)
