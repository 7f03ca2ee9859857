"""Bad inputs and faults, tried as a careful user would make them, and what each one gives.

    python -m benchmarks.faults                     # every case; the tally, and benchmarks/results/faults.{json,md}
    python -m benchmarks.faults --only store        # the cases of one class (or name), printed only

Every case runs the real command line (``python -m side_core ...``) in a fresh process, on a tiny
model and image folder this script builds, with a time limit, and is classified:
- ``clear error``: exit status 2 and one ``error: ...`` line, no traceback;
- ``works``: exit status 0, and the result checked where a silently wrong one is possible
  (e.g. a 16-bit image keeps its values; a damaged store file is detected and made again);
- ``TRACEBACK``, ``SILENTLY WRONG`` (accepted where it must be refused, or a failed check),
  ``REFUSED, BUT MUST WORK``, ``HANG`` (over the time limit), ``CODE RAN`` (a model folder made this
  machine run its code).
The cases and their outcomes are the table of docs/errors.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.provenance import add_output_flags, output_dir, provenance
from side_core.store import write_json, write_text

ROOT = Path(__file__).resolve().parent.parent
# a tiny but complete extraction: every stage runs in seconds on the tiny model
TINY = ["--n-syn", "24", "--k", "3", "--tau", "0", "--classifier-steps", "10", "--steps", "3", "--n-samples", "8"]
TINY += ["--batch-size", "8", "--threads", "1"]
TRAIN = ["--size", "8", "--max-steps", "2", "--checkpoint-every", "2", "--threads", "1"]


@dataclass
class Case:
    name: str
    kind: str  # the fault class, as in docs/errors.md
    argv: Callable[[Path], list[str]]  # builds its inputs under a scratch folder, returns the arguments
    refuse: bool = True  # True: the right answer is a clear error; False: it must work
    check: Callable[[Path], str | None] | None = None  # after a run that worked: None, or what is wrong
    outcome: str = ""
    message: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


# -- the scratch world: a tiny model and images, and ways to damage copies of them --------------------
def tiny_model(folder: Path, **scheduler_changes) -> Path:
    from diffusers import DDPMScheduler, UNet2DModel

    from side_core.models import save_model

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    save_model(unet, DDPMScheduler(num_train_timesteps=100, **scheduler_changes), folder)
    return folder


def images(folder: Path, n: int = 12, size: int = 8, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        blocks = rng.integers(0, 256, (size // 2, size // 2), dtype=np.uint8)
        Image.fromarray(blocks.repeat(2, 0).repeat(2, 1), "L").save(folder / f"img{i:03d}.png")
    return folder


class World:
    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.model = tiny_model(scratch / "model")
        self.data = images(scratch / "data")
        self.n = 0

    def fresh(self, name: str) -> Path:
        self.n += 1
        return self.scratch / f"{self.n:03d}-{name}"

    def copy(self, source: Path, edit: Callable[[Path], None]) -> Path:
        """A fresh copy of the tiny model or image folder, damaged by ``edit``."""
        folder = self.fresh(source.name)
        shutil.copytree(source, folder)
        edit(folder)
        return folder

    def extract(self, *flags: str, model: Path | None = None, data: Path | None = None, out: Path | None = None):
        out = out or self.fresh("out")
        return [
            "extract", "--method", "side", "--model", str(model or self.model), "--data", str(data or self.data),
            "--out", str(out), *TINY, *flags,
        ]  # fmt: skip


def edit_json(path: Path, **changes) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def unet_config(**changes) -> Callable[[Path], None]:
    return lambda folder: edit_json(folder / "unet" / "config.json", **changes)


def scheduler_config(**changes) -> Callable[[Path], None]:
    return lambda folder: edit_json(folder / "scheduler" / "scheduler_config.json", **changes)


MARKER = "code-ran.txt"  # what a model folder's code would write if this tool ever ran it


def malicious_pickle(folder: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {folder / MARKER}",))

    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    torch.save({"x": Payload()}, folder / "unet" / "diffusion_pytorch_model.bin")


def remote_code(folder: Path) -> None:
    (folder / "unet" / "evil.py").write_text(f"open({str(folder / MARKER)!r}, 'w').write('ran')\n")
    edit_json(folder / "unet" / "config.json", auto_map={"AutoModel": "evil.EvilUNet"}, _class_name="EvilUNet")


def nan_weights(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    state["conv_out.weight"][0, 0, 0, 0] = float("nan")
    save_file(state, str(path))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


def truncate_and_unfinish(shard: Path) -> None:
    truncate(shard)
    (shard.parent.parent / "done.json").unlink()


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def sixteen_bit(folder: Path) -> None:
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "wide.png")


def check_sixteen_bit(folder: Path) -> str | None:
    from side_core.data import load_training_set

    data = load_training_set(folder, 1, 8)
    wide = data.images[data.names.index("wide.png")]
    return (
        None if float(wide.min()) < -0.9 and float((wide == 1).float().mean()) < 0.05 else "16-bit image turned white"
    )


# -- the store: a finished tiny run, then damaged ----------------------------------------------------
def finished_run(world: World) -> Path:
    out = world.fresh("run")
    cmd = [sys.executable, "-m", "side_core", *world.extract(out=out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
    return out


def damaged_run(world: World, pick: Callable[[Path], Path], damage: Callable[[Path], None]) -> list[str]:
    out = finished_run(world)
    damage(pick(out / "store"))
    return world.extract(out=out)


def first(pattern: str) -> Callable[[Path], Path]:
    return lambda store: sorted(store.glob(pattern))[0]


def report_is_unchanged_and_valid(out: Path) -> str | None:
    report = json.loads((out / "report.json").read_text())  # strict JSON: NaN would not parse back
    return None if report["methods"]["side"]["n_generated"] == 8 else "report changed shape"


def cases(world: World) -> list[Case]:
    w = world
    c: list[Case] = []

    def add(name, kind, argv, **kw):
        c.append(Case(name, kind, argv, **kw))

    # settings: each refused before any work
    for flags, name in [
        (["--seed", "-1"], "negative seed"),
        (["--seed", "100000000000000000000"], "seed above 2^32"),
        (["--seed", "1e20"], "seed written as a float"),
        (["--threads", "-1"], "negative threads"),
        (["--threads", "0"], "zero threads"),
        (["--device", "bogus"], "unknown device"),
        (["--device", "cuda:7"], "absent CUDA device"),
        (["--guidance-scale", "-1"], "negative guidance scale"),
        (["--guidance-scale", "nan"], "guidance scale nan"),
        (["--guidance-scale", "inf"], "guidance scale inf"),
        (["--guidance-window", "10", "5"], "guidance window reversed"),
        (["--guidance-window", "0", "5000"], "guidance window past the schedule"),
        (["--guidance-window", "-1", "5"], "guidance window negative"),
        (["--tau", "-0.1"], "tau below 0"),
        (["--tau", "1.5"], "tau above 1"),
        (["--tau", "nan"], "tau nan"),
        (["--keep-top", "0"], "kept fraction 0"),
        (["--keep-top", "1.5"], "kept fraction above 1"),
        (["--seed", "1"], "generation seed equal to the pool's"),
        (["--surrogate-seed", "-2"], "negative surrogate seed"),
        (["--k", "1"], "K = 1"),
        (["--k", "24"], "K = N_syn"),
        (["--k", "500"], "K > N_syn"),
        (["--n-samples", "0"], "N_G = 0"),
        (["--n-samples", "-5"], "N_G negative"),
        (["--n-syn", "2"], "N_syn = 2"),
        (["--classifier-steps", "0"], "classifier steps 0"),
        (["--classifier-steps", "-3"], "classifier steps negative"),
        (["--steps", "0"], "sampler steps 0"),
        (["--steps", "1000"], "sampler steps past the schedule"),
        (["--batch-size", "0"], "batch size 0"),
        (["--bands", "2", "3", "4"], "bands above 1"),
        (["--bands", "0.5", "0.4", "0.9"], "bands not increasing"),
        (["--bands", "nan", "0.5", "0.9"], "bands nan"),
        (["--feature", "sscd"], "SSCD feature without the file"),
        (["--similarity", "sscd", "--sscd", "/nonexistent.pt"], "SSCD file missing"),
        (["--n-data", "0"], "n-data 0"),
        (["--sampler", "euler"], "unknown sampler"),
    ]:
        add(name, "settings", lambda _s, flags=flags: w.extract(*flags))

    def out_is_file(_s):
        f = w.fresh("file")
        f.write_text("keep")
        return w.extract(out=f)

    add("--out is a file", "settings", out_is_file)

    # model folders
    add("model path missing", "model", lambda _s: w.extract(model=w.scratch / "nope"))
    add("model path is a file", "model", lambda _s: w.extract(model=w.model / "model_index.json"))
    add("empty model folder", "model", lambda _s: w.extract(model=Path(tempfile.mkdtemp(dir=w.scratch))))
    add("hub id while offline", "model", lambda _s: w.extract(model="owner/some-model"))
    for name, edit in [
        ("config.json is a JSON list", lambda f: (f / "unet" / "config.json").write_text("[1, 2]")),
        ("config.json is not JSON", lambda f: (f / "unet" / "config.json").write_text("{oops")),
        ("model_index.json is a string", lambda f: (f / "model_index.json").write_text('"x"')),
        ("sample_size 0", unet_config(sample_size=0)),
        ("sample_size negative", unet_config(sample_size=-8)),
        ("sample_size a string", unet_config(sample_size="8")),
        ("rectangular sample_size", unet_config(sample_size=[8, 16])),
        ("out_channels != in_channels", unet_config(out_channels=2)),
        ("4 channels (latent)", unet_config(in_channels=4, out_channels=4)),
        ("block_out_channels a string", unet_config(block_out_channels="abc")),
        ("norm groups do not divide", unet_config(norm_num_groups=3)),
        ("conditional UNet class", unet_config(_class_name="UNet2DConditionModel")),
        ("weights missing", lambda f: (f / "unet" / "diffusion_pytorch_model.safetensors").unlink()),
        ("weights truncated", lambda f: truncate(f / "unet" / "diffusion_pytorch_model.safetensors")),
        ("NaN weights", nan_weights),
        ("unet/ missing", lambda f: shutil.rmtree(f / "unet")),
        ("scheduler config missing", lambda f: (f / "scheduler" / "scheduler_config.json").unlink()),
        ("bogus beta_schedule", scheduler_config(beta_schedule="bogus")),
        ("bogus prediction_type", scheduler_config(prediction_type="noise")),
        ("string num_train_timesteps", scheduler_config(num_train_timesteps="1000")),
        ("beta_end above 1", scheduler_config(beta_end=2.0)),
    ]:
        add(name, "model", lambda _s, edit=edit: w.extract(model=w.copy(w.model, edit)))
    for name, edit in [("malicious pickle weights", malicious_pickle), ("auto_map remote code", remote_code)]:
        add(name, "model code", lambda _s, edit=edit: w.extract(model=w.copy(w.model, edit)))
    for kind in ("v_prediction", "sample"):
        add(
            f"{kind} model",
            "model",
            lambda _s, kind=kind: w.extract(model=tiny_model(w.fresh("typed"), prediction_type=kind)),
            refuse=False,
        )

    # training images
    def data_case(name, edit, refuse, check=None):
        made: dict[str, Path] = {}  # this case's image folder, once it exists

        def argv(_s):
            made["folder"] = w.copy(w.data, edit)
            return w.extract(data=made["folder"])

        add(name, "images", argv, refuse=refuse, check=(lambda _s: check(made["folder"])) if check else None)

    data_case("data folder missing", lambda f: shutil.rmtree(f), True)
    data_case("data folder empty", lambda f: [p.unlink() for p in f.iterdir()], True)
    data_case("only non-images", lambda f: [p.rename(p.with_suffix(".txt")) for p in f.iterdir()], True)
    data_case("an unreadable image among good ones", lambda f: (f / "bad.png").write_bytes(b"junk"), False)
    data_case("FIFO named zz.png", lambda f: os.mkfifo(f / "zz.png"), False)
    data_case("16-bit PNG among 8-bit", sixteen_bit, False, check_sixteen_bit)
    data_case("one 4x4 thumbnail among 8x8", lambda f: Image.new("L", (4, 4)).save(f / "thumb.png"), False)

    def only_small(f):
        for p in f.iterdir():
            Image.new("L", (4, 4), 128).save(p)

    data_case("every image smaller than the model", only_small, True)
    data_case("two images", lambda f: [p.unlink() for p in sorted(f.iterdir())[2:]], True)

    def identical(f):
        for p in sorted(f.iterdir())[1:]:
            shutil.copy(sorted(f.iterdir())[0], p)

    data_case("identical images", identical, True)
    data_case("constant images", lambda f: [Image.new("L", (8, 8), 90).save(p) for p in f.iterdir()], True)

    def bomb(f):
        Image.new("L", (12_000, 12_000)).save(f / "bomb.png")  # 144 M pixels > 2 x PIL's limit

    data_case("decompression bomb", bomb, False)

    # train
    for flags, name in [
        (["--checkpoint-every", "0"], "train --checkpoint-every 0"),
        (["--size", "25"], "train --size 25"),
        (["--batch-size", "0"], "train --batch-size 0"),
        (["--lr", "-1"], "train --lr -1"),
        (["--max-steps", "0"], "train --max-steps 0"),
        (["--minutes", "0"], "train --minutes 0"),
        (["--n-images", "0"], "train --n-images 0"),
        (["--device", "bogus"], "train --device bogus"),
    ]:
        add(
            name,
            "train",
            lambda _s, flags=flags: ["train", "--data", str(w.data), "--out", str(w.fresh("t")), *TRAIN, *flags],
        )

    def train_out_file(_s):
        f = w.fresh("file")
        f.write_text("keep")
        return ["train", "--data", str(w.data), "--out", str(f), *TRAIN]

    add("train --out is a file", "train", train_out_file)

    # the run store
    shard = first("generate-*/shards/00000.safetensors")
    for name, pick, damage in [
        ("finished generation: shard truncated", shard, truncate),
        ("finished generation: shard overwritten, same size", shard, flip_last_byte),
        ("finished generation: shard deleted", shard, Path.unlink),
        ("features.npy truncated", first("features-*/features.npy"), truncate),
        ("classifier weights overwritten", first("classifier-*/classifier.safetensors"), flip_last_byte),
        ("done.json not JSON", first("score-*/done.json"), lambda p: p.write_text("{")),
        ("unfinished generation: shard truncated", shard, truncate_and_unfinish),
    ]:  # fmt: skip
        made: dict[str, Path] = {}  # this case's report folder, once its run exists

        def argv(_s, pick=pick, damage=damage, made=made):
            args = damaged_run(w, pick, damage)
            made["out"] = Path(args[args.index("--out") + 1])
            return args

        add(name, "store", argv, refuse=False, check=lambda _s, made=made: report_is_unchanged_and_valid(made["out"]))
    return c


def run_case(case: Case, world: World, timeout: float) -> None:
    started = time.perf_counter()
    try:
        argv = case.argv(world.scratch)
    except Exception as err:  # noqa: BLE001 - a broken set-up is this script's bug: report it, go on
        case.outcome, case.message = "SET-UP FAILED", f"{type(err).__name__}: {err}"
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "side_core", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        case.outcome, case.seconds = "HANG", timeout
        return
    case.seconds = round(time.perf_counter() - started, 2)
    err = proc.stderr.strip()
    errors = [line for line in err.splitlines() if line.startswith("error: ") or line.startswith("usage: ")]
    if any(world.scratch.rglob(MARKER)):
        case.outcome = "CODE RAN"
    elif "Traceback" in err:
        case.outcome, case.message = "TRACEBACK", err.splitlines()[-1]
    elif proc.returncode == 2 and errors:
        case.message = errors[-1] if errors[-1].startswith("error: ") else err.splitlines()[-1]
        case.outcome = "clear error" if case.refuse else "REFUSED, BUT MUST WORK"
    elif proc.returncode == 0:
        problem = case.check(world.scratch) if case.check else None
        case.outcome = "SILENTLY WRONG" if case.refuse or problem else "works"
        warnings = [
            line.split(" WARNING ", 1)[1].split(": ", 1)[-1] for line in err.splitlines() if " WARNING " in line
        ]
        case.message = problem or ("accepted" if case.refuse else "; ".join(warnings[:2]) or "ran")
    else:
        case.outcome, case.message = f"exit {proc.returncode}", err[-300:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timeout", type=float, default=120, help="seconds before a case counts as a hang")
    p.add_argument("--only", default="", help="run only the cases of this class, or whose name contains this")
    add_output_flags(p)
    args = p.parse_args()
    # only a run of every case writes results
    out = output_dir(args, ["faults.json", "faults.md"]) if not args.only else None
    with tempfile.TemporaryDirectory(prefix="side-faults-") as scratch:
        world = World(Path(scratch))
        chosen = [case for case in cases(world) if args.only in case.name or args.only == case.kind]
        for i, case in enumerate(chosen, 1):
            run_case(case, world, args.timeout)
            case.message = case.message.replace(str(world.scratch), "<scratch>")  # the same text on every run
            print(
                f"[{i}/{len(chosen)}] {case.kind:10s} {case.name:45s} {case.outcome:12s} {case.message[:150]}",
                flush=True,
            )
    tally = Counter(case.outcome for case in chosen)
    print("tally:", dict(tally))
    if out is not None:
        rows = [
            {k: getattr(case, k) for k in ("kind", "name", "refuse", "outcome", "message", "seconds")}
            for case in chosen
        ]
        write_json(out / "faults.json", {**provenance(), "tally": dict(tally), "cases": rows})
        lines = ["| class | input or fault | what the user gets |", "|---|---|---|"]
        for row in rows:
            message = row["message"].replace("|", "\\|")
            lines.append(f"| {row['kind']} | {row['name']} | {row['outcome']}: {message} |")
        write_text(out / "faults.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
