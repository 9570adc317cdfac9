"""CDR-like names and the s3seg config that segregates them: one definition for the tests, the demo and the benchmarks.

The names follow the original tool's example (``CHARGINGCDR_4008-...-20221231-100511-78.ccn``); the rule is
its example config: the date and hour are the regex's two groups joined, parsed with ``%Y%m%d%H``, and go to
``segregated/%Y/%m/%d/%H/``; names that do not match go to ``error/``.

    cdr_key(7, date="20221231", hour=10)   # incoming/CHARGINGCDR_4008-...-0007-20221231-100511-78.ccn
    write_config(tmp / "config.xml", bucket="b", endpoint=url, n_loops=0, processes=None)   # None: left out
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

CDR = "CHARGINGCDR_4008-BRCCNH-CCNCDR44-01-Blk0Blk-{n}-{date}-{hour:02d}0511-{seq:02d}.ccn"
CDR_PATTERN = r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*"
DATETIME_FORMAT = "%Y%m%d%H"
SOURCE_PREFIX = "incoming/"
SEGREGATED_PREFIX = "segregated/%Y/%m/%d/%H/"
ERROR_PREFIX = "error/"


def cdr_name(n: int, date: str = "20221231", hour: int = 10, *, seq: int = 78, width: int = 4) -> str:
    """A CDR file name numbered ``n`` (zero-padded to ``width``) for ``date`` (``YYYYMMDD``) and ``hour``."""
    return CDR.format(n=f"{n:0{width}d}", date=date, hour=hour, seq=seq)


def cdr_key(
    n: int, date: str = "20221231", hour: int = 10, prefix: str = SOURCE_PREFIX, *, seq: int = 78, width: int = 4
) -> str:
    """``cdr_name`` under ``prefix`` (the source prefix unless told)."""
    return prefix + cdr_name(n, date, hour, seq=seq, width=width)


def rule(bucket: str) -> dict[str, str]:
    """The config elements of the segregation rule for ``bucket``: pattern, format and the three prefixes."""
    return {
        "match_pattern": CDR_PATTERN,
        "datetime_format": DATETIME_FORMAT,
        "s3_dir": f"s3://{bucket}/{SOURCE_PREFIX}",
        "s3_segregated_dir": f"s3://{bucket}/{SEGREGATED_PREFIX}",
        "s3_error_dir": f"s3://{bucket}/{ERROR_PREFIX}",
    }


def config_xml(values: Mapping[str, object]) -> str:
    """A ``<config>`` document, one element per item (text escaped); items whose value is None are left out."""
    body = "".join(f"  <{k}>{_xml_escape(str(v))}</{k}>\n" for k, v in values.items() if v is not None)
    return f"<config>\n{body}</config>\n"


def write_config(path: Path | str, *, bucket: str, endpoint: str | None = None, **extra: object) -> Path:
    """A config file at ``path`` with the rule for ``bucket`` and ``log_file`` next to it; ``endpoint`` sets
    ``endpoint_url``; ``extra`` adds or overrides elements (``None`` removes one, ``match_pattern=None`` too)."""
    path = Path(path)
    values: dict[str, object] = {"log_file": str(path.parent / "s3seg.log"), **rule(bucket)}
    if endpoint:
        values["endpoint_url"] = endpoint
    values.update(extra)
    path.write_text(config_xml(values), encoding="utf-8")
    return path


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
