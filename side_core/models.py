"""Loading and saving unconditional diffusion models (a diffusers UNet2DModel plus its scheduler).

One entry point, :func:`load_model`, accepts
- a bundled model by name (``BUNDLED_MODELS``: ``default``, ``faces40``, ...), shipped in ``assets/models/``;
- a folder saved by ``DDPMPipeline.save_pretrained`` (``model_index.json``, ``unet/``, ``scheduler/``);
- a flat folder (``config.json`` + weights + ``scheduler_config.json``, as ``google/ddpm-*``);
- a bare UNet folder (``config.json`` + weights; the default DDPM scheduler is assumed);
- a hub id (``owner/name``) when online.
Weights are read only from safetensors or with ``torch.load(weights_only=True)``, and no code from
a model folder is ever run: the UNet class is always diffusers' own ``UNet2DModel``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from side_core.errors import SideError
from side_core.store import file_fingerprint, stage_key

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# The precomputed stages of the bundled default model (`python -m side_core prepare`).
BUNDLED_STORE = ASSETS / "store"


@dataclass(frozen=True)
class BundledModel:
    folder: Path
    about: str  # what it was trained on, for help texts


BUNDLED_MODELS = {
    "default": BundledModel(ASSETS / "models" / "faces100", "100 LFW faces, rarely copied"),
    "faces100-memorized": BundledModel(ASSETS / "models" / "faces100-memorized", "the same faces, memorized"),
    "faces40": BundledModel(ASSETS / "models" / "faces40", "40 faces"),
    "fashion1k-repeats": BundledModel(
        ASSETS / "models" / "fashion1k-repeats",
        "1,000 Fashion-MNIST images, 300 of them repeated in training; score against the folder that "
        "benchmarks/datasets.py writes",
    ),
    "fashion1k-flat": BundledModel(
        ASSETS / "models" / "fashion1k-flat",
        "1,000 Fashion-MNIST images, 300 of them repeated 16 times each in training; score against the folder "
        "that benchmarks/datasets.py writes",
    ),
}


def bundled_models_help() -> str:
    """The bundled models by name, for a help text."""
    return ", ".join(f"'{name}' ({m.about})" for name, m in BUNDLED_MODELS.items())


WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedModel:
    """A denoiser and the noise schedule it was trained with."""

    unet: UNet2DModel
    scheduler: DDPMScheduler
    source: str
    layout: str
    fingerprint: str = ""  # hash of the weights and schedule: the model's identity in the run store

    @property
    def channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def size(self) -> int:
        s = self.unet.config.sample_size
        return s if isinstance(s, int) else s[0]

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def facts(self) -> dict:
        sched = self.scheduler.config
        return {
            "source": self.source,
            "layout": self.layout,
            "channels": self.channels,
            "size": self.size,
            "parameters": sum(p.numel() for p in self.unet.parameters()),
            "scheduler": {
                "num_train_timesteps": sched.num_train_timesteps,
                "beta_schedule": sched.beta_schedule,
                "beta_start": sched.beta_start,
                "beta_end": sched.beta_end,
                "prediction_type": sched.prediction_type,
            },
        }


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """The torch device ``spec`` names (None: CUDA when present, else CPU), checked to exist here."""
    if spec is None:
        return default_device()
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as err:
        raise SideError(f"Unknown device {spec!r}: use 'cpu', 'cuda' or 'cuda:N'.") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SideError(f"Device {spec!r} asked for, but this machine has no usable CUDA GPU: use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SideError(
                f"Device {spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0."
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise SideError(f"Device {spec!r} asked for, but MPS is not available here: use --device cpu.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise SideError(f"Device {spec!r} is not supported: use 'cpu' or 'cuda'.")
    return device


def load_model(spec: str | os.PathLike = "default", device: str | torch.device | None = None) -> LoadedModel:
    """Load a model from a bundled name, a local folder or a hub id (see the module docstring)."""
    device = resolve_device(device)
    spec_str = str(spec)
    if spec_str in BUNDLED_MODELS:
        folder = BUNDLED_MODELS[spec_str].folder
        if not folder.exists():
            raise SideError(
                f"The bundled model '{spec_str}' is missing from {folder}: reinstall the project "
                "or train it with `python -m side_core train` (see README)."
            )
        model = _load_folder(folder, source=f"bundled:{spec_str}")
    elif Path(spec_str).exists():
        model = _load_folder(Path(spec_str), source=str(Path(spec_str).resolve()))
    elif HUB_ID.match(spec_str) and not spec_str.startswith((".", "/")):
        model = _load_folder(_download_from_hub(spec_str), source=f"hub:{spec_str}")
    else:
        raise SideError(
            f"Model '{spec_str}' is not a bundled model ({', '.join(BUNDLED_MODELS)}), an existing "
            "folder, or a hub id of the form owner/name: check the path."
        )
    model.unet.to(device).eval().requires_grad_(False)
    log.info("loaded %s (%s layout) on %s", model.source, model.layout, device)
    log.info("effective scheduler config: %s", dict(model.scheduler.config))
    return model


def _load_folder(folder: Path, source: str) -> LoadedModel:
    if not folder.is_dir():
        raise SideError(f"{folder} is a file, not a model folder: give the folder that holds config.json.")
    if (folder / "model_index.json").exists():
        index = _read_config(folder / "model_index.json")
        unet_entry = index.get("unet")
        if not unet_entry or not (folder / "unet").is_dir():
            raise SideError(
                f"{folder} has model_index.json but no unet/ folder: this tool needs an "
                "unconditional UNet2DModel pipeline (DDPMPipeline or DDIMPipeline)."
            )
        unet, weights = _load_unet(folder / "unet")
        scheduler = _load_scheduler(folder / "scheduler" / "scheduler_config.json")
        layout = "pipeline"
    elif (folder / "config.json").exists():
        unet, weights = _load_unet(folder)
        if (folder / "scheduler_config.json").exists():
            scheduler, layout = _load_scheduler(folder / "scheduler_config.json"), "flat"
        else:
            log.warning("%s has no scheduler_config.json: assuming the default DDPM schedule", folder)
            scheduler, layout = DDPMScheduler(), "bare unet"
    else:
        raise SideError(
            f"{folder} is not a diffusers model folder: it needs model_index.json with unet/ and "
            "scheduler/ (DDPMPipeline.save_pretrained), or config.json and diffusion_pytorch_model."
            "safetensors (a UNet2DModel)."
        )
    fingerprint = stage_key({"weights": file_fingerprint(weights), "scheduler": dict(scheduler.config)})
    return LoadedModel(unet, scheduler, source, layout, fingerprint)


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SideError(f"{path} is not valid JSON ({err}): re-save the model with diffusers.") from err
    if not isinstance(config, dict):
        raise SideError(
            f"{path} holds a JSON {type(config).__name__}, not an object of settings: re-save the model with diffusers."
        )
    return config


def _is_whole(value, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_unet_config(path: Path, config: dict) -> None:
    """The settings SIDE relies on, checked before diffusers builds the UNet from them."""
    size = config.get("sample_size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_whole(s) for s in size):
        if size[0] != size[1]:
            raise SideError(
                f"{path}: the model makes {size[0]}x{size[1]} (rectangular) images; SIDE Explorer supports square "
                "models only (every image is compared at one square size)."
            )
        size = size[0]
    if not _is_whole(size):
        raise SideError(f"{path}: sample_size = {size!r}; it must be a positive whole number (the image side).")
    c_in, c_out = config.get("in_channels", 3), config.get("out_channels", 3)
    if c_in not in (1, 3) or isinstance(c_in, bool):
        raise SideError(
            f"{path}: in_channels = {c_in!r}; SIDE works on pixel-space models with 1 (grayscale) or 3 (RGB) "
            "channels (latent models are not supported)."
        )
    if c_out != c_in:
        raise SideError(
            f"{path}: out_channels = {c_out!r} differs from in_channels = {c_in}; SIDE needs a model that predicts "
            "one value per input channel (models that also learn the variance are not supported)."
        )


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


def _check_scheduler_config(path: Path, config: dict) -> None:
    """The schedule settings SIDE uses, checked before diffusers builds the scheduler from them."""
    steps = config.get("num_train_timesteps", 1000)
    if not _is_whole(steps, 2):
        raise SideError(f"{path}: num_train_timesteps = {steps!r}; it must be a whole number of at least 2.")
    schedule = config.get("beta_schedule", "linear")
    if schedule not in BETA_SCHEDULES and config.get("trained_betas") is None:
        raise SideError(f"{path}: unknown beta_schedule {schedule!r}; use one of {', '.join(BETA_SCHEDULES)}.")
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise SideError(f"{path}: unknown prediction_type {prediction!r}; use one of {', '.join(PREDICTION_TYPES)}.")
    for name in ("beta_start", "beta_end"):
        value = config.get(name, 0.0001 if name == "beta_start" else 0.02)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise SideError(f"{path}: {name} = {value!r}; it must be a number between 0 and 1.")


def _load_unet(folder: Path) -> tuple[UNet2DModel, Path]:
    config = _read_config(folder / "config.json")
    class_name = config.get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        raise SideError(
            f"{folder / 'config.json'} names the class {class_name!r}; SIDE needs an unconditional "
            "UNet2DModel (conditional and latent models are not supported)."
        )
    _check_unet_config(folder / "config.json", config)
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise SideError(
            f"{folder} has config.json but no weights file ({' or '.join(WEIGHT_FILES)}): "
            "copy the weights next to config.json."
        )
    try:
        unet = UNet2DModel.from_config(config)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError) as err:
        # diffusers checks few values itself; these are what a wrong type or value makes it raise
        raise SideError(
            f"{folder / 'config.json'} is not a valid UNet2DModel config ({type(err).__name__}: {err}): "
            "re-save the model with diffusers."
        ) from err
    state = _read_weights(weights)
    try:
        unet.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise SideError(
            f"The weights in {weights} do not fit the UNet described by config.json: {str(err)[:300]}"
        ) from err
    bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise SideError(
            f"The weights in {weights} hold NaN or infinite values ({len(bad)} tensors, e.g. {bad[0]}): the model "
            "diverged or the file is damaged; use an earlier checkpoint."
        )
    return unet, weights


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or a pickle that ``torch.load(weights_only=True)`` accepts."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise SideError(
                f"Cannot read weights file {path} ({err}): the file is corrupt or truncated; download or save it again."
            ) from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is long; its reason is the line naming what the unpickler refused
        reason = next((line.strip() for line in str(err).splitlines() if "Unpickler error" in line), str(err))
        raise SideError(
            f"Refused to load {path}: it holds Python objects other than tensors, which could run code when loaded "
            f"({reason}). Use a safetensors file, or convert this one where you trust it."
        ) from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise SideError(
            f"Cannot read weights file {path} ({type(err).__name__}: {err}): the file is corrupt or truncated; "
            "download or save it again."
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SideError(f"{path} does not hold a state dict of tensors: save the UNet's weights with diffusers.")
    return state


def _load_scheduler(path: Path) -> DDPMScheduler:
    if not path.exists():
        raise SideError(f"{path} is missing: the model folder needs its scheduler config.")
    config = _read_config(path)
    _check_scheduler_config(path, config)
    # Any DDPM-family schedule is expressed as a DDPMScheduler; the sampler converts it as needed.
    try:
        return DDPMScheduler.from_config(config)
    except (TypeError, ValueError, NotImplementedError) as err:
        raise SideError(f"{path} is not a valid scheduler config ({type(err).__name__}: {err}).") from err


def _download_from_hub(repo_id: str) -> Path:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise SideError(
            f"'{repo_id}' looks like a hub id, but HF_HUB_OFFLINE is set: go online, or download the "
            "model once and pass its local folder."
        )
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            repo_id, allow_patterns=["*.json", "*.safetensors", "unet/*.bin", "*.bin"], etag_timeout=10
        )
    except Exception as err:  # noqa: BLE001 - network failures surface as many exception types
        raise SideError(
            f"Could not download '{repo_id}' from the hub ({type(err).__name__}): you may be offline, "
            "or the id is wrong. Download the model where you are online and pass its local folder."
        ) from err
    return Path(path)


def save_model(unet: UNet2DModel, scheduler: DDPMScheduler, folder: str | os.PathLike) -> None:
    """Save as a DDPMPipeline folder (safetensors), replacing ``folder`` only once fully written."""
    import shutil
    import tempfile

    from diffusers import DDPMPipeline

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
