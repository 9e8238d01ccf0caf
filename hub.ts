/**
 * The hub: the implicit owner of the event loop, the error reporter, and the home of every
 * blocking call.
 *
 * There is no `run()` to call: {@linkcode getHub} creates the hub on first use. A *blocking
 * call* (`sleep`, `Event.wait`, `Greenlet.join`, ...) returns a promise and registers itself
 * with the calling greenlet so that `kill()` and `Timeout` can interrupt it. Blocking calls
 * are not allowed "in the hub", that is synchronously inside a `rawlink` callback or a loop
 * callback: there they reject at once with {@linkcode BlockingSwitchOutError}.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { _checkMs, _clearTimer, _setTimer, type _Timer, Loop } from "./core.ts";
import { _inspect, _onLoopDrained, _writeStderr } from "./_runtime.ts";

/**
 * Raised when a blocking call is made "in the hub": synchronously inside a `rawlink`
 * callback or a loop callback. This is a programming error.
 *
 * @example
 * ```ts
 * import { BlockingSwitchOutError, getHub, sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const done = Promise.withResolvers<unknown>();
 * getHub().loop.runCallback(() => sleep(0).catch(done.resolve));
 * assert.ok(await done.promise instanceof BlockingSwitchOutError);
 * ```
 */
export class BlockingSwitchOutError extends Error {
  /** Creates the error. */
  constructor(message = "Impossible to call blocking function in the event loop callback") {
    super(message);
    this.name = "BlockingSwitchOutError";
  }
}

/**
 * Raised into greenlets still blocked when the event loop runs dry: nothing is left that
 * could ever wake them. Usually a programming error (a missing `set()`, a lost wake-up).
 *
 * @example
 * ```ts
 * import { LoopExit } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const e = new LoopExit();
 * assert.equal(e.message, "This operation would block forever");
 * ```
 */
export class LoopExit extends Error {
  /** Creates the error. */
  constructor(message = "This operation would block forever") {
    super(message);
    this.name = "LoopExit";
  }
}

const NONE: unique symbol = Symbol("none");

/**
 * @ignore The per-flow state of blocking: a greenlet, the root flow, or the private flow of a
 * `withTimeout` called outside any greenlet.
 */
export class _Flow {
  // Only `_wait` is an own field of every flow; the rest are rare and default to values on the
  // prototype (see below the class), which keeps a greenlet small.
  /** The blocking call this flow is waiting on now. */
  _wait: _Waiter<unknown> | undefined = undefined;
  /** Other blocking calls started earlier and still pending (rare: `Promise.all` of waits). */
  declare _earlier: _Waiter<unknown>[] | undefined;
  /** An exception to throw at the next blocking call (`NONE` when there is none). */
  declare _pending: unknown;
  /** Controller of `currentSignal()`; aborted and dropped when an exception is thrown in. */
  declare _scope: AbortController | undefined;
  /**
   * Sub-flows of the root flow (top-level `withTimeout` calls): an exception thrown into the
   * root reaches those of them that are blocked, and the others at their next blocking call.
   */
  declare _children: Set<_Flow> | undefined;
  /** The flow whose pending exception this sub-flow also honours. */
  declare _parent: _Flow | undefined;
  /**
   * The exception last delivered by cutting off I/O this flow awaited outside the library (a
   * database driver's connection): what that I/O then fails with is this exception's doing.
   */
  declare _interrupted: unknown;

  /**
   * Throws `exc` into this flow: at its pending blocking call; else at the I/O it awaits
   * outside the library, where that can be cut off; else at its next blocking call.
   * Returns which of the three happened.
   */
  _throw(exc: unknown): _Delivery {
    const scope = this._scope;
    if (scope !== undefined) {
      this._scope = undefined;
      scope.abort(exc);
    }
    let delivered = false;
    if (this._children !== undefined) {
      for (const child of this._children) {
        if (child._wait !== undefined) {
          child._throw(exc);
          delivered = true;
        } else if (child._scope !== undefined) {
          const s = child._scope;
          child._scope = undefined;
          s.abort(exc);
        }
      }
    }
    const w = this._wait;
    if (w === undefined) {
      if (delivered) return _DELIVERED;
      if (foreignInterrupter !== undefined && foreignInterrupter(this, exc)) {
        this._interrupted = exc;
        return _FOREIGN;
      }
      this._pending = exc;
      return _PENDING;
    }
    const others = this._earlier;
    this._earlier = undefined;
    w._fail(exc);
    if (others !== undefined) {
      for (const o of others) {
        o.promise.catch(noop);
        o._fail(exc);
      }
    }
    return _DELIVERED;
  }

  /** Withdraws a pending exception that was never delivered (a cancelled Timeout). */
  _withdraw(exc: unknown): void {
    if (this._pending === exc) this._pending = NONE;
    if (this._interrupted === exc) this._interrupted = undefined;
  }

  /** Takes `exc` if it is pending (never delivered); returns whether it was. */
  _takeIf(exc: unknown): boolean {
    if (this._pending !== exc) return false;
    this._pending = NONE;
    return true;
  }

  /**
   * I/O this flow awaited outside the library was cut off and has failed: the flow runs its
   * own code again (a greenlet, its `finally` blocks), so it is no longer to be given up on.
   */
  _landed(): void {}

  /** Whether `exc` is pending here, or was delivered by cutting off I/O this flow awaited. */
  _owes(exc: unknown): boolean {
    return this._pending === exc || this._interrupted === exc;
  }

  /** Whether `exc` is waiting to be thrown at the next blocking call. */
  _hasPending(): boolean {
    return this._pending !== NONE;
  }
}

_Flow.prototype._earlier = undefined;
_Flow.prototype._pending = NONE;
_Flow.prototype._scope = undefined;
_Flow.prototype._children = undefined;
_Flow.prototype._parent = undefined;
_Flow.prototype._interrupted = undefined;

/** @ignore How {@linkcode _Flow._throw} delivered an exception. */
export type _Delivery = 0 | 1 | 2;
/** @ignore Left pending: thrown at the flow's next blocking call. */
export const _PENDING = 0;
/** @ignore Thrown at the flow's pending blocking call. */
export const _DELIVERED = 1;
/** @ignore Delivered by cutting off I/O the flow awaited outside the library. */
export const _FOREIGN = 2;

let foreignInterrupter: ((ctx: _Flow, exc: unknown) => boolean) | undefined;

/**
 * @ignore Registers how an exception thrown into a flow that is in no blocking call reaches
 * the I/O that flow awaits outside the library (`_net.ts`: a driver's `node:net` socket).
 * `interrupt(ctx, exc)` returns whether it cut anything off.
 */
export function _setForeignInterrupter(interrupt: (ctx: _Flow, exc: unknown) => boolean): void {
  foreignInterrupter = interrupt;
}

const als = new AsyncLocalStorage<_Flow | undefined>();

/** @ignore The flow of code that runs outside every greenlet. */
export const _root: _Flow = new _Flow();

/**
 * @ignore Runs `fn()` in a new sub-flow of the root flow, so that concurrent top-level
 * callers of `withTimeout` do not interrupt each other while a Timeout of the root flow
 * still reaches them.
 */
export function _runInSubflow<R>(fn: () => Promise<R>): Promise<R> {
  const child = new _Flow();
  child._parent = _root;
  (_root._children ??= new Set()).add(child);
  return als.run(child, fn).finally(() => _root._children!.delete(child));
}

/** @ignore The context of the running code: a greenlet, or `_root`. */
export function _current(): _Flow {
  return als.getStore() ?? _root;
}

/** @ignore Runs `fn()` with `ctx` as the current context (propagates through `await`). */
export function _runIn<R>(ctx: _Flow, fn: () => R): R {
  return als.run(ctx, fn);
}

/** @ignore Whether the caller is synchronously inside a hub callback. */
export function _inHub(): boolean {
  return hub !== undefined && hub.loop._inCallback > 0;
}

function noop(): void {}

// One shared executor instead of a closure per waiter: it runs synchronously inside the
// Promise constructor, and the constructor copies the captured resolvers out at once.
let capturedRes: ((value: never) => void) | undefined;
let capturedRej: ((error: unknown) => void) | undefined;
function captureResolvers(res: (value: never) => void, rej: (error: unknown) => void): void {
  capturedRes = res;
  capturedRej = rej;
}

/**
 * @ignore One blocking call. It is woken with `_wake(value)`, failed with `_fail(error)`; when
 * its timeout elapses `_onTimeout(waiter)` decides the result. `_owner` and `_onCancel` let the
 * primitive it waits on forget it when it ends for any other reason than its own wake-up.
 */
export class _Waiter<T> {
  promise: Promise<T>;
  _res!: (value: T) => void;
  _rej!: (error: unknown) => void;
  /** The waiting flow; `undefined` once the wait has ended. */
  _ctx: _Flow | undefined;
  _owner: unknown = undefined;
  _onCancel: ((w: _Waiter<T>) => void) | undefined = undefined;
  // Only timed waits set these (on the prototype otherwise, to keep untimed waits small).
  declare _timer: _Timer | undefined;
  declare _onTimeout: ((w: _Waiter<T>) => void) | undefined;
  /** The caller's `signal`, whose abort fails the wait (only waits given one set these). */
  declare _signal: AbortSignal | undefined;
  declare _onAbort: (() => void) | undefined;
  /** Neighbours in the hub's list of waits without a deadline (for LoopExit). */
  _prev: _Waiter<unknown> | undefined = undefined;
  _next: _Waiter<unknown> | undefined = undefined;

  constructor(ctx: _Flow) {
    this._ctx = ctx;
    this.promise = new Promise<T>(captureResolvers);
    this._res = capturedRes as (value: T) => void;
    this._rej = capturedRej!;
    const prev = ctx._wait;
    if (prev !== undefined) (ctx._earlier ??= []).push(prev);
    ctx._wait = this as _Waiter<unknown>;
  }

  /** Whether the wait has ended (woken, failed or timed out). */
  get _done(): boolean {
    return this._ctx === undefined;
  }

  /** Resolves the blocking call (first settlement wins). */
  _wake(value: T): void {
    if (this._ctx === undefined) return;
    this._end();
    this._res(value);
  }

  /** Wakes a boolean wait with `true` (lets a waiter be a greenlet's internal link). */
  _notify(): void {
    this._wake(true as T);
  }

  /** Rejects the blocking call and lets its owner forget it. */
  _fail(error: unknown): void {
    if (this._ctx === undefined) return;
    this._end();
    this._onCancel?.(this);
    this._rej(error);
  }

  _end(): void {
    const ctx = this._ctx!;
    this._ctx = undefined;
    if (this._signal !== undefined) {
      this._signal.removeEventListener("abort", this._onAbort!);
      this._signal = undefined;
    }
    if (this._timer !== undefined) {
      _clearTimer(this._timer);
      this._timer = undefined;
    } else if (this._prev !== undefined) {
      _unlinkForever(this as _Waiter<unknown>);
    }
    if (ctx._wait === this) {
      const ws = ctx._earlier;
      ctx._wait = ws === undefined ? undefined : ws.pop();
      if (ws !== undefined && ws.length === 0) ctx._earlier = undefined;
    } else if (ctx._earlier !== undefined) {
      const i = ctx._earlier.indexOf(this as _Waiter<unknown>);
      if (i >= 0) ctx._earlier.splice(i, 1);
    }
  }

  /**
   * Arms the timeout; `undefined` means no deadline (the wait is then listed for LoopExit).
   * A `signal` (the caller's `options.signal`) fails the wait with its reason when it aborts.
   */
  _arm(
    timeout: number | undefined,
    onTimeout: (w: _Waiter<T>) => void,
    signal?: AbortSignal,
  ): void {
    if (signal !== undefined) {
      const bad = _badSignal(signal);
      if (bad !== undefined || signal.aborted) {
        this._fail(bad ?? signal.reason);
        return;
      }
      this._signal = signal;
      this._onAbort = () => this._fail(signal.reason);
      signal.addEventListener("abort", this._onAbort, { once: true });
    }
    if (timeout === undefined) {
      _linkForever(this as _Waiter<unknown>);
      return;
    }
    this._onTimeout = onTimeout;
    this._timer = _setTimer(fireTimeout, timeout, this as _Waiter<unknown>);
  }
}

function fireTimeout(w: _Waiter<unknown>): void {
  w._timer = undefined;
  if (w._done) return;
  try {
    w._onTimeout!(w);
  } catch (error) {
    w._fail(error);
  }
}

_Waiter.prototype._timer = undefined;
_Waiter.prototype._onTimeout = undefined;
_Waiter.prototype._signal = undefined;
_Waiter.prototype._onAbort = undefined;

// A circular list, headed by a sentinel, of waits that have no deadline.
const forever = new _Waiter<unknown>(new _Flow());
forever._ctx!._wait = undefined;
forever.promise.catch(noop);
forever._prev = forever;
forever._next = forever;

function _linkForever(w: _Waiter<unknown>): void {
  const last = forever._prev!;
  w._prev = last;
  w._next = forever;
  last._next = w;
  forever._prev = w;
}

function _unlinkForever(w: _Waiter<unknown>): void {
  w._prev!._next = w._next;
  w._next!._prev = w._prev;
  w._prev = undefined;
  w._next = undefined;
}

/**
 * @ignore Why a blocking call must not go on: a promise already rejected when it is made in
 * the hub or an exception is pending for the calling flow (which it takes), else `undefined`.
 * For calls that can settle at once without waiting (the object is ready, or `timeout: 0`).
 */
export function _refusal(): Promise<never> | undefined {
  return refusal(als.getStore() ?? _root);
}

function refusal(ctx: _Flow): Promise<never> | undefined {
  const h = hub;
  if (h !== undefined && h.loop._inCallback > 0) {
    return Promise.reject(new BlockingSwitchOutError());
  }
  if (ctx._pending !== NONE || ctx._parent !== undefined) {
    const p = takePending(ctx);
    if (p !== NONE) return Promise.reject(p);
  }
  return undefined;
}

/**
 * @ignore Begins a blocking call in the current context. Returns the waiter, or a promise
 * already rejected (see {@linkcode _refusal}).
 */
export function _begin<T>(): _Waiter<T> | Promise<never> {
  const ctx = als.getStore() ?? _root;
  return refusal(ctx) ?? new _Waiter<T>(ctx);
}

/**
 * @ignore Checks a blocking call's `timeout` option: `undefined` waits forever, `0` does not
 * wait. Returns an error to reject with, or `undefined` when it is valid.
 */
export function _badTimeout(timeout: unknown): Error | undefined {
  if (timeout === undefined) return undefined;
  try {
    _checkMs("timeout", timeout);
  } catch (error) {
    return error as Error;
  }
  return undefined;
}

/** Something to write failure reports to, such as `{ write: (s) => console.error(s) }`. */
export interface ExceptionStream {
  /** Writes one chunk of text. */
  write(text: string): unknown;
}

const stderrStream: ExceptionStream = { write: _writeStderr };

/** An error class, as used in {@linkcode Hub.notError}. */
// deno-lint-ignore no-explicit-any
export type ErrorClass = abstract new (...args: any[]) => unknown;

// ---- The hub's resolver (resolver.ts registers the factory; hub.ts cannot import it) ----

/**
 * What the hub requires of its resolver. `resolver.ts`'s `Resolver` is the implementation;
 * assign one to {@linkcode Hub.resolver} to change name servers, timeouts or caching.
 */
export interface HubResolver {
  /** Resolves a host name to one IPv4 address (a blocking call). */
  gethostbyname(host: string): Promise<string>;
  /** Releases the resolver: stops its lookups and drops its cache. */
  close(): void;
}

let resolverFactory: (() => HubResolver) | undefined;

/** @ignore Registers how the hub creates its default resolver (called by resolver.ts). */
export function _setResolverFactory(factory: () => HubResolver): void {
  resolverFactory = factory;
}

/** @ignore Classes every new hub starts with in `notError` (greenlet.ts adds `GreenletExit`). */
export const _notErrorDefaults: ErrorClass[] = [];

/**
 * The hub owns the event loop and reports errors that escape greenlets and callbacks.
 * There is one per process, created on demand by {@linkcode getHub}.
 *
 * @example Silencing failure reports in a test
 * ```ts
 * import { getHub } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const hub = getHub();
 * const lines: string[] = [];
 * const saved = hub.exceptionStream;
 * hub.exceptionStream = { write: (text) => lines.push(text) };
 * hub.handleError("ctx", new RangeError("boom"));
 * hub.exceptionStream = saved;
 * assert.match(lines.join(""), /ctx failed with RangeError/);
 * ```
 */
export class Hub {
  /** The event loop this hub drives. */
  readonly loop: Loop;
  /** Where failure reports go (default: standard error). `null` silences them. */
  exceptionStream: ExceptionStream | null = stderrStream;
  /** Error classes that are not failures and are never printed (default `[GreenletExit]`). */
  notError: ErrorClass[] = [..._notErrorDefaults];
  /** @ignore Number of greenlets started and not yet dead. */
  _alive = 0;
  /** @ignore Waiters of `wait()` without objects, woken when `_alive` drops to zero. */
  _idleWaiters: _Waiter<boolean>[] = [];
  #resolver: HubResolver | undefined = undefined;

  /**
   * The resolver the socket functions use, created on first use (importing `socket.ts` or
   * `resolver.ts` registers the default `Resolver`). Setting it does not close the previous
   * one: save, replace and restore freely, and close what you made when you are done.
   *
   * @throws {Error} If no resolver module was imported.
   * @throws {TypeError} When set to something without `gethostbyname()` and `close()`.
   */
  get resolver(): HubResolver {
    if (this.#resolver !== undefined) return this.#resolver;
    if (resolverFactory === undefined) {
      throw new Error("No resolver: import resolver.ts or socket.ts first");
    }
    return this.#resolver = resolverFactory();
  }
  set resolver(value: HubResolver) {
    if (
      value === null || typeof value !== "object" ||
      typeof (value as HubResolver).gethostbyname !== "function" ||
      typeof (value as HubResolver).close !== "function"
    ) {
      throw new TypeError(
        `'resolver' must have gethostbyname() and close() methods: current value is ${
          typeof value === "string" ? JSON.stringify(value) : String(value)
        }`,
      );
    }
    this.#resolver = value;
  }

  /** Creates a hub. Use {@linkcode getHub} instead: a second hub is never driven. */
  constructor() {
    this.loop = new Loop();
    this.loop.onError = (context, error) => this._report(context, error);
    _onLoopDrained(this.#onLoopDrained);
  }

  /**
   * Called with every error that escapes a greenlet, a link or a loop callback. Errors whose
   * class is in {@linkcode Hub.notError} are ignored; the rest go to
   * {@linkcode Hub.printException}. Never throws.
   *
   * @param context What failed (a greenlet, a watcher, ...); rendered with `String()`.
   * @param error What was thrown.
   */
  handleError(context: unknown, error: unknown): void {
    for (const cls of this.notError) {
      if (error instanceof cls) return;
    }
    try {
      this.printException(context, error);
    } catch {
      // A broken exception stream must not take the hub down.
    }
  }

  /**
   * @ignore Reports through {@linkcode Hub.handleError}, which a user may have replaced: if
   * it throws, its own error is printed and nothing escapes to the caller.
   */
  _report(context: unknown, error: unknown): void {
    try {
      this.handleError(context, error);
    } catch (handlerError) {
      try {
        this.printException(`handleError(${String(context)})`, handlerError);
      } catch {
        // Nothing left to report with.
      }
    }
  }

  /**
   * Writes the error's stack, then one line `<ISO time> <context> failed with <ErrorName>`,
   * to {@linkcode Hub.exceptionStream}.
   *
   * @param context What failed; rendered with `String()`.
   * @param error What was thrown.
   */
  printException(context: unknown, error: unknown): void {
    const stream = this.exceptionStream;
    if (stream === null) return;
    let text: string;
    let name: string;
    if (error instanceof Error) {
      text = error.stack ?? `${error.name}: ${error.message}`;
      name = error.name;
    } else {
      text = `Uncaught ${_inspect(error)}`;
      name = error === null ? "null" : (error as object)?.constructor?.name ?? typeof error;
    }
    stream.write(`${text}\n${new Date().toISOString()} ${String(context)} failed with ${name}\n`);
  }

  /** @ignore Called by greenlets when they die. */
  _greenletDied(): void {
    if (--this._alive === 0 && this._idleWaiters.length !== 0) {
      const ws = this._idleWaiters;
      this._idleWaiters = [];
      for (const w of ws) w._wake(true);
    }
  }

  /** The loop ran dry: waits nothing can ever wake get `LoopExit` (and the process goes on). */
  #onLoopDrained = (): boolean => {
    if (forever._next === forever) return false;
    const stuck: _Waiter<unknown>[] = [];
    for (let w = forever._next!; w !== forever; w = w._next!) stuck.push(w);
    for (const w of stuck) w._fail(new LoopExit());
    return true;
  };
}

let hub: Hub | undefined;

/**
 * Returns the hub, creating it on first use. There is no `run()`: the loop runs by itself.
 *
 * @returns The process-wide hub.
 *
 * @example
 * ```ts
 * import { getHub } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * assert.equal(getHub(), getHub());
 * ```
 */
export function getHub(): Hub {
  return hub ??= new Hub();
}

function takePending(ctx: _Flow): unknown {
  let p = ctx._pending;
  if (p !== NONE) {
    ctx._pending = NONE;
    return p;
  }
  const parent = ctx._parent;
  if (parent !== undefined && (p = parent._pending) !== NONE) {
    parent._pending = NONE;
    return p;
  }
  return NONE;
}

function afterYield(): void {
  const p = takePending(als.getStore() ?? _root);
  if (p !== NONE) throw p;
}

function afterYieldNow(ctx: _Flow): Promise<void> {
  const p = takePending(ctx);
  if (p !== NONE) return Promise.reject(p);
  return getHub().loop._yield().then(afterYield);
}

function wakeUndefined(w: unknown): void {
  (w as _Waiter<void>)._wake(undefined);
}

/**
 * Blocks the calling greenlet for `ms` milliseconds. `sleep(0)` (the default) yields to every
 * greenlet that is already runnable and then resumes. A blocking call: `kill()` and
 * `Timeout` interrupt it.
 *
 * @param ms Milliseconds to sleep (default 0).
 * @param options `signal`: aborting it rejects the sleep with its reason.
 * @returns A promise that resolves when the time is up.
 * @throws {RangeError} (as a rejection) If `ms` is negative or not finite.
 *
 * @example
 * ```ts
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const t0 = performance.now();
 * await sleep(20);
 * assert.ok(performance.now() - t0 >= 15);
 * ```
 */
export function sleep(ms = 0, options?: SleepOptions): Promise<void> {
  const signal = options?.signal;
  if (signal !== undefined) {
    const bad = _badOptions(options) ?? _badSignal(signal);
    if (bad !== undefined) return Promise.reject(bad);
    if (signal.aborted) return Promise.reject(signal.reason);
  }
  if (ms !== 0) {
    const bad = _badTimeout(ms);
    if (bad !== undefined) return Promise.reject(bad);
  }
  if (ms === 0) {
    // No waiter: sleepers of one turn share a promise, and a kill or Timeout that arrives
    // meanwhile is left pending and thrown by `afterYield`, in the sleeper's own context.
    const h = getHub();
    if (h.loop._inCallback > 0) return Promise.reject(new BlockingSwitchOutError());
    const ctx = als.getStore() ?? _root;
    if (ctx._pending !== NONE || ctx._parent !== undefined) return afterYieldNow(ctx);
    return h.loop._yield().then(afterYield);
  }
  const w = _begin<void>();
  if (w instanceof Promise) return w;
  if (signal === undefined) w._timer = _setTimer(wakeUndefined, ms, w);
  else w._arm(ms, wakeUndefined, signal);
  return w.promise;
}

/** Options of {@linkcode sleep}. */
export interface SleepOptions {
  /** Aborting it ends the sleep with its reason, as a kill would. */
  signal?: AbortSignal;
}

/**
 * Blocks until the loop's run queue is empty: every callback and greenlet start queued
 * before has run. A blocking call.
 *
 * @returns A promise that resolves once the loop is idle.
 *
 * @example
 * ```ts
 * import { getHub, idle } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * let ran = false;
 * getHub().loop.runCallback(() => ran = true);
 * await idle();
 * assert.equal(ran, true);
 * ```
 */
export function idle(): Promise<void> {
  const w = _begin<void>();
  if (w instanceof Promise) return w;
  const loop = getHub().loop;
  w._timer = setTimeout(function check(): void {
    if (loop.pendingCount === 0) w._wake(undefined);
    else w._timer = setTimeout(check, 0);
  }, 0);
  return w.promise;
}

/** Anything that can notify callbacks when it becomes ready: greenlets, events, results. */
export interface Linkable {
  /** Registers `callback(this)` to run in the hub once the object is ready. */
  rawlink(callback: (source: this) => void): void;
  /** Removes a callback registered with `rawlink`. */
  unlink(callback: (source: this) => void): void;
  /** Whether the object is ready now (optional: such objects count at once in `wait`). */
  ready?(): boolean;
}

/** Options of {@linkcode wait} and {@linkcode iwait}. */
export interface WaitOptions {
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
  /** Stop after this many objects are ready (default: all of them). */
  count?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

/** @ignore An options bag: an error for anything but `undefined` or an object. */
export function _badOptions(options: unknown): TypeError | undefined {
  if (options === undefined || (options !== null && typeof options === "object")) return undefined;
  return new TypeError(`'options' must be an object: current value is ${_render(options)}`);
}

/** @ignore A `signal` option: an error for anything but `undefined` or an `AbortSignal`. */
export function _badSignal(signal: unknown): TypeError | undefined {
  if (signal === undefined || signal instanceof AbortSignal) return undefined;
  return new TypeError(`'signal' must be an AbortSignal: current value is ${_render(signal)}`);
}

/** @ignore `value` as an error message shows it: strings quoted, the rest with `String()`. */
export function _render(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "symbol") return value.toString();
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** @ignore Spreads an iterable argument; a TypeError naming it for anything else. */
export function _list<T>(name: string, items: Iterable<T>): T[] {
  if (
    items === null || items === undefined ||
    typeof (items as Iterable<T>)[Symbol.iterator] !== "function"
  ) {
    throw new TypeError(`'${name}' must be iterable: current value is ${_render(items)}`);
  }
  return [...items];
}

/** @ignore A `count` option: an error for anything but a non-negative integer. */
export function _badCount(count: unknown): Error | undefined {
  if (count === undefined) return undefined;
  if (typeof count !== "number" || !Number.isInteger(count) || count < 0) {
    return new RangeError(`'count' must be a non-negative integer: current value is ${count}`);
  }
  return undefined;
}

function idleTimedOut(w: _Waiter<boolean>): void {
  const list = (w._owner as Hub)._idleWaiters;
  const i = list.indexOf(w);
  if (i >= 0) list.splice(i, 1);
  w._wake(false);
}

/**
 * Waits for objects to become ready, or, with no objects, for every greenlet to finish.
 *
 * With objects, resolves to the ready ones in completion order once `count` of them (default:
 * all) are ready or the timeout elapses. Without objects, resolves `true` once no greenlet
 * is alive, `false` if the timeout elapsed first. A blocking call.
 *
 * @typeParam T The kind of object waited on.
 * @param objects Greenlets, events, results: anything with `rawlink`/`unlink`.
 * @param options `timeout` in milliseconds and `count`.
 * @returns The ready objects, or (without objects) whether everything finished.
 * @throws {RangeError} (as a rejection) For a bad `timeout` or `count`.
 *
 * @example
 * ```ts
 * import { wait } from "@x/gevent/hub";
 * import { Event } from "@x/gevent/event";
 * import assert from "node:assert/strict";
 *
 * const a = new Event();
 * const b = new Event();
 * setTimeout(() => b.set(), 5);
 * const ready = await wait([a, b], { count: 1 });
 * assert.ok(ready.length === 1 && ready[0] === b);
 * ```
 */
export function wait(objects?: undefined, options?: WaitOptions): Promise<boolean>;
/**
 * Waits for objects to become ready; resolves to the ready ones in completion order once
 * `count` of them (default: all) are ready or the timeout elapses. A blocking call.
 *
 * @typeParam T The kind of object waited on.
 * @param objects Greenlets, events, results: anything with `rawlink`/`unlink`.
 * @param options `timeout` in milliseconds and `count`.
 * @returns The ready objects.
 * @throws {RangeError} (as a rejection) For a bad `timeout` or `count`.
 *
 * @example Waiting for the first of two events
 * ```ts
 * import { wait } from "@x/gevent/hub";
 * import { Event } from "@x/gevent/event";
 * import assert from "node:assert/strict";
 *
 * const a = new Event();
 * const b = new Event();
 * b.set();
 * const [first] = await wait([a, b], { count: 1 });
 * assert.ok(first === b);
 * ```
 */
export function wait<T extends Linkable>(objects: Iterable<T>, options?: WaitOptions): Promise<T[]>;
export async function wait<T extends Linkable>(
  objects?: Iterable<T>,
  options: WaitOptions = {},
): Promise<T[] | boolean> {
  const bad = _badOptions(options) ?? _badTimeout(options.timeout) ?? _badCount(options.count);
  if (bad !== undefined) throw bad;
  const { timeout } = options;
  if (objects === undefined) {
    const h = getHub();
    if (h._alive === 0) return true;
    if (timeout === 0) return false;
    const w = _begin<boolean>();
    if (w instanceof Promise) return w;
    w._owner = h;
    w._onCancel = idleTimedOut;
    h._idleWaiters.push(w);
    w._arm(timeout, idleTimedOut, options.signal);
    return w.promise;
  }
  const result: T[] = [];
  for await (const o of iwait(objects, options)) result.push(o);
  return result;
}

function wakeIterator(w: _Waiter<boolean>): void {
  w._wake(false);
}

/**
 * Iterates over objects as they become ready, in completion order, until `count` (default:
 * all) have been yielded or the timeout (counted from the first step) elapses. Ending the loop
 * early unlinks every object. Each step is a blocking call.
 *
 * @typeParam T The kind of object waited on.
 * @param objects Greenlets, events, results: anything with `rawlink`/`unlink`.
 * @param options `timeout` in milliseconds and `count`.
 * @returns An async iterator of ready objects.
 * @throws {RangeError} For a bad `timeout` or `count`.
 *
 * @example
 * ```ts
 * import { iwait } from "@x/gevent/hub";
 * import { spawn } from "@x/gevent/greenlet";
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * const slow = spawn(async () => { await sleep(20); return "slow"; });
 * const fast = spawn(async () => { await sleep(1); return "fast"; });
 * const order: unknown[] = [];
 * for await (const g of iwait([slow, fast])) order.push(g.value);
 * assert.deepEqual(order, ["fast", "slow"]);
 * ```
 */
export async function* iwait<T extends Linkable>(
  objects: Iterable<T>,
  options: WaitOptions = {},
): AsyncGenerator<T, void, undefined> {
  const bad = _badOptions(options) ?? _badTimeout(options.timeout) ?? _badCount(options.count);
  if (bad !== undefined) throw bad;
  const { timeout } = options;
  const list = _list("objects", objects);
  for (const o of list) {
    if (
      o === null || (typeof o !== "object" && typeof o !== "function") ||
      typeof o.rawlink !== "function" || typeof o.unlink !== "function"
    ) {
      throw new TypeError(
        `'objects' must hold linkables (with rawlink() and unlink()): found ${_render(o)}`,
      );
    }
  }
  const target = Math.min(options.count ?? list.length, list.length);
  const ready: T[] = [];
  let waiter: _Waiter<boolean> | undefined;
  const onReady = (o: T): void => {
    ready.push(o);
    waiter?._wake(true);
  };
  const linked: T[] = [];
  for (const o of list) {
    // Objects already ready (greenlets, events, results have `ready()`) count at once.
    if (o.ready?.() === true) {
      ready.push(o);
    } else {
      o.rawlink(onReady);
      linked.push(o);
    }
  }
  const deadline = timeout === undefined ? undefined : performance.now() + timeout;
  try {
    let yielded = 0;
    while (yielded < target) {
      if (ready.length > 0) {
        yielded++;
        yield ready.shift()!;
        continue;
      }
      const left = deadline === undefined ? undefined : Math.max(0, deadline - performance.now());
      if (left === 0) return;
      const w = _begin<boolean>();
      if (w instanceof Promise) await w;
      waiter = w as _Waiter<boolean>;
      waiter._arm(left, wakeIterator, options.signal);
      const woke = await waiter.promise;
      waiter = undefined;
      if (!woke && ready.length === 0) return;
    }
  } finally {
    for (const o of linked) o.unlink(onReady);
  }
}
