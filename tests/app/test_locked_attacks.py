"""What a student on another machine tries against a class server, each as a test: links inside an
allowed folder that lead out, invalid paths, many tabs holding the queue, and probes for what the
server holds. Real files, real symlinks, real tiny models; the locked visitor is the one
``access.decide`` makes for a network address, as the app does."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from conftest import save_pipeline, tiny_unet, write_images

from app_support import access, jobs, limits
from app_support.access import Access, decide, read_policy
from side_core.data import load_training_set
from side_core.errors import SideError
from side_core.models import load_model

from .helpers import button

STUDENT = "192.0.2.7"


@pytest.fixture
def school(tmp_path) -> dict[str, Path]:
    """A class folder the operator allows, with a real model and real images, and a private folder
    beside it with another real model (other weights) and other images."""
    allowed, private = tmp_path / "class", tmp_path / "private"
    save_pipeline(allowed / "model")
    write_images(allowed / "faces", 4)
    private_model = save_pipeline(private / "model")
    with torch.no_grad():  # other weights than the class model: a load tells the two apart
        unet = tiny_unet()
        for parameter in unet.parameters():
            parameter.add_(1.0)
        unet.save_pretrained(private_model / "unet", safe_serialization=True)
    write_images(private / "faces", 5, seed=1)
    return {"allowed": allowed, "private": private, "root": tmp_path}


def student(school, **environ) -> Access:
    return decide(read_policy({"SIDE_ALLOWED_DIRS": str(school["allowed"]), **environ}), STUDENT)


def weights(folder: Path) -> Path:
    return folder / "unet" / "diffusion_pytorch_model.safetensors"


# -- every file read on a locked visitor's behalf lies inside what is allowed ---------------------------


def test_a_folder_of_links_to_private_images_is_refused(school):
    leaky = school["allowed"] / "leaky"
    leaky.mkdir()
    for image in sorted((school["private"] / "faces").iterdir()):
        (leaky / image.name).symlink_to(image)
    with pytest.raises(SideError, match=r"leaky' holds 'img00\d.png', a link that leads outside") as err:
        student(school).allow(str(leaky), "data")
    assert "the operator can replace the link with a copy" in str(err.value)
    assert str(school["private"]) not in str(err.value)  # where it leads is not said

    # one link among real images is enough to refuse the folder
    mixed = shutil.copytree(school["allowed"] / "faces", school["allowed"] / "mixed")
    (mixed / "zzz.png").symlink_to(school["private"] / "faces" / "img000.png")
    with pytest.raises(SideError, match="holds 'zzz.png', a link that leads outside"):
        student(school).allow(str(mixed), "data")


def test_links_that_stay_inside_the_allowed_folders_are_read(school):
    inward = school["allowed"] / "inward"
    inward.mkdir()
    for image in sorted((school["allowed"] / "faces").iterdir()):
        (inward / image.name).symlink_to(image)
    (inward / "notes.txt").symlink_to(school["private"] / "faces" / "img000.png")  # not an image name: never read
    opened = student(school).allow(str(inward), "data")
    assert opened == str(inward.resolve())
    assert len(load_training_set(opened, 1, 8)) == 4


def test_a_model_whose_weights_file_links_to_a_private_model_is_refused(school):
    borrowed = shutil.copytree(school["allowed"] / "model", school["allowed"] / "borrowed")
    weights(borrowed).unlink()
    weights(borrowed).symlink_to(weights(school["private"] / "model"))
    # the attack would work: the loader follows the link and loads the private weights
    private, loaded = load_model(school["private"] / "model", "cpu"), load_model(borrowed, "cpu")
    assert loaded.fingerprint == private.fingerprint != load_model(school["allowed"] / "model", "cpu").fingerprint
    with pytest.raises(SideError, match="holds 'unet/diffusion_pytorch_model.safetensors', a link that leads outside"):
        student(school).allow(str(borrowed), "model")


def test_a_model_whose_subfolder_links_out_is_refused(school):
    borrowed = school["allowed"] / "borrowed"
    borrowed.mkdir()
    shutil.copy(school["allowed"] / "model" / "model_index.json", borrowed)
    shutil.copytree(school["allowed"] / "model" / "scheduler", borrowed / "scheduler")
    (borrowed / "unet").symlink_to(school["private"] / "model" / "unet", target_is_directory=True)
    with pytest.raises(SideError, match="holds 'unet', a link that leads outside"):
        student(school).allow(str(borrowed), "model")

    # a subfolder linked to another folder inside is followed, and what that holds is checked too
    inner = school["allowed"] / "unet-copy"
    shutil.copytree(school["allowed"] / "model" / "unet", inner)
    (borrowed / "unet").unlink()
    (borrowed / "unet").symlink_to(inner, target_is_directory=True)
    opened = student(school).allow(str(borrowed), "model")
    assert load_model(opened, "cpu").fingerprint == load_model(school["allowed"] / "model", "cpu").fingerprint
    (inner / "diffusion_pytorch_model.safetensors").unlink()
    (inner / "diffusion_pytorch_model.safetensors").symlink_to(weights(school["private"] / "model"))
    with pytest.raises(SideError, match="holds 'unet/diffusion_pytorch_model.safetensors', a link"):
        student(school).allow(str(borrowed), "model")


def test_a_broken_or_looping_link_in_a_model_folder_is_refused(school):
    model = school["allowed"] / "model"
    (model / "dangling.json").symlink_to(school["root"] / "gone.json")
    with pytest.raises(SideError, match="holds 'dangling.json'"):
        student(school).allow(str(model), "model")
    (model / "dangling.json").unlink()
    (model / "loop").symlink_to(model / "loop")
    with pytest.raises(SideError, match="holds 'loop'"):
        student(school).allow(str(model), "model")


def test_a_model_folder_too_large_to_check_is_refused(school, monkeypatch):
    monkeypatch.setattr(access, "MAX_MODEL_ENTRIES", 3)
    with pytest.raises(SideError, match="more than 3 files and folders, too many to check"):
        student(school).allow(str(school["allowed"] / "model"), "model")


def test_the_operator_is_not_checked_for_links(school):
    """Unlocked, the app opens what the operator types, links and all, as it always did."""
    operator = decide(read_policy({"SIDE_ALLOWED_DIRS": str(school["allowed"])}), "127.0.0.1")
    leaky = school["allowed"] / "leaky"
    leaky.mkdir()
    (leaky / "a.png").symlink_to(school["private"] / "faces" / "img000.png")
    assert operator.allow(str(leaky), "data") == str(leaky)


# -- invalid paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["faces\x00/../etc", "\x00", "default\x00", "google/ddpm\x00", "a\nb", "x\x7f"])
@pytest.mark.parametrize("locked", [True, False])
def test_a_control_character_in_a_field_is_a_clear_refusal(school, spec, locked):
    visitor = student(school) if locked else decide(read_policy({}), "127.0.0.1")
    for kind, what in (("model", "The model"), ("data", "The training set")):
        with pytest.raises(SideError, match=f"^{what} .* holds a control character") as err:
            visitor.allow(spec, kind)
        assert "\x00" not in str(err.value)  # shown escaped, as repr writes it


def test_a_nul_byte_in_the_app_is_a_message_not_a_traceback(open_app):
    at = open_app()
    at.text_input[0].set_value("assets/models\x00/faces100")
    at.text_input[1].set_value("/etc\x00")
    button(at, "Open").click().run()
    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert "holds a control character (such as a NUL byte)" in message


def test_other_invalid_paths_are_refused_like_any_path(school):
    for spec in ("x" * 5000, "\udcff/model", "/" + "a/" * 3000):
        with pytest.raises(SideError, match="is not a training set this shared server offers"):
            student(school).allow(spec, "data")


# -- no probing ------------------------------------------------------------------------------------------


def test_a_relative_path_reads_the_same_whether_or_not_it_exists(school, monkeypatch):
    """'owner/name' is a hub id by its form; whether a folder of that name exists on the server
    (relative to where it runs) changes nothing in the answer."""
    monkeypatch.chdir(school["root"])
    answers = {}
    for spec in ("private/faces", "private/none", "./private/faces", "./private/none", "private", "nothing"):
        for kind in ("model", "data"):
            with pytest.raises(SideError) as err:
                student(school).allow(spec, kind)
            answers[spec, kind] = str(err.value).replace(spec, "SPEC")
    for kind in ("model", "data"):
        assert answers["private/faces", kind] == answers["private/none", kind]
        assert answers["./private/faces", kind] == answers["./private/none", kind]
        assert answers["private", kind] == answers["nothing", kind]
    assert "is a hub id" in answers["private/faces", "model"]


def test_a_locked_visitor_sees_no_operator_configuration_error(school, caplog):
    environ = {
        "SIDE_ALLOWED_DIRS": f"{school['allowed']}:{school['root'] / 'secret-plans'}",
        "SIDE_MAX_SESSION_WORK": "lots",
        "SIDE_MAX_RUNS_GB": "-1",
    }
    env_problems = ("SIDE_N_DATA='x' is not a positive whole number, so it is ignored: set e.g. SIDE_N_DATA=40.",)
    policy = read_policy(environ)
    assert len(policy.problems) == 3
    operator = decide(policy, "127.0.0.1")
    assert operator.problems(env_problems) == (*env_problems, *policy.problems)  # each named, with its fix
    assert operator.shows_server_paths()

    locked = decide(policy, STUDENT)
    with caplog.at_level(logging.WARNING, logger="app_support.access"):
        shown = locked.problems(env_problems)
        again = locked.problems(env_problems)
    assert shown == again == (access.SETTINGS_NOTICE,)
    assert "secret-plans" not in access.SETTINGS_NOTICE and "SIDE_" not in access.SETTINGS_NOTICE
    logged = [record.getMessage() for record in caplog.records]
    assert any("secret-plans" in line for line in logged)  # the operator finds it in the log
    assert sum("SIDE_N_DATA" in line for line in logged) == 1  # once per server, not per rerun
    assert not locked.shows_server_paths()
    assert decide(read_policy({}), STUDENT).problems(()) == ()  # nothing wrong: no notice


# -- the queue is shared fairly -----------------------------------------------------------------------------


def test_one_visitors_tabs_take_turns_with_everyone_else():
    """Three tabs of one student queued first; a second student's job runs after the first tab's,
    not after all three."""
    queue = jobs.JobQueue()
    tabs = [queue.join("Generate and cluster", 100, f"tab{i}", STUDENT) for i in range(3)]
    other = queue.join("Guided", 10, "other tab", "198.51.100.4")
    late = queue.join("Guided", 10, "late tab", "203.0.113.9")
    assert queue.wait_turn(tabs[0], timeout=0)
    assert queue.order() == [tabs[0], other, late, tabs[1], tabs[2]]
    assert queue.wait_message(other).startswith("Queued: position 2 of 5")
    assert queue.wait_message(tabs[2]).startswith("Queued: position 5 of 5")
    queue.leave(tabs[0], finished=True)
    assert not queue.wait_turn(tabs[1], timeout=0)  # the student just had a turn
    assert queue.wait_turn(other, timeout=0)
    queue.leave(other, finished=True)
    assert queue.wait_turn(late, timeout=0)
    queue.leave(late, finished=True)
    assert queue.order() == [tabs[1], tabs[2]]
    assert queue.wait_turn(tabs[1], timeout=0)


def test_the_work_cap_counts_every_tab_of_one_address():
    queue = jobs.JobQueue()
    visitor = decide(read_policy({}), STUDENT)
    caps = visitor.limits
    assert caps.visitor_work == limits.DEFAULT_VISITOR_WORK
    job = 0.4 * caps.visitor_work  # within the session cap, for each tab
    for tab in ("tab0", "tab1"):
        limits.check_work(
            caps, job, queue.queued_units(owner=tab), queue.queued_units(visitor=visitor.visitor_key(tab))
        )
        queue.join("Generate and cluster", job, tab, visitor.visitor_key(tab))
    with pytest.raises(SideError, match="one visitor address may queue at most 500,000") as err:
        limits.check_work(caps, job, queue.queued_units(owner="tab2"), queue.queued_units(visitor=STUDENT))
    assert "your address (all your tabs together)" in str(err.value) and "SIDE_MAX_VISITOR_WORK=1000000" in str(err)
    # another student is not held back by this one's tabs
    limits.check_work(caps, job, 0.0, queue.queued_units(visitor="198.51.100.4"))
    # 0 lifts the cap; a bad value falls back with a message
    assert limits.read_limits({"SIDE_MAX_VISITOR_WORK": "0"})[0].visitor_work is None
    fallback, problems = limits.read_limits({"SIDE_MAX_VISITOR_WORK": "many"})
    assert fallback.visitor_work == limits.DEFAULT_VISITOR_WORK and problems[0].startswith("SIDE_MAX_VISITOR_WORK=")


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # the same machine over IPv4 or mapped IPv6
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),  # one machine draws many addresses from its /64
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        (None, "session abc"),  # unknown: each session on its own
    ],
)
def test_a_visitor_is_counted_by_address(address, key):
    assert decide(read_policy({}), address).visitor_key("abc") == key


def test_in_the_app_a_locked_visitor_sees_neither_the_run_store_nor_the_operators_errors(
    open_app, monkeypatch, tmp_path
):
    monkeypatch.setenv("SIDE_ALLOWED_DIRS", str(tmp_path / "secret-plans"))  # no such folder
    monkeypatch.setenv("SIDE_N_DATA", "x")
    monkeypatch.setenv("SIDE_LOCKED", "1")
    at = open_app()
    assert [e.value for e in at.error] == [access.SETTINGS_NOTICE]
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "Run store" not in sidebar and str(tmp_path / "runs") not in sidebar and "secret-plans" not in sidebar

    monkeypatch.setenv("SIDE_LOCKED", "0")  # the operator sees each problem, with its fix, and the run store
    at.run()
    errors = [e.value for e in at.error]
    assert any("secret-plans" in e for e in errors) and any(e.startswith("SIDE_N_DATA='x'") for e in errors)
    assert any(c.value.startswith("Run store:") for c in at.sidebar.caption)
