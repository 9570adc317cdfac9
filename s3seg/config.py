"""The XML config file -> a frozen, validated ``Settings``.

Owns: parsing (hardened lxml parser, DOCTYPE refused), XSD validation against ``s3seg/config.xsd``, and the
semantic checks XSD cannot express (regex compiles, strftime formats round-trip, log file writable, S3 URLs).
Every rejection is a ``ConfigError`` naming the file, the line and what to fix.

Must not: import boto3, read argv, touch the network, or create any S3 client.

The order of the checks is the order of trust: the raw bytes are searched for ``<!DOCTYPE``/``<!ENTITY``
before lxml sees them (entities are how XML reads local files or expands without bound), then the parser,
then the schema (structure, types, ranges, enums, required elements), then the per-value checks below, then
the checks that compare two values.

Compatibility with the original tool, decided here:

* An empty optional element (``<match_pattern></match_pattern>``, ``<n_keys/>``) means "use the default",
  as the original treated it. Whitespace around every value is ignored.
* ``s3_dir``, ``s3_segregated_dir`` and ``s3_error_dir`` are folders: a missing trailing '/' is added, since
  the original joined the file name with ``os.path.join``. ``s3://bucket`` is the bucket root.
* ``log_file`` may contain strftime directives (the original expanded it with ``datetime.now()``); keep
  the template in ``Settings.log_file`` and open ``resolve_log_file(settings.log_file, now)``.
* ``match_pattern`` without any group: the whole match is the date string (the original joined an empty
  list of groups and so sent every file to the error folder).
"""

from __future__ import annotations

import codecs
import difflib
import functools
import importlib.resources
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, cast

from lxml import etree

from s3seg.errors import ConfigError

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Location:
    """``s3://bucket/prefix``. ``prefix`` is '' (bucket root) or ends with '/': every location is a folder,
    as in the original tool. For ``s3_segregated_dir`` the prefix is a strftime template."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def default_processes() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything a run needs, resolved and validated. Field names follow the XML element names."""

    config_path: str = ""
    # --- the original tool's parameters -------------------------------------------------------------------
    log_file: str  # a strftime template as written: open resolve_log_file(log_file, now)
    match_pattern: str | None = None
    datetime_format: str
    time_delay: int = 86400
    source: S3Location  # <s3_dir>
    segregated: S3Location  # <s3_segregated_dir>, prefix is a strftime template
    error: S3Location  # <s3_error_dir>
    n_keys: int = 500  # keys per ListObjectsV2 page, 1..1000
    n_loops: int = 10  # max listing pages planned per run; 0 = unlimited
    n_workers: int = 512  # requests in flight per worker process: the upper bound (adaptive) or the count (fixed)
    # --- new in s3seg --------------------------------------------------------------------------------------
    processes: int = field(default_factory=default_processes)  # worker processes for apply/rollback
    recursive: bool = False  # plan keys below sub-folders of s3_dir too (relative path kept)
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    conditional_writes: str = "auto"  # auto | server | client  (see docs/safety.md: "Conditional writes")
    copy_encryption: str = "bucket-default"  # bucket-default | preserve
    multipart_threshold: int = 5 * GIB  # objects larger than this use a multipart copy
    multipart_chunksize: int = 512 * MIB  # part size of a multipart copy
    max_attempts: int = 8  # botocore total attempts per request (retry mode "adaptive"/"standard")
    retry_mode: str = "standard"
    item_retries: int = 5  # whole-item retries above botocore for throttling / 5xx / transport errors
    connect_timeout: float = 5.0  # seconds to open a connection to the store (per attempt)
    read_timeout: float = 30.0  # seconds a request may wait for the store's next bytes (per attempt)
    circuit_breaker: int = 100  # stop a run after this many consecutive identical failures (0: never)
    include: tuple[str, ...] = ()  # globs on the key relative to s3_dir: plan only keys matching one of them
    exclude: tuple[str, ...] = ()  # globs on the key relative to s3_dir: never plan keys matching one of them
    min_age: int = 0  # seconds: skip objects modified less than this long before the plan (still being written)
    batch_size: int = 1000  # moves per batch handed to a worker process (<= 1000: one DeleteObjects)
    list_workers: int = 8  # threads listing s3_dir in parallel StartAfter ranges (1 = one serial listing)
    state_dir: str = "."  # where `s3seg run` keeps its manifests and journals
    concurrency: str = "adaptive"  # adaptive (n_workers is an upper bound) | fixed (exactly n_workers threads)
    max_requests_per_second: float = 0.0  # cap on the whole run's request rate, shared by its processes (0: none)
    metrics_file: str | None = None  # a Prometheus textfile written after each run (node_exporter's collector)

    @property
    def pattern(self) -> re.Pattern[str] | None:
        return re.compile(self.match_pattern) if self.match_pattern is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON-able data (for the manifest header)."""
        return asdict(self)

    def resolved(self) -> Settings:
        """The paths a later run must find again made absolute, once, against the current directory (the
        directory ``plan`` or ``run`` starts in, as the original tool did): the manifest header records these,
        so ``apply`` and ``rollback`` started from another directory log to the same file."""
        changes: dict[str, Any] = {
            name: _absolute(value)
            for name in ("log_file", "metrics_file")
            if (value := getattr(self, name)) and not os.path.isabs(os.path.expanduser(value))
        }
        return replace(self, **changes) if changes else self

    @classmethod
    def from_header(cls, data: Mapping[str, Any] | None) -> Settings:
        """The config a manifest header recorded (``to_dict()`` at plan time), read back typed: the one way
        ``apply``, ``rollback``, ``verify`` and ``report`` see a plan's settings.

        A field the header lacks takes its default here (``Settings``' own, except ``LEGACY_HEADER_DEFAULTS``:
        what manifests written before the field existed meant); unknown keys are ignored. The header is
        covered by the manifest's digests, so a bad value means a manifest written by something else: raises
        ``ValueError`` naming the field.
        """
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise ValueError("the manifest header's config is not an object")
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = data.get(f.name)
            if raw is None:
                if f.name in LEGACY_HEADER_DEFAULTS:
                    values[f.name] = LEGACY_HEADER_DEFAULTS[f.name]
                elif f.name in _REQUIRED_PLACEHOLDERS:  # partial headers (tools, tests) carry no rule
                    values[f.name] = _REQUIRED_PLACEHOLDERS[f.name]
                continue
            try:
                values[f.name] = _HEADER_TYPES[str(f.type)](raw)
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"the manifest header's config.{f.name} is not valid ({_show(repr(raw))})") from exc
        return cls(**values)


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _location(raw: Any) -> S3Location:
    if not isinstance(raw, Mapping):
        raise TypeError("not an object")
    return S3Location(bucket=str(raw["bucket"]), prefix=str(raw["prefix"]))


def _strict(kind: type[Any]) -> Callable[[Any], Any]:
    """JSON value -> ``kind``, refusing what a JSON writer of ``kind`` could not have written."""

    def convert(raw: Any) -> Any:
        if isinstance(raw, (dict, list)) or (isinstance(raw, bool) and kind is not bool):
            raise TypeError(f"not a {kind.__name__}")
        if kind is bool and not isinstance(raw, bool):
            raise TypeError("not a boolean")
        return kind(raw)

    return convert


# Settings' annotation -> how its JSON value is read back.
_HEADER_TYPES: dict[str, Callable[[Any], Any]] = {
    "str": _strict(str),
    "str | None": _strict(str),
    "int": _strict(int),
    "float": _strict(float),
    "bool": _strict(bool),
    "S3Location": _location,
    "tuple[str, ...]": lambda raw: (
        tuple(_strict(str)(x) for x in raw) if isinstance(raw, (list, tuple)) else _fail(raw)
    ),
}


def _fail(raw: Any) -> Any:
    raise TypeError(f"unexpected {type(raw).__name__}")


# What a manifest header without the field meant when it was written (before the field existed).
LEGACY_HEADER_DEFAULTS: dict[str, Any] = {"processes": 1}
_REQUIRED_PLACEHOLDERS: dict[str, Any] = {
    "log_file": "",
    "datetime_format": "",
    "source": S3Location(bucket="", prefix=""),
    "segregated": S3Location(bucket="", prefix=""),
    "error": S3Location(bucket="", prefix=""),
}


# --- public helpers ----------------------------------------------------------------------------------------

# What Python's strptime reads back (C89 plus ISO week fields): the only safe set for <datetime_format>.
STRPTIME_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxX%GuV")
# Templates are only ever written with strftime, so the POSIX extras that glibc, macOS and the Windows
# UCRT all implement are fine there; the original tool passed these templates to strftime too.
STRFTIME_DIRECTIVES = STRPTIME_DIRECTIVES | frozenset("CDeFghRT")

_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_KEY_BYTES = 1024
# Dates a template or format is tried with: naive and aware (%z/%Z expand to '' on naive ones), long month
# and day names, a leap day, single-digit fields, microseconds.
_SAMPLE_DATES = (
    datetime(2022, 12, 31, 10, 5, 11, 780000),
    datetime(2024, 2, 29, 0, 0, 0),
    datetime(2001, 9, 5, 23, 59, 59, 999999, tzinfo=UTC),
)


def parse_s3_url(url: str, *, template: bool = False) -> S3Location:
    """Parse ``s3://bucket[/prefix]`` into a folder location (prefix '' or ending with '/').

    With ``template=True`` the prefix may contain strftime directives; it is checked after expanding it
    with a few sample dates, because only the expanded keys reach S3. Raises ``ValueError`` whose message
    reads after the parameter name ("<s3_dir> must be ...").
    """
    if not url.startswith("s3://"):
        raise ValueError(f"must be an s3://bucket/prefix/ URL (got {_show(url)})")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"has no bucket name (got {_show(url)}); write s3://bucket/prefix/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"has an invalid bucket name {_show(bucket)}: use 3-63 characters of a-z, 0-9, '.', '-', '_', "
            "starting and ending with a letter or digit"
        )
    if template:
        _directives(prefix, STRFTIME_DIRECTIVES)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    expansions = {d.strftime(prefix) for d in _SAMPLE_DATES} if template else {prefix}
    for expanded in sorted(expansions):
        where = _show(url) if expanded == prefix else f"{_show(url)}, which expands to {_show(expanded)}"
        _check_prefix(expanded, where=where)
    return S3Location(bucket=bucket, prefix=prefix)


def resolve_log_file(template: str, now: datetime) -> str:
    """The log file path for a run started at ``now``: strftime first (as the original), then '~'."""
    return os.path.expanduser(now.strftime(template))


def load(path: str | os.PathLike[str]) -> Settings:
    """Parse and validate the config file at ``path``; raise ``ConfigError`` naming file and line.

    Reports every schema error at once (one ``file:line: message`` per line, the first in ``.line``),
    then the first failing value check.
    """
    shown = os.fspath(path)
    root = _parse(shown, _read(shown))
    _validate(shown, root)
    values: dict[str, Any] = {}
    for element in root:
        text = (element.text or "").strip()
        if not text:  # the schema lets only optional elements be empty: empty means the default
            continue
        name, convert = _PARAMETERS[element.tag]
        try:
            values[name] = convert(text)
        except ValueError as exc:
            raise ConfigError(shown, _line(element), f"<{element.tag}> {exc}") from None
    _check_together(shown, root, values)
    return Settings(config_path=shown, **values)


# --- per-value checks: text (stripped, schema-valid) -> value, or ValueError --------------------------------


def _show(value: str, limit: int = 80) -> str:
    """Quote a value from the file for a message: repr() escapes control characters, long ones are cut."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def _directives(text: str, allowed: frozenset[str]) -> list[str]:
    """The directive letters in a strftime text ('%' for '%%'); reject unknown ones and a stray '%'."""
    found: list[str] = []
    i = text.find("%")
    while i != -1:
        if i + 1 == len(text):
            raise ValueError(f"ends with a lone '%' (write '%%' for a percent sign) in {_show(text)}")
        letter = text[i + 1]
        if letter not in allowed:
            raise ValueError(
                f"has an unknown strftime directive {_show('%' + letter)} in {_show(text)}; "
                f"allowed: {' '.join('%' + d for d in sorted(allowed))}"
            )
        found.append(letter)
        i = text.find("%", i + 2)
    return found


def _check_prefix(prefix: str, *, where: str) -> None:
    if prefix.startswith("/") or "//" in prefix:
        raise ValueError(f"has an empty path segment ('//') in its prefix: {where}")
    if _CONTROL.search(prefix):
        raise ValueError(f"has a control character in its prefix: {where}")
    size = len(prefix.encode())
    if size >= _MAX_KEY_BYTES:  # a key needs at least one byte of file name after the prefix
        raise ValueError(f"has a prefix of {size} bytes; S3 keys are at most {_MAX_KEY_BYTES} bytes")


def _folder(text: str) -> S3Location:
    return parse_s3_url(text)


def _template(text: str) -> S3Location:
    return parse_s3_url(text, template=True)


def _match_pattern(text: str) -> str:
    """Compile once here so a bad regex fails before any S3 call, with re's own explanation."""
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc.msg} at position {exc.pos}") from None
    return text


def _datetime_format(text: str) -> str:
    """The dates read from file names go through strptime, so the format must read back what it writes."""
    letters = [d for d in _directives(text, STRPTIME_DIRECTIVES) if d != "%"]
    if not letters:
        raise ValueError(f"has no strftime directive such as %Y, so it cannot read a date: {_show(text)}")
    repeated = sorted({d for d in letters if letters.count(d) > 1})
    if repeated:
        raise ValueError(f"uses '%{repeated[0]}' more than once, which strptime cannot read: {_show(text)}")
    for date in _SAMPLE_DATES:
        if date.tzinfo is None and {"z", "Z"} & set(letters):
            continue  # strptime needs an offset for %z; file names carrying one parse to aware dates
        written = date.strftime(text)
        try:
            datetime.strptime(written, text)
        except (ValueError, re.error) as exc:
            raise ValueError(f"cannot read back the dates it writes ({_show(written)}): {exc}") from None
    return text


def _log_file(text: str) -> str:
    """Checked for today's name; later days differ only in the file name if directives are in it."""
    _directives(text, STRFTIME_DIRECTIVES)
    path = resolve_log_file(text, datetime.now())
    _writable_parent(path)
    if os.path.lexists(path):
        if not os.path.isfile(path):
            raise ValueError(f"exists and is not a regular file: {_show(path)}")
        if not os.access(path, os.W_OK):
            raise ValueError(f"exists and this user cannot write to it: {_show(path)}")
    return text


def _metrics_file(text: str) -> str:
    """Written as a temporary file beside it, then renamed: the directory must exist and be writable."""
    _writable_parent(os.path.expanduser(text))
    return text


def _writable_parent(path: str) -> None:
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise ValueError(f"is in a directory that does not exist: {_show(parent)} (s3seg does not create it)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"is in a directory this user cannot write to: {_show(parent)}")


def _state_dir(text: str) -> str:
    path = os.path.expanduser(text)
    if not os.path.isdir(path):
        raise ValueError(f"is not an existing directory: {_show(path)} (s3seg does not create it)")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"is a directory this user cannot write to: {_show(path)}")
    return path


def _endpoint_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"\s", text):
        # A user:password@ part is a secret: never echo it (the message reaches terminals and logs).
        shown = re.sub(r"[^/@\s]*@", "***@", text, count=1)
        raise ValueError(f"must be an http:// or https:// URL (got {_show(shown)})")
    return text


def _name(text: str) -> str:
    if re.search(r"\s", text):
        raise ValueError(f"must not contain whitespace (got {_show(text)})")
    return text


def _globs(text: str) -> tuple[str, ...]:
    """Whitespace-separated glob patterns (``*``, ``?``, ``[...]``), matched against the key relative to s3_dir."""
    return tuple(text.split())


_DURATION = re.compile(r"(\d+)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``30s``, ``10m``, ``2h``, ``7d`` or plain seconds -> seconds."""
    found = _DURATION.fullmatch(text.strip())
    if not found:
        raise ValueError(f"must be a duration such as 30s, 10m, 2h or 7d (got {_show(text)})")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def _boolean(text: str) -> bool:
    return text in ("true", "1")  # the schema admits only xs:boolean: true, false, 1, 0


# element -> (Settings field, converter). Required-ness, types and ranges live in config.xsd.
_PARAMETERS: dict[str, tuple[str, Callable[[str], object]]] = {
    "log_file": ("log_file", _log_file),
    "match_pattern": ("match_pattern", _match_pattern),
    "datetime_format": ("datetime_format", _datetime_format),
    "time_delay": ("time_delay", int),
    "s3_dir": ("source", _folder),
    "s3_segregated_dir": ("segregated", _template),
    "s3_error_dir": ("error", _folder),
    "n_keys": ("n_keys", int),
    "n_loops": ("n_loops", int),
    "n_workers": ("n_workers", int),
    "processes": ("processes", int),
    "recursive": ("recursive", _boolean),
    "endpoint_url": ("endpoint_url", _endpoint_url),
    "region": ("region", _name),
    "profile": ("profile", _name),
    "conditional_writes": ("conditional_writes", str),
    "copy_encryption": ("copy_encryption", str),
    "multipart_threshold": ("multipart_threshold", int),
    "multipart_chunksize": ("multipart_chunksize", int),
    "max_attempts": ("max_attempts", int),
    "retry_mode": ("retry_mode", str),
    "item_retries": ("item_retries", int),
    "connect_timeout": ("connect_timeout", float),
    "read_timeout": ("read_timeout", float),
    "circuit_breaker": ("circuit_breaker", int),
    "include": ("include", _globs),
    "exclude": ("exclude", _globs),
    "min_age": ("min_age", parse_duration),
    "batch_size": ("batch_size", int),
    "list_workers": ("list_workers", int),
    "state_dir": ("state_dir", _state_dir),
    "concurrency": ("concurrency", str),
    "max_requests_per_second": ("max_requests_per_second", float),
    "metrics_file": ("metrics_file", _metrics_file),
}


def _line(element: etree._Element) -> int | None:
    return cast("int | None", element.sourceline)  # lxml-stubs leave sourceline untyped


def _check_together(path: str, root: etree._Element, values: dict[str, Any]) -> None:
    """A move onto its own key is a copy onto itself followed by a delete: the object would be lost."""
    lines = {element.tag: _line(element) for element in root}
    source: S3Location = values["source"]
    error: S3Location = values["error"]
    segregated: S3Location = values["segregated"]
    if error == source:
        raise ConfigError(
            path, lines["s3_error_dir"], "<s3_error_dir> is the same folder as <s3_dir>; choose another one"
        )
    literal = not [d for d in _directives(segregated.prefix, STRFTIME_DIRECTIVES) if d != "%"]
    same = S3Location(bucket=segregated.bucket, prefix=segregated.prefix.replace("%%", "%")) == source
    if literal and same:
        raise ConfigError(
            path,
            lines["s3_segregated_dir"],
            "<s3_segregated_dir> is the same folder as <s3_dir>; add date directives such as %Y/%m/%d/",
        )
    _check_nesting(path, lines, source, error, segregated)


def _check_nesting(
    path: str, lines: dict[str, int | None], source: S3Location, error: S3Location, segregated: S3Location
) -> None:
    """``s3_dir`` inside the error folder, or inside a folder the segregated template expands to: every key
    listed would count as already in place, so nothing could ever move. (The error folder or the date folders
    inside ``s3_dir`` are fine: they are skipped when listing recursively and not listed otherwise.)"""
    from s3seg.naming import template_regex  # naming builds on this module; imported here, when both exist

    if source.bucket == error.bucket and error.prefix and source.prefix.startswith(error.prefix):
        raise ConfigError(
            path,
            lines["s3_dir"],
            f"<s3_dir> {source.url} lies inside <s3_error_dir> {error.url}: every file in it would count as "
            "already sent to the error folder and nothing would ever move; choose folders that do not nest so",
        )
    if source.bucket == segregated.bucket and template_regex(segregated.prefix).match(source.prefix):
        raise ConfigError(
            path,
            lines["s3_dir"],
            f"<s3_dir> {source.url} lies inside a folder <s3_segregated_dir> {segregated.url} produces: every "
            "file in it would count as already segregated and nothing would ever move; choose folders that do "
            "not nest so",
        )


# --- reading and parsing -----------------------------------------------------------------------------------

_MAX_FILE_BYTES = 1 * MIB  # a config is a few hundred bytes; refuse to load anything absurd into memory
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_DOCTYPE_MESSAGE = (
    "DOCTYPE and ENTITY declarations are not allowed in a config file (entities can read local files "
    "or expand without bound); delete the declaration"
)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            raw = file.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read the config file: {exc.strerror or exc}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(path, None, f"the config file is larger than {_MAX_FILE_BYTES} bytes")
    return raw


def _parser() -> etree.XMLParser:
    """No DTD, no entity substitution, no network, no unbounded trees; comments and PIs dropped."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _declaration_line(raw: bytes, encoding: str | None = None) -> int | None:
    """Line of the first DOCTYPE/ENTITY declaration in the raw bytes, or None if there is none."""
    text = None
    if encoding:
        try:
            text = raw.decode(encoding, errors="replace")
        except LookupError:
            text = None
    if text is None:
        text = raw.decode("latin-1")  # ASCII-compatible, never fails: line numbers stay right for UTF-8
        for bom, name in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32")):
            if raw.startswith(bom):
                text = raw.decode(name, errors="replace")
                break
        else:
            if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                text = raw.decode("utf-16", errors="replace")
    match = _DECLARATION.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _parse(path: str, raw: bytes) -> etree._Element:
    # Checked on the bytes before parsing, so no entity is ever seen by the parser; never echo the text.
    line = _declaration_line(raw)
    if line is not None:
        raise ConfigError(path, line, _DOCTYPE_MESSAGE)
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        # libxml2 ends its message with ", line N, column M"; the line is already in front.
        message = re.sub(r", line \d+, column (\d+)$", r" (column \1)", exc.msg)
        raise ConfigError(path, exc.lineno, f"malformed XML: {message}") from None
    docinfo = root.getroottree().docinfo
    if getattr(docinfo, "doctype", ""):  # an encoding the byte search could not read
        raise ConfigError(path, _declaration_line(raw, docinfo.encoding) or 1, _DOCTYPE_MESSAGE)
    return cast(etree._Element, root)


# --- schema ------------------------------------------------------------------------------------------------

_XS = "{http://www.w3.org/2001/XMLSchema}"


@dataclass(frozen=True, slots=True)
class _Schema:
    validator: etree.XMLSchema
    expected: dict[str, str]  # element -> "an integer from 1 to 1000" (its xs:documentation)
    required: tuple[str, ...]


@functools.cache
def _schema() -> _Schema:
    """config.xsd ships inside the package (package_data), so importlib.resources finds it in a wheel too."""
    xsd = importlib.resources.files("s3seg").joinpath("config.xsd").read_bytes()
    document = etree.fromstring(xsd, _parser())
    decls = document.findall(f"{_XS}element/{_XS}complexType/{_XS}all/{_XS}element")
    return _Schema(
        validator=etree.XMLSchema(document),
        expected={d.get("name", ""): d.findtext(f"{_XS}annotation/{_XS}documentation", "") for d in decls},
        required=tuple(d.get("name", "") for d in decls if d.get("minOccurs") != "0"),
    )


def _validate(path: str, root: etree._Element) -> None:
    schema = _schema()
    if schema.validator.validate(root):
        return
    problems: list[tuple[int | None, str]] = []
    seen: set[tuple[int | None, str]] = set()
    for entry in cast(Iterable[Any], schema.validator.error_log):
        problem = (entry.line or None, _explain(entry, root, schema))
        if problem not in seen:  # libxml2 may report one bad value twice (facet, then type)
            seen.add(problem)
            problems.append(problem)
    if not problems:  # libxml2 always logs why; this only keeps a silent failure from passing
        raise ConfigError(path, _line(root), "the file does not match the config schema")
    (line, message), *rest = problems
    message += "".join(f"\n{path}:{n}: {m}" if n else f"\n{path}: {m}" for n, m in rest)
    raise ConfigError(path, line, message)


def _explain(entry: Any, root: etree._Element, schema: _Schema) -> str:
    """Turn one libxml2 schema error into a sentence about the element; fall back to libxml2's text."""
    kind: str = entry.type_name
    lxml_message: str = entry.message
    found = root.getroottree().xpath(entry.path) if entry.path else []
    element = found[0] if isinstance(found, list) and found and isinstance(found[0], etree._Element) else None
    if element is None:
        return lxml_message
    tag = element.tag
    if kind.startswith("SCHEMAV_CVC_DATATYPE_VALID") or kind in (
        "SCHEMAV_CVC_MINLENGTH_VALID",
        "SCHEMAV_CVC_MININCLUSIVE_VALID",
        "SCHEMAV_CVC_MAXINCLUSIVE_VALID",
        "SCHEMAV_CVC_ENUMERATION_VALID",
    ):
        if tag in schema.expected:
            return f"<{tag}> must be {schema.expected[tag]} (got {_show((element.text or '').strip())})"
    elif kind == "SCHEMAV_CVC_ELT_1":
        return f"the root element must be <config> (found <{tag}>)"
    elif kind == "SCHEMAV_ELEMENT_CONTENT" and "Missing child" in lxml_message:
        present = {child.tag for child in element}
        missing = [f"<{name}>" for name in schema.required if name not in present]
        if missing:
            return f"<config> lacks required element(s): {', '.join(missing)}"
    elif kind == "SCHEMAV_ELEMENT_CONTENT" and "not expected" in lxml_message:
        if tag in schema.expected:
            return f"<{tag}> appears more than once; keep one"
        guess = difflib.get_close_matches(tag, schema.expected, n=1)
        hint = f"did you mean <{guess[0]}>?" if guess else f"the elements are: {', '.join(schema.expected)}"
        return f"unknown element <{tag}>; {hint}"
    elif kind == "SCHEMAV_CVC_TYPE_3_1_2":
        return f"<{tag}> must contain only text, not other elements"
    elif kind == "SCHEMAV_CVC_COMPLEX_TYPE_2_3":
        return f"text directly inside <{tag}> is not allowed; put each value inside its own element"
    elif "attribute" in lxml_message:
        return f"<{tag}> takes no attributes ({lxml_message})"
    return lxml_message
