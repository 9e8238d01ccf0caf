import assert from "node:assert/strict";
import * as mod from "../mod.ts";

// Pins the public surface of mod.ts: code outside this repo is written against these names.
const FOUNDATION = [
  "AsyncResult",
  "BlockingSwitchOutError",
  "CallbackWatcher",
  "Event",
  "Greenlet",
  "GreenletExit",
  "Hub",
  "Loop",
  "LoopExit",
  "TimerWatcher",
  "Timeout",
  "currentSignal",
  "getCurrent",
  "getHub",
  "idle",
  "isKill",
  "iwait",
  "joinAll",
  "killAll",
  "sleep",
  "spawn",
  "spawnLater",
  "wait",
  "withTimeout",
];

Deno.test("mod.ts exports the foundation API", () => {
  for (const name of FOUNDATION) {
    assert.ok(name in mod, `mod.ts is missing ${name}`);
    assert.notEqual((mod as Record<string, unknown>)[name], undefined, name);
  }
});

Deno.test("mod.ts exports no internal (underscore) names", () => {
  const internal = Object.keys(mod).filter((k) => k.startsWith("_"));
  assert.deepEqual(internal, []);
});
