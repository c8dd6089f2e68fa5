"""Settings by the person (protocol 1.5 ``config.update`` / ``config.state``) on the real daemon: a change
is checked by the typed configuration, saved to the person's file (0600, other keys and comments kept)
and applied at once (K of the next fork); a bad value, or a key that is not a setting, changes nothing
and is ``BAD_CONFIG`` naming the key."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from daemon_fixtures import StartDaemon, next_of

from razvilka.config import load_config
from razvilka.daemon.settings import SETTINGS, save, values
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import ConfigState, ConfigUpdate, DaemonError, ForkDecided, ForkOpen, Select

MINE = '# my settings\n[gating]\n# how many words\nk = 5\n\n[bus]\ntransport = "ipc"\n'


def test_every_setting_is_a_key_of_the_configuration() -> None:
    config = load_config(env={})
    assert set(values(config)) == set(SETTINGS)
    assert values(config)["gating.k"] == 8 and values(config)["speech.voices.en"] == ""


def test_saving_keeps_the_other_keys_and_the_comments(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MINE, encoding="utf-8")
    save(path, "gating.k", 3)
    save(path, "inputs.gaze.dwell_ms", 750)
    save(path, "speech.voices.ru", "ru")
    text = path.read_text(encoding="utf-8")
    assert text.startswith('# my settings\n[gating]\n# how many words\nk = 3\n')
    tree = tomllib.loads(text)
    assert tree == {"gating": {"k": 3}, "bus": {"transport": "ipc"}, "inputs": {"gaze": {"dwell_ms": 750}},
                    "speech": {"voices": {"ru": "ru"}}}
    assert path.stat().st_mode & 0o777 == 0o600
    config = load_config(path, env={})
    assert (config.gating.k, config.inputs.gaze.dwell_ms, config.speech.voices["ru"]) == (3, 750, "ru")


def test_a_file_that_cannot_be_edited_in_place_is_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('gating.k = 5\ninputs = {gaze = {rest_ms = 100.0}}\n', encoding="utf-8")
    save(path, "inputs.gaze.dwell_ms", 750)
    assert tomllib.loads(path.read_text(encoding="utf-8")) == {
        "gating": {"k": 5}, "inputs": {"gaze": {"rest_ms": 100.0, "dwell_ms": 750}}}


@pytest.mark.model
async def test_a_change_applies_to_the_next_fork_and_is_saved_a_bad_one_changes_nothing(
        start_daemon: StartDaemon, tmp_path: Path) -> None:
    path = tmp_path / "razvilka" / "config.toml"
    path.parent.mkdir(mode=0o700)
    path.write_text(MINE, encoding="utf-8")
    d = await start_daemon(build={"config_file": path})
    bus = await d.client("t", ["fork.", "config.state.", "daemon.error."])
    state = next(m.body for m in await bus.snapshot() if m.type == ConfigState.TYPE)  # retained
    assert isinstance(state, ConfigState) and state.values["gating.k"] == 5 and state.error == ""
    fork = await next_of(bus, ForkOpen, 60)
    assert len(fork.body.candidates) == 5
    bus.publish(ConfigUpdate(section="gating", key="k", value=3, source="settings-page"))
    state = (await next_of(bus, ConfigState, 10)).body
    assert state.values["gating.k"] == 3 and state.changed == "gating.k" and state.error == ""
    assert tomllib.loads(path.read_text(encoding="utf-8"))["gating"]["k"] == 3
    assert path.read_text(encoding="utf-8").startswith("# my settings\n")
    bus.publish(Select(index=0, source="t"), fork_id=fork.header.fork_id)
    await next_of(bus, ForkDecided, 30)
    assert len((await next_of(bus, ForkOpen, 60)).body.candidates) == 3  # the next fork has the new K
    before = path.read_text(encoding="utf-8")
    refused: list[tuple[str, str, int | str, str]] = [
        ("gating", "k", 0, ">= 1"), ("renderers.web", "theme", "pink", "enum"),
        ("bus", "transport", "tcp", "not a setting"), ("gating", "k", "many", "int")]
    for section, key, value, why in refused:
        bus.publish(ConfigUpdate(section=section, key=key, value=value, source="settings-page"))
        state = (await next_of(bus, ConfigState, 10)).body  # the refusal's state goes out first, then the error
        assert f"{section}.{key}" in state.error and state.values["gating.k"] == 3
        err = (await next_of(bus, DaemonError, 10)).body
        assert err.code == ErrorCode.BAD_CONFIG and f"{section}.{key}" in err.message and why in err.message
    assert path.read_text(encoding="utf-8") == before and d.config.gating.k == 3
    # the settings renderers apply: published, saved, the daemon only carries them
    bus.publish(ConfigUpdate(section="inputs.gaze", key="dwell_ms", value="900", source="settings-page"))
    state = (await next_of(bus, ConfigState, 10)).body
    assert state.values["inputs.gaze.dwell_ms"] == 900 and state.changed == "inputs.gaze.dwell_ms"
    assert load_config(path, env={}).inputs.gaze.dwell_ms == 900
