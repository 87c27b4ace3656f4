"""The dag section of bench.run (issue 20): the daily DAG's steps for a day, four ways, on one
warehouse that already holds two days (the feature spec fitted, a DCMT champion to score with), so each
way re-runs the same work:

* cold per step   every step of the day its own ``liftlake <step>`` process (what the DAG does with
                  LIFTLAKE_WARM_DRIVER=0: one JVM start and warm-up per step);
* warm driver     a driver's first run: ``liftlake driver`` started (its start counted), then every
                  step of the day sent to it (``LIFTLAKE_DRIVER``; lib/cli/warm_driver.py);
* kept driver     the next run on the driver the first left up (the DAG's default,
                  LIFTLAKE_DRIVER_KEEP): the next day's steps sent to the same driver;
* warm session    the first day's steps once more in that driver: the floor of the same steps in
                  one warm session.

Each step's wall seconds and the CPU seconds of the whole process tree (the bench, the step's
process, the driver and its Python workers); the target is the DAG's day within 1.5x of the warm
session's, for a driver's first run and for a run on a kept driver. ``python -m bench.run --only dag`` measures this section alone and rewrites only its
part of the report.
"""
from __future__ import annotations

import os
import subprocess
import sys

from bench.run.common import Target, TreeCPU, target_rows

DS = "2026-11-20"
NEXT_DS = "2026-11-21"  # the kept driver's run: the next day, the same size
BEGIN, END = "<!-- bench.run dag: begin -->", "<!-- bench.run dag: end -->"
STEPS = ("simulate", "build-features", "escim-labels", "score", "tables")
TARGET_WARM_VS_SESSION = 1.5
MODES = ("cold per step", "warm driver", "kept driver", "warm session")


def step_env(warehouse: str) -> dict:
    """The environment of a step's ``liftlake`` process: this one's without any LIFTLAKE_ setting (no
    warm driver, no other warehouse or config layer), the step writing into ``warehouse``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LIFTLAKE_")},
            "LIFTLAKE_WAREHOUSE": warehouse, "PYARROW_IGNORE_TIMEZONE": "1"}


def run_liftlake(args: list[str], env: dict) -> None:
    proc = subprocess.run([sys.executable, "-m", "liftlake.lib.cli.main", *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"liftlake {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")


def step_args(step: str, size: int, ds: str = DS) -> list[str]:
    day = [] if step == "tables" else ["--ds", ds]
    return [step, *day, "--set", f"simulator.exposures={size}", "--quiet-config"]


def _timed_steps(env: dict, size: int, log, ds: str = DS) -> dict:
    out = {}
    for step in STEPS:
        log(f"[bench] dag section: {step} {ds}")
        with TreeCPU() as cpu:
            run_liftlake(step_args(step, size, ds), env)
        out[step] = {"wall_s": cpu.wall, "cpu_s": cpu.cpu}
    return out


def bench_dag(size: int, root: str, log=print) -> dict:
    from liftlake.lib.cli import warm_driver

    warehouse = os.path.join(root, f"wh-dag-{size}")
    env = step_env(warehouse)
    log(f"[bench] dag section: preparing two days ({size:,} exposures each) and a DCMT champion")
    for ds in (DS, NEXT_DS):
        for step in STEPS[:3]:
            run_liftlake(step_args(step, size, ds), env)
    run_liftlake(["train", "--ds", DS, "--model", "dcmt", "--set", "train.epochs=1", "--set", "train.gate_min_cvr=0",
                  "--quiet-config"], env)
    load_before = os.getloadavg()[0]
    result: dict = {"exposures": size, "load_before": load_before}
    result["cold per step"] = _timed_steps(env, size, log)

    sock = warm_driver.socket_for(f"bench-dag-{root}-{size}")
    log("[bench] dag section: starting the warm driver")
    with TreeCPU() as start_cpu:
        driver = subprocess.Popen([sys.executable, "-m", "liftlake.lib.cli.main", "driver", "--socket", sock,
                                   "--idle-timeout", "900"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        if not warm_driver.wait_until_serving(sock, driver, timeout_s=600):
            raise RuntimeError(f"the warm driver did not answer (exit {driver.poll()})")
    try:
        driven = {**env, warm_driver.DRIVER_ENV: sock}
        result["driver start"] = {"wall_s": start_cpu.wall, "cpu_s": start_cpu.cpu}
        result["warm driver"] = _timed_steps(driven, size, log)
        result["kept driver"] = _timed_steps(driven, size, log, NEXT_DS)
        result["warm session"] = _timed_steps(driven, size, log)
    finally:
        warm_driver.stop(sock)
        driver.wait(timeout=120)
    result["load_after"] = os.getloadavg()[0]
    for mode in MODES:
        result[mode]["day"] = {k: sum(result[mode][s][k] for s in STEPS) for k in ("wall_s", "cpu_s")}
    warm_day = result["warm driver"]["day"]
    result["warm driver"]["day"] = {k: warm_day[k] + result["driver start"][k] for k in warm_day}
    return result


def section(results: list[dict], info: dict) -> list[str]:
    from bench.run.report import BILLION, WINDOW_S, fmt

    cores = info["machine"].get("cpus") or 1
    lines = [BEGIN, "## The daily DAG's day: cold per step, a fresh driver's run, a kept driver's run, one warm session",
             "",
             f"Measured {info['started']} by `{info['command']}` on {info['machine'].get('cpus', '?')} CPU cores. "
             f"The DAG's steps for a simulated day, re-run on a warehouse that already holds {DS} and {NEXT_DS} "
             "(spec fitted, a DCMT champion scoring them), each step as a `liftlake` command: cold, every step "
             f"of {DS} its own process (`LIFTLAKE_WARM_DRIVER=0`); warm driver, a driver's first run: its start "
             f"plus every step of {DS} sent to it; kept driver, the next run on the driver the first left up "
             f"(the DAG's default, `LIFTLAKE_DRIVER_KEEP=1`): the steps of {NEXT_DS}, as many exposures; warm "
             f"session, the steps of {DS} once more in that driver (the floor). Wall seconds, and CPU seconds "
             "of the whole process tree.", ""]
    for r in results:
        lines += [f"### {r['exposures']:,} exposures", "",
                  "| step | cold wall s | cold CPU s | warm driver wall s | CPU s | kept driver wall s | CPU s "
                  "| warm session wall s | CPU s |",
                  "|---|---|---|---|---|---|---|---|---|",
                  f"| driver start | - | - | {fmt(r['driver start']['wall_s'])} | {fmt(r['driver start']['cpu_s'])} "
                  "| - | - | - | - |"]
        for step in (*STEPS, "day"):
            label = "**the day**" if step == "day" else step
            cells = " | ".join(f"{fmt(r[m][step]['wall_s'])} | {fmt(r[m][step]['cpu_s'])}" for m in MODES)
            lines.append(f"| {label} | {cells} |")
        session = r["warm session"]["day"]
        warm, kept, cold = r["warm driver"]["day"], r["kept driver"]["day"], r["cold per step"]["day"]
        lines += ["", f"- Cold per step / warm session: {cold['wall_s'] / session['wall_s']:.2f} wall, "
                  f"{cold['cpu_s'] / session['cpu_s']:.2f} CPU; a fresh driver saves "
                  f"{cold['wall_s'] - warm['wall_s']:.0f} s of the day's wall, a kept one "
                  f"{cold['wall_s'] - kept['wall_s']:.0f} s.",
                  f"- Capacity at these figures (1B exposures a day in a {WINDOW_S // 3600}-hour window, the day's "
                  "steps in sequence, throughput per core as here): "
                  + "; ".join(f"{mode} {_cores_for_a_billion(r, mode, cores, BILLION / WINDOW_S):,.0f} cores"
                              for mode in MODES) + ".",
                  f"- Machine load (1-minute average): {r['load_before']:.2f} before, {r['load_after']:.2f} after.", ""]
    lines += ["A kept driver's run is the DAG's default after a driver's first run; a fresh driver's first run "
              "(its start included) is a first run, one after a deploy or a config change, or one after "
              "LIFTLAKE_DRIVER_IDLE_S without a step.", "", *target_rows(targets(results)), ""]
    lines += capacity_table(max(results, key=lambda r: r["exposures"]), cores)
    sizes = ",".join(str(r["exposures"]) for r in results)
    lines += [f"Regenerate: `.venv/bin/python -m bench.run --only dag --sizes {sizes}`.", END, ""]
    return lines


def targets(results: list[dict]) -> list[Target]:
    """The DAG's day on a kept driver's run, then on a fresh driver's first run, over the same steps in
    one warm session (wall; CPU beside it), at each size."""
    out = []
    for r in results:
        session = r["warm session"]["day"]
        for name, mode in (("a kept driver's run", "kept driver"), ("a fresh driver's first run", "warm driver")):
            day = r[mode]["day"]
            ratio = day["wall_s"] / session["wall_s"]
            out.append(Target(f"the DAG's day at {r['exposures']:,} on {name} <= {TARGET_WARM_VS_SESSION}x "
                              "the same steps in one warm session (wall)",
                              f"{ratio:.2f} wall, {day['cpu_s'] / session['cpu_s']:.2f} CPU",
                              ratio <= TARGET_WARM_VS_SESSION))
    return out


def capacity_table(result: dict, cores: int) -> list[str]:
    """Cores for a billion exposures a day in the window, per step, from the cold per-step figures (what
    a task pays when every step is its own process) beside a fresh and a kept driver's, at ``result``'s
    size."""
    from bench.run.report import BILLION, WINDOW_S, fmt

    size, need = result["exposures"], BILLION / WINDOW_S
    lines = [f"#### Capacity from the cold figures at {size:,} exposures", "",
             f"1B exposures a day in a {WINDOW_S // 3600}-hour window need {need:,.0f} exposures/s; per core = "
             f"exposures/s / {cores}. The fresh driver's column counts its start in the day's row only.", "",
             "| step | cold exposures/s | cold per core | cores, cold | cores, fresh driver | cores, kept driver |",
             "|---|---|---|---|---|---|"]
    for step in (*STEPS, "day"):
        cold = result["cold per step"][step]
        rate = size / cold["wall_s"]
        label = "**the day, steps in sequence**" if step == "day" else step
        driven = " | ".join(f"{need * result[mode][step]['wall_s'] * cores / size:,.1f}"
                            for mode in ("warm driver", "kept driver"))
        lines.append(f"| {label} | {fmt(rate)} | {fmt(rate / cores)} | {need / (rate / cores):,.1f} | {driven} |")
    return lines + [""]


def _cores_for_a_billion(result: dict, mode: str, cores: int, needed_per_s: float) -> float:
    per_core = result["exposures"] / result[mode]["day"]["wall_s"] / cores
    return needed_per_s / per_core
