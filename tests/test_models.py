"""Model loading: every layout, built and saved here, and every bad folder."""

import json
import shutil

import pytest
import torch
from conftest import save_pipeline, tiny_scheduler, tiny_unet
from safetensors.torch import save_file

from side_core.errors import SideError
from side_core.models import BUNDLED_MODELS, load_model


def test_pipeline_layout(tiny_model_dir):
    model = load_model(tiny_model_dir, device="cpu")
    assert model.layout == "pipeline"
    assert (model.channels, model.size) == (1, 8)
    assert model.scheduler.config.num_train_timesteps == 100
    expected = tiny_unet().state_dict()
    for name, tensor in model.unet.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_flat_layout_like_google_ddpm(tmp_path):
    """config.json + weights + scheduler_config.json in one folder, with .bin weights."""
    unet = tiny_unet(3, 16)
    unet.save_pretrained(tmp_path, safe_serialization=False)
    tiny_scheduler().save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.bin").exists()
    model = load_model(tmp_path, device="cpu")
    assert model.layout == "flat"
    assert (model.channels, model.size) == (3, 16)
    assert model.scheduler.config.num_train_timesteps == 100


def test_bare_unet_gets_default_scheduler(tmp_path, caplog):
    tiny_unet().save_pretrained(tmp_path)
    model = load_model(tmp_path, device="cpu")
    assert model.layout == "bare unet"
    assert model.scheduler.config.num_train_timesteps == 1000
    assert "no scheduler_config.json" in caplog.text


def test_three_channel_64px(tmp_path):
    save_pipeline(tmp_path / "rgb64", channels=3, size=64)
    model = load_model(tmp_path / "rgb64", device="cpu")
    assert (model.channels, model.size) == (3, 64)


def test_effective_scheduler_config_is_logged(tiny_model_dir, caplog):
    caplog.set_level("INFO")
    load_model(tiny_model_dir, device="cpu")
    assert "effective scheduler config" in caplog.text and "num_train_timesteps" in caplog.text


def test_missing_path_names_it(tmp_path):
    with pytest.raises(SideError, match="not a bundled model.*existing folder"):
        load_model(tmp_path / "nope" / "model")


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(SideError, match="not a diffusers model folder"):
        load_model(tmp_path)


def test_corrupt_weights(tmp_path):
    folder = save_pipeline(tmp_path / "m")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(SideError, match="corrupt or truncated"):
        load_model(folder)


def test_weights_that_do_not_fit_the_config(tmp_path):
    folder = save_pipeline(tmp_path / "m")
    save_file({"conv_in.weight": torch.zeros(1)}, str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(SideError, match="do not fit"):
        load_model(folder)


def test_conditional_unet_is_refused(tmp_path):
    folder = save_pipeline(tmp_path / "m")
    config_path = folder / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["_class_name"] = "UNet2DConditionModel"
    config_path.write_text(json.dumps(config))
    with pytest.raises(SideError, match="unconditional UNet2DModel"):
        load_model(folder)


def test_pipeline_without_unet_folder(tmp_path):
    folder = save_pipeline(tmp_path / "m")
    shutil.rmtree(folder / "unet")
    with pytest.raises(SideError, match="no unet/ folder"):
        load_model(folder)


def test_hub_id_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SideError, match="HF_HUB_OFFLINE"):
        load_model("google/ddpm-cifar10-32")


def test_pickle_weights_load_with_weights_only(tmp_path):
    """A .bin holding more than tensors (here a function) is refused, never unpickled."""
    unet = tiny_unet()
    unet.save_pretrained(tmp_path, safe_serialization=False)
    torch.save({"evil": print}, tmp_path / "diffusion_pytorch_model.bin")
    with pytest.raises(SideError, match="Refused to load .*Unsupported global"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", list(BUNDLED_MODELS))
def test_bundled_models_load_and_say_how_they_were_trained(name):
    model = load_model(name, "cpu")
    assert model.source == f"bundled:{name}" and model.fingerprint
    training = json.loads((BUNDLED_MODELS[name].folder / "training.json").read_text())
    assert training["command"].startswith("python -m side_core train")
    assert training["history"][-1]["step"] == training["steps"]  # the history ends at the bundled checkpoint
    assert training["data"]["channels"] == model.channels and training["data"]["size"] == model.size
