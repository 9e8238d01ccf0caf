/**
 * Events and asynchronous results: one-shot notification between greenlets.
 *
 * Waiters are woken in the order they started waiting. `rawlink` callbacks run in the hub
 * (blocking calls are not allowed there) each time the object becomes ready, until unlinked.
 *
 * @module
 */

import { _badBag, _badTimeout, _badWaitOptions } from "./_check.ts";
import { _begin, _labelWaits, _refusal, type _Waiter } from "./hub.ts";
import { _Linkable, _linkCount, type _LinkMode, _notifyLinks } from "./_wait.ts";
import { Timeout } from "./timeout.ts";

/** Options of a wait with a deadline. */
export interface WaitTimeoutOptions {
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

/** Options of {@linkcode AsyncResult.get}. */
export interface ResultGetOptions {
  /** `false` does not wait: an unready result throws `Timeout` at once. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait at most; when it elapses, `Timeout` is thrown. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

// Settled promises are immutable: calls that need not wait share these.
const RESOLVED_TRUE: Promise<boolean> = Promise.resolve(true);
const RESOLVED_FALSE: Promise<boolean> = Promise.resolve(false);

function forget(w: _Waiter<boolean, _Notifier>): void {
  const n = w._owner;
  const ws = n._waiters;
  if (ws === w) n._waiters = undefined;
  else if (ws instanceof Set) ws.delete(w);
}

function timedOut(w: _Waiter<boolean, _Notifier>): void {
  forget(w);
  w._wake(false);
}
_labelWaits(forget, (w) => `${w._owner.constructor.name}.wait`);

/** @ignore The waiting shared by `Event` and `AsyncResult` (their links stay linked). */
export abstract class _Notifier extends _Linkable {
  /** @ignore */
  _waiters: _Waiter<boolean, _Notifier> | Set<_Waiter<boolean, _Notifier>> | undefined = undefined;

  /** @ignore A callback stays linked: it is called each time the object becomes ready. */
  get _linkMode(): _LinkMode {
    return "keep";
  }

  /** @ignore Wakes every waiter and schedules the rawlinks. */
  _notifyAll(): void {
    const ws = this._waiters;
    if (ws !== undefined) {
      this._waiters = undefined;
      if (ws instanceof Set) { for (const w of ws) w._wake(true); }
      else ws._wake(true);
    }
    if (this._links !== undefined) _notifyLinks(this);
  }

  /** @ignore Blocks until ready; resolves `false` only when the timeout elapsed. */
  _wait(timeout: number | undefined, signal?: AbortSignal): Promise<boolean> {
    if (timeout !== undefined) {
      const bad = _badTimeout(timeout);
      if (bad !== undefined) return Promise.reject(bad);
    }
    if (this.ready()) return _refusal() ?? RESOLVED_TRUE;
    if (timeout === 0) return _refusal() ?? RESOLVED_FALSE;
    const w = _begin<boolean, _Notifier>();
    if (w instanceof Promise) return w;
    w._owner = this;
    w._onCancel = forget;
    const ws = this._waiters;
    if (ws === undefined) this._waiters = w;
    else if (ws instanceof Set) ws.add(w);
    else this._waiters = new Set([ws, w]);
    w._arm(timeout, timedOut, signal);
    return w.promise;
  }

  /** The number of greenlets waiting and callbacks linked. */
  linkCount(): number {
    const ws = this._waiters;
    const n = ws === undefined ? 0 : ws instanceof Set ? ws.size : 1;
    return n + _linkCount(this);
  }
}

/**
 * A flag that greenlets can wait for: `set()` wakes every waiter, `clear()` resets it.
 *
 * @example Ping-pong between two greenlets
 * ```ts
 * import { Event } from "@x/gevent/event";
 * import { joinAll, spawn } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * const ping = new Event();
 * const log: string[] = [];
 * const waiter = spawn(async () => {
 *   assert.equal(await ping.wait(), true);
 *   log.push("woke");
 * });
 * const setter = spawn(() => {
 *   log.push("set");
 *   ping.set();
 * });
 * await joinAll([waiter, setter]);
 * assert.deepEqual(log, ["set", "woke"]);
 * ```
 */
export class Event extends _Notifier {
  #flag = false;

  /** Sets the flag and wakes every waiter, in the order they began waiting. */
  set(): void {
    this.#flag = true;
    this._notifyAll();
  }

  /** Resets the flag; later waits block again. */
  clear(): void {
    this.#flag = false;
  }

  /** Whether the flag is set. */
  isSet(): boolean {
    return this.#flag;
  }

  /** Same as {@linkcode Event.isSet}. */
  ready(): boolean {
    return this.#flag;
  }

  /**
   * Waits until the flag is set. Resolves at once if it already is. A blocking call.
   *
   * @param options `timeout` in milliseconds.
   * @returns `true` once set; `false` only when the timeout elapsed.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  wait(options?: WaitTimeoutOptions): Promise<boolean> {
    if (options === undefined) options = {};
    const bad = _badBag(options);
    if (bad !== undefined) return Promise.reject(bad);
    return this._wait(options.timeout, options.signal);
  }
}

const PENDING = 0;
const VALUE = 1;
const ERROR = 2;

/**
 * A one-time result: `set(value)` or `setException(error)` once, `get()` in any number of
 * greenlets. Also a link target for greenlets: `greenlet.link(result)` passes the outcome on.
 *
 * @typeParam T The type of the value.
 *
 * @example
 * ```ts
 * import { AsyncResult } from "@x/gevent/event";
 * import { spawn } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * const result = new AsyncResult<number>();
 * spawn(() => 6 * 7).link(result);
 * assert.equal(await result.get(), 42);
 * ```
 */
export class AsyncResult<T = unknown> extends _Notifier {
  #state = PENDING;
  #value: T | undefined = undefined;
  #exception: unknown = undefined;

  /**
   * Stores the value and wakes every waiter.
   *
   * @param value The value.
   */
  set(value?: T): void {
    this.#state = VALUE;
    this.#value = value;
    this.#exception = undefined;
    this._notifyAll();
  }

  /**
   * Stores an error (thrown by `get`) and wakes every waiter.
   *
   * @param error The error.
   */
  setException(error: unknown): void {
    this.#state = ERROR;
    this.#exception = error;
    this.#value = undefined;
    this._notifyAll();
  }

  /** Whether a value or an error has been set. */
  ready(): boolean {
    return this.#state !== PENDING;
  }

  /** Whether a value (not an error) has been set. */
  successful(): boolean {
    return this.#state === VALUE;
  }

  /** The value, if one was set. */
  get value(): T | undefined {
    return this.#value;
  }

  /** The error, if one was set. */
  get exception(): unknown {
    return this.#exception;
  }

  /**
   * Returns the value, or throws the error, without waiting.
   *
   * @returns The value.
   * @throws {Timeout} If nothing was set yet.
   */
  getNowait(): T {
    if (this.#state === VALUE) return this.#value as T;
    if (this.#state === ERROR) throw this.#exception;
    throw new Timeout(0);
  }

  /**
   * Waits for the result and returns the value, or throws the error. A blocking call.
   *
   * @param options `block: false` does not wait; `timeout` in milliseconds.
   * @returns The value.
   * @throws {Timeout} If not ready and `block` is false or the timeout elapsed.
   * @throws {RangeError} For a negative or non-finite timeout.
   */
  async get(options?: ResultGetOptions): Promise<T> {
    if (options === undefined) options = {};
    const bad = _badWaitOptions(options);
    if (bad !== undefined) throw bad;
    if (this.#state === PENDING) {
      if (options.block === false) throw new Timeout(0);
      if (!await this._wait(options.timeout, options.signal)) throw new Timeout(options.timeout);
    }
    return this.getNowait();
  }

  /**
   * Waits until ready and returns the value (`undefined` after an error or a timeout);
   * unlike `get`, never throws the stored error. A blocking call.
   *
   * @param options `timeout` in milliseconds.
   * @returns The value, or `undefined`.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  async wait(options?: WaitTimeoutOptions): Promise<T | undefined> {
    if (options === undefined) options = {};
    const bad = _badBag(options);
    if (bad !== undefined) throw bad;
    await this._wait(options.timeout, options.signal);
    return this.#value;
  }
}
