"""A profile on disk: one JSON file per user, written atomically, private (0600 in a 0700 directory).

An unreadable file is kept aside (renamed, nothing deleted) and a fresh profile starts; its
``notice_`` says so, and the daemon shows it in ``daemon.status`` (docs/learning.md). A file from a
newer razvilka is refused and left as it is.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from razvilka.daemon.learn.errors import ErrorCode, LearnError
from razvilka.daemon.learn.profile import Profile
from razvilka.private import private_dir, write_private

log = logging.getLogger("razvilka.learn.profile")

FORMAT = "razvilka-profile"
VERSION = 1
_WRITING = threading.Lock()   # one write at a time: the temporary file's name is per process
_UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OSError)


class _NewerProfile(ValueError):
    pass


def default_profile_path(user: str, store_path: str | Path = "") -> Path:
    """``profiles/<user>.json`` next to the session store."""
    from razvilka.daemon.store import default_store_path

    base = Path(store_path).parent if store_path else default_store_path().parent
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", user) or "default"
    return base / "profiles" / f"{safe}.json"


def load_profile(path: str | Path, user: str = "", **params: Any) -> Profile:
    """The profile at ``path`` (a fresh one if there is none), with hyperparameters ``params``. An
    unreadable file is renamed to ``<name>.corrupt-<time>.json`` and ``notice_`` says so."""
    p = Path(path)
    prof = Profile(p, user).set_params(**params)
    if not p.exists():
        return prof
    try:
        from_json(prof, json.loads(p.read_text(encoding="utf-8")))
    except _UNREADABLE as exc:
        if isinstance(exc, _NewerProfile):
            raise LearnError(ErrorCode.BAD_CONFIG, str(exc)) from None
        aside = p.with_name(f"{p.stem}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}{p.suffix}")
        os.replace(p, aside)
        prof = Profile(p, user).set_params(**params)
        prof.notice_ = (f"the profile {p} could not be read ({type(exc).__name__}: {exc}); "
                        f"it was kept as {aside} and a new, empty profile was started")
        log.warning("%s", prof.notice_)
    return prof


def save_profile(profile: Profile, path: str | Path | None = None) -> Path:
    """Write atomically (temporary file, then rename): a crash leaves the old or the new file. Without
    ``path``, to the profile's own file (which marks it saved); with one, a copy (an export)."""
    target = Path(path) if path else profile.file
    if target is None:
        raise LearnError(ErrorCode.BAD_CONFIG, "this profile has no file: pass a path to save it to")
    with profile.lock:  # a consistent copy; the slow part (JSON, disk) runs without holding up forks
        data = to_json(profile)
        if path is None:
            profile.dirty_ = False
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    with _WRITING:
        private_dir(target.parent)
        write_private(target, text)
    return target


def import_profile(source: str | Path, path: str | Path, user: str = "") -> Profile:
    """Read ``source`` strictly (a clear error if it is not a profile) and make it the profile at ``path``."""
    src = Path(source)
    prof = Profile(path, user)
    try:
        from_json(prof, json.loads(src.read_text(encoding="utf-8")))
    except _NewerProfile as exc:
        raise LearnError(ErrorCode.BAD_CONFIG, str(exc)) from None
    except _UNREADABLE as exc:
        raise LearnError(ErrorCode.BAD_CONFIG, f"{src} is not a usable razvilka profile: "
                         f"{type(exc).__name__}: {exc}") from None
    prof.dirty_ = True
    return prof


def to_json(prof: Profile) -> dict[str, Any]:
    """The file's content (copies: safe to serialise while the profile goes on learning)."""
    cache, mix, choice = prof.cache, prof.mixture, prof.choice
    with prof.lock:
        return {
            "format": FORMAT, "version": VERSION, "user": prof.user, "created_ns": prof.created_ns_,
            "updated_ns": prof.updated_ns_, "decisions": prof.decisions_,
            "store_mark_ns": prof.store_mark_ns_, "last_key": prof.last_key_,
            "lam": list(mix.lam_), "beta": list(choice.beta_),
            "unigrams": dict(cache.unigrams_), "bigrams": {h: dict(d) for h, d in cache.bigrams_.items()},
            "trigrams": {h: dict(d) for h, d in cache.trigrams_.items()},
            "accept": {w: list(v) for w, v in choice.accept_.items()},
            "accept_ctx": {w: list(v) for w, v in choice.accept_ctx_.items()},
            "em": [list(mix.buckets_), [round(x, 9) for x in mix.p_cache_], [round(x, 9) for x in mix.p_llm_]],
            "memory": [[d, t] for d, t in prof.memory.texts_.items()],
        }


def from_json(prof: Profile, data: Any) -> None:
    """Fill ``prof`` from a file's content; raises ValueError (and the like) on anything malformed."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("not a razvilka profile (no \"format\": \"razvilka-profile\")")
    if int(data["version"]) > VERSION:
        raise _NewerProfile(f"profile {prof.path} has version {data['version']}, newer than this razvilka "
                            f"({VERSION}); upgrade razvilka (the file was left as it is)")
    mix, choice = prof.mixture, prof.choice
    prof.user = prof.user or str(data.get("user", ""))
    prof.created_ns_ = int(data["created_ns"])
    prof.updated_ns_ = int(data["updated_ns"])
    prof.decisions_ = int(data["decisions"])
    prof.store_mark_ns_ = int(data.get("store_mark_ns", prof.updated_ns_))
    prof.last_key_ = str(data.get("last_key", ""))
    lam = [float(x) for x in data["lam"]]
    if len(lam) == 3:  # a file from before the memory: its weights are those of forks without it
        lam += [mix.prior_mean] * 3
    beta = [float(x) for x in data["beta"]]
    if len(lam) != mix.n_buckets or len(beta) != 2 or not all(map(math.isfinite, lam + beta)):
        raise ValueError("bad weights")
    mix.lam_, choice.beta_ = lam, beta
    prof.cache.set_counts({str(w): int(c) for w, c in data["unigrams"].items()},
                          {str(h): {str(w): int(c) for w, c in d.items()} for h, d in data["bigrams"].items()},
                          {str(h): {str(w): int(c) for w, c in d.items()} for h, d in data["trigrams"].items()})
    choice.accept_ = {str(w): [float(v[0]), float(v[1]), float(v[2])] for w, v in data["accept"].items()}
    choice.accept_ctx_ = {str(w): [float(v[0]), float(v[1]), float(v[2])] for w, v in data["accept_ctx"].items()}
    b, pc, pl = data["em"]
    if not len(b) == len(pc) == len(pl):
        raise ValueError("bad em rows")
    mix.buckets_, mix.p_cache_, mix.p_llm_ = [int(x) for x in b], [float(x) for x in pc], [float(x) for x in pl]
    prof.memory.texts_ = OrderedDict((str(d), str(t)) for d, t in data.get("memory", []))  # absent in older files
    prof.dirty_ = False
