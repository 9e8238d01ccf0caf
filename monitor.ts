/**
 * The blocked-loop monitor (gevent's monitoring thread): a second thread that notices when the
 * event loop does not come back for `maxBlockingTime` milliseconds, says which greenlet was
 * running, and watches the process's memory.
 *
 * How it works: while a monitor runs, the main thread logs every switch into shared memory
 * (the loop draining its run queue, a greenlet starting, a blocking call beginning, a wake-up,
 * a greenlet dying) and a heartbeat timer marks the log when the loop is idle. The monitor
 * thread polls the log's count; when it has not moved for `maxBlockingTime` the loop is held.
 * Nothing of this runs while no monitor is started (one boolean test per hook).
 *
 * What it can and cannot know:
 * - While the block goes on, the monitor thread names the runner from the tail of the log: the
 *   greenlet whose first step the loop is running, else a loop callback if the loop was
 *   draining, else the first greenlet woken and not yet switched out (woken greenlets resume
 *   in wake order). This is a guess: code that resumed from an `await` of something the
 *   library does not own (`fetch`, a driver) leaves no mark.
 * - When the block ends, the main thread names the flow whose code made the first library
 *   call after the gap (a blocking call, a wake-up, its end): exact when the blocking code
 *   reaches such a call; otherwise the end report repeats the guess (`exact: false`).
 * - The blocked thread's stack is never available on Deno: no public API reads another
 *   thread's stack (`node:inspector` sessions only see their own thread, and
 *   `Session.connectToMainThread()` is "not supported").
 *
 * Reports: the monitor thread writes the blocked report to standard error at once (the main
 * thread is held, so nothing there can run); subscribers of `@x/gevent/events` get the
 * `blocked` event when the loop is back, followed by `unblocked` with the total time, which
 * the default subscriber prints.
 *
 * @example Naming a greenlet that holds the loop
 * ```ts
 * import { startMonitor } from "@x/gevent/monitor";
 * import { type LoopBlocked, type LoopUnblocked, subscribe } from "@x/gevent/events";
 * import { getHub, Greenlet } from "@x/gevent";
 * import assert from "node:assert/strict";
 *
 * getHub().exceptionStream = null; // the default subscriber would print the end report
 * await using monitor = startMonitor({ maxBlockingTime: 50, liveReport: false });
 * await monitor.ready;
 * let blocked: LoopBlocked | undefined;
 * const ended = Promise.withResolvers<LoopUnblocked>();
 * using _sub = subscribe((event) => {
 *   if (event.type === "blocked") blocked = event;
 *   if (event.type === "unblocked") ended.resolve(event);
 * });
 * const g = new Greenlet(() => {
 *   const end = performance.now() + 150;
 *   while (performance.now() < end); // holds the loop
 * });
 * g.name = "spinner";
 * g.start();
 * const unblocked = await ended.promise;
 * assert.ok(blocked?.runner.kind === "greenlet" && blocked.runner.greenlet.name === "spinner");
 * assert.ok(unblocked.totalMs >= 50 && unblocked.serial === blocked.serial);
 * ```
 *
 * @module
 */

import type * as WorkerThreads from "node:worker_threads";
import { _checkBag, _render } from "./_check.ts";
import { notify } from "./events.ts";
import { Greenlet } from "./greenlet.ts";
import { _current, _root, _runIn, getHub } from "./hub.ts";
import {
  _attach,
  _detach,
  _DRAIN_END,
  _FLAG,
  _LAST_AT,
  _mark,
  _SHARED_BYTES,
  type _Sink,
  _START_END,
  _TICK,
  _WAKE,
  _YIELD,
} from "./_monitor_state.ts";
import {
  _guess,
  type _Info,
  _LAYOUT,
  type _MonitorInit,
  _monitorMain,
  type _Runner,
} from "./_monitor_worker.ts";
import { _unrefTimer } from "./_runtime.ts";
import { trackSpawnSites } from "./_runinfo.ts";

/** The memory part of {@linkcode MonitorOptions}. */
export interface MemoryOptions {
  /** The limit, in bytes of resident set size (RSS, as gevent's `max_memory_usage`). */
  max: number;
  /** Milliseconds between samples (default 5000, gevent's `memory_monitor_period`). */
  period?: number;
}

/** Options of {@linkcode startMonitor}. */
export interface MonitorOptions {
  /**
   * Milliseconds the loop may be held before it is reported (default 100, gevent's
   * `max_blocking_time` of 0.1 s). The monitor thread polls every quarter of it.
   */
  maxBlockingTime?: number;
  /** Watch memory: `memoryOver` when RSS goes over `max`, `memoryUnder` when back under. */
  memory?: MemoryOptions;
  /**
   * Whether the monitor thread writes the blocked report to standard error while the block
   * goes on (default `true`). With `false`, subscribers still get every event.
   */
  liveReport?: boolean;
  /**
   * Whether to record where each greenlet is created, for the reports and run-info (as
   * `trackSpawnSites()` does; default `true`). It costs one captured stack per greenlet
   * created while the monitor runs (microseconds): turn it off for programs that spawn
   * greenlets at high rates.
   */
  spawnSites?: boolean;
}

/** A running monitor, from {@linkcode startMonitor}. */
export interface Monitor {
  /** The threshold, in milliseconds. */
  readonly maxBlockingTime: number;
  /** Whether it runs (until `stop()`). */
  readonly running: boolean;
  /**
   * Resolves once the monitor thread runs: blocks before that are not seen, and with `memory`
   * the first sample has been taken. Until then the thread keeps the process alive; from then
   * on it never does. Rejects if the thread could not start or the monitor was stopped first.
   */
  readonly ready: Promise<void>;
  /** Stops the monitor: ends the heartbeat and terminates the thread. Resolves once it is gone. */
  stop(): Promise<void>;
  /** Starts `stop()` without waiting (for `using`). */
  [Symbol.dispose](): void;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

let active: Monitor | undefined;

/** `node:worker_threads`, loaded on the first `startMonitor` (importing the module stays cheap). */
function workerThreads(): typeof WorkerThreads {
  // deno-lint-ignore no-explicit-any
  const mod = (globalThis as any).process?.getBuiltinModule?.("node:worker_threads");
  if (mod === undefined) {
    throw new Error("startMonitor needs node:worker_threads (Deno, Node 22.3+, Bun)");
  }
  return mod;
}

/** The package's own files, left out of spawn sites. */
const OWN = new RegExp(
  `^\\s*at .*${new URL(".", import.meta.url).href.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}` +
    `[^/]+\\.ts:`,
);

function spawnSiteOf(g: Greenlet<unknown>): string | undefined {
  const stack = g._site?.stack;
  if (stack === undefined) return undefined;
  const frames = stack.split("\n").slice(1).filter((line) => !OWN.test(line));
  return frames.length === 0 ? undefined : frames.slice(0, 3).map((l) => l.trim()).join("\n");
}

function infoOf(g: Greenlet<unknown>): _Info {
  return { ident: g.minimalIdent, name: g.name, spawnSite: spawnSiteOf(g) };
}

function checkPositive(name: string, value: unknown): void {
  if (typeof value !== "number" || !(value > 0) || value === Infinity) {
    const error = typeof value === "number" ? RangeError : TypeError;
    throw new error(
      `'${name}' must be a positive, finite number: current value is ${_render(value)}`,
    );
  }
}

/**
 * Starts the blocked-loop monitor (gevent's `monitor_thread`): a worker thread
 * (`node:worker_threads`, unreferenced so that it never keeps the process alive) that reports
 * a loop held for `maxBlockingTime` and, with `memory`, RSS over and back under a limit.
 * One monitor runs at a time.
 *
 * Costs while it runs: each switch writes two numbers to shared memory (roughly 50-100 ns);
 * each greenlet created records a stack for its spawn site (unless `spawnSites: false`); a
 * heartbeat timer fires every quarter of `maxBlockingTime`.
 *
 * @param options `maxBlockingTime`, `memory: { max, period }`, `liveReport`, `spawnSites`.
 * @returns The monitor; `stop()` (or `await using`) ends it.
 * @throws {TypeError} For options of the wrong type.
 * @throws {RangeError} For a non-positive or infinite number.
 * @throws {Error} If a monitor is already running.
 *
 * @example Memory over a (tiny) limit
 * ```ts
 * import { startMonitor } from "@x/gevent/monitor";
 * import { type GeventEvent, subscribe } from "@x/gevent/events";
 * import { getHub } from "@x/gevent";
 * import assert from "node:assert/strict";
 *
 * getHub().exceptionStream = null; // the default subscriber would print the event
 * const over = Promise.withResolvers<GeventEvent>();
 * using _sub = subscribe((event) => event.type === "memoryOver" && over.resolve(event));
 * await using monitor = startMonitor({ memory: { max: 1024, period: 50 } });
 * await monitor.ready; // the first sample is taken before
 * // The monitor's thread keeps no process alive: hold it open until the report arrives.
 * const alive = setInterval(() => {}, 1000);
 * const event = await over.promise;
 * clearInterval(alive);
 * assert.ok(event.type === "memoryOver" && event.usage > 1024 && event.max === 1024);
 * ```
 */
export function startMonitor(options?: MonitorOptions): Monitor {
  if (options === undefined) options = {};
  _checkBag(options);
  const max = options.maxBlockingTime ?? 100;
  checkPositive("maxBlockingTime", max);
  const memory = options.memory;
  if (memory !== undefined) {
    _checkBag(memory, "memory");
    checkPositive("memory.max", memory.max);
    if (memory.period !== undefined) checkPositive("memory.period", memory.period);
  }
  if (active !== undefined) throw new Error("A monitor is already running: stop() it first");

  const buffer = new SharedArrayBuffer(_SHARED_BYTES);
  const shared = new Int32Array(buffer);
  const poll = Math.max(1, max / 4);
  const init: _MonitorInit = {
    shared: buffer,
    maxBlockingTime: max,
    poll,
    live: options.liveReport ?? true,
    memoryMax: memory?.max,
    memoryPeriod: memory?.period ?? 5000,
    origin: performance.timeOrigin,
  };
  // The thread runs source text, not a file: no `--allow-read` needed, same from JSR.
  const source = `(${_monitorMain})(require("node:worker_threads"), ${JSON.stringify(_LAYOUT)}, ` +
    `${_guess});`;
  const worker = new (workerThreads().Worker)(source, { eval: true, workerData: init });
  // Referenced until it runs, so that `await monitor.ready` keeps the process alive; then
  // unreferenced, so that it never keeps the process alive by itself.

  const ready = Promise.withResolvers<void>();
  ready.promise.catch(() => {});
  let fresh: Greenlet<unknown>[] = [];
  let early: _Info[] | undefined = []; // names to send once the thread runs
  const tell = (g: Greenlet<unknown>): void => {
    const info = infoOf(g);
    if (early !== undefined) early.push(info);
    else worker.postMessage({ op: "name", info });
  };
  const sink: _Sink = {
    shared,
    times: new Float64Array(buffer),
    onStart(flow): void {
      const g = flow as Greenlet<unknown>;
      if (g._name !== undefined) tell(g);
      else if (fresh.length < 1000) fresh.push(g);
    },
    onFlag(kind, flow): void {
      const serial = Atomics.exchange(shared, _FLAG, 0);
      if (serial === 0) return;
      const at = performance.timeOrigin + performance.now();
      let runner: _Runner | undefined;
      try {
        const current = _current();
        if (getHub().loop._inCallback > 0 || kind === _DRAIN_END) runner = { kind: "callback" };
        else if (kind === _YIELD || kind === _START_END || (kind === _WAKE && current !== flow)) {
          runner = current instanceof Greenlet
            ? { kind: "greenlet", greenlet: infoOf(current) }
            : { kind: "main" };
        }
      } catch {
        runner = undefined;
      }
      worker.ref(); // until the end report is back: it keeps the process alive meanwhile
      worker.postMessage({ op: "ended", serial, at, runner });
    },
  };

  // The heartbeat: marks the log while the loop is idle, and tells the monitor thread the
  // names and spawn sites of greenlets that lived through one beat.
  const tick = (): void => {
    _mark(_TICK, undefined);
    if (fresh.length === 0) return;
    const list = fresh;
    fresh = [];
    for (let i = 0; i < list.length && i < 200; i++) if (!list[i].dead) tell(list[i]);
  };
  sink.times[_LAST_AT] = performance.now();
  const beat = setInterval(tick, poll);
  _unrefTimer(beat);

  worker.on("message", (msg: { type: string }) => {
    if (msg.type === "hello") {
      worker.postMessage({ op: "ack" });
    } else if (msg.type === "ready") {
      if (early === undefined) return;
      for (const info of early) worker.postMessage({ op: "name", info });
      early = undefined;
      worker.unref();
      ready.resolve();
    } else {
      if (msg.type === "unblocked" && running) worker.unref();
      _runIn(_root, () => notify(msg as Parameters<typeof notify>[0]));
    }
  });
  worker.on("error", (error: unknown) => {
    ready.reject(error);
    getHub()._report("monitor thread", error);
  });
  const sites = options.spawnSites ?? true ? trackSpawnSites() : undefined;
  _attach(sink);

  let running = true;
  let gone: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    if (gone !== undefined) return gone;
    running = false;
    clearInterval(beat);
    _detach(sink);
    sites?.stop();
    if (active === monitor) active = undefined;
    ready.reject(new Error("The monitor was stopped"));
    gone = worker.terminate().then(() => {});
    return gone;
  };
  const monitor: Monitor = {
    maxBlockingTime: max,
    get running(): boolean {
      return running;
    },
    ready: ready.promise,
    stop,
    [Symbol.dispose](): void {
      void stop();
    },
    [Symbol.asyncDispose]: stop,
  };
  active = monitor;
  return monitor;
}
