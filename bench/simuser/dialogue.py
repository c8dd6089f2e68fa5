"""(partner's turn, reply) pairs for the dialogue benchmark (``bench/simulated_user.py --dialogue FILE``).

Pure: reading and tidying only, so every rule is unit-tested. Two formats (docs/simulated_user.md, "Dialogue"):

* **TSV**: one pair a line, the partner's turn, one TAB, the reply (the shared DailyDialog file,
  ``../shared/data/dialogue/dailydialog-validation-pairs.txt``, is this format);
* **JSONL** (a ``.jsonl`` file, or one whose first non-blank line starts with ``{``): one object a line,
  ``{"turn": "...", "reply": "..."}`` (other keys are ignored).

Blank lines and lines starting with ``#`` are skipped. Any other malformed line stops the run with an
error naming the file and the line. Text is tidied the same way in both formats (:func:`tidy`):
DailyDialog's tokens stand apart (``one .``, ``don ’ t``), which no person writes.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DialogueFileError", "Pair", "read_pairs", "reply_words", "tidy"]


class DialogueFileError(ValueError):
    """A pairs file that cannot be read, with the file and line it is about."""


@dataclass(frozen=True)
class Pair:
    """One (partner's turn, reply) pair, tidied, and where it came from (1-based line)."""

    turn: str
    reply: str
    line: int

    @property
    def words(self) -> list[str]:
        """The words the simulated person writes (punctuation is the model's business: see reply_words)."""
        return reply_words(self.reply)

    @property
    def phrase(self) -> str:
        """The reply as the person writes it: its words, single spaces."""
        return " ".join(self.words)


#: A space before closing punctuation ("one ." -> "one."), after opening brackets/quotes is dropped.
_SPACE_BEFORE = re.compile(r"\s+([.,!?;:%)\]}…]+)(?=\s|$)")
_SPACE_AFTER = re.compile(r"([(\[{])\s+")
#: An apostrophe that DailyDialog spaces out ("don ’ t", "that ’ s", "I ' m"): glued back, as ASCII.
_APOSTROPHE = re.compile(r"(\w)\s*[’']\s*(s|t|m|re|ve|ll|d)\b", re.IGNORECASE)
#: A sentence glued to the one before ("far.Can you", a DailyDialog artefact): a space after its end.
_GLUED_SENTENCE = re.compile(r"([a-z])([.?!])([A-Z])")
#: Leading and trailing punctuation of a word (not the letters, digits or the apostrophe inside it).
_AROUND = re.compile(r"^[^\w]+|[^\w]+$")


def tidy(text: str) -> str:
    """Text as a person writes it: single spaces, closing punctuation glued to the word before,
    contractions glued (``don ’ t`` -> ``don't``), a sentence glued to the one before parted
    (``far.Can`` -> ``far. Can``). A no-op on ordinary text."""
    text = " ".join(text.split())
    text = _GLUED_SENTENCE.sub(r"\1\2 \3", text)
    text = _APOSTROPHE.sub(lambda m: f"{m.group(1)}'{m.group(2).lower()}", text)
    text = _SPACE_BEFORE.sub(r"\1", text)
    return _SPACE_AFTER.sub(r"\1", text)


def reply_words(reply: str) -> list[str]:
    """The words the person writes: ``reply`` split at spaces, the punctuation around each word left
    out, parts that are only punctuation dropped. ``"Yes, of course."`` -> ``["Yes", "of", "course"]``."""
    return [w for w in (_AROUND.sub("", part) for part in tidy(reply).split(" ")) if w]


def _jsonl(path: Path, first: str) -> bool:
    return path.suffix.lower() == ".jsonl" or first.lstrip().startswith("{")


def read_pairs(path: Path) -> list[Pair]:
    """Every pair of the file, in order (TSV or JSONL, above); ``DialogueFileError`` names the file and
    line of the first bad one. A pair whose reply has no word is bad too: there is nothing to write."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DialogueFileError(f"{path}: no such pairs file") from None
    except UnicodeDecodeError as exc:
        raise DialogueFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DialogueFileError(f"{path}: cannot be read ({exc.strerror})") from None
    lines = raw.splitlines()
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    as_json = _jsonl(path, first)
    pairs: list[Pair] = []
    for no, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{no}"
        if as_json:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DialogueFileError(f"{where}: not a JSON object ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DialogueFileError(f"{where}: expected an object {{\"turn\": ..., \"reply\": ...}}, "
                                        f"got {type(obj).__name__}")
            missing = [k for k in ("turn", "reply") if not isinstance(obj.get(k), str)]
            if missing:
                raise DialogueFileError(f"{where}: {' and '.join(repr(k) for k in missing)} missing or not a string")
            turn, reply = obj["turn"], obj["reply"]
        else:
            fields = line.split("\t")
            if len(fields) != 2:
                raise DialogueFileError(f"{where}: expected the partner's turn, one TAB, the reply; "
                                        f"found {len(fields) - 1} TAB(s)")
            turn, reply = fields
        pair = Pair(tidy(turn), tidy(reply), no)
        if not pair.turn:
            raise DialogueFileError(f"{where}: the partner's turn is empty")
        if not pair.words:
            raise DialogueFileError(f"{where}: the reply has no word to write ({reply.strip()!r})")
        pairs.append(pair)
    if not pairs:
        raise DialogueFileError(f"{path}: holds no pairs")
    return pairs
