"""The locked mode of a shared server and the caps locked visitors meet: who counts as local, what a
locked visitor may open (paths resolved before they are checked), and the refusals' messages."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path

import psutil  # installed with accelerate
import pytest
from playwright.sync_api import expect, sync_playwright

from app_support import access, limits, state
from app_support.access import LOOPBACK, Policy, decide, is_loopback, read_policy
from benchmarks.app_server import app_server
from side_core.errors import SideError
from side_core.models import BUNDLED_MODELS

from .helpers import TINY, button, metrics
from .test_browser import CHROMIUM, CHROMIUM_ARGS, START_TIMEOUT_S, STEP_TIMEOUT_MS, settle


@pytest.mark.parametrize("address", [LOOPBACK, "127.0.0.1", "127.4.5.6", "::1", "::ffff:127.0.0.1"])
def test_loopback_addresses_are_the_servers_own_machine(address):
    assert is_loopback(address)
    assert not decide(Policy(), address).locked


@pytest.mark.parametrize("address", ["192.0.2.7", "10.0.0.2", "fd00::2", "2001:db8::1", "::ffff:10.0.0.2", "", "x"])
def test_other_addresses_are_locked_by_default(address):
    assert not is_loopback(address)
    visitor = decide(Policy(), address)
    assert visitor.locked and visitor.limits == Policy().limits


def test_an_unknown_address_is_locked_not_trusted():
    assert is_loopback(None) is False
    assert decide(Policy(), None).locked


def test_the_operator_switch_overrides_the_address():
    assert not decide(read_policy({"SIDE_LOCKED": "0"}), "192.0.2.7").locked
    assert decide(read_policy({"SIDE_LOCKED": "1"}), "127.0.0.1").locked
    assert decide(read_policy({"SIDE_LOCKED": "auto"}), "192.0.2.7").locked
    assert decide(read_policy({}), "127.0.0.1").limits is None  # the operator is not capped


def test_bad_operator_values_fall_back_with_a_message(tmp_path):
    policy = read_policy(
        {
            "SIDE_LOCKED": "maybe",
            "SIDE_ALLOWED_DIRS": os.pathsep.join([str(tmp_path / "missing"), "", str(tmp_path)]),
            "SIDE_MAX_SESSION_WORK": "lots",
        }
    )
    assert policy.mode == "auto" and policy.allowed_dirs == (tmp_path.resolve(),)
    locked, missing, work = policy.problems
    assert locked.startswith("SIDE_LOCKED='maybe'") and "SIDE_LOCKED=1" in locked
    assert "SIDE_ALLOWED_DIRS" in missing and "missing" in missing
    assert work.startswith("SIDE_MAX_SESSION_WORK='lots'") and policy.limits.session_work == limits.DEFAULT_SESSION_WORK


@pytest.fixture
def disk(tmp_path) -> dict[str, Path]:
    """An allowed folder with a model folder and an image folder, a secret folder beside it, and
    symlinks from inside the allowed folder to the secret one and back inside."""
    allowed, secret = tmp_path / "class", tmp_path / "secret"
    (allowed / "model").mkdir(parents=True)
    (allowed / "model" / "model_index.json").write_text("{}")
    (allowed / "faces").mkdir()
    (allowed / "faces" / "a.png").write_bytes(b"")
    (allowed / "empty").mkdir()
    secret.mkdir()
    (secret / "b.png").write_bytes(b"")
    (allowed / "escape").symlink_to(secret, target_is_directory=True)
    (tmp_path / "inward").symlink_to(allowed / "faces", target_is_directory=True)
    return {"allowed": allowed, "secret": secret, "root": tmp_path}


def locked_visitor(disk, **environ) -> access.Access:
    return decide(read_policy({"SIDE_ALLOWED_DIRS": str(disk["allowed"]), **environ}), "192.0.2.7")


def test_a_locked_visitor_opens_bundled_models_and_allowed_folders_only(disk):
    visitor = locked_visitor(disk)
    assert visitor.allow("default", "model") == "default"
    assert visitor.allow("faces40", "model") == "faces40"
    assert visitor.allow(" default ", "data") == "default"
    faces = disk["allowed"] / "faces"
    assert visitor.allow(str(faces), "data") == str(faces.resolve())
    # '..' and symlinks are resolved first: what is checked is what would be read
    assert visitor.allow(str(disk["allowed"] / "empty" / ".." / "faces"), "data") == str(faces.resolve())
    assert visitor.allow(str(disk["root"] / "inward"), "data") == str(faces.resolve())
    for outside in [disk["secret"], disk["allowed"] / "escape", disk["allowed"] / ".." / "secret", Path("/etc")]:
        with pytest.raises(SideError, match="not a training set this shared server offers") as err:
            visitor.allow(str(outside), "data")
        assert "SIDE_ALLOWED_DIRS" in str(err.value) and "SIDE_LOCKED=0" in str(err.value)
        assert "you connect from 192.0.2.7" in str(err.value)


def test_a_missing_path_reads_like_any_other_refusal(disk):
    """A locked visitor cannot probe the disk: an existing and a missing folder outside are refused
    with the same words."""
    visitor = locked_visitor(disk)
    messages = []
    for path in (disk["secret"], disk["root"] / "no-such-folder"):
        with pytest.raises(SideError) as err:
            visitor.allow(str(path), "data")
        messages.append(str(err.value).replace(str(path), "PATH"))
    assert messages[0] == messages[1]


def test_a_symlink_loop_is_refused(disk):
    loop = disk["allowed"] / "loop"
    loop.symlink_to(loop)
    with pytest.raises(SideError, match="not a model"):
        locked_visitor(disk).allow(str(loop), "model")


def test_a_hub_id_is_refused_when_locked_and_passed_on_when_unlocked(disk):
    with pytest.raises(SideError, match="'google/ddpm-cifar10-32' is a hub id") as err:
        locked_visitor(disk).allow("google/ddpm-cifar10-32", "model")
    assert "download it into a folder listed in SIDE_ALLOWED_DIRS" in str(err.value)
    operator = decide(read_policy({}), "::1")
    assert operator.allow("google/ddpm-cifar10-32", "model") == "google/ddpm-cifar10-32"
    assert operator.allow(str(disk["secret"]), "data") == str(disk["secret"])  # as typed: the app as it was


def test_what_the_operator_started_with_is_allowed(disk):
    visitor = locked_visitor(disk, SIDE_MODEL="google/ddpm-cifar10-32", SIDE_DATA=str(disk["secret"]))
    assert visitor.allow("google/ddpm-cifar10-32", "model") == "google/ddpm-cifar10-32"
    assert visitor.allow(str(disk["secret"]), "data") == str(disk["secret"])
    with pytest.raises(SideError):
        visitor.allow(str(disk["secret"] / ".." / "secret"), "model")


def test_the_pickers_offer_named_and_allowed_folders(disk):
    visitor = locked_visitor(disk)
    allowed = disk["allowed"].resolve()
    assert visitor.choices("model") == [*BUNDLED_MODELS, str(allowed / "model")]
    # the escape symlink leads to a folder of images, and is not offered
    assert visitor.choices("data") == ["default", str(allowed / "faces")]


def test_the_session_cap_names_its_variable():
    cap = limits.Limits(session_work=1000, runs_gb=None)
    limits.check_work(cap, 600, session_queued=400)
    with pytest.raises(SideError, match="one session may queue at most 1,000") as err:
        limits.check_work(cap, 600, session_queued=401)
    assert "on top of the 401" in str(err.value) and "SIDE_MAX_SESSION_WORK=2000" in str(err.value)
    limits.check_work(limits.Limits(session_work=None, visitor_work=None), 10**12)
    assert limits.read_limits({"SIDE_MAX_SESSION_WORK": "0"})[0].session_work is None


def test_the_run_store_cap_counts_the_bytes_under_the_runs_folder(tmp_path):
    runs = tmp_path / "runs"
    (runs / "stage").mkdir(parents=True)
    (runs / "stage" / "a.npy").write_bytes(b"x" * 3000)
    (runs / "b.json").write_bytes(b"y" * 1000)
    (runs / "outside").symlink_to(tmp_path)  # not followed: counted as a link, not as what it points to
    assert limits.folder_bytes(runs) == 4000
    assert limits.folder_bytes(tmp_path / "missing") == 0
    limits.check_run_store(limits.Limits(runs_gb=4000 / limits.GB), runs)
    with pytest.raises(SideError, match="holds 0.00 GB, more than the 3.9e-06 GB") as err:
        limits.check_run_store(limits.Limits(runs_gb=3900 / limits.GB), runs)
    assert "SIDE_MAX_RUNS_GB" in str(err.value) and str(runs) in str(err.value)


# -- in the app ---------------------------------------------------------------------------------------
@pytest.fixture
def locked_app(open_app, monkeypatch, tmp_path, tiny_data_dir):
    """The app as a visitor whose address the server does not know sees it (AppTest has no browser
    connection, so SIDE_LOCKED=auto locks it), with an allowed folder holding a copy of the tiny
    images and a symlink that leads back out to them."""
    allowed, secret = tmp_path / "class", tmp_path / "secret"
    shutil.copytree(tiny_data_dir, allowed / "faces")
    shutil.copytree(tiny_data_dir, secret)
    (allowed / "escape").symlink_to(secret, target_is_directory=True)
    monkeypatch.setenv("SIDE_LOCKED", "auto")
    monkeypatch.setenv("SIDE_ALLOWED_DIRS", str(allowed))
    return open_app(), allowed, secret


def test_a_locked_visitor_picks_among_what_the_server_offers(locked_app, tiny_model_dir, tiny_data_dir):
    """AppTest cannot type a new option into a select box (a browser can: test_a_visitor_on_the_network_*
    below), so here the locked pickers' offers are checked, and an allowed folder opened."""
    at, allowed, secret = locked_app
    assert any(c.value.startswith(":material/lock: Locked: the server cannot tell") for c in at.sidebar.caption)
    assert not at.text_input  # pickers, not free text
    model, data = at.selectbox
    # what is open first, then the bundled ones and the operator's, then the allowed folders
    assert model.options == [str(tiny_model_dir), *BUNDLED_MODELS]
    assert data.options == [str(tiny_data_dir), "default", str((allowed / "faces").resolve())]
    data.set_value(str((allowed / "faces").resolve()))
    button(at, "Open").click().run()
    assert not at.exception and not at.error
    assert any(c.value.startswith(f"12 images from {(allowed / 'faces').resolve()}") for c in at.caption)


def test_the_operator_on_an_unlocked_server_types_any_path(open_app, monkeypatch, tmp_path, tiny_data_dir):
    shutil.copytree(tiny_data_dir, tmp_path / "anywhere")
    monkeypatch.setenv("SIDE_LOCKED", "0")
    at = open_app()
    assert any(c.value.startswith(":material/lock_open: Unlocked for every visitor") for c in at.sidebar.caption)
    at.text_input[1].set_value(str(tmp_path / "anywhere"))
    button(at, "Open").click().run()
    assert not at.exception and not at.error
    assert any(c.value.startswith(f"12 images from {tmp_path / 'anywhere'}") for c in at.caption)


def test_a_locked_visitors_job_meets_the_caps_and_the_operators_does_not(open_app, monkeypatch, app_env):
    monkeypatch.setenv("SIDE_LOCKED", "1")
    monkeypatch.setenv("SIDE_MAX_SESSION_WORK", "100")  # the job: 40 samples x 25 steps = 1,000 units
    at = open_app(page=state.CLUSTER_PAGE, config=replace(TINY, n_syn=40))
    button(at, "Generate and cluster").click().run()
    assert not at.exception
    (refusal,) = [e.value for e in at.error]
    assert refusal.startswith("This job is 1,000 units of work") and "SIDE_MAX_SESSION_WORK" in refusal
    assert not list(app_env.rglob("*.safetensors"))  # refused before any work

    monkeypatch.setenv("SIDE_MAX_SESSION_WORK", "0")
    monkeypatch.setenv("SIDE_MAX_RUNS_GB", str(10 / limits.GB))  # 10 bytes: the store is over it already
    app_env.mkdir(parents=True, exist_ok=True)
    (app_env / "old.bin").write_bytes(b"x" * 11)
    button(at, "Generate and cluster").click().run()
    (refusal,) = [e.value for e in at.error]
    assert "holds 0.00 GB, more than the 1e-08 GB" in refusal and "SIDE_MAX_RUNS_GB" in refusal

    monkeypatch.setenv("SIDE_LOCKED", "0")  # the operator: no caps
    button(at, "Generate and cluster").click().run()
    assert not at.exception and not at.error
    assert metrics(at)["Samples N_syn"] == "40"


# -- in a real browser, from a real address ---------------------------------------------------------------
def network_address() -> str | None:
    """An IPv4 address of this machine other than loopback: a connection to it from here has it as its
    peer, as a student's connection has theirs (the traffic never leaves the machine)."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET:
                ip = ipaddress.ip_address(address.address)
                if not (ip.is_loopback or ip.is_link_local):
                    return address.address
    return None


def type_into(page, label: str, text: str) -> None:
    """Type into a select box that accepts new options (the locked pickers), or into a text field."""
    field = page.locator(f'input[aria-label="{label}"]')
    field.click()
    field.fill(text)
    if field.get_attribute("role") == "combobox":
        page.get_by_role("option", name=f"Add: {text}").click()


def press_open(page) -> None:
    page.locator('[data-testid$="FormSubmit"]').filter(has_text="Open").click()  # the select boxes have "Open" too
    settle(page)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian's chromium is not installed at {CHROMIUM}")
def test_a_visitor_on_the_network_is_refused_and_the_operator_on_loopback_is_not(
    tiny_model_dir, tiny_data_dir, tiny_store, tmp_path
):
    """One server listening on every interface, as `streamlit run app.py` does, in SIDE_LOCKED=auto:
    opened through this machine's network address the app is locked; through 127.0.0.1 it is not."""
    lan = network_address()
    if lan is None:
        pytest.skip("this machine has no network address besides loopback to connect from")
    secret = shutil.copytree(tiny_data_dir, tmp_path / "secret")
    (tmp_path / "class").mkdir()
    settings = {
        "SIDE_MODEL": str(tiny_model_dir),
        "SIDE_DATA": str(tiny_data_dir),
        "SIDE_RUNS": str(tmp_path / "runs"),
        "SIDE_STORE": str(tiny_store),
        "SIDE_THREADS": "1",
        "SIDE_ALLOWED_DIRS": str(tmp_path / "class"),
    }
    log = tmp_path / "streamlit.log"
    try:
        with (
            # every interface, as a plain `streamlit run app.py`: reachable through the network address too
            app_server(settings, address="0.0.0.0", log_path=log, start_timeout_s=START_TIMEOUT_S) as server,
            sync_playwright() as p,
        ):
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                student = browser.new_page()
                student.set_default_timeout(STEP_TIMEOUT_MS)
                student.goto(f"http://{lan}:{server.port}")
                student.get_by_text("Image size").wait_for()
                sidebar = student.get_by_test_id("stSidebar")
                expect(sidebar.get_by_text(f"Locked: you connect from {lan}")).to_be_visible()
                type_into(student, "Model", "google/ddpm-cifar10-32")
                press_open(student)
                expect(student.get_by_text("'google/ddpm-cifar10-32' is a hub id")).to_be_visible()
                student.reload()  # a fresh session: the refused model is no longer in the form
                student.get_by_text("Image size").wait_for()
                type_into(student, "Training set", str(secret))
                press_open(student)
                expect(
                    student.get_by_text(f"'{secret}' is not a training set this shared server offers")
                ).to_be_visible()
                expect(student.get_by_test_id("stException")).to_have_count(0)

                teacher = browser.new_page()
                teacher.set_default_timeout(STEP_TIMEOUT_MS)
                teacher.goto(server.url)  # through 127.0.0.1
                teacher.get_by_text("Image size").wait_for()
                expect(
                    teacher.get_by_test_id("stSidebar").get_by_text("Unlocked: you are on the server's own machine")
                ).to_be_visible()
                type_into(teacher, "Training set", str(secret))
                press_open(teacher)
                expect(teacher.get_by_text(f"12 images from {secret}")).to_be_visible()
                expect(teacher.get_by_test_id("stException")).to_have_count(0)
            finally:
                for i, context in enumerate(browser.contexts):  # for a failing run
                    context.pages[0].screenshot(path=str(tmp_path / f"last_state_{i}.png"))
                browser.close()
    finally:
        print(log.read_text()[-3000:])
