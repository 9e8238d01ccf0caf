/**
 * Timeouts that interrupt whatever a greenlet is blocked on.
 *
 * A started {@linkcode Timeout} belongs to the greenlet (or top-level flow) that started it.
 * When it fires, it is thrown into that flow at its pending blocking call, or at the next one
 * if none is pending; `currentSignal()` of that flow aborts at the same moment, so code that
 * awaits a plain promise with that signal is cut short too.
 *
 * Caveat, as in gevent: a timeout can only interrupt a blocking call of this library (or code
 * that honours `currentSignal()`); a busy loop that never awaits cannot be interrupted.
 *
 * @module
 */

import { _checkMs, _render } from "./_check.ts";
import { _clearTimer, _setTimer, type _Timer } from "./core.ts";
import {
  _current,
  _DELIVERED,
  type _Delivery,
  type _Flow,
  _root,
  _runInSubflow,
  getHub,
} from "./hub.ts";

function fireTimeout(t: Timeout): void {
  t._fire();
}

function fireZero(arg: unknown): void {
  const [t, token] = arg as [Timeout, number];
  if (t._token === token) t._fire();
}

/**
 * A timeout that raises in the greenlet that started it. It is an `Error` itself: when no
 * custom exception was given, the `Timeout` object is what gets thrown, so `err === timeout`
 * tells *which* of several nested timeouts fired.
 *
 * `ms` of `undefined` never fires; `0` fires at the next switch (the next blocking call that
 * actually waits). Use `using` so the timeout is cancelled when the scope ends.
 *
 * @example Limiting a block of code
 * ```ts
 * import { Timeout } from "@x/gevent/timeout";
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * let caught: unknown;
 * {
 *   using timeout = Timeout.start(10);
 *   try {
 *     await sleep(1000);
 *   } catch (err) {
 *     caught = err;
 *     assert.equal(err, timeout);
 *   }
 * }
 * assert.ok(caught instanceof Timeout);
 * ```
 */
export class Timeout extends Error {
  /** The duration in milliseconds; `undefined` never fires. */
  readonly ms: number | undefined;
  /** What is thrown when the timeout fires; `undefined` means the Timeout itself. */
  readonly exception: unknown;
  #ctx: _Flow | undefined = undefined;
  #handle: _Timer | undefined = undefined;
  #thrown: unknown = undefined;
  /** @ignore Identifies the current start, so a stale zero-delay firing is ignored. */
  _token = 0;
  /** @ignore Called when it fires, with how the exception was delivered. */
  _onFire: ((how: _Delivery) => void) | undefined = undefined;

  /**
   * Creates a timeout (not started).
   *
   * @param ms Milliseconds; `undefined` never fires, `0` fires at the next switch.
   * @param exception What to throw instead of the Timeout itself: thrown as given (an
   *   error class is instantiated with no arguments).
   * @throws {RangeError} If `ms` is negative or not finite.
   * @throws {TypeError} If `exception` is neither an object nor a class (`false` is not
   *   gevent's silent timeout here: use `withTimeout`'s `timeoutValue`).
   */
  constructor(ms?: number, exception?: unknown) {
    if (ms !== undefined) _checkMs("ms", ms);
    if (
      exception !== undefined && typeof exception !== "function" &&
      (exception === null || typeof exception !== "object")
    ) {
      throw new TypeError(
        `'exception' must be an error or an error class: current value is ${
          _render(exception)
        } (for a timeout that gives a value instead of throwing, use withTimeout(ms, fn, { timeoutValue }))`,
      );
    }
    super(ms === undefined ? "Timeout that never fires" : `Timed out after ${ms} ms`);
    this.name = "Timeout";
    this.ms = ms;
    this.exception = exception;
  }

  /**
   * Creates and starts a timeout in the current greenlet.
   *
   * @param ms Milliseconds; `undefined` never fires, `0` fires at the next switch.
   * @param exception What to throw instead of the Timeout itself.
   * @returns The started timeout.
   * @throws {RangeError} If `ms` is negative or not finite.
   */
  static start(ms?: number, exception?: unknown): Timeout {
    return new Timeout(ms, exception).start();
  }

  /**
   * Arms the timeout for the calling greenlet (or top-level flow). A timeout with `ms`
   * `undefined` does nothing.
   *
   * @returns This timeout.
   * @throws {Error} If it is already pending.
   */
  start(): this {
    if (this.pending) {
      throw new Error(`${this.message}: this Timeout is already started; cancel it first`);
    }
    if (this.ms === undefined) return this;
    this.#ctx = _current();
    this._token++;
    if (this.ms === 0) {
      this.#handle = 0 as unknown as _Timer;
      getHub().loop._schedule(fireZero, [this, this._token]);
    } else {
      this.#handle = _setTimer(fireTimeout, this.ms, this);
    }
    return this;
  }

  /** Whether the timeout is started and has not fired or been cancelled. */
  get pending(): boolean {
    return this.#handle !== undefined;
  }

  /**
   * Stops the timeout. If it fired while its greenlet was not blocked and the exception has
   * not been thrown yet, it is withdrawn. Cancelling twice is harmless.
   */
  cancel(): void {
    const handle = this.#handle;
    if (handle !== undefined) {
      this.#handle = undefined;
      this._token++;
      if (this.ms !== 0) _clearTimer(handle);
    }
    if (this.#thrown !== undefined) {
      this.#ctx?._withdraw(this.#thrown);
      this.#thrown = undefined;
    }
    this.#ctx = undefined;
  }

  /** Same as {@linkcode Timeout.cancel}. */
  close(): void {
    this.cancel();
  }

  /** Cancels the timeout when a `using` scope ends. */
  [Symbol.dispose](): void {
    this.cancel();
  }

  /** @ignore Called when the timer fires. */
  _fire(): void {
    if (this.#handle === undefined) return;
    this.#handle = undefined;
    const exc = this.exception;
    const thrown = exc === undefined
      ? this
      : typeof exc === "function"
      ? new (exc as new () => unknown)()
      : exc;
    this.#thrown = thrown;
    const how = this.#ctx?._throw(thrown) ?? _DELIVERED;
    this._onFire?.(how);
  }

  /** @ignore Whether it fired and its flow still owes it (pending, or delivered by cut-off I/O). */
  _owed(): boolean {
    return this.#thrown !== undefined && this.#ctx !== undefined && this.#ctx._owes(this.#thrown);
  }
}

/**
 * @ignore Milliseconds a flow that awaits something outside the library is given, after an
 * exception was thrown into it, before it is given up on (`withTimeout` settles; a killed
 * greenlet is declared dead).
 */
export const _ABANDON_GRACE = 50;

const ABANDONED: unique symbol = Symbol("abandoned");

function abandon(settle: (ok: boolean, result: unknown) => void): void {
  settle(false, ABANDONED);
}

/** Options for {@linkcode withTimeout}. */
export interface WithTimeoutOptions<D> {
  /** Returned instead of throwing when this call's own timeout fires. */
  timeoutValue?: D;
}

/**
 * Runs `fn` under a timeout of `ms` milliseconds. When the timeout fires, its pending
 * blocking call is interrupted; the result is then `timeoutValue` if one was given (even
 * `undefined`), otherwise the rejection is the {@linkcode Timeout}. Only this call's own
 * timeout is turned into `timeoutValue`: an outer timeout or a kill passes through.
 * Works inside greenlets and at top level.
 *
 * A deadline never returns a late value. When `fn` awaits I/O that the timeout cut off (a
 * database driver's request, after `monkey.patchAll()`), the error the driver then gives is
 * replaced by the timeout's outcome. When `fn` awaits something nothing can interrupt (a
 * promise of its own, an unpatched request), `withTimeout` settles 50 ms after the deadline
 * all the same and `fn` is left to finish unobserved (its later result is dropped).
 *
 * @typeParam T What `fn` returns.
 * @typeParam D The type of `timeoutValue`.
 * @param ms Milliseconds; `undefined` never times out.
 * @param fn The function to run.
 * @param options `timeoutValue`.
 * @returns What `fn` returns, or `timeoutValue`.
 * @throws {RangeError} (as a rejection) If `ms` is negative or not finite.
 *
 * @example
 * ```ts
 * import { withTimeout } from "@x/gevent/timeout";
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const value = await withTimeout(10, () => sleep(1000).then(() => "slow"), {
 *   timeoutValue: "too slow",
 * });
 * assert.equal(value, "too slow");
 * ```
 */
export function withTimeout<T, D = never>(
  ms: number | undefined,
  fn: () => T | PromiseLike<T>,
  options: WithTimeoutOptions<D> = {},
): Promise<T | D> {
  try {
    if (ms !== undefined) _checkMs("ms", ms);
    if (typeof fn !== "function") {
      throw new TypeError(`'fn' must be a function: current value is ${fn}`);
    }
  } catch (error) {
    return Promise.reject(error);
  }
  const run = (): Promise<T | D> =>
    new Promise<T | D>((resolve, reject) => {
      const timeout = new Timeout(ms);
      let settled = false;
      let grace: ReturnType<typeof setTimeout> | undefined;
      const timedOut = (): void => {
        if ("timeoutValue" in options) resolve(options.timeoutValue as D);
        else reject(timeout);
      };
      const settle = (ok: boolean, result: unknown): void => {
        if (settled) return;
        settled = true;
        if (grace !== undefined) clearTimeout(grace);
        // A value or an error that comes after the timeout fired and was never seen by `fn`
        // (it cut off a driver's I/O, whose own error followed) is late: the timeout wins.
        const owed = timeout._owed();
        timeout.cancel();
        if (owed || result === ABANDONED || (!ok && result === timeout)) timedOut();
        else if (ok) resolve(result as T);
        else reject(result);
      };
      timeout._onFire = (how) => {
        if (how === _DELIVERED) return;
        // `fn` awaits something outside the library: give what was cut off a moment to fail,
        // then settle at the deadline all the same and leave `fn` to finish unobserved.
        grace = setTimeout(abandon, _ABANDON_GRACE, settle);
      };
      timeout.start();
      let result: T | PromiseLike<T>;
      try {
        result = fn();
      } catch (error) {
        settle(false, error);
        return;
      }
      Promise.resolve(result).then((v) => settle(true, v), (e) => settle(false, e));
    });
  // Outside any greenlet, give the call a flow of its own so concurrent top-level calls do
  // not interrupt each other.
  return _current() === _root ? _runInSubflow(run) : run();
}
