"""Loading and saving unconditional diffusion models (a diffusers UNet2DModel plus its scheduler).

One entry point, :func:`load_model`, accepts
- a bundled model by name (``default``, ``faces40``), shipped in ``assets/models/``;
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
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from side_core.errors import SideError
from side_core.store import file_fingerprint, stage_key

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BUNDLED_MODELS = {
    "default": ASSETS / "models" / "faces100",
    "faces40": ASSETS / "models" / "faces40",
}
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


def load_model(spec: str | os.PathLike = "default", device: str | torch.device | None = None) -> LoadedModel:
    """Load a model from a bundled name, a local folder or a hub id (see the module docstring)."""
    device = torch.device(device) if device is not None else default_device()
    spec_str = str(spec)
    if spec_str in BUNDLED_MODELS:
        folder = BUNDLED_MODELS[spec_str]
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
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SideError(f"{path} is not valid JSON ({err}): re-save the model with diffusers.") from err


def _load_unet(folder: Path) -> tuple[UNet2DModel, Path]:
    config = _read_config(folder / "config.json")
    class_name = config.get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        raise SideError(
            f"{folder / 'config.json'} describes a {class_name}; SIDE needs an unconditional "
            "UNet2DModel (conditional and latent models are not supported)."
        )
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).exists()), None)
    if weights is None:
        raise SideError(
            f"{folder} has config.json but no weights file ({' or '.join(WEIGHT_FILES)}): "
            "copy the weights next to config.json."
        )
    try:
        unet = UNet2DModel.from_config(config)
    except (TypeError, ValueError) as err:
        raise SideError(f"{folder / 'config.json'} is not a valid UNet2DModel config: {err}") from err
    state = _read_weights(weights)
    try:
        unet.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise SideError(
            f"The weights in {weights} do not fit the UNet described by config.json: {str(err)[:300]}"
        ) from err
    return unet, weights


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - safetensors and pickle raise many unrelated types
        raise SideError(
            f"Cannot read weights file {path} ({type(err).__name__}: {str(err)[:200]}): the file is "
            "corrupt or truncated; download or save it again."
        ) from err


def _load_scheduler(path: Path) -> DDPMScheduler:
    if not path.exists():
        raise SideError(f"{path} is missing: the model folder needs its scheduler config.")
    # Any DDPM-family schedule is expressed as a DDPMScheduler; the sampler converts it as needed.
    return DDPMScheduler.from_config(_read_config(path))


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
