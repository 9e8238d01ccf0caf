/**
 * HTTP serving with a greenlet per request: gevent's `WSGIServer` (`gevent.pywsgi`), built on
 * `Deno.serve`.
 *
 * The application is a fetch-style handler, `(request, info) => Response`, so a Hono or oak
 * app's `fetch` runs unchanged. Each request runs in a greenlet of its own
 * (`getCurrent()` inside the handler), so the request can be killed like any greenlet:
 *
 * - a client that goes away before its response is ready kills the request's greenlet with
 *   `GreenletExit` (its `finally` blocks run; after `monkey.patchAll()` a downstream `fetch`
 *   it awaits is aborted; nothing is reported as a failure);
 * - the per-request `timeout` kills it with a `Timeout` and answers `503`;
 * - a handler that throws answers `500` and the hub reports the error with the request line;
 * - `stop()` lets requests in flight finish, then kills them, and closes event streams and
 *   WebSockets.
 *
 * Three ways to serve: {@linkcode HttpServer} (the life cycle of gevent's servers: `start`,
 * `serveForever`, `stop`), {@linkcode httpHandler} (a handler for `Deno.serve` or for
 * `export default { fetch }` under `deno serve --parallel`, one isolate per core), and
 * {@linkcode eventStream} / {@linkcode upgradeWebSocket} for long-lived responses whose
 * producer runs in a greenlet of its own.
 *
 * @module
 */

import { _clearTimer, _setTimer, type _Timer } from "./core.ts";
import { Event } from "./event.ts";
import { type _Ending, getCurrent, Greenlet, GreenletExit, joinAll, killAll } from "./greenlet.ts";
import { _badBag, _badTimeout, _checkFn, _render } from "./_check.ts";
import { _begin, _labelWaits, type _Waiter, getHub } from "./hub.ts";
import { Pool } from "./pool.ts";
import type { Address } from "./resolver.ts";
import { Timeout } from "./timeout.ts";

export type { Address };

// ---------------------------------------------------------------------------------------------
// Public types

/**
 * The application: a fetch-style handler, as `Deno.serve` takes. It runs in the request's
 * greenlet and returns a `Response` or a promise of one.
 *
 * @example
 * ```ts
 * import type { HttpHandler } from "./http.ts";
 * import { getCurrent } from "./greenlet.ts";
 * import assert from "node:assert/strict";
 *
 * const hello: HttpHandler = () => new Response(getCurrent() ? "in a greenlet" : "outside");
 * assert.equal(await (await hello(new Request("http://x/"), {} as never)).text(), "outside");
 * ```
 */
export type HttpHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo,
) => Response | PromiseLike<Response>;

/**
 * An application object with a `fetch` method, such as a Hono app. Its `fetch` is called with
 * `this` set to the object.
 *
 * @example
 * ```ts
 * import type { FetchApp } from "./http.ts";
 * import assert from "node:assert/strict";
 *
 * const app: FetchApp = { fetch: () => new Response("ok") };
 * assert.equal(await (await app.fetch(new Request("http://x/"), {} as never)).text(), "ok");
 * ```
 */
export interface FetchApp {
  /** Handles one request. */
  fetch(request: Request, info: Deno.ServeHandlerInfo): Response | PromiseLike<Response>;
}

/**
 * Where access-log lines go: anything with a `write(text)` method. When `write` returns a
 * promise, the next batch of lines waits for it.
 *
 * @example
 * ```ts
 * import type { AccessLog } from "./http.ts";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * const log: AccessLog = { write: (text) => lines.push(text) };
 * log.write("127.0.0.1 - - [30/Nov/2026 06:00:00] \"GET / HTTP/1.1\" 200 2 0.000100\n");
 * assert.equal(lines.length, 1);
 * ```
 */
export interface AccessLog {
  /** Writes one or more complete lines, each ending in `\n`. */
  write(text: string): unknown;
}

/**
 * What `spawn` takes besides a number: a `Pool` (`pool.ts`), or anything with the two pool
 * methods the server uses. The request greenlets become its members while they run, so
 * `pool.size` is the number of requests in flight and `pool.kill()` kills them.
 *
 * @example
 * ```ts
 * import type { RequestPool } from "./http.ts";
 * import { Pool } from "./pool.ts";
 *
 * const pool: RequestPool = new Pool(100);
 * console.assert(pool.freeCount() === 100);
 * ```
 */
export interface RequestPool {
  /** The number of greenlets that could be added now without waiting. */
  freeCount(): number;
  /** Adds a (running) greenlet, waiting for a free slot first; a blocking call. */
  add(greenlet: object): Promise<void>;
}

/**
 * Options of {@linkcode httpHandler} (and of {@linkcode HttpServer}).
 *
 * @example
 * ```ts
 * import type { HttpHandlerOptions } from "./http.ts";
 * import { Pool } from "./pool.ts";
 *
 * const options: HttpHandlerOptions = { spawn: new Pool(100), timeout: 5000, log: null };
 * console.assert(options.timeout === 5000);
 * ```
 */
export interface HttpHandlerOptions {
  /**
   * Limits the requests in flight: a number, or a `Pool` whose members the request greenlets
   * become. A request that finds no free slot waits for one, in arrival order; its deadline
   * counts from its arrival, so a request whose deadline passes while it waits is answered
   * `503` without running. Default: no limit.
   */
  spawn?: number | RequestPool;
  /**
   * The per-request deadline in milliseconds, counted from the request's arrival. When it
   * passes before the handler has returned, the request's greenlet is killed with a
   * `Timeout` and the answer is `503 Service Unavailable`, whatever the handler returns
   * afterwards. Default: none.
   */
  timeout?: number;
  /**
   * The access log: one line per request in `gevent.pywsgi`'s format, written in batches
   * without blocking the loop. Default: standard error; `null` silences it.
   */
  log?: AccessLog | null;
}

/**
 * Options of {@linkcode HttpServer}: those of {@linkcode httpHandler} and a `signal` that
 * stops the server when it aborts.
 *
 * @example
 * ```ts
 * import type { HttpServerOptions } from "./http.ts";
 *
 * const controller = new AbortController();
 * const options: HttpServerOptions = { timeout: 1000, log: null, signal: controller.signal };
 * console.assert(options.signal === controller.signal);
 * ```
 */
export interface HttpServerOptions extends HttpHandlerOptions {
  /** Aborting it stops the server (as `stop()` with the default timeout). */
  signal?: AbortSignal;
}

/**
 * Where an {@linkcode HttpServer} listens, when given as an object (`Deno.serve`'s options).
 *
 * @example
 * ```ts
 * import type { HttpListenOptions } from "./http.ts";
 *
 * const where: HttpListenOptions = { hostname: "127.0.0.1", port: 0 };
 * console.assert(where.port === 0);
 * ```
 */
export interface HttpListenOptions {
  /** The address to bind (default `"0.0.0.0"`). */
  hostname?: string;
  /** The port; `0` picks a free one (default `8000`). */
  port?: number;
  /** A PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1) with `key`. */
  cert?: string;
  /** The PEM private key of `cert`. */
  key?: string;
}

/**
 * Options of {@linkcode HttpServer.stop} and {@linkcode GreenletHandler.stop}.
 *
 * @example
 * ```ts
 * import type { HttpStopOptions } from "./http.ts";
 *
 * const options: HttpStopOptions = { timeout: 500 };
 * console.assert(options.timeout === 500);
 * ```
 */
export interface HttpStopOptions {
  /**
   * Milliseconds to let requests in flight, event streams and WebSockets end by themselves
   * before they are killed (default 1000).
   */
  timeout?: number;
}

/**
 * What {@linkcode httpHandler} returns: a handler for `Deno.serve` or for
 * `export default { fetch }`, plus `stop()` to end what it still runs.
 *
 * @example
 * ```ts
 * import { type GreenletHandler, httpHandler } from "./http.ts";
 *
 * const handler: GreenletHandler = httpHandler(() => new Response("hi"), { log: null });
 * await handler.stop();
 * ```
 */
export interface GreenletHandler {
  /** Handles one request in a greenlet of its own. */
  (request: Request, info: Deno.ServeHandlerInfo): Response | Promise<Response>;
  /**
   * Answers new requests with `503`, waits up to `timeout` ms for the requests in flight,
   * event streams and WebSockets it started, kills those left, and flushes the access log.
   * Call it after `Deno.serve`'s `shutdown()` has begun (not awaited: that waits for the
   * responses this ends).
   */
  stop(options?: HttpStopOptions): Promise<void>;
  /** Same as `stop()`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * One server-sent event for {@linkcode EventStream.send}. `data` that is not a string is sent
 * as JSON; a multi-line string becomes several `data:` lines.
 *
 * @example
 * ```ts
 * import type { ServerSentEvent } from "./http.ts";
 *
 * const tick: ServerSentEvent = { event: "tick", id: "7", data: { n: 7 } };
 * console.assert(tick.event === "tick");
 * ```
 */
export interface ServerSentEvent {
  /** The payload; strings are sent as they are, anything else as JSON. */
  data?: unknown;
  /** The event type (`event:`); no line breaks. */
  event?: string;
  /** The event id (`id:`); no line breaks. */
  id?: string;
  /** The client's reconnection delay in milliseconds (`retry:`), a non-negative integer. */
  retry?: number;
  /** A comment line (`: ...`), ignored by clients; handy as a keep-alive. */
  comment?: string;
}

/**
 * The writing end of an {@linkcode eventStream}, handed to its producer.
 *
 * @example
 * ```ts
 * import { type EventStream, eventStream } from "./http.ts";
 * import assert from "node:assert/strict";
 *
 * const res = eventStream(async (stream: EventStream) => {
 *   await stream.send("hello");
 * });
 * assert.equal(await res.text(), "data: hello\n\n");
 * ```
 */
export interface EventStream {
  /**
   * Sends one event (a string is `{ data }`). Resolves once the event is queued, waiting
   * while the client has not taken the previous ones: a blocking call, so `kill()` and
   * `Timeout` interrupt it.
   *
   * @throws {Deno.errors.BrokenPipe} (as a rejection) Once the stream is closed.
   * @throws {TypeError} (as a rejection) For an `event` or `id` with a line break.
   * @throws {RangeError} (as a rejection) For a `retry` that is not a non-negative integer.
   */
  send(event: ServerSentEvent | string): Promise<void>;
  /** Whether the stream has ended (producer returned, client gone, server stopped). */
  readonly closed: boolean;
}

/**
 * Options of {@linkcode WebSocketConnection.receive}.
 *
 * @example
 * ```ts
 * import type { ReceiveOptions } from "./http.ts";
 *
 * const options: ReceiveOptions = { timeout: 30_000 };
 * console.assert(options.timeout === 30_000);
 * ```
 */
export interface ReceiveOptions {
  /** Milliseconds to wait at most; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
}

/**
 * A server-side WebSocket as {@linkcode upgradeWebSocket}'s handler sees it: blocking
 * `receive()`, `send()`, `close()`, and `for await` over the messages.
 *
 * @example
 * ```ts
 * import { upgradeWebSocket, type WebSocketConnection } from "./http.ts";
 *
 * async function echo(ws: WebSocketConnection): Promise<void> {
 *   for await (const message of ws) ws.send(message);
 * }
 * const handler = (req: Request) => upgradeWebSocket(req, echo);
 * console.assert(typeof handler === "function");
 * ```
 */
export interface WebSocketConnection extends AsyncIterable<string | Uint8Array> {
  /**
   * Waits for the next message: a string, or a `Uint8Array` for a binary one; `null` once the
   * socket is closed (by the client, or by `close()`). A blocking call.
   *
   * @throws {Timeout} (as a rejection) If `timeout` elapsed first.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  receive(options?: ReceiveOptions): Promise<string | Uint8Array | null>;
  /**
   * Sends a message.
   *
   * @throws {Deno.errors.BrokenPipe} If the socket is closing or closed.
   */
  send(data: string | Uint8Array | ArrayBuffer | Blob): void;
  /** Starts the closing handshake; `receive()` returns `null` from now on. */
  close(code?: number, reason?: string): void;
  /** Whether the socket is closing or closed. */
  readonly closed: boolean;
  /** The subprotocol agreed on (`""` when none). */
  readonly protocol: string;
  /** The underlying platform WebSocket. */
  readonly socket: WebSocket;
}

// ---------------------------------------------------------------------------------------------
// Internals: requests in flight

/**
 * How often, in ms, requests in flight are looked at: one that has lived through a whole
 * period gets its `request.signal` watched for a disconnect. Reading the signal costs Deno an
 * operation per request, so requests quicker than this never pay it.
 */
const WATCH_PERIOD = 20;

const NOT_FIRED = 0;
const DEADLINE = 1;
const GONE = 2;
const STOPPED = 3;

const IN_NO_LIST = 0;
const IN_FLIGHT = 1;
const EXPIRED = 2;

/** The value of a request greenlet interrupted by its kill, its deadline or the server's stop. */
const KILLED: unique symbol = Symbol("killed");
/** The value of a request greenlet whose handler failed (already reported). */
const FAILED: unique symbol = Symbol("failed");

/** A node of the circular list of requests in flight, kept in arrival (so deadline) order. */
interface Node {
  prev: Node;
  next: Node;
}

/**
 * The state of one request, kept apart from its greenlet: a node of the list of requests in
 * flight, the argument of the greenlet's function, and the listener of `request.signal`.
 */
class Req implements Node {
  prev: Node = this;
  next: Node = this;
  readonly engine: Engine;
  readonly g: RequestGreenlet;
  request: Request | undefined;
  info: Deno.ServeHandlerInfo | undefined;
  /** Arrival (`performance.now()`), read only when a deadline or the log needs it. */
  t0 = 0;
  /** The watch period it arrived in. */
  period = 0;
  res: Response | undefined = undefined;
  resolve: ((res: Response) => void) | undefined = undefined;
  fired = NOT_FIRED;
  where = IN_NO_LIST;
  #client: Deno.NetAddr | null | undefined = undefined;
  #line: string | undefined = undefined;

  constructor(engine: Engine, request: Request, info: Deno.ServeHandlerInfo) {
    this.engine = engine;
    this.request = request;
    this.info = info;
    this.g = new RequestGreenlet(this);
  }

  /** `request.signal` aborted: the client went away (or, after the response, Deno's legacy). */
  handleEvent(): void {
    this.engine._gone(this);
  }

  /** The client's address (`undefined` when Deno no longer tells it: the request is over). */
  get client(): Deno.NetAddr | undefined {
    if (this.#client === undefined) {
      try {
        if (this.info === undefined) return undefined;
        this.#client = (this.info.remoteAddr ?? null) as Deno.NetAddr | null;
      } catch {
        return undefined; // "Request closed"
      }
    }
    return this.#client ?? undefined;
  }

  /** The request line, `GET /path HTTP/1.1` (`undefined` once Deno no longer tells it). */
  get line(): string | undefined {
    if (this.#line === undefined) {
      try {
        if (this.request === undefined) return undefined;
        this.#line = requestLine(this.request);
      } catch {
        return undefined; // "Request closed"
      }
    }
    return this.#line;
  }

  /** `<HttpServer 127.0.0.1:8000> "GET /path HTTP/1.1" from 127.0.0.1:54321 (Greenlet-5)`. */
  toString(): string {
    const addr = this.client;
    const from = addr?.hostname === undefined ? "" : ` from ${addr.hostname}:${addr.port}`;
    return `${this.engine.label} "${this.line ?? "(closed)"}"${from} (${this.g.name})`;
  }
}

/**
 * The greenlet of one request. Its outcome is turned into the response as it dies (there is
 * no link to run): what the handler throws is reported here, with the request line, rather
 * than as a failure of the greenlet.
 *
 * It has no fields of its own, and once dead it lets go of its request state and value: each
 * greenlet is the value of an async-context entry that only a full garbage collection drops,
 * so every dead greenlet is copied by the young-generation collections until then; keeping
 * it small keeps those pauses short (measured: 1.8 ms with 13 more fields, 1.2 ms without).
 */
class RequestGreenlet extends Greenlet<unknown> {
  constructor(st: Req) {
    super(serveRequest, st);
  }

  /** @ignore */
  override _die(result: unknown, how: _Ending): void {
    if (this.dead) return;
    const st = this._args[0] as Req;
    if (st.fired !== NOT_FIRED) {
      // Killed by the server: a kill still pending (it awaited something the kill could not
      // reach) is withdrawn, so that the greenlet ends with what it returned, not a failure.
      const signal = this._killCtl?.signal;
      if (signal?.aborted) this._takeIf(signal.reason);
    }
    super._die(how === "threw" ? st.engine._failed(st, result) : result, "returned");
    st.engine._finish(st);
    this._result = undefined;
    this._args = DEAD_ARGS;
  }

  /** The request line and client while it runs (`<Greenlet "Greenlet-5": ...>` after). */
  override toString(): string {
    const st = this._args[0];
    return st instanceof Req ? st.toString() : super.toString();
  }
}

const DEAD_ARGS: unknown[] = [];

function requestLine(request: Request): string {
  return `${request.method} ${pathOf(request.url)} HTTP/1.1`;
}

function pathOf(url: string): string {
  const i = url.indexOf("/", url.indexOf("//") + 2);
  return i < 0 ? "/" : url.slice(i);
}

let resolveCaptured: ((res: Response) => void) | undefined;
function captureResolve(resolve: (res: Response) => void): void {
  resolveCaptured = resolve;
}

/** The request greenlet's function: waits for a slot if limited, then runs the handler. */
function serveRequest(st: Req): unknown {
  const pool = st.engine.pool;
  if (pool !== undefined) {
    // A Pool with a free slot takes the greenlet at once (its promise is already resolved).
    if (!(pool instanceof Pool) || pool.freeCount() === 0) return waitForSlot(st, pool);
    pool.add(st.g);
  }
  return st.engine.handler(st.request!, st.info!);
}

async function waitForSlot(st: Req, pool: RequestPool): Promise<unknown> {
  await pool.add(st.g);
  return await st.engine.handler(st.request!, st.info!);
}

function plain(status: number, text: string): Response {
  return new Response(text, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/** Responses built by this module's helpers, with what to do when one is not delivered. */
const discards = new WeakMap<Response, () => void>();

/** A response the handler made but that is not sent (the request timed out): release it. */
function discard(res: Response): void {
  const d = discards.get(res);
  if (d !== undefined) {
    discards.delete(res);
    d();
  }
  if (res.body !== null && !res.bodyUsed) res.body.cancel().catch(() => {});
}

/** Something long-lived a request started (an event stream, a WebSocket). */
interface Lasting {
  /** The greenlet that runs it. */
  readonly g: Greenlet<unknown>;
  /** Kills it (if alive) and closes it; resolves once it is closed. */
  shut(): Promise<void>;
}

/** The engine behind `HttpServer` and `httpHandler`: the per-request greenlet machinery. */
class Engine {
  readonly handler: (request: Request, info: Deno.ServeHandlerInfo) => unknown;
  readonly pool: RequestPool | undefined;
  readonly timeout: number | undefined;
  readonly log: LogWriter | undefined;
  /** Whether arrivals need `performance.now()` (for the deadline or the log). */
  readonly #clock: boolean;
  label: string;
  closing = false;
  readonly #head: Node;
  #firstUnwatched: Req | undefined = undefined;
  #expired: Set<Req> | undefined = undefined;
  readonly lasting: Set<Lasting> = new Set();
  #timer: _Timer | undefined = undefined;
  #timerAt = 0;
  /** The current watch period; it ends at `#periodEnd` (`performance.now()` time). */
  #period = 0;
  #periodEnd = 0;
  #stopping: Promise<void> | undefined = undefined;

  constructor(
    handler: HttpHandler | FetchApp,
    options: HttpHandlerOptions,
    label: string,
    where: string,
  ) {
    const head = {} as Node;
    head.prev = head.next = head;
    this.#head = head;
    if (typeof handler === "function") {
      this.handler = handler;
    } else if (
      handler !== null && typeof handler === "object" &&
      typeof (handler as FetchApp).fetch === "function"
    ) {
      const app = handler as FetchApp;
      this.handler = (request, info) => app.fetch(request, info);
    } else {
      throw new TypeError(
        `Cannot ${where} as 'handler' must be a function or have a fetch() method: ` +
          `current value is ${_render(handler)}`,
      );
    }
    const bad = _badBag(options);
    if (bad !== undefined) throw bad;
    const { spawn, timeout, log } = options;
    if (typeof spawn === "number") {
      if (!Number.isInteger(spawn) || spawn < 1) {
        throw new RangeError(
          `Cannot ${where} as 'spawn' must be a positive integer or a Pool: current value is ${spawn}`,
        );
      }
      this.pool = new Pool(spawn);
    } else if (spawn !== undefined) {
      if (
        spawn === null || typeof spawn !== "object" ||
        typeof (spawn as RequestPool).freeCount !== "function" ||
        typeof (spawn as RequestPool).add !== "function"
      ) {
        throw new TypeError(
          `Cannot ${where} as 'spawn' must be a positive integer or a Pool: current value is ${
            _render(spawn)
          }`,
        );
      }
      this.pool = spawn;
    }
    if (timeout !== undefined) {
      if (typeof timeout !== "number") {
        throw new TypeError(
          `Cannot ${where} as 'timeout' must be a number of milliseconds: current value is ${
            _render(timeout)
          }`,
        );
      }
      if (!(timeout >= 0) || timeout === Infinity) {
        throw new RangeError(
          `Cannot ${where} as 'timeout' must be a finite, non-negative number of milliseconds: ` +
            `current value is ${timeout}`,
        );
      }
    }
    this.timeout = timeout;
    if (log === null) {
      this.log = undefined;
    } else if (log === undefined) {
      this.log = new LogWriter(undefined);
    } else if (typeof log === "object" && typeof (log as AccessLog).write === "function") {
      this.log = new LogWriter(log);
    } else {
      throw new TypeError(
        `Cannot ${where} as 'log' must have a write() method or be null: current value is ${
          _render(log)
        }`,
      );
    }
    this.#clock = timeout !== undefined || this.log !== undefined;
    this.label = label;
  }

  /** The `Deno.serve` handler. */
  handle = (request: Request, info: Deno.ServeHandlerInfo): Response | Promise<Response> => {
    const st = new Req(this, request, info);
    if (this.#clock) st.t0 = performance.now();
    if (this.closing) {
      const res = new Response("Service Unavailable", {
        status: 503,
        headers: { "content-type": "text/plain; charset=utf-8", connection: "close" },
      });
      this.log?.request(st, res);
      return res;
    }
    st.g._startNow();
    const res = st.res;
    if (res !== undefined) {
      st.res = undefined;
      return res;
    }
    // The resolver is in place before anything that might run microtasks: inside a handler
    // that Deno calls natively, `setTimeout` (the watch timer) runs the pending ones.
    const promise = new Promise<Response>(captureResolve);
    st.resolve = resolveCaptured;
    this.#insert(st);
    return promise;
  };

  /** What the request greenlet returns when its handler threw or rejected with `error`. */
  _failed(st: Req, error: unknown): unknown {
    if (st.fired !== NOT_FIRED || error instanceof GreenletExit) return KILLED;
    getHub()._report(st, error);
    return FAILED;
  }

  /** The request's greenlet died: answer. */
  _finish(st: Req): void {
    const value = st.g.value;
    let res: Response;
    if (st.fired === NOT_FIRED && value instanceof Response) {
      res = value;
    } else {
      if (st.fired === DEADLINE || st.fired === STOPPED) {
        res = plain(503, "Service Unavailable");
      } else if (st.fired === GONE) {
        res = plain(499, "Client Closed Request"); // nobody reads it
      } else if (value === FAILED) {
        res = plain(500, "Internal Server Error");
      } else if (value === KILLED || value instanceof GreenletExit) {
        res = plain(503, "Service Unavailable");
      } else {
        const message = `The handler must return a Response: it returned ${describe(value)}`;
        getHub()._report(st, new TypeError(message));
        res = plain(500, `Internal Server Error: ${message}`);
      }
      if (value instanceof Response) discard(value);
    }
    if (st.where !== IN_NO_LIST) this.#remove(st);
    this.log?.request(st, res);
    st.request = st.info = undefined;
    const resolve = st.resolve;
    if (resolve !== undefined) {
      st.resolve = undefined;
      resolve(res);
    } else {
      st.res = res; // answered before handle() returned: it takes it from here
    }
  }

  /** `request.signal` aborted. */
  _gone(st: Req): void {
    if (st.fired !== NOT_FIRED || st.g.dead) return; // answered: Deno's legacy abort
    st.fired = GONE;
    st.g._deliverKill(undefined);
  }

  #insert(st: Req): void {
    const head = this.#head;
    const last = head.prev;
    st.prev = last;
    st.next = head;
    last.next = st;
    head.prev = st;
    st.where = IN_FLIGHT;
    st.period = this.#period;
    if (this.#firstUnwatched === undefined) this.#firstUnwatched = st;
    if (this.#timer === undefined) this.#arm(performance.now());
  }

  #remove(st: Req): void {
    if (st.where === EXPIRED) {
      this.#expired!.delete(st);
      st.where = IN_NO_LIST;
      return;
    }
    if (st === this.#firstUnwatched) {
      this.#firstUnwatched = st.next === this.#head ? undefined : st.next as Req;
    }
    st.prev.next = st.next;
    st.next.prev = st.prev;
    st.prev = st.next = st;
    st.where = IN_NO_LIST;
    const head = this.#head;
    if (head.next === head && this.#timer !== undefined && this.#firstUnwatched === undefined) {
      // Nothing in flight: a timer armed for a far deadline would only linger.
      if (this.#timerAt > performance.now() + WATCH_PERIOD) {
        _clearTimer(this.#timer);
        this.#timer = undefined;
      }
    }
  }

  /** Arms the timer for the end of the watch period or the next deadline, whichever is first. */
  #arm(now: number): void {
    const head = this.#head;
    let at = Infinity;
    if (this.#firstUnwatched !== undefined) {
      if (this.#periodEnd <= now) this.#periodEnd = now + WATCH_PERIOD;
      at = this.#periodEnd;
    }
    if (this.timeout !== undefined && head.next !== head) {
      at = Math.min(at, (head.next as Req).t0 + this.timeout);
    }
    if (at === Infinity) return;
    this.#timerAt = at;
    this.#timer = _setTimer(this.#tick, Math.max(0, at - now), undefined);
  }

  #tick = (): void => {
    this.#timer = undefined;
    const now = performance.now();
    const head = this.#head;
    const timeout = this.timeout;
    // Deadlines: the list is in arrival order, so the expired ones are at its head.
    if (timeout !== undefined) {
      const due: Req[] = [];
      for (let n = head.next; n !== head; n = n.next) {
        if ((n as Req).t0 + timeout > now + 0.5) break;
        due.push(n as Req);
      }
      for (const st of due) {
        if (st.where !== IN_FLIGHT) continue; // answered meanwhile (kills may run microtasks)
        this.#remove(st);
        st.where = EXPIRED;
        (this.#expired ??= new Set()).add(st);
        st.fired = DEADLINE;
        st.g._deliverKill(new Timeout(timeout));
      }
    }
    // The end of a watch period: requests that arrived before it began have lived through it.
    if (now + 0.5 >= this.#periodEnd) {
      const ended = this.#period++;
      const watch: Req[] = [];
      let n: Node | undefined = this.#firstUnwatched;
      for (; n !== undefined && n !== head; n = n.next) {
        if ((n as Req).period >= ended) break;
        watch.push(n as Req);
      }
      this.#firstUnwatched = n === undefined || n === head ? undefined : n as Req;
      for (const st of watch) {
        if (st.where !== IN_FLIGHT) continue;
        const signal = st.request!.signal;
        if (signal.aborted) this._gone(st);
        else signal.addEventListener("abort", st);
      }
      this.#periodEnd = now + WATCH_PERIOD;
    }
    if (head.next !== head) this.#arm(now);
  };

  /** The requests in flight. */
  #requests(): Req[] {
    const list: Req[] = [];
    const head = this.#head;
    for (let n = head.next; n !== head; n = n.next) list.push(n as Req);
    if (this.#expired !== undefined) list.push(...this.#expired);
    return list;
  }

  stop(options?: HttpStopOptions): Promise<void> {
    if (options === undefined) options = {};
    const bad = _badBag(options);
    if (bad !== undefined) return Promise.reject(bad);
    const { timeout = 1000 } = options;
    const badTimeout = _badTimeout(timeout);
    if (badTimeout !== undefined) return Promise.reject(badTimeout);
    this.closing = true;
    return this.#stopping ??= this.#stop(timeout);
  }

  async #stop(timeout: number): Promise<void> {
    const me = getCurrent();
    const deadline = performance.now() + timeout;
    // Let everything end by itself for `timeout` ms (what ends may start more: loop).
    for (;;) {
      const live = this.#live(me);
      if (live.length === 0) break;
      const left = Math.max(0, deadline - performance.now());
      if (left === 0) break;
      await joinAll(live, { timeout: left, count: 1 });
    }
    // Then kill what is left: requests answer 503; streams and sockets are closed.
    const requests = this.#requests().filter((st) => st.g !== me);
    for (const st of requests) if (st.fired === NOT_FIRED) st.fired = STOPPED;
    await killAll(requests.map((st) => st.g));
    await Promise.all([...this.lasting].map((l) => l.shut()));
    if (this.#timer !== undefined) {
      _clearTimer(this.#timer);
      this.#timer = undefined;
    }
    await this.log?.drain();
  }

  #live(me: Greenlet<unknown> | undefined): Greenlet<unknown>[] {
    const live: Greenlet<unknown>[] = [];
    for (const st of this.#requests()) if (st.g !== me) live.push(st.g);
    for (const l of this.lasting) if (l.g !== me && !l.g.dead) live.push(l.g);
    return live;
  }
}

function describe(value: unknown): string {
  if (value === undefined || value === null) return String(value);
  if (typeof value === "string") return `a string (${JSON.stringify(value.slice(0, 40))})`;
  if (typeof value !== "object" && typeof value !== "function") return `${typeof value} ${value}`;
  const name = (value as object).constructor?.name;
  return name ? `an instance of ${name}` : "an object";
}

/** The engine of the request greenlet running the caller, if any. */
function currentEngine(): Engine | undefined {
  const g = getCurrent();
  const st = g instanceof RequestGreenlet ? g._args[0] : undefined;
  return st instanceof Req ? st.engine : undefined;
}

// ---------------------------------------------------------------------------------------------
// Internals: the access log

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
let dateSecond = -1;
let dateText = "";

/** `30/Nov/2026 06:00:00`, local time, as pywsgi wrote it (cached for the second). */
function logDate(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== dateSecond) {
    const d = new Date(ms);
    const two = (n: number) => n < 10 ? `0${n}` : `${n}`;
    dateText = `${two(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()} ` +
      `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
    dateSecond = second;
  }
  return dateText;
}

// Deno keeps a response's body in internal slots until it is sent: the logged length is read
// from them when the body is a string or bytes (without touching the body), else from
// `content-length`; when neither tells it, the log says `-`.
// The slots are found on the first log line, not at import: the first use of the global
// `Response` loads Deno's fetch implementation (~10 ms of start-up).
let fastBody: symbol | undefined;
let innerResponse: symbol | undefined;
let slotsFound = false;

function findSlots(): void {
  const symbols = Object.getOwnPropertySymbols(new Response(""));
  fastBody = symbols.find((s) => s.description === "serve fast body");
  innerResponse = symbols.find((s) => s.description === "response");
  slotsFound = true;
}

function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 || (c >= 0xd800 && c < 0xe000) ? 2 : 3;
  }
  return n;
}

function lengthOf(body: unknown): number | undefined {
  if (typeof body === "string") return utf8Length(body);
  if (body instanceof Uint8Array) return body.byteLength;
  return undefined;
}

/** The body length for the log, or `-` (as pywsgi writes an empty or unknown length). */
function bodyLength(res: Response): string {
  if (!slotsFound) findSlots();
  const slots = res as unknown as Record<symbol, unknown>;
  let n = fastBody === undefined ? undefined : lengthOf(slots[fastBody]);
  if (n === undefined && innerResponse !== undefined) {
    const body = (slots[innerResponse] as { body?: { length?: unknown; source?: unknown } })?.body;
    if (body === null) return "-";
    n = typeof body?.length === "number" ? body.length : lengthOf(body?.source);
  }
  if (n === undefined && res.body !== null) {
    const header = Number(res.headers.get("content-length") ?? NaN);
    if (Number.isInteger(header)) n = header;
  }
  return n ? `${n}` : "-";
}

const encoder = new TextEncoder();

async function writeStderr(text: string): Promise<void> {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(await Deno.stderr.write(bytes));
}

/** Batches log lines and writes them one batch at a time, never synchronously. */
class LogWriter {
  #out: AccessLog | undefined;
  #buffer = "";
  #busy = false;
  #drained: (() => void)[] = [];

  constructor(out: AccessLog | undefined) {
    this.#out = out;
  }

  request(st: Req, res: Response): void {
    const addr = st.client;
    const seconds = (performance.now() - st.t0) / 1000;
    this.#buffer += `${addr?.hostname ?? "-"} - - [${logDate(Date.now())}] "${
      st.line ?? ""
    }" ${res.status} ${bodyLength(res)} ${seconds.toFixed(6)}\n`;
    if (!this.#busy) {
      this.#busy = true;
      setImmediate(this.#flush);
    }
  }

  #flush = (): void => {
    const text = this.#buffer;
    this.#buffer = "";
    if (text === "") {
      this.#busy = false;
      for (const resolve of this.#drained.splice(0)) resolve();
      return;
    }
    let pending: unknown;
    try {
      pending = this.#out === undefined ? writeStderr(text) : this.#out.write(text);
    } catch (error) {
      getHub()._report("the access log", error);
    }
    if (pending instanceof Promise) {
      pending.then(this.#flush, (error) => {
        getHub()._report("the access log", error);
        this.#flush();
      });
    } else {
      setImmediate(this.#flush);
    }
  };

  /** Resolves once every line so far is written. */
  drain(): Promise<void> {
    if (!this.#busy) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }
}

// ---------------------------------------------------------------------------------------------
// HttpServer and httpHandler

function checkPort(port: unknown, where: string): void {
  if (typeof port !== "number") {
    throw new TypeError(
      `Cannot ${where} as 'port' must be a number: current value is ${_render(port)}`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot ${where} as 'port' must be an integer from 0 to 65535: current value is ${port}`,
    );
  }
}

/**
 * An HTTP server that handles every request in a greenlet of its own: gevent's `WSGIServer`,
 * on `Deno.serve`, with the life cycle of `StreamServer`.
 *
 * Life cycle: `start()` binds and starts serving; `serveForever()` starts and waits until
 * `stop()`; `stop({ timeout })` stops accepting connections (Deno closes the listening
 * socket, the idle connections and, at once, every WebSocket: their handlers see `null` or
 * are killed), lets requests in flight and event streams end by themselves for `timeout` ms,
 * then kills them (a killed request answers `503`), closes the streams, and resolves once
 * nothing is left open. `await using` stops the server at the end of the scope.
 *
 * Per request (see {@linkcode HttpHandlerOptions}): `getCurrent()` in the handler is the
 * request's greenlet; a client that goes away before the response is ready kills it with
 * `GreenletExit` (noticed once the request has run for 20 ms: shorter ones finish anyway);
 * the `timeout` kills it with a `Timeout` and answers `503`; a handler that throws answers
 * `500` and the hub reports the error with the request line; a handler that returns
 * something that is not a `Response` answers `500` saying so. Greenlets the handler spawns
 * in a `Group` it disposes of (`await using group = new Group()`) die with it; other
 * greenlets outlive it, as in gevent. A request that has been answered is never killed, and
 * its greenlet keeps nothing of it (its `value` is then `undefined`): what Deno does with
 * `request.signal` after a response does not reach it.
 *
 * Access log: one line per request, as `gevent.pywsgi` writes it
 * (`127.0.0.1 - - [30/Nov/2026 06:00:00] "GET /hello HTTP/1.1" 200 11 0.000512`: client,
 * local time, request line, status, body bytes or `-`, seconds until the response was
 * handed to Deno). Deno does not tell the HTTP version: the line always says `HTTP/1.1`.
 * A request whose client went away is logged with status `499`, as nginx does.
 *
 * Caveat: Deno 2.9 prints a one-time warning ("request.signal aborts on successful
 * responses") once the server has watched a request's signal; run with
 * `--unstable-no-legacy-abort` to opt in to Deno's newer behaviour and silence it.
 *
 * @example A server with a deadline
 * ```ts
 * import { HttpServer } from "./http.ts";
 * import { getCurrent } from "./greenlet.ts";
 * import { sleep } from "./hub.ts";
 * import assert from "node:assert/strict";
 *
 * const handler = async (req: Request) => {
 *   if (req.url.endsWith("/slow")) await sleep(10_000);
 *   return new Response(`hello from ${getCurrent()!.name}`);
 * };
 * await using server = new HttpServer(["127.0.0.1", 0], handler, { timeout: 100, log: null });
 * server.start();
 * const base = `http://127.0.0.1:${server.address[1]}`;
 * assert.match(await (await fetch(`${base}/`)).text(), /^hello from Greenlet-\d+$/);
 * const slow = await fetch(`${base}/slow`);
 * assert.equal(slow.status, 503);
 * await slow.body?.cancel();
 * ```
 */
export class HttpServer {
  #engine: Engine;
  #listen: HttpListenOptions;
  #address: Address;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined = undefined;
  #signal: AbortSignal | undefined;
  #started = false;
  #closed = false;
  #stopped = new Event();
  #stopping: Promise<void> | undefined = undefined;

  /**
   * Creates a server (not started).
   *
   * @param address `[host, port]` (port 0 picks a free one), or `Deno.serve`'s listening
   *   options (`hostname`, `port`, `cert`, `key`).
   * @param handler The application: a fetch-style handler, or an object with a `fetch`
   *   method (a Hono app).
   * @param options `spawn`, `timeout`, `log`, `signal`.
   * @throws {TypeError} If `handler` is neither a function nor has `fetch()`, an address
   *   part or an option has the wrong type.
   * @throws {RangeError} For a port outside 0-65535, a `spawn` below 1 or a negative or
   *   non-finite `timeout`.
   */
  constructor(
    address: Address | HttpListenOptions,
    handler: HttpHandler | FetchApp,
    options?: HttpServerOptions,
  ) {
    if (options === undefined) options = {};
    const where = "create HttpServer";
    if (Array.isArray(address)) {
      const [host, port] = address;
      if (typeof host !== "string") {
        throw new TypeError(
          `Cannot ${where} as 'host' must be a string: current value is ${_render(host)}`,
        );
      }
      checkPort(port, where);
      this.#listen = { hostname: host, port };
    } else if (address !== null && typeof address === "object") {
      const { hostname = "0.0.0.0", port = 8000, cert, key } = address;
      if (typeof hostname !== "string") {
        throw new TypeError(
          `Cannot ${where} as 'hostname' must be a string: current value is ${_render(hostname)}`,
        );
      }
      checkPort(port, where);
      this.#listen = { hostname, port };
      if (cert !== undefined || key !== undefined) {
        for (const [name, value] of [["cert", cert], ["key", key]] as const) {
          if (typeof value !== "string") {
            throw new TypeError(
              `Cannot ${where} as '${name}' must be a PEM string (both 'cert' and 'key' are ` +
                `needed for HTTPS): current value is ${_render(value)}`,
            );
          }
        }
        this.#listen.cert = cert;
        this.#listen.key = key;
      }
    } else {
      throw new TypeError(
        `Cannot ${where} as 'address' must be [host, port] or an options object: ` +
          `current value is ${_render(address)}`,
      );
    }
    this.#address = [this.#listen.hostname!, this.#listen.port!];
    const signal = options?.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(
        `Cannot ${where} as 'signal' must be an AbortSignal: current value is ${_render(signal)}`,
      );
    }
    this.#signal = signal;
    this.#engine = new Engine(handler, options, this.toString(), where);
  }

  /** The address served: `[host, port]`, with the real port once started. */
  get address(): Address {
    return [...this.#address];
  }

  /** Whether the server was started and not stopped. */
  get started(): boolean {
    return this.#started && !this.#closed;
  }

  /** Whether `stop()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Binds and starts serving. Returns at once; starting a started server does nothing. An
   * already aborted `signal` leaves the server stopped.
   *
   * @throws {Deno.errors.AddrInUse} If the address is taken (and the like from `Deno.serve`).
   * @throws {Error} If the server was stopped.
   */
  start(): void {
    if (this.#closed) throw new Error(`Cannot start ${this} as it was stopped`);
    if (this.#started) return;
    if (this.#signal?.aborted) {
      this.#closed = true;
      this.#stopped.set();
      return;
    }
    const server = Deno.serve({ ...this.#listen, onListen() {} }, this.#engine.handle);
    this.#server = server;
    this.#address = [server.addr.hostname, server.addr.port];
    this.#engine.label = this.toString();
    this.#started = true;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  #onAbort = (): void => {
    this.stop().catch((error) => getHub()._report(this, error));
  };

  /**
   * Starts the server if needed and waits until it is stopped. A blocking call; killing the
   * greenlet that waits here stops the server (with the default timeout).
   *
   * @returns A promise that resolves once `stop()` has finished.
   */
  async serveForever(): Promise<void> {
    this.start();
    try {
      await this.#stopped.wait();
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /**
   * Stops the server: no new connections, and WebSockets are closed at once (Deno's
   * `shutdown()` does that); requests in flight and event streams get `timeout` ms to end,
   * then are killed (requests answer `503`) and the streams closed. Resolves once nothing is
   * left open. Stopping twice is harmless (the second call waits for the first).
   *
   * @param options `timeout` in milliseconds (default 1000).
   * @returns A promise that resolves once the server is stopped.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  stop(options?: HttpStopOptions): Promise<void> {
    if (options === undefined) options = {};
    const bad = _badBag(options) ?? _badTimeout(options.timeout);
    if (bad !== undefined) return Promise.reject(bad);
    if (this.#stopping !== undefined) return this.#stopping;
    this.#closed = true;
    return this.#stopping = this.#stop(options);
  }

  async #stop(options: HttpStopOptions): Promise<void> {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    const server = this.#server;
    try {
      if (server === undefined) return;
      // Deno's shutdown() closes the listening socket, idle connections and every WebSocket
      // at once, and resolves once the responses in flight are sent: the engine ends them.
      const shutdown = server.shutdown();
      await this.#engine.stop(options);
      await shutdown;
      await server.finished;
    } finally {
      this.#stopped.set();
    }
  }

  /** Stops the server (default timeout) at the end of an `await using` scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Renders as `<HttpServer 127.0.0.1:8000>`. */
  toString(): string {
    return `<HttpServer ${this.#address[0]}:${this.#address[1]}>`;
  }
}

/**
 * Wraps an application for `Deno.serve`, or for `export default { fetch }` under
 * `deno serve --parallel` (one isolate per core, each with its own hub): every request runs
 * in a greenlet of its own, with the same deadline, disconnect, error and access-log
 * behaviour as {@linkcode HttpServer}.
 *
 * @param handler The application: a fetch-style handler, or an object with a `fetch`
 *   method (a Hono app).
 * @param options `spawn`, `timeout`, `log`.
 * @returns The handler, with `stop()` for a graceful shutdown.
 * @throws {TypeError} If `handler` is neither a function nor has `fetch()`, or an option
 *   has the wrong type.
 * @throws {RangeError} For a `spawn` below 1 or a negative or non-finite `timeout`.
 *
 * @example With Deno.serve
 * ```ts
 * import { httpHandler } from "./http.ts";
 * import { getCurrent } from "./greenlet.ts";
 * import assert from "node:assert/strict";
 *
 * const handler = httpHandler(() => new Response(String(getCurrent() !== undefined)), {
 *   log: null,
 * });
 * const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 * const res = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * assert.equal(await res.text(), "true");
 * const shutdown = server.shutdown();
 * await handler.stop();
 * await shutdown;
 * ```
 *
 * @example A module for `deno serve --parallel` (its last line is `export default server;`)
 * ```ts
 * import { httpHandler } from "./http.ts";
 *
 * const app = { fetch: (req: Request) => new Response(`you asked for ${req.url}`) };
 * const server = { fetch: httpHandler(app) } satisfies Deno.ServeDefaultExport;
 * console.assert(typeof server.fetch === "function");
 * ```
 */
export function httpHandler(
  handler: HttpHandler | FetchApp,
  options?: HttpHandlerOptions,
): GreenletHandler {
  if (options === undefined) options = {};
  const name = typeof handler === "function" ? handler.name || "handler" : "app";
  const engine = new Engine(handler, options, `httpHandler(${name})`, "create httpHandler");
  const serve = engine.handle as GreenletHandler;
  serve.stop = (stopOptions?: HttpStopOptions) => engine.stop(stopOptions);
  serve[Symbol.asyncDispose] = () => engine.stop();
  return serve;
}

// ---------------------------------------------------------------------------------------------
// Event streams

const BROKEN = "The event stream is closed";

function checkField(name: string, value: unknown): string {
  if (typeof value !== "string" && typeof value !== "number") {
    throw new TypeError(`'${name}' must be a string: current value is ${_render(value)}`);
  }
  const text = String(value);
  if (/[\r\n]/.test(text)) {
    throw new TypeError(
      `'${name}' must not contain a line break: current value is ${_render(text)}`,
    );
  }
  return text;
}

function encodeEvent(event: ServerSentEvent | string): string {
  if (typeof event === "string") event = { data: event };
  else if (event === null || typeof event !== "object") {
    throw new TypeError(
      `'event' must be a string or an object: current value is ${_render(event)}`,
    );
  }
  let text = "";
  if (event.comment !== undefined) {
    for (const line of String(event.comment).split(/\r\n|\r|\n/)) text += `: ${line}\n`;
  }
  if (event.event !== undefined) text += `event: ${checkField("event", event.event)}\n`;
  if (event.id !== undefined) text += `id: ${checkField("id", event.id)}\n`;
  if (event.retry !== undefined) {
    const retry = event.retry;
    if (typeof retry !== "number" || !Number.isInteger(retry) || retry < 0) {
      throw new RangeError(
        `'retry' must be a non-negative integer of milliseconds: current value is ${
          _render(retry)
        }`,
      );
    }
    text += `retry: ${retry}\n`;
  }
  if (event.data !== undefined) {
    const data = typeof event.data === "string" ? event.data : JSON.stringify(event.data);
    for (const line of data.split(/\r\n|\r|\n/)) text += `data: ${line}\n`;
  }
  return text + "\n";
}

class Sink implements EventStream, Lasting {
  g!: Greenlet<unknown>;
  controller!: ReadableStreamDefaultController<Uint8Array>;
  #closed = false;
  #room = new Event();
  #done = new Event();

  get closed(): boolean {
    return this.#closed;
  }

  async send(event: ServerSentEvent | string): Promise<void> {
    const text = encodeEvent(event);
    if (this.#closed) throw new Deno.errors.BrokenPipe(BROKEN);
    this.controller.enqueue(encoder.encode(text));
    if (this.controller.desiredSize! <= 0) {
      this.#room.clear();
      await this.#room.wait();
      if (this.#closed) throw new Deno.errors.BrokenPipe(BROKEN);
    }
  }

  pull = (): void => {
    this.#room.set();
  };

  /** The client went away (Deno cancels the body): the producer is killed. */
  cancel = (): void => {
    this.#closed = true;
    this.#room.set();
    if (!this.g.dead) this.g._deliverKill(undefined);
  };

  /** The producer ended: the response ends. */
  end(): void {
    if (!this.#closed) {
      this.#closed = true;
      this.#room.set();
      try {
        this.controller.close();
      } catch {
        // Already closed or errored.
      }
    }
    this.#done.set();
  }

  async shut(): Promise<void> {
    if (!this.g.dead) await this.g.kill();
    this.end();
  }
}

async function eventProducer(
  sink: Sink,
  produce: (stream: EventStream) => unknown,
): Promise<unknown> {
  try {
    return await produce(sink);
  } finally {
    sink.end();
  }
}

/**
 * A `text/event-stream` response whose events are written by `produce(stream)`, running in a
 * greenlet of its own for as long as the stream lasts: it starts once the caller yields, and
 * the response ends when it returns. `await stream.send({ data, event, id })` queues one
 * event and waits while the client lags behind.
 *
 * The producer is killed (`GreenletExit`) when the client disconnects, when the server
 * stops (after `stop()`'s timeout), or when the response is not sent (its request timed
 * out). What it throws is reported by the hub and ends the stream. The request's deadline
 * does not apply to the stream: it covers the handler, which returns at once.
 *
 * @param produce Writes the events; called with the stream.
 * @param init Status and headers; `content-type` defaults to `text/event-stream` and
 *   `cache-control` to `no-cache`.
 * @returns The response to return from the handler.
 * @throws {TypeError} If `produce` is not a function.
 *
 * @example A clock
 * ```ts
 * import { eventStream, httpHandler } from "./http.ts";
 * import { sleep } from "./hub.ts";
 * import assert from "node:assert/strict";
 *
 * const handler = httpHandler(() =>
 *   eventStream(async (stream) => {
 *     for (let n = 1; n <= 3; n++) {
 *       await stream.send({ event: "tick", id: String(n), data: { n } });
 *       await sleep(1);
 *     }
 *   }), { log: null });
 * const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 * const res = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * assert.equal(res.headers.get("content-type"), "text/event-stream");
 * const text = await res.text();
 * assert.equal(text.split("\n\n").length, 4);
 * assert.ok(text.startsWith('event: tick\nid: 1\ndata: {"n":1}\n\n'));
 * const shutdown = server.shutdown();
 * await handler.stop();
 * await shutdown;
 * ```
 */
export function eventStream(
  produce: (stream: EventStream) => unknown,
  init?: ResponseInit,
): Response {
  _checkFn(produce, "produce");
  const bad = _badBag(init);
  if (bad !== undefined) throw bad;
  if (init === undefined) init = {};
  const sink = new Sink();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      sink.controller = controller;
    },
    pull: sink.pull,
    cancel: sink.cancel,
  });
  const headers = new Headers(init.headers);
  if (!headers.has("content-type")) headers.set("content-type", "text/event-stream");
  if (!headers.has("cache-control")) headers.set("cache-control", "no-cache");
  const res = new Response(body, { ...init, headers });
  const g = new Greenlet(eventProducer, sink, produce);
  sink.g = g;
  track(sink);
  g.start();
  return res;
}

/** Registers something long-lived with the server whose request is running, until it ends. */
function track(l: Lasting): void {
  const engine = currentEngine();
  if (engine === undefined) return;
  engine.lasting.add(l);
  l.g.rawlink(() => {
    if (!(l instanceof Socket) || l.isClosed) engine.lasting.delete(l);
  });
  if (l instanceof Socket) l.engine = engine;
}

// ---------------------------------------------------------------------------------------------
// WebSockets

type Message = string | Uint8Array | null;

/** The `_owner` of a `receive()` wait. */
interface Receiving {
  socket: Socket;
  ms: number | undefined;
}

function receiveForget(w: _Waiter<Message, Receiving>): void {
  const { socket } = w._owner;
  const i = socket.receivers.indexOf(w);
  if (i >= 0) socket.receivers.splice(i, 1);
}

function receiveTimedOut(w: _Waiter<Message, Receiving>): void {
  receiveForget(w);
  w._fail(new Timeout(w._owner.ms));
}
_labelWaits(receiveForget, () => "WebSocket receive");

class Socket implements WebSocketConnection, Lasting {
  readonly socket: WebSocket;
  g!: Greenlet<unknown>;
  engine: Engine | undefined = undefined;
  receivers: _Waiter<Message, Receiving>[] = [];
  #queue: (string | Uint8Array)[] = [];
  #closing = false;
  isClosed = false;
  opened = new Event();
  #closedEvent = new Event();

  constructor(socket: WebSocket) {
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => this.opened.set();
    socket.onmessage = (e: MessageEvent) => {
      const data = typeof e.data === "string" ? e.data : new Uint8Array(e.data as ArrayBuffer);
      const w = this.receivers.shift();
      if (w !== undefined) w._wake(data);
      else this.#queue.push(data);
    };
    socket.onerror = (e: globalThis.Event) => e.preventDefault();
    socket.onclose = () => {
      this.isClosed = true;
      this.#closedEvent.set();
      if (this.g.dead) this.engine?.lasting.delete(this);
      const receivers = this.receivers.splice(0);
      for (const w of receivers) w._wake(null);
      // A handler waiting for a message sees `null`; one busy elsewhere is killed.
      if (receivers.length === 0 && !this.#closing && !this.g.dead) this.g._deliverKill(undefined);
    };
  }

  get closed(): boolean {
    return this.#closing || this.isClosed;
  }

  get protocol(): string {
    return this.socket.protocol;
  }

  receive(options?: ReceiveOptions): Promise<string | Uint8Array | null> {
    if (options === undefined) options = {};
    const bad = _badBag(options) ?? _badTimeout(options.timeout);
    if (bad !== undefined) return Promise.reject(bad);
    if (this.#queue.length > 0) return Promise.resolve(this.#queue.shift()!);
    if (this.closed) return Promise.resolve(null);
    const { timeout } = options;
    if (timeout === 0) return Promise.reject(new Timeout(0));
    const w = _begin<Message, Receiving>();
    if (w instanceof Promise) return w;
    w._owner = { socket: this, ms: timeout };
    w._onCancel = receiveForget;
    this.receivers.push(w);
    w._arm(timeout, receiveTimedOut);
    return w.promise;
  }

  send(data: string | Uint8Array | ArrayBuffer | Blob): void {
    if (this.closed || this.socket.readyState !== WebSocket.OPEN) {
      throw new Deno.errors.BrokenPipe("The WebSocket is closed");
    }
    this.socket.send(data as string);
  }

  close(code?: number, reason?: string): void {
    if (this.#closing || this.isClosed) return;
    this.#closing = true;
    for (const w of this.receivers.splice(0)) w._wake(null);
    const state = this.socket.readyState;
    if (state === WebSocket.OPEN || state === WebSocket.CONNECTING) {
      this.socket.close(code, reason);
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<string | Uint8Array, void, undefined> {
    for (;;) {
      const message = await this.receive();
      if (message === null) return;
      yield message;
    }
  }

  /** Never upgraded (the response was not sent): the handler goes. */
  abandon(): void {
    this.isClosed = true;
    this.#closedEvent.set();
    if (!this.g.dead) this.g._deliverKill(undefined);
  }

  async shut(): Promise<void> {
    if (!this.g.dead) await this.g.kill();
    this.close(1001, "Server stopping");
    if (this.socket.readyState !== WebSocket.CONNECTING) await this.#closedEvent.wait();
  }
}

async function webSocket(
  conn: Socket,
  handle: (ws: WebSocketConnection) => unknown,
): Promise<unknown> {
  let code = 1000;
  try {
    await conn.opened.wait();
    return await handle(conn);
  } catch (error) {
    code = error instanceof GreenletExit ? 1001 : 1011;
    throw error;
  } finally {
    conn.close(code);
  }
}

/**
 * Upgrades a request to a WebSocket and runs `handle(ws)` in a greenlet of its own for the
 * socket's life; returns the `101` response to return from the handler. `handle` starts once
 * the socket is open; the socket is closed when `handle` ends (code 1000, or 1011 if it
 * threw). `await ws.receive({ timeout })` is a blocking call that gives the next message
 * (string or `Uint8Array`) or `null` once the socket is closed.
 *
 * When the client closes the socket or goes away, a handler waiting in `receive()` gets
 * `null` (a `for await` loop ends); a handler blocked anywhere else is killed with
 * `GreenletExit`. When the server stops, handlers still running after `stop()`'s timeout
 * are killed and their sockets closed with 1001. What a handler throws is reported by the hub.
 *
 * @param request The request (from `Deno.serve`) asking for the upgrade.
 * @param handle Runs the socket.
 * @param options `Deno.upgradeWebSocket`'s options (`protocol`, `idleTimeout`).
 * @returns The `101 Switching Protocols` response.
 * @throws {TypeError} If `handle` is not a function, or the request is not a WebSocket
 *   upgrade.
 *
 * @example An echo server
 * ```ts
 * import { HttpServer, upgradeWebSocket } from "./http.ts";
 * import assert from "node:assert/strict";
 *
 * await using server = new HttpServer(["127.0.0.1", 0], (req) =>
 *   upgradeWebSocket(req, async (ws) => {
 *     for await (const message of ws) ws.send(`echo: ${message}`);
 *   }), { log: null });
 * server.start();
 * const client = new WebSocket(`ws://127.0.0.1:${server.address[1]}/`);
 * const reply = new Promise<string>((resolve) => client.onmessage = (e) => resolve(e.data));
 * client.onopen = () => client.send("hi");
 * assert.equal(await reply, "echo: hi");
 * const closed = new Promise((resolve) => client.onclose = resolve);
 * client.close();
 * await closed;
 * ```
 */
export function upgradeWebSocket(
  request: Request,
  handle: (ws: WebSocketConnection) => unknown,
  options?: Deno.UpgradeWebSocketOptions,
): Response {
  _checkFn(handle, "handle");
  // Deno closes the request on upgrade: what the log and reports show of it is read first.
  const current = getCurrent();
  const st = current instanceof RequestGreenlet ? current._args[0] : undefined;
  if (st instanceof Req && st.engine.log !== undefined) {
    void st.client;
    void st.line;
  }
  const { socket, response } = Deno.upgradeWebSocket(request, options);
  const conn = new Socket(socket);
  const g = new Greenlet(webSocket, conn, handle);
  conn.g = g;
  track(conn);
  discards.set(response, () => conn.abandon());
  g.start();
  return response;
}
