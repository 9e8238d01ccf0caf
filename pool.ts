/**
 * Groups and pools of greenlets: {@linkcode Group} tracks the greenlets it spawns (join them,
 * kill them, map over items with them); {@linkcode Pool} adds a capacity, so `spawn` waits
 * for a free slot.
 *
 * Guarantees: a greenlet leaves its group the moment it dies; `await using group = new Group()`
 * kills and joins whatever is still running when the scope ends, so no greenlet outlives its
 * group; waiters for a free slot in a pool are served in FIFO order, each freed slot going to
 * the first of them.
 *
 * The mapping calls (`imap`, `imapUnordered`, `map`, `mapAsync`) run the items on worker
 * greenlets that belong to the group: at most as many as the pool has free slots (a `Group`
 * has no limit, so one worker per item as in gevent), each worker taking the next item when
 * it is done with one. A worker is a member like any other (it counts toward the pool's
 * capacity, and killing the group kills it); greenlet-local values are cleared between items.
 * This is cheaper than a greenlet per item, as gevent does, and differs only in that
 * `getCurrent()` inside `fn` is the worker, and that a sync `fn` runs item after item like a
 * greenlet that never blocks (the worker still yields to the loop now and then).
 *
 * @module
 */

import { _begin, _labelWaits, type _Waiter, sleep } from "./hub.ts";
import {
  _describeGreenlet,
  getCurrent,
  Greenlet,
  GreenletExit,
  joinAll,
  killAll,
  type KillOptions,
} from "./greenlet.ts";
import { _clearLocals } from "./local.ts";
import { _badWaitOptions, _checkBag, _checkCount, _checkFn, _render } from "./_check.ts";
import { _addLink, _mustYield, _removeLink, _waitIn, _WaitList } from "./_wait.ts";
import { Timeout } from "./timeout.ts";

export type * from "./greenlet.ts";

/**
 * Raised (as a rejection) by {@linkcode Pool.add} when the pool stays full: `blocking: false`,
 * or the timeout elapsed. Also by {@linkcode Pool.spawn} called from a member of its own full
 * pool, where waiting for a slot could deadlock (usually a programming error).
 *
 * @example
 * ```ts
 * import { Pool, PoolFull } from "@x/gevent/pool";
 * import { Greenlet } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * const pool = new Pool(1);
 * await pool.add(new Greenlet(() => 1));
 * await assert.rejects(pool.add(new Greenlet(() => 2), { blocking: false }), PoolFull);
 * ```
 */
export class PoolFull extends Error {
  /**
   * Creates the error.
   *
   * @param message The message.
   */
  constructor(message = "The pool is full") {
    super(message);
    this.name = "PoolFull";
  }
}

/** Options of {@linkcode GroupBase.join}. */
export interface GroupJoinOptions {
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
  /** Reject with the error of the first member that fails while waiting (default `false`). */
  raiseError?: boolean;
}

/** Options of {@linkcode GroupBase.imap} and {@linkcode GroupBase.imapUnordered}. */
export interface ImapOptions {
  /**
   * Back-pressure: the most items started and not yet consumed (running, or finished and
   * waiting to be yielded). Unbounded by default.
   */
  maxsize?: number;
}

/** Options of {@linkcode GroupBase.applyAsync} and {@linkcode GroupBase.mapAsync}. */
export interface ApplyAsyncOptions<R> {
  /** Called with the value, in a new greenlet, if the call succeeds. */
  callback?: (value: R) => unknown;
}

/** Options of {@linkcode Pool.add} and {@linkcode Pool.start}. */
export interface PoolAddOptions {
  /** `false` does not wait for a free slot: a full pool rejects with `PoolFull`. */
  blocking?: boolean;
  /** Milliseconds to wait for a free slot at most; then `PoolFull`. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

/** Options of {@linkcode Pool.waitAvailable}. */
export interface WaitAvailableOptions {
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
  /** Aborting it ends the wait with its reason, as a kill would. */
  signal?: AbortSignal;
}

// deno-lint-ignore no-explicit-any
type AnyFn = (...args: any[]) => unknown;

function forgetJoiner(w: _Waiter<boolean, GroupBase>): void {
  w._owner._joiners.delete(w);
}
_labelWaits(forgetJoiner, (w) => `${w._owner.constructor.name}.join`);
function joinTimedOut(w: _Waiter<boolean, GroupBase>): void {
  forgetJoiner(w);
  w._wake(false);
}

function checkMaxsize(maxsize: unknown): number {
  return maxsize === undefined
    ? Infinity
    : _checkCount("maxsize", maxsize, { min: 1, infinite: true });
}

/**
 * What {@linkcode Group} and {@linkcode Pool} share: membership, `join`, `kill` and the
 * mapping calls. Not meant to be extended outside this module.
 *
 * @example
 * ```ts
 * import { Group, GroupBase, Pool } from "@x/gevent/pool";
 * import assert from "node:assert/strict";
 *
 * assert.ok(new Group() instanceof GroupBase);
 * assert.ok(new Pool(2) instanceof GroupBase);
 * ```
 */
export abstract class GroupBase implements Iterable<Greenlet<unknown>>, AsyncDisposable {
  /** @ignore */
  _members: Set<Greenlet<unknown>> = new Set();
  /** @ignore Join waiters, with their `raiseError` flag. */
  _joiners: Map<_Waiter<boolean, GroupBase>, boolean> = new Map();
  /** @ignore Members already killed by `kill` or `killOne` (never shot twice). */
  _dying: Set<Greenlet<unknown>> | undefined = undefined;

  /** The number of greenlets in the group, as `Set.size`. */
  get size(): number {
    return this._members.size;
  }

  /**
   * Whether `greenlet` is a member.
   *
   * @param greenlet The greenlet.
   * @returns `true` if it is in the group.
   */
  has(greenlet: Greenlet<unknown>): boolean {
    return this._members.has(greenlet);
  }

  /**
   * The members, in the order they joined.
   *
   * @returns An iterator over the members.
   */
  [Symbol.iterator](): IterableIterator<Greenlet<unknown>> {
    return this._members.values();
  }

  /** @ignore How many more members may be added without waiting. */
  abstract _free(): number;

  /** @ignore Waits until `_free()` may be positive. */
  abstract _waitFree(): Promise<unknown>;

  /** @ignore A member died or left. */
  _memberGone(): void {}

  /** @ignore Adds a member (no capacity check). */
  _adopt(g: Greenlet<unknown>): void {
    if (this._members.has(g)) return;
    this._members.add(g);
    _addLink(g, this);
  }

  /** @ignore Creates, adopts and starts a greenlet (no capacity check). */
  _spawnNow<R>(fn: AnyFn, args: unknown[]): Greenlet<R> {
    const g = new Greenlet(fn, ...args) as Greenlet<R>;
    this._adopt(g as Greenlet<unknown>);
    g.start();
    return g;
  }

  /** @ignore Spawns once a slot is free. */
  abstract _spawnWait<R>(fn: AnyFn, args: unknown[]): Promise<Greenlet<R>>;

  /** @ignore Called (in the dying greenlet, at once) when a member dies. */
  _notify(g: Greenlet<unknown>): void {
    if (!this._members.delete(g)) return;
    this._dying?.delete(g);
    this._memberGone();
    const joiners = this._joiners;
    if (joiners.size === 0) return;
    if (!g.successful()) {
      for (const [w, raise] of joiners) if (raise) w._fail(g.exception);
    }
    if (this._members.size === 0 && joiners.size > 0) {
      this._joiners = new Map();
      for (const w of joiners.keys()) w._wake(true);
    }
  }

  /**
   * Removes a greenlet from the group without killing it.
   *
   * @param greenlet The greenlet.
   */
  discard(greenlet: Greenlet<unknown>): void {
    if (!this._members.delete(greenlet)) return;
    _removeLink(greenlet, this);
    this._dying?.delete(greenlet);
    this._memberGone();
    if (this._members.size === 0 && this._joiners.size > 0) {
      const joiners = this._joiners;
      this._joiners = new Map();
      for (const w of joiners.keys()) w._wake(true);
    }
  }

  /**
   * Waits until the group is empty. A blocking call.
   *
   * @param options `timeout` in milliseconds; `raiseError` to reject as soon as a member
   *   fails (with its error).
   * @returns `true` once empty; `false` if the timeout elapsed first.
   * @throws {unknown} (as a rejection) With `raiseError`, the first member's error.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  join(options?: GroupJoinOptions): Promise<boolean> {
    if (options === undefined) options = {};
    const bad = _badWaitOptions(options);
    if (bad !== undefined) return Promise.reject(bad);
    const { timeout, raiseError = false } = options;
    if (this._members.size === 0) return Promise.resolve(true);
    if (timeout === 0) return Promise.resolve(false);
    const w = _begin<boolean, GroupBase>();
    if (w instanceof Promise) return w;
    w._owner = this;
    w._onCancel = forgetJoiner;
    this._joiners.set(w, raiseError);
    w._arm(timeout, joinTimedOut, options.signal);
    return w.promise;
  }

  /** Throws the kill into `g` unless an earlier `kill` or `killOne` did. */
  #shoot(g: Greenlet<unknown>, exception: unknown): void {
    const dying = this._dying ??= new Set();
    if (dying.has(g)) return;
    dying.add(g);
    g._deliverKill(exception);
  }

  /**
   * Kills every member (except the calling greenlet) and, with `block` (the default), waits
   * until they are dead, repeating for members added meanwhile.
   *
   * Each member is killed once, as in gevent: a member that catches the kill and goes on is
   * not shot again by a later `kill()` or {@linkcode GroupBase.killOne} (those only wait for
   * it), until it dies or leaves the group.
   *
   * @param options `exception`, `block`, `timeout` as for `Greenlet.kill`; the timeout
   *   counts from the call, across the repetitions.
   * @returns A promise that resolves once the members are dead (or the kill is delivered).
   * @throws {Timeout} (as a rejection) If `timeout` elapsed while some member ignored the kill;
   *   its message names them.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  async kill(options?: KillOptions): Promise<void> {
    if (options === undefined) options = {};
    const bad = _badWaitOptions(options);
    if (bad !== undefined) throw bad;
    const { block = true, timeout, exception } = options;
    const deadline = timeout === undefined ? undefined : performance.now() + timeout;
    const me = getCurrent();
    for (;;) {
      const list = [...this._members].filter((g) => g !== me);
      if (list.length === 0) return;
      for (const g of list) this.#shoot(g, exception);
      if (!block) return;
      const left = deadline === undefined ? undefined : Math.max(0, deadline - performance.now());
      const done = await joinAll(list, { timeout: left });
      if (done.length < list.length) {
        const alive = list.filter((g) => !g.dead);
        const error = new Timeout(timeout);
        error.message = `${alive.length} of ${list.length} members did not die within ` +
          `${timeout} ms of the kill: ${alive.map(_describeGreenlet).join("; ")}`;
        throw error;
      }
    }
  }

  /**
   * Kills one member (see `Greenlet.kill`) and, with `block` (the default), waits for it to
   * die (at most `timeout` ms; it resolves either way). Does nothing if `greenlet` is not a
   * member, or was already killed by `kill()` or `killOne()` and is still alive: as in
   * gevent, a member is shot once, and then this returns at once without waiting.
   *
   * @param greenlet The member.
   * @param options `exception`, `block`, `timeout`.
   * @returns A promise that resolves once it is dead (or the kill is delivered).
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  async killOne(greenlet: Greenlet<unknown>, options?: KillOptions): Promise<void> {
    if (options === undefined) options = {};
    const bad = _badWaitOptions(options);
    if (bad !== undefined) throw bad;
    if (!this._members.has(greenlet) || this._dying?.has(greenlet)) return;
    this.#shoot(greenlet, options.exception);
    if (options.block !== false && !greenlet.dead && getCurrent() !== greenlet) {
      await greenlet.join({ timeout: options.timeout });
    }
  }

  /** Kills and joins every member when an `await using` scope ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }

  /**
   * Runs `fn(...args)` in a member greenlet and returns its value, waiting for a free slot
   * first. Called from a member of this group, runs `fn` directly (as gevent does, so a full
   * pool cannot deadlock on itself). A blocking call.
   *
   * @typeParam A The argument types.
   * @typeParam R What `fn` returns.
   * @param fn The function.
   * @param args Its arguments.
   * @returns What `fn` returns.
   * @throws {unknown} (as a rejection) What `fn` throws.
   */
  async apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A): Promise<Awaited<R>> {
    _checkFn(fn);
    const list = (args ?? []) as A;
    const me = getCurrent();
    if (me !== undefined && this._members.has(me)) return await fn(...list);
    const g = await this._spawnWait<Awaited<R>>(fn as AnyFn, list);
    return await g.get() as Awaited<R>;
  }

  /**
   * Starts `fn(...args)` and returns its greenlet at once, never blocking: in the group if it
   * has a free slot, otherwise in a helper greenlet (outside the group) that waits for a slot,
   * runs `fn` there and takes on its value or error.
   *
   * @typeParam A The argument types.
   * @typeParam R What `fn` returns.
   * @param fn The function.
   * @param args Its arguments.
   * @param options `callback`, called with the value on success.
   * @returns The greenlet whose value is `fn`'s.
   * @throws {TypeError} If `fn` or `callback` is not a function, or `options` not an object.
   */
  applyAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    args?: A,
    options: ApplyAsyncOptions<Awaited<R>> = {},
  ): Greenlet<Awaited<R>> {
    _checkFn(fn);
    _checkBag(options);
    const { callback } = options;
    if (callback !== undefined) _checkFn(callback, "callback");
    const list = (args ?? []) as A;
    const g = this._free() > 0
      ? this._spawnNow<Awaited<R>>(fn as AnyFn, list)
      : Greenlet.spawn(async () => {
        const inner = await this._spawnWait<Awaited<R>>(fn as AnyFn, list);
        return await inner.get() as Awaited<R>;
      });
    if (callback !== undefined) g.linkValue((src) => callback(src.value as Awaited<R>));
    return g;
  }

  /**
   * Iterates over `fn(item)` for every item, in the order of the items, running up to the
   * group's free capacity at once (see the module notes). The items start at once, not at the
   * first step. A call that throws makes its own
   * step reject; the next step goes on with the next item. If a worker is killed (say by
   * `kill()`), the item it was running rejects with the kill exception and no more items
   * start. Breaking out of the loop (`return()`) kills the workers.
   *
   * @typeParam A The item type.
   * @typeParam R What `fn` returns.
   * @param fn The function, sync or async.
   * @param items The items.
   * @param options `maxsize` for back-pressure.
   * @returns An async iterator of results; use one consumer at a time.
   * @throws {RangeError} If `maxsize` is not a positive integer (or `Infinity`).
   * @throws {TypeError} If `fn` is not a function, `items` not iterable, or `options` not an
   *   object.
   */
  imap<A, R>(
    fn: (item: A) => R,
    items: Iterable<A>,
    options?: ImapOptions,
  ): AsyncIterableIterator<Awaited<R>> {
    if (options === undefined) options = {};
    _checkFn(fn);
    _checkBag(options);
    return new MapIterator<A, Awaited<R>>(this, fn as AnyFn, items, true, options);
  }

  /**
   * Like {@linkcode GroupBase.imap}, but yields results in completion order.
   *
   * @typeParam A The item type.
   * @typeParam R What `fn` returns.
   * @param fn The function, sync or async.
   * @param items The items.
   * @param options `maxsize` for back-pressure.
   * @returns An async iterator of results, as they complete.
   * @throws {RangeError} If `maxsize` is not a positive integer (or `Infinity`).
   * @throws {TypeError} If `fn` is not a function, `items` not iterable, or `options` not an
   *   object.
   */
  imapUnordered<A, R>(
    fn: (item: A) => R,
    items: Iterable<A>,
    options?: ImapOptions,
  ): AsyncIterableIterator<Awaited<R>> {
    if (options === undefined) options = {};
    _checkFn(fn);
    _checkBag(options);
    return new MapIterator<A, Awaited<R>>(this, fn as AnyFn, items, false, options);
  }

  /**
   * Maps `fn` over the items (see {@linkcode GroupBase.imap}) and collects the results in
   * order. The first error rejects the call and kills the workers still running. A blocking
   * call.
   *
   * @typeParam A The item type.
   * @typeParam R What `fn` returns.
   * @param fn The function, sync or async.
   * @param items The items.
   * @returns The results, in the order of the items.
   * @throws {unknown} (as a rejection) The first error `fn` throws.
   */
  async map<A, R>(fn: (item: A) => R, items: Iterable<A>): Promise<Awaited<R>[]> {
    const it = this.imap(fn, items);
    const out: Awaited<R>[] = [];
    try {
      for (;;) {
        const step = await it.next();
        if (step.done) return out;
        out.push(step.value);
      }
    } finally {
      await it.return!();
    }
  }

  /**
   * Starts {@linkcode GroupBase.map} in a new greenlet (outside the group) and returns it at
   * once; its value is the list of results.
   *
   * @typeParam A The item type.
   * @typeParam R What `fn` returns.
   * @param fn The function, sync or async.
   * @param items The items.
   * @param options `callback`, called with the results on success.
   * @returns The greenlet running the map.
   * @throws {TypeError} If `fn` or `callback` is not a function, or `options` not an object.
   */
  mapAsync<A, R>(
    fn: (item: A) => R,
    items: Iterable<A>,
    options: ApplyAsyncOptions<Awaited<R>[]> = {},
  ): Greenlet<Awaited<R>[]> {
    _checkFn(fn);
    _checkBag(options);
    const { callback } = options;
    if (callback !== undefined) _checkFn(callback, "callback");
    const g = Greenlet.spawn(() => this.map(fn, items));
    if (callback !== undefined) g.linkValue((src) => callback(src.value as Awaited<R>[]));
    return g;
  }
}

/**
 * A set of greenlets: spawn into it, join it, kill it, map over items with it. Members leave
 * the group when they die. `await using group = new Group()` kills and joins the members
 * still running when the scope ends.
 *
 * @example Structured concurrency
 * ```ts
 * import { Group } from "@x/gevent/pool";
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * let slow;
 * {
 *   await using group = new Group();
 *   group.spawn(() => "quick");
 *   slow = group.spawn(() => sleep(10_000));
 *   assert.equal(group.size, 2);
 *   assert.equal(await group.join({ timeout: 10 }), false);
 *   assert.equal(group.size, 1); // "quick" left when it finished
 * }
 * assert.equal(slow.dead, true); // killed when the scope ended
 * ```
 */
export class Group extends GroupBase {
  /**
   * Creates a group.
   *
   * @param greenlets Greenlets to add at once.
   */
  constructor(greenlets: Iterable<Greenlet<unknown>> = []) {
    super();
    for (const g of greenlets) this.add(g);
  }

  /** @ignore */
  _free(): number {
    return Infinity;
  }

  /** @ignore */
  _waitFree(): Promise<unknown> {
    return Promise.resolve();
  }

  /** @ignore */
  _spawnWait<R>(fn: AnyFn, args: unknown[]): Promise<Greenlet<R>> {
    try {
      return Promise.resolve(this._spawnNow<R>(fn, args));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Creates a greenlet for `fn(...args)`, adds it and starts it.
   *
   * @typeParam A The argument types.
   * @typeParam R What `fn` returns.
   * @param fn A sync or async function.
   * @param args Its arguments.
   * @returns The started greenlet.
   * @throws {TypeError} If `fn` is not a function.
   */
  spawn<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): Greenlet<Awaited<R>> {
    _checkFn(fn);
    return this._spawnNow<Awaited<R>>(fn as AnyFn, args);
  }

  /**
   * Adds a greenlet (started or not); it leaves the group when it dies.
   *
   * @param greenlet The greenlet.
   * @throws {TypeError} If `greenlet` is not a Greenlet.
   */
  add(greenlet: Greenlet<unknown>): void {
    if (!(greenlet instanceof Greenlet)) {
      throw new TypeError(`'greenlet' must be a Greenlet: current value is ${_render(greenlet)}`);
    }
    this._adopt(greenlet);
  }

  /**
   * Adds a greenlet and starts it.
   *
   * @param greenlet The greenlet.
   * @throws {TypeError} If `greenlet` is not a Greenlet.
   */
  start(greenlet: Greenlet<unknown>): void {
    this.add(greenlet);
    greenlet.start();
  }
}

function slotTimedOut(w: _Waiter<boolean, _WaitList>): void {
  w._owner.cancelled();
  w._wake(false);
}
function watchTimedOut(w: _Waiter<number, _WaitList>): void {
  w._owner.cancelled();
  w._wake(0);
}

/**
 * A group with a capacity: `spawn` waits (in FIFO order) while `capacity` members are
 * running. Use it to bound concurrency, as gevent's `Pool`.
 *
 * @example A second spawn waits for a free slot
 * ```ts
 * import { Pool } from "@x/gevent/pool";
 * import { Event } from "@x/gevent/event";
 * import assert from "node:assert/strict";
 *
 * const pool = new Pool(1);
 * const gate = new Event();
 * const first = await pool.spawn(() => gate.wait());
 * assert.equal(pool.full(), true);
 * const second = pool.spawn(() => "second");
 * gate.set();
 * const g = await second; // spawned once the first finished
 * await g.join();
 * assert.equal(first.dead, true);
 * assert.equal(g.value, "second");
 * ```
 */
export class Pool extends GroupBase {
  /** @ignore Spawners waiting for a slot (each gets one reserved). */
  _slotWaiters: _WaitList = new _WaitList(this, "add");
  /** @ignore `waitAvailable` callers (they reserve nothing). */
  _watchers: _WaitList = new _WaitList(this, "spawn/waitAvailable");
  #capacity: number;
  #reserved = 0;

  /**
   * Creates a pool.
   *
   * @param capacity The most members at once; `undefined` or `Infinity` is unbounded. `0`
   *   makes a pool that never has a free slot (as gevent's `Pool(0)`): useful only to code
   *   that checks `freeCount()` or `waitAvailable()` before spawning, since a `spawn` into it
   *   waits forever.
   * @throws {RangeError} If `capacity` is negative or not an integer.
   * @throws {TypeError} If `capacity` is not a number.
   */
  constructor(capacity?: number) {
    super();
    this.#capacity = capacity === undefined
      ? Infinity
      : _checkCount("capacity", capacity, { infinite: true });
  }

  /** The most members at once (`Infinity` when unbounded). */
  get capacity(): number {
    return this.#capacity;
  }

  /**
   * The number of greenlets that could be added now without waiting.
   *
   * @returns The free slots.
   */
  freeCount(): number {
    return Math.max(0, this.#capacity - this._members.size - this.#reserved);
  }

  /**
   * Whether the pool has no free slot.
   *
   * @returns `true` when `spawn` would wait.
   */
  full(): boolean {
    return this.freeCount() === 0;
  }

  /** @ignore */
  _free(): number {
    return this.freeCount();
  }

  /** @ignore Unlike `waitAvailable`, waits even in a pool of capacity 0 (as gevent's). */
  _waitFree(): Promise<unknown> {
    if (this.freeCount() > 0) return Promise.resolve();
    return _waitIn<number>(
      this._watchers,
      undefined,
      undefined,
      watchTimedOut,
    );
  }

  /** @ignore */
  override _memberGone(): void {
    while (this._slotWaiters.live > 0 && this.freeCount() > 0) {
      const w = this._slotWaiters.shift();
      if (w === undefined) break;
      this.#reserved++;
      w._wake(true);
    }
    if (this._watchers.live > 0 && this.freeCount() > 0) {
      const free = this.freeCount();
      for (const w of this._watchers.drain()) w._wake(free);
    }
  }

  /** Waits for a slot and reserves it; resolves false on timeout. */
  #reserve(timeout: number | undefined, signal?: AbortSignal): Promise<boolean> {
    return _waitIn<boolean>(
      this._slotWaiters,
      undefined,
      timeout,
      slotTimedOut,
      signal,
    );
  }

  /** @ignore */
  _spawnWait<R>(fn: AnyFn, args: unknown[]): Promise<Greenlet<R>> {
    try {
      _checkFn(fn);
      if (this.freeCount() > 0) return Promise.resolve(this._spawnNow<R>(fn, args));
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#spawnLater<R>(fn, args);
  }

  async #spawnLater<R>(fn: AnyFn, args: unknown[]): Promise<Greenlet<R>> {
    await this.#reserve(undefined);
    this.#reserved--;
    return this._spawnNow<R>(fn, args);
  }

  /**
   * Creates a greenlet for `fn(...args)`, waiting for a free slot first, then adds and starts
   * it. Spawners wait in FIFO order. A blocking call.
   *
   * Called from a member of this pool while the pool is full, it rejects at once with
   * {@linkcode PoolFull} instead of waiting: the caller holds one of the slots, so it could
   * wait forever (a `Pool(1)` always would; gevent's `spawn` deadlocks there). Use
   * {@linkcode GroupBase.apply} to run `fn` in the caller (it does so from a member),
   * {@linkcode GroupBase.applyAsync} to start it without waiting, or spawn from outside the
   * pool.
   *
   * @typeParam A The argument types.
   * @typeParam R What `fn` returns.
   * @param fn A sync or async function.
   * @param args Its arguments.
   * @returns The started greenlet.
   * @throws {PoolFull} (as a rejection) If called from a member of this full pool.
   * @throws {TypeError} (as a rejection) If `fn` is not a function.
   */
  spawn<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): Promise<Greenlet<Awaited<R>>> {
    if (typeof fn === "function" && this.freeCount() === 0) {
      const me = getCurrent();
      if (me !== undefined && this._members.has(me)) {
        return Promise.reject(
          new PoolFull(
            `Pool.spawn() was called from a member of its own pool while the pool is full: ` +
              `waiting for a slot could deadlock, as the caller holds one. Use apply() to run ` +
              `the function in the caller, applyAsync() to start it without waiting, or spawn ` +
              `from outside the pool`,
          ),
        );
      }
    }
    return this._spawnWait<Awaited<R>>(fn as AnyFn, args);
  }

  /**
   * Adds a greenlet, waiting for a free slot first. A blocking call.
   *
   * @param greenlet The greenlet (started or not).
   * @param options `blocking: false` does not wait; `timeout` in milliseconds.
   * @returns A promise that resolves once it is a member.
   * @throws {PoolFull} (as a rejection) If no slot became free (`blocking: false`, timeout).
   * @throws {TypeError} (as a rejection) If `greenlet` is not a Greenlet, or `options` not an
   *   object.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  add(greenlet: Greenlet<unknown>, options?: PoolAddOptions): Promise<void> {
    if (options === undefined) options = {};
    if (!(greenlet instanceof Greenlet)) {
      return Promise.reject(
        new TypeError(`'greenlet' must be a Greenlet: current value is ${_render(greenlet)}`),
      );
    }
    const bad = _badWaitOptions(options);
    if (bad !== undefined) return Promise.reject(bad);
    const { blocking = true, timeout } = options;
    if (this._members.has(greenlet)) return Promise.resolve();
    if (this.freeCount() > 0) {
      this._adopt(greenlet);
      return Promise.resolve();
    }
    if (!blocking || timeout === 0) return Promise.reject(new PoolFull());
    return this.#addLater(greenlet, timeout, options.signal);
  }

  async #addLater(
    greenlet: Greenlet<unknown>,
    timeout: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    if (!await this.#reserve(timeout, signal)) throw new PoolFull();
    this.#reserved--;
    this._adopt(greenlet);
  }

  /**
   * Adds a greenlet (waiting for a slot, as {@linkcode Pool.add}) and starts it.
   *
   * @param greenlet The greenlet.
   * @param options `blocking`, `timeout`.
   * @returns A promise that resolves once it is started.
   * @throws {PoolFull} (as a rejection) If no slot became free in time.
   * @throws {TypeError} (as a rejection) For a bad `greenlet` or `options`, as `add`.
   */
  async start(greenlet: Greenlet<unknown>, options?: PoolAddOptions): Promise<void> {
    if (options === undefined) options = {};
    await this.add(greenlet, options);
    greenlet.start();
  }

  /**
   * Waits until at least one slot is free, without taking it. A blocking call. In a pool of
   * capacity 0, where no slot ever comes free, it resolves 0 at once (gevent's would wait
   * for the timeout, or forever).
   *
   * @param options `timeout` in milliseconds.
   * @returns The number of free slots; 0 if the timeout elapsed first.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   * @throws {TypeError} (as a rejection) If `options` is not an object.
   */
  waitAvailable(options?: WaitAvailableOptions): Promise<number> {
    if (options === undefined) options = {};
    const bad = _badWaitOptions(options);
    if (bad !== undefined) return Promise.reject(bad);
    const { timeout } = options;
    const free = this.freeCount();
    if (free > 0) return Promise.resolve(free);
    if (timeout === 0 || this.#capacity === 0) return Promise.resolve(0);
    return _waitIn<number>(
      this._watchers,
      undefined,
      timeout,
      watchTimedOut,
      options.signal,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The mapping engine.

interface WorkerState {
  idx: number;
  item: unknown;
}

const VALUE = 1;
const ERROR = 2;

function forgetConsumer(w: _Waiter<void, MapIterator<unknown, unknown>>): void {
  const m = w._owner;
  if (m._waiter === w) m._waiter = undefined;
}
_labelWaits(forgetConsumer, (w) => `${w._owner._label()} (waiting for a result)`);
function noop(): void {}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === "object" || typeof value === "function") &&
    typeof (value as PromiseLike<unknown>).then === "function";
}

// A worker runs items one after the other. A sync `fn` is not awaited: like a greenlet that
// never blocks, the worker keeps the thread; every 1024th item (a count shared with the queues
// and locks) it yields to the loop.
async function runWorker(m: MapIterator<unknown, unknown>, st: WorkerState): Promise<void> {
  const me = getCurrent()!;
  const fn = m._fn;
  for (;;) {
    const idx = st.idx;
    let status = VALUE;
    let value: unknown;
    try {
      value = fn(st.item);
      if (isThenable(value)) value = await value;
    } catch (error) {
      if (me.signal.aborted) throw error; // the worker itself was killed
      status = ERROR;
      value = error;
    }
    st.idx = -1;
    st.item = undefined;
    _clearLocals(me);
    m._deliver(idx, status, value);
    // A kill that arrived while fn ran without blocking is pending: sleep(0) throws it here.
    if (me._hasPending() || _mustYield()) await sleep(0);
    if (!m._take(st)) return;
  }
}

class MapIterator<A, R> implements AsyncIterableIterator<R> {
  _fn: AnyFn;
  _waiter: _Waiter<void, MapIterator<A, R>> | undefined = undefined;
  #group: GroupBase;
  #source: Iterator<A> | undefined;
  #array: readonly A[] | undefined;
  #arrayPos = 0;
  #ordered: boolean;
  #credits: number;
  #nextIndex = 0;
  #sourceDone = false;
  #halted = false;
  #workers = new Set<Greenlet<unknown>>();
  // Outcomes waiting to be yielded, in a ring indexed by position: the item's index (ordered)
  // or the completion number (unordered). Positions in use always lie in
  // [yieldIndex, nextIndex), so the ring grows before that window outgrows it.
  #vals: unknown[] = new Array(256);
  #stat: Uint8Array = new Uint8Array(256);
  #mask = 255;
  #yieldIndex = 0;
  #doneCount = 0;

  /** @ignore What it is, for run-info: `Pool.imap`, `Group.imapUnordered`. */
  _label(): string {
    return `${this.#group.constructor.name}.${this.#ordered ? "imap" : "imapUnordered"}`;
  }

  constructor(
    group: GroupBase,
    fn: AnyFn,
    items: Iterable<A>,
    ordered: boolean,
    options: ImapOptions,
  ) {
    this.#credits = checkMaxsize(options.maxsize);
    if (items === null || typeof (items as Iterable<A>)?.[Symbol.iterator] !== "function") {
      throw new TypeError(`'items' must be iterable: current value is ${_render(items)}`);
    }
    this.#group = group;
    this._fn = fn;
    this.#ordered = ordered;
    if (Array.isArray(items) && items[Symbol.iterator] === Array.prototype[Symbol.iterator]) {
      this.#array = items;
    } else {
      this.#source = items[Symbol.iterator]();
    }
    this.#fill(); // as gevent's, the map starts at once, not at the first step
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  #reserveIndex(): number {
    if (this.#nextIndex - this.#yieldIndex > this.#mask) this.#grow();
    return this.#nextIndex++;
  }

  #grow(): void {
    const n = this.#mask + 1;
    const vals: unknown[] = new Array(n * 2);
    const stat = new Uint8Array(n * 2);
    const mask = n * 2 - 1;
    for (let p = this.#yieldIndex; p < this.#yieldIndex + n; p++) {
      vals[p & mask] = this.#vals[p & this.#mask];
      stat[p & mask] = this.#stat[p & this.#mask];
    }
    this.#vals = vals;
    this.#stat = stat;
    this.#mask = mask;
  }

  /** Takes the next item for a worker; false when none may start now. */
  _take(st: WorkerState): boolean {
    if (this.#sourceDone || this.#credits <= 0) return false;
    const array = this.#array;
    if (array !== undefined) {
      if (this.#arrayPos >= array.length) {
        this.#sourceDone = true;
        this.#wake();
        return false;
      }
      st.item = array[this.#arrayPos++];
      st.idx = this.#reserveIndex();
      this.#credits--;
      return true;
    }
    let r: IteratorResult<A>;
    try {
      r = this.#source!.next();
    } catch (error) {
      this.#sourceDone = true;
      this.#credits--;
      this._deliver(this.#reserveIndex(), ERROR, error);
      return false;
    }
    if (r.done) {
      this.#sourceDone = true;
      this.#wake();
      return false;
    }
    st.item = r.value;
    st.idx = this.#reserveIndex();
    this.#credits--;
    return true;
  }

  _deliver(idx: number, status: number, value: unknown): void {
    const pos = this.#ordered ? idx : this.#doneCount++;
    const k = pos & this.#mask;
    this.#vals[k] = value;
    this.#stat[k] = status;
    if (pos === this.#yieldIndex) this.#wake();
  }

  #wake(): void {
    const w = this._waiter;
    if (w !== undefined) {
      this._waiter = undefined;
      w._wake(undefined);
    }
  }

  /** A worker died: normally, or killed (then its item fails and nothing more starts). */
  _notify(g: Greenlet<unknown>): void {
    this.#workers.delete(g);
    const st = g._args[1] as WorkerState;
    const killed = !g.successful() || g.value !== undefined;
    if (killed) {
      this.#halted = true;
      this.#sourceDone = true;
      if (st.idx >= 0) {
        const idx = st.idx;
        st.idx = -1;
        this._deliver(idx, ERROR, g.exception ?? g.value ?? new GreenletExit());
      }
    }
    if (this.#workers.size === 0) this.#wake();
  }

  #fill(): void {
    const group = this.#group;
    while (!this.#sourceDone && this.#credits > 0 && group._free() > 0) {
      const st: WorkerState = { idx: -1, item: undefined };
      if (!this._take(st)) return;
      const w = group._spawnNow<void>(runWorker, [this, st]);
      this.#workers.add(w as Greenlet<unknown>);
      _addLink(w, this);
    }
  }

  /** The status of the next outcome to yield; 0 if it is not there yet. */
  #ready(): number {
    return this.#stat[this.#yieldIndex & this.#mask];
  }

  #consume(): unknown {
    const k = this.#yieldIndex & this.#mask;
    const value = this.#vals[k];
    this.#vals[k] = undefined;
    this.#stat[k] = 0;
    this.#yieldIndex++;
    this.#credits++;
    return value;
  }

  next(): Promise<IteratorResult<R>> {
    const status = this.#ready();
    if (status === 0) return this.#nextSlow();
    const value = this.#consume();
    this.#fill();
    if (status === ERROR) return Promise.reject(value);
    return Promise.resolve({ value: value as R, done: false });
  }

  async #nextSlow(): Promise<IteratorResult<R>> {
    for (;;) {
      const status = this.#ready();
      if (status !== 0) {
        const value = this.#consume();
        this.#fill();
        if (status === ERROR) throw value;
        return { value: value as R, done: false };
      }
      if (!this.#halted) this.#fill();
      if (this.#workers.size === 0) {
        if (this.#sourceDone || this.#halted) return { value: undefined, done: true };
        if (this.#credits > 0) {
          await this.#group._waitFree();
          continue;
        }
      }
      const w = _begin<void, MapIterator<A, R>>();
      if (w instanceof Promise) await w;
      const waiter = w as _Waiter<void, MapIterator<A, R>>;
      waiter._owner = this;
      waiter._onCancel = forgetConsumer;
      this._waiter = waiter;
      waiter._arm(undefined, noop);
      await waiter.promise;
    }
  }

  async return(): Promise<IteratorResult<R>> {
    this.#halted = true;
    if (!this.#sourceDone) {
      this.#sourceDone = true;
      try {
        this.#source?.return?.();
      } catch {
        // The source's cleanup failing does not stop ours.
      }
    }
    if (this.#workers.size > 0) await killAll([...this.#workers]);
    return { value: undefined, done: true };
  }
}
