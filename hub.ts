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
import {
  _badBag,
  _badCount,
  _badSignal,
  _badTimeout,
  _badWaitOptions,
  _list,
  _render,
} from "./_check.ts";
import { _clearTimer, _setTimer, type _Timer, Loop } from "./core.ts";

export type { CallbackWatcher, Loop, TimerOptions, TimerWatcher } from "./core.ts";
import { _inspect, _onLoopDrained, _writeStderr } from "./_runtime.ts";
import { _mark, _marking, _WAKE, _YIELD } from "./_monitor_state.ts";

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
  /** Neighbours in the list of live flows (started greenlets not yet dead), for run-info. */
  declare _prevLive: _Flow | undefined;
  declare _nextLive: _Flow | undefined;

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
      return PENDING;
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
_Flow.prototype._prevLive = undefined;
_Flow.prototype._nextLive = undefined;

// The live greenlets (started and not dead), in start order: a circular list headed by a
// sentinel, threaded through the greenlets themselves (nothing allocated per greenlet).
const live = new _Flow();
live._prevLive = live;
live._nextLive = live;

/** @ignore Lists a greenlet that starts (see {@linkcode _liveFlows}). */
export function _enlist(f: _Flow): void {
  const last = live._prevLive!;
  f._prevLive = last;
  f._nextLive = live;
  last._nextLive = f;
  live._prevLive = f;
}

/** @ignore Unlists a greenlet that died. */
export function _delist(f: _Flow): void {
  const prev = f._prevLive;
  if (prev === undefined) return;
  prev._nextLive = f._nextLive;
  f._nextLive!._prevLive = prev;
  f._prevLive = undefined;
  f._nextLive = undefined;
}

/** @ignore Every live greenlet (started, not dead), in the order they were started. */
export function _liveFlows(): _Flow[] {
  const out: _Flow[] = [];
  for (let f = live._nextLive!; f !== live; f = f._nextLive!) out.push(f);
  return out;
}

/** @ignore How {@linkcode _Flow._throw} delivered an exception. */
export type _Delivery = 0 | 1 | 2;
/** @ignore Left pending: thrown at the flow's next blocking call. */
const PENDING = 0;
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

/** The hub, once `getHub()` made it. */
let hub: Hub | undefined;

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
 * its timeout elapses `_onTimeout(waiter)` decides the result. `_owner` (of type `O`: the
 * primitive waited on, or what the call needs to undo) and `_onCancel` let the primitive forget
 * the waiter when it ends for any other reason than its own wake-up.
 */
export class _Waiter<T, O = unknown> {
  promise: Promise<T>;
  _res!: (value: T) => void;
  _rej!: (error: unknown) => void;
  /** The waiting flow; `undefined` once the wait has ended. */
  _ctx: _Flow | undefined;
  _owner: O = undefined as O;
  _onCancel: _WaiterHook<T, O> | undefined = undefined;
  // Only timed waits set these (on the prototype otherwise, to keep untimed waits small).
  /** Its timer; `FOREVER` for a wait without a deadline (those get LoopExit). */
  declare _timer: _Timer | typeof FOREVER | undefined;
  declare _onTimeout: _WaiterHook<T, O> | undefined;
  /** The caller's `signal`, whose abort fails the wait (only waits given one set these). */
  declare _signal: AbortSignal | undefined;
  declare _onAbort: (() => void) | undefined;
  /** The loop's clock when the wait began, in whole ms modulo 2^32 (for run-info). */
  _since: number;

  constructor(ctx: _Flow) {
    this._ctx = ctx;
    this._since = hub === undefined ? 0 : hub.loop.now() | 0;
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
    if (_marking) _mark(_WAKE, ctx);
    if (this._signal !== undefined) {
      this._signal.removeEventListener("abort", this._onAbort!);
      this._signal = undefined;
    }
    const timer = this._timer;
    if (timer !== undefined) {
      if (timer !== FOREVER) _clearTimer(timer);
      this._timer = undefined;
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
  _arm(timeout: number | undefined, onTimeout: _WaiterHook<T, O>, signal?: AbortSignal): void {
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
      this._timer = FOREVER;
      return;
    }
    this._onTimeout = onTimeout;
    this._timer = _setTimer(fireTimeout, timeout, this as _Waiter<unknown>);
  }
}

/**
 * @ignore What a waiter calls back with itself (`_onCancel`, `_onTimeout`). Declared as a
 * method so that a waiter of a particular owner type still fits where any waiter is expected.
 */
export type _WaiterHook<T, O> = { bivariant(w: _Waiter<T, O>): void }["bivariant"];

// deno-lint-ignore no-explicit-any
type Describe = (w: _Waiter<any, any>) => string;
// deno-lint-ignore ban-types
const waitLabels = new Map<Function, Describe>();

/**
 * @ignore Registers how run-info names the blocking calls whose waiter has `hook` as its
 * `_onCancel` (or, for calls without one, its `_onTimeout`; or whose owner is an instance of
 * the class `hook`): `describe(waiter)` returns text such as `"Queue.get"` or
 * `"socket.recv 127.0.0.1:5432"`. Nothing is paid per wait.
 */
export function _labelWaits<T, O>(
  // deno-lint-ignore ban-types
  hook: _WaiterHook<T, O> | Function,
  describe: (w: _Waiter<T, O>) => string,
): void {
  waitLabels.set(hook, describe as Describe);
}

/** @ignore What a waiter waits on, for run-info: see {@linkcode _labelWaits}. */
export function _describeWait(w: _Waiter<unknown, unknown>): string {
  const owner = w._owner as { constructor?: { name?: string } } | undefined;
  const describe = (w._onCancel && waitLabels.get(w._onCancel)) ??
    (w._onTimeout && waitLabels.get(w._onTimeout)) ??
    (owner?.constructor && waitLabels.get(owner.constructor as Describe));
  if (describe !== undefined) {
    try {
      return describe(w);
    } catch {
      // fall through to the generic label
    }
  }
  const name = owner?.constructor?.name;
  return name ? `a blocking call on a ${name}` : "a blocking call";
}

function fireTimeout(w: _Waiter<unknown>): void {
  // The loop's clock stamps the waits begun next (run-info): a timer fires outside the loop.
  hub?.loop.updateNow();
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

/** The `_timer` of a wait without a deadline. */
const FOREVER: unique symbol = Symbol("forever");

/** Every wait without a deadline: what LoopExit ends when the loop runs dry. */
function waitsForever(): _Waiter<unknown>[] {
  const out: _Waiter<unknown>[] = [];
  const scan = (f: _Flow): void => {
    for (const w of f._earlier ?? []) if (w._timer === FOREVER) out.push(w);
    if (f._wait !== undefined && f._wait._timer === FOREVER) out.push(f._wait);
  };
  scan(_root);
  for (const child of _root._children ?? []) scan(child);
  for (let f = live._nextLive!; f !== live; f = f._nextLive!) scan(f);
  return out;
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
export function _begin<T, O = unknown>(): _Waiter<T, O> | Promise<never> {
  const ctx = als.getStore() ?? _root;
  if (_marking) _mark(_YIELD, ctx);
  return refusal(ctx) ?? new _Waiter<T, O>(ctx);
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
  _idleWaiters: _Waiter<boolean, Hub>[] = [];
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
    const stuck = waitsForever();
    if (stuck.length === 0) return false;
    const stream = this.exceptionStream;
    if (stream !== null && runInfo !== undefined) {
      try {
        stream.write(
          `LoopExit: the loop ran dry with ${stuck.length} blocking call` +
            `${stuck.length === 1 ? "" : "s"} that nothing can wake; what is blocked:\n` +
            runInfo(),
        );
      } catch {
        // a broken stream must not keep the waits from ending
      }
    }
    for (const w of stuck) {
      w._fail(new LoopExit(`This operation would block forever (${_describeWait(w)})`));
    }
    return true;
  };
}

let runInfo: (() => string) | undefined;

/** @ignore Lets the hub print run-info (what is blocked) when the loop runs dry. */
export function _setRunInfo(format: () => string): void {
  runInfo = format;
}

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
  const ctx = als.getStore() ?? _root;
  if (_marking) _mark(_WAKE, ctx);
  const p = takePending(ctx);
  if (p !== NONE) throw p;
}

function afterYieldNow(ctx: _Flow): Promise<void> {
  const p = takePending(ctx);
  if (p !== NONE) return Promise.reject(p);
  return getHub().loop._yield().then(afterYield);
}

/** A `sleep(ms)` (its waiter's owner is `ms`). */
function wakeUndefined(w: unknown): void {
  hub?.loop.updateNow();
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
 * const log: string[] = [];
 * setTimeout(() => log.push("timer at 10 ms"), 10);
 * await sleep(20);
 * log.push("slept 20 ms");
 * assert.deepEqual(log, ["timer at 10 ms", "slept 20 ms"]);
 * ```
 */
export function sleep(ms = 0, options?: SleepOptions): Promise<void> {
  const signal = options?.signal;
  if (signal !== undefined) {
    const bad = _badBag(options) ?? _badSignal(signal);
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
    if (_marking) _mark(_YIELD, ctx);
    if (ctx._pending !== NONE || ctx._parent !== undefined) return afterYieldNow(ctx);
    return h.loop._yield().then(afterYield);
  }
  const w = _begin<void, number>();
  if (w instanceof Promise) return w;
  w._owner = ms;
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

function idleTimedOut(w: _Waiter<boolean, Hub>): void {
  const list = w._owner._idleWaiters;
  const i = list.indexOf(w);
  if (i >= 0) list.splice(i, 1);
  w._wake(false);
}

_labelWaits(Number, (w: _Waiter<void, number>) => `sleep ${w._owner} ms`);
_labelWaits(idleTimedOut, () => "wait() for every greenlet to finish");

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
  options?: WaitOptions,
): Promise<T[] | boolean> {
  if (options === undefined) options = {};
  const bad = _badWaitOptions(options) ?? _badCount("count", options.count);
  if (bad !== undefined) throw bad;
  const { timeout } = options;
  if (objects === undefined) {
    const h = getHub();
    if (h._alive === 0) return true;
    if (timeout === 0) return false;
    const w = _begin<boolean, Hub>();
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
  options?: WaitOptions,
): AsyncGenerator<T, void, undefined> {
  if (options === undefined) options = {};
  const bad = _badWaitOptions(options) ?? _badCount("count", options.count);
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
