"""``razvilka say TEXT``: speak the text with the configured voice, or write it to a WAV file
(``--wav FILE``) to check a voice; docs/speech.md."""
from __future__ import annotations

import argparse
import sys

from razvilka.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("say", help="speak TEXT with the configured voice, or write it to a WAV file")
    p.add_argument("text", nargs="+", help="what to say (\"-\": read it from standard input)")
    p.add_argument("--wav", metavar="FILE", help="write the speech to this WAV file instead of speaking")
    p.set_defaults(handler=run)


def run(config: Config, args: argparse.Namespace) -> int:
    from razvilka.outtools import OutputError
    from razvilka.speech import Speaker, render_wav

    text = sys.stdin.read() if args.text == ["-"] else " ".join(args.text)
    try:
        if args.wav:
            for u in render_wav(text, config.speech, args.wav):
                print(f"{u.voice or u.language} ({u.language}): {u.text}", file=sys.stderr)
            return 0
        with Speaker(config.speech) as speaker:  # Ctrl-C closes it: the speech stops
            speaker.speak(text)
            speaker.wait()
        return 0
    except OutputError as exc:
        print(f"razvilka say: {exc}", file=sys.stderr)
        return 1
