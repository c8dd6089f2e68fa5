// The target grammar (protocol 1.4, 1.5): targets.js parses every id of protocol/vectors/targets.json
// as protocol/targets.py does, and refuses the same ones with the same code.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { ProtocolError } from "../protocol.js";
import { KEY_NAMES, OUTPUT_COMMANDS, RENDERER_COMMANDS, TARGET_COMMANDS, formatTarget, parseTarget } from "../targets.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const VECTORS = process.env.RAZVILKA_VECTORS ?? join(HERE, "..", "..", "..", "..", "protocol", "vectors");
const doc = JSON.parse(readFileSync(join(VECTORS, "targets.json"), "utf8"));

describe("targets.json", () => {
  test("the same commands and named keys", () => {
    assert.deepEqual([...TARGET_COMMANDS], doc.commands);
    assert.deepEqual([...OUTPUT_COMMANDS], doc.output_commands);
    assert.deepEqual([...RENDERER_COMMANDS], doc.renderer_commands);
    assert.deepEqual([...KEY_NAMES], doc.key_names);
  });
  test("every keyboard letter is a key", () => {
    for (const [script, letters] of Object.entries(doc.alphabets)) {
      for (const ch of letters) assert.equal(parseTarget(`key:${ch}`).letter, ch, `${script} ${ch}`);
    }
  });
  for (const v of doc.valid) {
    test(`valid ${v.id}`, () => {
      const t = parseTarget(v.id);
      assert.deepEqual(t, { kind: v.kind, value: v.value, index: v.index, words: v.words, candidate: v.candidate,
                            letter: v.letter, output: v.output });
      assert.equal(formatTarget(t), v.id);
    });
  }
  for (const v of doc.invalid) {
    test(`invalid ${JSON.stringify(v.id)}`, () => {
      assert.throws(() => parseTarget(v.id), (err) => {
        assert.ok(err instanceof ProtocolError, `not a ProtocolError: ${err}`);
        assert.equal(err.codeName, v.error.name);
        assert.equal(err.detail, v.message, "the same words as the Python parser");
        return true;
      });
    });
  }
});
