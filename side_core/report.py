"""Writing an extraction report: report.json (stable shape), report.md (the table), and a PNG of the
best extractions next to their nearest training images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from side_core.images import grid, save_png, to_uint8, upscale_nearest
from side_core.metrics import BAND_NAMES
from side_core.store import write_json, write_text


def markdown_table(report: dict) -> str:
    """The AMS/UMS table (percent), p95 and distinct extractions, one row per method."""
    head = (
        ["method", "N_G"]
        + [f"AMS {b}" for b in BAND_NAMES]
        + [f"UMS {b}" for b in BAND_NAMES]
        + ["p95", "distinct (high)"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, m in report["methods"].items():
        cells = [method, str(m["n_generated"])]
        cells += [f"{m['ams'][b]:.2f}" for b in BAND_NAMES] + [f"{m['ums'][b]:.2f}" for b in BAND_NAMES]
        cells += [f"{m['p95']:.3f}", str(len(m["extracted"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(report: dict) -> dict[str, float | None]:
    """SIDE over each baseline, for high-band AMS and distinct extractions (None if undefined)."""
    methods = report["methods"]
    out: dict[str, float | None] = {}
    if "side" not in methods:
        return out
    side = methods["side"]
    for base in ("uncond", "cond"):
        if base in methods:
            b = methods[base]
            out[f"ams_high_side_over_{base}"] = _ratio(side["ams"]["high"], b["ams"]["high"])
            out[f"distinct_side_over_{base}"] = _ratio(len(side["extracted"]), len(b["extracted"]))
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def write_report(
    report: dict, out: str | Path, command: str, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> None:
    """Write report.json, report.md and extractions.png into ``out``.

    ``pairs`` maps a method to (generated, training) float images (n, C, H, W) of its best distinct
    extractions, best first.
    """
    out = Path(out)
    report = {**report, "ratios": ratios(report), "command": command}
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
        markdown_table(report),
        "",
        "AMS and UMS in percent of N_G. Distinct = training images with some sample in the high band.",
    ]
    if report["ratios"]:
        md += ["", "Ratios: " + ", ".join(f"{k} = {v}" for k, v in report["ratios"].items())]
    write_text(out / "report.md", "\n".join(md) + "\n")
    save_png(extraction_grid(pairs), out / "extractions.png")


def extraction_grid(
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], per_row: int = 8, scale: int = 4
) -> np.ndarray:
    """One row per method: (generated | training) pairs side by side, upscaled, with a label."""
    from PIL import Image, ImageDraw

    rows = []
    for method, (generated, training) in pairs.items():
        n = min(per_row, len(generated))
        if n:
            tiles = to_uint8(torch.stack([im for i in range(n) for im in (generated[i], training[i])]))
            tiles = np.repeat(tiles, 3, axis=-1) if tiles.shape[-1] == 1 else tiles
            row = grid(upscale_nearest(tiles, scale), n_cols=2 * per_row, pad=2)
        else:
            row = np.full((40, 200, 3), 255, np.uint8)
        label = Image.new("RGB", (90, row.shape[0]), "white")
        ImageDraw.Draw(label).text((6, row.shape[0] // 2 - 6), method, fill="black")
        rows.append(np.concatenate([np.asarray(label), row], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)
