"""The top of reports/bench.md: every target of issue 20 beside what its section's last run measured,
gathered from the sections' JSON files beside the report (<report>-<section>.json), so the summary is
never older than the sections under it. Rewritten whenever a section is, and by ``--render``, which
rebuilds the whole report from those JSON files without measuring anything."""
from __future__ import annotations

import json
import os

from bench.run import backends, cluster, dag, features, gpu, scoring, simulate, training
from bench.run.common import replace_section, section_json, section_name, verdict

BEGIN, END = "<!-- bench.run summary: begin -->", "<!-- bench.run summary: end -->"
WITH_TARGETS = (features, dag, simulate, scoring, training, gpu)  # in the order
# every section, in the report's order (a section the report lacks goes before "## Targets of earlier issues")
SECTIONS = (features, cluster, backends, scoring, training, gpu, dag, simulate)


def section_data(path: str, module) -> dict | None:
    """{"info": ..., <name>: results} of ``module``'s last run, as written beside the report at ``path``."""
    json_path = section_json(path, module)
    if not os.path.exists(json_path):
        return None
    with open(json_path, encoding="utf-8") as fh:
        return json.load(fh)


def summary(path: str) -> list[str]:
    rows, met, measured = [], 0, 0
    for module in WITH_TARGETS:
        name, data = section_name(module), section_data(path, module)
        if data is None:
            rows.append(f"| {name}: not measured yet | - | - | `--only {name}` |")
            continue
        found = module.targets(data[name])
        for t in found:
            rows.append(f"| {t.what} | {t.measured} | {verdict(t.met)} | {name}, {data['info']['started'][:10]} |")
            met, measured = met + t.met, measured + 1
        if module is gpu and not found:
            rows.append(f"| training and scoring on a GPU (`use_gpu`, NCCL), throughput beside the CPU's | not "
                        f"measured: {gpu.not_measured(data[name])} (nothing here requires one) | - | "
                        f"{name}, {data['info']['started'][:10]} |")
    return [BEGIN, "## Summary: the targets of issue 20, each from its section's last run", "",
            "Each row is a ratio measured within one run of its section (the section below says how, on which "
            "machine, and the command that regenerates it); the sections run on their own "
            "(`python -m bench.run --only <section>`) or all in one go (`python -m bench.run`), and this table is "
            f"rewritten from their JSON files whenever one of them is. {met} of {measured} measured targets met.",
            "", "| target | measured | | section, run on |", "|---|---|---|---|", *rows, END, ""]


def write_summary(path: str) -> None:
    """The summary into the report at ``path``: in place of the previous one, or under the title."""
    block = "\n".join(summary(path))
    text = open(path, encoding="utf-8").read()
    if BEGIN not in text:
        title, _, rest = text.partition("\n")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"{title}\n\n{block}\n{rest.lstrip(chr(10))}")
        return
    replace_section(path, block, BEGIN, END)


def render(path: str) -> str:
    """The report at ``path`` rebuilt from the JSON files beside it: the full run's tables (<report>.json),
    every section's, the summary. Nothing is measured."""
    from bench.run.report import write_report

    full = os.path.splitext(path)[0] + ".json"
    if os.path.exists(full):
        with open(full, encoding="utf-8") as fh:
            data = json.load(fh)
        write_report(path, data["info"], data["pipeline"], data["training"], data["scoring"])
    for module in SECTIONS:
        data = section_data(path, module)
        if data is not None:
            replace_section(path, "\n".join(module.section(data[section_name(module)], data["info"])),
                            module.BEGIN, module.END)
    write_summary(path)
    return path
