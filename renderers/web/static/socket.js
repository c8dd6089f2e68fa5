// razvilka's pages share one socket rule: connect to the bridge's websocket at `path`, hand each JSON
// frame to onProtocol (a bus message: it has a topic) or onControl (the bridge's own: hello, ack, error),
// and reconnect after a close with a doubling delay (0.5 s up to 5 s), reset once a connection opens.
// handlers.onSocket(ws) gets each new socket (the page sends on it), onOpen and onClose its changes.
"use strict";

window.razvilkaSocket = function razvilkaSocket(path, handlers) {
  let retryMs = 500;
  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`);
    handlers.onSocket(ws);
    ws.onopen = () => { retryMs = 500; if (handlers.onOpen) handlers.onOpen(); };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.topic !== undefined) handlers.onProtocol(msg); else handlers.onControl(msg);
    };
    ws.onclose = () => {
      if (handlers.onClose) handlers.onClose();
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
  }
  connect();
};
