/**
 * Cooperative sockets and name resolution: gevent's `gevent.socket`, over `Deno.Conn`.
 *
 * Every network wait (`createConnection`, `accept`, `recv`, `send`, `sendall`, the DNS
 * functions) is a blocking call: other greenlets run meanwhile, and `kill()` or a `Timeout`
 * interrupts it. A socket's own `timeout` (milliseconds per operation) makes a stalled call
 * throw {@linkcode SocketTimeout}.
 *
 * Reads are never lost: Deno cannot cancel a pending read except by closing the connection,
 * so each socket keeps at most one read outstanding into its own buffer. When a `recv` is
 * interrupted the read stays outstanding and the next `recv` returns what it brought.
 *
 * The name functions go through the hub's resolver (`getHub().resolver`, a `Resolver` from
 * `resolver.ts`); they need `--allow-net` for the name server (see `resolver.ts`).
 *
 * @example The seed's introduction: concurrent lookups
 * ```ts
 * import { joinAll, socket, spawn } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const urls = ["localhost", "127.0.0.1", "::1"];
 * const jobs = urls.map((url) => spawn(socket.getaddrinfo, url, 80));
 * await joinAll(jobs, { timeout: 2000 });
 * assert.deepEqual(jobs.map((job) => (job.value as socket.AddrInfo[])[0].address[0]), [
 *   "127.0.0.1",
 *   "127.0.0.1",
 *   "::1",
 * ]);
 * ```
 *
 * @module
 */

import { _socketError, GaiError, SocketError, SocketTimeout } from "./_errors.ts";
import { _badTimeout, _begin, type _Waiter } from "./hub.ts";
import { _deno } from "./_platform.ts";
import { _connectFrom } from "./_bound_conn.ts";
import {
  _checkHost,
  _checkPort,
  type Address,
  type AddrInfo,
  type GetaddrinfoOptions,
  type GetnameinfoOptions,
  getResolver,
  type HostEntry,
  type Resolver,
} from "./resolver.ts";

export { GaiError, SocketError, type SocketErrorOptions, SocketTimeout } from "./_errors.ts";
export type {
  Address,
  AddressFamily,
  AddrInfo,
  GetaddrinfoOptions,
  GetnameinfoOptions,
  HostEntry,
  SocketKind,
} from "./resolver.ts";

// ---------------------------------------------------------------------------------------
// Name resolution, through the hub's resolver

/**
 * Calls the hub's resolver: what the name functions below share. A throw (a hub resolver
 * that is not a `Resolver`, or a method that throws at once) becomes a rejection, so these
 * blocking calls always fail asynchronously.
 */
function _viaResolver<T>(call: (resolver: Resolver) => Promise<T>): Promise<T> {
  try {
    return call(getResolver());
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Resolves a host name to one IPv4 address, cooperatively: gevent's
 * `socket.gethostbyname`. A blocking call (IP literals, `localhost` and cached answers
 * return without a query).
 *
 * @param host A host name or an IPv4 literal.
 * @returns The address.
 * @throws {TypeError} (as a rejection) If `host` is not a string.
 * @throws {GaiError} (as a rejection) If it cannot be resolved (`EAI_NONAME` for `""`).
 *
 * @example
 * ```ts
 * import { gethostbyname } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await gethostbyname("localhost"), "127.0.0.1");
 * ```
 */
export function gethostbyname(host: string): Promise<string> {
  return _viaResolver((r) => r.gethostbyname(host));
}

/**
 * Resolves a host name to all its IPv4 addresses: gevent's `socket.gethostbyname_ex`.
 *
 * @param host A host name or an IPv4 literal.
 * @returns `[hostname, aliases, addresses]` (aliases are not reported by Deno: empty).
 * @throws {TypeError} (as a rejection) If `host` is not a string.
 * @throws {GaiError} (as a rejection) If it cannot be resolved.
 *
 * @example
 * ```ts
 * import { gethostbynameEx } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(await gethostbynameEx("127.0.0.1"), ["127.0.0.1", [], ["127.0.0.1"]]);
 * ```
 */
export function gethostbynameEx(host: string): Promise<HostEntry> {
  return _viaResolver((r) => r.gethostbynameEx(host));
}

/**
 * Resolves a host and a port into socket addresses: gevent's `socket.getaddrinfo`.
 *
 * @param host A host name or an IP literal.
 * @param port A port from 0 to 65535.
 * @param options `family` (4 or 6) and `type` (`"stream"` or `"dgram"`).
 * @returns The entries, IPv4 first.
 * @throws {TypeError} (as a rejection) If `host` is not a string.
 * @throws {RangeError} (as a rejection) For a bad port, family or type.
 * @throws {GaiError} (as a rejection) If it cannot be resolved.
 *
 * @example
 * ```ts
 * import { getaddrinfo } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * const infos = await getaddrinfo("localhost", 8080, { type: "stream" });
 * assert.deepEqual(infos.map((i) => i.address), [["127.0.0.1", 8080], ["::1", 8080]]);
 * ```
 */
export function getaddrinfo(
  host: string,
  port: number,
  options?: GetaddrinfoOptions,
): Promise<AddrInfo[]> {
  return _viaResolver((r) => r.getaddrinfo(host, port, options));
}

/**
 * Finds the host name of an address by a reverse query: gevent's `socket.gethostbyaddr`.
 *
 * @param ip An IP address (a host name is resolved first).
 * @returns `[hostname, aliases, [ip]]`.
 * @throws {TypeError} (as a rejection) If `ip` is not a string.
 * @throws {GaiError} (as a rejection) If the address has no name.
 *
 * @example
 * ```ts
 * import { getHub } from "./hub.ts";
 * import { Resolver } from "./resolver.ts";
 * import { gethostbyaddr } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * const saved = getHub().resolver;
 * getHub().resolver = new Resolver({ nameservers: [{ ipAddr: "127.0.0.1", port: 5353 }] });
 * const [, , addrs] = await gethostbyaddr("127.0.0.1"); // answered from the hosts file
 * assert.deepEqual(addrs, ["127.0.0.1"]);
 * getHub().resolver = saved;
 * ```
 */
export function gethostbyaddr(ip: string): Promise<HostEntry> {
  return _viaResolver((r) => r.gethostbyaddr(ip));
}

/**
 * Turns `[ip, port]` into `[host, port]` names: gevent's `socket.getnameinfo`. The port is
 * returned as a decimal string (there is no services database).
 *
 * @param address `[ip, port]`.
 * @param options `numericHost`, `nameRequired`.
 * @returns `[host, port]`.
 * @throws {TypeError} (as a rejection) For a malformed address.
 * @throws {RangeError} (as a rejection) For a bad port.
 * @throws {GaiError} (as a rejection) With `nameRequired`, if the address has no name.
 *
 * @example
 * ```ts
 * import { getnameinfo } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(await getnameinfo(["::1", 443], { numericHost: true }), ["::1", "443"]);
 * ```
 */
export function getnameinfo(
  address: Address,
  options?: GetnameinfoOptions,
): Promise<[host: string, port: string]> {
  return _viaResolver((r) => r.getnameinfo(address, options));
}

/**
 * The fully qualified domain name of `name` (default: this machine, which needs
 * `--allow-sys`): gevent's `socket.getfqdn`. Never fails on a lookup error.
 *
 * @param name A host name or address.
 * @returns The fully qualified name, or `name` if none is found.
 * @throws {TypeError} (as a rejection) If `name` is not a string.
 *
 * @example
 * ```ts
 * import { getHub } from "./hub.ts";
 * import { Resolver } from "./resolver.ts";
 * import { getfqdn } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * const saved = getHub().resolver;
 * getHub().resolver = new Resolver({ nameservers: [{ ipAddr: "127.0.0.1", port: 5353 }] });
 * assert.equal(typeof await getfqdn("127.0.0.1"), "string");
 * getHub().resolver = saved;
 * ```
 */
export function getfqdn(name?: string): Promise<string> {
  return _viaResolver((r) => r.getfqdn(name));
}

// ---------------------------------------------------------------------------------------
// Socket

const EMPTY = new Uint8Array(0);
const BUFSIZE = 65536;

/**
 * The I/O state of a socket, kept apart so module-level functions can drive it. The read
 * and write callbacks are bound once per socket, so a round trip allocates no closures.
 */
class SocketIO {
  conn: Deno.Conn | undefined;
  /** The connection once closed (for toString). */
  closed: Deno.Conn | undefined = undefined;
  timeout: number | undefined;
  // Reading: at most one read outstanding, into `buf`; `buf[start, end)` is unread data.
  buf: Uint8Array = EMPTY;
  start = 0;
  end = 0;
  reading = false;
  eof = false;
  readError: SocketError | undefined = undefined;
  reader: _Waiter<Uint8Array | number> | undefined = undefined;
  want: number | Uint8Array = 0;
  onRead: (n: number | null) => void;
  onReadError: (error: unknown) => void;
  // Writing: at most one write outstanding; `writer` waits for `wdata` (all of it with
  // `wall`), of which `wsent` bytes are written. `wowner` is the waiter whose chunk is in
  // flight: after an interruption it is no longer `writer`.
  writing = false;
  writer: _Waiter<number | undefined> | undefined = undefined;
  wowner: _Waiter<number | undefined> | undefined = undefined;
  wdata: Uint8Array = EMPTY;
  wsent = 0;
  wall = false;
  onWrite: (n: number) => void;
  onWriteError: (error: unknown) => void;

  constructor(conn: Deno.Conn, timeout: number | undefined) {
    this.conn = conn;
    this.timeout = timeout;
    this.onRead = (n) => readDone(this, n);
    this.onReadError = (error) => readFailed(this, error);
    this.onWrite = (n) => writeDone(this, n);
    this.onWriteError = (error) => writeFailed(this, error);
  }
}

function closedError(what: string): SocketError {
  return new SocketError(`${what}: Bad file descriptor (the socket is closed)`, "EBADF");
}

function busyError(what: string): SocketError {
  return new SocketError(
    `${what}: This socket is already used by another greenlet`,
    "EBUSY",
  );
}

function take(io: SocketIO, want: number | Uint8Array): Uint8Array | number {
  const avail = io.end - io.start;
  if (typeof want === "number") {
    const k = want < avail ? want : avail;
    const out = io.buf.slice(io.start, io.start + k);
    io.start += k;
    return out;
  }
  const k = want.length < avail ? want.length : avail;
  want.set(io.buf.subarray(io.start, io.start + k));
  io.start += k;
  return k;
}

function readDone(io: SocketIO, n: number | null): void {
  io.reading = false;
  if (n === null) io.eof = true;
  else {
    io.start = 0;
    io.end = n;
  }
  const w = io.reader;
  if (w !== undefined) {
    io.reader = undefined;
    const want = io.want;
    w._wake(n === null ? (typeof want === "number" ? EMPTY : 0) : take(io, want));
  }
}

function readFailed(io: SocketIO, error: unknown): void {
  io.reading = false;
  if (io.conn === undefined) return; // closed meanwhile: the reader was already failed
  io.readError = _socketError(error, "recv");
  const w = io.reader;
  if (w !== undefined) {
    io.reader = undefined;
    w._fail(io.readError);
  }
}

function forgetReader(w: _Waiter<Uint8Array | number>): void {
  const io = w._owner as SocketIO;
  if (io.reader === w) io.reader = undefined;
}

/** The socket timeout of a `recv` or a `send` elapsed. */
function _timedOut<T>(w: _Waiter<T>): void {
  w._fail(new SocketTimeout());
}

function receive(io: SocketIO, want: number | Uint8Array): Promise<Uint8Array | number> {
  if (io.end > io.start) return Promise.resolve(take(io, want));
  if (io.conn === undefined) return Promise.reject(closedError("recv"));
  if (io.eof) return Promise.resolve(typeof want === "number" ? EMPTY : 0);
  if (io.readError !== undefined) return Promise.reject(io.readError);
  if (io.reader !== undefined) return Promise.reject(busyError("recv"));
  const w = _begin<Uint8Array | number>();
  if (w instanceof Promise) return w;
  if (!io.reading) {
    const size = typeof want === "number" ? want : want.length;
    if (io.buf.length < size || io.buf === EMPTY) {
      io.buf = new Uint8Array(size > BUFSIZE ? size : BUFSIZE);
    }
    io.reading = true;
    io.conn.read(io.buf).then(io.onRead, io.onReadError);
  }
  if (io.timeout === 0) {
    w._fail(new SocketTimeout());
    return w.promise;
  }
  io.reader = w;
  io.want = want;
  w._owner = io;
  w._onCancel = forgetReader;
  w._arm(io.timeout, _timedOut);
  return w.promise;
}

function startWrite(io: SocketIO, chunk: Uint8Array, owner: _Waiter<number | undefined>): void {
  io.writing = true;
  io.wowner = owner;
  io.conn!.write(chunk).then(io.onWrite, io.onWriteError);
}

function writeDone(io: SocketIO, n: number): void {
  const owner = io.wowner;
  io.writing = false;
  io.wowner = undefined;
  const w = io.writer;
  if (w === undefined) return; // an interrupted write finished; nobody waits
  if (io.conn === undefined) return; // closed meanwhile: the writer was already failed
  if (owner !== w) {
    // The write of an interrupted send finished: this send's data goes next.
    startWrite(io, io.wdata, w);
    return;
  }
  const sent = io.wsent += n;
  if (io.wall && sent < io.wdata.length) {
    startWrite(io, io.wdata.subarray(sent), w);
    return;
  }
  io.writer = undefined;
  w._wake(io.wall ? undefined : sent);
}

function writeFailed(io: SocketIO, error: unknown): void {
  io.writing = false;
  io.wowner = undefined;
  const w = io.writer;
  if (w !== undefined) {
    io.writer = undefined;
    w._fail(io.conn === undefined ? closedError("send") : _socketError(error, "send"));
  }
}

function forgetWriter(w: _Waiter<number | undefined>): void {
  const io = w._owner as SocketIO;
  if (io.writer === w) {
    io.writer = undefined;
    io.wdata = EMPTY;
  }
}

function transmit(io: SocketIO, data: Uint8Array, all: boolean): Promise<number | undefined> {
  if (!(data instanceof Uint8Array)) {
    return Promise.reject(
      new TypeError(`'data' must be a Uint8Array: current value is ${String(data)}`),
    );
  }
  if (io.conn === undefined) return Promise.reject(closedError("send"));
  if (io.writer !== undefined) return Promise.reject(busyError("send"));
  if (data.length === 0) return Promise.resolve(all ? undefined : 0);
  const w = _begin<number | undefined>();
  if (w instanceof Promise) return w;
  io.writer = w;
  io.wdata = data;
  io.wsent = 0;
  io.wall = all;
  w._owner = io;
  w._onCancel = forgetWriter;
  if (!io.writing) startWrite(io, data, w);
  w._arm(io.timeout, _timedOut);
  return w.promise;
}

/** Throws the error `_badTimeout` finds in a `timeout` option or property, if any. */
function _checkTimeout(timeout: unknown): void {
  const bad = _badTimeout(timeout);
  if (bad !== undefined) throw bad;
}

function checkSize(name: string, n: unknown): void {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) {
    const msg = `'${name}' must be a positive integer: current value is ${String(n)}`;
    throw typeof n === "number" ? new RangeError(msg) : new TypeError(msg);
  }
}

function addressOf(addr: Deno.Addr): Address {
  if (addr.transport === "tcp" || addr.transport === "udp") return [addr.hostname, addr.port];
  return ["", 0];
}

/** Options of the {@linkcode Socket} constructor. */
export interface SocketOptions {
  /** Milliseconds each operation may wait; `undefined` waits forever, `0` does not wait. */
  timeout?: number;
}

/**
 * A connected stream socket over a `Deno.Conn` (TCP or TLS), with gevent's cooperative
 * methods. Create one with {@linkcode createConnection}, receive them from
 * {@linkcode ListeningSocket.accept}, or wrap any `Deno.Conn`.
 *
 * Guarantees: a `recv` interrupted by a `Timeout`, the socket timeout or `kill()` loses no
 * bytes and leaves the socket usable. One greenlet at a time may receive (and one may
 * send); a second one is rejected with `EBUSY`. `close()` is synchronous and idempotent;
 * calls pending in other greenlets then fail with `EBADF`.
 *
 * Sharp edge: a write cannot be cancelled either. A `send`/`sendall` interrupted by a kill
 * or a timeout stops waiting, but the chunk already handed to Deno is still written (in
 * order, before anything sent later) and the rest of the data is not: the peer may have
 * received a prefix of it. After an interrupted `sendall`, close the socket unless the
 * protocol can resynchronise.
 *
 * @example An echo round trip on loopback
 * ```ts
 * import { createConnection, listen } from "./socket.ts";
 * import { spawn } from "./greenlet.ts";
 * import assert from "node:assert/strict";
 *
 * using server = listen(["127.0.0.1", 0]);
 * const echo = spawn(async () => {
 *   const [conn] = await server.accept();
 *   using _ = conn;
 *   for (let data; (data = await conn.recv(1024)).length > 0;) await conn.sendall(data);
 * });
 * using sock = await createConnection(server.getsockname());
 * await sock.sendall(new TextEncoder().encode("ping"));
 * assert.equal(new TextDecoder().decode(await sock.recv(1024)), "ping");
 * await sock.shutdown();
 * await echo.join();
 * ```
 */
export class Socket {
  #io: SocketIO;
  #readable: ReadableStream<Uint8Array> | undefined = undefined;
  #writable: WritableStream<Uint8Array> | undefined = undefined;

  /**
   * Wraps a connection.
   *
   * @param conn A `Deno.Conn` (for example a `Deno.TcpConn` or `Deno.TlsConn`).
   * @param options `timeout` in milliseconds.
   * @throws {TypeError} If `conn` is not a connection.
   * @throws {RangeError} For a negative or non-finite timeout.
   */
  constructor(conn: Deno.Conn, options: SocketOptions = {}) {
    if (conn === null || typeof conn !== "object" || typeof conn.read !== "function") {
      throw new TypeError(`'conn' must be a Deno.Conn: current value is ${String(conn)}`);
    }
    _checkTimeout(options.timeout);
    this.#io = new SocketIO(conn, options.timeout);
  }

  /**
   * Milliseconds each blocking operation may wait before it throws
   * {@linkcode SocketTimeout}; `undefined` (the default) waits forever, `0` never waits
   * (gevent: `settimeout`, in milliseconds).
   */
  get timeout(): number | undefined {
    return this.#io.timeout;
  }
  set timeout(value: number | undefined) {
    _checkTimeout(value);
    this.#io.timeout = value;
  }

  /** Whether {@linkcode Socket.close} was called. */
  get closed(): boolean {
    return this.#io.conn === undefined;
  }

  /** The underlying connection (`undefined` once closed). */
  get conn(): Deno.Conn | undefined {
    return this.#io.conn;
  }

  /**
   * Receives up to `bufsize` bytes. Resolves with what has arrived (at least one byte), or
   * an empty array at end of stream. A blocking call; bytes buffered by an earlier,
   * interrupted `recv` are returned at once.
   *
   * @param bufsize The most bytes to return (default 65536).
   * @returns The bytes; empty at end of stream.
   * @throws {RangeError} (as a rejection) If `bufsize` is not a positive integer.
   * @throws {SocketTimeout} (as a rejection) If nothing arrived within `timeout`.
   * @throws {SocketError} (as a rejection) If the socket is closed (`EBADF`), reset, or
   *   already receiving in another greenlet (`EBUSY`).
   */
  recv(bufsize: number = BUFSIZE): Promise<Uint8Array> {
    if (typeof bufsize !== "number" || !Number.isInteger(bufsize) || bufsize < 1) {
      try {
        checkSize("bufsize", bufsize);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return receive(this.#io, bufsize) as Promise<Uint8Array>;
  }

  /**
   * Receives into `buffer`: like {@linkcode Socket.recv}, but copies into the caller's
   * array and resolves with the number of bytes (0 at end of stream).
   *
   * @param buffer Where to put the bytes; at most `buffer.length` are received.
   * @returns The number of bytes received; 0 at end of stream.
   * @throws {TypeError} (as a rejection) If `buffer` is not a non-empty Uint8Array.
   * @throws {SocketTimeout} (as a rejection) If nothing arrived within `timeout`.
   * @throws {SocketError} (as a rejection) If the socket is closed, reset, or busy.
   */
  recvInto(buffer: Uint8Array): Promise<number> {
    if (!(buffer instanceof Uint8Array) || buffer.length === 0) {
      return Promise.reject(
        new TypeError(`'buffer' must be a non-empty Uint8Array: current value is ${buffer}`),
      );
    }
    return receive(this.#io, buffer) as Promise<number>;
  }

  /**
   * Sends some of `data` with one write and resolves with how many bytes were written
   * (possibly fewer than `data.length`). A blocking call.
   *
   * @param data The bytes to send.
   * @returns The number of bytes written.
   * @throws {TypeError} (as a rejection) If `data` is not a Uint8Array.
   * @throws {SocketTimeout} (as a rejection) If the write did not finish within `timeout`.
   * @throws {SocketError} (as a rejection) If the socket is closed (`EBADF`), the peer is
   *   gone (`EPIPE`, `ECONNRESET`), or another greenlet is sending (`EBUSY`).
   */
  send(data: Uint8Array): Promise<number> {
    return transmit(this.#io, data, false) as Promise<number>;
  }

  /**
   * Sends all of `data`, looping over partial writes. A blocking call; as in Python 3.5+,
   * the socket's `timeout` bounds the whole call. See the class notes on interrupting a
   * send: the bytes after the chunk in flight are then not sent.
   *
   * @param data The bytes to send.
   * @returns A promise that resolves once every byte was handed to the OS.
   * @throws {TypeError} (as a rejection) If `data` is not a Uint8Array.
   * @throws {SocketTimeout} (as a rejection) If it did not finish within `timeout`.
   * @throws {SocketError} (as a rejection) As for {@linkcode Socket.send}.
   */
  sendall(data: Uint8Array): Promise<void> {
    return transmit(this.#io, data, true) as Promise<void>;
  }

  /**
   * Closes the write half (gevent: `shutdown(SHUT_WR)`): the peer reads end of stream,
   * while this side can still receive.
   *
   * @returns A promise that resolves once the FIN is sent.
   * @throws {SocketError} (as a rejection) If the socket is closed or the peer is gone.
   */
  async shutdown(): Promise<void> {
    const conn = this.#io.conn;
    if (conn === undefined) throw closedError("shutdown");
    try {
      await conn.closeWrite();
    } catch (error) {
      throw _socketError(error, "shutdown");
    }
  }

  /**
   * Closes the socket. Synchronous and idempotent; a `recv` or `send` pending in another
   * greenlet fails with `EBADF`, and later calls do too.
   */
  close(): void {
    const io = this.#io;
    const conn = io.conn;
    if (conn === undefined) return;
    io.conn = undefined;
    io.closed = conn;
    io.start = io.end = 0;
    try {
      conn.close();
    } catch {
      // Already closed underneath (for example by a stream): nothing left to release.
    }
    const r = io.reader;
    if (r !== undefined) {
      io.reader = undefined;
      r._fail(new SocketError("recv: File descriptor was closed in another greenlet", "EBADF"));
    }
    const w = io.writer;
    if (w !== undefined) {
      io.writer = undefined;
      io.wdata = EMPTY;
      w._fail(new SocketError("send: File descriptor was closed in another greenlet", "EBADF"));
    }
  }

  /** Same as {@linkcode Socket.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * The remote address.
   *
   * @returns `[host, port]`.
   * @throws {SocketError} If the socket is closed.
   */
  getpeername(): Address {
    const conn = this.#io.conn;
    if (conn === undefined) throw closedError("getpeername");
    return addressOf(conn.remoteAddr);
  }

  /**
   * The local address.
   *
   * @returns `[host, port]`.
   * @throws {SocketError} If the socket is closed.
   */
  getsockname(): Address {
    const conn = this.#io.conn;
    if (conn === undefined) throw closedError("getsockname");
    return addressOf(conn.localAddr);
  }

  /**
   * Enables or disables Nagle's algorithm (gevent: `setsockopt(IPPROTO_TCP, TCP_NODELAY)`).
   * TLS connections (`Deno.TlsConn`) have no such switch: on them it does nothing.
   *
   * @param noDelay `true` (the default) sends small writes at once.
   * @throws {SocketError} If the socket is closed.
   */
  setNoDelay(noDelay = true): void {
    const conn = this.#io.conn;
    if (conn === undefined) throw closedError("setNoDelay");
    (conn as { setNoDelay?: (v: boolean) => void }).setNoDelay?.(noDelay);
  }

  /**
   * The socket as a readable web stream of chunks, built on {@linkcode Socket.recv}: it
   * ends at end of stream. Cancelling it leaves the socket open.
   */
  get readable(): ReadableStream<Uint8Array> {
    return this.#readable ??= new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const data = await this.recv();
        if (data.length === 0) controller.close();
        else controller.enqueue(data);
      },
    });
  }

  /**
   * The socket as a writable web stream, built on {@linkcode Socket.sendall}. Closing the
   * stream shuts down the write half; aborting it closes the socket.
   */
  get writable(): WritableStream<Uint8Array> {
    return this.#writable ??= new WritableStream<Uint8Array>({
      write: (chunk) => this.sendall(chunk),
      close: () => this.shutdown(),
      abort: () => this.close(),
    });
  }

  /** Shows the socket as {@linkcode toString} does (in `console.log` and failure reports). */
  [Symbol.for("Deno.customInspect")](): string {
    return this.toString();
  }

  /** Renders as `<Socket 127.0.0.1:5000 -> 127.0.0.1:80>` (` closed` is added once closed). */
  toString(): string {
    const io = this.#io;
    const conn = io.conn ?? io.closed;
    if (conn === undefined) return "<Socket closed>";
    const [lh, lp] = addressOf(conn.localAddr);
    const [rh, rp] = addressOf(conn.remoteAddr);
    return `<Socket ${show(lh, lp)} -> ${show(rh, rp)}${io.conn === undefined ? " closed" : ""}>`;
  }
}

// ---------------------------------------------------------------------------------------
// Connecting

/** TLS options of {@linkcode createConnection}. */
export interface ConnectTlsOptions {
  /** The name to verify the certificate against and send as SNI (default: the host). */
  hostname?: string;
  /** Extra trusted root certificates, in PEM. */
  caCerts?: string[];
  /** ALPN protocols to offer. */
  alpnProtocols?: string[];
}

/** Options of {@linkcode createConnection}. */
export interface CreateConnectionOptions {
  /**
   * Milliseconds each connection attempt may take (and the new socket's `timeout`);
   * `undefined` waits forever.
   */
  timeout?: number;
  /**
   * The local `[host, port]` to connect from (port 0: any). `Deno.connect` cannot bind its
   * local end, so such connections are made with `node:net` (same permissions); with `tls`
   * only the wildcard `["", 0]` is accepted, anything else is a `SocketError` `EOPNOTSUPP`.
   */
  sourceAddress?: Address;
  /** Wrap the connection in TLS: `true`, or TLS options. */
  tls?: boolean | ConnectTlsOptions;
}

function abortController<T>(w: _Waiter<T>): void {
  (w._owner as AbortController).abort();
}

function connectTimedOut<T>(w: _Waiter<T>): void {
  w._fail(new SocketTimeout("connect: timed out"));
}

/**
 * One connect attempt, as a blocking call. No AbortSignal ever reaches `Deno.connect`: Deno
 * leaks the socket when the signal aborts after the TCP handshake completed. A kill, a
 * `Timeout` or the attempt's own timeout gives the attempt up at once instead, and the
 * connection, if it completes later, is closed then (an orphan close). A connection from
 * `source` (`node:net`) is destroyed at once, which leaks nothing.
 */
function connectOne(
  host: string,
  port: number,
  timeout: number | undefined,
  source: Address | undefined,
): Promise<Deno.TcpConn> {
  const w = _begin<Deno.TcpConn>();
  if (w instanceof Promise) return w;
  if (timeout === 0) {
    // Like a non-blocking connect: it would have to wait, so it fails at once.
    w._fail(new SocketTimeout("connect: timed out"));
    return w.promise;
  }
  let connecting: Promise<Deno.TcpConn>;
  if (source === undefined) connecting = _deno.connect({ hostname: host, port });
  else {
    const ctl = new AbortController();
    w._owner = ctl;
    w._onCancel = abortController;
    connecting = _connectFrom(host, port, source[0], source[1], ctl.signal) as unknown as Promise<
      Deno.TcpConn
    >;
  }
  connecting.then(
    (conn) => {
      if (w._done) conn.close();
      else w._wake(conn);
    },
    (error) => w._fail(_socketError(error, `connect to ${show(host, port)}`)),
  );
  w._arm(timeout, connectTimedOut);
  return w.promise;
}

function closeOwner<T>(w: _Waiter<T>): void {
  try {
    (w._owner as Deno.Conn).close();
  } catch {
    // Already closed.
  }
}

/** Runs the TLS handshake as a blocking call; an interruption closes the connection. */
async function handshake(
  tcp: Deno.TcpConn,
  host: string,
  port: number,
  tls: ConnectTlsOptions,
  timeout: number | undefined,
): Promise<Deno.TlsConn> {
  let conn: Deno.TlsConn;
  try {
    conn = await _deno.startTls(tcp, {
      hostname: tls.hostname ?? host,
      caCerts: tls.caCerts,
      alpnProtocols: tls.alpnProtocols,
    });
  } catch (error) {
    tcp.close();
    throw _socketError(error, `TLS to ${show(host, port)}`);
  }
  const w = _begin<Deno.TlsConn>();
  if (w instanceof Promise) {
    conn.close();
    return w;
  }
  w._owner = conn;
  w._onCancel = closeOwner;
  conn.handshake().then(
    () => w._wake(conn),
    (error) => w._fail(_socketError(error, `TLS handshake with ${show(host, port)}`)),
  );
  w._arm(timeout, connectTimedOut);
  return await w.promise;
}

function show(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function checkAddress(address: unknown, name = "address"): Address {
  if (!Array.isArray(address) || address.length < 2) {
    throw new TypeError(`'${name}' must be [host, port]: current value is ${String(address)}`);
  }
  const [host, port] = address;
  _checkHost(host);
  _checkPort(port);
  return [host, port];
}

/**
 * Connects to `[host, port]`, trying each address the host resolves to (IPv4 first) until
 * one accepts: gevent's `socket.create_connection`. A blocking call: `kill()` or a
 * `Timeout` interrupts the lookup or the attempt in progress, and a connection that
 * completes anyway is closed at once, so nothing is left half-open.
 *
 * The interrupted (or timed-out) attempt is not cancelled in Deno: a connect whose signal
 * aborts after the TCP handshake leaks its socket there. It runs on until it completes (and
 * is closed) or fails; for a host that never answers that is the system's connect timeout,
 * about two minutes on Linux, and the pending connect keeps the process alive meanwhile.
 *
 * @param address `[host, port]`.
 * @param options `timeout` (per attempt, and the socket's timeout), `sourceAddress`, `tls`.
 * @returns The connected socket.
 * @throws {TypeError} (as a rejection) If the host is not a string.
 * @throws {RangeError} (as a rejection) For a port outside 0-65535 or a bad timeout.
 * @throws {GaiError} (as a rejection) If the host cannot be resolved (`""` included).
 * @throws {SocketTimeout} (as a rejection) If the last attempt timed out.
 * @throws {SocketError} (as a rejection) If every attempt failed (`ECONNREFUSED`, ...).
 *
 * @example
 * ```ts
 * import { createConnection, listen } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * using server = listen(["127.0.0.1", 0]);
 * const port = server.getsockname()[1];
 * using sock = await createConnection(["localhost", port], { timeout: 1000 });
 * assert.deepEqual(sock.getpeername(), ["127.0.0.1", port]);
 * assert.equal(sock.timeout, 1000);
 * const [peer] = await server.accept();
 * peer.close();
 * ```
 */
export async function createConnection(
  address: Address,
  options: CreateConnectionOptions = {},
): Promise<Socket> {
  const [host, port] = checkAddress(address);
  const { timeout, sourceAddress, tls } = options;
  _checkTimeout(timeout);
  let source: Address | undefined;
  if (sourceAddress !== undefined) {
    const [sh, sp] = checkAddress(sourceAddress, "sourceAddress");
    // Binding "any address, any port" is what Deno.connect does anyway.
    if (sp !== 0 || !["", "0.0.0.0", "::"].includes(sh)) source = [sh, sp];
    if (source !== undefined && tls !== undefined && tls !== false) {
      throw new SocketError(
        `Cannot bind the source address ${show(sh, sp)} of a TLS connection: Deno.startTls ` +
          `needs a connection from Deno.connect, which cannot choose its local address`,
        "EOPNOTSUPP",
      );
    }
  }
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const infos = await getResolver().getaddrinfo(bare, port, { type: "stream" });
  let last: unknown;
  for (const info of infos) {
    const [ip] = info.address;
    let tcp: Deno.TcpConn;
    try {
      tcp = await connectOne(ip, port, timeout, source);
    } catch (error) {
      if (!(error instanceof SocketError)) throw error; // a kill or a Timeout
      last = error;
      continue;
    }
    if (tls === undefined || tls === false) return new Socket(tcp, { timeout });
    const conn = await handshake(tcp, bare, port, tls === true ? {} : tls, timeout);
    return new Socket(conn, { timeout });
  }
  throw last ?? new GaiError(`Cannot resolve ${JSON.stringify(host)}`, "EAI_NONAME");
}

// ---------------------------------------------------------------------------------------
// Listening

/** TLS options of {@linkcode listen}. */
export interface ListenTlsOptions {
  /** The server's certificate chain, in PEM. */
  cert: string;
  /** The server's private key, in PEM. */
  key: string;
  /** ALPN protocols to accept. */
  alpnProtocols?: string[];
}

/** Options of {@linkcode listen}. */
export interface ListenOptions {
  /** The length of the kernel's queue of connections not yet accepted (default 511). */
  backlog?: number;
  /** Milliseconds `accept` may wait; `undefined` waits forever. */
  timeout?: number;
  /** Serve TLS with this certificate and key. */
  tls?: ListenTlsOptions;
}

class ListenerIO {
  listener: Deno.Listener | undefined;
  timeout: number | undefined;
  accepting = false;
  ready: Deno.Conn | undefined = undefined;
  error: SocketError | undefined = undefined;
  waiter: _Waiter<Deno.Conn> | undefined = undefined;
  constructor(listener: Deno.Listener, timeout: number | undefined) {
    this.listener = listener;
    this.timeout = timeout;
  }
}

async function acceptOnce(io: ListenerIO): Promise<void> {
  let conn: Deno.Conn;
  try {
    conn = await io.listener!.accept();
  } catch (error) {
    io.accepting = false;
    if (io.listener === undefined) return;
    const err = _socketError(error, "accept");
    const w = io.waiter;
    if (w !== undefined) {
      io.waiter = undefined;
      w._fail(err);
    } else io.error = err;
    return;
  }
  io.accepting = false;
  if (io.listener === undefined) {
    conn.close();
    return;
  }
  const w = io.waiter;
  if (w !== undefined) {
    io.waiter = undefined;
    w._wake(conn);
  } else io.ready = conn;
}

function forgetAcceptor(w: _Waiter<Deno.Conn>): void {
  const io = w._owner as ListenerIO;
  if (io.waiter === w) io.waiter = undefined;
}

function acceptTimedOut(w: _Waiter<Deno.Conn>): void {
  w._fail(new SocketTimeout("accept: timed out"));
}

/**
 * A listening stream socket, returned by {@linkcode listen}. `accept()` is a blocking call;
 * an interrupted accept loses no connection (the next `accept` returns it).
 *
 * @example
 * ```ts
 * import { createConnection, listen } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * using server = listen(["127.0.0.1", 0]);
 * using client = await createConnection(server.getsockname());
 * const [conn, address] = await server.accept();
 * assert.deepEqual(address, client.getsockname());
 * conn.close();
 * ```
 */
export class ListeningSocket {
  #io: ListenerIO;

  /**
   * Wraps a `Deno.Listener` (for example one from `Deno.listenTls`).
   *
   * @param listener The listener; closing this socket closes it.
   * @param options `timeout` for `accept`, in milliseconds.
   * @throws {TypeError} If `listener` is not a listener.
   * @throws {RangeError} For a bad timeout.
   */
  constructor(listener: Deno.Listener, options: SocketOptions = {}) {
    if (
      listener === null || typeof listener !== "object" || typeof listener.accept !== "function"
    ) {
      throw new TypeError(`'listener' must be a Deno.Listener: current value is ${listener}`);
    }
    _checkTimeout(options.timeout);
    this.#io = new ListenerIO(listener, options.timeout);
  }

  /** Milliseconds `accept` may wait before {@linkcode SocketTimeout}; `undefined` forever. */
  get timeout(): number | undefined {
    return this.#io.timeout;
  }
  set timeout(value: number | undefined) {
    _checkTimeout(value);
    this.#io.timeout = value;
  }

  /** Whether {@linkcode ListeningSocket.close} was called. */
  get closed(): boolean {
    return this.#io.listener === undefined;
  }

  /**
   * Waits for a connection. A blocking call.
   *
   * @returns `[socket, address]` with the peer's `[host, port]`.
   * @throws {SocketTimeout} (as a rejection) If none arrived within `timeout`.
   * @throws {SocketError} (as a rejection) If the socket is closed (`EBADF`, also when
   *   closed by another greenlet while waiting) or another greenlet is accepting (`EBUSY`).
   */
  accept(): Promise<[Socket, Address]> {
    const io = this.#io;
    const ready = io.ready;
    if (ready !== undefined) {
      io.ready = undefined;
      return Promise.resolve(wrapAccepted(ready));
    }
    if (io.listener === undefined) return Promise.reject(closedError("accept"));
    const err = io.error;
    if (err !== undefined) {
      io.error = undefined;
      return Promise.reject(err);
    }
    if (io.waiter !== undefined) return Promise.reject(busyError("accept"));
    const w = _begin<Deno.Conn>();
    if (w instanceof Promise) return w as Promise<never>;
    if (!io.accepting) {
      io.accepting = true;
      acceptOnce(io);
    }
    if (io.timeout === 0) {
      w._fail(new SocketTimeout("accept: timed out"));
      return w.promise as Promise<never>;
    }
    io.waiter = w;
    w._owner = io;
    w._onCancel = forgetAcceptor;
    w._arm(io.timeout, acceptTimedOut);
    return w.promise.then(wrapAccepted);
  }

  /**
   * The local address (with the port the OS chose for port 0).
   *
   * @returns `[host, port]`.
   * @throws {SocketError} If the socket is closed.
   */
  getsockname(): Address {
    const l = this.#io.listener;
    if (l === undefined) throw closedError("getsockname");
    return addressOf(l.addr);
  }

  /**
   * Stops listening. Synchronous and idempotent; an `accept` pending in another greenlet
   * fails with `EBADF`, and a connection accepted but not yet taken is closed.
   */
  close(): void {
    const io = this.#io;
    const l = io.listener;
    if (l === undefined) return;
    io.listener = undefined;
    try {
      l.close();
    } catch {
      // Already closed.
    }
    io.ready?.close();
    io.ready = undefined;
    const w = io.waiter;
    if (w !== undefined) {
      io.waiter = undefined;
      w._fail(new SocketError("accept: File descriptor was closed in another greenlet", "EBADF"));
    }
  }

  /** Same as {@linkcode ListeningSocket.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Shows the socket as {@linkcode toString} does (in `console.log` and failure reports). */
  [Symbol.for("Deno.customInspect")](): string {
    return this.toString();
  }

  /** Renders as `<ListeningSocket 127.0.0.1:8000>` (or `<ListeningSocket closed>`). */
  toString(): string {
    const l = this.#io.listener;
    if (l === undefined) return "<ListeningSocket closed>";
    const [h, p] = addressOf(l.addr);
    return `<ListeningSocket ${show(h, p)}>`;
  }
}

function wrapAccepted(conn: Deno.Conn): [Socket, Address] {
  return [new Socket(conn), addressOf(conn.remoteAddr)];
}

/**
 * Opens a listening TCP (or TLS) socket on `[host, port]`: gevent's
 * `socket.socket(); bind(); listen(backlog)` in one call. Port 0 picks a free port; read it
 * back with `getsockname()`. An empty host listens on every IPv4 interface.
 *
 * @param address `[host, port]`.
 * @param options `backlog`, `timeout` (for accept), `tls` (`cert` and `key` in PEM).
 * @returns The listening socket.
 * @throws {TypeError} If the host is not a string.
 * @throws {RangeError} For a port outside 0-65535, a bad backlog or timeout.
 * @throws {SocketError} If the address cannot be bound (`EADDRINUSE`, `EACCES`, ...).
 *
 * @example
 * ```ts
 * import { listen } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * using server = listen(["127.0.0.1", 0], { backlog: 128 });
 * const [host, port] = server.getsockname();
 * assert.equal(host, "127.0.0.1");
 * assert.ok(port > 0);
 * ```
 */
export function listen(address: Address, options: ListenOptions = {}): ListeningSocket {
  const [host, port] = checkAddress(address);
  const { backlog, timeout, tls } = options;
  if (backlog !== undefined && (!Number.isInteger(backlog) || backlog < 1)) {
    throw new RangeError(`'backlog' must be a positive integer: current value is ${backlog}`);
  }
  _checkTimeout(timeout);
  const hostname = host === "" ? "0.0.0.0" : host.replace(/^\[(.*)\]$/, "$1");
  let listener: Deno.Listener;
  try {
    listener = tls === undefined
      ? _deno.listen({ hostname, port, backlog } as Deno.TcpListenOptions)
      : _deno.listenTls({
        hostname,
        port,
        cert: tls.cert,
        key: tls.key,
        alpnProtocols: tls.alpnProtocols,
      });
  } catch (error) {
    throw _socketError(error, `listen on ${show(hostname, port)}`);
  }
  return new ListeningSocket(listener, { timeout });
}

// ---------------------------------------------------------------------------------------
// Monkey patching (monkey.ts reads this): the globals this module implements. The code
// above calls the saved originals (`_deno`), so a patched `Deno.connect` never reaches it.

/** @ignore `Deno.connect` and friends, `node:net`'s `connect`, for `monkey.patchSocket()`. */
export { _patches } from "./_conn.ts";
