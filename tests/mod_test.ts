import "./_deadline.ts";
import assert from "node:assert/strict";
import * as mod from "../mod.ts";

// Pins the public surface of mod.ts: code outside this repo is written against these names.
const FOUNDATION = [
  "AsyncResult",
  "BlockingSwitchOutError",
  "Event",
  "Greenlet",
  "GreenletExit",
  "Hub",
  "LoopExit",
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

// The hub's loop classes (`Loop`, `TimerWatcher`, `CallbackWatcher`) are exported as types only
// here (runtime values from `@x/gevent/core`), so the root's pages open with the user-facing API.
// The whole runtime surface of mod.ts, sorted: adding or removing an export is a decision that
// shows up here (types are erased and pinned by `deno check` of the tests and examples).
const SURFACE = [
  "AsyncResult",
  "BlockingSwitchOutError",
  "BoundedSemaphore",
  "Channel",
  "Empty",
  "Event",
  "Full",
  "Greenlet",
  "GreenletExit",
  "Group",
  "GroupBase",
  "Hold",
  "HttpServer",
  "Hub",
  "LifoQueue",
  "Local",
  "Lock",
  "LoopExit",
  "Pool",
  "PoolFull",
  "PriorityQueue",
  "Queue",
  "RLock",
  "Semaphore",
  "ShutDown",
  "SimpleQueue",
  "StreamServer",
  "Timeout",
  "assertSwitches",
  "currentSignal",
  "eventStream",
  "events",
  "formatRunInfo",
  "getCurrent",
  "getHub",
  "httpHandler",
  "idle",
  "isKill",
  "iwait",
  "joinAll",
  "killAll",
  "monkey",
  "printRunInfo",
  "signalHandler",
  "sleep",
  "socket",
  "spawn",
  "spawnLater",
  "startMonitor",
  "trackSpawnSites",
  "upgradeWebSocket",
  "wait",
  "withTimeout",
];

Deno.test("mod.ts exports exactly the pinned surface", () => {
  assert.deepEqual(Object.keys(mod).sort(), SURFACE);
});
