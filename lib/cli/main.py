"""The ``liftlake`` command: ``liftlake <job> [args]`` runs ``jobs/<job>.py`` with the same arguments
that ``spark-submit jobs/<job>.py`` takes."""
from __future__ import annotations

import importlib
import os
import sys

from liftlake.lib.cli import warm_driver

JOBS = {
    "quickstart": ("quickstart", "simulate -> features -> labels -> train -> score, then print the tables"),
    "simulate": ("simulate", "write the simulator's raw logs and ground truth for a day or range"),
    "build-features": ("build_features", "raw logs -> features.samples / features.user_samples / ops.quarantine"),
    "escim-labels": ("escim_labels", "ESCIM counterfactual labels -> labels.escim_counterfactual"),
    "train": ("train", "train a model (local, horovod or torch-distributor launcher) into the model store"),
    "evaluate": ("evaluate", "evaluate a model version against the truth -> ops.model_metrics"),
    "score": ("score", "batch-score a day -> scores.cvr / scores.uplift_user"),
    "report": ("report", "the evidence report (Markdown + PNG) under reports/"),
    "sql": ("sql", "run Spark SQL over the warehouse tables"),
    "sql-server": ("sql_server", "Spark's Thrift JDBC/ODBC server over the warehouse tables (loopback, read-only)"),
    "tables": ("tables", "list tables, versions and rows per partition"),
    "models": ("models", "list the registered models; --versions: trained versions and aliases, --history: promotions"),
    "promote": ("promote", "make a model version the champion (CURRENT), the one scoring uses"),
    "rollback": ("rollback", "the champion goes back to the one before it"),
    "repair": ("repair", "finish table batches of jobs killed between their commits (_commits/ manifests)"),
    "driver": ("driver", "a warm Spark driver for a pipeline run: steps sent with LIFTLAKE_DRIVER=SOCKET run in it"),
    "housekeeping": ("housekeeping", "compact small Delta files; remove unreferenced ones, stale staging, old caches, checkpoints"),
}


def usage() -> str:
    lines = ["usage: liftlake <job> [--ds YYYY-MM-DD | --start D --end D] [--conf FILE]... [--set key=value]...",
             "       liftlake --version",
             "", "jobs:"]
    lines += [f"  {name:<15} {text}" for name, (_, text) in JOBS.items()]
    lines += ["", "`liftlake <job> --help` lists a job's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from liftlake import __version__

        print(f"liftlake {__version__}")
        return 0
    job, rest = argv[0], argv[1:]
    if job not in JOBS:
        print(f"liftlake: error: unknown job {job!r}\n\n{usage()}", file=sys.stderr)
        return 2
    driver = os.environ.get(warm_driver.DRIVER_ENV)
    if driver and job in warm_driver.SERVED_JOBS:
        code = warm_driver.run_step(driver, argv)
        if code is not None:
            return code
        print(f"liftlake {job}: warning: no warm driver answers at {warm_driver.DRIVER_ENV}={driver}; "
              "running the step in this process", file=sys.stderr)
    try:
        module = importlib.import_module(f"liftlake.jobs.{JOBS[job][0]}")
    except ModuleNotFoundError as exc:
        if exc.name == f"liftlake.jobs.{JOBS[job][0]}":
            print(f"liftlake: error: job {job!r} is not available in this build", file=sys.stderr)
            return 2
        raise
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
