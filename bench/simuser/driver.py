"""Drives the real daemon over the bus as a simulated person, like an input adapter would.

The person (``Person``) joins the daemon's bus with a ``BusClient``, starts a new document per
phrase (``input.command`` "new" with the phrase's prompt), and at every ``fork.open`` applies the
policy (policy.py): ``input.select`` (with ``phrase=True`` for a look-ahead phrase),
``input.command`` "type" (a letter, a backspace, or the whole word and a space), "back" and
"more". It follows the text through ``text.state`` / ``text.auto`` / ``text.undo`` and records
every step for the cost model (costs.py), plus the daemon's own timings from the messages.

A single-input person (``PersonOptions.single``: gaze, switch or p300) chooses only targets on
screen (protocol 1.4, protocol/targets.py): candidates, look-ahead words, commands and the
on-screen keyboard's keys, never typed text. Each action is sent as its target by
:func:`target_message`; each step records what reaching that target costs on the screen of the
fork (screen.py).
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from razvilka.protocol.client import BusClient
from razvilka.protocol.messages import (
    Body,
    Command,
    DaemonError,
    Focus,
    ForkDecided,
    ForkLookahead,
    ForkOpen,
    Header,
    Message,
    Select,
    TextAuto,
    TextState,
    TextUndo,
)

# imported with bench/ on sys.path (bench/simulated_user.py and the tests put it there)
from simuser.costs import PhraseResult, Step
from simuser.policy import Action, ForkView, PolicyOptions, Status, compare, decide, needs_lookahead, target_words
from simuser.screen import Screen, key_target, p300_items, p300_path, scan_rows, scan_units, script_of, target_prior

SOURCE = "simuser"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
#: Single-input people send their choices as ``input.select`` ``target`` (protocol 1.4). False: the
#: protocol 1.3 equivalents (``index``, ``type``, ``back``, ``more``) for a daemon that does not
#: apply targets yet. The one switch between the two paths.
SEND_TARGETS = True
#: The source kind each single-input person's messages carry (protocol 1.3 ``kind``).
SINGLE_KINDS = {"gaze": "gaze", "switch": "switch", "p300": "eeg"}


class DriverError(RuntimeError):
    """The daemon did not answer as the protocol says it should (with what was seen)."""


@dataclass
class PersonOptions:
    policy: PolicyOptions = field(default_factory=PolicyOptions)
    focus: bool = True           # look at (focus) the wanted candidate, so the daemon can pre-generate
    think_s: float = 1.0         # a selection takes at least... (waits for pre-generation up to this long)
    error: float = 0.0           # injected choice errors (gaze, P300): a wrong candidate or letter
    seed: int = 0
    timeout_s: float = 180.0     # no answer from the daemon for this long: fail loudly
    max_actions: int = 400       # give up a phrase after this many actions (a policy/daemon loop)
    single: str = ""             # gaze | switch | p300: only targets on screen (no typed text); "" = any input


@dataclass
class OpenForkState:
    id: str
    body: ForkOpen
    ready_at: float
    lookahead: dict[int, str] = field(default_factory=dict)
    lookahead_done: bool = False
    long_done: set[int] = field(default_factory=set)

    def view(self, fold: bool = False) -> ForkView:
        """What the person sees; ``fold``: in lower case (the on-screen keyboard has no shift key)."""
        words = [c.word for c in self.body.candidates]
        la = dict(self.lookahead)
        for c in self.body.candidates:
            if c.index not in la and c.lookahead:
                la[c.index] = c.lookahead[0]
        if fold:
            words = [w.lower() for w in words]
            la = {i: t.lower() for i, t in la.items()}
        return ForkView(words=words, lookahead=la, prefix=self.body.prefix.lower() if fold else self.body.prefix,
                        page=self.body.page)

    def screen(self) -> Screen:
        """The single-input screen of this fork: its candidates, its letters, its keyboard."""
        b = self.body
        return Screen(candidates=len(b.candidates), letters=[(x.ch, x.prob) for x in b.letters],
                      script=script_of(b.script), cand_probs={c.index: c.prob for c in b.candidates},
                      prefix=b.prefix)


def action_target(action: Action, prefix: str) -> str:
    """The target a single-input person chooses for ``action`` (protocol/targets.py ids).

    A letter is the key of its last character (ValueError when no key types it); a commit is
    ``key:space``; a backspace ``key:delete`` (once per letter); a phrase the look-ahead word it ends on."""
    if action.kind == "select":
        return f"cand:{action.index}"
    if action.kind == "phrase":
        return f"word:{action.index}:{action.words - 1}"
    if action.kind == "letter":
        return key_target(action.text[-1])
    if action.kind == "commit":
        return "key:space"
    if action.kind == "backspace":
        return "key:delete"
    if action.kind in ("back", "more"):
        return f"cmd:{action.kind}"
    raise ValueError(f"no target for the action {action.kind!r}")


def target_message(target: str, prefix: str, kind: str, *, targets: bool | None = None) -> Select | Command:
    """The message that chooses ``target`` at a fork whose typed prefix is ``prefix``.

    With targets (protocol 1.4) an ``input.select`` naming it; else the 1.3 message that does the
    same (a candidate's index, ``type`` with the prefix changed, ``back``, ``more``)."""
    if SEND_TARGETS if targets is None else targets:
        return Select(target=target, source=SOURCE, kind=kind)
    what, _, value = target.partition(":")
    if what == "cand":
        return Select(index=int(value), source=SOURCE, kind=kind)
    if what == "word":
        i, _, n = value.partition(":")
        return Select(index=int(i), source=SOURCE, phrase_words=int(n), kind=kind)
    if what == "cmd":
        if value not in ("back", "more"):
            raise ValueError(f"the benchmark's person does not use {target!r}")
        return Command(command="back" if value == "back" else "more", source=SOURCE)
    if value == "space":
        return Command(command="type", source=SOURCE, text=prefix + " ")
    if value == "delete":
        return Command(command="type", source=SOURCE, text=prefix[:-1])
    if value == "accept":
        raise ValueError("key:accept has no protocol 1.3 equivalent")
    return Command(command="type", source=SOURCE, text=prefix + value)


class Person:
    """One simulated person on one daemon's bus."""

    def __init__(self, client: BusClient, options: PersonOptions) -> None:
        self.client = client
        self.opt = options
        self.rng = random.Random(options.seed)
        self.doc: str | None = None
        self.prompt = ""
        self.text = ""                # the document after the prompt, as the person sees it
        self.fork: OpenForkState | None = None
        self.text_states = 0          # text.state messages seen for the current document
        self.entries: list[tuple[str, int]] = []  # ("human"|"model", words) like the daemon's store
        self.auto_since_action = 0
        self.auto_wrong_since_action = 0
        self.auto_wasted_since_action = 0
        self.errors: list[DaemonError] = []
        self.sent_ids: set[str] = set()
        self.pending_doc: str | None = None  # waiting for the new document of this prompt
        self.new_sent_ns = 0          # when "new" was sent: an older document's text.state is not the new one's
        self.old_doc: str | None = None
        self.result: PhraseResult | None = None
        self.target: list[str] = []
        self.fold = bool(options.single)  # single-input: no shift key, so case is not the person's to choose
        self.pending_partner: str | None = None  # waiting for the text.state that shows this partner's turn
        self.partner = ""             # the partner's turn the current document replies to (text.state)

    def _cmp(self, text: str) -> tuple[Status, int]:
        """``compare`` as this person reads the text (in lower case when there is no shift key)."""
        return compare(self.target, text.lower() if self.fold else text, self.opt.policy.loose)

    # ------------------------------------------------------------------ messages
    async def _pump(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DriverError(self._why("timed out waiting for the daemon"))
        msg = await self.client.recv(left)
        if msg is not None:
            self._on(msg)

    def _why(self, what: str) -> str:
        fork = self.fork.id if self.fork else None
        errs = "; ".join(f"{e.name}: {e.message}" for e in self.errors[-3:])
        return f"{what} (doc {self.doc}, fork {fork}, text {self.text!r}, errors: {errs or 'none'})"

    def _on(self, msg: Message) -> None:
        body = msg.body
        if isinstance(body, TextState):
            if self.pending_partner is not None:
                if body.partner != self.pending_partner:
                    return
                if body.document != self.doc:  # the daemon began the reply as a new document
                    self.doc, self.fork = body.document, None
                self.pending_partner, self.entries, self.text_states = None, [], 0
            if self.pending_doc is not None:
                if (body.document != self.old_doc and body.text == self.pending_doc
                        and msg.header.ts_ns >= self.new_sent_ns):
                    self.doc, self.pending_doc = body.document, None
                    self.entries, self.fork, self.text_states = [], None, 0
                else:
                    return
            if body.document != self.doc:
                return
            self.text = body.text[len(self.prompt):] if body.text.startswith(self.prompt) else body.text
            self.partner = body.partner
            self.text_states += 1
        elif self.doc is None or self.pending_doc is not None or self.pending_partner is not None:
            return
        elif isinstance(body, TextAuto):
            before, _ = self._cmp(self.text)
            self.text += body.text
            after, _ = self._cmp(self.text)
            self.entries.append(("model", len(body.words)))
            self.auto_since_action += len(body.words)
            if before == "wrong":  # written after a wrong word: wasted, but not the model's own mistake
                self.auto_wasted_since_action += len(body.words)
            elif after == "wrong":
                self.auto_wrong_since_action += len(body.words)
            if self.result is not None:
                self.result.log.append(f"auto {body.text!r}{' (wrong)' if after == 'wrong' else ''}")
        elif isinstance(body, TextUndo):
            for _ in range(min(body.decisions_undone, len(self.entries))):
                self.entries.pop()
            if self.result is not None:
                self.result.log.append(f"undo {body.removed!r}")
                if body.removed and self.text.endswith(body.removed):  # right words thrown away with wrong ones
                    _, right_before = self._cmp(self.text)
                    _, right_after = self._cmp(self.text[: len(self.text) - len(body.removed)])
                    self.result.undone_right = (self.result.undone_right or 0) + max(0, right_before - right_after)
        elif isinstance(body, ForkOpen):
            if msg.header.fork_id and self.doc and msg.header.fork_id.startswith(self.doc + "-"):
                self.fork = OpenForkState(msg.header.fork_id, body, time.monotonic())
        elif isinstance(body, ForkLookahead):
            fork = self.fork
            if fork is None or msg.header.fork_id != fork.id:
                return
            for e in body.entries:
                if e.long:
                    fork.long_done.add(e.index)
                elif e.phrases:
                    fork.lookahead[e.index] = e.phrases[0]
            if body.done and not any(e.long for e in body.entries):
                fork.lookahead_done = True
                if self.result is not None:
                    self.result.lookahead_compute_ms.append(body.compute_ms)
        elif isinstance(body, ForkDecided):
            if self.fork is not None and msg.header.fork_id == self.fork.id:
                self.entries.append(("human", len(body.words)))
        elif isinstance(body, DaemonError):
            self.errors.append(body)
            if self.result is not None:
                self.result.log.append(f"daemon.error {body.name}: {body.message}")

    # ------------------------------------------------------------------ waiting
    async def _until(self, cond: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.opt.timeout_s)
        errors_before = len(self.errors)
        while not cond():
            for e in self.errors[errors_before:]:
                if e.ref_id is not None and e.ref_id in self.sent_ids:
                    raise DriverError(self._why(f"the daemon refused our request while waiting for {what}"))
            await self._pump(deadline)

    async def _wait_some(self, cond: Callable[[], bool], seconds: float) -> None:
        """Wait up to ``seconds`` for ``cond`` (e.g. pre-generation done); no error if it does not come."""
        deadline = time.monotonic() + seconds
        while not cond() and time.monotonic() < deadline:
            msg = await self.client.recv(max(0.0, deadline - time.monotonic()))
            if msg is not None:
                self._on(msg)

    def _publish(self, body: Body, fork_id: str | None) -> Header:
        header = self.client.publish(body, fork_id=fork_id)
        self.sent_ids.add(header.id)
        return header

    # ------------------------------------------------------------------ one phrase
    async def write(self, phrase: str, prompt: str, partner: str = "") -> PhraseResult:
        """Write ``phrase`` in a new document that starts with ``prompt``; returns what it took.

        ``partner``: the conversation partner's turn the phrase replies to, sent (``input.command``
        ``partner``, protocol 1.5) to the new document before the person writes: the model then reads the
        dialogue. Setting it up is the benchmark's, like ``new``: not the person's actions."""
        self.target = target_words(phrase.lower() if self.fold else phrase)
        result = PhraseResult(phrase=phrase, chars=len(phrase), words=len(self.target), steps=[])
        self.result = result
        started = time.monotonic()
        self.old_doc, self.pending_doc, self.prompt = self.doc, prompt, prompt
        # the daemon's document from before (its start-up one, retained) may have the same text: only a
        # text.state published after "new" is the new document's (one host, one clock)
        self.new_sent_ns = self._publish(Command(command="new", source=SOURCE, text=prompt), None).ts_ns
        await self._until(lambda: self.pending_doc is None and self.fork is not None, "the new document's first fork")
        if partner:
            await self._reply_to(partner)
            result.log.append(f"partner {partner!r}")
        self.auto_since_action = self.auto_wrong_since_action = self.auto_wasted_since_action = 0
        self._take_auto(result, decision=False)
        actions = 0
        while True:
            fork = self.fork
            assert fork is not None
            view = fork.view(self.fold)
            seen = self.text.lower() if self.fold else self.text
            if needs_lookahead(self.target, seen, view, self.opt.policy):
                intended = list(view.words).index(self.target[self._cmp(self.text)[1]])
                if self.opt.focus:
                    self._publish(Focus(index=intended, source=SOURCE, kind=self._kind()), fork.id)
                t0 = time.monotonic()
                await self._until(lambda: fork.lookahead_done, "the look-ahead")  # noqa: B023 - awaited here
                result.lookahead_wait_ms.append((time.monotonic() - t0) * 1000)
                view = fork.view(self.fold)
                seen = self.text.lower() if self.fold else self.text
            action = decide(self.target, seen, view, self.opt.policy)
            if action is None:
                break
            if self.opt.single and action.kind == "letter":
                try:
                    key_target(action.text[-1])
                except ValueError as exc:  # e.g. a digit: the on-screen keyboard cannot write this phrase
                    result.done = False
                    result.log.append(f"gave up: {exc}")
                    break
            actions += action.presses
            if actions > self.opt.max_actions:
                result.done = False
                result.log.append(f"gave up after {actions} actions")
                break
            if action.kind == "select" and self.opt.focus:
                if not self.opt.policy.phrases:  # otherwise focused above
                    self._publish(Focus(index=action.index, source=SOURCE, kind=self._kind()), fork.id)
                left = self.opt.think_s - (time.monotonic() - fork.ready_at)
                await self._wait_some(lambda: action.index in fork.long_done, max(0.0, left))  # noqa: B023 - awaited here
            await self._act(action, fork, view, result)
        self._take_auto(result, decision=False)
        final, _ = self._cmp(self.text)
        result.done = result.done and final == "done"
        result.auto_kept = sum(n for kind, n in self.entries if kind == "model")
        result.wall_s = time.monotonic() - started
        self.result = None
        return result

    async def _reply_to(self, turn: str) -> None:
        """Make the new document the reply to the partner's ``turn``: take back what the model wrote in it
        on its own (else the daemon would keep it as the person's earlier reply), then send the turn and
        wait for the first fork of the reply, the model reading the dialogue."""
        assert self.fork is not None
        result, self.result = self.result, None  # the set-up is not logged as the person's
        while self.text.strip():
            at, states = self.fork, self.text_states
            self._publish(Command(command="back", source=SOURCE), at.id)
            await self._until(lambda: self.fork is not None and self.fork.id != at.id  # noqa: B023 - awaited here
                              and self.text_states > states,  # noqa: B023 - awaited here
                              "the empty document before the partner's turn")
        before = self.fork.id if self.fork else None
        self.pending_partner = turn
        self._publish(Command(command="partner", source=SOURCE, text=turn), before)
        await self._until(lambda: self.pending_partner is None and self.fork is not None
                          and self.fork.id != before, "the first fork of the reply to the partner")
        self.result = result

    def _kind(self) -> str:
        """The source kind of this person's messages (protocol 1.3): the single input's, else none said."""
        return SINGLE_KINDS.get(self.opt.single, "")

    def _priced(self, step: Step, target: str, fork: OpenForkState) -> list[Step]:
        """``step`` with what choosing ``target`` costs on this fork's screen: the scan steps to reach it
        (a look-ahead word: its candidate's) and the P300 decoder's prior of it among the targets flashed
        at its level. The P300 person first chooses the level targets on the way (``ui:spell``, ``ui:abc``,
        ``ui:words``: a ``level`` step each, priced at the level it is chosen at) when the target does not
        flash at the level the fork opened on (screen.py, "P300")."""
        from dataclasses import replace

        screen = fork.screen()
        scanned = target if not target.startswith("word:") else "cand:" + target.split(":")[1]
        *ways, (level, _) = p300_path(screen, target)
        out = [Step("level", n=step.n, typed=step.typed, prior=target_prior(screen, via, at),
                    items=len(p300_items(screen, at))) for at, via in ways] if self.opt.single == "p300" else []
        out.append(replace(step, scan=scan_units(scan_rows(screen), scanned), prior=target_prior(screen, target, level),
                           items=len(p300_items(screen, level))))
        return out

    def _take_auto(self, result: PhraseResult, *, decision: bool) -> None:
        """Book the words the model wrote since the last action: the person reads them."""
        if self.auto_since_action:
            result.steps.append(Step("read", words=self.auto_since_action))
            result.auto_words += self.auto_since_action
            result.auto_wrong += self.auto_wrong_since_action
            result.auto_wasted += self.auto_wasted_since_action
            if decision:
                result.decisions_followed_by_auto += 1
        self.auto_since_action = self.auto_wrong_since_action = self.auto_wasted_since_action = 0

    async def _act(self, action: Action, fork: OpenForkState, view: ForkView, result: PhraseResult) -> None:
        n = len(view.words)
        sent_index = action.index
        text = action.text
        if self.opt.error > 0 and action.kind in ("select", "phrase") and n > 1 and self.rng.random() < self.opt.error:
            sent_index = self.rng.choice([i for i in range(n) if i != action.index])
        if self.opt.error > 0 and action.kind == "letter" and self.rng.random() < self.opt.error:
            right = text[-1]
            text = text[:-1] + self.rng.choice([c for c in LETTERS if c != right.lower()])
        shown = ", ".join(map(repr, view.words))
        result.log.append(f"{action.kind} {sent_index if sent_index is not None else text!r}"
                          f"{' (error)' if sent_index != action.index or text != action.text else ''}"
                          f" at {fork.id} (prefix {view.prefix!r}, page {view.page}: {shown})")
        step = Step(action.kind, n=n, words=action.words - 1 if action.kind == "phrase" else 0,
                    presses=action.presses, typed=len(view.prefix))
        bodies: list[Select | Command]
        if self.opt.single:
            target = action_target(action, view.prefix)
            if action.kind == "select" and sent_index != action.index:
                target = f"cand:{sent_index}"
            if action.kind == "letter" and text != action.text:
                target = key_target(text[-1])
            *first, step = self._priced(step, target, fork)
            result.steps += first
            prefix = fork.body.prefix
            if action.kind == "backspace" and SEND_TARGETS:  # one key:delete per letter, each reopening the fork
                bodies = [target_message(target, prefix[: len(prefix) - i], self._kind())
                          for i in range(action.presses)]
            elif action.kind == "backspace":
                bodies = [Command(command="type", source=SOURCE, text=text)]
            else:
                bodies = [target_message(target, prefix, self._kind())]
        elif action.kind in ("select", "phrase"):
            phrase = action.kind == "phrase"
            partial = phrase and self.opt.policy.partial_phrases  # a click on the look-ahead's last right word
            if sent_index is None:
                raise DriverError(f"the policy chose {action.kind} without a candidate")
            bodies = [Select(index=sent_index, source=SOURCE, phrase=phrase and not partial,
                             phrase_words=action.words - 1 if partial else 0)]
        elif action.kind in ("letter", "backspace", "commit"):
            bodies = [Command(command="type", source=SOURCE, text=text)]
        elif action.kind == "back" or action.kind == "more":
            bodies = [Command(command=action.kind, source=SOURCE)]
        else:
            raise DriverError(f"the policy chose an action the driver does not know: {action.kind!r}")
        changes_text = action.kind in ("select", "phrase", "commit", "back")
        result.steps.append(step)
        if action.kind in ("select", "phrase", "commit"):
            result.decisions += 1
        states_before = self.text_states
        sent = time.monotonic()
        at = fork
        for body in bodies:
            self._publish(body, at.id)
            await self._until(lambda: self.fork is not None and self.fork.id != at.id  # noqa: B023 - awaited here
                              and (not changes_text or self.text_states > states_before),
                              f"the answer to {action.kind}")
            assert self.fork is not None
            at = self.fork
        new = self.fork
        assert new is not None
        result.wait_ms.append((time.monotonic() - sent) * 1000)
        if new.body.pregenerated:
            if action.kind == "select":
                result.pregen_hits += 1
        else:
            result.fork_compute_ms.append(new.body.compute_ms)
        if action.kind == "select":
            result.selects += 1
        self._take_auto(result, decision=action.kind in ("select", "phrase", "commit"))


def prompt_for(phrases: Sequence[str], i: int, context: int) -> str:
    """The prompt phrase ``i`` is written after: the ``context`` phrases before it in the file, one per
    line (cyclic, so phrase 0 follows the file's last phrases), then a line break; "" if context is 0."""
    if context <= 0:
        return ""
    n = len(phrases)
    before = [phrases[(i - k) % n] for k in range(context, 0, -1)]
    return "\n".join(before) + "\n"
