"""The generation engine: whole-word forks, batched look-ahead, pre-generation, above an ``LMBackend``.

Why it is built this way (docs/engine.md; when to fork: docs/gating.md; the seam: daemon/backend.py):

* **Above the seam, razvilka's own.** Growing tokens into words and merging them, the prefix
  constraint, bias and masks, look-ahead bookkeeping, pre-generation and the caches live here. The
  model lives below, behind ``LMBackend`` (daemon/backends/: the embedded llama.cpp one by default),
  which only answers "the row after these token paths" and "the token ``choose`` picks after them".
* **Rows are expensive.** Gemma's vocabulary has 262,144 tokens, so each logits row costs about as
  much as the transformer itself. Rows are cached by their token path and a cached row is never
  recomputed: the row after a candidate word *is* the next fork's distribution, so ``after`` and the
  first look-ahead step reuse it. All paths of one level go to the backend in one call (one batch).
* **Words, not tokens.** Candidates are grown until the model's next token starts something else
  (daemon/words.py decides which tokens continue a word); token paths that spell the same word merge.
  From top-N rows (a server's backend) the mass the rows do not show is carried and stated.

Not thread-safe by design: the daemon calls it from its single engine thread. Only the ``abort``
events may be set from other threads.
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from razvilka.daemon.backend import Aborted, Capabilities, ContextFull, LMBackend, Row, TopRow
from razvilka.daemon.backends import open_backend
from razvilka.daemon.backends.gguf import check_gguf, embedded_model_path
from razvilka.daemon.config import ModelConfig
from razvilka.daemon.errors import DaemonRefusal
from razvilka.daemon.words import Kind, Vocab, display_word, joins, lstrip_space, trim_to_words
from razvilka.protocol.errors import ErrorCode

__all__ = ["Aborted", "ContextFull", "Engine", "LetterDistribution", "NextChars", "WordCandidate", "WordDistribution",
           "check_gguf", "embedded_model_path", "letters_of"]

MIN_MASS = 1e-4          # paths less likely than this are not grown
MAX_WORD_TOKENS = 8      # a word longer than this many tokens is cut (digits are one token each)
MAX_CHILDREN = 3         # continuations grown per path and step
MAX_ROUNDS = 3           # extra rounds of root tokens while unexplored tokens could still beat the k-th word
ROUND_GAIN = 2.0         # ...clearly: by this factor (near-ties at rank k are not worth a decode)
ROW_CACHE = 96           # logits rows kept (1 MiB each for a 262k vocabulary)
DIST_CACHE = 32          # word distributions kept (pre-generated forks)
GREEDY_CACHE = 256       # look-ahead token runs kept
LETTER_ROWS = 8          # rows the next-character walk may decode per level beyond the cached ones (one batch)
LETTER_MIN = 0.005       # ...and only for paths with at least this share of the prefix's root mass
LETTER_EPS = 1e-6        # paths of less mass are not followed one by one (their sum is stated as uncovered)


@dataclass
class WordCandidate:
    """One whole word offered at a fork."""

    word: str            # display form, no leading space: "world", ",", "don't", "\n"
    text: str            # exact text it appends to the document: " world" ("world" at a line start)
    tokens: list[int]    # token ids that produce ``text``
    prob: float          # probability of the word; token paths that spell the same word are summed
    lookahead: list[str] = field(default_factory=list)     # phrases after the word (Engine.lookahead)
    lookahead_tokens: list[int] = field(default_factory=list)  # tokens of lookahead[0], cut on a word boundary
    paths: int = 1       # how many token paths spell this word (merged into ``prob``)


@dataclass(frozen=True)
class NextChars:
    """What follows the typed prefix, character by character, over ALL the model's mass that agrees with
    it (not only the words a search found): read from the token rows of the word search (docs/engine.md,
    "Letters"). Masses are in the units of the search's root probabilities.

    Every token that agrees with the prefix gives its mass to the character after the prefix in its
    text; a path that ends exactly on the prefix gives its next token's mass to that token's first
    character when it goes on with the word, else to " " (the word ends); a path still short of the
    prefix is followed through the row after it. With no prefix only tokens that start a new word
    count (a piece glued onto the word before is no keyboard letter)."""

    mass: Mapping[str, float]  # next character, lower case (" " = the word ends) -> mass
    other: float               # mass that agrees with the prefix but whose next character is unknown: paths not
                               # followed (their rows were not computed), bytes of a split character, glued
                               # pieces and the top-N rest (no prefix)
    total: float               # all mass that agrees with the prefix: sum(mass) + other (1 with no prefix)
    unseen: float = 0.0        # mass the top-N rows did not show along the way (0 with full rows)
    rows: int = 0              # rows decoded for it beyond those the word search left cached
    ms: float = 0.0            # time it took


@dataclass
class WordDistribution:
    """The ranked next words at one position."""

    candidates: list[WordCandidate]  # ranked by prob, merged, at most k (ranks k*page .. k*page+k-1)
    entropy_bits: float              # TOKEN-level entropy of the full next-token distribution (bits)
    margin: float                    # p(top1) - p(top2) of the WORD distribution (page 0 ranks)
    prefix: str = ""
    coverage: float = 0.0            # total probability of all words found (how much of the mass was explored)
    top_prob: float = 0.0            # p(top1) word, whatever the page
    unseen: float = 0.0              # mass the backend's top-N rows did not show, in the units of ``prob``
                                     # (0 with full rows): the words it could hide, or the share they could gain
    chars: NextChars | None = None   # the next characters under ``prefix`` (Engine.letters, letters_of); a word's
                                     # mass in their units is ``prob * chars.total``


@dataclass
class LetterDistribution:
    """P(next character | the typed prefix, the word is none of the shown candidates) at one fork
    (protocol 1.4 ``fork.open`` letters): what the on-screen keyboard needs, since a person spells
    exactly when the word is not on screen.

    From :class:`NextChars` (all the model's mass that agrees with the prefix) less each shown
    candidate's mass at its own next character, renormalised over what is left. ``uncovered`` is the
    part of that rest these letters do not account for (characters that are no keys, paths not
    followed, glued pieces); ``unseen`` the part top-N rows did not show (0 with full rows); ``shown``
    the share of the prefix's mass the shown candidates take (the sum of their probabilities)."""

    letters: list[tuple[str, float]]  # (character, probability), likeliest first; " " = the word ends
    uncovered: float
    prefix: str = ""
    shown: float = 0.0
    unseen: float = 0.0


def letters_of(dist: WordDistribution, before: str,
               is_key: Callable[[str], bool] | None = None) -> LetterDistribution:
    """The next letters at the fork ``dist`` (following the text ``before``) for the word NOT among
    ``dist.candidates``: ``dist.chars`` less each candidate's mass (``prob * chars.total``) at its next
    character after the prefix (folded to lower case; " " when it is the prefix itself), renormalised.
    ``is_key`` says which characters are keys (default: a letter, ``'`` or ``-``); the others, and a
    candidate glued onto the word before, count as uncovered. No ``chars`` (a fork of the typed word
    alone): no letters."""
    chars = dist.chars
    if chars is None or chars.total <= 0:
        return LetterDistribution([], 1.0, dist.prefix)
    keyed = is_key or (lambda ch: ch.isalpha() or ch in "'-")
    prefix = dist.prefix
    left = dict(chars.mass)
    other = chars.other
    shown = 0.0
    for c in dist.candidates:
        m = max(0.0, float(c.prob)) * chars.total
        shown += m
        word = c.word
        if not word.startswith(prefix) or (not prefix and joins(before, c.text)):
            other -= m
            continue
        ch = word[len(prefix)].lower() if len(word) > len(prefix) else " "
        if ch in left:
            left[ch] = max(0.0, left[ch] - m)  # the search's paths are among the walk's: at most rounding over
        else:
            other -= m
    rest = sum(left.values()) + max(0.0, other)
    share = min(1.0, shown / chars.total)
    if rest <= 1e-6 * chars.total:  # the candidates hold all the mass the model gives (or top-N rows show) the prefix
        return LetterDistribution([], 1.0, prefix, share, 1.0 if chars.unseen > 0 else 0.0)
    ranked = sorted(((ch, m / rest) for ch, m in left.items() if m > 0 and (ch == " " or keyed(ch))),
                    key=lambda kv: (-kv[1], kv[0]))
    return LetterDistribution(ranked, max(0.0, 1.0 - sum(p for _, p in ranked)), prefix, share,
                              min(1.0, chars.unseen / rest))


@dataclass
class _Path:
    """A word being grown: its tokens after the base, their text, and their probability mass."""

    tokens: list[int]
    raw: bytes
    mass: float
    punct: bool = False                        # body is punctuation (complete after the prefix is met)
    before_joiner: _Path | None = None         # the word before a trailing bare joiner ("don" before "'")


@dataclass
class _Word:
    text: str
    tokens: list[int]
    prob: float = 0.0
    best: float = -1.0
    paths: int = 0


def _softmax(logits: np.ndarray) -> np.ndarray:
    """float32 softmax (float64 exp over 262k entries costs 4 ms a row, float32 0.5 ms)."""
    m = float(np.max(logits))
    if not math.isfinite(m):
        return np.zeros_like(logits, dtype=np.float32)
    e = np.subtract(logits, np.float32(m), dtype=np.float32)
    np.exp(e, out=e)
    e /= np.float32(e.sum(dtype=np.float64))
    return e


def _softmax_entropy(logits: np.ndarray) -> tuple[np.ndarray, float]:
    """Probabilities and their entropy in bits, in one pass: H = ln Z - sum p (l - max), over ln 2."""
    m = float(np.max(logits))
    if not math.isfinite(m):
        return np.zeros_like(logits, dtype=np.float32), 0.0
    shifted = np.maximum(logits - np.float32(m), np.float32(-1e4))  # -inf (banned, masked) -> p = 0 exactly
    e = np.exp(shifted)
    z = float(e.sum(dtype=np.float64))
    e /= np.float32(z)
    h = (math.log(z) - float(e.dot(shifted))) / math.log(2)
    return e, max(0.0, h)


def _top_softmax(logits: np.ndarray, rest: float) -> tuple[np.ndarray, float, float]:
    """Probabilities over the tokens a top-N row lists (``logits``: their log-probabilities with the bias and
    masks applied, -inf elsewhere) and the rest's share, the rest counted with mass ``rest`` before
    renormalising. Returns the listed tokens' probabilities, the rest's, and the entropy in bits.

    The entropy is a lower bound: no unlisted token is likelier than the least listed one (nor than the
    rest itself), so the rest adds at least rest x log2(1 / that). On Gemma 3 270M it falls short of the
    full row's by 0.04 - 1.2 bits at N = 40 (docs/engine.md, "Backends")."""
    m = float(np.max(logits))
    lr = math.log(rest) if rest > 0 else -math.inf
    top = max(m, lr)
    if not math.isfinite(top):
        return np.zeros_like(logits, dtype=np.float32), 0.0, 0.0
    shifted = np.maximum(logits - np.float32(top), np.float32(-1e4))  # unlisted, banned, masked -> p = 0 exactly
    e = np.exp(shifted)
    r = math.exp(lr - top) if rest > 0 else 0.0
    z = float(e.sum(dtype=np.float64)) + r
    e /= np.float32(z)
    pr = r / z
    h = (1.0 - pr) * math.log(z) - float(e.dot(shifted))  # the listed tokens' part, in nats
    if pr > 0:
        least = float(e[e > 0].min()) if e.any() else pr
        h -= pr * math.log(min(least, pr))
    return e, pr, max(0.0, h / math.log(2))


class Engine:
    """The document, the word search and all speculative work, over one ``LMBackend``."""

    def __init__(self, cfg: ModelConfig, *, progress: Callable[[float], None] | None = None,
                 backend: LMBackend | None = None) -> None:
        """Open the backend ``cfg`` names (the embedded model by default) and start an empty document.

        ``backend``: one already open instead (a top-N view of another engine's, a server's); it stays
        its maker's to close. ``progress`` gets 0 .. 1 while the model loads."""
        self.cfg = cfg
        self._progress = progress or (lambda _x: None)
        self._progress(0.0)
        self._owns = backend is None
        self.backend: LMBackend = backend if backend is not None else open_backend(
            cfg, progress=self._progress, reserve_rows=ROW_CACHE)
        self.vocab = self.backend.vocab
        self.n_side = self.backend.capabilities.paths   # paths one backend call serves: the search's batch
        self._base_adjust = np.where(self.vocab.masked, -np.inf, 0.0).astype(np.float32)
        self._cont_f = self.vocab.cont.astype(np.float32)      # masks as floats: a dot product sums a class
        self._join_f = self.vocab.joiner.astype(np.float32)
        self._grows_f = self.vocab.grows.astype(np.float32)
        self._starts_b = np.isin(self.vocab.kind, (Kind.WORD_CONT, Kind.PUNCT, Kind.JOINER))
        self._starts_f = self._starts_b.astype(np.float32)
        self._token_bias: dict[int, float] = {}
        self._word_bias: dict[str, tuple[float, bool]] = {}
        self._bias_version = 0
        self._adjust = self._base_adjust.copy()
        self._rng = np.random.default_rng(cfg.seed)

        self._main: list[int] = []
        self._prompt_n = 0
        self._prompt_text = ""
        self._memory_n = 0                  # BOS and memory tokens before the document (``reset``)
        self._rows: OrderedDict[tuple[int, ...], Row] = OrderedDict()
        self._dists: OrderedDict[tuple[Any, ...], WordDistribution] = OrderedDict()
        self._greedy: OrderedDict[tuple[int, ...], list[int]] = OrderedDict()
        self._chars: _CharTables | None = None  # built at the first word search (Engine._char_tables)
        self.reset("")
        self._progress(1.0)

    # ------------------------------------------------------------------------------------------- the backend
    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    @property
    def model_name(self) -> str:
        return self.backend.model_name

    @property
    def n_ctx(self) -> int:
        return self.backend.n_ctx

    @property
    def n_vocab(self) -> int:
        return self.backend.n_vocab

    @property
    def stats(self) -> dict[str, float]:
        """The backend's counters: decodes, rows, tokens, decode_ms."""
        return self.backend.stats

    @property
    def lora_path(self) -> str:
        return self.backend.lora_path

    @property
    def model_path(self) -> Path | None:
        """The model file, where the backend reads one (the embedded backend)."""
        path: Path | None = getattr(self.backend, "model_path", None)
        return path

    @property
    def n_threads(self) -> int | None:
        """CPU threads, where the backend computes here (the embedded backend)."""
        threads: int | None = getattr(self.backend, "n_threads", None)
        return threads

    def close(self) -> None:
        """Free the backend when this engine opened it (safe on a half-built engine, and twice)."""
        if getattr(self, "_owns", False):
            self.backend.close()

    # ------------------------------------------------------------------------------------------- text
    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` as it would continue a document (no BOS, special tokens not parsed)."""
        return self.backend.tokenize(text)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.vocab.text(tokens)

    @property
    def text(self) -> str:
        """The document so far (the prompt as given, then exactly what was appended)."""
        if len(self._main) >= self._prompt_n:
            return self._prompt_text + self.vocab.text(self._main[self._prompt_n:])
        return self.vocab.text(self._main[self._memory_n:])  # BOS and other control tokens have empty pieces

    @property
    def n_tokens(self) -> int:
        return len(self._main)

    @property
    def tokens(self) -> list[int]:
        return list(self._main)

    def checkpoint(self) -> int:
        return len(self._main)

    # ------------------------------------------------------------------------------------------- rows
    def _rows_for(self, targets: list[list[int]], abort: threading.Event | None = None,
                  cache: Sequence[bool] | bool = True,
                  pick: Callable[[Row], int] | None = None) -> list[Any]:
        """The next-token row after each token path; every missing one from ONE backend call (one batch).

        With ``pick``, each path's token (``pick(row)``) instead: rows that are not cached are never copied.
        """
        out: list[Any] = [None] * len(targets)
        miss: list[int] = []
        for i, tgt in enumerate(targets):
            key = tuple(tgt)
            row = self._rows.get(key)
            if row is not None:
                self._rows.move_to_end(key)
                out[i] = pick(row) if pick is not None else row
            else:
                miss.append(i)
        if not miss:
            return out
        kept = [cache if isinstance(cache, bool) else cache[i] for i in miss]
        paths = [targets[i] for i in miss]
        if pick is None:
            for i, row, keep in zip(miss, self.backend.rows(paths, abort=abort), kept):
                if keep:
                    self._remember(tuple(targets[i]), row)
                out[i] = row
        else:
            for i, (tok, row), keep in zip(miss, self.backend.pick(paths, pick, keep=kept, abort=abort), kept):
                if keep and row is not None:
                    self._remember(tuple(targets[i]), row)
                out[i] = tok
        return out

    def _remember(self, key: tuple[int, ...], row: Row) -> None:
        self._rows[key] = row
        self._rows.move_to_end(key)
        while len(self._rows) > ROW_CACHE:
            self._rows.popitem(last=False)

    def _dense(self, row: TopRow) -> np.ndarray:
        """A top-N row's log-probabilities over the whole vocabulary (-inf where unlisted), bias applied."""
        logits = np.full(self.n_vocab, -np.inf, dtype=np.float32)
        logits[row.ids] = row.logprobs
        return logits + self._adjust

    def _probs(self, row: Row) -> tuple[np.ndarray, float]:
        """The next-token distribution under the bias and masks, over the whole vocabulary, and the share
        of it a top-N row does not show (0 for a full row)."""
        if not isinstance(row, TopRow):
            return _softmax(row + self._adjust), 0.0
        probs, rest, _h = _top_softmax(self._dense(row), row.rest)
        return probs, rest

    # ------------------------------------------------------------------------------------------- document
    def reset(self, prompt: str, memory: str = "") -> None:
        """Start a new document from ``prompt`` (BOS + its tokens, evaluated by the backend).

        ``memory``: text the model reads before the document but that is not part of it (the person's
        earlier writing: docs/learning.md, "Memory"); ``text`` never shows it. It may fill at most half
        the context, its oldest part is cut first. Whatever the new start shares with the old document
        (the same memory, grown at its end) the backend keeps: only the rest is evaluated.
        """
        body = self.tokenize(prompt)
        mem = self.tokenize(memory) if memory else []
        if mem:
            mem = mem[max(0, len(mem) - max(0, self.n_ctx // 2 - len(body))):]
        toks = ([self.backend.bos] if self.backend.add_bos or not (mem or body) else []) + mem + body
        if len(toks) - len(mem) > self.n_ctx - 64:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG,
                                f"prompt is {len(toks) - len(mem)} tokens, too long for n_ctx={self.n_ctx}")
        row = self.backend.set_document(toks, fresh=True)
        self._set_main(list(toks))
        if row is not None:
            self._remember(tuple(toks), row)
        self._memory_n = len(toks) - len(body)
        self._prompt_n = len(toks)
        self._prompt_text = prompt

    def _set_main(self, tokens: list[int]) -> None:
        self._main = tokens

    def commit(self, cand: WordCandidate | str) -> None:
        """Append a candidate (its tokens) or exact text (a typed word, a look-ahead phrase) to the document.

        A string is appended as it is: the caller adds the space before a typed word. When the row after
        the result is cached, the backend may take the tokens from a path it already evaluated (the
        candidate was grown or pre-generated: the embedded backend copies KV cells, no decode at all).
        """
        if isinstance(cand, str):
            tokens = self.tokenize(cand)
        else:
            tokens = list(cand.tokens) or self.tokenize(cand.text)
        if not tokens:
            return
        target = self._main + tokens
        if len(target) > self.n_ctx - 16:
            raise ContextFull(f"the context is full (n_ctx={self.n_ctx}, document {len(self._main)} tokens): "
                              "start a new text or raise model.n_ctx")
        key = tuple(target)
        cached = key in self._rows
        row = self.backend.set_document(target, row=not cached)
        self._set_main(target)
        if row is not None:
            self._remember(key, row)
        elif cached:
            self._rows.move_to_end(key)

    def rewind(self, n_tokens: int) -> None:
        """Back to an earlier checkpoint: the backend drops what is beyond it (no re-evaluation)."""
        if not 1 <= n_tokens <= len(self._main):
            raise DaemonRefusal(ErrorCode.BAD_COMMAND,
                                f"cannot rewind to {n_tokens} tokens (document has {len(self._main)})")
        self.backend.set_document(self._main[:n_tokens], row=False)
        self._set_main(self._main[:n_tokens])
        if n_tokens < self._prompt_n:
            self._prompt_n = n_tokens
            self._prompt_text = self.vocab.text(self._main[self._memory_n:])

    def next_token_probs(self) -> np.ndarray:
        """The model's next-token distribution at the end of the document (bias and masks applied; from a
        top-N backend, zero where its row lists nothing)."""
        return self._probs(self._rows_for([self._main])[0])[0]

    def clear_cache(self) -> None:
        """Forget cached rows, forks and look-aheads, and the backend's speculative paths (benchmarks, tests)."""
        self._rows.clear()
        self._dists.clear()
        self._greedy.clear()
        self.backend.forget()

    # ------------------------------------------------------------------------------------------- words
    def words(self, k: int, *, prefix: str = "", page: int = 0, exclude: Collection[str] = ()) -> WordDistribution:
        """The next whole words at the end of the document (see the module doc and docs/gating.md)."""
        return self._distribution(self._main, k, prefix, page, exclude, None)

    def letters(self, prefix: str = "", *, k: int = 8,
                is_key: Callable[[str], bool] | None = None) -> LetterDistribution:
        """P(next character | ``prefix``, the word is none of the ``k`` words ``words(k, prefix=prefix)``
        shows) at the end of the document over the keyboard's keys plus " " (the word ends), likeliest
        first: :func:`letters_of` that fork. The search reads the characters from its own rows, so with
        the fork's ``k`` this is cached and costs nothing more (docs/engine.md, "Letters")."""
        return letters_of(self.words(k, prefix=prefix), self.text, is_key)

    def after(self, cand: WordCandidate, k: int, *, abort: threading.Event | None = None) -> WordDistribution:
        """The fork that would follow choosing ``cand``, computed in side sequences; the document is untouched.

        The row after the candidate is usually cached from growing it, so this costs one batched
        decode; the result is kept, and ``words(k)`` after ``commit(cand)`` returns it at once.
        Raises ``Aborted`` when ``abort`` is set before it finishes.
        """
        tokens = list(cand.tokens) or self.tokenize(cand.text)
        return self._distribution(self._main + tokens, k, "", 0, (), abort)

    def _at_word_start(self, base: list[int]) -> bool:
        """True at the document start or after whitespace: the next word takes no leading space."""
        if len(base) <= 1:
            return True
        piece = self.vocab.pieces[base[-1]]
        return not piece or piece[-1:] in (b" ", b"\n", b"\t", b"\r")

    def _distribution(self, base: list[int], k: int, prefix: str, page: int, exclude: Collection[str],
                      abort: threading.Event | None) -> WordDistribution:
        if k < 1 or page < 0:
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, f"k must be >= 1 and page >= 0 (got k={k}, page={page})")
        ckey = (tuple(base), k, prefix, page, tuple(sorted(exclude)), self._bias_version)
        hit = self._dists.get(ckey)
        if hit is not None:
            self._dists.move_to_end(ckey)
            return _copy_dist(hit)
        dist = self._grow(base, k, prefix, page, set(exclude), abort)
        self._dists[ckey] = _copy_dist(dist)
        while len(self._dists) > DIST_CACHE:
            self._dists.popitem(last=False)
        return dist

    def _grow(self, base: list[int], k: int, prefix: str, page: int, exclude: set[str],
              abort: threading.Event | None) -> WordDistribution:
        """Grow the top tokens into whole words (one batched decode per level), merge, rank."""
        vocab = self.vocab
        row = self._rows_for([base], abort)[0]
        logits = self._dense(row) if isinstance(row, TopRow) else row + self._adjust
        want = prefix.encode("utf-8")
        start = self._at_word_start(base)
        if want:
            lead = b"" if start or not prefix[0].isalnum() else b" "
            allowed = vocab.matching(lead + want)
            allowed = allowed[~vocab.masked[allowed]]
            allowed = allowed[vocab.kind[allowed] != Kind.NEWLINE] if len(allowed) else allowed
            constrained = np.full_like(logits, -np.inf)
            constrained[allowed] = logits[allowed]
            logits = constrained
        hid = 0.0  # what the root row hides, for the letters: under a prefix at most its rest over the allowed shown
        if isinstance(row, TopRow):  # under a prefix the rest's share of allowed tokens is unknown: left out
            probs, rest, entropy = _top_softmax(logits, 0.0 if want else row.rest)
            if want and row.rest > 0:
                seen = float(np.exp(logits[np.isfinite(logits)].astype(np.float64)).sum())
                hid = row.rest / seen if seen > 0 else 1.0
        else:
            probs, entropy = _softmax_entropy(logits)
            rest = 0.0
        unseen = [rest]  # grown by every top-N row read below
        if not probs.any():
            return WordDistribution([], entropy, 0.0, prefix, unseen=rest)
        least = MIN_MASS if not want else 0.0  # under a prefix, rare words are what the user asked for
        top = np.flatnonzero(probs > least)     # no root below MIN_MASS is ever taken
        order = top[np.argsort(-probs[top], kind="stable")]

        words: dict[str, _Word] = {}

        def credit(text_raw: bytes, tokens: list[int], mass: float) -> None:
            """Add a token path's mass to its word. Paths merge when they show the same word, except that a
            piece glued onto the previous word ("'s", "tal") never merges with a spaced one."""
            if mass <= 0:
                return
            text = text_raw.decode("utf-8", errors="replace")
            glued = not start and vocab.kind[tokens[0]] == Kind.WORD_CONT
            key = ("\0" if glued else "") + display_word(text)
            w = words.get(key)
            if w is None:
                w = words[key] = _Word(text, list(tokens))
            w.prob += mass
            w.paths += 1
            if mass > w.best:
                w.best, w.text, w.tokens = mass, text, list(tokens)

        def met(raw: bytes) -> bool:
            return not want or lstrip_space(raw).startswith(want)

        need = k * (page + 1)

        def kth_word() -> float:
            """The k-th best word so far: a path whose whole mass is below it cannot enter the page."""
            ranked = self._ranked(words, exclude)
            return ranked[need - 1].prob if len(ranked) >= need else 0.0

        def kth() -> float:
            """The bar a continuation must clear to be grown: the k-th best among the words found and the
            root tokens not yet explored (a root is about as likely as its word; growing a rarer
            continuation first would spend a sequential decode on a word that cannot make the page)."""
            ranked = self._ranked(words, exclude)
            vals = [w.prob for w in ranked[:need]]
            if want:  # a root is often only the prefix's start (" sh"), no estimate of a word; masses are
                # true joint probabilities that may all be tiny (" zzzq..."): the bar is relative
                rel = MIN_MASS * ranked[0].prob if ranked else 0.0
                return max(rel, vals[need - 1] if len(vals) >= need else 0.0)
            vals += [float(probs[t]) for t in order[cursor: cursor + need]]
            vals.sort(reverse=True)
            return vals[need - 1] if len(vals) >= need else 0.0

        cursor, rounds = 0, 0
        cap = max(4, 2 * self.n_side // 3)  # rows per decode; the rest of the pool serves look-ahead

        def rows(n: int) -> int:  # multiples of 4 suit the kernels, and a few more roots cost little
            return max(4, min(cap, -(-n // 4) * 4))

        quota = rows(need + len(exclude))
        while True:
            pending: list[_Path] = []
            fresh = 0  # roots whose row must be decoded (a cached row, e.g. from a look-ahead, is free)
            while cursor < len(order) and fresh < quota:
                t = int(order[cursor])
                p = float(probs[t])
                if p <= least:
                    break
                cursor += 1
                kind = vocab.kind[t]
                piece = vocab.pieces[t]
                if kind in (Kind.WORD_START, Kind.WORD_CONT, Kind.SPACE):
                    pending.append(_Path([t], piece, p))  # a bare space (" " before "1990") is grown too
                    fresh += tuple(base + [t]) not in self._rows
                elif kind in (Kind.PUNCT, Kind.SPACE_PUNCT, Kind.JOINER, Kind.NEWLINE):
                    if met(piece):
                        credit(piece, [t], p)
                    else:
                        pending.append(_Path([t], piece, p, punct=True))
                        fresh += 1
            self._grow_paths(base, pending, want, credit, kth, abort, unseen)
            found = len(self._ranked(words, exclude))
            nxt = float(probs[order[cursor]]) if cursor < len(order) else 0.0
            rounds += 1
            # another round only if words are missing, or an unexplored token could beat the k-th word clearly
            if nxt <= least or rounds > MAX_ROUNDS or (found >= need and nxt <= ROUND_GAIN * kth_word()):
                break
            quota = rows(need - found)
        ranked = self._ranked(words, exclude)
        chars = self._next_chars(base, want, start, probs, rest + hid, abort)  # from the rows just read: cheap
        if want and ranked:
            # p(word | it starts with the prefix) over ALL the mass the model gives the prefix (the walk's
            # total), not only the words found: the candidates' sum is then the chance the word is among them
            total = max(chars.total, sum(w.prob for w in ranked))
            for w in ranked:
                w.prob /= total
            unseen[0] /= total
            ranked = [w for w in ranked if w.prob >= MIN_MASS]
        cands = [WordCandidate(w.word, w.text, list(w.tokens), w.prob, paths=w.paths)
                 for w in ranked[k * page: k * page + k]]
        margin = ranked[0].prob - (ranked[1].prob if len(ranked) > 1 else 0.0) if ranked else 0.0
        return WordDistribution(cands, entropy, float(margin), prefix,
                                coverage=float(sum(w.prob for w in ranked)),
                                top_prob=float(ranked[0].prob) if ranked else 0.0,
                                unseen=float(unseen[0]), chars=chars)

    # ------------------------------------------------------------------------------------------- letters
    def _char_tables(self) -> _CharTables:
        """Each token's first character and first character after its leading spaces, as ids (built once:
        about a second over 262k pieces)."""
        if self._chars is None:
            self._chars = _CharTables.build(self.vocab)
        return self._chars

    def _next_chars(self, base: list[int], want: bytes, start: bool, probs: np.ndarray, rest: float,
                    abort: threading.Event | None) -> NextChars:
        """The characters after the prefix ``want`` at ``base`` (:class:`NextChars`), from the root
        ``probs`` the search used (constrained to the prefix) and the rows after the paths that have not
        yet passed the prefix: cached ones free, up to ``LETTER_ROWS`` more of at least ``LETTER_MIN``
        mass decoded per level in one batch; the rest of the mass is ``other``. ``rest``: the mass the
        root row did not show, in the units of ``probs`` (a top-N row's; 0 for a full row)."""
        t0 = time.perf_counter()
        tab = self._char_tables()
        acc = np.zeros(len(tab.names), dtype=np.float64)
        if not want:  # the first letter of the next word: tokens that start one (no glued piece)
            ids = tab.new_at_start if start else tab.new_mid
            acc += np.bincount(tab.lead[ids], weights=probs[ids].astype(np.float64), minlength=len(acc))
            mass = tab.named(acc)
            return NextChars(mass, max(0.0, 1.0 - sum(mass.values())), 1.0, unseen=rest,
                             ms=(time.perf_counter() - t0) * 1000)
        vocab = self.vocab
        pending: list[tuple[list[int], bytes, float]] = []
        found: dict[str, float] = {}  # characters right after the prefix inside a path's text
        other, unseen, decoded = 0.0, rest, 0

        def place(tokens: list[int], raw: bytes, ids: np.ndarray, weights: np.ndarray) -> None:
            """Credit each path ``tokens + [t]`` (mass ``weights``) to its character after the prefix, or keep it
            to follow. Paths below ``LETTER_EPS`` are not looked at: their mass counts as ``other``."""
            nonlocal other
            small = weights < LETTER_EPS
            if small.any():
                other += float(weights[small].sum())
            for t, m in zip(ids[~small].tolist(), weights[~small].tolist()):
                text = raw + vocab.pieces[t]
                body = lstrip_space(text)
                if body.startswith(want):
                    tail = body[len(want):]
                    ch = _first_char(tail)
                    if not tail:  # ends on the prefix: the row after it says how the word goes on
                        pending.append((tokens + [t], text, m))
                    elif ch is not None:
                        found[ch] = found.get(ch, 0.0) + m
                    else:  # a character split across tokens right after the prefix
                        other += m
                elif want.startswith(body):
                    pending.append((tokens + [t], text, m))
                # else it does not agree with the prefix: no part of its mass

        root = np.flatnonzero(probs > 0)
        place([], b"", root, probs[root].astype(np.float64))
        for _level in range(MAX_WORD_TOKENS):
            if not pending:
                break
            pending.sort(key=lambda p: -p[2])
            follow: list[tuple[list[int], bytes, float]] = []
            fresh = 0
            for path in pending:
                if tuple(base + path[0]) in self._rows:
                    follow.append(path)
                elif fresh < LETTER_ROWS and path[2] >= LETTER_MIN:
                    follow.append(path)
                    fresh += 1
                else:
                    other += path[2]
            decoded += fresh
            rows = self._rows_for([base + p[0] for p in follow], abort)
            pending = []
            for (tokens, raw, m), row in zip(follow, rows):
                q, hidden = self._probs(row)
                unseen += m * hidden
                body = lstrip_space(raw)
                if body == want:  # the prefix is typed to its end: the word goes on, or ends (" ")
                    part = np.bincount(tab.on_ch, weights=q[tab.on_ids].astype(np.float64) * m, minlength=len(acc))
                    acc += part
                    acc[tab.space] += max(0.0, m - float(part.sum()))  # the search counts the top-N rest so too
                else:  # still short of it: only tokens that agree with the rest go on
                    ids = vocab.matching(want[len(body):])
                    ids = ids[q[ids] > 0]
                    place(tokens, raw, ids, q[ids].astype(np.float64) * m)
        mass = tab.named(acc)
        other += sum(p[2] for p in pending) + float(acc.sum()) - sum(mass.values())
        for ch, m in found.items():
            mass[ch] = mass.get(ch, 0.0) + m
        return NextChars(mass, other, sum(mass.values()) + other, unseen=unseen, rows=decoded,
                         ms=(time.perf_counter() - t0) * 1000)

    def _grow_paths(self, base: list[int], pending: list[_Path], want: bytes,
                    credit: Callable[[bytes, list[int], float], None], kth: Callable[[], float],
                    abort: threading.Event | None, unseen: list[float]) -> None:
        """Grow paths one batched level at a time. Each level first credits every path's ending mass,
        then grows only continuations that could still reach the page (mass >= the k-th word so far).
        A top-N row's rest counts as the word's end (the pieces that go on with a word are few and likely,
        so they are listed; the rest is nearly all the next word's start), and its share of the path's
        mass goes to ``unseen[0]``: how far the word's probability could be off."""
        vocab = self.vocab
        while pending:
            rows = self._rows_for([base + p.tokens for p in pending], abort)
            # (path, q, allowed next tokens: ids array or class mask, mass that may go on, how)
            offers: list[tuple[_Path, np.ndarray, np.ndarray, float, str]] = []
            for path, row in zip(pending, rows):
                q, hidden = self._probs(row)
                if hidden and not path.punct:
                    unseen[0] += path.mass * hidden
                body = lstrip_space(path.raw)
                if want and not body.startswith(want):   # still typing: only tokens that agree go on
                    rest = want[len(body):] if want.startswith(body) else b""
                    ids = vocab.matching(rest) if rest else np.zeros(0, dtype=np.int32)
                    z = float(q[ids].sum()) if len(ids) else 0.0
                    if z > 0:  # not renormalised: a path the model would rarely finish this way stays rare
                        offers.append((path, q, ids, z, "prefix"))
                    continue
                if path.punct:
                    credit(path.raw, path.tokens, path.mass)
                elif not body:  # only spaces so far: what follows starts the word (or is punctuation)
                    offers.append((path, q, self._starts_b, float(q.dot(self._starts_f)), "start"))
                else:
                    p_cont = float(q.dot(self._cont_f))
                    if path.before_joiner is not None:
                        # "don" + "'": the word goes on only if a word character follows; else it ended before "'"
                        parent = path.before_joiner
                        credit(parent.raw, parent.tokens, path.mass * max(0.0, 1.0 - p_cont))
                        offers.append((path, q, vocab.cont, p_cont, "word"))
                    else:
                        p_join = float(q.dot(self._join_f))
                        credit(path.raw, path.tokens, path.mass * max(0.0, 1.0 - p_cont - p_join))
                        offers.append((path, q, vocab.grows, p_cont + p_join, "word"))
            # under a prefix, masses are true joint probabilities that may all be tiny (" zzzq..."): only the
            # k-th word found and the beam width prune, and the words are normalised at the end
            floor = max(0.0 if want else MIN_MASS, kth())
            nxt: list[_Path] = []
            for path, q, allowed, p_on, how in offers:
                if len(path.tokens) >= MAX_WORD_TOKENS or path.mass * p_on < floor:
                    continue  # not even all its continuations together could reach the page
                if allowed.dtype == np.bool_:  # tokens likely enough to clear the bar, of the allowed class
                    ids = np.flatnonzero(q >= np.float32(floor / path.mass))
                    ids = ids[allowed[ids]]
                else:
                    ids = allowed
                best = ids[np.argsort(-q[ids])[:MAX_CHILDREN]]
                body = lstrip_space(path.raw)
                for t in (int(x) for x in best):
                    m = path.mass * float(q[t])
                    if m < floor or m <= 0.0:
                        break
                    child = _Path(path.tokens + [t], path.raw + vocab.pieces[t], m, path.punct)
                    if how == "prefix":
                        child.punct = path.punct or (not body and vocab.kind[t] in (Kind.PUNCT, Kind.JOINER))
                        if child.punct and lstrip_space(child.raw).startswith(want):
                            credit(child.raw, child.tokens, m)
                            continue
                    elif how == "start" and vocab.kind[t] != Kind.WORD_CONT:
                        credit(child.raw, child.tokens, m)  # " " + "(": punctuation after all
                        continue
                    elif how == "word" and vocab.joiner[t]:
                        child.before_joiner = path
                    nxt.append(child)
            nxt.sort(key=lambda p: -p.mass)
            pending = nxt[: max(4, 2 * self.n_side // 3)]

    def _ranked(self, words: dict[str, _Word], exclude: set[str]) -> list[_RankedWord]:
        out = []
        for key, w in words.items():
            word = key.lstrip("\0")
            if word in exclude:
                continue
            prob = w.prob
            wb = self._word_bias.get(word)
            if wb is not None:
                bias, token_level = wb
                if bias <= -1e9:
                    continue
                if not token_level:
                    prob *= math.exp(bias)
            out.append(_RankedWord(word, w.text, w.tokens, prob, w.paths))
        out.sort(key=lambda w: -w.prob)
        return out

    # ------------------------------------------------------------------------------------------- look-ahead
    def lookahead(self, cands: list[WordCandidate], n_tokens: int, *, abort: threading.Event | None = None,
                  on_step: Callable[[int, list[str]], None] | None = None,
                  temperature: float = 0.0) -> list[str]:
        """Greedy continuation of EACH candidate for ``n_tokens`` tokens, all K in one batched decode per step.

        Every candidate's sequence starts from the document's KV (or from the sequence that grew the
        word); the document is never re-evaluated and stays untouched. The first step needs no decode
        when the candidates came from ``words`` (their rows are cached). Fills ``cand.lookahead`` with
        one phrase, cut to whole words, and returns the phrases. ``abort`` stops between and inside
        steps (llama.cpp's abort callback) and returns what exists. ``temperature`` > 0 samples instead
        (regenerate); sampled runs are not cached.
        """
        if not cands or n_tokens <= 0:
            return [c.lookahead[0] if c.lookahead else "" for c in cands]
        nodes = [self._main + (list(c.tokens) or self.tokenize(c.text)) for c in cands]
        runs: list[list[int]] = []
        for node in nodes:
            known = self._greedy.get(tuple(node)) if temperature <= 0 else None
            runs.append(list(known) if known else [])
        step = 0

        def phrases() -> list[str]:
            out = []
            for c, run in zip(cands, runs):
                toks = trim_to_words(self.vocab, run[:n_tokens])
                c.lookahead = [self.vocab.text(toks)] if toks else []
                c.lookahead_tokens = toks
                out.append(c.lookahead[0] if c.lookahead else "")
            return out

        while True:
            active = [i for i, run in enumerate(runs) if len(run) < n_tokens]
            if not active or (abort is not None and abort.is_set()):
                break
            targets = [nodes[i] + runs[i] for i in active]
            try:
                picks = self._rows_for(targets, abort, cache=[len(runs[i]) <= 1 for i in active],
                                       pick=lambda row: self._pick(row, temperature))
            except (Aborted, ContextFull):  # what exists is returned; a full context is the next fork's error
                break
            for i, tok in zip(active, picks):
                runs[i].append(tok)
                if temperature <= 0:
                    self._greedy[tuple(nodes[i])] = list(runs[i])
                    self._greedy.move_to_end(tuple(nodes[i]))
            while len(self._greedy) > GREEDY_CACHE:
                self._greedy.popitem(last=False)
            step += 1
            if on_step is not None:
                on_step(step, phrases())
        return phrases()

    def _pick(self, row: Row, temperature: float) -> int:
        """The greedy (or, at ``temperature`` > 0, sampled from the top 40) next token under the bias."""
        if isinstance(row, TopRow):  # from the tokens it lists (a server applies the bias itself too)
            scores = row.logprobs + self._adjust[row.ids]
            if temperature <= 0:
                return int(row.ids[int(np.argmax(scores))])
            best = np.argsort(-scores, kind="stable")[:40]
            q = _softmax(scores[best] / temperature)
            return int(row.ids[best[self._rng.choice(len(best), p=q)]])
        logits = row + self._adjust
        if temperature <= 0:
            return int(np.argmax(logits))
        top = np.argpartition(-logits, 40)[:40]
        p = _softmax(logits[top] / temperature)
        return int(top[self._rng.choice(len(top), p=p)])

    def greedy(self, n_tokens: int) -> list[int]:
        """Reference greedy continuation of the document, one single-row decode per token (tests, baselines)."""
        run: list[int] = []
        for _ in range(n_tokens):
            run.append(self._rows_for([self._main + run], cache=False, pick=lambda r: self._pick(r, 0.0))[0])
        return run

    # ------------------------------------------------------------------------------------------- bias, LoRA
    def set_bias(self, word: str, bias: float) -> None:
        """Ban (bias <= -1e9 or -inf) or boost a word.

        A word that is one token (with or without its leading space) gets a logit bias on that token, so
        look-aheads and auto-writing obey it too. Any other word is weighed (or dropped) where words are
        ranked. Case-sensitive.
        """
        word = word.strip()
        if not word:
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, "bias: empty word")
        if math.isnan(bias):
            raise DaemonRefusal(ErrorCode.BAD_COMMAND, "bias: not a number")
        token_level = False
        for form in {word, " " + word}:
            toks = self.tokenize(form)
            if len(toks) == 1:
                self._token_bias[toks[0]] = bias
                token_level = True
        self._word_bias[word] = (bias, token_level)
        self._bias_changed()

    def clear_bias(self) -> None:
        self._token_bias.clear()
        self._word_bias.clear()
        self._bias_changed()

    def _bias_changed(self) -> None:
        adj = self._base_adjust.copy()
        for t, b in self._token_bias.items():
            adj[t] = -np.inf if b <= -1e9 else adj[t] + np.float32(b)
        self._adjust = adj
        self._bias_version += 1
        self._dists.clear()
        self._greedy.clear()

    def load_lora(self, path: str, scale: float = 1.0) -> None:
        """Switch the LoRA adapter ("" removes it). The document is re-evaluated under the new weights."""
        row = self.backend.set_adapter(path, scale)
        # every cached row was computed with the old weights
        self._rows.clear()
        self._dists.clear()
        self._greedy.clear()
        if row is not None and self._main:
            self._remember(tuple(self._main), row)


def _first_char(raw: bytes) -> str | None:
    """The first character of ``raw`` in lower case (None: empty, or a character split across tokens)."""
    if not raw:
        return None
    b = raw[0]
    n = 1 if b < 0x80 else 2 if 0xC0 <= b < 0xE0 else 3 if 0xE0 <= b < 0xF0 else 4 if 0xF0 <= b < 0xF8 else 0
    if not n or len(raw) < n:
        return None
    try:
        ch = raw[:n].decode("utf-8")
    except UnicodeDecodeError:
        return None
    low = ch.lower()
    return low if len(low) == 1 else ch


@dataclass
class _CharTables:
    """Character ids of the vocabulary's tokens for the next-character walk (``Engine._next_chars``)."""

    names: list[str]          # id -> character (id 0: none)
    lead: np.ndarray          # each token's first character after its leading spaces (0: none)
    on_ids: np.ndarray        # tokens that go on with a word (a word character or a joiner right away)
    on_ch: np.ndarray         # their first characters
    new_at_start: np.ndarray  # tokens that start a new word at a line start (with or without a space)
    new_mid: np.ndarray       # ... after a word (with a space: a glued piece is no new word)
    space: int                # the id of " " (the word ends)

    def named(self, acc: np.ndarray) -> dict[str, float]:
        """Masses by character id -> by character; ids of less than ``LETTER_EPS`` (rare characters
        spread over many pieces) and id 0 (no character) are left out."""
        return {self.names[i]: float(acc[i]) for i in (np.flatnonzero(acc[1:] >= LETTER_EPS) + 1).tolist()}

    @classmethod
    def build(cls, vocab: Vocab) -> _CharTables:
        ids: dict[str, int] = {" ": 1}
        known: dict[bytes, int] = {}  # a piece's first 4 bytes -> its first character's id: most pieces share them

        def cid(raw: bytes) -> int:
            head = raw[:4]
            i = known.get(head)
            if i is None:
                ch = _first_char(head)
                i = known[head] = 0 if ch is None else ids.setdefault(ch, len(ids) + 1)
            return i

        first = np.zeros(vocab.n, dtype=np.int32)
        lead = np.zeros(vocab.n, dtype=np.int32)
        kinds = vocab.kind.tolist()
        masked, word_start = int(Kind.MASKED), int(Kind.WORD_START)
        for t, piece in enumerate(vocab.pieces):
            kind = kinds[t]
            if kind == masked:
                continue
            first[t] = f = cid(piece)
            if kind == word_start:
                body = piece.lstrip(b" ")
                lead[t] = cid(body if body[:1].isalnum() else lstrip_space(piece))
            else:
                lead[t] = f
        names = [""] * (len(ids) + 1)
        for ch, i in ids.items():
            names[i] = ch
        on_ids = np.flatnonzero(vocab.grows)
        starts = vocab.kind == Kind.WORD_START
        return cls(names, lead, on_ids, first[on_ids], np.flatnonzero(starts | vocab.cont),
                   np.flatnonzero(starts), ids[" "])


@dataclass
class _RankedWord:
    word: str
    text: str
    tokens: list[int]
    prob: float
    paths: int


def _copy_dist(d: WordDistribution) -> WordDistribution:
    return replace(d, candidates=[replace(c, tokens=list(c.tokens), lookahead=list(c.lookahead),
                                          lookahead_tokens=list(c.lookahead_tokens)) for c in d.candidates])
