/**
 * A generic TCP (or TLS) server: gevent's `gevent.server.StreamServer`.
 *
 * Each accepted connection is handled by `handle(socket, address)` in a greenlet of its own;
 * when the handler returns or throws, the connection is closed. A handler that throws is
 * reported by the hub (`Hub.handleError`) and the server keeps serving.
 *
 * @module
 */

import { SocketError } from "./_errors.ts";
import { Event } from "./event.ts";
import { getCurrent, type Greenlet, joinAll, killAll, spawn } from "./greenlet.ts";
import { _badTimeout, getHub } from "./hub.ts";
import { _checkHost, _checkPort, type Address } from "./resolver.ts";
import { listen, ListeningSocket, type ListenTlsOptions, type Socket } from "./socket.ts";

/** A connection handler: runs in its own greenlet; the socket is closed when it ends. */
export type StreamHandler = (socket: Socket, address: Address) => unknown;

/** Something that spawns greenlets, such as a `Pool` (its `spawn` may wait for room). */
export interface Spawner {
  /** Starts `fn(socket, address)` in a greenlet and returns it (or a promise of it). */
  spawn(
    fn: (socket: Socket, address: Address) => Promise<unknown>,
    socket: Socket,
    address: Address,
  ): Greenlet<unknown> | Promise<Greenlet<unknown>>;
}

/** Options of {@linkcode StreamServer}. */
export interface StreamServerOptions {
  /**
   * How handlers are started: a number caps how many run at once (the server stops
   * accepting while the cap is reached), a pool spawns them; default: no limit.
   */
  spawn?: number | Spawner;
  /** The kernel's accept queue length, when the server binds the address itself. */
  backlog?: number;
  /** Serve TLS with this certificate and key, when the server binds the address itself. */
  tls?: ListenTlsOptions;
}

/** Options of {@linkcode StreamServer.stop}. */
export interface StopOptions {
  /** Milliseconds to let running handlers finish before they are killed (default 1000). */
  timeout?: number;
}

/**
 * A TCP server that handles every connection in a new greenlet: gevent's `StreamServer`.
 *
 * Life cycle: `start()` binds (when given an address) and starts accepting in a greenlet;
 * `serveForever()` starts and then waits until `stop()`; `stop({ timeout })` stops
 * accepting, lets running handlers finish for `timeout` ms, kills the rest and closes every
 * connection. `await using` stops the server at the end of the scope.
 *
 * @example An echo server
 * ```ts
 * import { StreamServer } from "./server.ts";
 * import { createConnection, type Socket } from "./socket.ts";
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
  #limit: number | undefined;
  #spawner: Spawner | undefined;
  #backlog: number | undefined;
  #tls: ListenTlsOptions | undefined;
  #acceptor: Greenlet<unknown> | undefined = undefined;
  #handlers = new Set<Greenlet<unknown>>();
  #sockets = new Set<Socket>();
  #room = new Event();
  #stopped = new Event();
  #started = false;
  #closed = false;

  /**
   * Creates a server (not started).
   *
   * @param listener `[host, port]` to bind on `start()` (port 0 picks a free one), or a
   *   listening socket (`listen()`'s, or any `Deno.Listener`, such as `Deno.listenTls`'s).
   * @param handle Called as `handle(socket, address)` in a new greenlet per connection.
   * @param options `spawn`, `backlog`, `tls`.
   * @throws {TypeError} If `handle` is not a function, or `listener` is neither an address
   *   nor a listener, or `spawn` is neither a number nor a spawner.
   * @throws {RangeError} For a port outside 0-65535 or a `spawn` limit below 1.
   */
  constructor(
    listener: Address | ListeningSocket | Deno.Listener,
    handle: StreamHandler,
    options: StreamServerOptions = {},
  ) {
    if (typeof handle !== "function") {
      throw new TypeError(`'handle' must be a function: current value is ${String(handle)}`);
    }
    this.#handle = handle;
    // Failure reports then name the handler: `<Greenlet "Greenlet-3": echo(<Socket ...>, ...)>`.
    Object.defineProperty(this.#run, "name", { value: handle.name || "handle" });
    if (Array.isArray(listener)) {
      const [host, port] = listener;
      _checkHost(host);
      _checkPort(port);
      this.#address = [host, port];
      this.#listener = undefined;
      this.#ownsListener = true;
    } else if (listener instanceof ListeningSocket) {
      this.#listener = listener;
      this.#address = listener.getsockname();
      this.#ownsListener = false;
    } else if (listener !== null && typeof listener === "object" && "accept" in listener) {
      this.#listener = new ListeningSocket(listener);
      this.#address = this.#listener.getsockname();
      this.#ownsListener = true;
    } else {
      throw new TypeError(
        `'listener' must be [host, port] or a listener: current value is ${String(listener)}`,
      );
    }
    const { spawn: spawner, backlog, tls } = options;
    if (typeof spawner === "number") {
      if (!Number.isInteger(spawner) || spawner < 1) {
        throw new RangeError(`'spawn' must be a positive integer: current value is ${spawner}`);
      }
      this.#limit = spawner;
    } else if (spawner !== undefined) {
      if (spawner === null || typeof spawner.spawn !== "function") {
        throw new TypeError(
          `'spawn' must be a number or have a spawn() method: current value is ${spawner}`,
        );
      }
      this.#spawner = spawner;
    }
    this.#backlog = backlog;
    this.#tls = tls;
  }

  /** The address served: `[host, port]`, with the real port once started. */
  get address(): Address {
    return [...this.#address];
  }

  /** Whether the server is accepting connections. */
  get started(): boolean {
    return this.#started && !this.#closed;
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
    this.#acceptor = spawn(this.#acceptLoop);
    this.#acceptor.name = `StreamServer ${this.#address.join(":")}`;
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
  async stop(options: StopOptions = {}): Promise<void> {
    const { timeout = 1000 } = options;
    const bad = _badTimeout(timeout);
    if (bad !== undefined) throw bad;
    if (this.#closed) {
      await this.#stopped.wait();
      return;
    }
    this.#closed = true;
    if (this.#ownsListener || this.#started) this.#listener?.close();
    const me = getCurrent();
    if (this.#acceptor !== undefined && this.#acceptor !== me) await this.#acceptor.kill();
    const running = [...this.#handlers].filter((g) => g !== me && !g.dead);
    if (running.length > 0) {
      await joinAll(running, { timeout });
      const left = running.filter((g) => !g.dead);
      if (left.length > 0) await killAll(left);
    }
    for (const sock of this.#sockets) sock.close();
    this.#sockets.clear();
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

  #acceptLoop = async (): Promise<void> => {
    const listener = this.#listener!;
    for (;;) {
      if (this.#limit !== undefined) {
        while (this.#handlers.size >= this.#limit) {
          this.#room.clear();
          await this.#room.wait();
        }
      }
      let sock: Socket;
      let address: Address;
      try {
        [sock, address] = await listener.accept();
      } catch (error) {
        if (listener.closed || this.#closed) return;
        if (!(error instanceof SocketError)) throw error;
        getHub().handleError(this, error); // EMFILE and the like: report and go on
        continue;
      }
      this.#sockets.add(sock);
      let g: Greenlet<unknown>;
      try {
        g = this.#spawner === undefined
          ? spawn(this.#run, sock, address)
          : await this.#spawner.spawn(this.#run, sock, address);
      } catch (error) {
        sock.close();
        this.#sockets.delete(sock);
        throw error;
      }
      if (!g.dead) this.#handlers.add(g);
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
      this.#room.set();
    }
  };
}
