"""The README and the manual stay true: every `salclass` command in their code blocks parses with the CLI's own
parser, every `make` target they name exists, and every relative link and #anchor resolves.

Commands are parsed, not run. A synopsis may mark optional parts with [brackets], alternatives with a|b and
repetition with `...`; each alternative is parsed, and an upper-case placeholder (N, S, DIR) stands for any value
the option accepts."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from itertools import zip_longest
from pathlib import Path

import pytest

from salclass.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").glob("*.md")])
PAGE_IDS = [str(p.relative_to(REPO)) for p in PAGES]

FENCE = re.compile(r"^\s*(```|~~~)")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")
COMMAND = re.compile(r"^\s*(?:\$\s+)?(?:salclass\s|\S*torchrun\s.*-m\s+salclass\.cli\s)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")


def split_page(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(line number, line) pairs inside fenced code blocks, and outside them."""
    code, prose, fenced = [], [], False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        (code if fenced else prose).append((n, line))
    return code, prose


def logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Shell lines with their backslash continuations joined, numbered by their first line."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for n, line in lines:
        if pending is not None:
            n, line = pending[0], pending[1] + " " + line.strip()
            pending = None
        if line.rstrip().endswith("\\"):
            pending = (n, line.rstrip()[:-1])
            continue
        out.append((n, line))
    if pending is not None:
        out.append(pending)
    return out


def salclass_argv(line: str) -> list[str] | None:
    """The arguments after `salclass` (or after `torchrun ... -m salclass.cli`), or None if the line is no such
    command."""
    if not COMMAND.match(line):
        return None
    tokens = shlex.split(line.strip().removeprefix("$ "), comments=True)
    if "salclass" in tokens:
        return tokens[tokens.index("salclass") + 1:]
    return tokens[tokens.index("salclass.cli") + 1:]


def synopsis_variants(argv: list[str]) -> list[list[str]]:
    """A synopsis as concrete command lines: brackets dropped, `...` dropped, each a|b alternative in turn."""
    tokens = []
    for t in argv:
        t = t.removeprefix("[")
        while t.endswith("]") and t.count("]") > t.count("["):
            t = t[:-1]
        if t and t != "...":
            tokens.append(t)
    choices = [t.split("|") if "|" in t and not t.startswith("-") else [t] for t in tokens]
    width = max(len(c) for c in choices) if choices else 1
    return [[c[min(i, len(c) - 1)] for c in choices] for i in range(width)]


def subparser_for(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser that will read the options of argv: follows the subcommand names."""
    for token in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or token not in subs[0].choices:
            break
        parser = subs[0].choices[token]
    return parser


def sample_value(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    if action.type is int:
        return "1"
    if action.type is float:
        return "0.5"
    return "VALUE"


def fill_placeholders(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """An upper-case placeholder after an option that takes a typed value becomes a value of that type."""
    options = {s: a for a in subparser_for(parser, argv)._actions for s in a.option_strings}
    out = []
    for prev, token in zip_longest([None, *argv[:-1]], argv):
        action = options.get(prev)
        if action is not None and PLACEHOLDER.match(token) and (action.type in (int, float) or action.choices):
            token = sample_value(action)
        out.append(token)
    return out


def parse_error(argv: list[str]) -> str | None:
    """argparse's message if argv does not parse as a salclass command line, else None."""
    parser = build_parser()
    argv = fill_placeholders(parser, argv)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as e:
        if e.code:
            return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else f"exit {e.code}"
    return None


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    _, prose = split_page(path.read_text())
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose:
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        k = seen.get(base, 0)
        seen[base] = k + 1
        found.add(base if k == 0 else f"{base}-{k}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    _, prose = split_page(path.read_text())
    out = []
    for n, line in prose:
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            out.append((n, m.group(1)))
    return out


def make_targets() -> set[str]:
    targets = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\- ]+?)\s*:(?!=)", line)
        if m and not line.startswith("\t"):
            targets.update(m.group(1).split())
    return targets - {".PHONY"}


def named_make_targets(path: Path) -> list[tuple[int, str]]:
    """`make X` in code blocks and in inline code: the targets named (VAR=value arguments are not targets)."""
    code, prose = split_page(path.read_text())
    commands = [(n, line) for n, line in code]
    commands += [(n, m.group(2)) for n, line in prose for m in INLINE_CODE.finditer(line)]
    out = []
    for n, text in commands:
        for m in re.finditer(r"(?:^|[;&|]\s*|^\s*\$\s+)make((?:\s+[^\s#;&|]+)*)", text.strip()):
            out += [(n, t) for t in m.group(1).split() if "=" not in t and not t.startswith("-")]
    return out


# --- the tests --------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_salclass_command_parses(page: Path):
    code, _ = split_page(page.read_text())
    bad = []
    for n, line in logical_lines(code):
        argv = salclass_argv(line)
        if argv is None:
            continue
        for variant in synopsis_variants(argv):
            error = parse_error(variant)
            if error:
                bad.append(f"{page.name}:{n}: salclass {' '.join(variant)}\n    {error}")
            if "--config" in variant[:-1]:
                config = variant[variant.index("--config") + 1]
                if config.startswith("configs/") and not (REPO / config).is_file():
                    bad.append(f"{page.name}:{n}: --config {config}: no such file in the repository")
    assert not bad, "commands in the docs that the CLI would refuse:\n" + "\n".join(bad)


def test_the_pages_hold_commands():
    # The scan must see the commands at all: a change to how code blocks are found would otherwise pass silently.
    readme_code, _ = split_page((REPO / "README.md").read_text())
    commands = [salclass_argv(line) for _, line in logical_lines(readme_code)]
    assert ["study", "--config", "configs/study/headline.yaml", "--out", "out/headline"] in commands
    assert sum(c is not None for c in commands) >= 5


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_make_target_exists(page: Path):
    targets = make_targets()
    missing = [f"{page.name}:{n}: make {t}" for n, t in named_make_targets(page) if t not in targets]
    assert not missing, f"make targets named in the docs but not in the Makefile ({sorted(targets)}):\n" + \
        "\n".join(missing)


def test_make_targets_are_found():
    assert {"demo", "test", "bench", "calibrate"} <= make_targets()
    assert ("README.md", "demo") in {(p.name, t) for p in [REPO / "README.md"] for _, t in named_make_targets(p)}


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_relative_link_and_anchor_resolves(page: Path):
    bad = []
    for n, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            bad.append(f"{page.name}:{n}: {target}: {path_part} does not exist")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{page.name}:{n}: {target}: no heading '#{anchor}' in {dest.name}")
    assert not bad, "links in the docs that lead nowhere:\n" + "\n".join(bad)


def test_anchor_rule_is_githubs():
    assert slug("Block order: conv -> ReLU -> BN, as the thesis built it") == \
        "block-order-conv---relu---bn-as-the-thesis-built-it"
    assert slug("Fixation data (`salclass.saliency.datasets`)") == "fixation-data-salclasssaliencydatasets"
    assert slug("A parallel study (`--jobs`)") == "a-parallel-study---jobs"


def test_front_page_is_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the manual is docs/"
    long = [f"README.md:{n}: {len(line)} characters" for n, line in enumerate(lines, 1) if len(line) > 120]
    assert not long, "lines over 120 characters:\n" + "\n".join(long)


def test_dated_measurements_live_in_benchmarks_results_and_changelog():
    dated = re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}|commit [0-9a-f]{7}|load average|UTC")
    allowed = {"docs/benchmarks.md", "docs/results.md", "CHANGELOG.md"}
    hits = [f"{page}:{n}: {line.strip()[:80]}" for path, page in zip(PAGES, PAGE_IDS) if page not in allowed
            for n, line in enumerate(path.read_text().splitlines(), 1) if dated.search(line)]
    assert not hits, "dated measurements belong in docs/benchmarks.md or docs/results.md:\n" + "\n".join(hits)
