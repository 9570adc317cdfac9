"""Packaging for s3seg. The version lives in s3seg/__init__.py only."""

from __future__ import annotations

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "s3seg" / "__init__.py").read_text(), re.M)
assert VERSION, "version not found in s3seg/__init__.py"

setup(
    name="s3seg",
    version=VERSION.group(1),
    description="Move S3 objects into date-named prefixes: plan, review, apply, roll back; never lose one.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    # s3seg_lab (local stores, proxies, benchmark) is test/demo/benchmark tooling: never shipped.
    packages=find_packages(exclude=["tests", "tests.*", "s3seg_lab", "s3seg_lab.*"]),
    package_data={"s3seg": ["*.xsd", "py.typed"]},
    include_package_data=True,
    install_requires=[
        # IfNoneMatch on CopyObject (conditional copy) is in the botocore model from the 1.40 line on.
        "boto3>=1.40",
        "lxml>=5.2",
        "tqdm>=4.60",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "moto[server]>=5.1",
        ],
        "demo": ["moto[server]>=5.1"],
        "dask": ["dask[distributed]>=2024.1"],
        # Parquet and ORC S3 Inventory reports (plan --inventory); CSV needs nothing. 14.0.1: CVE-2023-47248 fix.
        "inventory": ["pyarrow>=14.0.1"],
        "dev": ["mypy>=1.10", "ruff>=0.6", "boto3-stubs[s3]", "lxml-stubs", "types-tqdm"],
    },
    entry_points={"console_scripts": ["s3seg = s3seg.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Operating System :: POSIX",
        "Environment :: Console",
        "Topic :: System :: Archiving",
    ],
)
