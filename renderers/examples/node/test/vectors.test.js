// Conformance: every vector in protocol/vectors/*.json, decoded by this client.
// Valid ones must equal the expected value (and survive an encode/decode round trip;
// canonical ones re-encode byte for byte); invalid ones must raise the expected code.
// A vector's `before` frames are decoded first by the same receiver (they set up a replay).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Codec, ErrorCode, ProtocolError, loadSchema } from "../protocol.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const VECTORS = process.env.RAZVILKA_VECTORS ?? join(HERE, "..", "..", "..", "..", "protocol", "vectors");
const schema = loadSchema();

/** JSON.parse that keeps integers beyond 2^53 exact (as BigInt), like the decoder does. */
function parseJson(text) {
  const marked = text.replace(/([:[,]\s*)(-?\d{16,})(?=\s*[,\]}])/g, '$1"__bigint__$2"');
  return JSON.parse(marked, (_key, value) => {
    if (typeof value !== "string" || !value.startsWith("__bigint__")) return value;
    const big = BigInt(value.slice("__bigint__".length));
    return big <= BigInt(Number.MAX_SAFE_INTEGER) && big >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(big) : big;
  });
}

// targets.json has its own format (target ids, not frames): test/targets.test.js reads it
const files = readdirSync(VECTORS).filter((f) => f.endsWith(".json") && f !== "targets.json").sort();
const unhex = (h) => Buffer.from(h, "hex");
const seenTypes = new Set();
let count = 0;

test("the vector files are there", () => {
  assert.ok(files.length >= 1, `no vectors in ${VECTORS}`);
});

for (const file of files) {
  const doc = parseJson(readFileSync(join(VECTORS, file), "utf8"));
  describe(file, () => {
    test("error codes agree with this client", () => {
      for (const [name, code] of Object.entries(doc.error_codes ?? {})) assert.equal(ErrorCode[name], code, name);
    });
    for (const v of doc.vectors) {
      count += 1;
      test(v.name, () => {
        const receiver = () => new Codec({ sender: "node-test", key: v.key ?? "", maxFrame: v.max_frame, schema });
        const codec = receiver();
        for (const earlier of v.before ?? []) codec.decode(earlier.map(unhex));
        const frames = v.frames.map(unhex);
        if (v.result === "error") {
          assert.throws(
            () => codec.decode(frames),
            (err) => {
              assert.ok(err instanceof ProtocolError, `not a ProtocolError: ${err}`);
              assert.equal(err.codeName, v.error.name, `${err.message} (wanted ${v.error.name}: ${v.message})`);
              assert.equal(err.code, v.error.code);
              return true;
            },
          );
          return;
        }
        const msg = codec.decode(frames);
        assert.equal(msg.known, v.result === "ok", `known should be ${v.result === "ok"}`);
        assert.deepEqual({ topic: msg.topic, header: msg.header, body: msg.body }, v.decoded);
        if (msg.known) seenTypes.add(msg.type);
        // encoder: decode(encode(x)) == x; canonical vectors re-encode to the same bytes
        // (a fresh receiver: the one that decoded `frames` would refuse the same seq as a replay)
        const again = codec.encodeParts(v.decoded.topic, v.decoded.header, v.decoded.body);
        const back = receiver().decode(again);
        assert.deepEqual({ topic: back.topic, header: back.header, body: back.body }, v.decoded);
        if (v.canonical) {
          assert.equal(again.length, frames.length);
          again.forEach((f, i) => assert.equal(f.toString("hex"), frames[i].toString("hex"), `frame ${i}`));
        }
      });
    }
  });
}

test("every message type has a valid vector", () => {
  assert.ok(count > 0);
  assert.deepEqual([...seenTypes].sort(), [...schema.types.keys()].sort());
});

describe("encoder", () => {
  const codec = new Codec({ sender: "node", schema });
  test("a select round-trips with defaults filled in", () => {
    const frames = codec.encode("input.select", { index: 2, source: "node" }, { forkId: "f-9" });
    assert.equal(frames.length, 3);
    const msg = codec.decode(frames);
    assert.equal(msg.topic, "input.select.");
    assert.equal(msg.header.fork_id, "f-9");
    assert.equal(msg.header.sender, "node");
    assert.deepEqual(msg.body, {
      index: 2, source: "node", confidence: 1, phrase: false, posterior: null, phrase_words: 0, kind: "", target: null,
    });
    assert.equal(frames[2].includes(Buffer.from("cb3ff0000000000000", "hex")), true, "confidence 1.0 is a float64");
  });
  test("sequence numbers count per type, subtopics refine the topic", () => {
    const a = codec.decode(codec.encode("heartbeat", { role: "renderer", interval_ms: 1000 }));
    const b = codec.decode(codec.encode("heartbeat", { role: "renderer", interval_ms: 1000 }));
    const c = codec.decode(codec.encode("input.focus", { index: 0, source: "node" }, { forkId: "f", subtopic: ["node"] }));
    assert.equal(b.header.seq, a.header.seq + 1);
    assert.equal(c.header.seq, 0);
    assert.equal(c.topic, "input.focus.node.");
    assert.ok(b.header.ts_ns >= a.header.ts_ns);
  });
  test("it refuses to send what a receiver would reject", () => {
    const code = (fn) => {
      try {
        fn();
      } catch (err) {
        return err.codeName;
      }
      return "sent";
    };
    assert.equal(code(() => codec.encode("input.select", { index: 256, source: "node" }, { forkId: "f" })), "BAD_VALUE");
    assert.equal(code(() => codec.encode("input.select", { index: 1, source: "node" })), "MISSING_FIELD");
    assert.equal(code(() => codec.encode("input.select", { source: "node" }, { forkId: "f" })), "MISSING_FIELD");
    assert.equal(code(() => codec.encode("input.teleport", { source: "node" })), "UNKNOWN_TYPE");
    // 1.4: a select names exactly one of index and target
    assert.equal(code(() => codec.encode("input.select", { index: 1, target: "cand:1", source: "node" }, { forkId: "f" })),
      "BAD_VALUE");
    assert.equal(code(() => codec.encode("input.select", { target: "key: ", source: "node" }, { forkId: "f" })), "BAD_VALUE");
  });
  test("1.4: a select by target round-trips with index null", () => {
    const msg = codec.decode(codec.encode("input.select", { target: "cmd:back", source: "node", kind: "other" }, { forkId: "f" }));
    assert.equal(msg.header.version, "1.5");
    assert.equal(msg.body.index, null);
    assert.equal(msg.body.target, "cmd:back");
  });
  test("1.5: a config.update round-trips with each kind of value; a list is refused", () => {
    for (const value of [800, 1.5, true, "light"]) {
      const msg = codec.decode(codec.encode("config.update", { section: "inputs.gaze", key: "dwell_ms", value, source: "node" }));
      assert.equal(msg.body.value, value);
    }
    const code = (fn) => { try { fn(); } catch (err) { return err.codeName; } return "sent"; };
    assert.equal(code(() => codec.encode("config.update", { section: "gating", key: "k", value: [6], source: "node" })),
      "WRONG_TYPE");
  });
  test("signing: a signed message verifies, a flipped byte does not", () => {
    const signer = new Codec({ sender: "node", key: "k", schema });
    const frames = signer.encode("heartbeat", { role: "renderer", interval_ms: 500 });
    assert.equal(frames.length, 4);
    assert.equal(signer.decode(frames).body.interval_ms, 500);
    frames[2][frames[2].length - 1] ^= 1;
    assert.throws(() => signer.decode(frames), (err) => err.codeName === "BAD_SIGNATURE");
  });
  test("signing: the same frames again are a replay; a snapshot's copy is not checked", () => {
    const sender = new Codec({ sender: "node", key: "k", schema });
    const receiver = new Codec({ sender: "rx", key: "k", schema });
    const first = sender.encode("input.select", { index: 1, source: "node", kind: "key" }, { forkId: "f" });
    assert.equal(receiver.decode(first).body.kind, "key");
    assert.throws(() => receiver.decode(first), (err) => err.codeName === "REPLAYED");
    assert.equal(receiver.decode(first, { retained: true }).header.seq, 0);
    const next = sender.encode("input.select", { index: 2, source: "node" }, { forkId: "f" });
    assert.equal(receiver.decode(next).body.index, 2);
    const plain = new Codec({ sender: "rx", schema }); // no key: nothing to protect, nothing tracked
    const unsigned = new Codec({ sender: "node", schema }).encode("heartbeat", { role: "renderer", interval_ms: 9 });
    plain.decode(unsigned);
    assert.equal(plain.decode(unsigned).body.interval_ms, 9);
  });
  test("the replay table is bounded: the least recently active stream is forgotten", () => {
    const receiver = new Codec({ sender: "rx", key: "k", schema, replayStreams: 2 });
    const senders = ["a", "b", "c"].map((name) => new Codec({ sender: name, key: "k", schema }));
    const frames = senders.map((s) => s.encode("heartbeat", { role: "input", interval_ms: 1000 }));
    for (const f of frames) receiver.decode(f);
    assert.equal(receiver.lastSeen.size, 2);
    assert.throws(() => receiver.decode(frames[2]), (err) => err.codeName === "REPLAYED");
    assert.equal(receiver.decode(frames[0]).header.sender, "a"); // forgotten: the documented limit
  });
});
