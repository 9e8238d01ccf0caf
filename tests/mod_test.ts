import "./_deadline.ts";
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

// The whole runtime surface of mod.ts, sorted: adding or removing an export is a decision that
// shows up here (types are erased and pinned by `deno check` of the tests and examples).
const SURFACE = [
  "AsyncResult",
  "BlockingSwitchOutError",
  "BoundedSemaphore",
  "CallbackWatcher",
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
  "Loop",
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
  "TimerWatcher",
  "currentSignal",
  "eventStream",
  "getCurrent",
  "getHub",
  "httpHandler",
  "idle",
  "isKill",
  "iwait",
  "joinAll",
  "killAll",
  "monkey",
  "signalHandler",
  "sleep",
  "socket",
  "spawn",
  "spawnLater",
  "upgradeWebSocket",
  "wait",
  "withTimeout",
];

Deno.test("mod.ts exports exactly the pinned surface", () => {
  assert.deepEqual(Object.keys(mod).sort(), SURFACE);
});
