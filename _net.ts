/**
 * Internal: `node:net` sockets made killable, for the code that uses them most, database
 * drivers (`pg`, `postgres`, `ioredis`, `redis`), installed by `monkey.patchSocket()`.
 *
 * A driver awaits its own promises, not a blocking call of this library, and it often does so
 * on a connection that another greenlet (or no greenlet) opened: a pool made at module level.
 * So the patches on `net.Socket.prototype` (`connect`, `write`, `push`) keep, for every socket,
 * the requests on the wire and, for each, the flow that sent it (`_wire.ts` frames PostgreSQL
 * and Redis exactly). When an exception is thrown into a flow that is in no blocking call
 * (`hub.ts` calls {@linkcode interrupt}), the requests that flow has on the wire are cut off:
 *
 * - a Redis command blocked on the server (`BLPOP`, `XREAD BLOCK`, ...) at the head of its
 *   connection is ended with `CLIENT UNBLOCK <id> ERROR` from a connection of our own: the
 *   driver's promise rejects and the connection, shared or not, goes on serving;
 * - anything else destroys the socket with the exception as its error: the driver fails what
 *   was on it (its pool then drops the connection); for PostgreSQL a `CancelRequest` is sent
 *   too, because the server otherwise keeps running the statement (and holding its locks).
 *
 * The flow that sent a request is the one running when the driver wrote it. A driver that
 * writes later, from its own callbacks (the first query of a new connection, sent once the
 * handshake is done), writes in no greenlet: such a request is credited to the greenlet that
 * opened the connection, once. A request that a driver takes from its own queue (every
 * pooled connection busy) and sends on behalf of a greenlet it cannot name is nobody's: a
 * kill of its greenlet cannot reach it (see `greenlet.ts`: the greenlet is then declared dead
 * after a grace and the request finishes unobserved).
 *
 * @module
 */

import type net from "node:net";
import type buffer from "node:buffer";
import { _current, type _Flow, _inHub, _root, _setForeignInterrupter } from "./hub.ts";
import { _isBlockingCommand, _pgCancelRequest, _pgQuery, _track, type _Tracker } from "./_wire.ts";
import { _builtin, type _Patch } from "./_platform.ts";
import { Greenlet } from "./greenlet.ts";

const WIRE: unique symbol = Symbol("gevent.wire");

interface Request {
  /** The flow waiting for the reply; `undefined` when unknown or already cut off. */
  owner: _Flow | undefined;
  /** The command (Redis), upper case, or "". */
  command: string;
  /** The exception it was cut off with, while the server is asked to end it. */
  cut?: unknown;
  /** Destroys the connection if the server has not ended the request in time. */
  timer?: ReturnType<typeof setTimeout>;
  /** The flow it was cut off for. */
  cutFor?: _Flow;
  /** Written by this module (a `ROLLBACK`): its reply is not the driver's to see. */
  ours?: boolean;
  /** What the driver gets instead of the reply (an error reply: the request was cut off). */
  replace?: Uint8Array;
}

/** Milliseconds a cancel is given before the connection is destroyed instead. */
const CANCEL_GRACE = 500;

type Sock = net.Socket & { [WIRE]?: Wire | null };

/** What we know of one socket's traffic. */
class Wire {
  tracker: _Tracker | undefined = undefined;
  /** Requests sent and not answered yet, oldest first. */
  requests: Request[] = [];
  /**
   * The flow that connected it: credited with the requests written in no flow (the driver's
   * own callbacks) until it is seen doing anything else.
   */
  requester: _Flow | undefined = undefined;
  /** Replies received so far. */
  answered = 0;
  lost = false;
  /**
   * PostgreSQL: the flow whose cut-off request left a transaction open. The first request
   * another flow writes is preceded by a `ROLLBACK` of ours, so the next user of a pooled
   * connection never works inside the killed greenlet's transaction.
   */
  dirty: _Flow | undefined = undefined;
  /** Part of the reply to the oldest request has been received (and passed on). */
  midReply = false;
  /** The flow this wire was last listed under in `byFlow` (saves a lookup per write). */
  indexed: _Flow | undefined = undefined;
  readonly socket: net.Socket;
  constructor(socket: net.Socket) {
    this.socket = socket;
  }
}

/** Whether any socket was ever connected inside a greenlet (then `requester` claims exist). */
let claimsMade = false;

/** Sockets on which each flow has (or had) requests, to find them when it is interrupted. */
const byFlow = new WeakMap<_Flow, Set<Wire>>();

function flowOf(): _Flow | undefined {
  const ctx = _current();
  return ctx === _root || _inHub() ? undefined : ctx;
}

function wireOf(sock: Sock): Wire | undefined {
  const w = sock[WIRE];
  if (w === null) return undefined; // one of ours (a cancel or unblock connection)
  return w ?? (sock[WIRE] = new Wire(sock));
}

function index(ctx: _Flow, w: Wire): void {
  if (w.indexed === ctx) return;
  w.indexed = ctx;
  let set = byFlow.get(ctx);
  if (set === undefined) byFlow.set(ctx, set = new Set());
  set.add(w);
}

const encoder = new TextEncoder();

/** Reused for the strings drivers write (node-redis): framing only reads it, at once. */
const scratch = new Uint8Array(4096);

function bytesOf(chunk: unknown, encoding: unknown): Uint8Array | undefined {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk !== "string") return undefined;
  if (
    encoding !== undefined && typeof encoding !== "function" && encoding !== "utf8" &&
    encoding !== "utf-8"
  ) {
    return undefined;
  }
  const { read, written } = encoder.encodeInto(chunk, scratch);
  return read === chunk.length ? scratch.subarray(0, written) : encoder.encode(chunk);
}

/** A flow that can no longer send anything: a dead or killed greenlet. */
function killedReason(ctx: _Flow): unknown {
  if (!(ctx instanceof Greenlet)) return undefined;
  const signal = ctx._killCtl?.signal;
  if (signal?.aborted) return signal.reason;
  return undefined;
}

function asError(exc: unknown): Error {
  return exc instanceof Error ? exc : new Error(String(exc));
}

function makeConnect(original: net.Socket["connect"]): net.Socket["connect"] {
  return function (this: Sock, ...args: unknown[]): net.Socket {
    const ctx = flowOf();
    if (ctx !== undefined) {
      const w = wireOf(this);
      if (w !== undefined) {
        w.requester = ctx;
        claimsMade = true;
        index(ctx, w);
      }
    }
    const sock = (original as (...a: unknown[]) => net.Socket).apply(this, args);
    if (ctx !== undefined) {
      // A greenlet that is killed (a driver retrying in its callbacks) connects no more.
      const reason = killedReason(ctx);
      if (reason !== undefined) sock.destroy(asError(reason));
    }
    return sock;
  } as net.Socket["connect"];
}

function makeWrite(original: net.Socket["write"]): net.Socket["write"] {
  return function (this: Sock, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    const w = wireOf(this);
    if (w !== undefined && !w.lost) {
      if (w.dirty !== undefined && w.dirty !== flowOf()) rollback(w, original);
      record(w, chunk, encoding);
    }
    return (original as (...a: unknown[]) => boolean).call(this, chunk, encoding, cb);
  } as net.Socket["write"];
}

const ROLLBACK = _pgQuery("ROLLBACK");

function rollback(w: Wire, write: net.Socket["write"]): void {
  w.dirty = undefined;
  if (!w.tracker?.inTransaction) return;
  w.tracker.out(ROLLBACK);
  w.requests.push({ owner: undefined, command: "", ours: true });
  (write as (chunk: Uint8Array) => boolean).call(w.socket, ROLLBACK);
}

function record(w: Wire, chunk: unknown, encoding: unknown): void {
  const bytes = bytesOf(chunk, encoding);
  if (bytes === undefined || bytes.length === 0) return;
  const tracker = w.tracker ??= _track(bytes);
  const n = tracker.out(bytes);
  if (n < 0) {
    w.lost = true;
    w.requests.length = 0;
    return;
  }
  if (n === 0) return;
  let owner = flowOf();
  if (owner === undefined) {
    owner = claimant(w);
  } else {
    moved(owner, w);
    index(owner, w);
  }
  for (let i = 0; i < n; i++) w.requests.push({ owner, command: tracker.lastCommand });
}

function forget(set: Set<Wire>, w: Wire, ctx: _Flow): void {
  set.delete(w);
  if (w.indexed === ctx) w.indexed = undefined;
}

/** The flow credited with a request the driver writes in no flow, if any. */
function claimant(w: Wire): _Flow | undefined {
  const ctx = w.requester;
  if (ctx === undefined) return undefined;
  // Gone on to a blocking call, or dead: it no longer waits for this connection.
  if (ctx._wait !== undefined || (ctx instanceof Greenlet && ctx.dead)) {
    w.requester = undefined;
    return undefined;
  }
  return ctx;
}

/** `ctx` writes a request on `w` itself: it is done waiting for the connections it opened. */
function moved(ctx: _Flow, w: Wire): void {
  if (w.requester !== undefined && (w.requester !== ctx || w.answered > 0)) {
    w.requester = undefined;
  }
  if (!claimsMade) return; // no connection was ever opened inside a greenlet
  const set = byFlow.get(ctx);
  if (set === undefined) return;
  for (const other of set) if (other !== w && other.requester === ctx) other.requester = undefined;
}

type Push = (chunk: unknown, encoding?: unknown) => boolean;

function makePush(original: Push): Push {
  return function (this: Sock, chunk: unknown, encoding?: unknown): boolean {
    const w = this[WIRE];
    if (w == null || w.lost || w.tracker === undefined || !(chunk instanceof Uint8Array)) {
      return original.call(this, chunk, encoding);
    }
    const tracker = w.tracker;
    const n = tracker.in(chunk);
    if (n < 0) {
      w.lost = true;
      w.requests.length = 0;
      return original.call(this, chunk, encoding);
    }
    const requests = w.requests;
    let special = false; // a request of ours, or one cut off, among those answered
    for (let i = 0; i < n; i++) {
      const r = requests[i];
      if (r.ours || r.cut !== undefined) special = true;
    }
    const next = requests[n];
    const done = special ? requests.slice(0, n) : NONE;
    if (n === requests.length) requests.length = 0;
    else if (n > 0) requests.splice(0, n);
    w.answered += n;
    let result = true;
    if (!done.some(edited) && (next === undefined || !edited(next))) {
      result = original.call(this, chunk, encoding);
    } else {
      const rest = next !== undefined && edited(next) ? "drop" : "keep";
      const kept = edit(chunk, done, tracker.ends!, rest);
      if (kept.length > 0) result = original.call(this, kept, encoding);
    }
    // Whether the reply now being received has begun (it can no longer be replaced).
    w.midReply = next !== undefined && (n === 0 ? true : tracker.ends![n - 1] < chunk.length);
    for (const r of done) {
      if (r.cut === undefined) continue;
      clearTimeout(r.timer);
      r.cutFor?._landed(); // the driver has its error: the greenlet runs its own code again
      // The server ended a request we asked it to end, inside a transaction (now failed): it
      // must not reach another user of the connection.
      if (tracker.inTransaction) w.dirty = r.cutFor;
    }
    if (!tracker.inTransaction) w.dirty = undefined;
    return result;
  };
}

const NONE: Request[] = [];

/** A request whose reply the driver must not see as the server sent it. */
function edited(r: Request): boolean {
  return r.ours === true || r.replace !== undefined;
}

/**
 * `node:buffer`'s `Buffer`, loaded on first use (only patched sockets need it): importing
 * `node:buffer` costs a program a few milliseconds of start-up.
 */
let Buffer: typeof buffer.Buffer | undefined;

/**
 * `chunk` with the replies to our own requests removed and those of requests cut off while
 * queued replaced (`ends[i]`: where the reply of `done[i]` ends). The bytes after the last end
 * are kept, unless `rest` is `"drop"`: they belong to a reply being removed or replaced.
 */
function edit(
  chunk: Uint8Array,
  done: Request[],
  ends: number[],
  rest: "keep" | "drop",
): Uint8Array {
  const parts: Uint8Array[] = [];
  let from = 0;
  for (let i = 0; i < done.length; i++) {
    const r = done[i];
    if (r.replace !== undefined) parts.push(r.replace);
    else if (!r.ours) parts.push(chunk.subarray(from, ends[i]));
    from = ends[i];
  }
  if (rest === "keep") parts.push(chunk.subarray(from));
  if (parts.length === 1) return parts[0];
  // A Buffer, as the drivers expect of a `node:net` socket.
  Buffer ??= _builtin<typeof buffer>("node:buffer").Buffer;
  const out = Buffer.alloc(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Cuts off the requests `ctx` has on the wire with `exc`; returns whether there were any.
 * Called by the hub when `exc` is thrown into `ctx` while it is in no blocking call.
 */
function interrupt(ctx: _Flow, exc: unknown): boolean {
  const set = byFlow.get(ctx);
  if (set === undefined) return false;
  let cut = false;
  for (const w of set) {
    const sock = w.socket;
    if (sock.destroyed) {
      forget(set, w, ctx);
      continue;
    }
    const head = w.requests.findIndex((r) => r.owner === ctx);
    const connecting = w.requester === ctx && sock.connecting;
    if (head < 0 && !connecting) {
      if (w.requester !== ctx) forget(set, w, ctx);
      continue;
    }
    if (head === 0 && w.midReply && w.tracker?.protocol === "redis") continue; // nearly done
    cut = true;
    if (w.requester === ctx) w.requester = undefined;
    forget(set, w, ctx);
    if (head < 0) {
      destroy(w, exc); // still connecting
      continue;
    }
    for (let i = head; i < w.requests.length; i++) {
      if (w.requests[i].owner === ctx) end(w, i, exc, ctx);
    }
  }
  return cut;
}

/**
 * Ends request `head` of `w`: the server is asked to end it when it is the one being served
 * (PostgreSQL's `CancelRequest`, Redis's `CLIENT UNBLOCK` for a blocking command), so the
 * connection survives; otherwise, or if that does not work in time, the connection is
 * destroyed.
 */
function end(w: Wire, at: number, exc: unknown, ctx: _Flow): void {
  const request = w.requests[at];
  request.owner = undefined;
  request.cutFor = ctx;
  request.cut = exc;
  const tracker = w.tracker;
  if (tracker?.protocol === "redis") {
    // Replies come in order on a connection many callers share: the reply to this request is
    // replaced by an error reply, and a command blocked on the server is ended now.
    request.replace = redisError(exc);
    if (at === 0 && _isBlockingCommand(request.command)) unblock(w.socket, 3);
  } else if (at === 0 && tracker?.protocol === "postgres" && tracker.cancelKey !== undefined) {
    request.timer = setTimeout(tooLate, CANCEL_GRACE, w, request);
    pgCancel(w);
  } else if (!w.socket.destroyed) {
    destroy(w, exc);
  }
}

function redisError(exc: unknown): Uint8Array {
  const name = exc instanceof Error ? exc.name : typeof exc;
  return encoder.encode(`-ERR cut off by ${name.replace(/[\r\n]/g, " ")}\r\n`);
}

function tooLate(w: Wire, request: Request): void {
  if (w.requests.includes(request)) destroy(w, request.cut);
}

function pgCancel(w: Wire): void {
  const key = w.tracker?.cancelKey;
  const sock = w.socket;
  const host = sock.remoteAddress;
  const port = sock.remotePort;
  if (key === undefined || host === undefined || port === undefined) return;
  // The server signals the backend twice (its process, then its group) before it closes the
  // cancel connection; a signal that lands after the cancelled statement ended would cancel
  // the next one. So the connection carries nothing more until that close.
  sock.cork();
  const side = sideConnection(host, port, (s) => s.end(_pgCancelRequest(key)));
  side.once("close", () => {
    if (!sock.destroyed) sock.uncork();
  });
}

function destroy(w: Wire, exc: unknown): void {
  const sock = w.socket;
  if (sock.destroyed) return;
  // Closing alone does not stop PostgreSQL: it runs the statement until it next writes.
  if (w.requests.length > 0) pgCancel(w);
  const cut = w.requests.filter((r) => r.cutFor !== undefined);
  for (const r of w.requests) clearTimeout(r.timer);
  w.requests.length = 0;
  quiet(sock);
  sock.destroy(asError(exc));
  for (const r of cut) r.cutFor!._landed(); // the driver fails what was on the socket
}

/**
 * A driver may rethrow the end of a connection we cut off from its listeners (`pg` emits
 * `error` on a checked-out client that has no listener, which throws): that would end the
 * process for a kill. What the socket's own `error`/`close` listeners throw is dropped: the
 * driver has already failed its requests.
 */
function quiet(sock: net.Socket): void {
  const emit = sock.emit;
  Object.defineProperty(sock, "emit", {
    configurable: true,
    writable: true,
    value: function (this: net.Socket, event: string | symbol, ...args: unknown[]): boolean {
      try {
        return (emit as (...a: unknown[]) => boolean).call(this, event, ...args);
      } catch (error) {
        if (event === "error" || event === "close" || event === "end") return true;
        throw error;
      }
    },
  });
}

/** A connection of our own (never tracked, never in a greenlet), closed after 2 s at most. */
function sideConnection(host: string, port: number, talk: (s: net.Socket) => void): net.Socket {
  const s = new (netModule().Socket)() as Sock;
  s[WIRE] = null;
  s.on("error", noop);
  s.setTimeout(2000, () => s.destroy());
  s.connect(port, host, () => talk(s));
  return s;
}

function noop(): void {}

/**
 * Ends the blocking command of `sock`'s Redis connection with `CLIENT UNBLOCK <id> ERROR`,
 * asked on a connection of our own; resolves whether the server unblocked it.
 */
function unblock(sock: net.Socket, tries: number): Promise<boolean> {
  const host = sock.remoteAddress;
  const port = sock.remotePort;
  const local = `${sock.localAddress}:${sock.localPort}`;
  if (host === undefined || port === undefined) return Promise.resolve(false);
  return new Promise((resolve) => {
    let text = "";
    let step = 0;
    const s = sideConnection(host, port, (s) => s.write("CLIENT LIST\r\n"));
    s.on("close", () => resolve(false));
    s.on("data", (data: Uint8Array) => {
      text += new TextDecoder().decode(data);
      if (step === 0) {
        // A bulk string: "$<len>\r\n<lines>\r\n".
        const nl = text.indexOf("\r\n");
        if (nl < 0) return;
        if (text[0] !== "$") return s.destroy();
        const len = Number(text.slice(1, nl));
        if (encoder.encode(text).length < nl + 2 + len + 2) return;
        const line = text.slice(nl + 2).split("\n").find((l) =>
          l.includes(` addr=${local} `) || l.includes(` addr=[${sock.localAddress}]:`)
        );
        const id = line?.match(/^id=(\d+) /)?.[1];
        if (id === undefined) return s.destroy();
        step = 1;
        text = "";
        s.write(`CLIENT UNBLOCK ${id} ERROR\r\n`);
      } else if (text.includes("\r\n")) {
        const ok = text.startsWith(":1");
        s.end();
        // Not blocked yet (the command is still on its way): ask again shortly.
        if (!ok && tries > 1 && !sock.destroyed) {
          setTimeout(() => unblock(sock, tries - 1).then(resolve), 10);
        } else {
          resolve(ok);
        }
      }
    });
  });
}

_setForeignInterrupter(interrupt);

/** `node:net`, loaded when the socket patches are first installed. */
function netModule(): typeof net {
  return _builtin<typeof net>("node:net");
}

function socketPrototype(): object {
  return netModule().Socket.prototype;
}

/** @ignore The `node:net` patches, for `monkey.patchSocket()`. */
export const _patches: readonly _Patch[] = [
  { area: "socket", target: socketPrototype, name: "connect", make: makeConnect },
  { area: "socket", target: socketPrototype, name: "write", make: makeWrite },
  { area: "socket", target: socketPrototype, name: "push", make: makePush },
];
