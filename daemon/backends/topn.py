"""Any backend seen through top-N rows: what a server's API gives (llama-server ``n_probs``, vLLM ``logprobs``).

Why: a remote backend returns the N likeliest tokens after a path and not the whole vocabulary, so
the engine's word search must work from top-N rows and state the mass they did not show
(``WordDistribution.unseen``). Wrapping the embedded backend in this shows, on the same model and the
same KV cells, what top-N costs the search (tests/test_backend.py; docs/engine.md, "Backends"), and
lets a benchmark run the top-N search without a server.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from razvilka.daemon.backend import LMBackend, Row, TopRow, top_row
from razvilka.daemon.errors import DaemonRefusal
from razvilka.protocol.errors import ErrorCode


class TopNBackend:
    """``inner`` with every row cut to its ``n`` likeliest tokens plus the rest's mass (capabilities say so)."""

    def __init__(self, inner: LMBackend, n: int) -> None:
        if n < 1:
            raise DaemonRefusal(ErrorCode.BAD_CONFIG, f"top-N rows need N >= 1 (got {n})")
        self.inner = inner
        self.n = min(int(n), inner.n_vocab)
        self.capabilities = replace(inner.capabilities, full_rows=False, max_top_n=self.n)
        self.model_name = inner.model_name
        self.n_vocab = inner.n_vocab
        self.n_ctx = inner.n_ctx
        self.vocab = inner.vocab
        self.bos = inner.bos
        self.add_bos = inner.add_bos
        self.stats = inner.stats

    @property
    def lora_path(self) -> str:
        return self.inner.lora_path

    def _cut(self, row: Row | None) -> TopRow | None:
        if row is None:
            return None
        if isinstance(row, TopRow):
            return row if len(row.ids) <= self.n else self._shorter(row)
        return top_row(row, self.n)

    def _shorter(self, row: TopRow) -> TopRow:
        lp = row.logprobs[: self.n]
        return TopRow(row.ids[: self.n], lp, row.rest + float(np.exp(row.logprobs[self.n:].astype(np.float64)).sum()))

    def tokenize(self, text: str) -> list[int]:
        return self.inner.tokenize(text)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.inner.detokenize(tokens)

    def set_document(self, tokens: Sequence[int], *, row: bool = True, fresh: bool = False) -> Row | None:
        return self._cut(self.inner.set_document(tokens, row=row, fresh=fresh))

    def rows(self, paths: Sequence[Sequence[int]], *, abort: threading.Event | None = None) -> list[Row]:
        return [r for r in (self._cut(x) for x in self.inner.rows(paths, abort=abort)) if r is not None]

    def pick(self, paths: Sequence[Sequence[int]], choose: Callable[[Row], int], *,
             keep: Sequence[bool], abort: threading.Event | None = None) -> list[tuple[int, Row | None]]:
        out: list[tuple[int, Row | None]] = []
        for row in self.rows(paths, abort=abort):  # as a server answers: the top-N rows, chosen from here
            out.append((choose(row), row))
        return [(tok, row if k else None) for (tok, row), k in zip(out, keep)]

    def set_adapter(self, path: str, scale: float = 1.0) -> Row | None:
        return self._cut(self.inner.set_adapter(path, scale))

    def forget(self) -> None:
        self.inner.forget()

    def close(self) -> None:
        """The inner backend belongs to whoever made it: nothing to free here."""
