// razvilka target ids (protocol 1.4, 1.5) in JavaScript: the grammar of docs/protocol.md, "Targets".
//
// A mirror of protocol/targets.py; test/targets.test.js checks that both agree on every id of
// protocol/vectors/targets.json. A target is `kind:value`:
//   cand:<i>        candidate i of the open fork (the same as index i)
//   word:<i>:<n>    candidate i and the first n words of its look-ahead
//   cmd:<name>      back, more, pause, resume, new; (1.5) speak, speak_all, repeat, stop_speaking, copy, typeout, settings
//   phrase:<id>     (1.5) a quick phrase: lower-case Latin letters, digits, _ and -
//   ui:<id>         (1.5) a renderer's own control (its settings page): the daemon decides nothing by it
//   key:<ch>        one lower-case Latin or Cyrillic letter, ' or -
//   key:space | key:delete | key:accept
import { ErrorCode, ProtocolError } from "./protocol.js";

export const TARGET_KINDS = Object.freeze(["cand", "word", "cmd", "key", "phrase", "ui"]);
export const TARGET_COMMANDS = Object.freeze(["back", "more", "pause", "resume", "new"]);
/** 1.5: commands that send the text out (the daemon runs them; the fork stays open). */
export const OUTPUT_COMMANDS = Object.freeze(["speak", "speak_all", "repeat", "stop_speaking", "copy", "typeout"]);
/** 1.5: commands a renderer handles itself (its settings page). */
export const RENDERER_COMMANDS = Object.freeze(["settings"]);
export const ALL_COMMANDS = Object.freeze([...TARGET_COMMANDS, ...OUTPUT_COMMANDS, ...RENDERER_COMMANDS]);
export const MAX_PHRASE_ID = 57;
export const KEY_NAMES = Object.freeze(["space", "delete", "accept"]);
export const MAX_INDEX = 255;
export const MAX_WORDS = 64;
export const MAX_TARGET_CHARS = 64;

const LATIN = [[0x61, 0x7a], [0xdf, 0xff], [0x100, 0x24f]];
const CYRILLIC = [[0x430, 0x52f]];
const LOWER = /^\p{Ll}$/u;

const within = (ranges, cp) => ranges.some(([lo, hi]) => cp >= lo && cp <= hi);

/** "latin" or "cyrillic" for a lower-case letter a key may carry, else null. */
export function charScript(ch) {
  if ([...ch].length !== 1 || !LOWER.test(ch)) return null;
  const cp = ch.codePointAt(0);
  if (within(LATIN, cp)) return "latin";
  if (within(CYRILLIC, cp)) return "cyrillic";
  return null;
}

export function isKeyChar(ch) {
  return [...ch].length === 1 && (ch === "'" || ch === "-" || charScript(ch) !== null);
}

const bad = (text, why) => new ProtocolError(ErrorCode.BAD_VALUE, `target '${String(text).slice(0, MAX_TARGET_CHARS + 8)}': ${why}`);

function number(text, part, lo, hi, whole) {
  if (!/^(0|[1-9][0-9]*)$/.test(text)) throw bad(whole, `${part} must be a whole number ${lo}..${hi}, got '${text}'`);
  const n = Number(text);
  if (n < lo || n > hi) throw bad(whole, `${part} must be ${lo}..${hi}, got ${n}`);
  return n;
}

/** "cand:2" -> {kind: "cand", value: "2", index: 2, words: 0, candidate: true, letter: null}; a bad id throws BAD_VALUE. */
export function parseTarget(text) {
  if (typeof text !== "string") throw bad(text, `a target id is a string, got ${typeof text}`);
  if ([...text].length > MAX_TARGET_CHARS) throw bad(text, `longer than ${MAX_TARGET_CHARS} characters`);
  const colon = text.indexOf(":");
  if (colon < 0) throw bad(text, `not kind:value (kinds: ${TARGET_KINDS.join(", ")})`);
  const kind = text.slice(0, colon);
  const value = text.slice(colon + 1);
  const make = (index = null, words = 0) => ({
    kind, value, index, words,
    candidate: kind === "cand" || kind === "word",
    letter: kind === "key" && !KEY_NAMES.includes(value) ? value : null,
    output: (kind === "cmd" && OUTPUT_COMMANDS.includes(value)) || kind === "phrase",
  });
  switch (kind) {
    case "cand":
      return make(number(value, "the candidate", 0, MAX_INDEX, text));
    case "word": {
      const sep = value.indexOf(":");
      if (sep < 0) throw bad(text, "word targets are word:<candidate>:<n>");
      const index = number(value.slice(0, sep), "the candidate", 0, MAX_INDEX, text);
      return make(index, number(value.slice(sep + 1), "the look-ahead word", 1, MAX_WORDS, text));
    }
    case "cmd":
      if (!ALL_COMMANDS.includes(value)) throw bad(text, `unknown command '${value}' (commands: ${ALL_COMMANDS.join(", ")})`);
      return make();
    case "phrase":
      if (!/^[a-z0-9_-]+$/.test(value) || value.length > MAX_PHRASE_ID) {
        throw bad(text, "a phrase id is lower-case Latin letters, digits, _ and -");
      }
      return make();
    case "ui":
      if (!/^[a-z0-9_-]+$/.test(value) || value.length > MAX_PHRASE_ID) {
        throw bad(text, "a ui id is lower-case Latin letters, digits, _ and -");
      }
      return make();
    case "key":
      if (KEY_NAMES.includes(value) || isKeyChar(value)) return make();
      throw bad(text, `a key is one lower-case Latin or Cyrillic letter, ' or -, or one of ${KEY_NAMES.join(", ")}`);
    default:
      throw bad(text, `unknown kind '${kind}' (kinds: ${TARGET_KINDS.join(", ")})`);
  }
}

/** The id of a parsed target (the inverse of parseTarget). */
export function formatTarget(t) {
  if (t.kind === "cand") return `cand:${t.index}`;
  if (t.kind === "word") return `word:${t.index}:${t.words}`;
  return `${t.kind}:${t.value}`;
}
