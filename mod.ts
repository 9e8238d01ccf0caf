/**
 * **@x/gevent**: gevent's model of concurrency for Deno.
 *
 * Greenlets with `spawn` / `join` / `value`, an implicit hub that owns the loop, timeouts that
 * interrupt whatever a greenlet waits on, and events to coordinate them. There is no `run()`:
 * the first blocking call or spawn creates the hub.
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

export { CallbackWatcher, Loop, type TimerOptions, TimerWatcher } from "./core.ts";
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
export type { Address, ListenTlsOptions, Socket } from "./socket.ts";
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
export { type SignalHandle, signalHandler } from "./util.ts";
