// Joining the razvilka bus from Node.js: discovery file, PUB/SUB through the proxy,
// the snapshot for late joiners, heartbeats. See docs/renderers.md for the walk-through.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";

import { Decoder } from "@msgpack/msgpack";
import * as zmq from "zeromq";

import { Codec, ProtocolError, checkVersion, loadSchema } from "./protocol.js";

/** Where the discovery file is, as the Python config resolves it (protocol/config.py). */
export function defaultDiscoveryPath(env = process.env) {
  if (env.RAZVILKA_BUS__DISCOVERY_FILE) return env.RAZVILKA_BUS__DISCOVERY_FILE;
  let dir = env.RAZVILKA_BUS__RUNTIME_DIR;
  if (!dir) dir = env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, "razvilka") : `/tmp/razvilka-${process.getuid()}`;
  return join(dir, "bus.json");
}

/** Read the discovery file: endpoints, protocol version, HMAC key, CURVE server key. */
export function readDiscovery(path) {
  let data;
  try {
    data = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    if (err.code === "ENOENT") {
      throw new Error(`no bus discovery file at ${path}: is the bus running? Start it with \`razvilka daemon\` or \`razvilka bus\``);
    }
    throw new Error(`cannot read discovery file ${path}: ${err.message}`);
  }
  for (const key of ["pub", "sub", "snapshot", "version"]) {
    if (typeof data[key] !== "string") throw new Error(`discovery file ${path} is invalid: no "${key}"`);
  }
  checkVersion(data.version);
  return data;
}

/** Read a ZeroMQ certificate file (`public-key = "..."`, `secret-key = "..."`, Z85). */
function readCertificate(path) {
  const text = readFileSync(path, "utf8");
  const pick = (name) => text.match(new RegExp(`${name}\\s*=\\s*"([^"]{40})"`))?.[1];
  const publicKey = pick("public-key");
  const secretKey = pick("secret-key");
  if (!publicKey || !secretKey) throw new Error(`${path} holds no CURVE key pair`);
  return { publicKey, secretKey };
}

const metaDecoder = new Decoder();

/**
 * One connection to the bus for one named sender.
 * `await bus.start()`, then `await bus.snapshot()`, then `for await (const msg of bus.messages())`.
 */
export class Bus {
  constructor({
    discovery = defaultDiscoveryPath(),
    name = "node",
    role = "renderer",
    subscribe = ["fork."],
    heartbeatMs = 1000,
    curveSecretFile,
    schema = loadSchema(),
  } = {}) {
    this.discoveryPath = discovery;
    this.endpoints = readDiscovery(discovery);
    this.name = name;
    this.role = role;
    this.topics = subscribe;
    this.heartbeatMs = heartbeatMs;
    this.codec = new Codec({ sender: name, key: this.endpoints.hmac_key ?? "", schema });
    this.curve = this.endpoints.curve_server_public
      ? { server: this.endpoints.curve_server_public, ...readCertificate(curveSecretFile ?? join(dirname(discovery), "curve", "client.key_secret")) }
      : null;
    this.covered = new Map(); // "sender/session/type" -> last seq the snapshot already held
    this.rejected = 0;
    this.sending = Promise.resolve();
    this.timer = null;
  }

  socket(Kind, options = {}) {
    const sock = new Kind({ linger: 0, ...options });
    if (this.curve) {
      sock.curveServerKey = this.curve.server;
      sock.curvePublicKey = this.curve.publicKey;
      sock.curveSecretKey = this.curve.secretKey;
    }
    return sock;
  }

  async start() {
    this.pub = this.socket(zmq.Publisher);
    this.pub.connect(this.endpoints.pub);
    this.sub = this.socket(zmq.Subscriber);
    for (const topic of this.topics) this.sub.subscribe(topic);
    if (!this.topics.some((t) => "heartbeat.".startsWith(t))) this.sub.subscribe("heartbeat.");
    this.sub.connect(this.endpoints.sub);
    await this.waitConnected();
    if (this.heartbeatMs > 0) {
      this.beat("ok");
      this.timer = setInterval(() => this.beat("ok"), this.heartbeatMs);
    }
    return this;
  }

  /** PUB/SUB drops what is sent before the subscription reaches the proxy: wait until our own probe comes back. */
  async waitConnected(timeoutMs = 5000) {
    const token = `_probe.${process.pid}.${randomBytes(4).toString("hex")}.`;
    this.sub.subscribe(token);
    this.sub.receiveTimeout = 50;
    const deadline = Date.now() + timeoutMs;
    try {
      while (Date.now() < deadline) {
        await this.send([Buffer.from(token), Buffer.alloc(0), Buffer.alloc(0)]);
        try {
          const [topic] = await this.sub.receive();
          if (topic.toString() === token) return;
        } catch (err) {
          if (err.code !== "EAGAIN") throw err;
        }
      }
      throw new Error(`could not reach the bus at ${this.endpoints.sub} within ${timeoutMs} ms`);
    } finally {
      this.sub.unsubscribe(token);
      this.sub.receiveTimeout = -1;
    }
  }

  /** One send at a time on a zeromq.js socket: queue them. */
  send(frames) {
    this.sending = this.sending.then(() => this.pub.send(frames));
    return this.sending;
  }

  /** Publish one message, e.g. `publish("input.select", {index: 1, source: "node"}, {forkId})`. */
  publish(type, body, options = {}) {
    return this.send(this.codec.encode(type, body, options));
  }

  beat(state) {
    return this.publish("heartbeat", { role: this.role, interval_ms: this.heartbeatMs, state }).catch(() => {});
  }

  /** The retained state (open fork and its look-aheads, text, status, layouts), oldest first. */
  async snapshot(timeoutMs = 2000) {
    const dealer = this.socket(zmq.Dealer, { receiveTimeout: timeoutMs });
    try {
      dealer.connect(this.endpoints.snapshot);
      await dealer.send([Buffer.alloc(0), Buffer.from("SNAPSHOT")]);
      let reply;
      try {
        reply = await dealer.receive();
      } catch (err) {
        if (err.code === "EAGAIN") throw new Error(`no snapshot from ${this.endpoints.snapshot} in ${timeoutMs} ms`);
        throw err;
      }
      if (reply.length < 3 || reply[1].toString() !== "STATE") throw new Error(`bad snapshot reply: ${reply[1]}`);
      const meta = metaDecoder.decode(reply[2]);
      for (const [key, seq] of Object.entries(meta.last_seq ?? {})) this.covered.set(key, seq);
      const out = [];
      let pos = 3;
      for (const size of meta.sizes ?? []) {
        const frames = reply.slice(pos, pos + size);
        pos += size;
        const msg = this.accept(frames, { retained: true });
        if (msg) out.push(msg);
      }
      return out;
    } finally {
      dealer.close();
    }
  }

  /** Decode one message; bad ones are counted and reported, never thrown; unknown types are skipped. */
  accept(frames, { retained = false } = {}) {
    let msg;
    try {
      msg = this.codec.decode(frames, { retained });
    } catch (err) {
      if (frames[0]?.toString().startsWith("_probe.")) return null;
      if (!(err instanceof ProtocolError)) throw err;
      this.rejected += 1;
      if (this.rejected <= 10) console.error(`rejected a message: ${err.message}`);
      return null;
    }
    return msg.known ? msg : null;
  }

  /** Live messages after the snapshot (those the snapshot already held are dropped). */
  async *messages() {
    while (!this.closed) {
      let frames;
      try {
        frames = await this.sub.receive();
      } catch (err) {
        if (this.closed) return;
        throw err;
      }
      const msg = this.accept(frames);
      if (!msg) continue;
      const h = msg.header;
      const covered = this.covered.get(`${h.sender}/${h.session}/${h.type}`);
      if (covered !== undefined && h.seq <= covered) continue;
      yield msg;
    }
  }

  /** Say goodbye (a "stopped" heartbeat, so peers know it was no crash) and close. */
  async close() {
    if (this.closed) return;
    clearInterval(this.timer);
    if (this.heartbeatMs > 0) await this.beat("stopped");
    await this.sending.catch(() => {});
    this.closed = true;
    this.sub?.close();
    this.pub?.close();
  }
}

