"""The files and text made from an extraction's :class:`~side_core.report.Report`: report.json (stable
shape), report.md (the table and the paragraphs after it), a CSV of the table, and a PNG of the best
extractions next to their nearest training images."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from side_core.images import save_png
from side_core.inspection import Pairs, extraction_grid
from side_core.metrics import BAND_NAMES
from side_core.report import Report
from side_core.store import write_json, write_text
from side_core.whole_run import whole_run_text


def timings_text(timings: dict[str, dict[str, Any]]) -> list[str]:
    """report.md's lines on where and when its timings were measured, stages of one machine and store
    together."""
    groups: dict[tuple, list[str]] = {}
    times: dict[tuple, list[str]] = {}
    for what, source in timings.items():
        made = source["made"]
        machine = None
        if made is not None:
            machine = (made["host"], made["cpu"], made["cores"], made["threads"], made["device"], made["torch"])
        key = (source["store"], source["read_only"], machine)
        groups.setdefault(key, []).append(what)
        if made is not None:
            times.setdefault(key, []).append(made["at"])
    lines = []
    for (store, read_only, machine), names in groups.items():
        where = f"the read-only store `{store}`" if read_only else f"the run store `{store}`"
        if machine is None:
            told = f"reused from {where}, which does not record where or when they were measured"
        else:
            host, cpu, cores, threads, device, torch_version = machine
            stamps = [at.replace("T", " ").replace("+00:00", " UTC") for at in times[(store, read_only, machine)]]
            first, last = min(stamps), max(stamps)
            when = f"at {first}" if first == last else f"between {first} and {last}"
            verb = "reused from" if read_only else "stored in"
            told = (
                f"measured on `{host}` ({cpu}, {cores} cores, {threads} torch thread{'s' * (threads != 1)}, "
                f"device {device}, torch {torch_version}) {when}, {verb} {where}"
            )
        lines.append(f"- {', '.join(names)}: {told}.")
    return lines


def markdown_table(report: Report | dict) -> str:
    """The table of :meth:`Report.rows` (AMS/UMS in percent, p95, distinct extractions, every sample
    each method drew, distinct per 1,000 drawn, the share of guided samples that landed in their
    target class, and the Filter baseline on the pool, where the report has it); '-': no value."""
    head = (
        ["method", "N_G"]
        + [f"AMS {b}" for b in BAND_NAMES]
        + [f"UMS {b}" for b in BAND_NAMES]
        + ["p95", "distinct (high)", "samples drawn in all", "distinct per 1,000 drawn", "landed in target"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in Report.of(report).rows():

        def cell(key: str, form: str = "{}", row: dict = row) -> str:
            return "-" if row[key] is None else form.format(row[key])

        n_g = f"{row['flagged']} flagged" if row["flagged"] is not None else cell("n_generated")
        cells = [row["method"], n_g]
        cells += [cell(f"{metric}_{b}", "{:.2f}") for metric in ("ams", "ums") for b in BAND_NAMES]
        cells += [cell("p95", "{:.3f}"), cell("distinct_high"), cell("drawn_in_all")]
        cells += [cell("distinct_per_1000_drawn", "{:.1f}"), cell("landed_in_target_percent", "{}%")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_json(report: Report) -> str:
    """report.json's text: the report with its ratios."""
    return json.dumps(report.to_json(), indent=2)


def report_csv(report: Report) -> str:
    """The table as CSV, one row per method (``Report.rows``)."""
    rows = report.rows()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["method"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def reach_text(reach: dict[str, dict]) -> str:
    """How many images plain sampling reaches, as the pool shows it (side_core.surrogate.Surrogate.reach), and an
    attacker's stopping rule from it."""
    a, s = reach["attacker"], reach["scorer"]
    rule = "keep sampling" if a["new_per_1000"] >= 1 else "stop: more samples would rarely show a new image"
    return (
        f"Reach, from the {a['n_samples']}-sample pool: the attacker sees {a['found']} images drawn three or more "
        f"times (near-identical groups) and estimates {a['estimate']:.0f} reachable, with about "
        f"{a['new_per_1000']:.1f} new finds per 1,000 more samples ({rule}); the scorer counts {s['found']} "
        f"images copied, of a Chao1 estimate of {s['estimate']:.0f}."
    )


def findings(report: Report) -> list[str]:
    """The paragraphs after the table (report.md, the command line): the whole run, what it found beyond
    the pool, and the reach of plain sampling."""
    out = [whole_run_text(report.whole_run)] if report.whole_run is not None else []
    if report.extra.get("reach"):
        out.append(reach_text(report.extra["reach"]))
    return out


def write_report(report: Report | dict, out: str | Path, command: str, pairs: dict[str, Pairs]) -> None:
    """Write report.json, report.md and extractions.png into ``out``; ``pairs`` are each method's
    best distinct extractions (:func:`best_pairs`)."""
    out = Path(out)
    typed = Report.of(report)
    report = {**typed.to_json(), "command": command}
    write_json(out / "report.json", report)
    bands = report["similarity"]["bands"]
    band_text = ", ".join(f"{b} [{lo:.3f}, {'1' if hi is None else f'{hi:.3f}'})" for b, (lo, hi) in bands.items())
    md = [
        "# SIDE extraction report",
        "",
        f"Command: `{command}`",
        "",
        f"Model: {report['model']['source']}; data: {report['data']['source'] if report['data'] else '-'}",
        f"Similarity: {report['similarity']['name']} ({report['similarity']['preprocessing']}); bands: {band_text}",
        "",
        markdown_table(typed),
        "",
        "AMS and UMS in percent of N_G. Distinct = training images with some sample in the high band.",
    ]
    for paragraph in findings(typed):
        md += ["", paragraph]
    if typed.extra.get("timings"):
        md += ["", "Where and when the timings were measured:", "", *timings_text(typed.extra["timings"])]
    if report["ratios"]:
        md += ["", "Ratios: " + ", ".join(f"{k} = {v}" for k, v in report["ratios"].items())]
    write_text(out / "report.md", "\n".join(md) + "\n")
    save_png(extraction_grid(pairs), out / "extractions.png")
