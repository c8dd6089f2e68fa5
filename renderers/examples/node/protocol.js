// razvilka protocol v1 in JavaScript: encode and decode the frames of one bus message.
//
// Written from docs/protocol.md and protocol/schema.json only. The JSON Schema drives
// both directions: decoding validates a body against its type's definition (filling
// defaults, dropping unknown fields), and encoding writes every `number` field as a
// float64, as the Python side does, so canonical messages come out byte for byte.
//
// Wire format, one ZeroMQ multipart message:
//   [topic, header, body]          signing off
//   [topic, header, body, hmac]    signing on: lowercase hex HMAC-SHA256 over the
//                                  bytes of topic, header and body, in that order
//
// With signing on, a message whose seq is not above the last one received of its
// (sender, session, type) is a replay and is refused (REPLAYED, protocol 1.3).
//
// Protocol 1.4 adds targets (targets.js holds their grammar) and one rule the schema does not
// state: a focus, confirm or select names its candidate by `index` or by `target`, never both,
// and a select names one of them (checkRules below). Protocol 1.5 adds commands, phrase:<id> targets and
// the types phrases.state, config.update and config.state: all in the schema, nothing more to state here.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { Decoder, Encoder } from "@msgpack/msgpack";

export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_VERSION = "1.5";
export const DEFAULT_MAX_FRAME = 1 << 20;
export const MAX_TOPIC = 256;
export const MAX_DEPTH = 1000;
/** (sender, session, type) streams a signing receiver remembers the last seq of (least recent dropped). */
export const REPLAY_STREAMS = 4096;

/** Error codes of the wire (docs/protocol.md, "Errors"). */
export const ErrorCode = Object.freeze({
  FRAME_COUNT: 1,
  OVERSIZE: 2,
  BAD_TOPIC: 3,
  MALFORMED: 4,
  NOT_A_MAP: 5,
  MISSING_FIELD: 6,
  WRONG_TYPE: 7,
  BAD_VERSION: 8,
  UNSUPPORTED_VERSION: 9,
  TOPIC_MISMATCH: 10,
  UNSIGNED: 11,
  BAD_SIGNATURE: 12,
  BAD_VALUE: 13,
  UNKNOWN_TYPE: 14,
  REPLAYED: 15,
});
const CODE_NAMES = Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k]));

/** The one error type: `code` says which failure, the message says it in words. */
export class ProtocolError extends Error {
  constructor(code, detail) {
    super(`${CODE_NAMES[code] ?? code}: ${detail}`);
    this.code = code;
    this.codeName = CODE_NAMES[code] ?? String(code);
    this.detail = detail;
  }
}

const TOPIC_RE = /^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)*\.$/;
const VERSION_RE = /^[0-9]{1,6}\.[0-9]{1,6}$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });
const textEncoder = new TextEncoder();

const HERE = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_SCHEMA = process.env.RAZVILKA_SCHEMA ?? join(HERE, "..", "..", "..", "protocol", "schema.json");

/** Read protocol/schema.json and index it: type name -> body definition, and which types need a fork_id. */
export function loadSchema(path = DEFAULT_SCHEMA) {
  const root = JSON.parse(readFileSync(path, "utf8"));
  const types = new Map();
  for (const entry of root.oneOf ?? []) {
    const ref = entry.properties?.body?.$ref;
    if (!ref) continue; // the "unknown type" branch
    const needsFork = (entry.properties.header?.required ?? []).includes("fork_id");
    types.set(entry.title, { schema: { $ref: ref }, needsFork });
  }
  return { root, defs: root.$defs, types, header: { $ref: "#/$defs/Header" } };
}

// ------------------------------------------------------------------ msgpack helpers
const decoder = new Decoder({ useBigInt64: true });
const encoder = new Encoder({ useBigInt64: true });
const floatEncoder = new Encoder({ forceIntegerToFloat: true });

function concat(parts) {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(size);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

function containerHeader(n, fix, b16, b32) {
  if (n < 16) return Uint8Array.of(fix | n);
  if (n < 0x10000) return Uint8Array.of(b16, n >> 8, n & 0xff);
  return Uint8Array.of(b32, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/** Make safe 64-bit integers plain numbers (bigger ones stay BigInt) and refuse hostile nesting. */
function normalize(value, depth = 0) {
  if (depth > MAX_DEPTH) throw new ProtocolError(ErrorCode.MALFORMED, `nests deeper than ${MAX_DEPTH} levels`);
  if (typeof value === "bigint") {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }
  if (Array.isArray(value)) return value.map((v) => normalize(v, depth + 1));
  if (isMap(value)) {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = normalize(v, depth + 1);
    return out;
  }
  return value;
}

function isMap(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array) && v.constructor === Object;
}

function loadFrame(frame, part) {
  let value;
  try {
    value = decoder.decode(frame);
  } catch (err) {
    throw new ProtocolError(ErrorCode.MALFORMED, `${part} frame is not valid msgpack: ${err.message}`);
  }
  try {
    return normalize(value);
  } catch (err) {
    if (err instanceof ProtocolError) throw new ProtocolError(err.code, `${part} frame ${err.detail}`);
    throw err;
  }
}

function show(v) {
  return typeof v === "bigint" ? v.toString() : JSON.stringify(v) ?? String(v);
}

function kindOf(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "bigint") return "int";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float";
  if (typeof v === "string") return "str";
  if (Array.isArray(v)) return "array";
  if (v instanceof Uint8Array) return "bytes";
  return "object";
}

// ------------------------------------------------------------------ schema checks
/** Validate `value` against `schema`; returns the value with defaults filled and unknown fields dropped. */
function check(value, schema, at, ctx) {
  const s = resolve(schema, ctx.defs);
  if (s.anyOf) {
    if (value === null && s.anyOf.some((b) => b.type === "null")) return null;
    const branches = s.anyOf.filter((b) => b.type !== "null");
    let first;
    for (const branch of branches) {
      try {
        return check(value, branch, at, ctx);
      } catch (err) {
        first ??= err;
      }
    }
    throw first ?? new ProtocolError(ErrorCode.WRONG_TYPE, `${at}: Expected \`null\`, got \`${kindOf(value)}\``);
  }
  if (s.enum) {
    if (s.enum.includes(value)) return value;
    if (s.enum.every((e) => typeof e === "string") && typeof value !== "string") {
      throw new ProtocolError(ErrorCode.WRONG_TYPE, `${at}: Expected \`str\`, got \`${kindOf(value)}\``);
    }
    throw new ProtocolError(ErrorCode.BAD_VALUE, `${at}: Invalid enum value ${show(value)}`);
  }
  const wrong = (expected) =>
    new ProtocolError(
      at === ctx.part && expected === "object" ? ErrorCode.NOT_A_MAP : ErrorCode.WRONG_TYPE,
      `${at}: Expected \`${expected}\`, got \`${kindOf(value)}\``,
    );
  const bad = (what) => new ProtocolError(ErrorCode.BAD_VALUE, `${at}: ${what}`);
  switch (s.type) {
    case "object": {
      if (!isMap(value)) throw wrong("object");
      const out = {};
      if (s.properties) {
        const missing = [];
        for (const [key, prop] of Object.entries(s.properties)) {
          if (Object.hasOwn(value, key)) out[key] = check(value[key], prop, `${at}.${key}`, ctx);
          else if ((s.required ?? []).includes(key)) missing.push(key);
          else if (Object.hasOwn(prop, "default")) out[key] = structuredClone(prop.default);
        }
        if (missing.length) {
          throw new ProtocolError(ErrorCode.MISSING_FIELD, `${at} is missing required field '${missing[0]}'`);
        }
      } else if (s.additionalProperties) {
        for (const [key, v] of Object.entries(value)) out[key] = check(v, s.additionalProperties, `${at}.${key}`, ctx);
      } else {
        return value;
      }
      return out;
    }
    case "array":
      if (!Array.isArray(value)) throw wrong("array");
      return s.items ? value.map((v, i) => check(v, s.items, `${at}[${i}]`, ctx)) : value;
    case "string": {
      if (typeof value !== "string") throw wrong("str");
      const length = [...value].length;
      if (s.minLength !== undefined && length < s.minLength) throw bad(`Expected \`str\` of length >= ${s.minLength}`);
      if (s.maxLength !== undefined && length > s.maxLength) throw bad(`Expected \`str\` of length <= ${s.maxLength}`);
      if (s.pattern && !new RegExp(s.pattern, "u").test(value)) throw bad(`Expected \`str\` matching regex '${s.pattern}'`);
      return value;
    }
    case "integer":
      if (!(typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value)))) throw wrong("int");
      bounds(value, s, "int", bad);
      return value;
    case "number":
      if (!(typeof value === "bigint" || typeof value === "number")) throw wrong("float");
      bounds(value, s, "float", bad);
      return typeof value === "bigint" ? Number(value) : value;
    case "boolean":
      if (typeof value !== "boolean") throw wrong("bool");
      return value;
    case "null":
      if (value !== null) throw wrong("null");
      return null;
    default:
      return value;
  }
}

function bounds(value, s, kind, bad) {
  if (s.minimum !== undefined && value < s.minimum) throw bad(`Expected \`${kind}\` >= ${s.minimum}`);
  if (s.maximum !== undefined && value > s.maximum) throw bad(`Expected \`${kind}\` <= ${s.maximum}`);
  if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum) throw bad(`Expected \`${kind}\` > ${s.exclusiveMinimum}`);
  if (s.exclusiveMaximum !== undefined && value >= s.exclusiveMaximum) throw bad(`Expected \`${kind}\` < ${s.exclusiveMaximum}`);
}

function resolve(schema, defs) {
  let s = schema ?? {};
  while (s.$ref) s = defs[s.$ref.split("/").pop()];
  return s;
}

/** msgpack for `value`, writing every schema `number` as float64 (as msgspec does). */
function encodeTyped(value, schema, defs) {
  const s = resolve(schema, defs);
  if (s.anyOf) {
    if (value === null) return encoder.encode(null);
    const branch = s.anyOf.find((b) => b.type !== "null" && fits(value, resolve(b, defs))) ?? {};
    return encodeTyped(value, branch, defs);
  }
  if (s.type === "number" && typeof value === "number") return floatEncoder.encode(value);
  if (isMap(value) && (s.properties || s.additionalProperties)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined);
    const parts = [containerHeader(keys.length, 0x80, 0xde, 0xdf)];
    for (const k of keys) {
      parts.push(encoder.encode(k), encodeTyped(value[k], s.properties?.[k] ?? s.additionalProperties ?? {}, defs));
    }
    return concat(parts);
  }
  if (Array.isArray(value) && s.items) {
    return concat([containerHeader(value.length, 0x90, 0xdc, 0xdd), ...value.map((v) => encodeTyped(v, s.items, defs))]);
  }
  return encoder.encode(wideIntsAsBigInt(value));
}

/** The encoder (in BigInt mode) writes integers past 32 bits only from BigInt: make them so. */
function wideIntsAsBigInt(value) {
  if (typeof value === "number" && Number.isInteger(value) && (value >= 2 ** 32 || value < -(2 ** 31))) {
    return BigInt(value);
  }
  if (Array.isArray(value)) return value.map(wideIntsAsBigInt);
  if (isMap(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, wideIntsAsBigInt(v)]));
  return value;
}

function fits(value, s) {
  switch (s.type) {
    case "number":
    case "integer":
      return typeof value === "number" || typeof value === "bigint";
    case "string":
      return typeof value === "string";
    case "array":
      return Array.isArray(value);
    case "object":
      return isMap(value);
    case "boolean":
      return typeof value === "boolean";
    default:
      return true;
  }
}

/** 1.4: types whose body names a candidate by index or target; true = one of them is required. */
const INDEX_OR_TARGET = new Map([["input.select", true], ["input.focus", false], ["input.confirm", false]]);

/** The cross-field rule of 1.4 (docs/protocol.md, input.select): both -> BAD_VALUE, neither (select) -> MISSING_FIELD. */
export function checkRules(type, body) {
  const required = INDEX_OR_TARGET.get(type);
  if (required === undefined) return body;
  const hasIndex = body.index !== null && body.index !== undefined;
  const hasTarget = body.target !== null && body.target !== undefined;
  if (hasIndex && hasTarget) {
    throw new ProtocolError(
      ErrorCode.BAD_VALUE,
      `body: ${type} names both index ${body.index} and target '${body.target}': name one (target cand:<i> is index i)`,
    );
  }
  if (required && !hasIndex && !hasTarget) {
    throw new ProtocolError(ErrorCode.MISSING_FIELD, `body: ${type} names neither index nor target: one is required`);
  }
  return body;
}

/** The monotonic clock in nanoseconds: the bus clock (LSL local_clock = CLOCK_MONOTONIC on Linux). */
export function nowNs() {
  return process.hrtime.bigint();
}

/**
 * Stamps outgoing messages for one sender and decodes incoming ones.
 * `key` (string or bytes) turns on signing: every sent message carries an HMAC and
 * every received one must carry a valid one.
 */
export class Codec {
  constructor({ sender, key = "", maxFrame = DEFAULT_MAX_FRAME, schema = loadSchema(), session,
                replayStreams = REPLAY_STREAMS } = {}) {
    this.sender = sender;
    this.replayStreams = Math.max(1, replayStreams);
    this.lastSeen = new Map(); // "sender\0session\0type" -> last seq (signing only; Map order = LRU order)
    this.key = key ? Buffer.from(key) : null;
    this.maxFrame = maxFrame;
    this.schema = schema;
    this.session = session ?? randomBytes(16).toString("hex");
    this.idPrefix = randomBytes(6).toString("hex");
    this.ids = 0;
    this.seqs = new Map(); // per message type, so a subscriber to one type sees no false gaps
  }

  /** Frames for a message of `type` (e.g. "input.select") with a fresh header. */
  encode(type, body, { forkId = null, subtopic = [] } = {}) {
    const known = this.schema.types.get(type);
    if (!known) throw new ProtocolError(ErrorCode.UNKNOWN_TYPE, `${type} is not a registered message type`);
    if (known.needsFork && !forkId) throw new ProtocolError(ErrorCode.MISSING_FIELD, `${type} needs header.fork_id`);
    const full = checkRules(type, check(body, known.schema, "body", { defs: this.schema.defs, part: "body" }));
    const seq = this.seqs.get(type) ?? 0;
    this.seqs.set(type, seq + 1);
    const header = {
      version: PROTOCOL_VERSION,
      type,
      id: `${this.idPrefix}-${this.ids++}`,
      sender: this.sender,
      session: this.session,
      seq,
      ts_ns: nowNs(),
      fork_id: forkId,
    };
    return this.encodeParts([type, ...subtopic].join(".") + ".", header, full);
  }

  /** Frames for a topic, header and body as given (round trips, forwarding). */
  encodeParts(topic, header, body) {
    const known = this.schema.types.get(header.type);
    const frames = [
      textEncoder.encode(topic),
      encodeTyped(header, this.schema.header, this.schema.defs),
      known ? encodeTyped(body, known.schema, this.schema.defs) : encoder.encode(wideIntsAsBigInt(body)),
    ];
    if (this.key) frames.push(this.sign(frames));
    return frames.map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength));
  }

  sign(frames) {
    const mac = createHmac("sha256", this.key);
    for (const frame of frames.slice(0, 3)) mac.update(frame);
    return Buffer.from(mac.digest("hex"));
  }

  /**
   * Frames -> { topic, header, body, type, known }. Unknown types come back with
   * known = false and the body as a plain map: receivers skip them.
   * Every failure throws a ProtocolError; checks run in the order of docs/protocol.md.
   * `retained`: the frames come from a snapshot (old by design): no replay check, nothing recorded.
   */
  decode(frames, { retained = false } = {}) {
    const n = frames.length;
    if (n !== 3 && n !== 4) throw new ProtocolError(ErrorCode.FRAME_COUNT, `expected 3 frames (4 when signed), got ${n}`);
    frames.forEach((f, i) => {
      if (f.length > this.maxFrame) {
        throw new ProtocolError(ErrorCode.OVERSIZE, `frame ${i} is ${f.length} bytes (limit ${this.maxFrame})`);
      }
    });
    if (this.key) {
      if (n !== 4) throw new ProtocolError(ErrorCode.UNSIGNED, "signing is on and the message carries no signature");
      const want = this.sign(frames);
      const got = Buffer.from(frames[3]);
      if (got.length !== want.length || !timingSafeEqual(got, want)) {
        throw new ProtocolError(ErrorCode.BAD_SIGNATURE, "HMAC does not match the bytes received");
      }
    }
    if (frames[0].length > MAX_TOPIC) {
      throw new ProtocolError(ErrorCode.OVERSIZE, `topic is ${frames[0].length} bytes (limit ${MAX_TOPIC})`);
    }
    let topic;
    try {
      topic = utf8.decode(frames[0]);
    } catch {
      throw new ProtocolError(ErrorCode.BAD_TOPIC, "topic is not UTF-8");
    }
    if (!TOPIC_RE.test(topic)) {
      throw new ProtocolError(ErrorCode.BAD_TOPIC, `topic '${topic}' must be dotted lowercase words ending in '.'`);
    }
    const header = this.decodeHeader(frames[1]);
    if (!topic.startsWith(header.type + ".")) {
      throw new ProtocolError(ErrorCode.TOPIC_MISMATCH, `topic '${topic}' does not start with type '${header.type}'`);
    }
    const raw = loadFrame(frames[2], "body");
    const known = this.schema.types.get(header.type);
    if (!known) {
      if (!isMap(raw)) throw new ProtocolError(ErrorCode.NOT_A_MAP, `body must be a map, got ${kindOf(raw)}`);
      if (this.key && !retained) this.checkReplay(header);
      return { topic, header, body: raw, type: header.type, known: false };
    }
    const body = checkRules(header.type, check(raw, known.schema, "body", { defs: this.schema.defs, part: "body" }));
    if (known.needsFork && !header.fork_id) {
      throw new ProtocolError(ErrorCode.MISSING_FIELD, `${header.type} needs header.fork_id`);
    }
    if (this.key && !retained) this.checkReplay(header);
    return { topic, header, body, type: header.type, known: true };
  }

  /** The last check: refuse a seq at or below the last one of its stream, then record it. */
  checkReplay(header) {
    const stream = `${header.sender}\0${header.session}\0${header.type}`;
    const last = this.lastSeen.get(stream);
    const seq = BigInt(header.seq);
    if (last !== undefined) {
      if (seq <= last) {
        throw new ProtocolError(
          ErrorCode.REPLAYED,
          `${header.type} seq ${seq} from '${header.sender}' is not after the last one received (${last}): a replayed or duplicated message`,
        );
      }
      this.lastSeen.delete(stream); // re-inserted below: the most recent at the end
    } else if (this.lastSeen.size >= this.replayStreams) {
      this.lastSeen.delete(this.lastSeen.keys().next().value);
    }
    this.lastSeen.set(stream, seq);
  }

  decodeHeader(frame) {
    const raw = loadFrame(frame, "header");
    if (!isMap(raw)) throw new ProtocolError(ErrorCode.NOT_A_MAP, `header must be a map, got ${kindOf(raw)}`);
    if (!Object.hasOwn(raw, "version")) {
      throw new ProtocolError(ErrorCode.MISSING_FIELD, "header is missing required field 'version'");
    }
    checkVersion(raw.version);
    return check(raw, this.schema.header, "header", { defs: this.schema.defs, part: "header" });
  }
}

/** "MAJOR.MINOR": another minor is fine (unknown fields are ignored), another major is refused. */
export function checkVersion(version) {
  if (typeof version !== "string" || !VERSION_RE.test(version)) {
    throw new ProtocolError(ErrorCode.BAD_VERSION, `header.version must be 'MAJOR.MINOR', got ${show(version).slice(0, 40)}`);
  }
  const major = Number(version.split(".")[0]);
  if (major !== PROTOCOL_MAJOR) {
    throw new ProtocolError(
      ErrorCode.UNSUPPORTED_VERSION,
      `protocol ${version} is not spoken here (this receiver speaks ${PROTOCOL_MAJOR}.x)`,
    );
  }
  return version;
}
