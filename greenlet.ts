/**
 * Greenlets: lightweight, cooperatively scheduled tasks with `spawn`, `join`, `kill` and links.
 *
 * A greenlet runs a sync or async function. It starts only after the code that spawned it
 * yields, in spawn order. Whatever it throws stays inside it: the greenlet records the error,
 * the hub prints a report, and nothing escapes as an unhandled rejection. `kill()` throws an
 * exception into the greenlet at its pending blocking call (`sleep`, `Event.wait`, `join`,
 * ...), or at its next one, and aborts its `signal`.
 *
 * @module
 */

import { _checkMs, _clearTimer, _setTimer, type _Timer } from "./core.ts";
import {
  _badCount,
  _badOptions,
  _begin,
  _Flow,
  _current,
  _DELIVERED,
  _FOREIGN,
  _list,
  _notErrorDefaults,
  _runIn,
  type _Waiter,
  getHub,
  type Hub,
} from "./hub.ts";
import { _ABANDON_GRACE, Timeout } from "./timeout.ts";
import { _inspect } from "./_runtime.ts";

/**
 * The default exception of {@linkcode Greenlet.kill}. A greenlet that ends with it counts as
 * successful and has the GreenletExit as its `value`; the hub never prints it.
 *
 * @example
 * ```ts
 * import { GreenletExit, spawn } from "@x/gevent/greenlet";
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const g = spawn(() => sleep(1000));
 * await g.kill();
 * assert.ok(g.value instanceof GreenletExit);
 * assert.equal(g.successful(), true);
 * ```
 */
export class GreenletExit extends Error {
  /** Creates the exception. */
  constructor(message = "Greenlet was killed") {
    super(message);
    this.name = "GreenletExit";
  }
}
_notErrorDefaults.push(GreenletExit);

const NEW = 0;
const SCHEDULED = 1;
const RUNNING = 2;
const SUCCEEDED = 3;
const FAILED = 4;

/** Something that receives a finished greenlet's outcome, such as an `AsyncResult`. */
export interface ResultReceiver<T> {
  /** Receives the value of a successful greenlet. */
  set(value: T | GreenletExit | undefined): unknown;
  /** Receives the error of a failed greenlet. */
  setException(error: unknown): unknown;
}

/** A link callback (or result receiver) for {@linkcode Greenlet.link}. */
export type LinkTarget<T> = ((source: Greenlet<T>) => unknown) | ResultReceiver<T>;

// deno-lint-ignore no-explicit-any
type AnyFn = (...args: any[]) => unknown;
// deno-lint-ignore no-explicit-any
type AnyGreenlet = Greenlet<any>;
type RawLink = ((source: AnyGreenlet) => void) & { _target?: unknown };
interface Notify {
  _notify(source: AnyGreenlet): void;
}
type LinkEntry = RawLink | Notify;

let nextIdent = 0;
const NO_ARGS: unknown[] = [];

function renderArg(arg: unknown): string {
  const text = typeof arg === "string" ? JSON.stringify(arg) : _inspect(arg, 1);
  return text.length > 50 ? `${text.slice(0, 47)}...` : text;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value instanceof Promise ||
    (value !== null && (typeof value === "object" || typeof value === "function") &&
      typeof (value as PromiseLike<unknown>).then === "function");
}

// Reactions run in the async context captured when `.then` was called: the greenlet's own.
function settleValue(value: unknown): void {
  (_current() as Greenlet<unknown>)._die(value, undefined, false);
}

function settleError(error: unknown): void {
  (_current() as Greenlet<unknown>)._die(undefined, error, true);
}

let starting: Greenlet<unknown> | undefined;

function invoke(): void {
  const g = starting!;
  starting = undefined;
  let result: unknown;
  try {
    result = g._fn(...g._args);
  } catch (error) {
    g._die(undefined, error, true);
    return;
  }
  if (result instanceof Promise) {
    result.then(settleValue, settleError);
  } else if (isThenable(result)) {
    result.then((v) => g._die(v, undefined, false), (e) => g._die(undefined, e, true));
  } else {
    g._die(result, undefined, false);
  }
}

function runGreenlet(arg: unknown): void {
  const g = arg as Greenlet<unknown>;
  if (g._state !== SCHEDULED) return;
  if (g._startTimer !== undefined) g._startTimer = undefined;
  g._state = RUNNING;
  starting = g;
  _runIn(g, invoke);
}

function runLinks(arg: unknown): void {
  const g = arg as Greenlet<unknown>;
  const hub = getHub();
  hub.loop._inCallback++;
  try {
    for (;;) {
      const links = g._links;
      if (links === undefined) break;
      let link: LinkEntry;
      if (Array.isArray(links)) {
        link = links.shift()!;
        if (links.length === 0) g._links = undefined;
      } else {
        link = links;
        g._links = undefined;
      }
      try {
        if (typeof link === "function") link(g as AnyGreenlet);
        else link._notify(g as AnyGreenlet);
      } catch (error) {
        hub._report(link, error);
      }
    }
  } finally {
    g._notifying = false;
    hub.loop._inCallback--;
  }
}

function unlinkOnCancel(w: _Waiter<boolean>): void {
  (w._owner as Greenlet<unknown>)._removeLink(w as unknown as LinkEntry);
}

function joinTimedOut(w: _Waiter<boolean>): void {
  unlinkOnCancel(w);
  w._wake(false);
}

/** Options of {@linkcode Greenlet.join}. */
export interface JoinOptions {
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

/** Options of {@linkcode Greenlet.get}. */
export interface GetOptions {
  /** `false` does not wait: an unfinished greenlet throws `Timeout` at once. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait at most; when it elapses, `Timeout` is thrown. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

/** Options of {@linkcode Greenlet.kill} and {@linkcode killAll}. */
export interface KillOptions {
  /** The exception to throw in (an instance, or a class to instantiate); default `GreenletExit`. */
  exception?: unknown;
  /** Wait for the greenlet to die (default `true`). */
  block?: boolean;
  /** With `block`, milliseconds to wait at most. */
  timeout?: number;
}

/**
 * A greenlet: one function running as a cooperatively scheduled task.
 *
 * Scheduling contracts: `start()` queues the greenlet; it runs after every callback and
 * greenlet queued before it, and only once the starting code yields. A greenlet outlives the
 * greenlet that spawned it. When it dies, its links run in the order they were added.
 *
 * @typeParam T What the greenlet's function returns (after awaiting).
 *
 * @example Spawning and collecting values
 * ```ts
 * import { Greenlet } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * const g = new Greenlet((a: number, b: number) => a + b, 1, 2);
 * assert.equal(g.started, false);
 * g.start();
 * await g.join();
 * assert.equal(g.value, 3);
 * assert.equal(String(g), `<Greenlet "${g.name}": <anonymous>(1, 2)>`);
 * ```
 */
export class Greenlet<T = unknown> extends _Flow {
  /** @ignore */
  _fn: AnyFn;
  /** @ignore */
  _args: unknown[];
  /** @ignore */
  _state = NEW;
  /** @ignore */
  _result: unknown = undefined;
  /** @ignore */
  _links: LinkEntry | LinkEntry[] | undefined = undefined;
  /** @ignore */
  declare _notifying: boolean;
  // Rarely used state lives on the prototype until set (see below the class): a greenlet
  // blocked on an event is then mostly its function, arguments, state and result.
  /** @ignore */
  declare _startTimer: _Timer | undefined;
  /** @ignore */
  declare _ident: number | undefined;
  /** @ignore */
  declare _name: string | undefined;
  /** @ignore */
  declare _killCtl: AbortController | undefined;
  /** @ignore Declares a killed greenlet dead when what it awaits cannot be cut off. */
  declare _abandonTimer: ReturnType<typeof setTimeout> | undefined;
  /** The greenlet that created this one; `undefined` when created outside any greenlet. */
  readonly parent: Greenlet<unknown> | undefined;

  /**
   * Creates a greenlet that will call `fn(...args)`; it does not run until started.
   *
   * @param fn A sync or async function.
   * @param args Arguments for `fn`.
   * @throws {TypeError} If `fn` is not a function.
   */
  // deno-lint-ignore no-explicit-any
  constructor(fn: (...args: any[]) => T | PromiseLike<T>, ...args: unknown[]) {
    super();
    if (typeof fn !== "function") {
      throw new TypeError(
        `Cannot create greenlet as 'fn' must be a function: current value is ${renderArg(fn)}`,
      );
    }
    this._fn = fn;
    this._args = args.length === 0 ? NO_ARGS : args;
    const parent = _current();
    this.parent = parent instanceof Greenlet ? parent : undefined;
  }

  /**
   * Creates and starts a greenlet.
   *
   * @typeParam A The argument types.
   * @typeParam R What `fn` returns.
   * @param fn A sync or async function.
   * @param args Arguments for `fn`.
   * @returns The started greenlet.
   * @throws {TypeError} If `fn` is not a function.
   */
  static spawn<A extends unknown[], R>(
    fn: (...args: A) => R,
    ...args: A
  ): Greenlet<Awaited<R>> {
    return spawn(fn, ...args);
  }

  /** Queues the greenlet to run. Starting a started or dead greenlet does nothing. */
  start(): void {
    if (this._state !== NEW) return;
    this._state = SCHEDULED;
    const hub = getHub();
    hub._alive++;
    hub.loop._schedule(runGreenlet, this);
  }

  /** @ignore Starts the greenlet now, synchronously, even from inside the hub. */
  _startNow(): void {
    this._state = SCHEDULED;
    const hub = getHub();
    hub._alive++;
    const loop = hub.loop;
    const inCallback = loop._inCallback;
    loop._inCallback = 0; // its code is the greenlet's, not the hub's
    try {
      runGreenlet(this);
    } finally {
      loop._inCallback = inCallback;
    }
  }

  /**
   * Starts the greenlet after `ms` milliseconds.
   *
   * @param ms Milliseconds to wait before starting.
   * @throws {RangeError} If `ms` is negative or not finite.
   */
  startLater(ms: number): void {
    _checkMs("ms", ms);
    if (this._state !== NEW) return;
    this._state = SCHEDULED;
    getHub()._alive++;
    this._startTimer = _setTimer(runGreenlet, ms, this);
  }

  /** The return value once it succeeded (the `GreenletExit` if it was killed); else `undefined`. */
  get value(): T | GreenletExit | undefined {
    return this._state === SUCCEEDED ? this._result as T : undefined;
  }

  /** What the greenlet threw, if it failed; else `undefined`. */
  get exception(): unknown {
    return this._state === FAILED ? this._result : undefined;
  }

  /** Whether the greenlet has finished (returned, thrown, or been killed). */
  ready(): boolean {
    return this._state >= SUCCEEDED;
  }

  /** Whether the greenlet finished without an error (being killed with `GreenletExit` counts). */
  successful(): boolean {
    return this._state === SUCCEEDED;
  }

  /** Whether the greenlet has finished, or was killed before it ran. */
  get dead(): boolean {
    return this._state >= SUCCEEDED;
  }

  /** As in gevent: `true` once started and until it dies. */
  get started(): boolean {
    return this._state === SCHEDULED || this._state === RUNNING;
  }

  /** A small integer, unique among greenlets, assigned on first use. */
  get minimalIdent(): number {
    return this._ident ??= nextIdent++;
  }

  /** The greenlet's name, `Greenlet-N` (N = {@linkcode Greenlet.minimalIdent}) unless set. */
  get name(): string {
    return this._name ?? `Greenlet-${this.minimalIdent}`;
  }
  set name(value: string) {
    this._name = String(value);
  }

  /** Aborted, with the exception as reason, when the greenlet is killed. */
  get signal(): AbortSignal {
    return (this._killCtl ??= new AbortController()).signal;
  }

  /**
   * Waits until the greenlet has finished. Never throws the greenlet's own error; a kill or
   * Timeout aimed at the *waiting* greenlet does interrupt it. A blocking call.
   *
   * @param options `timeout` in milliseconds.
   * @returns `true` if the greenlet finished, `false` if the timeout elapsed first.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  join(options: JoinOptions = {}): Promise<boolean> {
    const bad = _badOptions(options);
    if (bad !== undefined) return Promise.reject(bad);
    const { timeout } = options;
    if (timeout !== undefined) {
      try {
        _checkMs("timeout", timeout);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    if (this._state >= SUCCEEDED) return Promise.resolve(true);
    if (timeout === 0) return Promise.resolve(false);
    const w = _begin<boolean>();
    if (w instanceof Promise) return w;
    w._owner = this;
    w._onCancel = unlinkOnCancel;
    this._addLink(w as unknown as LinkEntry);
    w._arm(timeout, joinTimedOut, options.signal);
    return w.promise;
  }

  /**
   * Returns the greenlet's value, waiting for it to finish; throws what the greenlet threw.
   *
   * @param options `block: false` does not wait; `timeout` in milliseconds.
   * @returns The value (the `GreenletExit` if it was killed).
   * @throws {Timeout} If it is unfinished and `block` is false or the timeout elapsed.
   * @throws {RangeError} For a negative or non-finite timeout.
   */
  async get(options: GetOptions = {}): Promise<T | GreenletExit | undefined> {
    const bad = _badOptions(options);
    if (bad !== undefined) throw bad;
    if (options.timeout !== undefined) _checkMs("timeout", options.timeout);
    if (this._state < SUCCEEDED) {
      if (options.block === false) throw new Timeout(0);
      const { timeout, signal } = options;
      if (!await this.join({ timeout, signal })) throw new Timeout(timeout);
    }
    if (this._state === FAILED) throw this._result;
    return this._result as T;
  }

  /**
   * Like {@linkcode Greenlet.get}, typed for the value alone: a greenlet killed with a
   * `GreenletExit` rejects with it instead of resolving to it.
   *
   * @param options `block: false` does not wait; `timeout` in milliseconds.
   * @returns The value the greenlet's function returned.
   * @throws {GreenletExit} If the greenlet was killed with it.
   * @throws {Timeout} If it is unfinished and `block` is false or the timeout elapsed.
   *
   * @example
   * ```ts
   * import { GreenletExit, spawn } from "./greenlet.ts";
   * import assert from "node:assert/strict";
   *
   * const n: number = await spawn(() => 6 * 7).result();
   * assert.equal(n, 42);
   * const killed = spawn(() => 1);
   * await killed.kill();
   * await assert.rejects(killed.result(), GreenletExit);
   * ```
   */
  async result(options: GetOptions = {}): Promise<T> {
    const value = await this.get(options);
    if (value instanceof GreenletExit) throw value;
    return value as T;
  }

  /**
   * Kills the greenlet. A greenlet that has not run yet never runs (its links still fire).
   * A running one gets `exception` thrown at its pending blocking call, or at its next one,
   * and its `signal` aborts. With `block` (the default), waits until it has died, so its
   * `finally` blocks have run. Never throws the greenlet's error.
   *
   * A greenlet in no blocking call awaits something outside the library: after
   * `monkey.patchAll()`, a driver's request it has on the wire is ended and the greenlet
   * dies as killed (not with the driver's error). If what it awaits cannot be reached (a
   * promise of its own, a request a driver sends on nobody's behalf), it is declared dead
   * 50 ms after the kill: its links run and `kill()` returns, while its suspended code, should
   * the promise ever settle, resumes unobserved and meets the kill at its next blocking call.
   *
   * @param options `exception`, `block`, `timeout`.
   * @returns A promise that resolves once the kill is delivered (and, with `block`, done).
   */
  async kill(options: KillOptions = {}): Promise<void> {
    const bad = _badOptions(options);
    if (bad !== undefined) throw bad;
    const { block = true, timeout } = options;
    if (timeout !== undefined) _checkMs("timeout", timeout);
    this._deliverKill(options.exception);
    if (block && !this.dead && _current() !== this) await this.join({ timeout });
  }

  /** @ignore Throws the kill exception in, without waiting. */
  _deliverKill(exception: unknown): void {
    if (this._state >= SUCCEEDED) return;
    const exc = exception === undefined
      ? new GreenletExit()
      : typeof exception === "function"
      ? new (exception as new () => unknown)()
      : exception;
    (this._killCtl ??= new AbortController()).abort(exc);
    if (this._state === RUNNING) {
      // In no blocking call, it awaits something outside the library. If that was cut off
      // (a driver's request), it dies once the driver fails the call (`_landed`), or is
      // declared dead after a second; if nothing could be cut off, after 50 ms.
      const armed = this._abandonTimer !== undefined;
      if (!armed) this._abandonTimer = LANDING;
      const how = this._throw(exc);
      if (how === _DELIVERED || this._abandonTimer === undefined) {
        this._landed();
      } else if (!armed) {
        const grace = how === _FOREIGN ? CUT_GRACE : _ABANDON_GRACE;
        this._abandonTimer = setTimeout(abandonKilled, grace, this, exc);
      }
      return;
    }
    if (this._startTimer !== undefined) {
      _clearTimer(this._startTimer);
      this._startTimer = undefined;
    }
    this._die(undefined, exc, true);
  }

  /**
   * Calls `callback(this)` in a new greenlet once this one has died; or, for an object with
   * `set`/`setException` (an `AsyncResult`), passes it the value or the error.
   *
   * @param callback The callback or receiver.
   */
  link(callback: LinkTarget<T>): void {
    this.#linkWhen(callback, undefined);
  }

  /**
   * Like {@linkcode Greenlet.link}, but only if the greenlet succeeded.
   *
   * @param callback The callback or receiver.
   */
  linkValue(callback: LinkTarget<T>): void {
    this.#linkWhen(callback, true);
  }

  /**
   * Like {@linkcode Greenlet.link}, but only if the greenlet failed.
   *
   * @param callback The callback or receiver.
   */
  linkException(callback: LinkTarget<T>): void {
    this.#linkWhen(callback, false);
  }

  #linkWhen(callback: LinkTarget<T>, when: boolean | undefined): void {
    let wrapper: RawLink;
    if (typeof callback === "function") {
      // As in gevent, each callback's greenlet starts at once, before the next link is looked
      // at: a callback that unlinks a later one prevents it.
      wrapper = (g) => {
        if (when === undefined || g.successful() === when) {
          new Greenlet(callback as (g: Greenlet<T>) => unknown, g)._startNow();
        }
      };
    } else if (
      callback !== null && typeof callback === "object" && typeof callback.set === "function" &&
      typeof callback.setException === "function"
    ) {
      wrapper = (g) => {
        if (when !== undefined && g.successful() !== when) return;
        if (g.successful()) callback.set(g.value as T);
        else callback.setException(g.exception);
      };
    } else {
      throw new TypeError(
        `'callback' must be a function or have set() and setException(): current value is ${
          renderArg(callback)
        }`,
      );
    }
    wrapper._target = callback;
    this._addLink(wrapper);
  }

  /**
   * Calls `callback(this)` in the hub once the greenlet has died (at once, on the next turn
   * of the loop, if it already has). Blocking calls are not allowed in the callback; what it
   * throws is reported and the other links still run.
   *
   * @param callback The callback.
   * @throws {TypeError} If `callback` is not a function.
   */
  rawlink(callback: (source: this) => void): void {
    if (typeof callback !== "function") {
      throw new TypeError(`'callback' must be a function: current value is ${renderArg(callback)}`);
    }
    this._addLink(callback as unknown as RawLink);
  }

  /**
   * Removes a callback added with `rawlink`, `link`, `linkValue` or `linkException`.
   *
   * @param callback The callback to remove.
   */
  unlink(callback: unknown): void {
    this._removeLink(callback as LinkEntry);
  }

  /** Removes every link. */
  unlinkAll(): void {
    this._links = undefined;
  }

  /** Whether any link is registered and has not run yet. */
  hasLinks(): boolean {
    return this._links !== undefined;
  }

  /** Kills the greenlet and waits for it, so `await using g = spawn(...)` bounds its life. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }

  /** Renders as `<Greenlet "Greenlet-3": divide(1, 0)>`. */
  override toString(): string {
    const fn = this._fn.name || "<anonymous>";
    return `<Greenlet "${this.name}": ${fn}(${this._args.map(renderArg).join(", ")})>`;
  }

  /** @ignore */
  _addLink(entry: LinkEntry): void {
    const links = this._links;
    if (links === undefined) this._links = entry;
    else if (Array.isArray(links)) links.push(entry);
    else this._links = [links, entry];
    if (this._state >= SUCCEEDED) this.#notifyLinks();
  }

  /** @ignore */
  _removeLink(entry: LinkEntry): void {
    const links = this._links;
    if (links === undefined) return;
    const match = (l: LinkEntry) => l === entry || (l as RawLink)._target === entry;
    if (Array.isArray(links)) {
      const kept = links.filter((l) => !match(l));
      this._links = kept.length === 0 ? undefined : kept.length === 1 ? kept[0] : kept;
    } else if (match(links)) {
      this._links = undefined;
    }
  }

  /** @ignore Records the outcome and wakes joiners and links. */
  _die(value: unknown, error: unknown, failed: boolean): void {
    const prev = this._state;
    if (prev >= SUCCEEDED) return;
    if (this._abandonTimer !== undefined) {
      clearTimeout(this._abandonTimer);
      this._abandonTimer = undefined;
    }
    if (this._killCtl !== undefined || this._interrupted !== undefined) {
      [error, failed] = this.#outcome(value, error, failed);
    }
    let hub: Hub | undefined;
    if (failed && !(error instanceof GreenletExit)) {
      this._state = FAILED;
      this._result = error;
      hub = getHub();
      hub._report(this, error);
    } else {
      this._state = SUCCEEDED;
      this._result = failed ? error : value;
    }
    if (prev !== NEW) (hub ?? getHub())._greenletDied();
    if (this._links !== undefined) this.#notifyLinks();
  }

  /** @ignore The kill reached it: it is not given up on (see `_deliverKill`). */
  override _landed(): void {
    const timer = this._abandonTimer;
    if (timer === undefined) return;
    if (timer !== LANDING) clearTimeout(timer);
    this._abandonTimer = undefined;
  }

  /**
   * A kill is never lost: a greenlet that ends while its kill is still pending (it awaited
   * something outside the library and never reached a blocking call) ends as killed, and one
   * that fails with the error its cut-off I/O produced ends with the exception that cut it off.
   */
  #outcome(value: unknown, error: unknown, failed: boolean): [unknown, boolean] {
    const kill = this._killCtl?.signal.aborted ? this._killCtl.signal.reason : undefined;
    if (kill !== undefined && this._takeIf(kill)) return [kill, true];
    const cut = this._interrupted;
    if (failed && cut !== undefined && error !== cut) return [cut, true];
    return [failed ? error : value, failed];
  }

  #notifyLinks(): void {
    if (this._notifying) return;
    // Internal waiters (join, joinAll) are woken at once; user callbacks run in the hub.
    const links = this._links!;
    if (!Array.isArray(links)) {
      if (typeof links !== "function") {
        this._links = undefined;
        links._notify(this as AnyGreenlet);
        return;
      }
    } else {
      const user: LinkEntry[] = [];
      for (const l of links) {
        if (typeof l === "function") user.push(l);
        else l._notify(this as AnyGreenlet);
      }
      if (user.length === 0) {
        this._links = undefined;
        return;
      }
      this._links = user.length === 1 ? user[0] : user;
    }
    this._notifying = true;
    getHub().loop._schedule(runLinks, this);
  }
}

Greenlet.prototype._notifying = false;
Greenlet.prototype._startTimer = undefined;
Greenlet.prototype._ident = undefined;
Greenlet.prototype._name = undefined;
Greenlet.prototype._killCtl = undefined;
Greenlet.prototype._abandonTimer = undefined;

/** Marks a kill being delivered, before its grace timer is known (see `_deliverKill`). */
const LANDING = 0 as unknown as ReturnType<typeof setTimeout>;

/** Milliseconds a killed greenlet whose driver request was cut off is given to die of it. */
const CUT_GRACE = 1000;

function abandonKilled(g: Greenlet<unknown>, exc: unknown): void {
  g._abandonTimer = undefined;
  g._die(undefined, exc, true);
  // Its code stays suspended on a promise the kill could not reach; if that ever settles, the
  // code resumes as a dead greenlet's, and the kill is thrown at its next blocking call.
  g._pending = exc;
}

/**
 * Creates a greenlet for `fn(...args)` and starts it. It runs once the caller yields.
 *
 * @typeParam A The argument types.
 * @typeParam R What `fn` returns.
 * @param fn A sync or async function.
 * @param args Arguments for `fn`.
 * @returns The started greenlet.
 * @throws {TypeError} If `fn` is not a function.
 *
 * @example Errors stay inside the greenlet
 * ```ts
 * import { spawn } from "@x/gevent/greenlet";
 * import { getHub } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * getHub().exceptionStream = null; // keep the doc test quiet
 * const g = spawn(() => 1n / 0n);
 * await g.join();
 * assert.equal(g.successful(), false);
 * assert.ok(g.exception instanceof RangeError);
 * ```
 */
export function spawn<A extends unknown[], R>(
  fn: (...args: A) => R,
  ...args: A
): Greenlet<Awaited<R>> {
  const g = new Greenlet<Awaited<R>>(fn as AnyFn as () => Awaited<R>, ...args);
  g.start();
  return g;
}

/**
 * Creates a greenlet for `fn(...args)` that starts after `ms` milliseconds.
 *
 * @typeParam A The argument types.
 * @typeParam R What `fn` returns.
 * @param ms Milliseconds before it starts.
 * @param fn A sync or async function.
 * @param args Arguments for `fn`.
 * @returns The greenlet.
 * @throws {TypeError} If `fn` is not a function.
 * @throws {RangeError} If `ms` is negative or not finite.
 *
 * @example
 * ```ts
 * import { spawnLater } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * const t0 = performance.now();
 * const g = spawnLater(20, () => performance.now() - t0);
 * await g.join();
 * assert.ok(g.value! as number >= 15);
 * ```
 */
export function spawnLater<A extends unknown[], R>(
  ms: number,
  fn: (...args: A) => R,
  ...args: A
): Greenlet<Awaited<R>> {
  _checkMs("ms", ms);
  const g = new Greenlet<Awaited<R>>(fn as AnyFn as () => Awaited<R>, ...args);
  g.startLater(ms);
  return g;
}

/**
 * The greenlet running the caller, or `undefined` outside any greenlet.
 *
 * @returns The current greenlet.
 *
 * @example
 * ```ts
 * import { getCurrent, spawn } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * assert.equal(getCurrent(), undefined);
 * const g = spawn(() => getCurrent());
 * await g.join();
 * assert.equal(g.value, g);
 * ```
 */
export function getCurrent(): Greenlet<unknown> | undefined {
  const ctx = _current();
  return ctx instanceof Greenlet ? ctx : undefined;
}

/**
 * An `AbortSignal` for the current greenlet (or top-level flow): aborted when the greenlet is
 * killed, or when a `Timeout` it started fires, with that exception as the reason. Pass it to
 * `fetch` and other APIs that are not blocking calls of this library so they are cut short
 * too. After a Timeout fired and was handled, the next call returns a fresh signal.
 *
 * @returns The signal.
 *
 * @example
 * ```ts
 * import { currentSignal, spawn } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * const g = spawn(async () => {
 *   const signal = currentSignal();
 *   await new Promise((resolve) => signal.addEventListener("abort", resolve));
 *   return signal.reason;
 * });
 * await Promise.resolve();
 * await g.kill();
 * assert.equal(g.value, g.signal.reason);
 * ```
 */
export function currentSignal(): AbortSignal {
  const ctx = _current();
  if (ctx instanceof Greenlet && ctx.signal.aborted) return ctx.signal;
  return (ctx._scope ??= new AbortController()).signal;
}

/** Options of {@linkcode joinAll}. */
export interface JoinAllOptions {
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
  /** Throw the first error of a failed greenlet as soon as it fails (default `false`). */
  raiseError?: boolean;
  /** Return once this many greenlets have finished (default: all). */
  count?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

class Collector {
  done: Greenlet<unknown>[] = [];
  left: number;
  raise: boolean;
  w: _Waiter<void> | undefined = undefined;
  constructor(left: number, raise: boolean) {
    this.left = left;
    this.raise = raise;
  }
  _notify(g: Greenlet<unknown>): void {
    this.done.push(g);
    if (this.raise && g._state === FAILED) this.w?._fail(g._result);
    else if (--this.left === 0) this.w?._wake(undefined);
  }
}

function collectorTimedOut(w: _Waiter<void>): void {
  w._wake(undefined);
}

/**
 * Waits for greenlets to finish. Resolves to the finished greenlets, in completion order
 * (those already dead first, in the given order), once all of them (or `count`) finished or
 * the timeout elapsed. A blocking call.
 *
 * @typeParam G The greenlet type.
 * @param greenlets The greenlets to wait for.
 * @param options `timeout`, `raiseError`, `count`.
 * @returns The greenlets that finished.
 * @throws {RangeError} (as a rejection) For a bad `timeout` or `count`.
 *
 * @example gevent's introduction: `joinall(jobs, timeout=2)`
 * ```ts
 * import { joinAll, spawn } from "@x/gevent/greenlet";
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const jobs = [1, 2, 3].map((n) => spawn(async () => { await sleep(n); return n * 10; }));
 * const done = await joinAll(jobs, { timeout: 2000 });
 * assert.equal(done.length, 3);
 * assert.deepEqual(jobs.map((job) => job.value), [10, 20, 30]);
 * ```
 */
export async function joinAll<G extends Greenlet<unknown>>(
  greenlets: Iterable<G>,
  options: JoinAllOptions = {},
): Promise<G[]> {
  const bad = _badOptions(options);
  if (bad !== undefined) throw bad;
  const { timeout, raiseError = false } = options;
  if (timeout !== undefined) _checkMs("timeout", timeout);
  const list = _list("greenlets", greenlets);
  const badCount = _badCount(options.count);
  if (badCount !== undefined) throw badCount;
  const count = options.count ?? list.length;
  const target = Math.min(count, list.length);
  const done: G[] = [];
  let pending = 0;
  for (const g of list) {
    if (!(g instanceof Greenlet)) {
      throw new TypeError(`'greenlets' must hold Greenlets: found ${renderArg(g)}`);
    }
    if (g._state >= SUCCEEDED) {
      if (raiseError && g._state === FAILED) throw g._result;
      done.push(g);
    } else pending++;
  }
  if (done.length >= target || timeout === 0) return done.slice(0, target);
  const c = new Collector(target - done.length, raiseError);
  c.done = done as Greenlet<unknown>[];
  const w = _begin<void>();
  if (w instanceof Promise) await w;
  c.w = w as _Waiter<void>;
  for (const g of list) if (g._state < SUCCEEDED) g._addLink(c as unknown as LinkEntry);
  c.w._arm(timeout, collectorTimedOut, options.signal);
  try {
    await c.w.promise;
  } finally {
    if (c.done.length - (list.length - pending) < pending) {
      for (const g of list) if (g._state < SUCCEEDED) g._removeLink(c as unknown as LinkEntry);
    }
  }
  return c.done.slice(0, target) as G[];
}

/**
 * Kills every greenlet (see {@linkcode Greenlet.kill}), then with `block` (the default) waits
 * for all of them to die.
 *
 * @param greenlets The greenlets to kill.
 * @param options `exception`, `block`, `timeout`.
 * @throws {Timeout} (as a rejection) If `timeout` elapsed while some greenlet ignored the kill;
 *   its message names those greenlets and what each was waiting on.
 *
 * @example
 * ```ts
 * import { killAll, spawn } from "@x/gevent/greenlet";
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const gs = [spawn(() => sleep(1000)), spawn(() => sleep(1000))];
 * await killAll(gs);
 * assert.ok(gs.every((g) => g.dead));
 * ```
 */
export async function killAll(
  greenlets: Iterable<Greenlet<unknown>>,
  options: KillOptions = {},
): Promise<void> {
  const bad = _badOptions(options);
  if (bad !== undefined) throw bad;
  const { block = true, timeout } = options;
  if (timeout !== undefined) _checkMs("timeout", timeout);
  const list = _list("greenlets", greenlets);
  for (const g of list) {
    if (!(g instanceof Greenlet)) {
      throw new TypeError(`'greenlets' must hold Greenlets: found ${renderArg(g)}`);
    }
  }
  for (const g of list) g._deliverKill(options.exception);
  if (!block) return;
  const me = _current();
  const others = list.filter((g) => g !== me);
  const done = await joinAll(others, { timeout });
  if (done.length < others.length) {
    const alive = others.filter((g) => !g.dead);
    const error = new Timeout(timeout);
    error.message =
      `${alive.length} of ${others.length} greenlets did not die within ${timeout} ms ` +
      `of the kill: ${alive.map(describeWait).join("; ")}`;
    throw error;
  }
}

function describeWait(g: Greenlet<unknown>): string {
  const where = g._state !== RUNNING
    ? "not started"
    : g._wait !== undefined
    ? "blocked in a blocking call"
    : "awaiting something outside the library";
  return `${g} (${where})`;
}

/**
 * Whether `error` is a kill or a timeout rather than a failure: a `GreenletExit`, a `Timeout`,
 * or the exception the current greenlet was killed with. JavaScript has no `BaseException`, so a
 * catch-all `catch (err)` catches these too; rethrow them so kills and timeouts keep working.
 *
 * @param error What was caught.
 * @returns `true` if it should be rethrown.
 *
 * @example Rethrowing kills from a catch-all
 * ```ts
 * import { isKill, spawn } from "@x/gevent/greenlet";
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const errors: unknown[] = [];
 * const g = spawn(async () => {
 *   for (;;) {
 *     try {
 *       await sleep(1000);
 *     } catch (err) {
 *       if (isKill(err)) throw err;
 *       errors.push(err); // log and go on
 *     }
 *   }
 * });
 * await sleep(0);
 * await g.kill();
 * assert.ok(g.dead);
 * assert.deepEqual(errors, []);
 * ```
 */
export function isKill(error: unknown): boolean {
  if (error instanceof GreenletExit || error instanceof Timeout) return true;
  const ctx = _current();
  const signal = ctx instanceof Greenlet ? ctx._killCtl?.signal : undefined;
  return signal !== undefined && signal.aborted && signal.reason === error;
}
