"""The ``[speech]`` and ``[textout]`` sections of the configuration (docs/speech.md)."""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec

#: script of a sentence -> its language, unless ``[speech] languages`` names another one
DEFAULT_LANGUAGES: dict[str, str] = {"latin": "en", "cyrillic": "ru"}


def _default_languages() -> dict[str, str]:
    return dict(DEFAULT_LANGUAGES)


class SpeechConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Speaking the text aloud, always through a local engine (razvilka/speech.py), never a network service."""

    engine: Literal["auto", "speech-dispatcher", "espeak-ng"] = "auto"
    # ^ auto: speech-dispatcher when its server answers on its socket, else espeak-ng
    languages: dict[str, str] = msgspec.field(default_factory=_default_languages)
    # ^ script of a sentence ("latin", "cyrillic") -> the language it is spoken in; a script not
    #   listed keeps its default (so `--set speech.languages.latin=de` leaves Cyrillic Russian)
    voices: dict[str, str] = msgspec.field(default_factory=dict)
    # ^ language -> voice name (espeak-ng: "en-us", "ru"; speech-dispatcher: a synthesis voice);
    #   a language not listed gets the engine's own voice for it
    variant: str = ""               # espeak-ng voice variant, e.g. "f3" (a female voice); "" = none
    rate: Annotated[int, msgspec.Meta(ge=80, le=450)] = 175     # words per minute
    pitch: Annotated[int, msgspec.Meta(ge=0, le=99)] = 50       # 50 = the voice's own pitch
    volume: Annotated[int, msgspec.Meta(ge=0, le=200)] = 100    # percent of normal loudness
    each_sentence: bool = False     # the daemon says each sentence as soon as it is finished


class TextOutConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Sending the text on: to the clipboard, or typed into the window that has focus (razvilka/clipboard.py,
    razvilka/typer.py)."""

    clipboard: Literal["auto", "xclip", "xsel", "wl-copy"] = "auto"
    # ^ auto: wl-copy when WAYLAND_DISPLAY is set, else xclip (or xsel) when DISPLAY is set
    typer: Literal["auto", "xdotool", "wtype"] = "auto"
    # ^ auto: wtype when WAYLAND_DISPLAY is set, else xdotool when DISPLAY is set
    type_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 12  # between typed characters
    kept_dir: str = ""              # where text that could not be sent is kept; "" = $XDG_DATA_HOME/razvilka/kept
