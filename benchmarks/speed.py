"""Speed and memory of sampling and classifier training, measured side by side in one run.

    python -m benchmarks.speed [--model default] [--batch 64] [--steps 25] [--repeats 3]

(a) our unguided loop vs diffusers' DDIMPipeline on the same UNet, steps, batch and noise;
(b) SIDE-guided vs unguided time per image; (c) images/s for sampling and classifier training;
(d) peak memory. Timings alternate between the contenders and keep each one's best of
``--repeats``, so a noisy machine hurts both alike. Writes benchmarks/results/speed.json.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from pathlib import Path

import torch
from diffusers import DDIMPipeline, DDIMScheduler

from side_core.classifier import SurrogateClassifier, classifier_guidance, train_classifier
from side_core.config import ClassifierConfig, ClassifierTrainConfig, SampleConfig
from side_core.models import load_model
from side_core.sampling import sample
from side_core.store import write_json

RESULTS = Path(__file__).resolve().parent / "results"


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
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per contender (best is kept)")
    parser.add_argument("--classifier-steps", type=int, default=50, help="classifier steps to time")
    parser.add_argument("--out", default=str(RESULTS / "speed.json"), help="where to write the JSON")
    args = parser.parse_args()

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
    plain = SampleConfig(num_steps=args.steps, batch_size=args.batch)
    guided = SampleConfig(num_steps=args.steps, batch_size=args.batch, guidance_scale=1.0)
    pipe = DDIMPipeline(unet=model.unet, scheduler=DDIMScheduler.from_config(model.scheduler.config))
    pipe.set_progress_bar_config(disable=True)

    def ours():
        return sample(model, args.batch, plain, torch.Generator().manual_seed(0)).images

    def theirs():
        g = torch.Generator().manual_seed(0)
        return pipe(batch_size=args.batch, generator=g, num_inference_steps=args.steps, eta=0.0, output_type="pt")

    def ours_guided():
        guidance = classifier_guidance(classifier, targets)
        return sample(model, args.batch, guided, torch.Generator().manual_seed(0), guidance).images

    ours(), theirs(), ours_guided()  # warm-up
    t_ours, t_theirs, t_guided = float("inf"), float("inf"), float("inf")
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit all three
        t_ours = min(t_ours, best_time(ours, 1))
        t_theirs = min(t_theirs, best_time(theirs, 1))
        t_guided = min(t_guided, best_time(ours_guided, 1))

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
        "loop_vs_diffusers": round(t_ours / t_theirs, 3),
        "guided_vs_unguided": round(t_guided / t_ours, 3),
        "sampling_images_per_s": round(args.batch / t_ours, 2),
        "guided_sampling_images_per_s": round(args.batch / t_guided, 2),
        "diffusers_images_per_s": round(args.batch / t_theirs, 2),
        "classifier_training_images_per_s": round(args.classifier_steps * train_config.batch_size / t_train, 1),
        "peak_memory_mib": round(peak, 1),
        "peak_memory_kind": "cuda max_memory_allocated" if torch.cuda.is_available() else "process max RSS",
        "setup": {
            "model": model.source,
            "image": [model.channels, model.size, model.size],
            "batch": args.batch,
            "ddim_steps": args.steps,
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
    write_json(args.out, results)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
