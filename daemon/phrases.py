"""Quick phrases: a list the person or a caregiver edits, and the sentences the person writes most often.

The list is a TOML file (``[phrases] file``; by default ``phrases.toml`` beside the configuration file),
made with a few everyday phrases (0600) when it does not exist. Each phrase is ``id = "text"`` in its
``[phrases]`` table, in the order shown; an id is lower-case Latin letters, digits, ``_`` and ``-``
(it becomes the target ``phrase:<id>``, protocol 1.5)::

    [phrases]
    yes = "Yes."
    thank-you = "Thank you!"
    privet = "Привет!"

The file is read again whenever it changed, so a caregiver's edit shows at the next document or
the next selection. The frequent ones are counted from the store: the finished sentences of the
person's documents, written at least ``frequent_min`` times, the most frequent first; their ids are
``f-`` and a hash of the text, so an id means the same sentence however the list changes.
"""
from __future__ import annotations

import hashlib
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from razvilka.daemon.config import PhrasesConfig
from razvilka.daemon.errors import DaemonRefusal, ErrorCode
from razvilka.private import private_dir, write_private
from razvilka.protocol.messages import Phrase, PhrasesState
from razvilka.protocol.targets import is_phrase_id
from razvilka.sentences import sentence_ends

__all__ = ["DEFAULT_FILE", "PhraseBook", "frequent_phrases", "phrases_path", "read_quick"]

MAX_PHRASE_CHARS = 1000   # protocol Phrase.text
MAX_FREQUENT_CHARS = 120  # a longer sentence is no quick phrase

#: The file written when there is none: everyday phrases, English then Russian.
DEFAULT_FILE = """\
# razvilka quick phrases: shown as targets; one selection says the phrase (or writes it: [phrases] action).
# One phrase per line, id = "text", in the order shown. An id is lower-case Latin letters, digits, _ and -.
[phrases]
yes = "Yes."
no = "No."
thank-you = "Thank you!"
please = "Please."
wait = "Please wait, I am writing."
repeat-please = "Could you say that again?"
help = "I need help."
dont-know = "I don't know."
da = "Да."
net = "Нет."
spasibo = "Спасибо!"
podozhdite = "Подождите, я пишу."
"""


def phrases_path(config: PhrasesConfig, config_file: Path) -> Path:
    """The quick phrases' file: ``[phrases] file``, else ``phrases.toml`` beside the configuration file."""
    return Path(config.file).expanduser() if config.file else config_file.with_name("phrases.toml")


def _bad(path: Path, why: str) -> DaemonRefusal:
    return DaemonRefusal(ErrorCode.BAD_CONFIG, f"quick phrases {path}: {why}")


def read_quick(path: Path) -> list[Phrase]:
    """The phrases of the file (made with :data:`DEFAULT_FILE` if absent); a bad file is ``BAD_CONFIG``
    naming the file and the entry."""
    if not path.exists():
        if not path.parent.exists():  # a folder of its own: private; an existing one is left as it is
            private_dir(path.parent)
        try:
            write_private(path, DEFAULT_FILE)
        except OSError as exc:
            raise _bad(path, f"cannot be made: {exc}") from None
    try:
        tree = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(path, f"cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _bad(path, f"is not valid TOML: {exc}") from None
    table = tree.get("phrases", {})
    if not isinstance(table, dict):
        raise _bad(path, "[phrases] must be a table of id = \"text\"")
    out = []
    for pid, text in table.items():
        if not is_phrase_id(pid):
            raise _bad(path, f"id {pid!r}: use lower-case Latin letters, digits, _ and - (at most 57)")
        if not isinstance(text, str) or not text.strip():
            raise _bad(path, f"{pid}: the phrase must be non-empty text in quotes")
        if len(text) > MAX_PHRASE_CHARS:
            raise _bad(path, f"{pid}: longer than {MAX_PHRASE_CHARS} characters")
        out.append(Phrase(id=pid, text=text.strip(), kind="quick"))
    return out


def frequent_phrases(texts: Sequence[str], n: int, min_count: int, exclude: Sequence[str] = ()) -> list[Phrase]:
    """The ``n`` finished sentences written most often in ``texts`` (at least ``min_count`` times each),
    leaving out those in ``exclude`` (the quick phrases: shown already)."""
    if n <= 0:
        return []
    counts: Counter[str] = Counter()
    for text in texts:
        start = 0
        for end in sentence_ends(text):
            sentence = " ".join(text[start:end].split())
            start = end
            if sentence and len(sentence) <= MAX_FREQUENT_CHARS:
                counts[sentence] += 1
    skip = {" ".join(t.split()).casefold() for t in exclude}
    ranked = [(s, c) for s, c in counts.items() if c >= min_count and s.casefold() not in skip]
    ranked.sort(key=lambda sc: -sc[1])  # stable: equal counts keep their first-written order
    return [Phrase(id="f-" + hashlib.sha1(s.encode()).hexdigest()[:10], text=s, kind="frequent")
            for s, _ in ranked[:n]]


@dataclass
class PhraseBook:
    """The phrases shown now: the file's (read again when it changes) and the frequent ones."""

    path: Path
    quick: list[Phrase]
    frequent: list[Phrase]
    mtime_ns: int = 0

    @classmethod
    def load(cls, path: Path) -> PhraseBook:
        quick = read_quick(path)
        return cls(path, quick, [], path.stat().st_mtime_ns)

    def reread(self) -> bool:
        """Read the file again if it changed; True when the quick phrases changed."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        if mtime == self.mtime_ns:
            return False
        quick = read_quick(self.path)  # a bad edit raises: the old list stays
        self.mtime_ns = self.path.stat().st_mtime_ns
        changed = quick != self.quick
        self.quick = quick
        return changed

    def count(self, texts: Sequence[str], config: PhrasesConfig) -> bool:
        """Count the frequent sentences again; True when they changed."""
        frequent = frequent_phrases(texts, config.frequent, config.frequent_min, [p.text for p in self.quick])
        changed = frequent != self.frequent
        self.frequent = frequent
        return changed

    def find(self, phrase_id: str) -> Phrase:
        for phrase in (*self.quick, *self.frequent):
            if phrase.id == phrase_id:
                return phrase
        raise DaemonRefusal(ErrorCode.BAD_VALUE, f"no quick phrase {phrase_id!r} (phrases: "
                            + ", ".join(p.id for p in (*self.quick, *self.frequent)) + ")")

    def state(self) -> PhrasesState:
        return PhrasesState(phrases=[*self.quick, *self.frequent])
