"""A class at once: N browser sessions against one app server, in real Chromium through Playwright.

    python -m benchmarks.load [--sessions 20] [--generators 5] [--per-browser 10] [--cold]

Starts one ``streamlit run app.py`` on a free port of 127.0.0.1 (headless, usage stats off) on the
bundled model, with the precomputed store and an empty writable run store. Then:

1. every session opens the app at once; its **first paint** is the time until the first page's
   content (the model's facts, which need the model loaded) is visible;
2. every session walks to the guided page;
3. ``--generators`` of them press Generate within one second, each with its own seed (the same
   request would be computed once and then read from the store), while the others stay connected.
   Each waiting tab's reported place in the queue is read off its page as it changes, and its
   **generate time** runs from the click to its results.

Writes ``load.json``: sessions, first_paint_s and generate_s as {p50, p95, max}; server_script_s,
what the server itself spends per session: each session's first script run, start to end, as the
app timed it (``SIDE_SCRIPT_TIMES``, app_support.state.timed_script_run), which the browsers'
own work does not enter; errors (sessions that saw an exception or timed out, with what happened),
the server's peak resident memory, and per generator the queue positions it was shown, whether they
were right (a tab shown place p is the p-th to finish: every session comes from this machine, one
visitor, whose jobs the queue serves first come first served), and whether it finished within p
times the single job's time plus 50%. Traffic goes to 127.0.0.1 only; the server is stopped at the end.
By default one session opens the app before the class does (as the teacher would, to check it);
``--cold`` skips that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.app_server import ServerDidNotStart, app_server
from benchmarks.provenance import add_output_flags, output_dir, provenance
from side_core.store import write_json

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync", "--no-first-run"]
HOST = "127.0.0.1"
START_TIMEOUT_S = 120  # the server answers its health check
PAINT_TIMEOUT_S = 300  # one session's first page, with the whole class loading at once on 2 cores
STEP_TIMEOUT_S = 300  # one session's walk to the guided page
GENERATE_TIMEOUT_S = 900  # the last of the queued jobs: a few minutes of sampling behind the others
POLL_S = 0.2  # how often a waiting tab's queue message is read
QUEUED = re.compile(r"Queued: position (\d+) of (\d+)")
RESULTS = re.compile(r"^Class \d+ at λ = ")


@dataclass
class Session:
    index: int
    first_paint_s: float | None = None
    generate_s: float | None = None
    positions: list[tuple[int, int]] = field(default_factory=list)  # (place, of) as shown, in order
    finished_at: float | None = None
    errors: list[str] = field(default_factory=list)


class MemoryWatch(threading.Thread):
    """The peak resident memory of a process and its children, sampled every half second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            with contextlib.suppress(psutil.Error):
                procs = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))


def summary(values: list[float]) -> dict[str, float | None]:
    """{p50, p95, max} in seconds (nearest-rank percentiles), or nulls when there are none."""
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"p50": round(statistics.median(ordered), 2), "p95": round(p95, 2), "max": round(ordered[-1], 2)}


def first_script_runs(lines: list[str], since: float) -> list[float]:
    """Seconds of each session's first script run that started at or after ``since`` (Unix time), from
    the lines the app appended to SIDE_SCRIPT_TIMES (one JSON object per run); a session whose first
    run started earlier (the warm-up visit) is left out."""
    first: dict[str, dict] = {}
    for line in lines:
        if line.strip():
            run = json.loads(line)
            if run["session"] not in first or run["start"] < first[run["session"]]["start"]:
                first[run["session"]] = run
    return [run["seconds"] for run in first.values() if run["start"] >= since]


def check_precomputed() -> None:
    """Stop before any work, with the fix, unless the bundled store holds what the guided page needs
    (the surrogate classes and SIDE's classifier): otherwise every session would find no Generate
    button, and the class would wait on minutes of training instead."""
    from app_support import jobs, state
    from side_core.data import load_training_set
    from side_core.models import BUNDLED_STORE, load_model
    from side_core.run import Run

    model = load_model("default", "cpu")
    data = load_training_set("default", model.channels, model.size)
    with tempfile.TemporaryDirectory() as empty:
        run = Run(empty, model, data, read_only_roots=(BUNDLED_STORE,))
        if jobs.surrogate(state.DEFAULT, ("side",)).stored(run) is None:
            raise SystemExit(
                "error: assets/store lacks the default surrogate classes or SIDE classifier, which the guided page "
                "needs: run `python -m side_core prepare --model default --store assets/store`."
            )


async def first_paint(page, url: str, session: Session) -> None:
    started = time.perf_counter()
    await page.goto(url, timeout=PAINT_TIMEOUT_S * 1000)
    await page.get_by_text("Image size").first.wait_for(timeout=PAINT_TIMEOUT_S * 1000)
    session.first_paint_s = time.perf_counter() - started


async def settle(page, timeout_s: float) -> None:
    """Wait out the script run (Streamlit shows its running indicator only after about half a second)."""
    indicator = page.locator('[data-testid="stStatusWidget"]')
    with contextlib.suppress(Exception):  # a quick run may never show it
        await indicator.wait_for(state="attached", timeout=1500)
    await indicator.wait_for(state="detached", timeout=timeout_s * 1000)


async def to_guided_page(page, session: Session, seed: int | None) -> None:
    await page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Guided extraction").click()
    await page.get_by_role("heading", name="Guided extraction", level=1).wait_for(timeout=STEP_TIMEOUT_S * 1000)
    await page.get_by_role("button", name="Generate").wait_for(timeout=STEP_TIMEOUT_S * 1000)
    await settle(page, STEP_TIMEOUT_S)
    if seed is not None:
        seed_field = page.get_by_label("Seed")
        await seed_field.fill(str(seed))
        await seed_field.press("Tab")  # commit the value; inside a form it waits for the submit


async def generate(page, session: Session, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    started = time.perf_counter()
    await page.get_by_role("button", name="Generate").click()
    results = page.get_by_role("heading", name=RESULTS, level=3)
    queued = page.get_by_text(QUEUED)
    deadline = started + GENERATE_TIMEOUT_S
    while not await results.count():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no results {GENERATE_TIMEOUT_S} s after Generate")
        with contextlib.suppress(Exception):  # the message may vanish between count and read
            if await queued.count():
                place = QUEUED.search(await queued.first.inner_text(timeout=1000))
                shown = (int(place.group(1)), int(place.group(2)))
                if not session.positions or session.positions[-1] != shown:
                    session.positions.append(shown)
        await asyncio.sleep(POLL_S)
    session.finished_at = time.perf_counter()
    session.generate_s = session.finished_at - started


async def guarded(session: Session, step: str, work) -> None:
    """Run one step of one session; a failure is that session's error, never the benchmark's."""
    try:
        await work
    except Exception as err:  # noqa: BLE001 - every failure of a session is a result to report
        session.errors.append(f"{step}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


async def drive(url: str, args: argparse.Namespace) -> tuple[list[Session], float]:
    """The sessions, and when (Unix time) the class began to open the app, after the warm-up visit."""
    from playwright.async_api import async_playwright

    sessions = [Session(i) for i in range(args.sessions)]
    async with async_playwright() as p:
        n_browsers = -(-args.sessions // args.per_browser)
        browsers = [
            await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS) for _ in range(n_browsers)
        ]
        try:
            if not args.cold:  # the teacher opens the app once before the class
                warm = await browsers[0].new_page()
                await first_paint(warm, url, Session(-1))
                await warm.context.close()
            tabs = []  # (session, its page), each page in its own browser context: its own Streamlit session
            for s in sessions:
                context = await browsers[s.index % n_browsers].new_context(viewport={"width": 1400, "height": 1000})
                tabs.append((s, await context.new_page()))
            class_opens = time.time()
            await asyncio.gather(*(guarded(s, "first paint", first_paint(pg, url, s)) for s, pg in tabs))
            await asyncio.gather(
                *(
                    guarded(s, "to the guided page", to_guided_page(pg, s, args.seed + s.index))
                    for s, pg in tabs
                    if not s.errors
                )
            )
            spread = 1.0 / max(args.generators, 1)  # every click within one second
            await asyncio.gather(
                *(
                    guarded(s, "generate", generate(pg, s, i * spread))
                    for i, (s, pg) in enumerate(tabs[: args.generators])
                    if not s.errors
                )
            )
            for s, pg in tabs:
                with contextlib.suppress(Exception):
                    shown = await pg.locator('[data-testid="stException"]').count()
                    if shown:
                        text = await pg.locator('[data-testid="stException"]').first.inner_text()
                        s.errors.append(f"exception shown: {text.splitlines()[0] if text else ''}")
        finally:
            for browser in browsers:
                await browser.close()
    return sessions, class_opens


def queue_report(generators: list[Session]) -> tuple[list[dict], float | None]:
    """Per generator: the places shown, its place in the finish order, and whether it finished within
    its first place x the single job's time + 50%; and the single job's time (the one that never waited)."""
    done = sorted((s for s in generators if s.finished_at is not None), key=lambda s: s.finished_at)
    finish_rank = {s.index: rank for rank, s in enumerate(done, start=1)}
    alone = [s.generate_s for s in done if not s.positions]
    single = min(alone) if alone else None
    rows = []
    for s in generators:
        place = s.positions[0][0] if s.positions else 1
        rank = finish_rank.get(s.index)
        rows.append(
            {
                "session": s.index,
                "positions_shown": [f"{p} of {n}" for p, n in s.positions],
                "first_position": place,
                "finished": rank,
                "position_correct": rank is not None and max((p for p, _ in s.positions), default=1) == rank,
                "generate_s": round(s.generate_s, 2) if s.generate_s is not None else None,
                "within_target": (
                    s.generate_s <= place * single * 1.5 if single is not None and s.generate_s is not None else None
                ),
            }
        )
    return rows, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20, help="browser sessions at once (default 20)")
    parser.add_argument("--generators", type=int, help="sessions that press Generate (default 5, at most --sessions)")
    parser.add_argument("--per-browser", type=int, default=10, help="sessions per Chromium process (default 10)")
    parser.add_argument("--seed", type=int, default=1000, help="session i generates with seed SEED + i")
    parser.add_argument("--cold", action="store_true", help="no warm-up visit before the class opens the app")
    add_output_flags(parser)
    args = parser.parse_args()
    args.generators = min(5, args.sessions) if args.generators is None else args.generators
    if not 1 <= args.generators <= args.sessions or args.per_browser < 1:
        parser.error("need 1 <= --generators <= --sessions and --per-browser >= 1")
    if not CHROMIUM.exists():
        raise SystemExit(f"error: Debian's chromium is not at {CHROMIUM}: apt-get install -y chromium")
    out = output_dir(args, ["load.json"])
    check_precomputed()

    runs = Path(tempfile.mkdtemp(prefix="side-load-runs-"))
    log_path = runs.parent / f"{runs.name}.log"
    script_times = runs.parent / f"{runs.name}.times"
    started = time.perf_counter()
    try:
        with app_server(
            {
                "SIDE_MODEL": "default",
                "SIDE_DATA": "default",
                "SIDE_RUNS": str(runs),
                "SIDE_SCRIPT_TIMES": str(script_times),
            },
            address=HOST,
            log_path=log_path,
            start_timeout_s=START_TIMEOUT_S,
        ) as server:
            memory = MemoryWatch(server.pid)
            memory.start()
            sessions, class_opens = asyncio.run(drive(server.url, args))
            memory.stopped.set()
    except ServerDidNotStart as err:
        raise SystemExit(f"error: {err}") from None
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    server_log = log_path.read_text()
    log_path.unlink(missing_ok=True)
    script_runs = first_script_runs(script_times.read_text().splitlines() if script_times.exists() else [], class_opens)
    script_times.unlink(missing_ok=True)
    if not script_runs:
        raise SystemExit(
            f"error: the server recorded no script run in {script_times}: app.py must run its script inside "
            "app_support.state.timed_script_run(), which appends each run's time to SIDE_SCRIPT_TIMES."
        )

    generators = sessions[: args.generators]
    rows, single = queue_report(generators)
    errors = [{"session": s.index, "errors": s.errors} for s in sessions if s.errors]
    if "Traceback" in server_log:  # an exception no page showed
        errors.append(
            {"session": None, "errors": ["server log: " + server_log[server_log.index("Traceback") :][:2000]]},
        )
    results = {
        "sessions": args.sessions,
        "first_paint_s": summary([s.first_paint_s for s in sessions if s.first_paint_s is not None]),
        "generate_s": summary([s.generate_s for s in generators if s.generate_s is not None]),
        "server_script_s": summary(script_runs),
        "server_script_sessions": len(script_runs),
        "errors": len(errors),
        "error_details": errors,
        "jobs_done": sum(s.generate_s is not None for s in generators),
        "jobs_pressed": len(generators),
        "single_job_s": round(single, 2) if single is not None else None,
        "positions_correct": all(row["position_correct"] for row in rows),
        "all_within_target": all(row["within_target"] for row in rows),
        "server_rss_mib_max": round(memory.peak / 2**20, 1),
        "queue_positions": rows,
        "wall_s": round(time.perf_counter() - started, 1),
        "settings": {
            "generators": args.generators,
            "per_browser": args.per_browser,
            "browsers": -(-args.sessions // args.per_browser),
            "seeds": [args.seed + s.index for s in generators],
            "warm_up_visit": not args.cold,
            "model": "default",
            "request": "the guided page's default request (8 samples toward the top class), one seed per generator",
            "first_paint": "goto until the model's facts ('Image size') are visible",
            "generate": "click on Generate until the results heading is visible",
            "server_script": "each session's first script run on the server, start to end, as the app timed it",
        },
    }
    write_json(out / "load.json", {**provenance(), **results})
    print(
        f"{args.sessions} sessions: first paint p50 {results['first_paint_s']['p50']} s, p95 "
        f"{results['first_paint_s']['p95']} s; server script run p50 {results['server_script_s']['p50']} s, p95 "
        f"{results['server_script_s']['p95']} s; generate p50 {results['generate_s']['p50']} s, p95 "
        f"{results['generate_s']['p95']} s; {results['jobs_done']}/{len(generators)} jobs done; "
        f"{results['errors']} errors; server peak {results['server_rss_mib_max']} MiB -> {out / 'load.json'}"
    )


if __name__ == "__main__":
    main()
