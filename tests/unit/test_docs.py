"""The docs and the code agree: every CLI flag and every config element is documented, and every documented one
exists. Docs are README.md and docs/*.md; the config reference is docs/configuration.md's element table."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from lxml import etree

from s3seg.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
XS = "{http://www.w3.org/2001/XMLSchema}"
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+)`")
LONG_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _parsers() -> list[argparse.ArgumentParser]:
    top = build_parser()
    found = [top]
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices.values())
    return found


def _cli_flags() -> set[str]:
    return {opt for p in _parsers() for a in p._actions for opt in a.option_strings if opt.startswith("--")}


# Backticked names that start with dashes and are not s3seg flags: S3 bucket-name suffixes the lean path hands to
# botocore (directory buckets, access-point aliases, table buckets).
NOT_FLAGS = frozenset({"--x-s3", "--ol-s3", "--op-s3", "--table-s3"})
# Pages that document the benchmark scripts' own flags (scripts/bench*.py), not s3seg's.
SCRIPT_PAGES = frozenset({"benchmarks.md", "benchmarks-latency.md"})


def _documented_flags() -> dict[str, str]:
    """``--flag`` -> the first doc file naming it, from inline code spans that are s3seg's: a span starting with
    ``s3seg`` or with a dash. Spans of other tools (``dask worker --nthreads 1``, ``python scripts/bench.py
    --store rclone``) and fenced blocks are not flag documentation."""
    found: dict[str, str] = {}
    for path in _doc_files():
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        for span in SPAN.findall(text):
            if span.startswith("s3seg") or (span.startswith("-") and path.name not in SCRIPT_PAGES):
                for flag in LONG_FLAG.findall(span):
                    if flag not in NOT_FLAGS:
                        found.setdefault(flag, path.name)
    return found


def _xsd_elements() -> set[str]:
    tree = etree.parse(str(ROOT / "s3seg" / "config.xsd"))
    return {e.get("name") for e in tree.iter(f"{XS}element")} - {"config"}


def _config_table() -> set[str]:
    """The element names in the first column of docs/configuration.md's ``| element | required | ...`` table."""
    lines = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| element | required | default |"))
    names: set[str] = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        m = re.match(r"\| `([a-z_0-9]+)` \|", line)
        assert m, f"docs/configuration.md: a config table row without a `name` first: {line[:60]}"
        names.add(m.group(1))
    return names


def _example() -> tuple[set[str], set[str]]:
    """(elements of config.xml.example, element names inside its comments as ``<name>``)."""
    tree = etree.parse(str(ROOT / "config.xml.example"))
    elements = {str(e.tag) for e in tree.getroot() if isinstance(e.tag, str)}
    commented = {
        name for c in tree.getroot().iter(etree.Comment) for name in re.findall(r"<([a-z_0-9]+)\s*/?>", c.text or "")
    }
    return elements, commented


def test_every_cli_flag_is_documented() -> None:
    documented = _documented_flags()
    missing = sorted(_cli_flags() - set(documented))
    assert not missing, f"flags no doc names (in `backticks`, README.md or docs/*.md): {missing}"


def test_every_documented_flag_exists() -> None:
    flags = _cli_flags()
    unknown = {f: where for f, where in _documented_flags().items() if f not in flags}
    assert not unknown, f"documented flags no s3seg parser has: {unknown}"


def test_the_flag_walk_sees_every_command() -> None:
    names = {p.prog.split()[-1] for p in _parsers()[1:]}
    assert names == {"plan", "apply", "rollback", "status", "run", "verify", "report", "prune"}
    assert {"--config", "--dry-run", "--samples", "--lock-wait", "--version", "--help"} <= _cli_flags()


def test_every_config_element_is_in_the_reference_table_and_the_example() -> None:
    xsd = _xsd_elements()
    elements, commented = _example()
    assert not xsd - _config_table(), (
        f"XSD elements missing from docs/configuration.md: {sorted(xsd - _config_table())}"
    )
    undocumented = xsd - elements - commented
    assert not undocumented, f"XSD elements missing from config.xml.example: {sorted(undocumented)}"


def test_every_documented_config_element_exists() -> None:
    xsd = _xsd_elements()
    elements, commented = _example()
    assert not _config_table() - xsd, f"docs/configuration.md documents unknown elements: {_config_table() - xsd}"
    assert not (elements | commented) - xsd, (
        f"config.xml.example names unknown elements: {(elements | commented) - xsd}"
    )


def test_the_example_is_a_valid_config_in_every_element() -> None:
    """config.xml.example's elements are the XSD's own: it validates against the schema as it stands."""
    schema = etree.XMLSchema(etree.parse(str(ROOT / "s3seg" / "config.xsd")))
    assert schema.validate(etree.parse(str(ROOT / "config.xml.example"))), schema.error_log


# -- defaults: one source (config.Settings), and the schema, the example and the reference table agree ----------
# Reference-table words for "no value" (the element's Settings default is None, empty, or computed at load).
NO_VALUE_WORDS = frozenset({"none", "AWS", "boto3 chain", "CPU count"})


def _settings_default(element: str) -> object:
    from s3seg import config

    name = config._PARAMETERS[element][0]
    f = config.Settings.__dataclass_fields__[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _as_value(element: str, text: str) -> object:
    """A default as written in a doc, read the way the config file's text is read."""
    from s3seg import config

    return config._PARAMETERS[element][1](text)


def _xsd_optional() -> dict[str, str | None]:
    """Optional element -> its ``default="..."`` in config.xsd (None: it has none)."""
    tree = etree.parse(str(ROOT / "s3seg" / "config.xsd"))
    return {
        str(e.get("name")): e.get("default")
        for e in tree.iter(f"{XS}element")
        if e.get("name") != "config" and e.get("minOccurs") == "0"
    }


def _table_defaults() -> dict[str, str]:
    """element -> the default cell of docs/configuration.md's element table."""
    lines = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| element | required | default |"))
    found: dict[str, str] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        found[cells[0].strip("`")] = cells[2]
    return found


def _example_defaults() -> dict[str, str]:
    """element -> the word after "default" in the comment just before it in config.xml.example."""
    found: dict[str, str] = {}
    comment = ""
    for node in etree.parse(str(ROOT / "config.xml.example")).getroot():
        if isinstance(node, etree._Comment):
            comment = node.text or ""
        elif isinstance(node.tag, str):
            m = re.search(r"\bdefault:?\s+(\S+)", comment)
            if m:
                found[str(node.tag)] = m.group(1).rstrip(",") if m.group(1) == "." else m.group(1).rstrip(",.")
    return found


def _first_word(cell: str) -> str:
    return cell.split(" (")[0].strip("`")


def test_every_schema_default_is_the_settings_default() -> None:
    for element, default in _xsd_optional().items():
        expected = _settings_default(element)
        if default is None:
            assert not expected or element == "processes", f"<{element}>: Settings default {expected!r}, no XSD one"
        else:
            assert _as_value(element, default) == expected, f"<{element}>: XSD {default!r}, Settings {expected!r}"


def test_the_reference_table_gives_the_settings_defaults() -> None:
    table = _table_defaults()
    for element, default in _xsd_optional().items():
        cell = table[element]
        if default is None:
            assert cell in NO_VALUE_WORDS, f"docs/configuration.md <{element}>: {cell!r}, the schema has no default"
        else:
            shown = _first_word(cell)
            assert _as_value(element, shown) == _settings_default(element), f"<{element}>: table says {cell!r}"


def test_the_example_gives_the_settings_defaults() -> None:
    example = _example_defaults()
    for element, default in _xsd_optional().items():
        if default is not None:
            assert element in example, f"config.xml.example: no 'default ...' in the comment before <{element}>"
            shown = example[element]
            assert _as_value(element, shown) == _settings_default(element), f"<{element}>: example says {shown!r}"


def test_every_flag_row_names_commands_that_exist() -> None:
    from s3seg import cli

    assert tuple(cli.HANDLERS) == cli.COMMANDS
    for flag in cli.FLAGS:
        assert flag.commands and flag.commands <= set(cli.COMMANDS), flag.names
    per_command: dict[str, set[str]] = {}
    for flag in cli.FLAGS:
        for command in flag.commands:
            names = per_command.setdefault(command, set())
            assert not names & set(flag.names), f"{flag.names} declared twice for {command}"
            names.update(flag.names)


# -- links ---------------------------------------------------------------------------------------------------------
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation but ``-`` and ``_`` removed."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[`*]|<[^>]+>", "", text).strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(text):
        slug = _slug(heading)
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def _links() -> list[tuple[Path, str]]:
    out = []
    for path in [*_doc_files(), ROOT / "tests" / "adversarial" / "REPORT.md"]:
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        text = re.sub(r"`[^`\n]*`", "", text)  # a link inside a code span is not a link
        out += [(path, a or b) for a, b in LINK.findall(text)]
    return out


def test_every_relative_link_and_anchor_in_the_docs_resolves() -> None:
    broken = []
    for path, target in _links():
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not checked here
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_link_check_sees_links() -> None:
    assert len(_links()) > 10
    assert _slug("Exit codes & `--dry-run` (safety)") == "exit-codes----dry-run-safety"
