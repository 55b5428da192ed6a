"""docker's ``--gpus`` value syntax (docker/cli opts/gpus.go), exact results and messages."""
from __future__ import annotations

import pytest

from nvlow.engine.argv import GpusRequest, parse_gpus_flag
from nvlow.errors import UsageError
from nvlow.engine.gpusflag import go_quote

CASES = [
    ("all", GpusRequest(count=-1)),
    ("2", GpusRequest(count=2)),
    ("0", GpusRequest(count=0)),
    ("+3", GpusRequest(count=3)),
    ("count=all", GpusRequest(count=-1)),
    ("count=4", GpusRequest(count=4)),
    ("device=0", GpusRequest(devices=("0",))),
    ('"device=0,2"', GpusRequest(devices=("0", "2"))),
    ("device=GPU-1b2c3d4e-aaaa-bbbb-cccc-0123456789ab",
     GpusRequest(devices=("GPU-1b2c3d4e-aaaa-bbbb-cccc-0123456789ab",))),
    ("device=MIG-GPU-x/1/0", GpusRequest(devices=("MIG-GPU-x/1/0",))),
    ("capabilities=utility", GpusRequest(count=1, capabilities=("utility",))),
    ('"capabilities=compute,utility"', GpusRequest(count=1, capabilities=("compute", "utility"))),
    ('"device=0,1",capabilities=utility', GpusRequest(devices=("0", "1"), capabilities=("utility",))),
    ('all,"capabilities=compute,video"', GpusRequest(count=-1, capabilities=("compute", "video"))),
    ("count=0,device=1", GpusRequest(count=0, devices=("1",))),
    ("driver=nvidia,count=1", GpusRequest(count=1, driver="nvidia")),
    ('"options=a=1,b"', GpusRequest(count=1, options=(("a", "1"), ("b", "")))),
    ('"device=a""b"', GpusRequest(devices=('a"b',))),
    ("all\n2", GpusRequest(count=-1)),  # only the first CSV record counts
    ("all,2", GpusRequest(count=2)),  # bare counts are keyed by their own text: no duplicate
]


@pytest.mark.parametrize("value,expected", CASES)
def test_parse_gpus_flag(value: str, expected: GpusRequest) -> None:
    assert parse_gpus_flag(value) == expected


ERRORS = [
    ("bogus=1", """invalid argument "bogus=1" for "--gpus" flag: unexpected key 'bogus' in 'bogus=1'"""),
    ('"device=0,1",bogus=1',
     r"""invalid argument "\"device=0,1\",bogus=1" for "--gpus" flag: unexpected key 'bogus' in 'bogus=1'"""),
    ("two", """invalid argument "two" for "--gpus" flag: invalid count (two): value must be either "all" or """
            """an integer: invalid syntax"""),
    ("count=1.5", """invalid argument "count=1.5" for "--gpus" flag: invalid count (1.5): value must be either """
                  """"all" or an integer: invalid syntax"""),
    ("99999999999999999999", """invalid argument "99999999999999999999" for "--gpus" flag: invalid count """
                             """(99999999999999999999): value must be either "all" or an integer: value out of range"""),
    ("device=0,device=1",
     """invalid argument "device=0,device=1" for "--gpus" flag: gpu request key 'device' can be specified only once"""),
    ("", """invalid argument "" for "--gpus" flag: EOF"""),
    ("device=0,2", """invalid argument "device=0,2" for "--gpus" flag: sets both a count (2) and device IDs (0)"""),
    ("all,device=1", """invalid argument "all,device=1" for "--gpus" flag: sets both a count (all) and device IDs"""),
    ('dev"ice=0', """invalid argument "dev\\"ice=0" for "--gpus" flag: parse error on line 1, column 4: """
                  """bare " in non-quoted-field"""),
    ('"device=0', """invalid argument "\\"device=0" for "--gpus" flag: parse error on line 1"""),
    ('"a"b', """invalid argument "\\"a\\"b" for "--gpus" flag: parse error on line 1, column 4: """
             """extraneous or missing " in quoted-field"""),
    ("options=", """invalid argument "options=" for "--gpus" flag: failed to read gpu options: EOF"""),
]


@pytest.mark.parametrize("value,message", ERRORS)
def test_parse_gpus_flag_errors(value: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_gpus_flag(value)
    assert str(info.value).startswith(message)
    assert info.value.hint


def test_all_with_count_key_conflict() -> None:
    # "2" without "=" marks the count as seen, so a later count= is a duplicate.
    with pytest.raises(UsageError, match="gpu request key 'count' can be specified only once"):
        parse_gpus_flag("2,count=3")


def test_go_quote() -> None:
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
