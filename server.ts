/**
 * A generic TCP (or TLS) server: gevent's `gevent.server.StreamServer`.
 *
 * Each accepted connection is handled by `handle(socket, address)` in a greenlet of its own;
 * when the handler returns or throws, the connection is closed. A handler that throws is
 * reported by the hub (`Hub.handleError`) and the server keeps serving. Accepting can be
 * paused and resumed without closing the listening socket (`stopAccepting()` /
 * `startAccepting()`). When a handler cannot be started (the spawner throws, rejects, or
 * returns something that is not a greenlet), the failure is reported, that connection is
 * closed, and the server pauses accepting briefly, as gevent's does, before it goes on.
 *
 * @module
 */

import { SocketError } from "./_errors.ts";
import { _clearTimer, _setTimer, type _Timer } from "./core.ts";
import { Event } from "./event.ts";
import { getCurrent, Greenlet, joinAll, killAll, spawn } from "./greenlet.ts";
import { _badBag, _badTimeout, _checkFn, _render } from "./_check.ts";
import { getHub } from "./hub.ts";
import { Pool } from "./pool.ts";
import { _checkHost, _checkPort, type Address } from "./resolver.ts";
import { listen, ListeningSocket, type ListenTlsOptions, type Socket } from "./socket.ts";

export type { Address, ListenTlsOptions, Socket };
export type { RecvLineOptions, SocketCallOptions } from "./socket.ts";

/** A connection handler: runs in its own greenlet; the socket is closed when it ends. */
export type StreamHandler = (socket: Socket, address: Address) => unknown;

/** Something that spawns greenlets, such as a `Pool` (its `spawn` may wait for room). */
export interface Spawner {
  /**
   * Starts `fn(socket, address)` in a greenlet and returns that `Greenlet` (or a promise of
   * it). If it throws, rejects (a full pool's `PoolFull`) or returns anything but a
   * greenlet, the server reports it, closes the connection and pauses accepting briefly.
   */
  spawn(
    fn: (socket: Socket, address: Address) => Promise<unknown>,
    socket: Socket,
    address: Address,
  ): object | Promise<object>;
}

/** Options of {@linkcode StreamServer}. */
export interface StreamServerOptions {
  /**
   * How handlers are started: a number caps how many run at once (the server runs them in a
   * `Pool` of that size, as gevent's does, and stops accepting while it is full), a pool or
   * other spawner spawns them; default: no limit.
   */
  spawn?: number | Spawner;
  /**
   * The kernel's accept queue length. Only for a server that binds an address itself: with
   * a listening socket it is a `TypeError` (set it where that socket is created).
   */
  backlog?: number;
  /**
   * Serve TLS with this certificate and key. Only for a server that binds an address
   * itself: with a listening socket it is a `TypeError` (pass a `Deno.listenTls` listener).
   */
  tls?: ListenTlsOptions;
}

/** Options of {@linkcode StreamServer.stop}. */
export interface StopOptions {
  /** Milliseconds to let running handlers finish before they are killed (default 1000). */
  timeout?: number;
}

/** gevent's `BaseServer.min_delay`: the first pause, in ms, after a failed accept or spawn. */
const MIN_DELAY = 10;
/** gevent's `BaseServer.max_delay`: pauses after consecutive failures double up to this. */
const MAX_DELAY = 1000;

/**
 * A TCP server that handles every connection in a new greenlet: gevent's `StreamServer`.
 *
 * Life cycle: `start()` binds (when given an address) and starts accepting in a greenlet;
 * `serveForever()` starts and then waits until `stop()`; `stop({ timeout })` stops
 * accepting, lets running handlers finish for `timeout` ms, kills the rest and closes every
 * connection. `await using` stops the server at the end of the scope.
 *
 * Accepting can be paused with `stopAccepting()` and resumed with `startAccepting()`: the
 * listening socket stays open meanwhile, so clients can still connect (the kernel queues
 * them, up to its backlog) but no handler starts until accepting resumes.
 *
 * Failures: an error from `accept()` (such as `EMFILE`) or from starting a handler (a
 * spawner that throws, rejects, or returns something that is not a greenlet) is reported
 * through the hub (`Hub.handleError`); a connection whose handler could not start is closed.
 * Then the server pauses accepting for 10 ms, doubled after each consecutive failure up to
 * 1000 ms and reset by the next successful accept (gevent's `min_delay` and `max_delay`),
 * and resumes by itself. It never stops serving because of such a failure.
 *
 * @example An echo server
 * ```ts
 * import { StreamServer } from "@x/gevent/server";
 * import { createConnection, type Socket } from "@x/gevent/socket";
 * import assert from "node:assert/strict";
 *
 * async function echo(sock: Socket): Promise<void> {
 *   for (let data; (data = await sock.recv()).length > 0;) await sock.sendall(data);
 * }
 * await using server = new StreamServer(["127.0.0.1", 0], echo);
 * server.start();
 * using client = await createConnection(server.address);
 * await client.sendall(new TextEncoder().encode("hello"));
 * assert.equal(new TextDecoder().decode(await client.recv()), "hello");
 * ```
 */
export class StreamServer {
  #address: Address;
  #listener: ListeningSocket | undefined;
  #ownsListener: boolean;
  #handle: StreamHandler;
  /** The handlers' pool when `spawn` is a number (gevent's `Pool(spawn)`). */
  #pool: Pool | undefined;
  #spawner: Spawner | undefined;
  #backlog: number | undefined;
  #tls: ListenTlsOptions | undefined;
  /** The greenlet running the accept loop; `undefined` while accepting is paused. */
  #acceptor: Greenlet<unknown> | undefined = undefined;
  /** The acceptor while it waits where a pause may interrupt it (`accept()`, a free slot). */
  #interruptible: Greenlet<unknown> | undefined = undefined;
  #handlers = new Set<Greenlet<unknown>>();
  #sockets = new Set<Socket>();
  #stopped = new Event();
  #started = false;
  #closed = false;
  /** Whether accepting is wanted: false while paused (by the user or after a failure). */
  #accepting = false;
  /** Ends the pause after a failure. */
  #resumeTimer: _Timer | undefined = undefined;
  /** The next pause after a failure, in ms. */
  #delay = MIN_DELAY;

  /**
   * Creates a server (not started).
   *
   * @param listener `[host, port]` to bind on `start()` (port 0 picks a free one), or a
   *   listening socket (`listen()`'s, or any `Deno.Listener`, such as `Deno.listenTls`'s).
   * @param handle Called as `handle(socket, address)` in a new greenlet per connection.
   * @param options `spawn`, `backlog`, `tls`.
   * @throws {TypeError} If `handle` is not a function, `listener` is neither an address
   *   nor a listener, `spawn` is neither a number nor a spawner, or `backlog` or `tls` is
   *   given with a listening socket (they only apply when the server binds an address).
   * @throws {RangeError} For a port outside 0-65535, a `spawn` limit below 1 or a `backlog`
   *   that is not a positive integer.
   */
  constructor(
    listener: Address | ListeningSocket | Deno.Listener,
    handle: StreamHandler,
    options?: StreamServerOptions,
  ) {
    if (options === undefined) options = {};
    _checkFn(handle, "handle");
    const badOptions = _badBag(options);
    if (badOptions !== undefined) throw badOptions;
    const { spawn: spawner, backlog, tls } = options;
    const isAddress = Array.isArray(listener);
    const isListener = !isAddress && listener !== null && typeof listener === "object" &&
      "accept" in listener;
    if (!isAddress && !isListener) {
      throw new TypeError(
        `'listener' must be [host, port] or a listener: current value is ${_render(listener)}`,
      );
    }
    // Checked before a Deno.Listener is wrapped, so that nothing is taken over on failure.
    if (isListener) {
      for (const [name, value] of [["backlog", backlog], ["tls", tls]] as const) {
        if (value === undefined) continue;
        throw new TypeError(
          `'${name}' must be undefined when 'listener' is a listening socket (it only applies ` +
            `when the server binds an address): current value is ${_render(value)}`,
        );
      }
    } else if (backlog !== undefined) {
      if (typeof backlog !== "number" || !Number.isInteger(backlog) || backlog < 1) {
        const msg = `'backlog' must be a positive integer: current value is ${_render(backlog)}`;
        throw typeof backlog === "number" ? new RangeError(msg) : new TypeError(msg);
      }
    }
    if (typeof spawner === "number") {
      if (!Number.isInteger(spawner) || spawner < 1) {
        throw new RangeError(`'spawn' must be a positive integer: current value is ${spawner}`);
      }
      this.#pool = new Pool(spawner);
    } else if (spawner !== undefined) {
      if (spawner === null || typeof spawner.spawn !== "function") {
        throw new TypeError(
          `'spawn' must be a number or have a spawn() method: current value is ${_render(spawner)}`,
        );
      }
      this.#spawner = spawner;
    }
    if (isAddress) {
      const [host, port] = listener as Address;
      _checkHost(host);
      _checkPort(port);
      this.#address = [host, port];
      this.#listener = undefined;
      this.#ownsListener = true;
    } else if (listener instanceof ListeningSocket) {
      this.#listener = listener;
      this.#address = listener.getsockname();
      this.#ownsListener = false;
    } else {
      this.#listener = new ListeningSocket(listener as Deno.Listener);
      this.#address = this.#listener.getsockname();
      this.#ownsListener = true;
    }
    this.#handle = handle;
    // Failure reports then name the handler: `<Greenlet "Greenlet-3": echo(<Socket ...>, ...)>`.
    Object.defineProperty(this.#run, "name", { value: handle.name || "handle" });
    this.#backlog = backlog;
    this.#tls = tls;
  }

  /** The address served: `[host, port]`, with the real port once started. */
  get address(): Address {
    return [...this.#address];
  }

  /**
   * Whether the server was started and not stopped. It stays `true` while accepting is
   * paused; see {@linkcode StreamServer.accepting}.
   */
  get started(): boolean {
    return this.#started && !this.#closed;
  }

  /**
   * Whether the server is accepting connections now: started, not stopped, and not paused
   * (by {@linkcode StreamServer.stopAccepting}, or briefly after a failure).
   */
  get accepting(): boolean {
    return this.#started && !this.#closed && this.#accepting;
  }

  /** Whether `stop()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The number of connections being handled now. */
  get connectionCount(): number {
    return this.#sockets.size;
  }

  /**
   * Binds (when given an address) and starts accepting in a greenlet. Returns at once;
   * starting a started server does nothing.
   *
   * @throws {SocketError} If the address cannot be bound (`EADDRINUSE`, ...) or the server
   *   was stopped.
   */
  start(): void {
    if (this.#closed) throw new SocketError("Cannot start a stopped server", "EBADF");
    if (this.#started) return;
    if (this.#listener === undefined) {
      this.#listener = listen(this.#address, { backlog: this.#backlog, tls: this.#tls });
      this.#address = this.#listener.getsockname();
    }
    this.#started = true;
    this.#accepting = true;
    this.#spawnAcceptor();
  }

  /**
   * Pauses accepting without closing the listening socket: gevent's `stop_accepting()`.
   * Handlers already running go on. Clients can still connect (the kernel queues them, up
   * to the backlog), but no new handler starts until {@linkcode StreamServer.startAccepting}.
   * A connection the server was already handing to a handler when this is called is still
   * handled. Also cancels the automatic resumption after a failure. Does nothing if the
   * server is not accepting.
   *
   * @example Connections made while paused wait for startAccepting()
   * ```ts
   * import { StreamServer } from "./server.ts";
   * import { createConnection, type Socket } from "./socket.ts";
   * import assert from "node:assert/strict";
   *
   * const greet = (sock: Socket) => sock.sendall(new TextEncoder().encode("hi"));
   * await using server = new StreamServer(["127.0.0.1", 0], greet);
   * server.start();
   * server.stopAccepting();
   * assert.equal(server.accepting, false);
   * assert.equal(server.started, true);
   * using client = await createConnection(server.address); // queued by the kernel
   * server.startAccepting();
   * assert.equal(new TextDecoder().decode(await client.recv()), "hi");
   * ```
   */
  stopAccepting(): void {
    if (this.#resumeTimer !== undefined) {
      _clearTimer(this.#resumeTimer);
      this.#resumeTimer = undefined;
    }
    if (!this.#accepting) return;
    this.#accepting = false;
    const g = this.#acceptor;
    // Interrupt the acceptor only where it waits for a connection or a free slot (then it
    // holds nothing); busy starting a handler, it finishes that and then sees the pause.
    if (g !== undefined && this.#interruptible === g && g._wait !== undefined) {
      this.#acceptor = undefined;
      this.#interruptible = undefined;
      g._deliverKill(undefined);
    }
  }

  /**
   * Resumes accepting after {@linkcode StreamServer.stopAccepting} (or ends the pause after
   * a failure early): gevent's `start_accepting()`. Connections that arrived meanwhile are
   * accepted now, in order. Does nothing if the server is accepting, or not started yet
   * (`start()` starts accepting).
   *
   * @throws {SocketError} If the server was stopped (`EBADF`).
   *
   * @example
   * ```ts
   * import { StreamServer } from "./server.ts";
   * import { createConnection, type Socket } from "./socket.ts";
   * import assert from "node:assert/strict";
   *
   * const greet = (sock: Socket) => sock.sendall(new TextEncoder().encode("hi"));
   * await using server = new StreamServer(["127.0.0.1", 0], greet);
   * server.start();
   * server.stopAccepting();
   * server.startAccepting();
   * assert.equal(server.accepting, true);
   * using client = await createConnection(server.address);
   * assert.equal(new TextDecoder().decode(await client.recv()), "hi");
   * ```
   */
  startAccepting(): void {
    if (this.#closed) throw new SocketError("Cannot start accepting on a stopped server", "EBADF");
    if (!this.#started) return;
    if (this.#resumeTimer !== undefined) {
      _clearTimer(this.#resumeTimer);
      this.#resumeTimer = undefined;
    }
    if (this.#accepting) return;
    this.#accepting = true;
    // An acceptor that was busy starting a handler when paused is still running: it goes on.
    if (this.#acceptor === undefined) this.#spawnAcceptor();
  }

  /**
   * Starts the server if needed and waits until it is stopped. A blocking call; killing
   * the greenlet that waits here stops the server (handlers get the default 1000 ms).
   *
   * @returns A promise that resolves once `stop()` has finished.
   * @throws {SocketError} (as a rejection) If the address cannot be bound.
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
   * Stops the server: closes the listening socket, waits up to `timeout` ms for running
   * handlers, kills those still running, and closes every connection. Stopping twice is
   * harmless (the second call waits for the first).
   *
   * @param options `timeout` in milliseconds (default 1000).
   * @returns A promise that resolves once every handler has ended.
   * @throws {RangeError} (as a rejection) For a negative or non-finite timeout.
   */
  async stop(options?: StopOptions): Promise<void> {
    if (options === undefined) options = {};
    const badOptions = _badBag(options);
    if (badOptions !== undefined) throw badOptions;
    const { timeout = 1000 } = options;
    const bad = _badTimeout(timeout);
    if (bad !== undefined) throw bad;
    if (this.#closed) {
      await this.#stopped.wait();
      return;
    }
    this.#closed = true;
    this.#accepting = false;
    if (this.#resumeTimer !== undefined) {
      _clearTimer(this.#resumeTimer);
      this.#resumeTimer = undefined;
    }
    if (this.#ownsListener || this.#started) this.#listener?.close();
    const me = getCurrent();
    const acceptor = this.#acceptor;
    if (acceptor !== undefined && acceptor !== me) await acceptor.kill();
    const running = [...this.#handlers].filter((g) => g !== me && !g.dead);
    if (running.length > 0) {
      await joinAll(running, { timeout });
      const left = running.filter((g) => !g.dead);
      if (left.length > 0) await killAll(left);
    }
    for (const sock of this.#sockets) sock.close();
    this.#sockets.clear();
    // Deno frees the port one turn of the event loop after the listener is closed: resolve
    // once it is free, so the same address can be served again at once.
    await new Promise((resolve) => setTimeout(resolve, 0));
    this.#stopped.set();
  }

  /** Stops the server (default timeout) at the end of an `await using` scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Renders as `<StreamServer 127.0.0.1:8000>`. */
  toString(): string {
    return `<StreamServer ${this.#address.join(":")}>`;
  }

  #spawnAcceptor(): void {
    const g = spawn(this.#acceptLoop);
    g.name = `StreamServer ${this.#address.join(":")}`;
    this.#acceptor = g;
  }

  /**
   * Pauses accepting for the current delay (doubled for the next failure), unless the user
   * paused it meanwhile, then reports a failure to accept or to start a handler.
   */
  #failed(context: unknown, error: unknown): void {
    if (this.#accepting && !this.#closed) {
      this.#accepting = false;
      const delay = this.#delay;
      this.#delay = Math.min(MAX_DELAY, delay * 2);
      this.#resumeTimer = _setTimer(this.#resume, delay, undefined);
    }
    getHub()._report(context, error);
  }

  #resume = (): void => {
    this.#resumeTimer = undefined;
    if (this.#closed || this.#accepting) return;
    this.#accepting = true;
    if (this.#acceptor === undefined) this.#spawnAcceptor();
  };

  #acceptLoop = async (): Promise<void> => {
    const me = getCurrent()!;
    const listener = this.#listener!;
    try {
      for (;;) {
        if (!this.#accepting || this.#closed || this.#acceptor !== me) return;
        const pool = this.#pool;
        if (pool !== undefined && pool.full()) {
          // Wait for a handler to end before accepting (gevent stops accepting while its
          // pool is full): the kernel queues the clients meanwhile.
          this.#interruptible = me;
          try {
            await pool.waitAvailable();
          } finally {
            if (this.#interruptible === me) this.#interruptible = undefined;
          }
          continue;
        }
        let sock: Socket;
        let address: Address;
        this.#interruptible = me;
        try {
          [sock, address] = await listener.accept();
        } catch (error) {
          // Stopped, or paused (the pause kills this acceptor; a new one resumes).
          if (this.#closed || me.signal.aborted) return;
          if (listener.closed) {
            this.#accepting = false; // the listening socket was closed behind our back
            return;
          }
          this.#failed(this, error); // EMFILE and the like: report, pause, go on
          continue;
        } finally {
          if (this.#interruptible === me) this.#interruptible = undefined;
        }
        this.#delay = MIN_DELAY;
        this.#sockets.add(sock);
        let g: unknown;
        try {
          g = this.#pool !== undefined
            ? await this.#pool.spawn(this.#run, sock, address) // a slot is free: no wait
            : this.#spawner === undefined
            ? spawn(this.#run, sock, address)
            : await this.#spawner.spawn(this.#run, sock, address);
          if (!(g instanceof Greenlet)) {
            throw new TypeError(
              `'spawn' must return a Greenlet or a promise of one: current value is ${_render(g)}`,
            );
          }
        } catch (error) {
          sock.close();
          this.#sockets.delete(sock);
          if (me.signal.aborted) throw error; // killed by stop()
          this.#failed(new SpawnFailure(this, address), error);
          continue;
        }
        if (!g.dead) this.#handlers.add(g);
      }
    } finally {
      if (this.#acceptor === me) this.#acceptor = undefined;
    }
  };

  #run = async (sock: Socket, address: Address): Promise<unknown> => {
    try {
      return await this.#handle(sock, address);
    } finally {
      sock.close();
      this.#sockets.delete(sock);
      const g = getCurrent();
      if (g !== undefined) this.#handlers.delete(g);
    }
  };
}

/** What a failure report names when a handler could not be started. */
class SpawnFailure {
  #server: StreamServer;
  #address: Address;
  constructor(server: StreamServer, address: Address) {
    this.#server = server;
    this.#address = address;
  }
  toString(): string {
    return `${this.#server} (starting the handler for ${this.#address.join(":")})`;
  }
}
