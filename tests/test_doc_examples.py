"""Every fenced code block in README.md and docs/*.md is checked; each block is one test.

How a block is classified, by its fence's language (test id: ``page:line`` of the fence):

* ``python``: executed, in a fresh namespace (``__name__ == "__main__"``) with a fresh
  temporary directory as the working directory. The python blocks of one page build on
  each other in page order: the test of a block first runs the page's earlier runnable
  python blocks in the same namespace, then its own. So every test id stands alone, and a
  later block may use the names an earlier one defined.
* ``pycon``, or a ``python`` block whose first line starts with ``>>>``: run with :mod:`doctest`
  (``ELLIPSIS``, ``NORMALIZE_WHITESPACE``), in a fresh namespace.
* ``toml``: parsed with :mod:`tomllib`, then loaded with the project's loader of its kind,
  so a documented key that does not exist fails: a node config
  (:func:`repp2p.config.node_config_from_dict`; a missing ``data_dir`` is supplied), an
  attestation policy (:func:`repp2p.attestation.policy.policy_from_mapping`), a simulation
  scenario (:meth:`repp2p.sim.Scenario.from_dict`), an engine manifest
  (:meth:`engines.Manifest.from_mapping`) or a ``pyproject.toml`` fragment (its entry-point
  groups must be ones the project reads). The kind is named by ``<!-- toml: KIND -->``
  right before the fence, or else it is the kind whose top-level keys the block uses most.
* ``json``: parsed with :func:`json.loads`.
* ``ini``: parsed with :mod:`configparser`; an ``ExecStart=`` command is checked as a
  shell command line.
* ``sh``, ``bash``, ``shell``: every line is a command; ``console``: only lines after a
  ``$`` prompt are (the rest is output). ``\\`` continues a line, ``#`` starts a comment,
  ``&&``, ``||``, ``;``, ``|`` and ``&`` separate commands, and ``for V in ...; do ...
  done`` runs its body once per value. ``repp2p ...`` (any path ending in ``repp2p``) is
  parsed by the CLI's own argparse parser without running it: the subcommand and every
  flag must exist (no abbreviations); ALL-CAPS values (``FILE``, ``MULTIADDR``, ``N``,
  ``KEY=VALUE``) are placeholders that pass type and choice checks; ``[...]`` marks
  optional parts (parsed with and without them) and ``...`` repetition; an argument naming
  a file (it has a suffix) under ``simulations/``, ``bootstrap/``, ``bench/``, ``docs/``
  or ``engines/`` must exist. ``make T`` needs a target ``T`` in the Makefile;
  ``python script.py`` needs the script, ``python -m M`` an importable ``M``;
  ``pip install 'repp2p[X]'`` needs the extra ``X``; a few generic tools
  (:data:`UNCHECKED_COMMANDS`) are not checked; any other command fails.
* ``text``: not checked (output samples, formulas, wire layouts).
* ``<!-- no-test: reason -->`` right before a fence: the block is not run (it needs a live
  network, or it is an outline with free names). A python block is still compiled and its
  imports must resolve; a TOML block is still parsed; others are skipped with the reason
  (the skip shows in pytest's summary).
* A fence without a language, or with one not listed here, fails: say what the block is.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import contextlib
import dataclasses
import doctest
import importlib
import importlib.util
import io
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from repp2p.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

PYTHON = {"python", "py"}
DOCTEST = {"pycon"}
SHELL = {"sh", "bash", "shell"}
CONSOLE = {"console"}
UNCHECKED = {"text"}
KNOWN_LANGUAGES = PYTHON | DOCTEST | SHELL | CONSOLE | UNCHECKED | {"toml", "json", "ini"}

#: Shell commands the docs may use that this test does not check (installs, file tools).
UNCHECKED_COMMANDS = frozenset(
    {"pip", "pip3", "cd", "cp", "mkdir", "chmod", "chown", "sqlite3", "systemctl", "curl"}
)
#: Arguments under these folders name files of this repository: they must exist.
REPO_FOLDERS = ("simulations/", "bootstrap/", "bench/", "docs/", "engines/")

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<lang>[^`\s]*)\s*$")
_MARKER = re.compile(r"^<!--\s*(?P<key>no-test|toml):\s*(?P<value>.*?)\s*-->$")
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(?:[=,][A-Z][A-Z0-9_]*)*$")


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    markers: tuple[tuple[str, str], ...]  # (key, value) of the comments right before it

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def marker(self, key: str) -> str | None:
        return next((value for k, value in self.markers if k == key), None)

    @property
    def kind(self) -> str:
        """How the block is checked (see the module docstring)."""
        if self.lang in PYTHON and self.code.lstrip().startswith(">>>"):
            return "doctest"
        if self.lang in DOCTEST:
            return "doctest"
        return self.lang or "(none)"


def extract_blocks(page: Path) -> list[Block]:
    """Every fenced block of a Markdown page, with the markers directly above it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        markers = []
        j = i - 1
        while j >= 0 and (m := _MARKER.match(lines[j].strip())):
            markers.append((m["key"], m["value"]))
            j -= 1
        body = []
        k = i + 1
        while k < len(lines):
            closing = _FENCE.match(lines[k])
            if closing and closing["fence"].startswith(fence) and not closing["lang"]:
                break
            line = lines[k]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            k += 1
        else:
            raise AssertionError(f"{page.relative_to(ROOT)}:{i + 1}: fence never closed")
        blocks.append(
            Block(page, i + 1, opening["lang"].lower(), "\n".join(body) + "\n", tuple(markers))
        )
        i = k + 1
    return blocks


BLOCKS = [block for page in PAGES for block in extract_blocks(page)]


# -- python ------------------------------------------------------------------------------


def _compiled(block: Block) -> Any:
    # Leading newlines make tracebacks name the page's own line numbers.
    return compile("\n" * block.line + block.code, str(block.page), "exec")


def _earlier_python(block: Block) -> list[Block]:
    return [
        b
        for b in BLOCKS
        if b.page == block.page
        and b.line < block.line
        and b.kind in PYTHON
        and b.marker("no-test") is None
    ]


def check_python(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__file__": str(tmp_path / "example.py"),
    }
    for earlier in _earlier_python(block):
        try:
            exec(_compiled(earlier), namespace)
        except Exception as exc:
            raise AssertionError(f"the earlier block {earlier.id} failed: {exc!r}") from exc
    exec(_compiled(block), namespace)


def check_python_imports(block: Block) -> None:
    """A block that is not run must still compile, and what it imports must exist."""
    tree = ast.parse(block.code, block.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    importlib.import_module(f"{node.module}.{alias.name}")


def check_doctest(block: Block) -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(block.code, {}, block.id, str(block.page), block.line)
    assert test.examples, f"{block.id}: a doctest block without examples"
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()


# -- toml --------------------------------------------------------------------------------


#: files an operator's config may name on its own machine, and the shipped files that stand
#: in for them when a documented config is loaded here
_STAND_INS = {"network_file": "dev.toml", "policy": "policy-production.toml"}


def _load_node_config(data: dict[str, Any], tmp_path: Path) -> None:
    """Load a documented node config; an absolute ``network_file`` or ``policy`` that does
    not exist here (``/etc/repp2p/...``) is replaced by a copy of the shipped file, so every
    key is still checked by the real loader."""
    from repp2p.config import BOOTSTRAP_DIR, node_config_from_dict

    data = {"data_dir": str(tmp_path), **data}
    for key, shipped in _STAND_INS.items():
        named = data.get(key)
        if isinstance(named, str) and Path(named).is_absolute() and not Path(named).exists():
            stand_in = tmp_path / "stand-ins" / Path(named).name
            stand_in.parent.mkdir(exist_ok=True)
            stand_in.write_bytes((BOOTSTRAP_DIR / shipped).read_bytes())
            data[key] = str(stand_in)
    node_config_from_dict(data, base_dir=tmp_path)


def _load_policy(data: dict[str, Any], tmp_path: Path) -> None:
    from repp2p.attestation.policy import policy_from_mapping

    policy_from_mapping(data)


def _load_scenario(data: dict[str, Any], tmp_path: Path) -> None:
    from repp2p.sim import Scenario

    Scenario.from_dict(data)


def _load_manifest(data: dict[str, Any], tmp_path: Path) -> None:
    from engines import Manifest

    Manifest.from_mapping(data, tmp_path)


def _load_pyproject(data: dict[str, Any], tmp_path: Path) -> None:
    from engines import ENTRY_POINT_GROUP

    groups = data.get("project", {}).get("entry-points", {})
    for group, entries in groups.items():
        assert group == ENTRY_POINT_GROUP, f"entry-point group {group!r} is not read by repp2p"
        for name, target in entries.items():
            assert re.fullmatch(r"[\w.]+:[\w.]+", target), f"{name} = {target!r}"


def _toml_kinds() -> dict[str, tuple[frozenset[str], Callable[[dict[str, Any], Path], None]]]:
    """TOML kind -> (its top-level keys, its loader)."""
    from repp2p.attestation.policy import _KEYS as POLICY_KEYS
    from repp2p.config import NodeConfig
    from repp2p.sim import Scenario

    node_keys = {f.name for f in dataclasses.fields(NodeConfig)}
    # the scenario's tables are flattened into fields; these are their TOML names
    scenario_keys = {f.name for f in dataclasses.fields(Scenario)} | {
        "network",
        "churn",
        "clients",
        "adversary",
    }
    return {
        "node-config": (frozenset(node_keys), _load_node_config),
        "policy": (frozenset(POLICY_KEYS), _load_policy),
        "scenario": (frozenset(scenario_keys), _load_scenario),
        "manifest": (frozenset({"engine", "measurement"}), _load_manifest),
        "pyproject": (frozenset({"project", "build-system", "tool"}), _load_pyproject),
    }


def toml_kind(block: Block, data: dict[str, Any]) -> str:
    kinds = _toml_kinds()
    named = block.marker("toml")
    if named is not None:
        assert named in kinds, f"<!-- toml: {named} -->: kinds are {sorted(kinds)}"
        return named
    scores = sorted(((len(set(data) & keys), kind) for kind, (keys, _) in kinds.items()))
    (second, _), (best, kind) = scores[-2], scores[-1]
    assert best > second, (
        f"cannot tell what this TOML is (keys {sorted(data)}): "
        f"put <!-- toml: KIND --> before the fence, KIND one of {sorted(kinds)}"
    )
    return kind


def check_toml(block: Block, tmp_path: Path) -> None:
    data = tomllib.loads(block.code)
    kind = toml_kind(block, data)
    _, load = _toml_kinds()[kind]
    load(data, tmp_path)


# -- shell -------------------------------------------------------------------------------


def _tolerant(parser: argparse.ArgumentParser) -> None:
    """Let placeholders through type and choice checks; refuse abbreviated flags."""
    parser.allow_abbrev = False
    get_value, check_value = parser._get_value, parser._check_value

    def _get(action: argparse.Action, text: str) -> Any:
        return text if _PLACEHOLDER.match(text) else get_value(action, text)

    def _check(action: argparse.Action, value: Any) -> None:
        if not (isinstance(value, str) and _PLACEHOLDER.match(value)):
            check_value(action, value)

    parser._get_value = _get  # type: ignore[method-assign]
    parser._check_value = _check  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _tolerant(sub)


def cli_parser() -> argparse.ArgumentParser:
    from repp2p.cli import build_parser

    parser = build_parser()
    _tolerant(parser)
    return parser


def _usage_variants(words: list[str]) -> Iterator[list[str]]:
    """``[...]`` groups are optional and ``...`` repeats: all groups in, then none."""
    required: list[str] = []
    everything: list[str] = []
    depth = 0
    for word in words:
        if word == "...":
            continue
        opens = word.startswith("[")
        word = word.removeprefix("[")
        closes = word.endswith("]") or word.endswith("]...")
        word = word.removesuffix("...").removesuffix("]")
        depth += opens
        if word and word != "...":
            everything.append(word)
            if depth == 0:
                required.append(word)
        depth -= closes
        assert depth in (0, 1), f"unbalanced or nested [ ] in {' '.join(words)!r}"
    assert depth == 0, f"unclosed [ in {' '.join(words)!r}"
    yield everything
    if required != everything:
        yield required


def check_repp2p(argv: list[str]) -> None:
    for variant in _usage_variants(argv):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                cli_parser().parse_args(variant)
        except SystemExit as exc:
            assert exc.code == 0, f"repp2p {' '.join(variant)}: {err.getvalue().strip()}"
        for word in variant:
            path = word.split("=", 1)[-1]
            if path.startswith(REPO_FOLDERS) and Path(path).suffix:
                assert (ROOT / path).is_file(), f"{path} is not in the repository"


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.MULTILINE))


def check_command(words: list[str]) -> None:
    """One simple command (no operators)."""
    name = Path(words[0]).name
    args = words[1:]
    if name == "sudo":
        check_command(args)
    elif name == "repp2p":
        check_repp2p(args)
    elif name == "make":
        targets = [a for a in args if not a.startswith("-") and "=" not in a]
        for target in targets:
            assert target in _make_targets(), f"make {target}: no such Makefile target"
    elif re.fullmatch(r"python(3(\.\d+)?)?", name):
        if args[:1] == ["-m"]:
            assert importlib.util.find_spec(args[1]) is not None, f"python -m {args[1]}"
        elif args and args[0].endswith(".py"):
            assert (ROOT / args[0]).is_file(), f"python {args[0]}: no such script"
        else:
            raise AssertionError(f"cannot check {' '.join(words)!r}")
    elif name in ("pip", "pip3"):
        extras = [re.fullmatch(r"repp2p\[([\w,-]+)\]", a) for a in args]
        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        for match in filter(None, extras):
            for extra in match[1].split(","):
                assert extra in declared["optional-dependencies"], f"no extra {extra!r}"
    elif name in UNCHECKED_COMMANDS:
        pass
    else:
        raise AssertionError(
            f"no check for the command {name!r}: add one to this test, use a console block "
            "(output lines carry no $ prompt), or mark the block"
        )


def _commands(line: str) -> list[list[str]]:
    """Simple commands of one shell line, split at ``&&``, ``||``, ``;``, ``|``, ``&``."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def command_lines(block: Block) -> list[str]:
    """The block's command lines, continuations joined (console: prompted lines only)."""
    out: list[str] = []
    continued = False
    for raw in block.code.splitlines():
        line = raw.rstrip()
        if continued:
            out[-1] = out[-1][:-1] + " " + line.strip()
        elif block.lang in CONSOLE:
            if not line.startswith("$ "):
                continue
            out.append(line[2:])
        elif line.strip():
            out.append(line.strip())
        continued = bool(out) and out[-1].endswith("\\")
    return out


def check_shell(block: Block) -> None:
    commands = [c for line in command_lines(block) for c in _commands(line)]
    assert commands, f"{block.id}: no command in a {block.lang} block"
    loop: tuple[str, list[str]] | None = None
    body: list[list[str]] = []
    for words in commands:
        if words[0] == "for":
            assert len(words) >= 3 and words[2] == "in", f"for loop: {words}"
            loop, body = (words[1], words[3:]), []
        elif words[0] == "do" and loop is not None:
            if words[1:]:
                body.append(words[1:])
        elif words[0] == "done" and loop is not None:
            var, values = loop
            for value in values:
                for command in body:
                    check_command([re.sub(rf"\$\{{?{var}\}}?", value, w) for w in command])
            loop = None
        elif loop is not None:
            body.append(words)
        else:
            check_command(words)
    assert loop is None, "a for loop without done"


def check_ini(block: Block) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(block.code)
    for section in parser.sections():
        if "ExecStart" in parser[section]:
            for command in _commands(parser[section]["ExecStart"]):
                check_command(command)


# -- the tests ---------------------------------------------------------------------------


def _run(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = block.marker("no-test")
    kind = block.kind
    assert kind in KNOWN_LANGUAGES | {"doctest"}, (
        f"a ```{block.lang} block: give the fence a language this test checks "
        f"({sorted(KNOWN_LANGUAGES)}), or mark it <!-- no-test: reason -->"
    )
    if reason is not None:
        assert reason, "<!-- no-test: --> needs a reason"
        if kind in PYTHON:
            check_python_imports(block)
        elif kind == "toml":
            tomllib.loads(block.code)
        else:
            pytest.skip(f"{block.id}: {reason}")
        return
    if kind in PYTHON:
        check_python(block, tmp_path, monkeypatch)
    elif kind == "doctest":
        check_doctest(block)
    elif kind == "toml":
        check_toml(block, tmp_path)
    elif kind == "json":
        json.loads(block.code)
    elif kind == "ini":
        check_ini(block)
    elif kind in SHELL | CONSOLE:
        check_shell(block)


CHECKED = [b for b in BLOCKS if b.kind not in UNCHECKED]


@pytest.mark.parametrize("block", CHECKED, ids=[b.id for b in CHECKED])
def test_doc_block(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(block, tmp_path, monkeypatch)


def test_pages_have_blocks() -> None:
    assert len(PAGES) > 5 and len(CHECKED) > 20, "the extractor found too little"


def test_extractor_reads_markers_and_indented_fences(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "1. A step:\n\n   <!-- toml: node-config -->\n   ```toml\n   [feed]\n   upstreams = 3\n"
        "   ```\n\n<!-- no-test: needs a network -->\n```python\nimport trio\n```\n"
    )
    config, code = extract_blocks(page)
    assert (config.lang, config.line, config.code) == ("toml", 4, "[feed]\nupstreams = 3\n")
    assert config.marker("toml") == "node-config" and config.marker("no-test") is None
    assert (code.kind, code.marker("no-test")) == ("python", "needs a network")
    check_toml(config, tmp_path)  # a [feed] table alone is a valid node config
    typo = dataclasses.replace(config, code="[feed]\nupstream = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'upstream'"):
        check_toml(typo, tmp_path)


def test_usage_notation_and_flags() -> None:
    words = shlex.split("sim run FILE --out DIR [--seed N] [--set KEY=VALUE ...]")
    assert list(_usage_variants(words)) == [
        ["sim", "run", "FILE", "--out", "DIR", "--seed", "N", "--set", "KEY=VALUE"],
        ["sim", "run", "FILE", "--out", "DIR"],
    ]
    check_repp2p(words)
    with pytest.raises(AssertionError, match="unrecognized arguments: --sed"):
        check_repp2p(["sim", "run", "FILE", "--out", "DIR", "--sed", "N"])
    with pytest.raises(AssertionError, match="invalid int value"):
        check_repp2p(["sim", "run", "FILE", "--out", "DIR", "--seed", "one"])
