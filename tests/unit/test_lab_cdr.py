"""``s3seg_lab.cdr``: the names and the config the tests, the demo and the benchmarks share."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from s3seg import config
from s3seg_lab.cdr import CDR_PATTERN, DATETIME_FORMAT, cdr_key, cdr_name, config_xml, write_config


def test_a_cdr_name_carries_its_number_date_hour_and_sequence() -> None:
    assert cdr_name(7) == "CHARGINGCDR_4008-BRCCNH-CCNCDR44-01-Blk0Blk-0007-20221231-100511-78.ccn"
    assert cdr_name(123, "20230101", 5, seq=3, width=7).endswith("-0000123-20230101-050511-03.ccn")
    assert cdr_key(1, prefix="in/") == "in/" + cdr_name(1)


def test_the_config_is_one_s3seg_loads_and_its_pattern_reads_a_names_date_and_hour(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.xml", bucket="cdr-bucket", endpoint="http://127.0.0.1:9", n_loops=0)
    config.load(str(path))  # valid against the XSD and s3seg's own checks
    match = re.match(CDR_PATTERN, cdr_name(1, "20221230", 23))
    assert match is not None
    assert datetime.strptime("".join(match.groups()), DATETIME_FORMAT) == datetime(2022, 12, 30, 23)


def test_none_leaves_an_element_out_and_text_is_escaped() -> None:
    xml = config_xml({"match_pattern": None, "s3_dir": "s3://b/a&b<c>/"})
    assert "match_pattern" not in xml
    assert "<s3_dir>s3://b/a&amp;b&lt;c&gt;/</s3_dir>" in xml
