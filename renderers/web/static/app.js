// razvilka browser renderer: draws what the daemon publishes, sends hover/click/commands,
// publishes the screen layout (for gaze and scanning) and P300 flash onsets (for EEG) through the bridge.
// Protocol 1.4 targets: every action on the page (candidates, look-ahead words, commands, the
// on-screen keyboard's keys, Resume) is a target in render.layout, so one input can reach it all.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);

  // ------------------------------------------------------------------ state
  const S = {
    cfg: null,
    ws: null,
    fork: null,          // {id, body}: the open fork
    lastForkId: null,    // the last fork this page saw open (kept when it is decided: a paused page's Resume names it)
    looks: new Map(),    // candidate index -> {short: [...], long: [...]}
    hover: null,         // index under this page's pointer/keyboard focus
    remote: null,        // {index, source, dwell, x, y}: focus from another source (gaze, keys)
    decided: null,       // index decided for the current fork (null: open)
    chosen: null,        // index this page selected, waiting for the decision
    text: { text: "", spans: [] },
    sources: {},         // name -> "alive" | "lost" | ...
    layouts: 0,          // render.layout messages sent
    lastLayout: "",
    status: null,        // the last daemon.status body
    peekIndex: null,     // the candidate whose look-ahead is shown
  };
  const HOVER_GRACE_MS = 350;

  // ------------------------------------------------------------------ targets (protocol 1.4)
  // The mirror of protocol/targets.py (the one grammar); tests check both agree on
  // protocol/vectors/targets.json.
  const TARGET_COMMANDS = ["back", "more", "pause", "resume", "new"];
  const OUTPUT_COMMANDS = ["speak", "speak_all", "repeat", "stop_speaking", "copy", "typeout"];   // 1.5: the text goes out
  const RENDERER_COMMANDS = ["settings"];                                            // 1.5: this page's own
  const ALL_COMMANDS = TARGET_COMMANDS.concat(OUTPUT_COMMANDS, RENDERER_COMMANDS);
  const KEY_NAMES = ["space", "delete", "accept"];
  const KEY_JOINERS = "'-";
  const ALPHABETS = {
    latin: "abcdefghijklmnopqrstuvwxyz",
    cyrillic: "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
  };
  const MAX_TARGET_CHARS = 64;

  /** The script of one lower-case letter a key may carry ("latin" | "cyrillic"), else null. */
  function charScript(ch) {
    if (Array.from(ch).length !== 1 || !/^\p{Ll}$/u.test(ch)) return null;
    const cp = ch.codePointAt(0);
    if ((cp >= 0x61 && cp <= 0x7a) || (cp >= 0xdf && cp <= 0xff) || (cp >= 0x100 && cp <= 0x24f)) return "latin";
    if (cp >= 0x430 && cp <= 0x52f) return "cyrillic";
    return null;
  }

  function isKeyChar(ch) {
    return Array.from(ch).length === 1 && (KEY_JOINERS.includes(ch) || charScript(ch) !== null);
  }

  /** "cand:2" -> {kind: "cand", value: "2", index: 2, words: 0}; a bad id throws an Error naming it. */
  function parseTarget(text) {
    const bad = (why) => new Error(`target ${JSON.stringify(String(text))}: ${why}`);
    if (typeof text !== "string") throw bad("a target id is a string");
    if (Array.from(text).length > MAX_TARGET_CHARS) throw bad(`longer than ${MAX_TARGET_CHARS} characters`);
    const at = text.indexOf(":");
    if (at < 0) throw bad("not kind:value");
    const kind = text.slice(0, at), value = text.slice(at + 1);
    const number = (part, lo, hi) => {
      if (!/^(0|[1-9][0-9]*)$/.test(part)) throw bad(`not a whole number ${lo}..${hi}: ${JSON.stringify(part)}`);
      const n = parseInt(part, 10);
      if (n < lo || n > hi) throw bad(`${n} is not in ${lo}..${hi}`);
      return n;
    };
    if (kind === "cand") return { kind, value, index: number(value, 0, 255), words: 0 };
    if (kind === "word") {
      const m = /^([^:]*):([^:]*)$/.exec(value);
      if (!m) throw bad("word targets are word:<candidate>:<n>");
      return { kind, value, index: number(m[1], 0, 255), words: number(m[2], 1, 64) };
    }
    if (kind === "cmd") {
      if (!ALL_COMMANDS.includes(value)) throw bad(`unknown command ${JSON.stringify(value)}`);
      return { kind, value, index: null, words: 0 };
    }
    if (kind === "phrase" || kind === "ui") {   // 1.5: a quick phrase; a renderer's own control
      if (!/^[a-z0-9_-]{1,57}$/.test(value)) throw bad(`a ${kind} id is lower-case Latin letters, digits, _ and -`);
      return { kind, value, index: null, words: 0 };
    }
    if (kind === "key") {
      if (KEY_NAMES.includes(value) || isKeyChar(value)) return { kind, value, index: null, words: 0 };
      throw bad("a key is one lower-case Latin or Cyrillic letter, ' or -, or space, delete, accept");
    }
    throw bad(`unknown kind ${JSON.stringify(kind)}`);
  }

  /** The target a focus message names: its `target`, or `cand:<index>` (a 1.3 sender); null for none. */
  function focusTarget(body) {
    if (!body) return null;
    if (body.target) return body.target;
    return body.index === null || body.index === undefined ? null : `cand:${body.index}`;
  }

  /** The candidate a target belongs to (cand:i, word:i:n), else null. */
  function targetIndex(target) {
    if (!target) return null;
    try { return parseTarget(target).index; } catch (e) { return null; }
  }

  // ------------------------------------------------------------------ the screen's rows (scan order)
  // The mirror of renderers/screen.py, the one rule for what a fork's screen holds and in which order it
  // is scanned (and, for P300, flashed); tests/test_web.py checks that this page's published layout rows
  // equal screen_rows for the same fork. Rows: candidates (likeliest first), the shown look-ahead's words,
  // the likeliest letters, space/delete/accept once a letter is typed, the commands, the alphabet in rows
  // of ALPHABET_COLS. Paused: Resume alone.
  const LIKELY_LETTERS = 7;
  const ALPHABET_COLS = 7;
  const SCREEN_COMMANDS = ["back", "more", "pause", "new", "speak", "speak_all", "repeat", "stop_speaking", "copy", "typeout", "settings"];
  const EDIT_KEYS = ["space", "delete", "accept"];

  /** [[target, prob], ...]: fork.open letters folded onto keys (probabilities added), likeliest first,
   *  at most `likely`; " " is key:space once a letter is typed. */
  function likelyKeys(letters, typed, likely = LIKELY_LETTERS) {
    const probs = new Map();
    for (const l of letters || []) {
      const low = l.ch.toLowerCase();
      let t;
      if (low === " ") { if (!typed) continue; t = "key:space"; }
      else if (isKeyChar(low)) t = `key:${low}`;
      else continue;
      probs.set(t, (probs.get(t) || 0) + l.prob);
    }
    return Array.from(probs.entries()).sort((a, b) => b[1] - a[1]).slice(0, Math.max(0, likely));
  }

  function scriptOf(body) {
    return body && Object.hasOwn(ALPHABETS, body.script) ? body.script : "latin";
  }

  function alphabetRows(script, cols = ALPHABET_COLS) {
    const keys = Array.from(ALPHABETS[script] + KEY_JOINERS).map((ch) => `key:${ch}`);
    const rows = [];
    for (let i = 0; i < keys.length; i += cols) rows.push(keys.slice(i, i + cols));
    return rows;
  }

  /** renderers/screen.py screen_rows: [{name, targets}] for a fork.open body (null: no fork open). */
  function screenRows(body, { paused = false, lookahead = null, likely = LIKELY_LETTERS, alphabetCols = ALPHABET_COLS, phrases = [], phraseCols = PHRASE_COLS } = {}) {
    if (paused) return [{ name: "rest", targets: ["cmd:resume"] }];
    const typed = !!(body && body.prefix);
    const cands = body ? body.candidates.slice().sort((a, b) => b.prob - a.prob || a.index - b.index) : [];
    const rows = [{ name: "candidates", targets: cands.map((c) => `cand:${c.index}`) }];
    if (lookahead && lookahead[1] > 0) {
      rows.push({ name: "lookahead", targets: Array.from({ length: lookahead[1] }, (_, n) => `word:${lookahead[0]}:${n + 1}`) });
    }
    rows.push({ name: "letters", targets: likelyKeys(body && body.letters, typed, likely).map(([t]) => t) });
    if (typed) rows.push({ name: "edit", targets: EDIT_KEYS.map((k) => `key:${k}`) });
    rows.push({ name: "commands", targets: SCREEN_COMMANDS.map((c) => `cmd:${c}`) });
    alphabetRows(scriptOf(body), alphabetCols).forEach((r, n) => rows.push({ name: `abc-${n + 1}`, targets: r }));
    for (let i = 0, n = 1; i < phrases.length; i += Math.max(1, phraseCols), n++) {   // 1.5: quick phrases, last
      rows.push({ name: `phrases-${n}`, targets: phrases.slice(i, i + Math.max(1, phraseCols)).map((id) => `phrase:${id}`) });
    }
    return rows.filter((r) => r.targets.length);
  }

  // The command row. Adding a command is one line here (its name must be in TARGET_COMMANDS).
  // `paused` (optional): what the button is while the daemon is paused (Pause turns into Resume);
  // `command` (optional): the input.command [name, text] a click sends (protocol/targets.py COMMAND_TEXT).
  const COMMANDS = [
    { name: "back", label: "⟲ Back" },
    { name: "more", label: "More ⋯" },
    { name: "pause", label: "❚❚ Pause", paused: { name: "resume", label: "▶ Resume" } },
    { name: "new", label: "✚ New" },
    { name: "speak", label: "♪ Speak" },
    { name: "speak_all", label: "♪ Speak all", command: ["speak", "all"] },   // input.command speak "all"
    { name: "repeat", label: "↻ Repeat" },
    { name: "stop_speaking", label: "■ Stop" },
    { name: "copy", label: "Copy" },
    { name: "typeout", label: "⌨ Type out" },
    { name: "settings", label: "⚙ Settings" },
  ];
  const NAMED_KEYS = { space: "␣ space", delete: "⌫ delete", accept: "✓ accept" };
  const waiting = new Map();  // ref -> resolve, for request()
  const sentTypes = new Map(); // ref -> event type, until the bridge answers
  const myIds = [];            // bus ids of this page's recent selects and commands
  let nextRef = 1;

  // ------------------------------------------------------------------ settings
  function settings(base) {
    const cfg = Object.assign({}, base);
    const num = (key, name) => { if (query.has(name) && !isNaN(parseFloat(query.get(name)))) cfg[key] = parseFloat(query.get(name)); };
    const flag = (key, name) => { if (query.has(name)) cfg[key] = !["0", "false", "no", "off"].includes(query.get(name)); };
    flag("p300", "p300");
    flag("gaze_cursor", "cursor");
    num("flash_ms", "flash");
    num("isi_ms", "isi");
    num("p300_rounds", "rounds");
    num("min_font_px", "minfont");
    num("max_font_px", "maxfont");
    if (["contrast", "light"].includes(query.get("theme"))) cfg.theme = query.get("theme");
    return cfg;
  }

  // ------------------------------------------------------------------ socket
  function connect() {
    window.razvilkaSocket("/ws", {
      onSocket: (ws) => { S.ws = ws; },
      onProtocol, onControl,
      onClose: () => {
        setConn(false);
        p300Stop();
        for (const resolve of waiting.values()) resolve({ type: "error", name: "DISCONNECTED", message: "connection closed" });
        waiting.clear();
        sentTypes.clear();
      },
    });
  }

  function send(ev) {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return null;
    const ref = ev.ref !== undefined ? ev.ref : `p${nextRef++}`;
    S.ws.send(JSON.stringify(Object.assign({}, ev, { ref })));
    sentTypes.set(ref, ev.type);
    return ref;
  }

  /** Send an event and resolve with the bridge's answer ({type: "ack"} or {type: "error"}). */
  function request(ev) {
    return new Promise((resolve) => {
      const ref = send(ev);
      if (ref === null) resolve({ type: "error", name: "DISCONNECTED", message: "not connected" });
      else waiting.set(ref, resolve);
    });
  }

  function setConn(up) {
    const el = $("conn");
    el.className = up ? "up" : "down";
    el.textContent = up ? "connected" : "reconnecting…";
  }

  function onControl(msg) {
    if (msg.type === "hello") {
      S.cfg = settings(msg.config);
      document.body.className = `theme-${S.cfg.theme}`;
      clearFork();   // (re)connected: the retained state that follows says whether a fork is open
      $("cloud").classList.toggle("p300", !!S.cfg.p300);
      setConn(true);
      syncClock();
    } else if (msg.type === "pong") {
      onPong(msg);
    } else if (msg.type === "ack" || msg.type === "error") {
      const resolve = waiting.get(msg.ref);
      if (resolve) { waiting.delete(msg.ref); resolve(msg); }
      const type = sentTypes.get(msg.ref);
      sentTypes.delete(msg.ref);
      if (msg.type === "ack" && (type === "input.select" || type === "input.command")) {
        myIds.push(msg.id);   // the daemon's refusals name these ids
        if (myIds.length > 50) myIds.shift();
      }
      // Layouts, flashes and hovers racing a decision are refused as stale: that is expected,
      // so only what the person did (select, command) is worth telling them about.
      if (msg.type === "error" && (type === "input.select" || type === "input.command" || type === undefined)) {
        toast(`refused: ${msg.message}`);
        if (S.chosen !== null) markChosen(null);
        for (const el of targetEls()) el.classList.remove("chosen");
      } else if (msg.type === "error") {
        console.debug("refused", type, msg.message);
      }
    }
  }

  // ------------------------------------------------------------------ clock (NTP-style, min-RTT sample wins)
  const clock = { offsetMs: null, rttMs: Infinity, samples: [], nextId: 1, timer: null };

  function syncClock() {
    const n = Math.max(1, S.cfg.clock_pings | 0);
    for (let i = 0; i < n; i++) setTimeout(ping, i * 40);
    clearTimeout(clock.timer);
    clock.timer = setTimeout(syncClock, S.cfg.clock_resync_s * 1000);
  }

  function ping() {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return;
    S.ws.send(JSON.stringify({ type: "ping", id: clock.nextId++, t0: performance.now() }));
  }

  function onPong(msg) {
    const t3 = performance.now();
    const t0 = msg.t0, t1 = msg.bus_rx_ns / 1e6, t2 = msg.bus_tx_ns / 1e6;
    const rtt = (t3 - t0) - (t2 - t1);
    const offset = ((t1 - t0) + (t2 - t3)) / 2;   // bus ms = performance.now() + offset
    clock.samples.push({ rtt, offset, at: t3 });
    const keep = 3 * Math.max(1, S.cfg.clock_pings | 0);   // about the last three bursts
    if (clock.samples.length > keep) clock.samples.splice(0, clock.samples.length - keep);
    const best = clock.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    const first = clock.offsetMs === null;
    clock.offsetMs = best.offset;
    clock.rttMs = best.rtt;
    $("clock").textContent = `clock ±${(best.rtt / 2).toFixed(2)} ms`;
    if (first) p300Restart();
  }

  /** A performance.now()-based time (ms) on the bus clock, in integer ns. */
  function busNs(perfMs) {
    return Math.round((perfMs + clock.offsetMs) * 1e6);
  }

  // ------------------------------------------------------------------ bus messages
  function onProtocol(msg) {
    const body = msg.body, h = msg.header;
    switch (h.type) {
      case "fork.open": return onForkOpen(h.fork_id, body);
      case "fork.lookahead": return onLookahead(h.fork_id, body);
      case "fork.decided": return onDecided(h.fork_id, body);
      case "text.state": S.text = { text: body.text, spans: body.spans || [] }; renderPartner(body.partner); return renderText();
      case "text.auto": return appendText(body.text, "model");
      case "text.undo": return undoText(body.removed);
      case "daemon.status": return renderStatus(body);
      case "daemon.error": return myIds.includes(body.ref_id) ? toast(`daemon: ${body.message}`) : undefined;
      case "source.status": S.sources[body.source] = body.state; return renderSources();
      case "input.focus": return onFocus(h.fork_id, body);
      case "input.confirm": case "input.select": return onRendererTarget(body);   // 1.5: cmd:settings, ui:<id>
      case "config.state": return onConfigState(body);
      case "phrases.state": SAY.phrases = body.phrases || []; return renderPhrases();
    }
  }

  function onForkOpen(forkId, body) {
    // the same fork again (the snapshot after connecting can race the live message): already drawn,
    // and restarting would renumber the P300 flashes already sent
    if (S.fork && S.fork.id === forkId) return;
    p300Stop();
    S.fork = { id: forkId, body };
    S.lastForkId = forkId;
    S.looks = new Map();
    for (const c of body.candidates) {
      if (c.lookahead && c.lookahead.length) S.looks.set(c.index, { short: c.lookahead, long: [] });
    }
    S.hover = null; S.remote = null; S.decided = null; S.chosen = null;
    S.lastLayout = "";
    P.level = p300Level(body);
    renderCloud();
    renderKeyboard();
    updateFocus();
    afterPaint(() => { publishLayout(); p300Restart(); });
  }

  function clearFork() {
    p300Stop();
    S.fork = null;
    S.hover = null; S.remote = null; S.decided = null; S.chosen = null;
    $("cloud").replaceChildren();
    $("stage").classList.remove("open");
    renderKeyboard();
    updateFocus();
  }

  function onLookahead(forkId, body) {
    if (!S.fork || forkId !== S.fork.id) return;
    for (const e of body.entries) {
      const look = S.looks.get(e.index) || { short: [], long: [] };
      if (e.long) look.long = e.phrases; else look.short = e.phrases;
      S.looks.set(e.index, look);
    }
    updateFocus();
  }

  function onDecided(forkId, body) {
    if (!S.fork || forkId !== S.fork.id) return;
    p300Stop();
    S.decided = body.index === null || body.index === undefined ? -1 : body.index;
    $("cloud").classList.add("done");
    for (const b of buttons()) b.classList.toggle("decided", +b.dataset.index === S.decided);
    S.hover = null; S.remote = null;
    renderKeyboard();
    updateFocus();
    $("stage").classList.remove("open");
  }

  function onFocus(forkId, body) {
    if (S.cfg && body.source === S.cfg.name) return;
    if (forkId !== S.lastForkId) return;   // the open fork, or (paused between forks) the last one
    const none = focusTarget(body) === null && (body.x === null || body.x === undefined) && !(body.group && body.group.length);
    S.remote = none ? null : body;
    updateFocus();
  }

  // ------------------------------------------------------------------ the cloud
  function buttons() { return Array.from($("cloud").querySelectorAll(".cand")); }
  function button(index) { return $("cloud").querySelector(`.cand[data-index="${index}"]`); }

  function renderCloud() {
    const cloud = $("cloud");
    cloud.replaceChildren();
    cloud.classList.remove("done");
    const cands = S.fork.body.candidates.slice().sort((a, b) => b.prob - a.prob);
    const top = Math.max(1e-9, cands.length ? cands[0].prob : 1);
    const lo = S.cfg.min_font_px, hi = S.cfg.max_font_px;
    // The most likely word sits in the middle; the others alternate to its right and left.
    const order = [];
    cands.forEach((c, i) => (i % 2 === 0 ? order.push(c) : order.unshift(c)));
    for (const c of order) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "cand";
      b.dataset.index = c.index;
      b.setAttribute("role", "option");
      const st = stem(c);
      b.setAttribute("aria-label", `${st}${c.word.trim()} (${st ? `joins ${st}, ` : ""}${Math.round(c.prob * 100)} percent)`);
      b.style.fontSize = `${Math.round(lo + (hi - lo) * Math.sqrt(c.prob / top))}px`;
      const num = document.createElement("span");
      num.className = "num";
      num.textContent = String(c.index + 1);
      const word = document.createElement("span");
      word.className = "word";
      word.textContent = c.word.trim() || "␣";
      if (st) {  // a piece that continues the word before: show what it makes ("Miss" + "es")
        const span = document.createElement("span");
        span.className = "stem";
        span.textContent = st;
        word.prepend(span);
      }
      b.append(num, word);
      wire(b, c.index);
      cloud.append(b);
    }
    $("stage").classList.add("open");
  }

  let lastPointer = "mouse", touchStart = 0, lastTouchEnd = -1e9;
  // A mouse leaving a word lets go of it a moment later, so that it can cross the gap into the
  // look-ahead (whose words are clicked) without the look-ahead closing under it.
  let letGo = null;
  function letGoSoon() { clearTimeout(letGo); letGo = setTimeout(() => setHover(null), HOVER_GRACE_MS); }
  function hold() { clearTimeout(letGo); letGo = null; }
  function wire(b, index) {
    b.addEventListener("pointerenter", (e) => {
      lastPointer = e.pointerType;
      if (e.pointerType === "mouse") { hold(); setHover(index); }
    });
    b.addEventListener("pointerleave", (e) => {
      if (e.pointerType === "mouse" && S.hover === index) letGoSoon();
    });
    b.addEventListener("pointerdown", (e) => {
      lastPointer = e.pointerType;
      if (e.pointerType !== "mouse") { touchStart = performance.now(); setHover(index); }
    });
    b.addEventListener("pointerup", (e) => {
      if (e.pointerType === "mouse") return;
      lastTouchEnd = performance.now();
      // A short tap selects; a long press only peeks at the look-ahead.
      if (lastTouchEnd - touchStart < S.cfg.touch_peek_ms) select(index);
    });
    b.addEventListener("click", (e) => {
      if (lastPointer !== "mouse" && performance.now() - lastTouchEnd < 1000) return;  // the tap was handled
      // shift+click: the word and its look-ahead phrase, one action; detail 0: Enter/Space on the button
      select(index, e.shiftKey, 0, e.detail === 0 ? "key" : "pointer");
    });
    b.addEventListener("contextmenu", (e) => e.preventDefault());   // a long press peeks; no menu
    b.addEventListener("focus", () => setHover(index, "key"));
    b.addEventListener("keydown", (e) => {  // Down: into its look-ahead, whose words take the phrase
      const first = $("peek").querySelector(".la-word");
      if (e.key === "ArrowDown" && first && S.hover === index) { e.preventDefault(); first.focus(); }
    });
    b.addEventListener("blur", (e) => {  // into its look-ahead: it stays open
      if (S.hover === index && !$("peek").contains(e.relatedTarget)) setHover(null);
    });
  }

  /** `kind` (protocol 1.3): "pointer" for mouse and touch, "key" for the keyboard. */
  function setHover(index, kind = "pointer") {
    if (S.hover === index) return;
    S.hover = index;
    if (S.fork && S.decided === null) send({ type: "input.focus", fork_id: S.fork.id, body: { index, kind } });
    updateFocus();
  }

  /** Choose a candidate: alone, with its whole look-ahead (phrase), or with its first `words` words. */
  function select(index, phrase = false, words = 0, kind = "pointer") {
    if (!S.fork || S.decided !== null) return;
    markChosen(index);
    const body = words > 0 ? { index, phrase_words: words, kind } : phrase ? { index, phrase: true, kind } : { index, kind };
    send({ type: "input.select", fork_id: S.fork.id, body });
  }

  function markChosen(index) {
    S.chosen = index;
    for (const b of buttons()) b.classList.toggle("chosen", +b.dataset.index === index);
  }

  /** Choose a non-candidate target of the open fork (a keyboard key): a select naming it (protocol 1.4). */
  function selectTarget(target, kind = "pointer") {
    if (!S.fork || S.decided !== null) return;
    for (const el of targetEls()) el.classList.toggle("chosen", el.dataset.target === target);
    send({ type: "input.select", fork_id: S.fork.id, body: { target, kind } });
  }

  /** A command: sent as input.command, which every 1.x daemon understands (pause/resume even while paused). */
  function command(name, text = "") {
    if (name === "settings") return showSettings(!SAY.open);   // 1.5: this page's own, never sent
    const body = text ? { command: name, text } : { command: name };
    send({ type: "input.command", fork_id: S.fork && S.decided === null ? S.fork.id : null, body });
  }

  // ------------------------------------------------------------------ commands, keyboard, rest
  function targetEls() { return Array.from(document.querySelectorAll("[data-target]")); }
  /** The element of a target. A letter can be shown twice (in the likeliest row and in the alphabet):
   *  then the one nearest the gaze point (x, y: screen pixels), if given, else the first. */
  function targetEl(target, x = null, y = null) {
    if (!target) return null;
    if (target.startsWith("cand:")) return button(targetIndex(target));
    const all = Array.from(document.querySelectorAll(`[data-target="${CSS.escape(target)}"]`)).filter((e) => e.getClientRects().length);
    if (all.length < 2) return all[0] || null;
    if (x === null || x === undefined || y === null || y === undefined) {   // a scanner: the one in its row
      return all.find((e) => scanRow.includes(e)) || all[0];
    }
    const t = screenTransform();
    const px = x / t.dpr - t.ox, py = y / t.dpr - t.oy;
    const dist = (e) => { const r = e.getBoundingClientRect(); return Math.hypot(r.left + r.width / 2 - px, r.top + r.height / 2 - py); };
    return all.reduce((a, b) => (dist(b) < dist(a) ? b : a));
  }

  function targetButton(target, label, cls, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.dataset.target = target;
    b.textContent = label;
    b.addEventListener("click", (e) => onClick(e.detail === 0 ? "key" : "pointer"));
    return b;
  }

  function renderCommands() {
    const nav = $("controls");
    nav.replaceChildren();
    const paused = isPaused();
    for (const c of COMMANDS) {
      const shown = paused && c.paused ? c.paused : c;
      const b = targetButton(`cmd:${shown.name}`, shown.label, "cmd", () => command(...(shown.command || [shown.name])));
      b.id = c.name;   // stable ids (#back, #more, #pause, #new) whatever the button shows
      nav.append(b);
    }
  }


  function renderKeyboard() {
    const open = !!S.fork && S.decided === null;
    const prefix = (S.fork && S.fork.body.prefix) || "";
    $("keyboard").classList.toggle("off", !open);
    $("typed").hidden = !(open && prefix);
    $("typed-prefix").textContent = prefix;
    const keyPress = (target) => (kind) => selectTarget(target, kind);
    // the likeliest letters (screenRows' "letters"): biggest, nearest the candidates
    const likely = $("likely");
    likely.replaceChildren();
    const letters = open ? likelyKeys(S.fork.body.letters, !!prefix) : [];
    const top = letters.length ? letters[0][1] : 1;
    letters.forEach(([target, p]) => {
      const b = targetButton(target, target === "key:space" ? "␣" : target.slice(4), "key likely", keyPress(target));
      const f = Math.sqrt(p / Math.max(top, 1e-9));   // the likeliest letter is the biggest target
      b.style.fontSize = `${Math.round(28 + 20 * f)}px`;
      b.style.minWidth = `${Math.round(66 + 44 * f)}px`;
      b.style.minHeight = `${Math.round(62 + 22 * f)}px`;
      b.title = `${Math.round(p * 100)} percent`;
      likely.append(b);
    });
    // space, delete, accept: always in their place, usable once a letter is typed
    const edit = $("edit");
    if (!edit.children.length) {
      edit.replaceChildren(...EDIT_KEYS.map((k) => targetButton(`key:${k}`, NAMED_KEYS[k], "key named", keyPress(`key:${k}`))));
    }
    for (const b of edit.children) { b.disabled = !(open && prefix); b.classList.remove("chosen"); }
    // the whole alphabet in its fixed order (Latin, or Cyrillic when the fork says so), and ' -, in rows of ALPHABET_COLS
    const script = scriptOf(S.fork && S.fork.body);
    const alpha = $("alpha");
    if (alpha.dataset.script !== script) {
      alpha.dataset.script = script;
      alpha.style.gridTemplateColumns = `repeat(${2 * ALPHABET_COLS}, 1fr)`;   // two scan rows a line: it fits the screen
      alpha.replaceChildren(...alphabetRows(script).flat().map((t) => targetButton(t, t.slice(4), "key", keyPress(t))));
    }
    for (const b of alpha.children) { b.disabled = !open; b.classList.remove("chosen"); }
    renderP300Level();
    layoutSoon();
  }

  function isPaused() { return !!S.status && S.status.state === "paused"; }

  /** Whether a target can be chosen now: any of the open fork's; while paused, Resume alone
   *  (also between forks, when no fork is open: the daemon takes cmd:resume for any fork it opened). */
  function liveTarget(t) {
    return isPaused() ? t === "cmd:resume" : S.decided === null && !!S.fork;
  }

  /** The rest overlay: while the daemon is paused, one large Resume target covers the page. */
  function renderRest() {
    const paused = isPaused();
    const was = !$("rest").hidden;
    $("rest").hidden = !paused;
    $("rest-why").textContent = S.status && S.status.detail === "rest"
      ? "You looked away, so nothing is chosen. Look at Resume to go on."
      : "Nothing is chosen while paused. Resume to go on.";
    if (paused !== was) { renderCommands(); renderP300Level(); S.lastLayout = ""; layoutSoon(); }
  }

  // ------------------------------------------------------------------ focus, look-ahead, dwell ring, cursor
  /** The candidate whose look-ahead is shown: this page's hover, or another source's focus on the
   *  candidate or on a word of its look-ahead. */
  function shownIndex() {
    if (S.decided !== null) return null;
    if (S.hover !== null) return S.hover;
    return targetIndex(focusTarget(S.remote));
  }

  function updateFocus() {
    const shown = shownIndex();
    const rt = focusTarget(S.remote);
    const remote = liveTarget(rt) ? rt : null;
    const group = new Set(S.remote && (S.decided === null || isPaused()) ? S.remote.group || [] : []);
    if (group.size) {   // the scanned row: the layout row holding most of the group (a letter may be in two)
      const id = (el) => el.dataset.target || `cand:${el.dataset.index}`;
      const count = (row) => row.filter((el) => group.has(id(el))).length;
      scanRow = scanRows().reduce((best, row) => (count(row) > count(best) ? row : best), []).filter((el) => group.has(id(el)));
    } else if (!remote) {
      scanRow = [];
    }
    const inRow = new Set(group.size ? scanRow : []);
    for (const b of buttons()) {
      b.classList.toggle("focused", +b.dataset.index === shown);
      b.classList.toggle("scan-row", inRow.has(b));
    }
    renderPeek(shown);
    const lit = remote && remote.startsWith("word:") ? parseTarget(remote).words : 0;
    const focusedEl = remote ? targetEl(remote, S.remote.x, S.remote.y) : null;
    for (const el of targetEls()) {
      const t = el.dataset.target;
      el.classList.toggle("focused", el === focusedEl);
      el.classList.toggle("scan-row", inRow.has(el));
      if (el.classList.contains("la-word")) el.classList.toggle("lit", +t.split(":")[2] <= lit);
    }
    renderRing();
    renderCursor();
  }

  /** The end of the word a joining candidate continues (protocol 1.2 `joins`): "Miss" for "es". */
  function stem(c) {
    if (!c.joins) return "";
    const m = /[\p{L}\p{N}\p{M}_]+$/u.exec(S.fork.body.context || "");
    return m ? m[0] : "";
  }

  function candidate(index) {
    return S.fork ? S.fork.body.candidates.find((c) => c.index === index) : undefined;
  }

  let scanRow = [];       // the elements of the row a scanner highlighted last (its items are focused next)
  let redrawing = false;  // the look-ahead is being redrawn: its words leave the focus, the person did not
  function renderPeek(index) {
    const peek = $("peek");
    const b = index === null ? null : button(index);
    const c = index === null ? undefined : candidate(index);
    const showing = b && c ? index : null;
    if (showing !== S.peekIndex) { S.peekIndex = showing; layoutSoon(); }  // its words are targets too
    if (!b || !c) { peek.hidden = true; return; }
    const look = S.looks.get(index) || { short: [], long: [] };
    const word = stem(c) + c.word.trim();
    const list = $("peek-short");
    const words = () => Array.from(list.querySelectorAll(".la-word"));
    const kept = words().indexOf(document.activeElement);  // a look-ahead word with the keyboard focus keeps it
    redrawing = true;
    list.replaceChildren();
    look.short.forEach((phrase, i) => list.append(phraseItem("li", word, phrase, "", i === 0 ? index : null)));
    redrawing = false;
    if (kept >= 0) (words()[kept] || words().pop() || b).focus();
    if (!look.short.length) {
      const li = document.createElement("li");
      li.className = "thinking";
      li.textContent = "thinking ahead…";
      list.append(li);
    }
    const long = $("peek-long");
    long.replaceChildren();
    if (look.long.length) long.append(phraseItem("div", word, look.long.join(" "), "long"));
    peek.hidden = false;
    placeBeside(peek, b.getBoundingClientRect());
  }

  /** A look-ahead line. With `index` (the phrase the daemon commits), each of its words is a
   *  button: a click takes the candidate and the phrase up to that word (protocol 1.1 phrase_words). */
  function phraseItem(tag, word, phrase, cls, index = null) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    const w = document.createElement("b");
    w.textContent = word;
    el.append(w);
    if (index === null) { el.append(document.createTextNode(` ${phrase.trim()}`)); return el; }
    const parts = phrase.trim().split(/\s+/);
    parts.forEach((part, i) => {
      const b = document.createElement("span");
      b.className = "la-word";
      b.dataset.target = `word:${index}:${i + 1}`;
      b.textContent = part;
      b.tabIndex = 0;
      b.setAttribute("role", "button");
      b.title = `take “${word} ${parts.slice(0, i + 1).join(" ")}”`;
      b.addEventListener("click", (e) => { e.stopPropagation(); select(index, false, i + 1); });
      b.addEventListener("keydown", (e) => {  // Enter takes the phrase up to here; arrows move; Up/Esc: back to the word
        const to = { ArrowRight: b.nextElementSibling, ArrowLeft: b.previousElementSibling }[e.key];
        if (e.key === "Enter" || e.key === " ") select(index, false, i + 1, "key");
        else if (to && to.classList.contains("la-word")) to.focus();
        else if (e.key === "ArrowUp" || e.key === "Escape") { const c = button(index); if (c) c.focus(); }
        else return;
        e.preventDefault();
      });
      el.append(document.createTextNode(" "), b);
    });
    return el;
  }

  /** Centre the look-ahead under its word, inside the slot reserved below the cloud. */
  function placeBeside(el, r) {
    const slot = $("peek-slot").getBoundingClientRect();
    const pw = el.offsetWidth;
    const left = r.left + r.width / 2 - pw / 2 - slot.left;
    el.style.left = `${Math.max(0, Math.min(left, slot.width - pw))}px`;
  }

  /** Dwell progress around whatever target another source (gaze) dwells on: a candidate, a key, a command, Resume. */
  function renderRing() {
    const ring = $("ring");
    const r = S.remote;
    const t = focusTarget(r);
    const dwelling = r && r.dwell !== null && r.dwell !== undefined && liveTarget(t);
    const b = dwelling ? targetEl(t, r.x, r.y) : null;
    if (!b || !b.getClientRects().length) { ring.toggleAttribute("hidden", true); return; }   // an SVG element has no .hidden
    const box = b.getBoundingClientRect(), pad = 8;
    ring.toggleAttribute("hidden", false);
    ring.style.left = `${box.left - pad}px`;
    ring.style.top = `${box.top - pad}px`;
    ring.setAttribute("width", box.width + 2 * pad);
    ring.setAttribute("height", box.height + 2 * pad);
    for (const id of ["ring-track", "ring-bar"]) {
      const rect = $(id);
      rect.setAttribute("x", 4); rect.setAttribute("y", 4);
      rect.setAttribute("width", box.width + 2 * pad - 8);
      rect.setAttribute("height", box.height + 2 * pad - 8);
    }
    $("ring-bar").style.strokeDashoffset = String(100 * (1 - Math.max(0, Math.min(1, r.dwell))));
  }

  function renderCursor() {
    const el = $("cursor");
    const r = S.remote;
    if (!S.cfg || !S.cfg.gaze_cursor || !r || r.x === null || r.x === undefined || r.y === null) { el.hidden = true; return; }
    const t = screenTransform();
    el.hidden = false;
    el.style.left = `${r.x / t.dpr - t.ox}px`;
    el.style.top = `${r.y / t.dpr - t.oy}px`;
  }

  // ------------------------------------------------------------------ text, status
  function renderText() {
    const el = $("text");
    const chars = Array.from(S.text.text);   // spans count code points, as Python does
    const parts = [];
    let at = 0;
    const spans = (S.text.spans || []).slice().sort((a, b) => a.start - b.start);
    for (const sp of spans) {
      if (sp.start > at) parts.push(["model", chars.slice(at, sp.start).join("")]);
      parts.push([sp.origin, chars.slice(Math.max(at, sp.start), sp.end).join("")]);
      at = Math.max(at, sp.end);
    }
    if (at < chars.length) parts.push(["model", chars.slice(at).join("")]);
    el.replaceChildren();
    for (const [origin, text] of parts) {
      // Leading spaces stay outside the span, so a chosen word's underline starts at the word.
      const [, space, rest] = text.match(/^(\s*)([\s\S]*)$/);
      if (space) el.append(document.createTextNode(space));
      if (!rest) continue;
      const span = document.createElement("span");
      span.className = `origin-${origin}`;
      span.textContent = rest;
      el.append(span);
    }
    const caret = document.createElement("span");
    caret.className = "caret";
    el.append(caret);
    el.scrollTop = el.scrollHeight;
    layoutSoon();   // the text above the cloud may have moved it
  }

  function appendText(text, origin) {
    const start = Array.from(S.text.text).length;
    S.text.text += text;
    S.text.spans = (S.text.spans || []).concat([{ start, end: start + Array.from(text).length, origin }]);
    renderText();
  }

  function undoText(removed) {
    if (removed && S.text.text.endsWith(removed)) {
      const end = Array.from(S.text.text).length - Array.from(removed).length;
      S.text.text = Array.from(S.text.text).slice(0, end).join("");
      S.text.spans = (S.text.spans || []).filter((s) => s.start < end).map((s) => Object.assign({}, s, { end: Math.min(s.end, end) }));
      renderText();
    }
  }

  function renderStatus(st) {
    S.status = st;
    renderRest();
    updateFocus();
    const bits = [st.state];
    if (st.model) bits.push(st.model);
    if (st.mode) bits.push(st.mode);
    if (st.detail === "rest") bits.push("resting");
    if (st.last_fork_ms !== null && st.last_fork_ms !== undefined) bits.push(`fork ${Math.round(st.last_fork_ms)} ms`);
    $("daemon").textContent = bits.join(" · ");
    Object.assign(S.sources, st.sources || {});
    renderSources();
  }

  function renderSources() {
    const el = $("sources");
    el.replaceChildren();
    for (const [name, state] of Object.entries(S.sources)) {
      const span = document.createElement("span");
      const alive = ["ok", "alive", "recovered", "calibrating"].includes(state);
      span.className = `src ${alive ? "alive" : "dead"}`;
      span.textContent = name;
      span.title = state;
      el.append(span);
    }
    layoutSoon();
  }

  let toastTimer = null;
  function toast(text) {
    const el = $("toast");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  // ------------------------------------------------------------------ layout: page -> screen coordinates
  /**
   * CSS px of the viewport -> screen (device) pixels:
   *   x_screen = (screenX + side) * dpr + rect.left * dpr,  side = (outerWidth - innerWidth) / 2
   *   y_screen = (screenY + top) * dpr + rect.top * dpr,    top = outerHeight - innerHeight - side
   * side/top are the window frame and browser chrome (tabs, address bar) around the viewport;
   * the bottom frame is taken to equal the side frame. Assumes page zoom 100% (then
   * devicePixelRatio is the OS scale). In kiosk/fullscreen mode all offsets are 0.
   */
  function screenTransform() {
    const dpr = window.devicePixelRatio || 1;
    const side = Math.max(0, (window.outerWidth - window.innerWidth) / 2);
    const top = Math.max(0, window.outerHeight - window.innerHeight - side);
    return { ox: window.screenX + side, oy: window.screenY + top, dpr };
  }

  /**
   * The scan order (protocol 1.4 row/col): screenRows (renderers/screen.py's rule) for what is on the page
   * now, each target mapped to its element (a likely letter is drawn in the alphabet too: the row says
   * which). Targets not drawn or disabled are left out.
   */
  function scanRows() { return namedScanRows().map((row) => row.els); }

  /** scanRows with each row's name (renderers/screen.py's: candidates, letters, edit, commands, abc-N, ...;
   *  "settings" for the settings overlay's rows): [{name, els}]. */
  function namedScanRows() {
    if (SAY.open && !isPaused()) return settingsRows().map((els) => ({ name: "settings", els }));   // 1.5: the overlay alone
    const usable = (el) => !!el && !el.disabled && el.getClientRects().length > 0;
    const where = { lookahead: "#peek-short", letters: "#likely", edit: "#edit", commands: "#controls" };
    const words = $("peek").hidden || S.peekIndex === null ? 0 : $("peek-short").querySelectorAll(".la-word").length;
    const open = S.fork && S.decided === null ? S.fork.body : null;
    const rows = screenRows(open, { paused: isPaused(), lookahead: words ? [S.peekIndex, words] : null, phrases: SAY.phrases.map((p) => p.id) });
    return rows.map((row) => ({ name: row.name, els: row.targets.map((t) => {
      if (row.name === "rest") return $("resume");
      if (row.name === "candidates") return button(targetIndex(t));
      return document.querySelector(`${row.name.startsWith("phrases-") ? "#phrases" : where[row.name] || "#alpha"} [data-target="${CSS.escape(t)}"]`);
    }).filter(usable) })).filter((row) => row.els.length);
  }

  /** Every target on screen, in screen pixels: candidates in `boxes` (a 1.3 gaze adapter reads those),
   *  the rest in `targets` (1.4), each with its scan row and col. */
  function collectLayout() {
    const t = screenTransform();
    const place = (el) => {
      const r = el.getBoundingClientRect();
      return { x: (t.ox + r.left) * t.dpr, y: (t.oy + r.top) * t.dpr, w: r.width * t.dpr, h: r.height * t.dpr };
    };
    const boxes = [], targets = [];
    scanRows().forEach((row, r) => row.forEach((el, c) => {
      if (el.classList.contains("cand")) boxes.push(Object.assign({ index: +el.dataset.index }, place(el), { row: r, col: c }));
      else targets.push(Object.assign({ target: el.dataset.target }, place(el), { row: r, col: c, label: el.textContent.trim() }));
    }));
    boxes.sort((a, b) => a.index - b.index);
    return { boxes, targets, screen_w: window.screen.width * t.dpr, screen_h: window.screen.height * t.dpr };
  }

  /** The layout names the open fork; while paused with none open (paused between forks) the last
   *  one, so that a gaze or switch user can still reach Resume: no dead end. */
  function publishLayout() {
    const forkId = S.fork && S.decided === null ? S.fork.id : isPaused() ? S.lastForkId : null;
    if (forkId === null || !S.ws || S.ws.readyState !== WebSocket.OPEN) return;
    const body = collectLayout();
    if (!body.boxes.length && !body.targets.length) return;
    const key = JSON.stringify([forkId, body]);
    if (key === S.lastLayout) return;
    S.lastLayout = key;
    S.layouts += 1;
    send({ type: "render.layout", fork_id: forkId, body });
  }

  let layoutTimer = null;
  function layoutSoon() {
    clearTimeout(layoutTimer);
    layoutTimer = setTimeout(() => afterPaint(() => { publishLayout(); updateFocus(); }), 60);
  }

  function afterPaint(fn) { requestAnimationFrame(() => requestAnimationFrame(fn)); }

  // ------------------------------------------------------------------ P300 flashing
  // Each flash is switched on inside a requestAnimationFrame callback; its onset is that
  // callback's timestamp (the start of the frame that draws it), put on the bus clock.
  const P = { running: false, gen: 0, forkId: null, order: [], pos: 0, lit: null, nextOn: -Infinity, nextOff: 0, flash: 0, round: 0, frameMs: 1000 / 60, lastTs: null, level: "words" };

  // Levels (renderers/screen.py p300_targets, issue 16): a P300 screen flashes part of the page at a time,
  // the rest resting (dimmed). words: the candidates (and a shown look-ahead's words), Back, More, ui:spell
  // (the keyboard) and ui:menu (the other commands and the quick phrases); menu: those; keys (ui:spell): the
  // likeliest letters and ui:abc (the rest of the alphabet), and once a letter is typed the candidates,
  // narrowing live, and space/delete/accept; abc (ui:abc): the whole alphabet. ui:words goes back to words.
  // A fork with a typed prefix opens on the keys level; the settings overlay and the rest screen flash whole.
  // The flashed targets (in scan order, a target drawn twice once) are flashed a group at a time: the rows,
  // then the columns, of a grid ceil(sqrt(n)) wide laid over them (flashGroups), so two flashes a round single
  // a target out (docs/eeg.md, "Flashing in groups"). A new level starts the flashes over, numbered from 0:
  // the EEG adapter takes that as a new screen. P.order is one round of groups (lists of target ids); P.lit
  // the lit elements.
  const SPELL_TARGET = "ui:spell", MENU_TARGET = "ui:menu", ABC_TARGET = "ui:abc", WORDS_TARGET = "ui:words";
  const WORDS_COMMANDS = ["back", "more"];   // renderers/screen.py WORDS_COMMANDS
  const LEVEL_TARGETS = { [SPELL_TARGET]: "keys", [MENU_TARGET]: "menu", [ABC_TARGET]: "abc", [WORDS_TARGET]: "words" };
  const LEVEL_LABELS = { [SPELL_TARGET]: "⌨ Spell", [MENU_TARGET]: "⋯ Commands", [ABC_TARGET]: "abc… all letters", [WORDS_TARGET]: "☰ Words" };

  /** renderers/screen.py p300_level: the level a fork opens on. */
  function p300Level(body) { return body && body.prefix ? "keys" : "words"; }

  /** renderers/screen.py p300_targets over [{name, targets}] rows. */
  function p300Targets(rows, level) {
    const uniq = (ts) => Array.from(new Set(ts));
    if (rows.some((r) => r.name === "rest" || r.name === "settings")) return uniq(rows.flatMap((r) => r.targets));
    const named = (...names) => rows.filter((r) => names.some((n) => r.name.startsWith(n))).flatMap((r) => r.targets);
    const typed = rows.some((r) => r.name === "edit");
    const top = WORDS_COMMANDS.map((c) => `cmd:${c}`);
    if (level === "words") {
      return uniq([...named("candidates", "lookahead", "edit"), ...named("commands").filter((t) => top.includes(t)), SPELL_TARGET, MENU_TARGET]);
    }
    if (level === "menu") return uniq([...named("commands").filter((t) => !top.includes(t)), ...named("phrases-"), WORDS_TARGET]);
    if (level === "keys") return uniq([...(typed ? named("candidates") : []), ...named("letters"), ...named("edit"), ABC_TARGET, WORDS_TARGET]);
    return uniq([...named("abc-"), ...named("edit"), WORDS_TARGET]);
  }

  /** renderers/screen.py flash_groups: rows, then columns, of a grid ceil(sqrt(n)) wide; one row: item by item. */
  function flashGroups(targets) {
    const n = targets.length;
    if (!n) return [];
    const cols = Math.ceil(Math.sqrt(n));
    if (n <= cols) return targets.map((t) => [t]);
    const groups = [];
    for (let i = 0; i < n; i += cols) groups.push(targets.slice(i, i + cols));
    for (let c = 0; c < cols; c++) {
      const col = [];
      for (let i = c; i < n; i += cols) col.push(targets[i]);
      groups.push(col);
    }
    return groups;
  }

  /** The P300 level targets (this page's own ui: targets, drawn with --p300 only), each shown at the levels
   *  that flash it; a click (or another source's select of one, e.g. the EEG adapter's) opens its level. */
  function renderP300Level() {
    const on = !!(S.cfg && S.cfg.p300);
    let bar = $("p300-level");
    if (!bar && on) {
      bar = document.createElement("div");
      bar.id = "p300-level";
      bar.className = "krow";
      bar.append(...Object.keys(LEVEL_TARGETS).map((t) => targetButton(t, LEVEL_LABELS[t], "key named p300-ui", () => setP300Level(LEVEL_TARGETS[t]))));
      $("keyboard").prepend(bar);
    }
    if (!bar) return;
    bar.hidden = !on;
    const open = on && !!S.fork && S.decided === null && !isPaused() && !SAY.open;
    const here = open ? p300Targets([], P.level) : [];
    for (const b of bar.children) b.hidden = !here.includes(b.dataset.target);
  }

  /** Dim what does not flash now (P300): every target of the page not in `targets`. */
  function markResting(targets) {
    const lit = new Set(targets);
    const on = !!(S.cfg && S.cfg.p300);
    for (const el of document.querySelectorAll("[data-target], #cloud .cand")) {
      const t = el.dataset.target || `cand:${el.dataset.index}`;
      el.classList.toggle("p300-rest", on && !lit.has(t));
    }
  }

  /** Open a P300 level: its targets flash from now on, numbered afresh. */
  function setP300Level(level) {
    if (!S.fork || S.decided !== null || P.level === level) return;
    P.level = level;
    renderP300Level();
    afterPaint(p300Restart);
  }

  function p300Restart() {
    p300Stop();
    if (!S.cfg || !S.cfg.p300 || !S.fork || S.decided !== null || clock.offsetMs === null) return;
    const order = shuffled(null);
    if (!order.length) return;
    Object.assign(P, { running: true, forkId: S.fork.id, order, pos: 0, lit: null, nextOn: -Infinity, flash: 0, round: 0, lastTs: null });
    const gen = P.gen;   // one frame loop per start: a stopped loop never wakes up again
    requestAnimationFrame((ts) => p300Frame(ts, gen));
  }

  function p300Stop() {
    P.running = false;
    P.gen += 1;
    if (P.lit !== null) for (const el of P.lit) el.classList.remove("flash");
    P.lit = null;
    for (const el of document.querySelectorAll(".p300-rest")) el.classList.remove("p300-rest");
  }

  /** The targets flashed now: p300Targets of the page's rows (as it is now) at the current level. */
  function p300Now() {
    const id = (el) => el.dataset.target || `cand:${el.dataset.index}`;
    return p300Targets(namedScanRows().map((r) => ({ name: r.name, targets: r.els.map(id) })), P.level);
  }

  /** One round of flash groups (flashGroups of p300Now) in a fresh random order, taken from the page as it
   *  is now; it does not start with the group `avoidFirst` (the last one flashed). */
  function shuffled(avoidFirst) {
    const now = p300Now();
    markResting(now);
    const order = flashGroups(now);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    if (order.length > 1 && avoidFirst && order[0].join(" ") === avoidFirst.join(" ")) {
      [order[0], order[order.length - 1]] = [order[order.length - 1], order[0]];
    }
    return order;
  }

  function p300Frame(ts, gen) {
    if (gen !== P.gen || !P.running || !S.fork || S.fork.id !== P.forkId || S.decided !== null) return;
    if (P.lastTs !== null && ts > P.lastTs) P.frameMs = 0.9 * P.frameMs + 0.1 * Math.min(100, ts - P.lastTs);
    P.lastTs = ts;
    const half = P.frameMs / 2;   // switch on the frame nearest the target time
    if (P.lit !== null) {
      if (ts >= P.nextOff - half) {
        for (const el of P.lit) el.classList.remove("flash");
        P.lit = null;
      }
    } else if (ts >= P.nextOn - half) {
      if (P.pos >= P.order.length) {
        P.round += 1;
        if (S.cfg.p300_rounds > 0 && P.round >= S.cfg.p300_rounds) { P.running = false; return; }
        P.order = shuffled(P.order[P.order.length - 1]);
        P.pos = 0;
        if (!P.order.length) { P.running = false; return; }
      }
      const group = P.order[P.pos++];
      const cand = (t) => t.startsWith("cand:");
      const lit = [];
      for (const t of group) {
        if (cand(t)) { const b = button(targetIndex(t)); if (b) lit.push(b); }
        else lit.push(...document.querySelectorAll(`[data-target="${CSS.escape(t)}"]`));
      }
      for (const el of lit) el.classList.add("flash");
      P.lit = lit;
      // Targets advance by on+off from the previous target, so the mean onset interval is exact
      // even when it is not a whole number of frames; after a stall they restart from now.
      const base = ts - P.nextOn > P.frameMs ? ts : P.nextOn;
      P.nextOff = base + S.cfg.flash_ms;
      P.nextOn = base + S.cfg.flash_ms + S.cfg.isi_ms;
      send({
        type: "render.stimulus",
        fork_id: P.forkId,
        body: { indices: group.filter(cand).map(targetIndex), targets: group.filter((t) => !cand(t)),
                onset_ns: busNs(ts), duration_ms: S.cfg.flash_ms, flash: P.flash++ },
      });
    }
    requestAnimationFrame((next) => p300Frame(next, gen));
  }


  // ================================================================== say it and send it (protocol 1.5)
  // Quick phrases (phrases.state: each a phrase:<id> target; a click sends input.command phrase), the
  // partner's last turn (text.state.partner, shown above the text), and the settings overlay: cmd:settings
  // opens it (a click here, or another source's confirm/select of it, forwarded by the bridge); its steps,
  // presets and Close are ui:<id> targets, laid out (and scanned, flashed) alone while it is open, so gaze,
  // a switch or a mouse changes a setting. Each change is one config.update; config.state shows the values
  // the daemon holds and why it refused the last change.
  const SAY = { phrases: [], partner: "", config: {}, configError: "", open: false, ui: new Map(), uiDone: 0 };
  const PHRASE_COLS = 4;   // renderers/screen.py PHRASE_COLS

  /** The settings changed here: the daemon's "section.key", the short id of its ui:<id> targets, its label,
   *  numbers with − / + `step` and `presets`, or `choices` [value, label]. */
  const SETTINGS = [
    { key: "inputs.gaze.dwell_ms", id: "dwell", label: "Dwell time", unit: "ms", step: 100, presets: [400, 600, 1000, 1500] },
    { key: "gating.k", id: "k", label: "Words offered", step: 1, presets: [3, 5, 8] },
    { key: "speech.rate", id: "rate", label: "Speaking rate", unit: "wpm", step: 25, presets: [130, 175, 230] },
    { key: "speech.variant", id: "voice", label: "Voice", choices: [["", "standard"], ["f3", "female"], ["m3", "male"]] },
    { key: "speech.voices.en", id: "english", label: "English voice", choices: [["", "default"], ["en-us", "US"], ["en-gb", "UK"]] },
    { key: "renderers.web.theme", id: "theme", label: "Colours", choices: [["contrast", "dark"], ["light", "light"]] },
    { key: "scan.interval_ms", id: "scan", label: "Scanning step", unit: "ms", step: 250, presets: [750, 1000, 1500, 2000] },
    { key: "inputs.gaze.rest_ms", id: "rest", label: "Rest after looking away", unit: "ms", step: 1000, presets: [0, 3000, 6000] },
  ];

  function renderPhrases() {
    const el = $("phrases");
    el.replaceChildren(...SAY.phrases.map((ph) => {
      const b = targetButton(`phrase:${ph.id}`, ph.text, `phrase ${ph.kind === "frequent" ? "frequent" : "quick"}`,
                             () => command("phrase", ph.id));
      b.title = ph.kind === "frequent" ? "you write this often" : "quick phrase";
      return b;
    }));
    el.hidden = !SAY.phrases.length;
    S.lastLayout = "";
    layoutSoon();
  }

  function renderPartner(turn) {
    SAY.partner = typeof turn === "string" ? turn : "";
    $("partner").hidden = !SAY.partner;
    $("partner-text").textContent = SAY.partner;
  }

  function onConfigState(body) {
    SAY.config = body.values || {};
    SAY.configError = body.error || "";
    if (body.changed === "renderers.web.theme" && ["contrast", "light"].includes(SAY.config["renderers.web.theme"])) {
      S.cfg.theme = SAY.config["renderers.web.theme"];
      document.body.className = `theme-${S.cfg.theme}`;
    }
    renderSettings();
  }

  /** Another source (gaze, a switch) chose one of this page's own targets on this page. */
  function onRendererTarget(body) {
    if (S.cfg && body.source === S.cfg.name) return;
    if (body.target === "cmd:settings") showSettings(true);
    else if (Object.hasOwn(LEVEL_TARGETS, body.target || "") && !SAY.open) setP300Level(LEVEL_TARGETS[body.target]);   // P300 levels
    else if (body.target && body.target.startsWith("ui:")) runUi(body.target.slice(3));
  }

  function runUi(id) {
    const action = SAY.open ? SAY.ui.get(id) : undefined;
    if (!action) return;
    SAY.uiDone += 1;
    action();
  }

  function showSettings(open) {
    if (SAY.open === open) return;
    SAY.open = open;
    $("settings-page").hidden = !open;
    renderSettings();
    S.lastLayout = "";
    layoutSoon();
    updateFocus();
    if (S.cfg && S.cfg.p300) { renderP300Level(); afterPaint(p300Restart); }   // a new screen: its flashes start over
  }

  function updateSetting(setting, value) {
    const at = setting.key.lastIndexOf(".");
    $("settings-error").hidden = true;
    request({ type: "config.update", body: { section: setting.key.slice(0, at), key: setting.key.slice(at + 1), value } })
      .then((reply) => { if (reply.type === "error") showSettingError(reply.message); });
  }

  function showSettingError(text) {
    const el = $("settings-error");
    el.textContent = text;
    el.hidden = !text;
  }

  function shownValue(setting, value) {
    if (value === undefined) return "—";
    if (setting.choices) { const c = setting.choices.find(([v]) => v === value); return c ? c[1] : String(value); }
    if (setting.id === "rest" && value === 0) return "never";
    return `${value}${setting.unit ? ` ${setting.unit}` : ""}`;
  }

  /** The overlay's rows: Close, then one row per setting (− presets + or its choices), each a ui:<id> target. */
  function renderSettings() {
    const rows = $("settings-rows");
    SAY.ui = new Map([["close", () => showSettings(false)]]);
    rows.replaceChildren();
    for (const st of SETTINGS) {
      const value = SAY.config[st.key];
      const row = document.createElement("div");
      row.className = "setting";
      const name = document.createElement("span");
      name.className = "setting-name";
      name.textContent = st.label;
      const shown = document.createElement("b");
      shown.className = "setting-value";
      shown.dataset.key = st.key;
      shown.textContent = shownValue(st, value);
      name.append(document.createElement("br"), shown);
      row.append(name);
      const add = (id, label, next, current = false) => {
        SAY.ui.set(id, () => updateSetting(st, next()));
        const b = targetButton(`ui:${id}`, label, `cmd setting-step${current ? " current" : ""}`, () => runUi(id));
        row.append(b);
        return b;
      };
      if (st.choices) {
        for (const [v, label] of st.choices) add(`${st.id}-${v || "default"}`, label, () => v, v === value);
      } else {
        const known = typeof value === "number";
        add(`${st.id}-down`, "−", () => value - st.step).disabled = !known;
        for (const v of st.presets) add(`${st.id}-${v}`, shownValue(st, v), () => v, v === value);
        add(`${st.id}-up`, "+", () => value + st.step).disabled = !known;
      }
      rows.append(row);
    }
    showSettingError(SAY.configError);
    if (SAY.open) { S.lastLayout = ""; layoutSoon(); }
  }

  /** While the overlay is open its targets are the page's only ones (Close first, then a row per setting). */
  function settingsRows() {
    const usable = (el) => !!el && !el.disabled && el.getClientRects().length > 0;
    const rows = [[$("settings-close")], ...Array.from($("settings-rows").children, (r) => Array.from(r.querySelectorAll("[data-target]")))];
    return rows.map((r) => r.filter(usable)).filter((r) => r.length);
  }

  // ------------------------------------------------------------------ start
  renderCommands();
  renderSettings();
  $("settings-close").addEventListener("click", () => runUi("close"));
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && SAY.open) showSettings(false); });
  renderKeyboard();
  $("resume").addEventListener("click", () => command("resume"));
  $("peek").addEventListener("pointerenter", (e) => { if (e.pointerType === "mouse") hold(); });
  $("peek").addEventListener("pointerleave", (e) => { if (e.pointerType === "mouse" && S.hover !== null) letGoSoon(); });
  $("peek").addEventListener("focusout", (e) => {  // Tab out of the look-ahead, not back to a word: it goes
    const to = e.relatedTarget;
    if (!redrawing && !$("peek").contains(to) && !(to && to.closest && to.closest(".cand"))) setHover(null);
  });
  window.addEventListener("resize", layoutSoon);
  window.addEventListener("scroll", layoutSoon, { passive: true });
  // Moving the window fires no event: look for it once a second.
  let lastWindow = "";
  setInterval(() => {
    const w = `${window.screenX},${window.screenY},${window.outerWidth},${window.outerHeight},${window.devicePixelRatio}`;
    if (w !== lastWindow) { lastWindow = w; layoutSoon(); }
  }, 1000);

  // For tests and debugging from the console.
  window.razvilka = { state: S, clock, p300: P, p300Targets, flashGroups, p300Now, setP300Level, request, send, collectLayout, screenTransform, busNs, parseTarget, COMMANDS, screenRows, say: SAY };
  connect();
})();
