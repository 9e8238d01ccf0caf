/**
 * @ignore A TCP connection from a chosen local address. `Deno.connect` cannot bind the local
 * end, `node:net` can: this wraps a `node:net` socket in the part of the `Deno.Conn`
 * interface that `socket.ts` uses (`read`, `write`, `closeWrite`, `close`, `setNoDelay`,
 * `localAddr`, `remoteAddr`).
 *
 * @module
 */

import type net from "node:net";
import { _builtin } from "./_platform.ts";

/** A `node:net` socket behind the `Deno.Conn` methods `socket.ts` calls. */
class BoundConn {
  #socket: net.Socket;
  #chunks: Uint8Array[] = [];
  #eof = false;
  #error: unknown = undefined;
  #pending:
    | { buf: Uint8Array; resolve: (n: number | null) => void; reject: (e: unknown) => void }
    | undefined = undefined;
  #closed = false;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.pause();
    socket.on("data", (data: Uint8Array) => {
      this.#chunks.push(data);
      socket.pause();
      this.#deliver();
    });
    socket.on("end", () => {
      this.#eof = true;
      this.#deliver();
    });
    socket.on("error", (error: unknown) => {
      this.#error = error;
      this.#deliver();
    });
  }

  #deliver(): void {
    const p = this.#pending;
    if (p === undefined) return;
    if (this.#chunks.length > 0) {
      this.#pending = undefined;
      p.resolve(this.#take(p.buf));
    } else if (this.#error !== undefined) {
      this.#pending = undefined;
      p.reject(this.#error);
    } else if (this.#eof) {
      this.#pending = undefined;
      p.resolve(null);
    }
  }

  #take(buf: Uint8Array): number {
    const first = this.#chunks[0];
    const n = Math.min(first.length, buf.length);
    buf.set(first.subarray(0, n));
    if (n === first.length) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    return n;
  }

  read(buf: Uint8Array): Promise<number | null> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("Bad resource ID"));
    if (this.#chunks.length > 0) return Promise.resolve(this.#take(buf));
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#eof) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      this.#pending = { buf, resolve, reject };
      this.#socket.resume();
    });
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("Bad resource ID"));
    const copy = data.slice(); // node keeps the buffer until it is flushed
    return new Promise((resolve, reject) => {
      this.#socket.write(
        copy,
        (error?: Error | null) => error ? reject(error) : resolve(copy.length),
      );
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(resolve));
  }

  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("Bad resource ID");
    this.#closed = true;
    this.#socket.destroy();
    const p = this.#pending;
    if (p !== undefined) {
      this.#pending = undefined;
      p.reject(new Deno.errors.Interrupted("operation canceled"));
    }
  }

  setNoDelay(noDelay = true): void {
    this.#socket.setNoDelay(noDelay);
  }

  get localAddr(): Deno.NetAddr {
    const s = this.#socket;
    return { transport: "tcp", hostname: s.localAddress ?? "", port: s.localPort ?? 0 };
  }

  get remoteAddr(): Deno.NetAddr {
    const s = this.#socket;
    return { transport: "tcp", hostname: s.remoteAddress ?? "", port: s.remotePort ?? 0 };
  }
}

/**
 * @ignore Connects from `[localHost, localPort]` to `[host, port]`; resolves once connected.
 * Aborting the signal destroys the socket (and rejects with the signal's reason).
 */
export function _connectFrom(
  host: string,
  port: number,
  localHost: string,
  localPort: number,
  signal: AbortSignal,
): Promise<Deno.TcpConn> {
  return new Promise((resolve, reject) => {
    const socket = new (_builtin<typeof net>("node:net").Socket)();
    const onAbort = (): void => {
      socket.destroy();
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("error", (error) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(error);
    });
    socket.once("connect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.removeAllListeners("error");
      // Only the methods socket.ts calls are implemented (see the module doc).
      resolve(new BoundConn(socket) as unknown as Deno.TcpConn);
    });
    socket.connect({
      host,
      port,
      localAddress: localHost === "" ? undefined : localHost,
      localPort: localPort === 0 ? undefined : localPort,
    });
  });
}
