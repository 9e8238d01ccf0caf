/**
 * **@x/gevent**: gevent's model of concurrency for Deno.
 *
 * Greenlets with `spawn` / `join` / `value`, an implicit hub that owns the loop, timeouts that
 * interrupt whatever a greenlet waits on, and events to coordinate them. There is no `run()`:
 * the first blocking call or spawn creates the hub.
 *
 * This module re-exports what most programs need; each entry point below also stands alone.
 *
 * Start here:
 * - **Greenlets** ([`@x/gevent/greenlet`](https://jsr.io/@x/gevent/doc/greenlet)): `spawn`,
 *   `Greenlet`, `joinAll`, `killAll`, `getCurrent`, `currentSignal`, `isKill`, `GreenletExit`.
 * - **Timeouts** ([`@x/gevent/timeout`](https://jsr.io/@x/gevent/doc/timeout)): `Timeout` (with
 *   `using`) and `withTimeout`. `fetch` and other awaits the library does not own are
 *   interrupted only after `monkey.patchAll()` or with `{ signal: currentSignal() }`.
 * - **Waiting and events** ([`@x/gevent/event`](https://jsr.io/@x/gevent/doc/event)): `Event`,
 *   `AsyncResult`; `sleep`, `wait`, `iwait` and `getHub` come from
 *   [`@x/gevent/hub`](https://jsr.io/@x/gevent/doc/hub).
 *
 * Coordinating greenlets:
 * - [`@x/gevent/queue`](https://jsr.io/@x/gevent/doc/queue): `Queue`, `PriorityQueue`,
 *   `LifoQueue`, `SimpleQueue`, `Channel` and their `Empty`, `Full`, `ShutDown`.
 * - [`@x/gevent/lock`](https://jsr.io/@x/gevent/doc/lock): `Semaphore`, `BoundedSemaphore`,
 *   `Lock`, `RLock`.
 * - [`@x/gevent/pool`](https://jsr.io/@x/gevent/doc/pool): `Group` and `Pool` (bounded
 *   concurrency, `map` / `imap`).
 * - [`@x/gevent/local`](https://jsr.io/@x/gevent/doc/local): `Local`, one value per greenlet.
 *
 * Networking (Deno only):
 * - [`@x/gevent/socket`](https://jsr.io/@x/gevent/doc/socket) (also the `socket` namespace here):
 *   gevent's `socket` module: `createConnection`, `listen`, `gethostbyname`, `getaddrinfo`, ...
 * - [`@x/gevent/server`](https://jsr.io/@x/gevent/doc/server): `StreamServer`, a greenlet per
 *   connection.
 * - [`@x/gevent/http`](https://jsr.io/@x/gevent/doc/http): `HttpServer`, `httpHandler`,
 *   `eventStream`, `upgradeWebSocket`, a greenlet per request.
 * - [`@x/gevent/resolver`](https://jsr.io/@x/gevent/doc/resolver): `Resolver`, the hub's DNS
 *   resolver (name servers, timeouts, cache).
 * - [`@x/gevent/monkey`](https://jsr.io/@x/gevent/doc/monkey) (also the `monkey` namespace here):
 *   `patchAll` makes `fetch`, `Deno.connect`, `node:net`, DNS and `Deno.Command` killable inside
 *   greenlets.
 *
 * Running programs:
 * - [`@x/gevent/util`](https://jsr.io/@x/gevent/doc/util): `signalHandler`, `assertSwitches`.
 * - [`@x/gevent/monitor`](https://jsr.io/@x/gevent/doc/monitor): `startMonitor`, which reports a
 *   blocked event loop and memory use.
 * - [`@x/gevent/events`](https://jsr.io/@x/gevent/doc/events) (also the `events` namespace here):
 *   subscribe to what the monitor and failing greenlets report.
 *
 * Foundations, which most programs never import:
 * [`@x/gevent/hub`](https://jsr.io/@x/gevent/doc/hub) (the hub, blocking calls, `LoopExit`,
 * `BlockingSwitchOutError`) and [`@x/gevent/core`](https://jsr.io/@x/gevent/doc/core) (the
 * loop: a run queue and timer watchers, knowing nothing of greenlets).
 *
 * Guides in the package's `docs/`: `guide.md` (for JavaScript programmers new to gevent),
 * `gevent.md` (gevent names to TypeScript), `sharp-edges.md`.
 *
 * @example gevent's introduction, in TypeScript
 * ```ts
 * import { getHub, joinAll, sleep, spawn } from "@x/gevent";
 * import assert from "node:assert/strict";
 *
 * const lookup = async (name: string) => {
 *   await sleep(5); // stands for a network round trip
 *   return `${name.length}.0.0.1`;
 * };
 * const urls = ["www.google.com", "www.example.com", "www.python.org"];
 * const jobs = urls.map((url) => spawn(lookup, url));
 * await joinAll(jobs, { timeout: 2000 });
 * assert.deepEqual(jobs.map((job) => job.value), ["14.0.0.1", "15.0.0.1", "14.0.0.1"]);
 *
 * getHub().exceptionStream = null; // the report would go to stderr
 * const failed = spawn(() => 1n / 0n);
 * await failed.join(); // the error does not escape the greenlet
 * assert.ok(failed.exception instanceof RangeError);
 * ```
 *
 * @module
 */

export {
  BlockingSwitchOutError,
  type ErrorClass,
  type ExceptionStream,
  getHub,
  Hub,
  type HubResolver,
  idle,
  iwait,
  type Linkable,
  LoopExit,
  sleep,
  type SleepOptions,
  wait,
  type WaitOptions,
} from "./hub.ts";
export { Timeout, withTimeout, type WithTimeoutOptions } from "./timeout.ts";
export {
  currentSignal,
  getCurrent,
  type GetOptions,
  Greenlet,
  GreenletExit,
  isKill,
  joinAll,
  type JoinAllOptions,
  type JoinOptions,
  killAll,
  type KillOptions,
  type LinkTarget,
  type ResultReceiver,
  spawn,
  spawnLater,
} from "./greenlet.ts";
export { AsyncResult, Event, type ResultGetOptions, type WaitTimeoutOptions } from "./event.ts";
export {
  Channel,
  Empty,
  Full,
  LifoQueue,
  PriorityQueue,
  type PriorityQueueOptions,
  Queue,
  type QueueJoinOptions,
  type QueueOptions,
  ShutDown,
  type ShutdownOptions,
  SimpleQueue,
} from "./queue.ts";
export {
  type AcquireOptions,
  BoundedSemaphore,
  Hold,
  type HoldOptions,
  Lock,
  RLock,
  Semaphore,
} from "./lock.ts";
export {
  type ApplyAsyncOptions,
  Group,
  GroupBase,
  type GroupJoinOptions,
  type ImapOptions,
  Pool,
  type PoolAddOptions,
  PoolFull,
  type WaitAvailableOptions,
} from "./pool.ts";
export { Local } from "./local.ts";
export * as socket from "./socket.ts";
export {
  type Spawner,
  type StopOptions,
  type StreamHandler,
  StreamServer,
  type StreamServerOptions,
} from "./server.ts";
export type {
  Address,
  ListenTlsOptions,
  RecvLineOptions,
  Socket,
  SocketCallOptions,
} from "./socket.ts";
export {
  type AccessLog,
  type EventStream,
  eventStream,
  type FetchApp,
  type GreenletHandler,
  type HttpHandler,
  httpHandler,
  type HttpHandlerOptions,
  type HttpListenOptions,
  HttpServer,
  type HttpServerOptions,
  type HttpStopOptions,
  type ReceiveOptions,
  type RequestPool,
  type ServerSentEvent,
  upgradeWebSocket,
  type WebSocketConnection,
} from "./http.ts";
export * as monkey from "./monkey.ts";
export {
  assertSwitches,
  type AssertSwitchesOptions,
  formatRunInfo,
  printRunInfo,
  type PrintRunInfoOptions,
  type RunInfoOptions,
  type SignalHandle,
  signalHandler,
  type SpawnSiteTracking,
  trackSpawnSites,
} from "./util.ts";
export { type MemoryOptions, type Monitor, type MonitorOptions, startMonitor } from "./monitor.ts";
export * as events from "./events.ts";
// The hub's loop (`getHub().loop`), last: most programs never touch it.
export type { CallbackWatcher, Loop, TimerOptions, TimerWatcher } from "./core.ts";
