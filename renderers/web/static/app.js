// razvilka browser renderer: draws what the daemon publishes, sends hover/click/commands,
// publishes the screen layout (for gaze) and P300 flash onsets (for EEG) through the bridge.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);

  // ------------------------------------------------------------------ state
  const S = {
    cfg: null,
    ws: null,
    fork: null,          // {id, body}: the open fork
    looks: new Map(),    // candidate index -> {short: [...], long: [...]}
    hover: null,         // index under this page's pointer/keyboard focus
    remote: null,        // {index, source, dwell, x, y}: focus from another source (gaze, keys)
    decided: null,       // index decided for the current fork (null: open)
    chosen: null,        // index this page selected, waiting for the decision
    text: { text: "", spans: [] },
    sources: {},         // name -> "alive" | "lost" | ...
    layouts: 0,          // render.layout messages sent
    lastLayout: "",
  };
  const HOVER_GRACE_MS = 350;
  const waiting = new Map();  // ref -> resolve, for request()
  const sentTypes = new Map(); // ref -> event type, until the bridge answers
  const myIds = [];            // bus ids of this page's recent selects and commands
  let nextRef = 1;
  let retryMs = 500;

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
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    S.ws = ws;
    ws.onopen = () => { retryMs = 500; };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.topic !== undefined) onProtocol(msg); else onControl(msg);
    };
    ws.onclose = () => {
      setConn(false);
      p300Stop();
      for (const resolve of waiting.values()) resolve({ type: "error", name: "DISCONNECTED", message: "connection closed" });
      waiting.clear();
      sentTypes.clear();
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
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
      case "text.state": S.text = { text: body.text, spans: body.spans || [] }; return renderText();
      case "text.auto": return appendText(body.text, "model");
      case "text.undo": return undoText(body.removed);
      case "daemon.status": return renderStatus(body);
      case "daemon.error": return myIds.includes(body.ref_id) ? toast(`daemon: ${body.message}`) : undefined;
      case "source.status": S.sources[body.source] = body.state; return renderSources();
      case "input.focus": return onFocus(h.fork_id, body);
    }
  }

  function onForkOpen(forkId, body) {
    // the same fork again (the snapshot after connecting can race the live message): already drawn,
    // and restarting would renumber the P300 flashes already sent
    if (S.fork && S.fork.id === forkId) return;
    p300Stop();
    S.fork = { id: forkId, body };
    S.looks = new Map();
    for (const c of body.candidates) {
      if (c.lookahead && c.lookahead.length) S.looks.set(c.index, { short: c.lookahead, long: [] });
    }
    S.hover = null; S.remote = null; S.decided = null; S.chosen = null;
    S.lastLayout = "";
    renderCloud();
    updateFocus();
    afterPaint(() => { publishLayout(); p300Restart(); });
  }

  function clearFork() {
    p300Stop();
    S.fork = null;
    S.hover = null; S.remote = null; S.decided = null; S.chosen = null;
    $("cloud").replaceChildren();
    $("stage").classList.remove("open");
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
    updateFocus();
    $("stage").classList.remove("open");
  }

  function onFocus(forkId, body) {
    if (S.cfg && body.source === S.cfg.name) return;
    if (!S.fork || forkId !== S.fork.id) return;
    S.remote = body.index === null && body.x === null ? null : body;
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
      select(index, e.shiftKey);   // shift+click: the word and its look-ahead phrase, one action
    });
    b.addEventListener("contextmenu", (e) => e.preventDefault());   // a long press peeks; no menu
    b.addEventListener("focus", () => setHover(index));
    b.addEventListener("keydown", (e) => {  // Down: into its look-ahead, whose words take the phrase
      const first = $("peek").querySelector(".la-word");
      if (e.key === "ArrowDown" && first && S.hover === index) { e.preventDefault(); first.focus(); }
    });
    b.addEventListener("blur", (e) => {  // into its look-ahead: it stays open
      if (S.hover === index && !$("peek").contains(e.relatedTarget)) setHover(null);
    });
  }

  function setHover(index) {
    if (S.hover === index) return;
    S.hover = index;
    if (S.fork && S.decided === null) send({ type: "input.focus", fork_id: S.fork.id, body: { index } });
    updateFocus();
  }

  /** Choose a candidate: alone, with its whole look-ahead (phrase), or with its first `words` words. */
  function select(index, phrase = false, words = 0) {
    if (!S.fork || S.decided !== null) return;
    markChosen(index);
    const body = words > 0 ? { index, phrase_words: words } : phrase ? { index, phrase: true } : { index };
    send({ type: "input.select", fork_id: S.fork.id, body });
  }

  function markChosen(index) {
    S.chosen = index;
    for (const b of buttons()) b.classList.toggle("chosen", +b.dataset.index === index);
  }

  function command(name) {
    send({ type: "input.command", fork_id: S.fork && S.decided === null ? S.fork.id : null, body: { command: name } });
  }

  // ------------------------------------------------------------------ focus, look-ahead, dwell ring, cursor
  function shownIndex() {
    if (S.decided !== null) return null;
    if (S.hover !== null) return S.hover;
    return S.remote && S.remote.index !== null ? S.remote.index : null;
  }

  function updateFocus() {
    const shown = shownIndex();
    for (const b of buttons()) b.classList.toggle("focused", +b.dataset.index === shown);
    renderPeek(shown);
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

  let redrawing = false;  // the look-ahead is being redrawn: its words leave the focus, the person did not
  function renderPeek(index) {
    const peek = $("peek");
    const b = index === null ? null : button(index);
    const c = index === null ? undefined : candidate(index);
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
      b.textContent = part;
      b.tabIndex = 0;
      b.setAttribute("role", "button");
      b.title = `take “${word} ${parts.slice(0, i + 1).join(" ")}”`;
      b.addEventListener("click", (e) => { e.stopPropagation(); select(index, false, i + 1); });
      b.addEventListener("keydown", (e) => {  // Enter takes the phrase up to here; arrows move; Up/Esc: back to the word
        const to = { ArrowRight: b.nextElementSibling, ArrowLeft: b.previousElementSibling }[e.key];
        if (e.key === "Enter" || e.key === " ") select(index, false, i + 1);
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

  function renderRing() {
    const ring = $("ring");
    const r = S.remote;
    const b = r && r.index !== null && r.dwell !== null && r.dwell !== undefined && S.decided === null ? button(r.index) : null;
    if (!b) { ring.toggleAttribute("hidden", true); return; }   // an SVG element has no .hidden
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
    const bits = [st.state];
    if (st.model) bits.push(st.model);
    if (st.mode) bits.push(st.mode);
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

  function collectLayout() {
    const t = screenTransform();
    const boxes = buttons().map((b) => {
      const r = b.getBoundingClientRect();
      return { index: +b.dataset.index, x: (t.ox + r.left) * t.dpr, y: (t.oy + r.top) * t.dpr, w: r.width * t.dpr, h: r.height * t.dpr };
    });
    boxes.sort((a, b) => a.index - b.index);
    return { boxes, screen_w: window.screen.width * t.dpr, screen_h: window.screen.height * t.dpr };
  }

  function publishLayout() {
    if (!S.fork || S.decided !== null || !S.ws || S.ws.readyState !== WebSocket.OPEN) return;
    const body = collectLayout();
    if (!body.boxes.length) return;
    const key = JSON.stringify(body);
    if (key === S.lastLayout) return;
    S.lastLayout = key;
    S.layouts += 1;
    send({ type: "render.layout", fork_id: S.fork.id, body });
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
  const P = { running: false, gen: 0, forkId: null, order: [], pos: 0, lit: null, nextOn: -Infinity, nextOff: 0, flash: 0, round: 0, frameMs: 1000 / 60, lastTs: null };

  function p300Restart() {
    p300Stop();
    if (!S.cfg || !S.cfg.p300 || !S.fork || S.decided !== null || clock.offsetMs === null) return;
    if (!S.fork.body.candidates.length) return;
    Object.assign(P, { running: true, forkId: S.fork.id, order: shuffled(null), pos: 0, lit: null, nextOn: -Infinity, flash: 0, round: 0, lastTs: null });
    const gen = P.gen;   // one frame loop per start: a stopped loop never wakes up again
    requestAnimationFrame((ts) => p300Frame(ts, gen));
  }

  function p300Stop() {
    P.running = false;
    P.gen += 1;
    if (P.lit !== null) { const b = button(P.lit); if (b) b.classList.remove("flash"); }
    P.lit = null;
  }

  function shuffled(avoidFirst) {
    const order = S.fork.body.candidates.map((c) => c.index);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    if (order.length > 1 && order[0] === avoidFirst) [order[0], order[order.length - 1]] = [order[order.length - 1], order[0]];
    return order;
  }

  function p300Frame(ts, gen) {
    if (gen !== P.gen || !P.running || !S.fork || S.fork.id !== P.forkId || S.decided !== null) return;
    if (P.lastTs !== null && ts > P.lastTs) P.frameMs = 0.9 * P.frameMs + 0.1 * Math.min(100, ts - P.lastTs);
    P.lastTs = ts;
    const half = P.frameMs / 2;   // switch on the frame nearest the target time
    if (P.lit !== null) {
      if (ts >= P.nextOff - half) {
        const b = button(P.lit);
        if (b) b.classList.remove("flash");
        P.lit = null;
      }
    } else if (ts >= P.nextOn - half) {
      if (P.pos >= P.order.length) {
        P.round += 1;
        if (S.cfg.p300_rounds > 0 && P.round >= S.cfg.p300_rounds) { P.running = false; return; }
        P.order = shuffled(P.order[P.order.length - 1]);
        P.pos = 0;
      }
      const index = P.order[P.pos++];
      const b = button(index);
      if (b) b.classList.add("flash");
      P.lit = index;
      // Targets advance by on+off from the previous target, so the mean onset interval is exact
      // even when it is not a whole number of frames; after a stall they restart from now.
      const base = ts - P.nextOn > P.frameMs ? ts : P.nextOn;
      P.nextOff = base + S.cfg.flash_ms;
      P.nextOn = base + S.cfg.flash_ms + S.cfg.isi_ms;
      send({
        type: "render.stimulus",
        fork_id: P.forkId,
        body: { indices: [index], onset_ns: busNs(ts), duration_ms: S.cfg.flash_ms, flash: P.flash++ },
      });
    }
    requestAnimationFrame((next) => p300Frame(next, gen));
  }

  // ------------------------------------------------------------------ start
  $("back").addEventListener("click", () => command("back"));
  $("more").addEventListener("click", () => command("more"));
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
  window.razvilka = { state: S, clock, p300: P, request, send, collectLayout, screenTransform, busNs };
  connect();
})();
