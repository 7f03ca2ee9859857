"""Speed and memory of sampling and classifier training, measured side by side in one run.

    python -m benchmarks.speed [--model default] [--batch 64] [--steps 25] [--repeats 3]

(a) our unguided loop vs diffusers' DDIMPipeline (and DDPMPipeline) on the same UNet, steps,
batch and noise; (b) SIDE-guided vs unguided time per image, with the default sampler (DDPM);
(c) images/s for sampling and classifier training; (d) peak memory. Timings alternate between the
contenders and keep each one's best of ``--repeats``, so a noisy machine hurts all alike. Writes
benchmarks/results/speed.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import resource
import time

import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler

from benchmarks.provenance import add_output_flags, output_dir, provenance
from side_core.classifier import classifier_guidance, train_classifier
from side_core.config import ClassifierConfig, ClassifierTrainConfig, ExtractionConfig, SampleConfig
from side_core.models import load_model
from side_core.resnet import SurrogateClassifier
from side_core.sampling import sample
from side_core.store import write_json


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="model to time (bundled name, folder or hub id)")
    parser.add_argument("--batch", type=int, default=64, help="samples per batch (default 64)")
    parser.add_argument("--steps", type=int, default=25, help="sampler steps (default 25)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per contender (best is kept)")
    parser.add_argument("--classifier-steps", type=int, default=50, help="classifier steps to time")
    add_output_flags(parser)
    args = parser.parse_args()
    out = output_dir(args, ["speed.json"])

    model = load_model(args.model)
    device = model.device
    n_classes = 20
    classifier = (
        SurrogateClassifier(ClassifierConfig(n_classes=n_classes, channels=model.channels, size=model.size))
        .to(device)
        .eval()
        .requires_grad_(False)
    )
    targets = torch.arange(args.batch, device=device) % n_classes
    plain = SampleConfig(num_steps=args.steps, batch_size=args.batch)  # the default sampler
    ddim = dataclasses.replace(plain, sampler="ddim")
    ddpm = dataclasses.replace(plain, sampler="ddpm")
    guided = dataclasses.replace(plain, guidance_scale=ExtractionConfig().sample.guidance_scale)
    ddim_pipe = DDIMPipeline(unet=model.unet, scheduler=DDIMScheduler.from_config(model.scheduler.config))
    ddpm_pipe = DDPMPipeline(unet=model.unet, scheduler=DDPMScheduler.from_config(model.scheduler.config))
    for pipe in (ddim_pipe, ddpm_pipe):
        pipe.set_progress_bar_config(disable=True)

    def ours(config: SampleConfig, guidance=None):
        return lambda: sample(model, args.batch, config, torch.Generator().manual_seed(0), guidance).images

    def theirs(pipe, **kwargs):
        return lambda: pipe(
            batch_size=args.batch,
            generator=torch.Generator().manual_seed(0),
            num_inference_steps=args.steps,
            output_type="pt",
            **kwargs,
        )

    contenders = {
        "ours_ddim": ours(ddim),
        "diffusers_ddim": theirs(ddim_pipe, eta=0.0),
        "ours_ddpm": ours(ddpm),
        "diffusers_ddpm": theirs(ddpm_pipe),
        "ours_plain": ours(plain),
        "ours_guided": ours(guided, classifier_guidance(classifier, targets)),
    }
    for fn in contenders.values():
        fn()  # warm-up
    t = dict.fromkeys(contenders, float("inf"))
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit all of them
        for name, fn in contenders.items():
            t[name] = min(t[name], best_time(fn, 1))

    n_train = 512
    x0 = torch.rand(n_train, model.channels, model.size, model.size) * 2 - 1
    labels = torch.arange(n_train) % n_classes
    config = ClassifierConfig(n_classes=n_classes, channels=model.channels, size=model.size)
    train_config = ClassifierTrainConfig(steps=args.classifier_steps)
    started = time.perf_counter()
    train_classifier(x0, labels, model.scheduler, config, train_config, device=device)
    t_train = time.perf_counter() - started

    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    results = {
        "loop_vs_diffusers": round(t["ours_ddim"] / t["diffusers_ddim"], 3),
        "loop_vs_diffusers_ddpm": round(t["ours_ddpm"] / t["diffusers_ddpm"], 3),
        "guided_vs_unguided": round(t["ours_guided"] / t["ours_plain"], 3),
        "sampling_images_per_s": round(args.batch / t["ours_plain"], 2),
        "guided_sampling_images_per_s": round(args.batch / t["ours_guided"], 2),
        "diffusers_ddim_images_per_s": round(args.batch / t["diffusers_ddim"], 2),
        "classifier_training_images_per_s": round(args.classifier_steps * train_config.batch_size / t_train, 1),
        "peak_memory_mib": round(peak, 1),
        "peak_memory_kind": "cuda max_memory_allocated" if torch.cuda.is_available() else "process max RSS",
        "setup": {
            "model": model.source,
            "image": [model.channels, model.size, model.size],
            "batch": args.batch,
            "steps": args.steps,
            "sampler": plain.sampler,
            "guidance_scale": guided.guidance_scale,
            "repeats": args.repeats,
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
        },
    }
    for key, value in results.items():
        if key != "setup":
            print(f"{key:>36}: {value}")
    write_json(out / "speed.json", {**provenance(), **results})
    print(f"written to {out / 'speed.json'}")


if __name__ == "__main__":
    main()
