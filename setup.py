"""One distribution, one import namespace: lib/, models/, jobs/ and conf/ import as liftlake.lib,
liftlake.models, liftlake.jobs and liftlake.conf through the symlinks in liftlake/, so the imports
resolve from the files alone (editors, type checkers) and nothing called ``lib`` or ``models`` lands
in site-packages. Versions are pinned in constraints.txt, which the setup script (tools/setup-env)
applies."""
import os
import re

from setuptools import find_packages, setup

# the version has one home, liftlake/__init__.py (what `liftlake --version` prints)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "liftlake", "__init__.py"), encoding="utf-8") as fh:
    VERSION = re.search(r'^__version__ = "([^"]+)"', fh.read(), re.M).group(1)

setup(
    name="liftlake",
    version=VERSION,
    description="Causal CTR / CVR and uplift models on Spark + Delta Lake",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["liftlake", "liftlake.*"]),
    package_data={"liftlake": ["py.typed"], "liftlake.conf": ["*.yaml"], "liftlake.conf.models": ["*.yaml"]},
    install_requires=[
        "pyspark>=4.0,<4.1",
        "pyarrow==14.0.2",
        "numpy>=1.26,<2",
        "pandas>=2.0,<2.3",
        "petastorm==0.12.1",
        "deltalake>=1.6,<1.7",
        # the Python side of the Delta jars pinned in delta-jars.txt (same version)
        "delta-spark>=4.0,<4.1",
        "torch==2.13.0",
        "pyyaml>=6",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "duckdb>=2.0,<2.1",  # `liftlake sql`'s default engine
    ],
    extras_require={
        "airflow": ["apache-airflow>=3.3,<3.4", "apache-airflow-providers-apache-spark>=6"],
        "test": ["pytest>=8", "hypothesis>=6.100", "scikit-uplift==0.5.1", "polars>=2.1,<2.2", "mypy>=2.4", "types-PyYAML"],
    },
    entry_points={"console_scripts": ["liftlake=liftlake.lib.cli.main:main"]},
)
