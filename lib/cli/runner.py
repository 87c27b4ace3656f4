"""What every job shares: the command-line contract, the resolved config print, exit codes.

``liftlake <job> [--ds D | --start D --end D] [--conf FILE]... [--set key.path=value]...``
Exit codes: 0 done; 2 bad input or configuration (one line on stderr); 1 an internal failure.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from liftlake.lib.config import Config, ConfigError, load_config, warehouse_path
from liftlake.lib.log import LEVELS, configure

logger = logging.getLogger(__name__)


class InputError(ValueError):
    """Input data that breaks a rule the job cannot work around (names table, column and rule)."""


@dataclass
class JobContext:
    name: str
    config: Config
    args: argparse.Namespace
    days: list[str] = field(default_factory=list)
    # set by a job body before it touches ``spark``: start the session with the Delta jars even where
    # warehouse.backend does not ask for them (``liftlake sql --engine spark`` reads Spark's catalog
    # of Delta tables); the store keeps the backend's choice (auto: delta-rs, spark.py DELTA_ON_REQUEST)
    delta_jars_on_request: bool = False
    # set by a job body before it touches ``spark``: settings the JVM must start with (the sql-server's
    # class path and parser extension); they win over spark.conf of the config
    session_conf: dict[str, str] = field(default_factory=dict)
    _spark: object = None
    _store: object = None

    @property
    def spark(self):
        if self._spark is None:
            settings = self.session_settings()
            if _warm is not None:
                self._spark = _warm_session_for(settings)
            else:
                from liftlake.lib.storage.spark import build_session

                self._spark = build_session(f"{self.config.spark.app_name}-{self.name}", **settings)
                self._spark.sparkContext.setLogLevel("WARN")
        return self._spark

    def session_settings(self) -> dict:
        """What the session this job asks for starts with: master, conf and whether the Delta jars load."""
        from liftlake.lib.storage.spark import owner_decides_delta

        cfg = self.config.spark
        # delta-spark starts the JVM with the Delta jars; delta-rs without; auto leaves it to
        # LIFTLAKE_DELTA_SPARK or to the cluster (spark-submit --jars, a Delta runtime)
        delta_jars = {"delta-spark": True, "delta-rs": False}.get(self.config.warehouse.backend)
        if self.delta_jars_on_request and (delta_jars is False
                                           or (delta_jars is None and not owner_decides_delta())):
            # on request: build_session marks the session so, and the store keeps its backend
            # (delta-rs, also for auto); a session that spark-submit or LIFTLAKE_DELTA_SPARK
            # decides is left as it is
            delta_jars = True
        return {"master": _master(cfg.master), "conf": {**cfg.conf, **self.session_conf}, "delta_jars": delta_jars}

    @property
    def store(self):
        if self._store is None:
            from liftlake.lib.storage.store import open_store

            self._store = open_store(self.spark, warehouse_path(self.config), self.config.warehouse.backend)
        return self._store

    def store_needs_session(self) -> bool:
        """Whether this job's store is the session's to decide: a session is up (a warm driver's, or this
        job's), ``warehouse.backend`` is delta-spark, or it is auto and Delta may come with the session
        (spark-submit's or LIFTLAKE_DELTA_SPARK's choice, Delta in ``spark.conf``). Otherwise the store
        is delta-rs, which needs no session."""
        from liftlake.lib.storage.spark import owner_decides_delta

        backend = self.config.warehouse.backend
        if self._spark is not None or _warm is not None or backend == "delta-spark":
            return True
        conf_loads_delta = any("delta" in str(value).lower() for value in self.config.spark.conf.values())
        return backend == "auto" and (owner_decides_delta() or conf_loads_delta)

    @property
    def store_for_arrow_rows(self):
        """The store of a job that computes its rows itself and writes them as Arrow (simulate): delta-rs
        on the Delta logs alone, with no JVM started for it, unless ``store_needs_session``."""
        from liftlake.lib.storage.store import DeltaRsStore

        if self._store is None and not self.store_needs_session():
            self._store = DeltaRsStore(None, warehouse_path(self.config))
        return self.store


# The warm driver's session (lib/cli/warm_driver.py) and the settings it started with: a step run in
# the driver gets it when it asks for the same settings (the JVM's are fixed when it starts).
_warm: tuple[dict, object] | None = None


def hold_warm_session(ctx: JobContext) -> object:
    """Start ``ctx``'s session and make it the one every later job of this process runs in."""
    global _warm
    spark = ctx.spark
    _warm = (_resolved(ctx.session_settings()), spark)
    return spark


def _resolved(settings: dict) -> dict:
    from liftlake.lib.storage.spark import delta_jars_by_default

    if settings["delta_jars"] is None:  # build_session's rule
        return {**settings, "delta_jars": delta_jars_by_default()}
    return settings


def _warm_session_for(asked: dict) -> object:
    assert _warm is not None
    held, spark = _warm

    def flat(settings: dict) -> dict:
        return {"master": settings["master"], "delta_jars": settings["delta_jars"],
                **{f"spark.conf.{k}": v for k, v in settings["conf"].items()}}

    want, have = flat(_resolved(asked)), flat(held)
    for key in ["master", "delta_jars", *sorted((set(want) | set(have)) - {"master", "delta_jars"})]:
        if want.get(key) != have.get(key):
            raise ConfigError(f"{key}: this step asks for {want.get(key)!r}, the warm driver runs with "
                              f"{have.get(key)!r}; start the driver with the step's settings or run the step "
                              "without LIFTLAKE_DRIVER (rule: a driver's session settings are fixed when it starts)")
    return spark


def _master(configured: str) -> str | None:
    # Under spark-submit the master given on its command line wins over the config file.
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        return None
    return configured


def parse_day(text: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag} {text}: expected a day as YYYY-MM-DD") from None


def day_range(args: argparse.Namespace, default_end: str | None = None, default_days: int = 1) -> list[str]:
    if args.ds and (args.start or args.end):
        raise ConfigError("--ds and --start/--end: give one day or one range, not both")
    if args.ds:
        return [parse_day(args.ds, "--ds").isoformat()]
    if args.start or args.end:
        if not (args.start and args.end):
            raise ConfigError("--start and --end go together")
        start, end = parse_day(args.start, "--start"), parse_day(args.end, "--end")
        if end < start:
            raise ConfigError(f"--end {end} is before --start {start}")
        return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    if default_end:
        end = parse_day(default_end, "default end")
        return [(end - dt.timedelta(days=default_days - 1 - i)).isoformat() for i in range(default_days)]
    return []


def base_parser(job: str, description: str, days: bool = True, model_flag: bool = False,
                json_flag: bool = False) -> argparse.ArgumentParser:
    """The flags every job shares; ``--ds / --start / --end``, ``--model`` and ``--json`` only on the
    jobs that use them (``--help`` lists no flag a job ignores)."""
    parser = argparse.ArgumentParser(prog=f"liftlake {job}", description=description)
    parser.set_defaults(model=None, json=False)
    if days:
        parser.add_argument("--ds", help="the day to process, YYYY-MM-DD")
        parser.add_argument("--start", help="first day of a range, YYYY-MM-DD")
        parser.add_argument("--end", help="last day of a range, YYYY-MM-DD")
    parser.add_argument("--conf", action="append", default=[], metavar="FILE",
                        help="a YAML file layered over conf/ (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override one setting, e.g. --set train.epochs=2 (repeatable)")
    if model_flag:
        parser.add_argument("--model", help="shortcut for --set model.name=NAME")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="machine-readable output, one JSON object a line")
    parser.add_argument("--quiet-config", action="store_true",
                        help="do not log the resolved config even at --log-level DEBUG")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a failure (and log at DEBUG)")
    parser.add_argument("--log-level", choices=LEVELS, default=os.environ.get("LIFTLAKE_LOG_LEVEL", "INFO"),
                        help="the platform's log level (default INFO, or LIFTLAKE_LOG_LEVEL); DEBUG adds the resolved config")
    return parser


def run_job(
    job: str,
    description: str,
    body: Callable[[JobContext], int | None],
    argv: list[str] | None = None,
    days: bool = True,
    extend_parser: Callable[[argparse.ArgumentParser], None] | None = None,
    default_days_from_quickstart: bool = False,
    uses_model: bool = False,
    uses_labeler: bool = False,
    model_flag: bool = False,
    json_output: bool = False,
) -> int:
    """Parse, load and print the config, run ``body``; map failures onto the exit-code contract.
    ``uses_model``: the job reads a model's settings (checked on load; ``uses_labeler``: the ESCIM
    labeler's, implied by ``uses_model``); ``model_flag``: it takes
    ``--model NAME`` (one model: train, evaluate, score); ``json_output``: it prints JSON on ``--json``."""
    parser = base_parser(job, description, days=days, model_flag=model_flag, json_flag=json_output)
    if extend_parser:
        extend_parser(parser)
    args = parser.parse_args(argv)
    configure("DEBUG" if args.debug else args.log_level)
    started = time.time()
    ctx = None
    try:
        overrides = list(args.overrides)
        if args.model:
            overrides.append(f"model.name={args.model}")
        config = load_config(args.conf, overrides, check_model=uses_model,
                             check_labeler=uses_model or uses_labeler)
        ctx = JobContext(name=job, config=config, args=args)
        if days:
            q = config.quickstart
            ctx.days = day_range(args, q.end if default_days_from_quickstart else None, q.days)
            if len(ctx.days) > config.limits.max_days_per_run:
                raise ConfigError(f"--start {ctx.days[0]} --end {ctx.days[-1]}: {len(ctx.days)} days is past "
                                  f"limits.max_days_per_run ({config.limits.max_days_per_run})")
        if not args.quiet_config:
            logger.debug(f"{job}: resolved config\n{config.dump()}")
        code = body(ctx) or 0
    except (ConfigError, InputError) as exc:
        print(f"liftlake {job}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the contract: anything else is an internal failure
        from liftlake.lib.artifacts.model_store import ArtifactError
        from liftlake.lib.storage.store import TableError
        from liftlake.models.base import BadBatchError
        from liftlake.models.registry import ModelConfigError

        if isinstance(exc, (TableError, ModelConfigError, BadBatchError, ArtifactError)):
            print(f"liftlake {job}: error: {exc}", file=sys.stderr)
            return 2
        if args.debug:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"liftlake {job}: internal failure: {type(exc).__name__}: {first}"
              + ("" if args.debug else " (--debug prints the traceback)"), file=sys.stderr)
        return 1
    logger.info(f"{job}: done in {time.time() - started:.1f}s")
    return int(code)
