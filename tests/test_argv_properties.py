"""Property tests over the real option tables: generated command lines in every pflag spelling."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from nvlow.engine.argv import inject, parse_engine_argv
from nvlow.engine.dockerflags import FlagTable, command_table, global_table

Expected = Tuple[str, Optional[str]]
Piece = Tuple[List[str], List[Expected]]  # tokens, the options they mean

# Options whose presence changes what the line means (help output, podman rootfs path).
SPECIAL = {"help", "rootfs"}

ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)  # type: ignore[arg-type]
FLAGLIKE = st.sampled_from(["-v", "--rm", "-it", "--", "-", "", "--gpus", "-e=X", "--name=x", "-p8080:80"])
VALUE = st.one_of(ANY_TEXT, FLAGLIKE)
# An attached value (-xVALUE, -x=VALUE) must be non-empty and must not start with "=".
ATTACHED = VALUE.filter(lambda v: v != "" and not v.startswith("="))


def _names(table: FlagTable, takes_value: bool) -> List[str]:
    return sorted(n for n in (table.values if takes_value else table.booleans) if n not in SPECIAL)


def _letters(table: FlagTable, takes_value: bool) -> List[str]:
    return sorted(c for c, n in table.shorts.items()
                  if n not in SPECIAL and table.lookup_long(n) is not None
                  and table.lookup_long(n)[1] is takes_value)  # type: ignore[index]


def option_piece(table: FlagTable) -> st.SearchStrategy[Piece]:
    """One option token group in any spelling pflag accepts, with what it means."""
    bool_names, value_names, aliases = _names(table, False), _names(table, True), sorted(table.aliases)

    @st.composite
    def long_option(draw: Callable[..., object]) -> Piece:
        kind: str = draw(st.sampled_from(["bool", "bool=", "value=", "value", "alias"]))  # type: ignore
        if kind.startswith("bool"):
            name: str = draw(st.sampled_from(bool_names))  # type: ignore
            if kind == "bool":
                return [f"--{name}"], [(name, None)]
            flag: str = draw(st.sampled_from(["true", "false", "1", "0"]))  # type: ignore
            return [f"--{name}={flag}"], [(name, flag)]
        value: str = draw(VALUE)  # type: ignore
        if kind == "alias" and aliases:
            alias: str = draw(st.sampled_from(aliases))  # type: ignore
            return [f"--{alias}", value], [(table.canonical(alias), value)]
        name = draw(st.sampled_from(value_names))  # type: ignore
        if kind == "value=":
            return [f"--{name}={value}"], [(name, value)]
        return [f"--{name}", value], [(name, value)]

    bool_letters, value_letters = _letters(table, False), _letters(table, True)
    if not (bool_letters or value_letters):
        return long_option()
    return st.one_of(long_option(), _cluster(table, bool_letters, value_letters))


def _cluster(table: FlagTable, bool_letters: List[str], value_letters: List[str]) -> st.SearchStrategy[Piece]:
    @st.composite
    def build(draw: Callable[..., object]) -> Piece:
        bools: List[str] = draw(st.lists(st.sampled_from(bool_letters), max_size=3)) if bool_letters else []  # type: ignore
        meant: List[Expected] = [(table.shorts[c], None) for c in bools]
        tail = draw(st.sampled_from(["none", "attached", "equals", "next", "bool-equals"]))  # type: ignore
        if tail in ("attached", "equals", "next") and value_letters:
            letter: str = draw(st.sampled_from(value_letters))  # type: ignore
            if tail == "next":
                value: str = draw(VALUE)  # type: ignore
                return ["-" + "".join(bools) + letter, value], meant + [(table.shorts[letter], value)]
            value = draw(ATTACHED)  # type: ignore
            sep = "=" if tail == "equals" else ""
            return ["-" + "".join(bools) + letter + sep + value], meant + [(table.shorts[letter], value)]
        if tail == "bool-equals" and bools:
            flag: str = draw(st.sampled_from(["true", "false"]))  # type: ignore
            return ["-" + "".join(bools) + "=" + flag], meant[:-1] + [(meant[-1][0], flag)]
        if not bools:
            bools = [bool_letters[0]] if bool_letters else []
            meant = [(table.shorts[c], None) for c in bools]
            if not bools:
                letter = value_letters[0]
                return [f"-{letter}", "v"], [(table.shorts[letter], "v")]
        return ["-" + "".join(bools)], meant

    return build()


@st.composite
def engine_lines(draw: Callable[..., object]) -> dict:  # type: ignore[type-arg]
    engine: str = draw(st.sampled_from(["docker", "podman"]))  # type: ignore
    program: str = draw(st.sampled_from({"docker": ["docker", "/usr/bin/docker", "docker.exe", "nerdctl"],
                                         "podman": ["podman", "/usr/bin/podman", "podman-remote"]}[engine]))  # type: ignore
    prefix: List[str] = draw(st.sampled_from([[], ["sudo"], ["sudo", "-E"], ["sudo", "-u", "bob", "--"]]))  # type: ignore
    words: List[str] = draw(st.sampled_from([["run"], ["create"], ["container", "run"], ["container", "create"]]))  # type: ignore
    command = words[-1]
    gpieces: List[Piece] = draw(st.lists(option_piece(global_table(engine)), max_size=3))  # type: ignore
    cpieces: List[Piece] = draw(st.lists(option_piece(command_table(engine, command)), max_size=6))  # type: ignore
    if draw(st.booleans()):  # a --gpus option somewhere among the others
        at: int = draw(st.integers(0, len(cpieces)))  # type: ignore
        value: str = draw(VALUE)  # type: ignore
        cpieces.insert(at, draw(st.sampled_from([(["--gpus", value], [("gpus", value)]),  # type: ignore
                                                 ([f"--gpus={value}"], [("gpus", value)])])))
    dashdash: bool = draw(st.booleans())  # type: ignore
    image: str = draw(ANY_TEXT.filter(lambda s: s == "" or s == "-" or not s.startswith("-"))  # type: ignore
                      if not dashdash else VALUE)
    tail: List[str] = draw(st.lists(VALUE, max_size=4))  # type: ignore
    argv = [*prefix, program]
    for tokens, _ in gpieces:
        argv += tokens
    argv += words
    for tokens, _ in cpieces:
        argv += tokens
    if dashdash:
        argv.append("--")
    image_index = len(argv)
    argv += [image, *tail]
    return dict(argv=argv, engine=engine, command=command, image=image, image_index=image_index,
                insert_index=image_index - 1 if dashdash else image_index,
                globals=[m for _, meant in gpieces for m in meant],
                options=[m for _, meant in cpieces for m in meant])


INJECTED = st.lists(st.one_of(VALUE, st.just("--device=/dev/nvidiactl")), max_size=4)


@settings(max_examples=400, deadline=None)
@given(engine_lines(), INJECTED)
def test_image_found_and_injection_is_a_contiguous_insertion(line: dict, args: List[str]) -> None:  # type: ignore[type-arg]
    argv: List[str] = line["argv"]
    cmd = parse_engine_argv(argv)
    assert (cmd.engine, cmd.command, cmd.injectable) == (line["engine"], line["command"], True)
    assert (cmd.image, cmd.image_index, cmd.insert_index) == (line["image"], line["image_index"], line["insert_index"])
    assert [(o.name, o.value) for o in cmd.options] == line["options"]
    assert [(o.name, o.value) for o in cmd.global_options] == line["globals"]
    final = inject(cmd, args, remove=())
    at = line["insert_index"]
    assert final == argv[:at] + list(args) + argv[at:]
    assert final[:at] + final[at + len(args):] == argv


@settings(max_examples=300, deadline=None)
@given(engine_lines(), INJECTED)
def test_gpus_removed_and_the_rest_survives_in_order(line: dict, args: List[str]) -> None:  # type: ignore[type-arg]
    argv: List[str] = line["argv"]
    cmd = parse_engine_argv(argv)
    final = inject(cmd, args)
    gpus_tokens = {i for o in cmd.options if o.name == "gpus" for i in range(o.start, o.end)}
    assert len(gpus_tokens) in (0, 1, 2) or len(cmd.get("gpus")) > 1
    kept = [t for i, t in enumerate(argv) if i not in gpus_tokens]
    at = line["insert_index"] - sum(1 for i in gpus_tokens if i < line["insert_index"])
    assert final == kept[:at] + list(args) + kept[at:]
    assert cmd.get("gpus") == tuple(v for n, v in line["options"] if n == "gpus")
    # Everything from the image on is untouched, even tokens that look like --gpus.
    assert final[-(len(argv) - line["image_index"]):] == argv[line["image_index"]:]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(VALUE, st.sampled_from(["run", "create", "container", "docker", "--", "-itv"])),
                max_size=10))
def test_never_crashes_on_arbitrary_argv(tail: Sequence[str]) -> None:
    from nvlow.errors import UsageError

    for program in ("docker", "podman"):
        try:
            cmd = parse_engine_argv([program, *tail])
        except UsageError:
            continue
        if cmd.injectable:
            assert cmd.insert_index is not None and cmd.image_index is not None
            assert cmd.insert_index in (cmd.image_index, cmd.image_index - 1)
            final = inject(cmd, ["X"], remove=())
            assert final.count("X") == list(cmd.argv).count("X") + 1
