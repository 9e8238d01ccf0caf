/**
 * Internal: the platform's networking functions as they were when the library was loaded, the
 * shape of a monkey-patch declaration, and the helper that turns a platform promise into a
 * blocking call of the library.
 *
 * The library's own I/O (`resolver.ts`, `socket.ts`) calls the functions saved here, never the
 * globals, so `monkey.patchAll()` can never route the library through itself.
 *
 * @module
 */

import { _begin, _current, _inHub, _labelWaits, _root, type _Waiter } from "./hub.ts";
import { _needsDeno } from "./_runtime.ts";

type DenoApi = typeof Deno;

/** A stand-in for a Deno function on another runtime: using it says what is missing. */
function missing(name: string): never {
  return function (): never {
    _needsDeno(`Deno.${name} (used by @x/gevent's networking modules)`);
  } as never;
}

// deno-lint-ignore no-explicit-any
const D: DenoApi | undefined = (globalThis as any).Deno;

/**
 * @ignore The `Deno` namespace, or on another runtime an empty object: the target of the
 * monkey patches (which refuse to run there).
 */
export const _denoNamespace: object = D ?? {};

/** @ignore The platform functions the library itself uses, saved before any patching. */
export const _deno: {
  connect: DenoApi["connect"];
  connectTls: DenoApi["connectTls"];
  listen: DenoApi["listen"];
  listenTls: DenoApi["listenTls"];
  startTls: DenoApi["startTls"];
  resolveDns: DenoApi["resolveDns"];
} = {
  connect: D?.connect ?? missing("connect"),
  connectTls: D?.connectTls ?? missing("connectTls"),
  listen: D?.listen ?? missing("listen"),
  listenTls: D?.listenTls ?? missing("listenTls"),
  startTls: D?.startTls ?? missing("startTls"),
  resolveDns: D?.resolveDns ?? missing("resolveDns"),
  // Not `Deno.Command`: reading it loads Deno's process module (~7 ms of start-up), and the
  // library never runs a command itself (`monkey.patchSubprocess()` reads it when it patches).
};

/** @ignore The areas of `monkey.ts`: one `patchXxx()` function each. */
export type _Area = "dns" | "socket" | "fetch" | "subprocess";

/** @ignore Options handed to every replacement factory. */
export interface _PatchOptions {
  /** Milliseconds between SIGTERM and SIGKILL for a killed greenlet's child process. */
  killGrace: number;
}

/**
 * @ignore One global an I/O module implements: `target[name]` is replaced by
 * `make(original, options)` when its area is patched.
 */
export interface _Patch {
  /** Which `patchXxx()` installs it. */
  area: _Area;
  /**
   * The object that holds the global (`Deno`, `globalThis`, a `node:` default export), or a
   * function that gives it: `node:` modules are loaded when first patched, not at import.
   */
  target: object | (() => object);
  /** The property name. */
  name: string;
  /** The property is an accessor: `make` receives and returns its getter. */
  getter?: boolean;
  /** Builds the replacement from the value being replaced. */
  // deno-lint-ignore no-explicit-any
  make(original: any, options: _PatchOptions): unknown;
}

/**
 * @ignore Whether the caller runs in a greenlet (or a `withTimeout` flow): only there do the
 * patched functions behave differently from the originals.
 */
export function _cooperative(): boolean {
  return _current() !== _root && !_inHub();
}

function noop(): void {}

interface Op<T> {
  interrupted: (() => void) | undefined;
  orphan: ((value: T) => void) | undefined;
}

function onInterrupt<T>(w: _Waiter<T, Op<T>>): void {
  const op = w._owner;
  const f = op.interrupted;
  op.interrupted = undefined;
  f?.();
}
_labelWaits(onInterrupt, () => "a patched platform call (Deno.connect, Deno.resolveDns, ...)");

/**
 * @ignore Runs `start()` as a blocking call of the current flow: `kill()` or a `Timeout`
 * rejects the returned promise at once (the exception is delivered here, once), then calls
 * `interrupted()` to release what the operation holds (also when an exception was already
 * pending, so the operation never started). A value that arrives after the
 * interruption is handed to `orphan()` (to close a connection nobody will use).
 */
export function _blocking<T>(
  start: () => Promise<T>,
  interrupted?: () => void,
  orphan?: (value: T) => void,
): Promise<T> {
  const w = _begin<T, Op<T>>();
  if (w instanceof Promise) {
    // An exception was pending (a kill that arrived between two calls): the operation is
    // interrupted before it starts, and what it would have used is released all the same.
    interrupted?.();
    return w;
  }
  const op: Op<T> = { interrupted, orphan };
  w._owner = op;
  w._onCancel = onInterrupt;
  w._arm(undefined, noop);
  let p: Promise<T>;
  try {
    p = start();
  } catch (error) {
    op.interrupted = undefined;
    w._fail(error);
    return w.promise;
  }
  p.then(
    (value) => {
      if (w._done) {
        op.orphan?.(value);
        return;
      }
      op.interrupted = undefined;
      w._wake(value);
    },
    (error) => {
      op.interrupted = undefined;
      w._fail(error);
    },
  );
  return w.promise;
}

/** @ignore `signal` combined with the current flow's `currentSignal()`-like signal. */
export function _combine(own: AbortSignal, signal: AbortSignal | null | undefined): AbortSignal {
  return signal === undefined || signal === null ? own : AbortSignal.any([own, signal]);
}

/**
 * @ignore A `node:` built-in module, loaded on first use: importing `node:net` costs a program
 * tens of milliseconds of start-up even when it never touches a socket.
 */
export function _builtin<T>(name: string): T {
  // deno-lint-ignore no-explicit-any
  const load = (globalThis as any).process?.getBuiltinModule;
  if (typeof load !== "function") _needsDeno(`${name} (process.getBuiltinModule)`);
  return load(name) as T;
}
