// razvilka conversation partner page (protocol 1.5): the partner types a turn and sends it (the bridge
// publishes it as input.command "partner"); the person's reply is shown read-only as it grows, from the
// text.* messages the bridge forwards (text.state: the whole text; text.auto: appended; text.undo: removed).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const P = { ws: null, text: "", partner: "", sent: 0, refused: 0, nextRef: 1 };

  function connect() {
    window.razvilkaSocket("/partner/ws", {
      onSocket: (ws) => { P.ws = ws; }, onProtocol, onControl,
      onOpen: () => setConn(true), onClose: () => setConn(false),
    });
  }

  function setConn(up) {
    const el = $("conn");
    el.className = up ? "up" : "down";
    el.textContent = up ? "connected" : "reconnecting…";
    $("send").disabled = !up;
  }

  function onControl(msg) {
    if (msg.type === "hello") {
      document.body.className = `theme-${(msg.config && msg.config.theme) || "contrast"} partner-page`;
    } else if (msg.type === "ack") {
      P.sent += 1;
      status("sent", false);
    } else if (msg.type === "error") {
      P.refused += 1;
      status(`not sent: ${msg.message}`, true);
    }
  }

  function onProtocol(msg) {
    const body = msg.body;
    switch (msg.header.type) {
      case "text.state":
        P.text = body.text || "";
        if (typeof body.partner === "string") P.partner = body.partner;
        break;
      case "text.auto":
        P.text += body.text || "";
        break;
      case "text.undo":
        if (body.removed && P.text.endsWith(body.removed)) P.text = P.text.slice(0, P.text.length - body.removed.length);
        break;
      default:
        return;
    }
    render();
  }

  /** The partner's last turn and the person's whole text (the reply grows at its end). */
  function render() {
    $("partner-said").textContent = P.partner || "—";
    $("reply").textContent = P.text;
  }

  function status(text, bad) {
    const el = $("sent");
    el.textContent = text;
    el.classList.toggle("bad", bad);
  }

  $("turn-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("turn").value.trim();
    if (!text || !P.ws || P.ws.readyState !== WebSocket.OPEN) return;
    P.ws.send(JSON.stringify({ type: "partner", body: { text }, ref: `t${P.nextRef++}` }));
    P.partner = text;   // shown at once; the daemon's text.state confirms it
    $("turn").value = "";
    status("sending…", false);
    render();
  });

  window.razvilkaPartner = { state: P };
  setConn(false);
  connect();
})();
