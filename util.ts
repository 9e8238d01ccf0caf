/**
 * Tools for running programs: signal handlers that run in greenlets.
 *
 * @module
 */

import { spawn } from "./greenlet.ts";
import { _render } from "./hub.ts";
import { _addSignalListener, _removeSignalListener } from "./_runtime.ts";

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
  if (typeof fn !== "function") {
    throw new TypeError(`'fn' must be a function: current value is ${_render(fn)}`);
  }
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
