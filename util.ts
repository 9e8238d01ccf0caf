/**
 * Tools for running programs: signal handlers that run in greenlets, and
 * {@linkcode assertSwitches}, which checks that a piece of code lets other greenlets run.
 *
 * @module
 */

import { spawn } from "./greenlet.ts";
import { _checkBag, _checkFn, _checkMs, _render } from "./_check.ts";
import { _addSignalListener, _removeSignalListener, _unrefTimer } from "./_runtime.ts";
import { _addTracer, _DRAIN_END, _DRAIN_START, _TICK } from "./_monitor_state.ts";

export type { ExceptionStream } from "./hub.ts";
export {
  formatRunInfo,
  printRunInfo,
  type PrintRunInfoOptions,
  type RunInfoOptions,
  type SpawnSiteTracking,
  trackSpawnSites,
} from "./_runinfo.ts";

/** A handler installed by {@linkcode signalHandler}. */
export interface SignalHandle {
  /** The signal it handles. */
  readonly signal: string;
  /** Whether it is still installed. */
  readonly active: boolean;
  /** Uninstalls it; greenlets it already started go on. Cancelling twice is harmless. */
  cancel(): void;
  /** Same as `cancel()`, for `using`. */
  [Symbol.dispose](): void;
}

/**
 * Runs `fn(...args)` in a new greenlet each time the process receives `signal` (gevent's
 * `signal_handler`), until the returned handle is cancelled. What `fn` throws is reported by
 * the hub like any greenlet's failure. An installed handler does not keep the process alive
 * by itself (signal listeners do not, on Deno or Node).
 *
 * @typeParam A The argument types.
 * @param signal The signal's name, such as `"SIGUSR1"` or `"SIGTERM"`.
 * @param fn What to run.
 * @param args Arguments for `fn`.
 * @returns A handle to cancel it with.
 * @throws {TypeError} If `signal` is not a signal name or `fn` is not a function.
 *
 * @example Reporting on SIGUSR1
 * ```ts
 * import { signalHandler } from "@x/gevent/util";
 * import assert from "node:assert/strict";
 *
 * using handler = signalHandler("SIGUSR1", () => console.log("still alive"));
 * assert.equal(handler.active, true);
 * ```
 */
export function signalHandler<A extends unknown[]>(
  signal: string,
  fn: (...args: A) => unknown,
  ...args: A
): SignalHandle {
  if (typeof signal !== "string" || !/^SIG[A-Z0-9]+$/.test(signal)) {
    throw new TypeError(
      `'signal' must be a signal name such as "SIGUSR1": current value is ${_render(signal)}`,
    );
  }
  _checkFn(fn, "fn");
  const listener = (): void => void spawn(fn, ...args);
  _addSignalListener(signal, listener);
  let active = true;
  const cancel = (): void => {
    if (!active) return;
    active = false;
    _removeSignalListener(signal, listener);
  };
  return {
    signal,
    get active(): boolean {
      return active;
    },
    cancel,
    [Symbol.dispose]: cancel,
  };
}

/** Options of {@linkcode assertSwitches}. */
export interface AssertSwitchesOptions {
  /**
   * Milliseconds the code may hold the loop between two switches. Without it, the code only
   * has to switch at least once.
   */
  maxBlockingTime?: number;
  /**
   * With `maxBlockingTime`: count only the loop's own turns (its run queue, timers, I/O) as
   * switches, not greenlets handing over to each other through wake-ups (default `false`).
   */
  hubOnly?: boolean;
}

/**
 * `node:assert`'s AssertionError with `message`, loaded when a check fails: importing it up
 * front would add several milliseconds to every program's start.
 */
async function assertionError(message: string): Promise<Error> {
  const { AssertionError } = await import("node:assert");
  return new AssertionError({ message });
}

/**
 * Runs `fn()` and checks that it let other code run (gevent's `assert_switches`). Without
 * `maxBlockingTime`, it fails when nothing switched while `fn` ran: no blocking call, no
 * greenlet woken or started, no turn of the loop. With it, it fails when the loop was held
 * for longer than that between two switches (with `hubOnly`, between two turns of the loop
 * itself). When `fn` throws, that error goes through unchecked, as in gevent.
 *
 * A switch is anything the library sees: a blocking call begins, a greenlet starts, wakes or
 * dies, the loop drains its run queue, or (while waiting) a heartbeat timer fires; awaiting
 * something outside the library shows as the loop being idle, which is not holding it.
 *
 * @typeParam T What `fn` returns.
 * @param fn The code to check (sync or async).
 * @param options `maxBlockingTime` in milliseconds, `hubOnly`.
 * @returns What `fn` returned.
 * @throws {AssertionError} (as a rejection) `To any greenlet in 123.4 ms (max allowed 50 ms):
 *   the loop was held for 120.3 ms without a switch` (`To the hub ...` with `hubOnly`).
 * @throws {TypeError} If `fn` is not a function.
 * @throws {RangeError} If `maxBlockingTime` is negative or not finite.
 *
 * @example
 * ```ts
 * import { assertSwitches } from "@x/gevent/util";
 * import { sleep } from "@x/gevent";
 * import { AssertionError } from "node:assert";
 * import assert from "node:assert/strict";
 *
 * await assertSwitches(() => sleep(0)); // it switched
 * await assert.rejects(assertSwitches(() => 1 + 1), AssertionError); // it did not
 * await assert.rejects(
 *   assertSwitches(async () => {
 *     await sleep(0);
 *     const end = performance.now() + 60;
 *     while (performance.now() < end); // holds the loop
 *     await sleep(0);
 *   }, { maxBlockingTime: 20 }),
 *   /To any greenlet in .* ms \(max allowed 20 ms\): the loop was held for .* ms/,
 * );
 * ```
 */
export async function assertSwitches<T>(
  fn: () => T | PromiseLike<T>,
  options?: AssertSwitchesOptions,
): Promise<T> {
  if (options === undefined) options = {};
  _checkFn(fn, "fn");
  _checkBag(options);
  const max = options.maxBlockingTime;
  if (max !== undefined) _checkMs("maxBlockingTime", max);
  const hubOnly = options.hubOnly === true;
  const start = performance.now();
  let last = start;
  let longest = 0;
  let switches = 0;
  const seen = (kind: number): void => {
    switches++;
    if (max === undefined) return;
    if (hubOnly && kind !== _DRAIN_START && kind !== _DRAIN_END && kind !== _TICK) return;
    const now = performance.now();
    if (now - last > longest) longest = now - last;
    last = now;
  };
  const remove = _addTracer(seen);
  // While `fn` waits, the loop is idle, not held: a heartbeat says so.
  let beat: ReturnType<typeof setInterval> | undefined;
  if (max !== undefined) {
    beat = setInterval(() => seen(_TICK), Math.max(1, max / 4));
    _unrefTimer(beat);
  }
  let result: T;
  try {
    // A synchronous `fn` is checked without an await, which would let others run.
    const value = fn();
    result = value !== null && typeof (value as PromiseLike<T>)?.then === "function"
      ? await value
      : value as T;
  } finally {
    remove();
    if (beat !== undefined) clearInterval(beat);
  }
  const end = performance.now();
  const spent = end - start;
  if (max === undefined) {
    if (switches === 0) {
      throw await assertionError(`To any greenlet in ${spent.toFixed(1)} ms: nothing switched`);
    }
    return result;
  }
  longest = Math.max(longest, end - last);
  if (longest > max) {
    throw await assertionError(
      `${hubOnly ? "To the hub" : "To any greenlet"} in ${spent.toFixed(1)} ms ` +
        `(max allowed ${max} ms): the loop was held for ${longest.toFixed(1)} ms without a switch`,
    );
  }
  return result;
}
