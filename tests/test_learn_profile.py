"""The user profile: cache LM + accept/reject statistics, learned weights, persistence, bad files.

Pure Python (no model): word distributions are built by hand, as the engine would return them.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from razvilka.daemon.engine import WordCandidate, WordDistribution
from razvilka.daemon.learn.errors import LearnError
from razvilka.daemon.learn.live import catch_up
from razvilka.daemon.learn.persist import default_profile_path, import_profile, load_profile, save_profile, to_json
from razvilka.daemon.learn.profile import Profile
from razvilka.daemon.learn.text import history_of, words_of
from razvilka.daemon.store import Entry, Store
from razvilka.protocol.errors import ErrorCode


def dist(pairs: list[tuple[str, float]], prefix: str = "", lead: str = " ") -> WordDistribution:
    cands = [WordCandidate(w, (lead if w[:1].isalnum() else "") + w, [i + 10], p) for i, (w, p) in enumerate(pairs)]
    probs = [p for _, p in pairs]
    return WordDistribution(cands, 2.5, probs[0] - probs[1], prefix, coverage=sum(probs) + 0.05, top_prob=probs[0])


LLM = [("the", 0.30), ("a", 0.20), ("her", 0.12), (",", 0.10), ("his", 0.06), ("my", 0.05), ("their", 0.04),
       ("an", 0.03), ("our", 0.02), ("this", 0.02)]


def write(prof: Profile, context: str, chosen: str, shown_from: WordDistribution, k: int = 5,
          doc: str = "d1") -> tuple[WordDistribution, str]:
    """One fork as the daemon runs it: rerank, show K, the person chooses (or types), observe."""
    shown = prof.rerank(shown_from, context, k=k)
    words = [c.word for c in shown.candidates]
    prof.observe(context, words, chosen if chosen in words else None, " " + chosen, document=doc)
    return shown, context + " " + chosen


def test_words_and_history() -> None:
    assert words_of("Mr. Darcy's \"pride\",\nhe said") == ["Mr", ".", "Darcy's", '"', "pride", '"', ",", "\n", "he",
                                                            "said"]
    assert history_of("") == ("<s>", "<s>")
    assert history_of("said Elizabeth") == ("said", "Elizabeth")


def test_empty_profile_changes_nothing() -> None:
    prof = Profile()
    d = dist(LLM)
    out = prof.rerank(d, "She took", k=5)
    assert [c.word for c in out.candidates] == ["the", "a", "her", ",", "his"]
    assert [c.prob for c in out.candidates] == [p for _, p in LLM[:5]]


def test_picked_words_rise_and_passed_over_words_sink() -> None:
    prof = Profile()
    context = "She took"
    for i in range(12):
        _, _ = write(prof, f"{context}{' again' * i}", "her", dist(LLM))
    after = prof.rerank(dist(LLM), "And then she took", k=5)
    ranked = [c.word for c in after.candidates]
    assert ranked[0] == "her", ranked
    # "the" was shown and passed over every time: it sinks below where the LLM had it
    p_the = next(c.prob for c in after.candidates if c.word == "the")
    assert p_the < 0.30
    assert prof.choice.beta_[0] > 0, "the weight of the accept/reject log-odds was learned from the choices"
    # gating sees the profile: the margin is recomputed from the reranked probabilities
    assert after.margin == pytest.approx(after.candidates[0].prob - after.candidates[1].prob)
    assert after.top_prob == after.candidates[0].prob


def test_cache_offers_the_persons_own_word_the_llm_did_not_list() -> None:
    prof = Profile()
    ctx = "It was"
    for i in range(6):
        # the person types "Elizabeth" after "said" (never offered by the LLM)
        c = f"{ctx} {i} said"
        prof.rerank(dist(LLM), c, k=5)
        prof.observe(c, [w for w, _ in LLM[:5]], None, " Elizabeth", document="d1")
    out = prof.rerank(dist(LLM), "and then said", k=5)
    words = [c.word for c in out.candidates]
    assert "Elizabeth" in words
    el = out.candidates[words.index("Elizabeth")]
    assert el.text == " Elizabeth" and el.tokens == []  # the engine tokenizes its text when it commits it
    # with a typed prefix the cache word must agree with it
    narrowed = prof.rerank(dist([("Ed", 0.5), ("Em", 0.3)], prefix="E"), "and then said", k=3)
    assert narrowed.candidates[0].word == "Elizabeth"
    none = prof.rerank(dist([("Ja", 0.5), ("Jo", 0.3)], prefix="J"), "and then said", k=3)
    assert "Elizabeth" not in [c.word for c in none.candidates]


def test_at_a_prefix_fork_the_engine_order_stays_and_one_own_word_may_join() -> None:
    """Once letters are typed the engine's prefix list is sharp: the profile keeps its order and
    probabilities, and lets at most one of the person's words it did not list join."""
    prof = Profile()
    for i, name in enumerate(["Elizabeth", "Emma", "Elizabeth", "Emma", "Edmund"] * 2):
        c = f"Note {i} said"
        prof.rerank(dist(LLM), c, k=5)
        prof.observe(c, [w for w, _ in LLM[:5]], None, " " + name, document=f"d{i}")
    engine = dist([("Ed", 0.4), ("Em", 0.3), ("Eve", 0.2), ("Ewan", 0.05)], prefix="E")
    out = prof.rerank(engine, "and then said", k=3)
    words = [c.word for c in out.candidates]
    own = [w for w in words if w in ("Elizabeth", "Emma", "Edmund")]
    assert len(own) == 1, words
    assert [w for w in words if w not in own] == ["Ed", "Em"], "the engine's words keep their order"
    assert [c.prob for c in out.candidates if c.word in ("Ed", "Em")] == [0.4, 0.3]


def test_a_joining_word_gets_its_space_even_when_the_engine_lists_a_glued_piece_first() -> None:
    """After "Miss" the engine may list "es" (glued: "Misses") before its spaced words; a word of the
    person's that joins must still start with the space ("Miss Bennets", not "MissBennets"). In a
    returning-user run the glued lead made the daemon write "MissBennets", and the person undid it."""
    prof = Profile()
    for i in range(6):
        c = f"Note {i} said the elder Miss"
        prof.rerank(dist(LLM), c, k=5)
        prof.observe(c, [w for w, _ in LLM[:5]], None, " Bennets", document=f"d{i}")
    engine = dist([("es", 0.3), ("and", 0.2), ("Mary", 0.1), ("who", 0.05)])
    engine.candidates[0] = WordCandidate("es", "es", [7], 0.3)  # glued: no leading space
    out = prof.rerank(engine, "Their arrival was dreaded by the elder Miss", k=4)
    joined = [c for c in out.candidates if c.word == "Bennets"]
    assert joined and joined[0].text == " Bennets" and joined[0].tokens == []
    assert out.candidates[[c.word for c in out.candidates].index("es")].text == "es"
    # at the start of a line a new word takes no space: no spaced word is listed, the context decides
    for i in range(6):
        c = f"Note {i} said\n"
        prof.rerank(dist(LLM, lead=""), c, k=5)
        prof.observe(c, [w for w, _ in LLM[:5]], None, "Jane", document=f"e{i}")
    out = prof.rerank(dist([("The", 0.3), ("and", 0.2), ("She", 0.1)], lead=""), "and then she said\n", k=4)
    joined = [c for c in out.candidates if c.word == "Jane"]
    assert joined and joined[0].text == "Jane"


def test_a_typed_word_is_cache_evidence_not_accept_evidence() -> None:
    """A word the person typed was never on screen: the cache learns it; the words that were on
    screen were passed over (at the rate the model expected them); nothing was "accepted"."""
    prof = Profile()
    for i in range(10):
        c = f"Note {i} said"
        prof.observe(c, [w for w, _ in LLM[:5]], None, " zebra", probs=dict(LLM), document=f"d{i}")
    assert prof.cache.unigrams_["zebra"] == 10 and "zebra" not in prof.choice.accept_
    assert all(prof.choice.accept_[w][:2] == [0, 10] for w, _ in LLM[:5])
    assert 1.0 < prof.choice.accept_["the"][2] <= 10 * 0.30 + 1e-9  # its probability at each fork, summed


def test_interpolation_weight_is_learned_from_held_out_choices() -> None:
    # a person who always writes what the cache predicts: the weight of the cache grows
    steady = Profile()
    text = "the cat sat on the mat"
    ctx = "Once"
    for _ in range(8):
        for w in text.split():
            steady.rerank(dist(LLM), ctx, k=5)
            steady.observe(ctx, [x for x, _ in LLM[:5]], w if w in dict(LLM) else None, " " + w, document="d")
            ctx += " " + w
    assert max(steady.mixture.lam_) > 0.5
    ll = steady.log_likelihood()
    assert ll["mixture_bits"] < ll["llm_bits"]

    # a person who never repeats a word: the cache is no help and its weight stays small
    fresh = Profile()
    ctx = "Once"
    for i in range(40):
        w = f"word{i}"
        fresh.rerank(dist(LLM), ctx, k=5)
        fresh.observe(ctx, [x for x, _ in LLM[:5]], None, " " + w, document="d")
        ctx += " " + w
    assert max(fresh.mixture.lam_) < 0.1

    # forks where the model read the person's memory first have weights of their own, learned the same way
    assert max(steady.mixture.lam_[3:]) < 0.1 and steady.weight("on", "the") > 0.5
    steady.reading_ = True
    assert steady.weight("on", "the") < 0.1
    for _ in range(4):
        for w in text.split():
            steady.rerank(dist(LLM), ctx, k=5)
            steady.observe(ctx, [x for x, _ in LLM[:5]], w if w in dict(LLM) else None, " " + w, document="d")
            ctx += " " + w
    assert steady.weight("on", "the") > 0.5


def test_undone_decision_is_taken_back() -> None:
    prof = Profile()
    prof.rerank(dist(LLM), "She took", k=5)
    prof.observe("She took", ["the", "a", "her"], "a", " a", document="d1")
    assert prof.cache.unigrams_.get("a") == 1 and prof.decisions_ == 1
    # the person pressed back: the next fork is at the same context again, and the undone word is
    # taken back before that fork is ranked (else the word just undone would be offered first)
    prof.rerank(dist(LLM), "She took", k=5)
    assert "a" not in prof.cache.unigrams_ and prof.decisions_ == 0
    prof.observe("She took", ["the", "a", "her"], "her", " her", document="d1")
    assert "a" not in prof.cache.unigrams_ and prof.cache.unigrams_["her"] == 1
    assert prof.decisions_ == 1
    assert prof.choice.accept_["a"][:2] == [0, 1]  # still shown and passed over this time (chosen, passed)
    # words the model wrote on its own and the person kept are learned at the next decision
    prof.observe("She took her hat and", ["went"], "went", " went", document="d1")
    assert prof.cache.unigrams_["hat"] == 1 and prof.cache.unigrams_["and"] == 1
    # a new document is never mistaken for an undo, by observe nor, once the document ended, by rerank
    prof.observe("She took", ["the"], "the", " the", document="d2")
    prof.sync("She took the", document="d2")
    prof.settle()
    prof.rerank(dist(LLM), "She took", k=5)
    assert prof.cache.unigrams_["the"] == 1
    prof.observe("She took", ["the"], "a", " a", document="d3")
    assert prof.cache.unigrams_["the"] == 1 and prof.cache.unigrams_["a"] == 1


def test_survives_restart_reset_export_import(tmp_path: Path) -> None:
    path = default_profile_path("ann", tmp_path / "store.sqlite3")
    assert path == tmp_path / "profiles" / "ann.json"
    prof = load_profile(path, "ann")
    ctx = "Dear"
    for w in ["Mr", "Darcy", "said", "Mr", "Darcy"]:
        prof.rerank(dist(LLM), ctx, k=5)
        prof.observe(ctx, ["the", "a"], None, " " + w, document="d")
        ctx += " " + w
    save_profile(prof)
    again = load_profile(path, "ann")  # a daemon restart
    assert to_json(again) == to_json(prof)
    assert [c.word for c in again.rerank(dist(LLM), "and Mr", k=5).candidates] == \
        [c.word for c in prof.rerank(dist(LLM), "and Mr", k=5).candidates]
    out = save_profile(prof, tmp_path / "ann-export.json")
    imported = import_profile(out, tmp_path / "bob.json", "bob")
    assert imported.cache.unigrams_ == prof.cache.unigrams_ and imported.mixture.lam_ == prof.mixture.lam_
    again.reset()
    save_profile(again)
    assert load_profile(path).words_seen == 0


def test_corrupt_profile_is_kept_aside_and_a_fresh_one_starts(tmp_path: Path) -> None:
    path = tmp_path / "profiles" / "ann.json"
    path.parent.mkdir()
    path.write_text('{"format": "razvilka-profile", "version": 1, "unigr')  # cut short by a crash or a bad disk
    prof = load_profile(path, "ann")
    assert prof.words_seen == 0 and "could not be read" in prof.notice_ and "kept as" in prof.notice_
    aside = list(path.parent.glob("ann.corrupt-*.json"))
    assert len(aside) == 1 and aside[0].read_text().endswith('"unigr')  # nothing lost
    prof.rerank(dist(LLM), "x", k=3)
    prof.observe("x", ["the"], "the", " the")
    save_profile(prof)
    assert load_profile(path).words_seen == 1

    wrong = tmp_path / "other.json"
    wrong.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(LearnError) as err:
        import_profile(wrong, tmp_path / "x.json")
    assert err.value.code == ErrorCode.BAD_CONFIG and "not a usable razvilka profile" in err.value.detail


def test_profile_from_a_newer_razvilka_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    data = to_json(Profile(path)) | {"version": 99}
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    with pytest.raises(LearnError) as err:
        load_profile(path)
    assert err.value.code == ErrorCode.BAD_CONFIG and "newer" in err.value.detail
    assert path.read_bytes() == before


def _decide_in_store(store: Store, doc_id: str, context: str, word: str, shown: list[str]) -> None:
    """One fork and its decision, written the way the daemon writes them."""
    fork_id = uuid.uuid4().hex
    store.add_fork(doc_id, fork_id, position=0, context=context, prefix="", page=0, reason="test", entropy=2.0,
                   margin=0.1, candidates=[{"index": i, "word": w, "prob": 0.2} for i, w in enumerate(shown)])
    store.add_entry(doc_id, Entry(uuid.uuid4().hex, 0, "human", " " + word, [], [word], fork_id=fork_id,
                                  idx=shown.index(word)))


def test_a_crash_before_the_profile_is_saved_loses_no_decision(tmp_path: Path) -> None:
    """kill -9 between a decision's store write and the profile's save: on restart the profile
    learns what the store has and it lacks, once, and never a decision it already had."""
    store = Store(tmp_path / "store.sqlite3")
    path = tmp_path / "profiles" / "ann.json"
    prof = load_profile(path, "ann")
    doc = store.new_document("ann", "Dear", "gemma")
    shown = ["Mr", "Miss", "Sir"]
    ctx = "Dear"
    for word in ("Mr", "Darcy"):  # observed, written, marked, saved: what the daemon does
        prof.observe(ctx, shown + [word] * (word not in shown), word, " " + word, document=doc.id)
        _decide_in_store(store, doc.id, ctx, word, list(dict.fromkeys(shown + [word])))
        prof.mark_store(time.time_ns())
        ctx += " " + word
    save_profile(prof)
    saved = json.loads(path.read_text())
    # the third decision reaches the store; the daemon dies before the profile is written
    _decide_in_store(store, doc.id, ctx, "Sir", shown)
    restarted = load_profile(path, "ann")
    assert to_json(restarted) == saved and "Sir" not in restarted.cache.unigrams_
    assert catch_up(restarted, store.path, "ann") == 1
    assert restarted.cache.unigrams_["Sir"] == 1 and restarted.cache.unigrams_["Mr"] == 1 and restarted.decisions_ == 3
    assert catch_up(restarted, store.path, "ann") == 0, "the mark moved past what it learned"

    # observed and saved, but the crash came before the store write was marked: not learned twice
    ctx += " Sir"
    restarted.observe(ctx, shown, "Miss", " Miss", document=doc.id)
    save_profile(restarted)
    _decide_in_store(store, doc.id, ctx, "Miss", shown)
    again = load_profile(path, "ann")
    assert catch_up(again, store.path, "ann") == 0
    assert again.cache.unigrams_["Miss"] == 1 and again.decisions_ == 4
    assert again.store_mark_ns_ >= restarted.store_mark_ns_
    # someone else's decisions are not this profile's
    other = store.new_document("bob", "Hi", "gemma")
    _decide_in_store(store, other.id, "Hi", "Sir", shown)
    assert catch_up(again, store.path, "ann") == 0 and again.cache.unigrams_["Sir"] == 1
    # a reset profile starts from now: the old decisions are not learned back
    again.reset()
    assert catch_up(again, store.path, "ann") == 0 and again.words_seen == 0
    store.close()


def test_memory_keeps_what_the_person_wrote_per_document() -> None:
    """The memory the model reads before a new document: what was written (chosen, typed and kept auto-written
    words; never the prompt), one document per line; undo takes a word back; it is trimmed in blocks."""
    prof = Profile()
    ctx = "Prompt one."
    for w in ("Dear", "Mr", "Darcy"):
        prof.rerank(dist(LLM), ctx, k=5)
        prof.observe(ctx, ["the", "a"], None, " " + w, document="d1")
        ctx += " " + w
    prof.rerank(dist(LLM), "Prompt two.", k=5)
    prof.observe("Prompt two.", ["the", "a"], "a", " a", document="d2")
    prof.observe("Prompt two.", ["the", "a"], "the", " the", document="d2")  # back, then another word
    prof.sync("Prompt two. the letter came", document="d2")                   # the model wrote on, kept
    assert prof.memory_text() == "Dear Mr Darcy\nthe letter came\n"
    assert prof.memory_text(exclude="d2") == "Dear Mr Darcy\n"                # the document being written
    # what the prompt already holds is not read twice (the model would copy the repetition)
    assert prof.memory_text(prompt="Dear Mr Darcy\nthe letter came\n") == ""
    assert prof.memory_text(prompt="She wrote: the letter came.\n") == "Dear Mr Darcy\n"
    # trimmed by whole documents, down to half the budget at once: the text's start changes seldom
    prof.set_params(memory__max_chars=60)
    for i in range(12):
        prof.observe(f"P{i}", [], None, f" line number {i:02d}", document=f"n{i}")
    text = prof.memory_text()
    assert len(text) <= 60 and text.endswith("line number 11\n") and "Darcy" not in text
    starts = set()
    for i in range(12, 20):
        prof.observe(f"P{i}", [], None, f" line number {i:02d}", document=f"n{i}")
        starts.add(prof.memory_text()[:15])
    assert len(starts) <= 4  # a sliding window would start anew at each of the 8 documents
    prof.set_params(memory__max_chars=0)  # off: nothing of the person's text is kept
    prof.observe("P", [], None, " secret", document="z")
    assert prof.memory_text() == ""


def test_memory_survives_restart_export_import_and_reset(tmp_path: Path) -> None:
    path = tmp_path / "profiles" / "ann.json"
    prof = load_profile(path, "ann")
    prof.observe("Hi", [], None, " Pemberley is lovely", document="d1")
    save_profile(prof)
    again = load_profile(path, "ann")
    assert again.memory_text() == "Pemberley is lovely\n"
    exported = save_profile(prof, tmp_path / "x.json")
    assert import_profile(exported, tmp_path / "b.json").memory_text() == again.memory_text()
    old = json.loads(path.read_text())
    del old["memory"]  # a file written before the memory existed still loads
    path.write_text(json.dumps(old))
    assert load_profile(path).memory_text() == "" and load_profile(path).words_seen == again.words_seen
    old["lam"] = old["lam"][:3]  # and so does one with the three weights of before (forks without memory)
    path.write_text(json.dumps(old))
    assert load_profile(path).mixture.lam_ == old["lam"] + [0.05] * 3
    again.reset()
    assert again.memory_text() == ""


def test_learn_profile_read_learns_text_written_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`razvilka learn profile read FILE`: the cache and the memory learn the person's own text; a file that
    is not UTF-8 text, or is missing, gets a clear error and the profile is not touched."""
    import razvilka.cli

    profile = tmp_path / "p.json"
    base = ["--set", f"store.path={tmp_path / 'store.sqlite3'}", "learn", "profile"]
    letters = tmp_path / "letters.txt"
    letters.write_text("Dear Jane,\nwe walked to Pemberley today.\n\nMy love to Pemberley and to you.\n",
                       encoding="utf-8")
    assert razvilka.cli.main([*base, "read", str(letters), "--profile", str(profile)]) == 0
    assert "learned 17 words" in capsys.readouterr().out  # the units the engine offers: words and punctuation
    prof = load_profile(profile)
    assert prof.cache.unigrams_["Pemberley"] == 2 and prof.decisions_ == 0
    assert prof.memory_text() == "Dear Jane, we walked to Pemberley today. My love to Pemberley and to you.\n"
    # no decision yet, so the cache has its prior weight (small): the word joins the list, low
    assert "Pemberley" in [c.word for c in prof.rerank(dist(LLM), "We went to", k=10).candidates]
    assert "Pemberley" not in [c.word for c in Profile().rerank(dist(LLM), "We went to", k=10).candidates]
    before = profile.read_bytes()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe not text")
    assert razvilka.cli.main([*base, "read", str(bad), "--profile", str(profile)]) == 2
    assert "utf-8" in capsys.readouterr().err
    assert razvilka.cli.main([*base, "read", str(tmp_path / "none.txt"), "--profile", str(profile)]) == 2
    assert "No such file" in capsys.readouterr().err
    assert profile.read_bytes() == before


def test_hyperparameters_are_set_by_name_and_learned_state_ends_in_an_underscore() -> None:
    """scikit-learn's conventions: ``get_params``/``set_params`` (nested as ``name__param``), never a module
    global; learned state in ``..._`` attributes; a changed hyperparameter acts on the next fork."""
    prof = Profile(None, "p")
    params = prof.get_params()
    assert params["prefix_rerank"] is False and params["inject"] == 6 and params["memory__max_chars"] == 8000
    assert params["mixture__prior_mean"] == 0.05 and params["choice__rate"] == 0.05
    assert prof.set_params(prefix_rerank=True, choice__rate=0.1) is prof
    assert prof.prefix_rerank is True and prof.choice.rate == 0.1
    with pytest.raises(ValueError, match="no hyperparameter 'prefix_reranks'.*prefix_rerank"):
        prof.set_params(prefix_reranks=True)
    with pytest.raises(ValueError, match="MixtureWeights has no hyperparameter 'rate'"):
        prof.set_params(mixture__rate=1.0)
    # prefix_rerank changes what a prefix fork shows: the engine's order is kept only while it is off
    for i, name in enumerate(["Elizabeth", "Emma", "Elizabeth", "Emma", "Edmund"] * 2):
        c = f"Note {i} said"
        prof.rerank(dist(LLM), c, k=5)
        prof.observe(c, [w for w, _ in LLM[:5]], None, " " + name, document=f"d{i}")
    engine = dist([("Ed", 0.4), ("Em", 0.3), ("Eve", 0.2), ("Ewan", 0.05)], prefix="E")
    reranked = [c.word for c in prof.rerank(engine, "and then said", k=3).candidates]
    kept = [c.word for c in prof.set_params(prefix_rerank=False).rerank(engine, "and then said", k=3).candidates]
    assert kept[:2] == ["Ed", "Em"] or kept[1:] == ["Ed", "Em"]
    assert len([w for w in reranked if w in ("Elizabeth", "Emma", "Edmund")]) > 1, reranked
    learned = {name for name in vars(prof.cache) if not name.startswith("_")}
    assert learned and all(name.endswith("_") for name in learned)


def test_the_profile_file_is_private(tmp_path: Path) -> None:
    """What the person writes may be medical: the profile is 0600 in a 0700 directory (razvilka/private.py)."""
    path = tmp_path / "profiles" / "ann.json"
    prof = load_profile(path, "ann")
    prof.observe("Hi", [], None, " Pemberley", document="d1")
    save_profile(prof)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert load_profile(path, "ann").cache.unigrams_ == {"Pemberley": 1}
