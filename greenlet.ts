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

import { _badBag, _badCount, _checkMs, _list } from "./_check.ts";
import { _clearTimer, _setTimer, type _Timer } from "./core.ts";
import {
  _begin,
  _current,
  _delist,
  _DELIVERED,
  _describeWait,
  _enlist,
  _Flow,
  _FOREIGN,
  _labelWaits,
  _liveFlows,
  _notErrorDefaults,
  _runIn,
  type _Waiter,
  getHub,
  type Hub,
} from "./hub.ts";
import { _ABANDON_GRACE, Timeout } from "./timeout.ts";
import {
  _addLink,
  type _Link,
  type _LinkFn,
  type _LinkMode,
  _notifyLinks,
  _removeLink,
} from "./_wait.ts";
import { _inspect } from "./_runtime.ts";
import { _mark, _marking, _START, _YIELD } from "./_monitor_state.ts";
import { _greenletFailed, _killTimedOut } from "./events.ts";

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

let nextIdent = 0;

/** @ignore How a greenlet's function ended: it returned its result, or threw it. */
export type _Ending = "returned" | "threw";
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
  (_current() as Greenlet<unknown>)._die(value, "returned");
}

function settleError(error: unknown): void {
  (_current() as Greenlet<unknown>)._die(error, "threw");
}

let starting: Greenlet<unknown> | undefined;

function invoke(): void {
  const g = starting!;
  starting = undefined;
  if (_marking) _mark(_START, g);
  let result: unknown;
  try {
    result = g._fn(...g._args);
  } catch (error) {
    g._die(error, "threw");
    return;
  }
  if (result instanceof Promise) {
    result.then(settleValue, settleError);
  } else if (isThenable(result)) {
    result.then((v) => g._die(v, "returned"), (e) => g._die(e, "threw"));
  } else {
    g._die(result, "returned");
  }
}

function runGreenlet(arg: unknown): void {
  const g = arg as Greenlet<unknown>;
  if (g._state !== SCHEDULED) return;
  if (g._startTimer !== undefined) g._startTimer = undefined;
  g._state = RUNNING;
  starting = g;
  const trace = g._trace;
  if (trace !== undefined) {
    g._trace = undefined;
    const otel = otelContext();
    if (otel !== undefined && otel.active() !== trace) {
      otel.with(trace, enterGreenlet, undefined, g);
      return;
    }
  }
  _runIn(g, invoke);
}

// Tracing: Deno's built-in OpenTelemetry (`OTEL_DENO=true`) and `@opentelemetry/api` register
// their context manager under this global. A greenlet keeps the context that was active where
// it was created and starts inside it: the run queue drains outside every async context (see
// `core.ts`), which would otherwise drop the span of the code that spawned it.
const OTEL_API = Symbol.for("opentelemetry.js.api.1");

interface OtelContextManager {
  active(): unknown;
  with(
    ctx: unknown,
    fn: (g: Greenlet<unknown>) => void,
    self: undefined,
    g: Greenlet<unknown>,
  ): void;
}

function otelContext(): OtelContextManager | undefined {
  return (globalThis as { [OTEL_API]?: { context?: OtelContextManager } })[OTEL_API]?.context;
}

function enterGreenlet(g: Greenlet<unknown>): void {
  _runIn(g, invoke);
}

function unlinkOnCancel(w: _Waiter<boolean, Greenlet<unknown>>): void {
  _removeLink(w._owner, w);
}

_labelWaits(unlinkOnCancel, (w) => `join ${w._owner}`);

function joinTimedOut(w: _Waiter<boolean, Greenlet<unknown>>): void {
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
  /**
   * @ignore What it returned or threw, once dead; while it is live, the loop's clock when it
   * was started, in whole ms modulo 2^32 (for run-info's age: no field of its own).
   */
  _result: unknown = undefined;
  /** @ignore */
  _links: _Link | _Link[] | undefined = undefined;
  /** @ignore Neighbours in the hub's list of live greenlets (started, not dead). */
  override _prevLive: _Flow | undefined = undefined;
  /** @ignore */
  override _nextLive: _Flow | undefined = undefined;
  /** @ignore */
  declare _notifying: boolean;
  /** @ignore Links run once: a greenlet dies once. */
  declare readonly _linkMode: _LinkMode;
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
  /** @ignore The OpenTelemetry context active where it was created (only while tracing). */
  declare _trace: unknown;
  /** @ignore Where it was created, while the hub's `trackSpawnSites` is on. */
  declare _site: Error | undefined;
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
    if (_spawnSites.tracked) this._site = new Error("spawned");
    const otel = otelContext();
    if (otel !== undefined) this._trace = otel.active();
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
    enlist(this, hub);
    hub.loop._schedule(runGreenlet, this);
  }

  /** @ignore Starts the greenlet now, synchronously, even from inside the hub. */
  _startNow(): void {
    this._state = SCHEDULED;
    const hub = getHub();
    hub._alive++;
    enlist(this, hub);
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
    const hub = getHub();
    hub._alive++;
    enlist(this, hub);
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
  join(options?: JoinOptions): Promise<boolean> {
    if (options === undefined) options = {};
    const bad = _badBag(options);
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
    const w = _begin<boolean, Greenlet<unknown>>();
    if (w instanceof Promise) return w;
    w._owner = this;
    w._onCancel = unlinkOnCancel;
    _addLink(this, w);
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
  async get(options?: GetOptions): Promise<T | GreenletExit | undefined> {
    if (options === undefined) options = {};
    const bad = _badBag(options);
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
  async result(options?: GetOptions): Promise<T> {
    if (options === undefined) options = {};
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
  async kill(options?: KillOptions): Promise<void> {
    if (options === undefined) options = {};
    const bad = _badBag(options);
    if (bad !== undefined) throw bad;
    const { block = true, timeout } = options;
    if (timeout !== undefined) _checkMs("timeout", timeout);
    this._deliverKill(options.exception);
    if (block && !this.dead && _current() !== this) {
      if (!await this.join({ timeout }) && !this.dead && timeout !== undefined) {
        _killTimedOut(_describeGreenlet(this), timeout);
      }
    }
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
    this._die(exc, "threw");
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
    let wrapper: _LinkFn;
    if (typeof callback === "function") {
      // As in gevent, each callback's greenlet starts at once, before the next link is looked
      // at: a callback that unlinks a later one prevents it.
      wrapper = (g: Greenlet<T>) => {
        if (when === undefined || g.successful() === when) {
          new Greenlet(callback as (g: Greenlet<T>) => unknown, g)._startNow();
        }
      };
    } else if (
      callback !== null && typeof callback === "object" && typeof callback.set === "function" &&
      typeof callback.setException === "function"
    ) {
      wrapper = (g: Greenlet<T>) => {
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
    _addLink(this, wrapper);
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
    _addLink(this, callback as _LinkFn);
  }

  /**
   * Removes a callback added with `rawlink`, `link`, `linkValue` or `linkException`.
   *
   * @param callback The callback to remove.
   */
  unlink(callback: unknown): void {
    _removeLink(this, callback);
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

  /**
   * @ignore Records how the greenlet's function ended (it `"returned"` or `"threw"` `result`)
   * and wakes joiners and links.
   */
  _die(result: unknown, how: _Ending): void {
    const prev = this._state;
    if (prev >= SUCCEEDED) return;
    if (_marking) _mark(_YIELD, this);
    if (this._abandonTimer !== undefined) {
      clearTimeout(this._abandonTimer);
      this._abandonTimer = undefined;
    }
    if (this._killCtl !== undefined || this._interrupted !== undefined) {
      [result, how] = this.#outcome(result, how);
    }
    let hub: Hub | undefined;
    this._result = result;
    if (how === "threw" && !(result instanceof GreenletExit)) {
      this._state = FAILED;
      hub = getHub();
      hub._report(this, result);
      _greenletFailed(this, result);
    } else {
      this._state = SUCCEEDED;
    }
    if (prev !== NEW) {
      _delist(this);
      (hub ?? getHub())._greenletDied();
    }
    if (this._links !== undefined) _notifyLinks(this);
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
  #outcome(result: unknown, how: _Ending): [unknown, _Ending] {
    const kill = this._killCtl?.signal.aborted ? this._killCtl.signal.reason : undefined;
    if (kill !== undefined && this._takeIf(kill)) return [kill, "threw"];
    const cut = this._interrupted;
    if (how === "threw" && cut !== undefined && result !== cut) return [cut, "threw"];
    return [result, how];
  }
}

Greenlet.prototype._notifying = false;
(Greenlet.prototype as { _linkMode: _LinkMode })._linkMode = "once";
Greenlet.prototype._startTimer = undefined;
Greenlet.prototype._ident = undefined;
Greenlet.prototype._name = undefined;
Greenlet.prototype._killCtl = undefined;
Greenlet.prototype._abandonTimer = undefined;
Greenlet.prototype._trace = undefined;
Greenlet.prototype._site = undefined;

function enlist(g: Greenlet<unknown>, hub: Hub): void {
  _enlist(g);
  g._result = hub.loop.now() | 0;
}

/** @ignore Every live greenlet (started, not dead), in the order they were started. */
export function _liveGreenlets(): Greenlet<unknown>[] {
  return _liveFlows() as Greenlet<unknown>[];
}

/** @ignore Whether greenlets record their spawn site (run-info; see `trackSpawnSites()`). */
export const _spawnSites: { tracked: boolean } = { tracked: false };

/** Marks a kill being delivered, before its grace timer is known (see `_deliverKill`). */
const LANDING = 0 as unknown as ReturnType<typeof setTimeout>;

/** Milliseconds a killed greenlet whose driver request was cut off is given to die of it. */
const CUT_GRACE = 1000;

function abandonKilled(g: Greenlet<unknown>, exc: unknown): void {
  g._abandonTimer = undefined;
  g._die(exc, "threw");
  // Its code stays suspended on a promise the kill could not reach; if that ever settles, the
  // code resumes as a dead greenlet's, and the kill is thrown at its next blocking call.
  g._pending = exc;
}

/**
 * Creates a greenlet for `fn(...args)` and starts it. It runs once the caller yields.
 *
 * Tracing: when OpenTelemetry is on (Deno's `OTEL_DENO=true`, or a context manager registered
 * through `@opentelemetry/api`), every greenlet runs in the trace context that was active where
 * it was created (`spawn`, `new Greenlet`, `spawnLater`, a pool's `spawn`): a `fetch` it makes
 * is a child span of the span of the code that spawned it. Other async context
 * (`AsyncLocalStorage` stores) is not carried over; link callbacks run in the hub, outside it.
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
 * const log: string[] = [];
 * const g = spawnLater(20, () => log.push("greenlet"));
 * setTimeout(() => log.push("timer at 10 ms"), 10);
 * await g.join();
 * assert.deepEqual(log, ["timer at 10 ms", "greenlet"]);
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
  w: _Waiter<void, Collector> | undefined = undefined;
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

function collectorTimedOut(w: _Waiter<void, Collector>): void {
  w._wake(undefined);
}
_labelWaits(
  Collector,
  (w: _Waiter<void, Collector>) => `joinAll (${w._owner.left} more to finish)`,
);

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
  options?: JoinAllOptions,
): Promise<G[]> {
  if (options === undefined) options = {};
  const bad = _badBag(options);
  if (bad !== undefined) throw bad;
  const { timeout, raiseError = false } = options;
  if (timeout !== undefined) _checkMs("timeout", timeout);
  const list = _list("greenlets", greenlets);
  const badCount = _badCount("count", options.count);
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
  const w = _begin<void, Collector>();
  if (w instanceof Promise) await w;
  c.w = w as _Waiter<void, Collector>;
  c.w._owner = c;
  for (const g of list) if (g._state < SUCCEEDED) _addLink(g, c);
  c.w._arm(timeout, collectorTimedOut, options.signal);
  try {
    await c.w.promise;
  } finally {
    if (c.done.length - (list.length - pending) < pending) {
      for (const g of list) if (g._state < SUCCEEDED) _removeLink(g, c);
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
  options?: KillOptions,
): Promise<void> {
  if (options === undefined) options = {};
  const bad = _badBag(options);
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
      `of the kill: ${alive.map(_describeGreenlet).join("; ")}`;
    throw error;
  }
}

/** @ignore `g` and what it is doing, for messages about greenlets that did not die. */
export function _describeGreenlet(g: Greenlet<unknown>): string {
  const where = g._state !== RUNNING
    ? "not started"
    : g._wait !== undefined
    ? `blocked on ${_describeWait(g._wait)}`
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
