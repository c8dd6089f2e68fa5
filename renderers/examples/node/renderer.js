#!/usr/bin/env node
// A minimal razvilka renderer in Node.js: prints each fork as it opens (and the one
// already open when it joins), its look-aheads and decisions, and can select a candidate.
//
//   node renderer.js [--discovery FILE] [--select INDEX] [--forks N] [--timeout S] [--name NAME]
//
// --select INDEX   send input.select for the candidate with this index in the first fork seen,
//                  then wait for that fork's decision and exit
// --forks N        exit after printing N forks
// --timeout S      give up (exit 1) after S seconds
import { parseArgs } from "node:util";

import { Bus, defaultDiscoveryPath } from "./bus.js";

const USAGE = "usage: node renderer.js [--discovery FILE] [--select INDEX] [--forks N] [--timeout S] [--name NAME] [--curve-secret FILE]";

function options(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      discovery: { type: "string" },
      select: { type: "string" },
      forks: { type: "string" },
      timeout: { type: "string" },
      name: { type: "string", default: "node" },
      "curve-secret": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const int = (v, what) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${what} wants a whole number, got '${v}'`);
    return n;
  };
  return {
    discovery: values.discovery ?? defaultDiscoveryPath(),
    select: int(values.select, "select"),
    forks: int(values.forks, "forks"),
    timeout: values.timeout === undefined ? undefined : Number(values.timeout),
    name: values.name,
    curveSecret: values["curve-secret"],
    help: values.help,
  };
}

const pct = (p) => `${(p * 100).toFixed(1)}%`;

/** One line per fork: "fork f-3 (41 ms): 0 river 37.5% | 1 road 25.0%". */
export function forkLine(forkId, body) {
  const page = body.page ? ` page ${body.page + 1}` : "";
  // joins (protocol 1.2): the piece continues the word before ("es" after "Miss"), shown as "‿es"
  const words = body.candidates.map((c) => `${c.index} ${c.joins ? "‿" : ""}${c.word.trim()} ${pct(c.prob)}`).join(" | ");
  // letters (protocol 1.4): the likeliest next letters of the typed prefix ("␣": the word ends); from a 1.5
  // daemon, of a word that is none of the candidates
  const letters = (body.letters ?? []).slice(0, 5).map((l) => `${l.ch === " " ? "␣" : l.ch} ${pct(l.prob)}`).join(" ");
  const typed = body.prefix ? ` typed "${body.prefix}"` : "";
  // unseen (protocol 1.5): the mass a top-N backend's rows did not show; 0 (not printed) with full rows
  const unseen = body.unseen ? ` · unseen ${pct(body.unseen)}` : "";
  return `fork ${forkId}${page}${typed} (${body.compute_ms.toFixed(0)} ms): ${words}${letters ? ` · next: ${letters}` : ""}${unseen}`;
}

async function main() {
  let opts;
  try {
    opts = options(process.argv.slice(2));
  } catch (err) {
    console.error(`${err.message}\n${USAGE}`);
    return 2;
  }
  if (opts.help) {
    console.log(USAGE);
    return 0;
  }
  let bus;
  try {
    bus = new Bus({
      discovery: opts.discovery,
      name: opts.name,
      subscribe: ["fork.", "daemon."],
      curveSecretFile: opts.curveSecret,
    });
    await bus.start();
  } catch (err) {
    console.error(`razvilka node renderer: ${err.message}`);
    return 2;
  }
  console.log(`joined ${bus.endpoints.sub} as ${opts.name} (protocol ${bus.endpoints.version})`);

  let code = 0;
  let timer;
  const stop = () => bus.close();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  if (opts.timeout !== undefined) {
    timer = setTimeout(() => {
      console.error(`timed out after ${opts.timeout} s`);
      code = 1;
      stop();
    }, opts.timeout * 1000);
  }

  const forks = new Map(); // fork_id -> candidates
  let printed = 0;
  let selected = null; // the fork we sent a select for
  let decided = false;

  const done = () =>
    (opts.forks === undefined || printed >= opts.forks) &&
    (opts.select === undefined || decided) &&
    (opts.forks !== undefined || opts.select !== undefined);

  /** Handle one message; true when the run is complete. */
  const handle = async (msg, late) => {
    const forkId = msg.header.fork_id;
    switch (msg.type) {
      case "fork.open": {
        forks.set(forkId, msg.body.candidates);
        printed += 1;
        console.log((late ? "(open when we joined) " : "") + forkLine(forkId, msg.body));
        if (opts.select !== undefined && selected === null) {
          const cand = msg.body.candidates.find((c) => c.index === opts.select);
          if (!cand) {
            console.error(`fork ${forkId} has no candidate ${opts.select}`);
            code = 2;
            return true; // stop: nothing to select
          }
          selected = forkId;
          // kind (protocol 1.3): a scripted choice is neither keys nor a pointer
          await bus.publish("input.select", { index: cand.index, source: opts.name, kind: "other" }, { forkId });
          console.log(`selected ${forkId} index ${cand.index} (${cand.word.trim()})`);
        }
        break;
      }
      case "fork.lookahead": {
        const cands = forks.get(forkId) ?? [];
        for (const e of msg.body.entries) {
          const word = cands.find((c) => c.index === e.index)?.word.trim() ?? "?";
          console.log(`  look-ahead${e.long ? " (long)" : ""} ${forkId} ${e.index} ${word}: ${e.phrases.map((p) => p.trim()).join(" / ")}`);
        }
        break;
      }
      case "fork.decided": {
        const b = msg.body;
        console.log(`decided ${forkId}: ${b.words.join(" ")} by ${b.sources.join(", ")} in ${b.latency_ms.toFixed(0)} ms`);
        if (forkId === selected) decided = true;
        break;
      }
      case "daemon.status":
        console.log(`status: ${msg.body.state} model=${msg.body.model || "?"} mode=${msg.body.mode || "?"}`);
        break;
      case "daemon.error":
        console.log(`daemon error ${msg.body.name}: ${msg.body.message}`);
        break;
      case "text.state": // 1.5: the partner's turn this text replies to
        if (msg.body.partner) console.log(`partner: ${msg.body.partner}`);
        break;
      case "phrases.state": // 1.5: quick phrases, shown as phrase:<id> targets
        console.log(`phrases: ${msg.body.phrases.map((p) => `${p.id}=${JSON.stringify(p.text)}`).join(" ")}`);
        break;
      case "config.state": // 1.5: the settings the person can change
        console.log(`settings${msg.body.error ? ` (refused: ${msg.body.error})` : ""}: ${JSON.stringify(msg.body.values)}`);
        break;
      default:
        break;
    }
    return done();
  };

  try {
    const snap = await bus.snapshot();
    console.log(`snapshot: ${snap.length} messages`);
    let finished = false;
    for (const msg of snap) {
      finished = (await handle(msg, true)) || finished; // the whole snapshot: a fork and its look-aheads
      if (code) break;
    }
    if (!finished && !code) {
      for await (const msg of bus.messages()) {
        if (await handle(msg, false)) break;
      }
    }
  } catch (err) {
    console.error(`razvilka node renderer: ${err.message}`);
    code = code || 1;
  } finally {
    clearTimeout(timer);
    await bus.close();
  }
  if (bus.rejected) console.error(`rejected ${bus.rejected} bad messages`);
  return code;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("renderer.js")) {
  process.exitCode = await main();
}
