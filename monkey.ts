/**
 * Monkey patching: code that has never heard of greenlets becomes killable and time-limited.
 *
 * gevent's `monkey` replaces the standard library's blocking networking with cooperative
 * counterparts. Nothing blocks the thread in JavaScript, so here the benefit is control:
 * after {@linkcode patchAll}, unaware code (an SDK, an HTTP client, a database driver) running
 * inside a greenlet obeys `kill()`, `Timeout`, `withTimeout` and the hub's resolver.
 *
 * | area | patched | inside a greenlet |
 * | --- | --- | --- |
 * | {@linkcode patchFetch} | `globalThis.fetch`; `Response.prototype`'s body readers | aborts with `currentSignal()` (and the caller's signal); the request and body reads are blocking calls |
 * | {@linkcode patchSocket} | `Deno.connect`, `connectTls`, `listen`, `listenTls`, `startTls`; `node:net`'s `Socket.prototype` `connect`/`write`/`push` | connect, read, write, accept, handshake and the conn's streams are blocking calls; an interrupted one closes its connection. A `node:net` request (a database driver's query) is ended: PostgreSQL cancel, Redis unblock or error reply, else the socket is destroyed |
 * | {@linkcode patchDns} | `Deno.resolveDns`; `node:dns` default `lookup` | A/AAAA lookups go through `getHub().resolver` (its cache); others abort on kill |
 * | {@linkcode patchSubprocess} | `Deno.Command` | the child gets SIGTERM (then SIGKILL) when the greenlet is killed or times out |
 *
 * Guarantees: outside every greenlet and every `withTimeout`, each patched function behaves
 * exactly like the original: same results, same errors, same types. Patching is idempotent;
 * {@linkcode unpatchAll} restores every original. The library's own I/O (`socket.ts`,
 * `resolver.ts`) always uses the originals, so it never goes through a patch.
 *
 * What cannot be patched: names bound before patching (`const { connect } = Deno`),
 * named imports and `import * as` of `node:dns` (ES module bindings are read-only; only the
 * default export, which `require()` returns, is writable), `node:dns`'s `promises` API, and
 * Deno's own users of the network: `fetch`'s connection pool and name lookups, `node:http`
 * and `Deno.serve` never call the patched functions. (`node:net` sockets are reached however
 * they are made: the patches are on `net.Socket.prototype`.)
 *
 * Sharp edges:
 * - "Outside any greenlet" includes a `Timeout` started at top level with `Timeout.start()`:
 *   it does not reach patched calls. Use `withTimeout` (which gives the call a flow of its
 *   own) or run the code in a greenlet.
 * - A `Timeout` is an `Error`: code that catches every error and retries (`ky` retries
 *   network errors by default) swallows it, and the retry runs without a limit. A kill stays
 *   in force: the greenlet's signal stays aborted, so retries fail at once.
 * - Closing a `TlsConn` during its handshake rejects the handshake but, in Deno, leaves the
 *   TCP connection open: an interrupted TLS handshake does not release its socket.
 * - A connection from a patched function wrapped in `socket.Socket` behaves like an unaware
 *   one: an interrupted `recv` closes it. Use `socket.createConnection` for a socket whose
 *   interrupted reads lose nothing.
 *
 * @example Unaware code under a timeout
 * ```ts
 * import { monkey, withTimeout } from "@x/gevent";
 * import assert from "node:assert/strict";
 *
 * using server = Deno.listen({ hostname: "127.0.0.1", port: 0 }); // accepts, never answers
 * const port = server.addr.port;
 * const unaware = async () => {
 *   const conn = await Deno.connect({ hostname: "127.0.0.1", port });
 *   try {
 *     return await conn.read(new Uint8Array(16)); // waits forever unpatched
 *   } finally {
 *     conn.close();
 *   }
 * };
 * monkey.patchAll();
 * try {
 *   await assert.rejects(withTimeout(50, unaware), { name: "Timeout" });
 * } finally {
 *   monkey.unpatchAll();
 * }
 * (await server.accept()).close();
 * ```
 *
 * @module
 */

import { _checkMs } from "./_check.ts";
import type { _Area, _Patch, _PatchOptions } from "./_platform.ts";
import { _isDeno, _needsDeno } from "./_runtime.ts";
import { _patches as dnsPatches } from "./_dns.ts";
import { _patches as socketPatches } from "./_conn.ts";
import { _patches as fetchPatches } from "./_fetch.ts";
import { _patches as subprocessPatches } from "./_subprocess.ts";

/** Options of {@linkcode patchSubprocess}. */
export interface PatchSubprocessOptions {
  /**
   * Milliseconds between SIGTERM and SIGKILL when a greenlet's child is terminated
   * (default 1000).
   */
  killGrace?: number;
}

/** Options of {@linkcode patchAll}: every area is patched unless set to `false`. */
export interface PatchAllOptions {
  /** `Deno.resolveDns` and `node:dns`'s `lookup` (default `true`). */
  dns?: boolean;
  /** `Deno.connect` and friends, `node:net` sockets (default `true`). */
  socket?: boolean;
  /** `globalThis.fetch` (default `true`). */
  fetch?: boolean;
  /** `Deno.Command`: `true`, `false`, or its options (default `true`). */
  subprocess?: boolean | PatchSubprocessOptions;
}

interface Installed {
  target: object;
  name: string;
  original: unknown;
  replacement: unknown;
  area: _Area;
  /** For an accessor, its original descriptor (restored as a whole). */
  descriptor?: PropertyDescriptor;
  /** The property was inherited (a prototype's method): restoring deletes the own copy. */
  inherited?: boolean;
}

const DECLARED: Record<_Area, readonly _Patch[]> = {
  dns: dnsPatches,
  socket: socketPatches,
  fetch: fetchPatches,
  subprocess: subprocessPatches,
};

/** Every patch in force, in the order installed. */
const installed: Installed[] = [];
/** The options each area was patched with (as JSON), to warn when they change. */
const areaOptions = new Map<_Area, string>();
let lastAllOptions: string | undefined;
let warned = false;

function warnOnce(what: string): void {
  if (warned) return;
  warned = true;
  console.warn(
    `monkey: ${what} was patched again with different options; areas already patched stay ` +
      `patched (call unpatchAll() first to start over)`,
  );
}

function checkTarget(target: unknown): void {
  if (target === null || (typeof target !== "object" && typeof target !== "function")) {
    throw new TypeError(`'target' must be an object: current value is ${describe(target)}`);
  }
}

function checkName(name: unknown): void {
  if (typeof name !== "string") {
    throw new TypeError(`'name' must be a string: current value is ${describe(name)}`);
  }
}

function find(target: object, name: string): Installed | undefined {
  for (const p of installed) if (p.target === target && p.name === name) return p;
  return undefined;
}

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function checkGrace(options: unknown): number {
  if (options === undefined) return 1000;
  if (options === null || typeof options !== "object") {
    throw new TypeError(`'options' must be an object: current value is ${describe(options)}`);
  }
  const { killGrace = 1000 } = options as PatchSubprocessOptions;
  _checkMs("killGrace", killGrace);
  return killGrace;
}

function patchArea(area: _Area, options: _PatchOptions, key: string): void {
  if (!_isDeno) _needsDeno(`monkey.patch${area[0].toUpperCase()}${area.slice(1)}()`);
  const before = areaOptions.get(area);
  if (before !== undefined) {
    if (before !== key) warnOnce(`the ${area} area`);
    return;
  }
  areaOptions.set(area, key);
  for (const decl of DECLARED[area]) {
    const target = typeof decl.target === "function" ? decl.target() : decl.target;
    const { name } = decl;
    if (find(target, name) !== undefined) continue;
    if (decl.getter === true) {
      const descriptor = Object.getOwnPropertyDescriptor(target, name);
      if (descriptor?.get === undefined) continue;
      const replacement = decl.make(descriptor.get, options) as () => unknown;
      Object.defineProperty(target, name, { ...descriptor, get: replacement });
      installed.push({ target, name, original: descriptor.get, replacement, area, descriptor });
      continue;
    }
    const original = (target as Record<string, unknown>)[name];
    const inherited = !Object.hasOwn(target, name);
    const replacement = decl.make(original, options);
    (target as Record<string, unknown>)[name] = replacement;
    installed.push({ target, name, original, replacement, area, inherited });
  }
}

/**
 * Patches every area (DNS, sockets, fetch, subprocesses) unless an option turns one off.
 * Call it once, early, before the unaware code captures the functions it uses. Patching
 * again is harmless; with different options it warns once and keeps what is patched.
 *
 * @param options Areas to leave alone (`false`) and the subprocess options.
 * @throws {TypeError} If `options` is not an object or an option has the wrong type.
 * @throws {RangeError} For a negative or non-finite `killGrace`.
 *
 * @example
 * ```ts
 * import { getOriginal, isPatched, patchAll, unpatchAll } from "@x/gevent/monkey";
 * import assert from "node:assert/strict";
 *
 * const connect = Deno.connect;
 * patchAll({ subprocess: false });
 * try {
 *   assert.ok(isPatched(Deno, "connect"));
 *   assert.ok(!isPatched(Deno, "Command"));
 *   assert.equal(getOriginal(Deno, "connect"), connect);
 * } finally {
 *   unpatchAll();
 * }
 * assert.equal(Deno.connect, connect);
 * ```
 */
export function patchAll(options?: PatchAllOptions): void {
  if (options === undefined) options = {};
  if (options === null || typeof options !== "object") {
    throw new TypeError(`'options' must be an object: current value is ${describe(options)}`);
  }
  for (const area of ["dns", "socket", "fetch", "subprocess"] as const) {
    const v = options[area];
    if (
      v !== undefined && typeof v !== "boolean" && !(area === "subprocess" && typeof v === "object")
    ) {
      throw new TypeError(`'${area}' must be a boolean: current value is ${describe(v)}`);
    }
  }
  const sub = options.subprocess;
  const grace = checkGrace(typeof sub === "object" ? sub : undefined);
  const key = JSON.stringify({
    dns: options.dns !== false,
    socket: options.socket !== false,
    fetch: options.fetch !== false,
    subprocess: sub === false ? false : grace,
  });
  if (lastAllOptions !== undefined && lastAllOptions !== key) warnOnce("patchAll()");
  lastAllOptions = key;
  if (options.dns !== false) patchDns();
  if (options.socket !== false) patchSocket();
  if (options.fetch !== false) patchFetch();
  if (sub !== false) patchSubprocess({ killGrace: grace });
}

/**
 * Patches `Deno.resolveDns` and `node:dns`'s default `lookup`. Inside a greenlet, `A` and
 * `AAAA` lookups (without a `nameServer` or `signal` option) go through `getHub().resolver`:
 * its name servers, timeouts and cache; errors are still `Deno.errors.NotFound` /
 * `TimedOut`. Other record types call Deno's function with a signal that a kill or Timeout
 * aborts. Each lookup is a blocking call.
 *
 * @example
 * ```ts
 * import { isPatched, patchDns, unpatchAll } from "@x/gevent/monkey";
 * import assert from "node:assert/strict";
 *
 * patchDns();
 * try {
 *   assert.ok(isPatched(Deno, "resolveDns"));
 * } finally {
 *   unpatchAll();
 * }
 * ```
 */
export function patchDns(): void {
  patchArea("dns", { killGrace: 1000 }, "{}");
}

/**
 * Patches `Deno.connect`, `Deno.connectTls`, `Deno.listen`, `Deno.listenTls`, `Deno.startTls`
 * and `node:net`'s `Socket.prototype` (`connect`, `write`, `push`).
 *
 * The connections and listeners they return are Deno's own objects with cooperative
 * `read`, `write`, `handshake`, `accept`, `readable` and `writable`: inside a greenlet each
 * operation is a blocking call. An interrupted operation closes its connection (or
 * listener), because Deno cannot cancel a pending read except by closing and unaware code
 * cannot resume a read it never saw finish; `close()` is then harmless and later calls
 * fail with `Deno.errors.BadResource`. (`socket.ts`'s `Socket`, by contrast, keeps an
 * interrupted read outstanding and loses no bytes.) The streams are cooperative when first
 * asked for inside a greenlet, Deno's own otherwise.
 *
 * `node:net` sockets are event emitters that drivers wrap in promises of their own, often on
 * a connection another greenlet opened (a pool made at module level). So every socket's
 * requests are tracked with the flow that wrote each one (PostgreSQL and Redis are framed
 * exactly; other protocols are guessed: a write after a read starts a request). A kill or
 * Timeout thrown into a greenlet that is in no blocking call ends the requests it has on the
 * wire: PostgreSQL gets a `CancelRequest` (the connection stays; a transaction left open is
 * rolled back before another greenlet uses it), a Redis command gets an error reply instead
 * of its reply (a blocked one is ended with `CLIENT UNBLOCK`), anything else destroys the
 * socket with the exception as its error. The driver then fails the call, and the greenlet
 * ends with the kill's exception (`withTimeout` with its Timeout or `timeoutValue`), not with
 * the driver's error. A request the driver sends later from its own queue, on behalf of a
 * greenlet it cannot name, is not reached: see the README's "Database drivers".
 *
 * @example
 * ```ts
 * import { patchSocket, unpatchAll } from "@x/gevent/monkey";
 * import { spawn } from "@x/gevent/greenlet";
 * import assert from "node:assert/strict";
 *
 * using server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * patchSocket();
 * try {
 *   const reader = spawn(async () => {
 *     using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
 *     await conn.read(new Uint8Array(8)); // the server never writes
 *   });
 *   using peer = await server.accept();
 *   await reader.kill(); // returns once the read was interrupted and the conn closed
 *   assert.equal(await peer.read(new Uint8Array(8)), null); // the server sees the close
 * } finally {
 *   unpatchAll();
 * }
 * ```
 */
export function patchSocket(): void {
  patchArea("socket", { killGrace: 1000 }, "{}");
}

/**
 * Patches `globalThis.fetch`. Inside a greenlet the request runs with the greenlet's
 * `currentSignal()` combined (`AbortSignal.any`) with any signal the caller passed, and the
 * request and every read of the response body are blocking calls: a kill or Timeout rejects
 * the pending one with that exception, once (it is not thrown again at the next blocking
 * call, in a `finally`), and the request is aborted, which closes its connection.
 * The body readers are patched on `Response.prototype` (`text`, `json`, `arrayBuffer`,
 * `bytes`, `blob`, `formData`, `clone` and the `body` getter), so responses keep their
 * prototype; inside a greenlet, reading any response's body is a blocking call, and a
 * `body` stream first asked for inside a greenlet is one of blocking reads. A response whose
 * body is never read is still aborted, and its connection released, when the greenlet that
 * fetched it is killed; so is one whose body is still unread when a later Timeout fires in
 * that greenlet (`currentSignal()` semantics): read bodies promptly.
 *
 * @example
 * ```ts
 * import { patchFetch, unpatchAll } from "@x/gevent/monkey";
 * import { withTimeout } from "@x/gevent/timeout";
 * import assert from "node:assert/strict";
 *
 * using server = Deno.listen({ hostname: "127.0.0.1", port: 0 }); // never answers
 * patchFetch();
 * try {
 *   const url = `http://127.0.0.1:${server.addr.port}/`;
 *   await assert.rejects(withTimeout(50, () => fetch(url)), { name: "Timeout" });
 * } finally {
 *   unpatchAll();
 * }
 * (await server.accept()).close();
 * ```
 */
export function patchFetch(): void {
  patchArea("fetch", { killGrace: 1000 }, "{}");
}

/**
 * Patches `Deno.Command`. A child started by `spawn()` or `output()` inside a greenlet gets
 * SIGTERM when that greenlet is killed or a Timeout of its fires, and SIGKILL `killGrace`
 * milliseconds later if it is still running. `output()` and the child's `status` and
 * `output()` are blocking calls that settle only after the child exited, so a blocking
 * `kill()` returns once the child is gone. `new Deno.Command(...)` is still an instance of
 * the original class. `outputSync()` blocks the thread and cannot be interrupted. Inside a
 * greenlet, `child.status` is a blocking call that a kill rejects (after the child exited):
 * await it, or attach a rejection handler, rather than leave it dangling.
 *
 * @param options `killGrace` in milliseconds (default 1000).
 * @throws {TypeError} If `options` is not an object or `killGrace` not a number.
 * @throws {RangeError} For a negative or non-finite `killGrace`.
 *
 * @example
 * ```ts
 * import { patchSubprocess, unpatchAll } from "@x/gevent/monkey";
 * import { spawn } from "@x/gevent/greenlet";
 * import { sleep } from "@x/gevent/hub";
 * import assert from "node:assert/strict";
 *
 * patchSubprocess({ killGrace: 500 });
 * try {
 *   const g = spawn(() => new Deno.Command("sleep", { args: ["30"] }).output());
 *   await sleep(0); // the greenlet starts and spawns the child
 *   await g.kill(); // SIGTERM; resolves once the child has exited
 *   assert.ok(g.dead);
 * } finally {
 *   unpatchAll();
 * }
 * ```
 */
export function patchSubprocess(options?: PatchSubprocessOptions): void {
  const killGrace = checkGrace(options);
  patchArea("subprocess", { killGrace }, JSON.stringify({ killGrace }));
}

/**
 * Whether `target[name]` (or, without a name, anything on `target`) is patched now.
 *
 * @param target The object holding the global (`Deno`, `globalThis`, a module's default).
 * @param name The property name.
 * @returns `true` if this module replaced it and it is not restored yet.
 * @throws {TypeError} If `target` is not an object or `name` is not a string.
 *
 * @example
 * ```ts
 * import { isPatched, patchFetch, unpatchAll } from "@x/gevent/monkey";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isPatched(globalThis, "fetch"), false);
 * patchFetch();
 * try {
 *   assert.equal(isPatched(globalThis, "fetch"), true);
 *   assert.equal(isPatched(globalThis), true);
 * } finally {
 *   unpatchAll();
 * }
 * ```
 */
export function isPatched(target: object, name?: string): boolean {
  checkTarget(target);
  if (name !== undefined) checkName(name);
  if (name === undefined) return installed.some((p) => p.target === target);
  return find(target, name) !== undefined;
}

/**
 * The value `target[name]` had before this module patched it; the current value when it is
 * not patched (gevent's `get_original`). For a patched accessor (`Response.prototype.body`),
 * the original getter.
 *
 * @typeParam T The object's type.
 * @typeParam K The property name.
 * @param target The object holding the global.
 * @param name The property name.
 * @returns The original value.
 * @throws {TypeError} If `target` is not an object or `name` is not a string.
 *
 * @example
 * ```ts
 * import { getOriginal, patchSocket, unpatchAll } from "@x/gevent/monkey";
 * import assert from "node:assert/strict";
 *
 * assert.equal(getOriginal(Deno, "connect"), Deno.connect);
 * const before = Deno.connect;
 * patchSocket();
 * try {
 *   assert.notEqual(Deno.connect, before);
 *   assert.equal(getOriginal(Deno, "connect"), before);
 * } finally {
 *   unpatchAll();
 * }
 * ```
 */
export function getOriginal<T extends object, K extends keyof T & string>(
  target: T,
  name: K,
): T[K] {
  checkTarget(target);
  checkName(name);
  const p = find(target, name);
  return p === undefined ? target[name] : p.original as T[K];
}

/**
 * Restores every original this module replaced, in reverse order, and forgets the options
 * it was patched with. Objects created while patched (connections, responses, children)
 * keep their cooperative behaviour.
 *
 * @example
 * ```ts
 * import { patchAll, unpatchAll } from "@x/gevent/monkey";
 * import assert from "node:assert/strict";
 *
 * const { fetch, connect } = { fetch: globalThis.fetch, connect: Deno.connect };
 * patchAll();
 * unpatchAll();
 * assert.equal(globalThis.fetch, fetch);
 * assert.equal(Deno.connect, connect);
 * ```
 */
export function unpatchAll(): void {
  for (let i = installed.length - 1; i >= 0; i--) {
    const p = installed[i];
    if (p.descriptor !== undefined) Object.defineProperty(p.target, p.name, p.descriptor);
    else if (p.inherited) delete (p.target as Record<string, unknown>)[p.name];
    else (p.target as Record<string, unknown>)[p.name] = p.original;
  }
  installed.length = 0;
  areaOptions.clear();
  lastAllOptions = undefined;
}
