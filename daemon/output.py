"""The text leaves the daemon: spoken aloud, copied to the clipboard, typed into the focused window.

The daemon holds the text, so it runs these itself (protocol 1.5 commands ``speak``, ``repeat``,
``stop_speaking``, ``copy``, ``typeout``, and the quick phrases). The programs are razvilka/speech.py,
razvilka/clipboard.py and razvilka/typer.py; this component only decides what text goes and runs the
slow parts off the event loop. Every failure is an :class:`~razvilka.outtools.OutputError` (a missing
program names its Debian package, the text is kept in a private file), which the service publishes as
``daemon.error``: the daemon keeps serving, the document is untouched.

``speech.each_sentence``: each sentence is said as soon as it is finished (razvilka/sentences.py), queued
behind what is being said.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Literal

from razvilka.clipboard import copy_text
from razvilka.config import Config
from razvilka.outtools import ErrorCode, OutputError
from razvilka.sentences import SentenceWatcher, split_sentences
from razvilka.speech import Speaker
from razvilka.typer import type_text

__all__ = ["Output", "OutputError", "what_to_say"]

log = logging.getLogger("razvilka.daemon.output")


def what_to_say(text: str, document: str) -> str:
    """``speak``'s ``text``: "" or "sentence" = the document's last sentence (finished or not), "all" = the
    whole document, anything else = that text."""
    if text in ("", "sentence"):
        sentences = split_sentences(document)
        return sentences[-1] if sentences else ""
    if text == "all":
        return document.strip()
    return text.strip()


class Output:
    """Speech and text-out for one daemon. ``config`` is the daemon's running configuration: a setting
    changed in place (``speech.rate``) applies to the next utterance. ``env``: the environment the
    programs run in (the desktop, the audio server, PATH)."""

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = dict(os.environ if env is None else env)
        self._speaker: Speaker | None = None
        self._engine = ""
        self.watcher = SentenceWatcher()

    # ------------------------------------------------------------------ speech
    def speaker(self) -> Speaker:
        """The speaker, made on first use (and again if ``speech.engine`` changed); a missing engine raises."""
        speech = self.config.speech
        if self._speaker is None or self._engine != speech.engine:
            if self._speaker is not None:
                self._speaker.close()
                self._speaker = None
            self._speaker = Speaker(speech, env=self.env)
            self._engine = speech.engine
        self._speaker.config = speech
        return self._speaker

    def speak(self, text: str, *, interrupt: bool = True) -> str:
        """Say ``text``; returns it. Nothing to say is a ``BAD_COMMAND`` saying so."""
        if not text.strip():
            raise OutputError(ErrorCode.BAD_COMMAND, "speak: there is nothing to say, the text is empty")
        self.speaker().speak(text, interrupt=interrupt)
        return text

    def repeat(self) -> str:
        speaker = self.speaker()
        if not speaker.repeat():
            raise OutputError(ErrorCode.BAD_COMMAND, "repeat: nothing was said yet")
        return speaker.last

    def stop(self) -> None:
        if self._speaker is not None:
            self._speaker.stop()

    def watch_from(self, document: str) -> None:
        """A document opened (or resumed) with this text: only sentences finished from now on are said."""
        self.watcher = SentenceWatcher()
        self.watcher.feed(document)

    def finished(self, document: str) -> list[str]:
        """The sentences finished since the last call; with ``speech.each_sentence`` they are queued to be said."""
        done = self.watcher.feed(document)
        if done and self.config.speech.each_sentence:
            for sentence in done:
                self.speaker().speak(sentence, interrupt=False)
        return done

    # ------------------------------------------------------------------ text out
    async def send(self, how: Literal["copy", "typeout"], text: str) -> str:
        """Copy ``text`` to the clipboard or type it into the focused window (off the event loop: typing a
        long text takes seconds); returns the program used."""
        if not text.strip():
            raise OutputError(ErrorCode.BAD_COMMAND, f"{how}: there is no text to send")
        send = copy_text if how == "copy" else type_text
        return await asyncio.to_thread(send, text, self.config.textout, self.env)

    def close(self) -> None:
        if self._speaker is not None:
            self._speaker.close()
            self._speaker = None
