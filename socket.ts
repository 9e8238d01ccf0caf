/**
 * Cooperative sockets and name resolution: gevent's `gevent.socket`, over `Deno.Conn`.
 *
 * Every network wait (`createConnection`, `accept`, `recv`, `send`, `sendall`, the DNS
 * functions) is a blocking call: other greenlets run meanwhile, and `kill()` or a `Timeout`
 * interrupts it. A socket's own `timeout` (milliseconds per operation) makes a stalled call
 * throw {@linkcode SocketTimeout}.
 *
 * Reads are never lost: Deno cannot cancel a pending read except by closing the connection,
 * so each socket keeps at most one read outstanding into a buffer of its own. When a `recv`
 * (or `recvLine`) is interrupted the read stays outstanding and the next call returns what it
 * brought. The buffer is sized to the call and to the traffic, and handed back once its bytes
 * are taken: an idle connection holds none.
 *
 * Several greenlets may send on one socket at once (their calls queue, in order, and never
 * interleave their bytes); one at a time may receive. See {@linkcode Socket}.
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

import { GaiError, SocketError, SocketTimeout } from "./_errors.ts";
import { _badBag, _badTimeout } from "./_check.ts";
import { _begin, _labelWaits, type _Waiter } from "./hub.ts";
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

// `export *`, not a list: `deno doc` follows only this form into the root's `socket` namespace.
export * from "./_errors.ts";
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
// Signals of blocking calls

/** Makes an abort of `signal` fail the blocking call `w` with the signal's reason. */
function watchSignal<T>(w: _Waiter<T>, signal: AbortSignal): void {
  const onAbort = (): void => w._fail(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  const stop = (): void => signal.removeEventListener("abort", onAbort);
  w.promise.then(stop, stop);
}

// ---------------------------------------------------------------------------------------
// Errors

/** Turns a Deno I/O error into a {@linkcode SocketError} (a timeout into SocketTimeout). */
function socketError(error: unknown, what: string): SocketError {
  if (error instanceof SocketError) return error;
  if (error instanceof Deno.errors.TimedOut) {
    return new SocketTimeout(`${what}: timed out`, { cause: error });
  }
  const code = codeOf(error);
  const detail = error instanceof Error ? error.message : String(error);
  return new SocketError(`${what}: ${detail}`, code, { cause: error });
}

function codeOf(error: unknown): string {
  const own = (error as { code?: unknown } | null)?.code;
  if (typeof own === "string" && own.length > 0) return own;
  const E = Deno.errors;
  if (error instanceof E.ConnectionRefused) return "ECONNREFUSED";
  if (error instanceof E.ConnectionReset) return "ECONNRESET";
  if (error instanceof E.ConnectionAborted) return "ECONNABORTED";
  if (error instanceof E.BrokenPipe) return "EPIPE";
  if (error instanceof E.NotConnected) return "ENOTCONN";
  if (error instanceof E.AddrInUse) return "EADDRINUSE";
  if (error instanceof E.AddrNotAvailable) return "EADDRNOTAVAIL";
  if (error instanceof E.BadResource || error instanceof E.Interrupted) return "EBADF";
  if (error instanceof E.NotCapable || error instanceof E.PermissionDenied) return "EACCES";
  if (error instanceof E.NetworkUnreachable) return "ENETUNREACH";
  if (error instanceof E.InvalidData) return "EPROTO";
  return "EIO";
}

// ---------------------------------------------------------------------------------------
// Socket

const EMPTY = new Uint8Array(0);
const BUFSIZE = 65536;
/** The default `maxLength` of `recvLine`. */
const MAX_LINE = 65536;
const NEED: unique symbol = Symbol("need more bytes");
const decoder = new TextDecoder();

// Read buffers. A socket holds one only while a read is outstanding or bytes it read are not
// yet taken; then it goes back to this pool, where any socket can reuse it. Sizes are powers
// of two from 1 KiB to 1 MiB (larger reads get a buffer of their own); the pool keeps at most
// POOL_BYTES of each size. How much a read asks for adapts to the traffic (as Netty's
// AdaptiveRecvByteBufAllocator does): it starts at FIRST_READ, doubles after a read that
// filled its buffer and halves after two reads in a row that used less than a quarter of it,
// never above what the call asked for. So a pending read of a quiet connection holds 1 KiB,
// a bulk transfer reads in large chunks, and idle connections hold nothing.
const MIN_CLASS = 10;
const MAX_CLASS = 20;
const FIRST_READ = 2048;
const POOL_BYTES = 1 << 19;
const pool: Uint8Array[][] = Array.from({ length: MAX_CLASS + 1 }, () => []);

/** A read buffer of at least `size` bytes. */
function acquire(size: number): Uint8Array {
  if (size > 1 << MAX_CLASS) return new Uint8Array(size);
  const c = size <= 1 << MIN_CLASS ? MIN_CLASS : 32 - Math.clz32(size - 1);
  const free = pool[c];
  if (free.length > 0) return free.pop()!;
  return new Uint8Array(1 << c);
}

/** Gives a read buffer back; it must no longer be referenced by anything. */
function release(buf: Uint8Array): void {
  const n = buf.length;
  if (n < 1 << MIN_CLASS || n > 1 << MAX_CLASS || (n & (n - 1)) !== 0) return;
  const free = pool[31 - Math.clz32(n)];
  if ((free.length + 1) * n > POOL_BYTES) return;
  free.push(buf);
}

// What `recv` returns. Every ArrayBuffer costs about half a microsecond to allocate in Deno,
// more than the rest of a recv: so small results are copied into views of a shared slab (as
// Node's pooled Buffers are) and only results over SLAB_MAX bytes get an ArrayBuffer each.
const SLAB_SIZE = 16384;
const SLAB_MAX = 2048;
let slab = EMPTY;
let slabUsed = 0;

/** A copy of `src[start, start + k)`. */
function copyOut(src: Uint8Array, start: number, k: number): Uint8Array {
  if (k > SLAB_MAX) return src.slice(start, start + k);
  if (slabUsed + k > slab.length) {
    slab = new Uint8Array(SLAB_SIZE);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + k);
  out.set(src.subarray(start, start + k));
  slabUsed += (k + 7) & ~7; // 8-byte aligned, so any typed array view of a result works
  return out;
}

/**
 * What a send waits for: `"send"` for one write (it resolves with the bytes written),
 * `"sendall"` for all of its data (it resolves with `undefined`).
 */
type SendMode = "send" | "sendall";

/** A send waiting behind the one in progress. */
interface QueuedSend {
  waiter: _Waiter<number | undefined, SocketIO>;
  data: Uint8Array;
  mode: SendMode;
}

/**
 * The I/O state of a socket, kept apart so module-level functions can drive it. The read
 * and write callbacks are bound once per socket, so a round trip allocates no closures.
 */
class SocketIO {
  // Rarely set fields (`closed`, `eof`, `readError`, `sendQueue`) default to `undefined`/`false`
  // on the prototype (see below the class): an idle socket stays small.
  conn: Deno.Conn | undefined;
  /** The connection once closed (for toString). */
  declare closed: Deno.Conn | undefined;
  timeout: number | undefined;
  // Reading: at most one read outstanding (`reading`), filling `buf` from `end`;
  // `buf[start, end)` is unread data, and `buf[start, scannedTo)` holds no "\n". `buf` is
  // EMPTY (given back to the pool) whenever it holds nothing and no read is outstanding.
  buf: Uint8Array = EMPTY;
  start = 0;
  end = 0;
  scannedTo = 0;
  /** How much the next read into a new buffer asks for. */
  readSize = FIRST_READ;
  /** How much the outstanding read asked for. */
  readAsked = 0;
  /** How many reads in a row used less than a quarter of what they asked for. */
  smallReads = 0;
  reading = false;
  declare eof: boolean;
  declare readError: SocketError | undefined;
  /** The receive waiting for bytes (`recv`, `recvInto` or `recvLine`), if any. */
  receiver: _Waiter<unknown, SocketIO> | undefined = undefined;
  /** What the waiting receive takes: `recv`'s byte count or `recvInto`'s array. */
  receiveTarget: number | Uint8Array = 0;
  /** The `maxLength` of a waiting `recvLine`; 0 for the other receives. */
  receiveLineMax = 0;
  /** Settles the outstanding read: its result (a number, or null at the end), or its error. */
  onRead: (result: unknown) => void;
  // Writing: at most one write outstanding (`writing`). `sender` is the send in progress:
  // `sendWritten` bytes of `sendData` are written (a `sendall` waits for all of them, a `send`
  // for one write). Later sends wait in `sendQueue`. While the chunk of an interrupted send
  // is still being written, `sender` is undefined and `writing` true: the queue moves on once
  // it is done.
  writing = false;
  sender: _Waiter<number | undefined, SocketIO> | undefined = undefined;
  sendData: Uint8Array = EMPTY;
  sendWritten = 0;
  sendMode: SendMode = "send";
  declare sendQueue: QueuedSend[] | undefined;
  /** Settles the outstanding write: its result (a number), or its error. */
  onWrite: (result: unknown) => void;

  constructor(conn: Deno.Conn, timeout: number | undefined) {
    this.conn = conn;
    this.timeout = timeout;
    // One callback per direction takes both outcomes (reads and writes resolve with numbers,
    // or null at the end of a read; they reject with errors): two closures per socket.
    this.onRead = (r) =>
      typeof r === "number" || r === null ? readDone(this, r) : readFailed(this, r);
    this.onWrite = (r) => typeof r === "number" ? writeDone(this, r) : writeFailed(this, r);
  }
}

SocketIO.prototype.closed = undefined;
SocketIO.prototype.eof = false;
SocketIO.prototype.readError = undefined;
SocketIO.prototype.sendQueue = undefined;

function closedError(what: string): SocketError {
  return new SocketError(`${what}: Bad file descriptor (the socket is closed)`, "EBADF");
}

function busyError(what: string, advice: string): SocketError {
  return new SocketError(
    `${what}: This socket is already used by another greenlet (EBUSY): ${advice}`,
    "EBUSY",
  );
}

const RECV_ADVICE = "receive in one greenlet at a time, and hand what it reads to the others " +
  "(through a Queue, for example)";

/** Gives the read buffer back (no read may be outstanding). */
function dropBuffer(io: SocketIO): void {
  release(io.buf);
  io.buf = EMPTY;
  io.start = io.end = io.scannedTo = 0;
}

/** Marks `buf[start, to)` as taken; drops the buffer once it holds nothing. */
function consume(io: SocketIO, to: number): void {
  io.start = to;
  if (to === io.end && !io.reading) dropBuffer(io);
}

function take(io: SocketIO, want: number | Uint8Array): Uint8Array | number {
  const start = io.start;
  const avail = io.end - start;
  if (typeof want === "number") {
    const k = want < avail ? want : avail;
    const out = copyOut(io.buf, start, k);
    consume(io, start + k);
    return out;
  }
  const k = want.length < avail ? want.length : avail;
  want.set(io.buf.subarray(start, start + k));
  consume(io, start + k);
  return k;
}

function tooLong(maxLength: number): SocketError {
  return new SocketError(
    `recvLine: Line longer than maxLength (${maxLength} bytes) (EMSGSIZE): its bytes are kept ` +
      `for the next call; read them with recv(), or raise maxLength`,
    "EMSGSIZE",
  );
}

/** The next line in the buffer, a SocketError, or NEED. */
function takeLine(io: SocketIO, maxLength: number): string | SocketError | typeof NEED {
  const { buf, start, end } = io;
  const from = io.scannedTo > start ? io.scannedTo : start;
  const limit = start + maxLength; // the "\n" of an acceptable line is before this index
  const stop = end < limit ? end : limit;
  if (from < stop) {
    const i = buf.subarray(from, stop).indexOf(10);
    if (i >= 0) {
      const to = from + i + 1;
      const line = decoder.decode(buf.subarray(start, to));
      consume(io, to);
      return line;
    }
    io.scannedTo = stop;
  }
  if (end - start > maxLength) return tooLong(maxLength);
  if (io.eof) {
    if (end === start) return "";
    const rest = decoder.decode(buf.subarray(start, end));
    consume(io, end);
    return rest;
  }
  return io.readError ?? NEED;
}

/**
 * What a receive gets from the buffered bytes now: the value, a SocketError to reject with, or
 * NEED when it has to wait for a read.
 */
function settle(io: SocketIO, target: number | Uint8Array, lineMax: number): unknown {
  if (lineMax > 0) return takeLine(io, lineMax);
  if (io.end > io.start) return take(io, target);
  if (io.eof) return typeof target === "number" ? EMPTY : 0;
  return io.readError ?? NEED;
}

/**
 * Starts a read into the free end of the buffer: when none is held, a new one for at most
 * `size` bytes (less as the traffic allows: see the pool); else, when less than a quarter of
 * it is free, the unread bytes move to its front or (up to `cap` bytes, for a line) to a
 * buffer twice as large.
 */
function startRead(io: SocketIO, size: number, cap: number): void {
  let buf = io.buf;
  if (buf === EMPTY) {
    buf = io.buf = acquire(size < io.readSize ? size : io.readSize);
  } else if (buf.length - io.end < buf.length >> 2) {
    const n = io.end - io.start;
    if (n <= buf.length >> 1 || buf.length >= cap) {
      buf.copyWithin(0, io.start, io.end);
    } else {
      const bigger = acquire(Math.min(buf.length * 2, cap));
      bigger.set(buf.subarray(io.start, io.end));
      release(buf);
      buf = io.buf = bigger;
    }
    io.scannedTo = io.scannedTo > io.start ? io.scannedTo - io.start : 0;
    io.start = 0;
    io.end = n;
  }
  io.reading = true;
  io.readAsked = buf.length - io.end;
  io.conn!.read(io.end === 0 ? buf : buf.subarray(io.end)).then(io.onRead, io.onRead);
}

function readDone(io: SocketIO, n: number | null): void {
  io.reading = false;
  if (io.conn === undefined) { // closed meanwhile: the reader was already failed
    dropBuffer(io);
    return;
  }
  if (n === null) {
    io.eof = true;
    if (io.start === io.end) dropBuffer(io);
  } else {
    io.end += n;
    const asked = io.readAsked;
    if (n === asked) {
      io.smallReads = 0;
      if (asked >= io.readSize && io.readSize < 1 << MAX_CLASS) io.readSize = io.readSize * 2;
    } else if (n > asked >> 2) {
      io.smallReads = 0;
    } else if (++io.smallReads === 2) {
      io.smallReads = 0;
      if (io.readSize > 1 << MIN_CLASS) io.readSize = io.readSize >> 1;
    }
  }
  const w = io.receiver;
  if (w === undefined) { // its caller was interrupted: the bytes wait for the next receive
    if (io.start === io.end) dropBuffer(io);
    return;
  }
  const result = settle(io, io.receiveTarget, io.receiveLineMax);
  if (result === NEED) {
    startRead(io, 0, io.receiveLineMax + 1); // a line not complete yet: the same call reads on
    return;
  }
  io.receiver = undefined;
  if (result instanceof SocketError) w._fail(result);
  else w._wake(result);
}

function readFailed(io: SocketIO, error: unknown): void {
  io.reading = false;
  if (io.conn === undefined) { // closed meanwhile: the reader was already failed
    dropBuffer(io);
    return;
  }
  io.readError = socketError(error, "recv");
  if (io.start === io.end) dropBuffer(io);
  const w = io.receiver;
  if (w !== undefined) {
    io.receiver = undefined;
    w._fail(io.readError);
  }
}

function forgetReceiver(w: _Waiter<unknown, SocketIO>): void {
  const io = w._owner;
  if (io.receiver === w) io.receiver = undefined;
}

/** The socket timeout of a `recv` or a `send` elapsed. */
function timedOut<T>(w: _Waiter<T>): void {
  w._fail(new SocketTimeout());
}

/**
 * Options of the blocking calls of a {@linkcode Socket} (`recv`, `recvInto`, `recvLine`,
 * `send`, `sendall`).
 *
 * @example Cancelling a receive with a signal
 * ```ts
 * import { createConnection, listen } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * using server = listen(["127.0.0.1", 0]);
 * using sock = await createConnection(server.getsockname());
 * const [peer] = await server.accept();
 * using _ = peer;
 * const ctl = new AbortController();
 * const pending = sock.recv(1024, { signal: ctl.signal });
 * ctl.abort(new Error("shutting down"));
 * await assert.rejects(pending, /shutting down/);
 * ```
 */
export interface SocketCallOptions {
  /**
   * Milliseconds this call may wait before it throws {@linkcode SocketTimeout} (default: the
   * socket's `timeout`); `0` does not wait.
   */
  timeout?: number;
  /** Aborting it interrupts the call, which then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Options of {@linkcode Socket.recvLine}.
 *
 * @example A bounded line with a deadline
 * ```ts
 * import { createConnection, listen } from "./socket.ts";
 * import assert from "node:assert/strict";
 *
 * using server = listen(["127.0.0.1", 0]);
 * using sock = await createConnection(server.getsockname());
 * const [peer] = await server.accept();
 * using _ = peer;
 * await peer.sendall(new TextEncoder().encode("GET / HTTP/1.0\r\n"));
 * const line = await sock.recvLine({ maxLength: 8192, timeout: 1000 });
 * assert.equal(line, "GET / HTTP/1.0\r\n");
 * ```
 */
export interface RecvLineOptions extends SocketCallOptions {
  /** The longest line accepted, in bytes, counting its `"\n"` (default 65536). */
  maxLength?: number;
}

/** A call's options checked: a rejected promise for bad options or an aborted signal. */
function refuseCall(options: SocketCallOptions): Promise<never> | undefined {
  const bad = _badBag(options) ?? _badTimeout(options.timeout);
  if (bad !== undefined) return Promise.reject(bad);
  const signal = options.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return undefined;
}

function receive(
  io: SocketIO,
  target: number | Uint8Array,
  lineMax: number,
  options: SocketCallOptions | undefined,
): Promise<unknown> {
  let timeout = io.timeout;
  if (options !== undefined) {
    const refused = refuseCall(options);
    if (refused !== undefined) return refused;
    if (options.timeout !== undefined) timeout = options.timeout;
  }
  if (io.conn === undefined) return Promise.reject(closedError(lineMax > 0 ? "recvLine" : "recv"));
  if (io.receiver !== undefined) {
    return Promise.reject(busyError(lineMax > 0 ? "recvLine" : "recv", RECV_ADVICE));
  }
  const result = settle(io, target, lineMax);
  if (result !== NEED) {
    return result instanceof SocketError ? Promise.reject(result) : Promise.resolve(result);
  }
  const w = _begin<unknown, SocketIO>();
  if (w instanceof Promise) return w;
  if (!io.reading) {
    startRead(
      io,
      lineMax > 0 ? lineMax + 1 : typeof target === "number" ? target : target.length,
      lineMax + 1,
    );
  }
  if (timeout === 0) {
    w._fail(new SocketTimeout());
    return w.promise;
  }
  io.receiver = w;
  io.receiveTarget = target;
  io.receiveLineMax = lineMax;
  w._owner = io;
  w._onCancel = forgetReceiver;
  w._arm(timeout, timedOut);
  if (options?.signal !== undefined) watchSignal(w, options.signal);
  return w.promise;
}

function startWrite(io: SocketIO, chunk: Uint8Array): void {
  io.writing = true;
  io.conn!.write(chunk).then(io.onWrite, io.onWrite);
}

/** Starts the first queued send (called when no send is in progress and no write is). */
function nextSend(io: SocketIO): void {
  const q = io.sendQueue;
  if (q === undefined || io.conn === undefined) return;
  while (q.length > 0) {
    const { waiter, data, mode } = q.shift()!;
    if (data.length === 0) {
      waiter._wake(mode === "sendall" ? undefined : 0);
      continue;
    }
    io.sender = waiter;
    io.sendData = data;
    io.sendWritten = 0;
    io.sendMode = mode;
    startWrite(io, data);
    return;
  }
}

function writeDone(io: SocketIO, n: number): void {
  io.writing = false;
  if (io.conn === undefined) return; // closed meanwhile: the senders were already failed
  const w = io.sender;
  if (w === undefined) { // the chunk of an interrupted send is written: the queue moves on
    nextSend(io);
    return;
  }
  const sent = io.sendWritten += n;
  const all = io.sendMode === "sendall";
  if (all && sent < io.sendData.length) {
    startWrite(io, io.sendData.subarray(sent));
    return;
  }
  io.sender = undefined;
  io.sendData = EMPTY;
  w._wake(all ? undefined : sent);
  nextSend(io);
}

function writeFailed(io: SocketIO, error: unknown): void {
  io.writing = false;
  if (io.conn === undefined) return; // closed meanwhile: the senders were already failed
  const w = io.sender;
  if (w !== undefined) {
    io.sender = undefined;
    io.sendData = EMPTY;
    w._fail(socketError(error, "send"));
  }
  nextSend(io); // each later send fails (or not) on its own
}

function forgetSender(w: _Waiter<number | undefined, SocketIO>): void {
  const io = w._owner;
  if (io.sender === w) {
    // Its chunk in flight cannot be recalled: the next send starts once it is written.
    io.sender = undefined;
    io.sendData = EMPTY;
    if (!io.writing) nextSend(io);
    return;
  }
  const q = io.sendQueue;
  if (q === undefined) return;
  for (let i = 0; i < q.length; i++) {
    if (q[i].waiter === w) {
      q.splice(i, 1); // it never started: none of its bytes are sent
      return;
    }
  }
}

function transmit(
  io: SocketIO,
  data: Uint8Array,
  mode: SendMode,
  options: SocketCallOptions | undefined,
): Promise<number | undefined> {
  if (!(data instanceof Uint8Array)) {
    return Promise.reject(
      new TypeError(`'data' must be a Uint8Array: current value is ${String(data)}`),
    );
  }
  let timeout = io.timeout;
  if (options !== undefined) {
    const refused = refuseCall(options);
    if (refused !== undefined) return refused;
    if (options.timeout !== undefined) timeout = options.timeout;
  }
  if (io.conn === undefined) return Promise.reject(closedError("send"));
  const idle = io.sender === undefined && !io.writing;
  if (data.length === 0 && idle) return Promise.resolve(mode === "sendall" ? undefined : 0);
  const w = _begin<number | undefined, SocketIO>();
  if (w instanceof Promise) return w;
  w._owner = io;
  w._onCancel = forgetSender;
  if (idle) {
    io.sender = w;
    io.sendData = data;
    io.sendWritten = 0;
    io.sendMode = mode;
    startWrite(io, data);
  } else {
    (io.sendQueue ??= []).push({ waiter: w, data, mode });
  }
  w._arm(timeout, timedOut);
  if (options?.signal !== undefined) watchSignal(w, options.signal);
  return w.promise;
}

/** Throws the error `_badTimeout` finds in a `timeout` option or property, if any. */
function checkTimeout(timeout: unknown): void {
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
 * Guarantees: a `recv` or `recvLine` interrupted by a `Timeout`, a timeout, a signal or
 * `kill()` loses no bytes and leaves the socket usable: what its read brings is returned by
 * the next call. `close()` is synchronous and idempotent; calls pending in other greenlets
 * then fail with `EBADF`.
 *
 * Sharing a socket between greenlets:
 * - Sending: any number of greenlets may `send`/`sendall` at once (a chat server that
 *   broadcasts to every client, say). The calls queue: they complete in call order, and the
 *   bytes of one `sendall` are written together, never interleaved with another call's. The
 *   `timeout` of a queued call counts its time in the queue.
 * - Receiving: one greenlet at a time. A second `recv`, `recvInto` or `recvLine` while one
 *   waits is rejected with a {@linkcode SocketError} `EBUSY`, as gevent raises
 *   `ConcurrentObjectUseError`: two readers of one stream would each get arbitrary pieces of
 *   it. Receive in one greenlet and hand the data to the others (through a `Queue`).
 *
 * Sharp edge: a write cannot be cancelled either. A `send`/`sendall` interrupted by a kill,
 * a timeout or a signal stops waiting, but the chunk already handed to Deno is still
 * written (in order, before anything sent later) and the rest of the data is not: the peer
 * may have received a prefix of it. After an interrupted `sendall`, close the socket unless
 * the protocol can resynchronise. (A call interrupted while still queued sends nothing.)
 *
 * Memory: a socket holds a read buffer only while a read is outstanding or bytes it read
 * are not yet taken, then gives it back to a small shared pool. A read asks for at most what
 * the call does (`bufsize`, the `recvInto` array, `maxLength`): 2 KiB at first, then more
 * after reads that filled their buffer and less after small ones (1 KiB at least). An idle
 * connection with a `recv` pending so holds 1 to 2 KiB, one with none pending holds none.
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
  constructor(conn: Deno.Conn, options?: SocketOptions) {
    if (options === undefined) options = {};
    if (conn === null || typeof conn !== "object" || typeof conn.read !== "function") {
      throw new TypeError(`'conn' must be a Deno.Conn: current value is ${String(conn)}`);
    }
    checkTimeout(options.timeout);
    this.#io = new SocketIO(conn, options.timeout);
  }

  /**
   * Milliseconds each blocking operation may wait before it throws
   * {@linkcode SocketTimeout}; `undefined` (the default) waits forever, `0` never waits
   * (gevent: `settimeout`, in milliseconds). A call's own `timeout` option overrides it.
   */
  get timeout(): number | undefined {
    return this.#io.timeout;
  }
  set timeout(value: number | undefined) {
    checkTimeout(value);
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
   * interrupted call are returned at once.
   *
   * A result of up to 2 KiB is a view of a shared slab, as Node's pooled Buffers are: its
   * bytes are its own, but its `buffer` also holds other results. Copy it (`slice()`)
   * before transferring its `buffer` to a worker.
   *
   * @param bufsize The most bytes to return (default 65536).
   * @param options `timeout` (default: the socket's) and `signal`.
   * @returns The bytes; empty at end of stream.
   * @throws {RangeError} (as a rejection) If `bufsize` is not a positive integer, or for a
   *   bad `timeout`.
   * @throws {SocketTimeout} (as a rejection) If nothing arrived within the timeout.
   * @throws {SocketError} (as a rejection) If the socket is closed (`EBADF`), reset, or
   *   already receiving in another greenlet (`EBUSY`).
   *
   * @example Waiting at most 50 ms for data
   * ```ts
   * import { createConnection, listen, SocketTimeout } from "./socket.ts";
   * import assert from "node:assert/strict";
   *
   * using server = listen(["127.0.0.1", 0]);
   * using sock = await createConnection(server.getsockname());
   * const [peer] = await server.accept();
   * using _ = peer;
   * await assert.rejects(sock.recv(1024, { timeout: 50 }), SocketTimeout);
   * await peer.sendall(new Uint8Array([1, 2, 3]));
   * assert.deepEqual(await sock.recv(1024), new Uint8Array([1, 2, 3]));
   * ```
   */
  recv(bufsize: number = BUFSIZE, options?: SocketCallOptions): Promise<Uint8Array> {
    if (typeof bufsize !== "number" || !Number.isInteger(bufsize) || bufsize < 1) {
      try {
        checkSize("bufsize", bufsize);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return receive(this.#io, bufsize, 0, options) as Promise<Uint8Array>;
  }

  /**
   * Receives into `buffer`: like {@linkcode Socket.recv}, but copies into the caller's
   * array and resolves with the number of bytes (0 at end of stream).
   *
   * @param buffer Where to put the bytes; at most `buffer.length` are received.
   * @param options `timeout` (default: the socket's) and `signal`.
   * @returns The number of bytes received; 0 at end of stream.
   * @throws {TypeError} (as a rejection) If `buffer` is not a non-empty Uint8Array.
   * @throws {SocketTimeout} (as a rejection) If nothing arrived within the timeout.
   * @throws {SocketError} (as a rejection) If the socket is closed, reset, or busy.
   *
   * @example
   * ```ts
   * import { createConnection, listen } from "./socket.ts";
   * import assert from "node:assert/strict";
   *
   * using server = listen(["127.0.0.1", 0]);
   * using sock = await createConnection(server.getsockname());
   * const [peer] = await server.accept();
   * using _ = peer;
   * await peer.sendall(new TextEncoder().encode("hello"));
   * const buf = new Uint8Array(3);
   * assert.equal(await sock.recvInto(buf), 3);
   * assert.equal(new TextDecoder().decode(buf), "hel");
   * ```
   */
  recvInto(buffer: Uint8Array, options?: SocketCallOptions): Promise<number> {
    if (!(buffer instanceof Uint8Array) || buffer.length === 0) {
      return Promise.reject(
        new TypeError(`'buffer' must be a non-empty Uint8Array: current value is ${buffer}`),
      );
    }
    return receive(this.#io, buffer, 0, options) as Promise<number>;
  }

  /**
   * Receives one line, decoded from UTF-8: gevent's `makefile().readline()`. Resolves with
   * the line including its `"\n"`, with the rest of the stream at its end when that rest
   * has no `"\n"`, and with `""` at end of stream. A blocking call: the `timeout` bounds the
   * whole call, however many reads it takes.
   *
   * No bytes are lost: a call interrupted by a timeout, a `Timeout`, a signal or `kill()`
   * keeps what it read, so the next `recvLine` (or `recv`) sees the same bytes. Unlike
   * Python's `makefile()`, the socket stays usable after a timeout. `recvLine` and `recv`
   * share one buffer and can be mixed freely (a line-based header, then raw bytes).
   *
   * @param options `maxLength` (bytes, counting the `"\n"`; default 65536), `timeout`
   *   (default: the socket's), `signal`.
   * @returns The line; `""` at end of stream.
   * @throws {RangeError} (as a rejection) If `maxLength` is not a positive integer, or for
   *   a bad `timeout`.
   * @throws {SocketError} (as a rejection) `EMSGSIZE` if the line is longer than
   *   `maxLength`: its bytes stay buffered for the next call (read them with `recv`, or
   *   close the connection). `EBADF`, `EBUSY` and resets as for {@linkcode Socket.recv}.
   * @throws {SocketTimeout} (as a rejection) If the line was not complete within the timeout.
   *
   * @example A line-based exchange
   * ```ts
   * import { createConnection, listen } from "./socket.ts";
   * import assert from "node:assert/strict";
   *
   * using server = listen(["127.0.0.1", 0]);
   * using sock = await createConnection(server.getsockname());
   * const [peer] = await server.accept();
   * using _ = peer;
   * await peer.sendall(new TextEncoder().encode("HELO example\r\nQUIT\r\nrest"));
   * await peer.shutdown();
   * assert.equal(await sock.recvLine(), "HELO example\r\n");
   * assert.equal(await sock.recvLine({ timeout: 1000 }), "QUIT\r\n");
   * assert.equal(await sock.recvLine(), "rest");
   * assert.equal(await sock.recvLine(), "");
   * ```
   *
   * @example A line that is too long
   * ```ts
   * import { createConnection, listen, SocketError } from "./socket.ts";
   * import assert from "node:assert/strict";
   *
   * using server = listen(["127.0.0.1", 0]);
   * using sock = await createConnection(server.getsockname());
   * const [peer] = await server.accept();
   * using _ = peer;
   * await peer.sendall(new TextEncoder().encode("0123456789\n"));
   * await assert.rejects(
   *   sock.recvLine({ maxLength: 8 }),
   *   (e: SocketError) => e.code === "EMSGSIZE",
   * );
   * assert.equal(await sock.recvLine({ maxLength: 16 }), "0123456789\n"); // nothing was lost
   * ```
   */
  recvLine(options?: RecvLineOptions): Promise<string> {
    const maxLength = options?.maxLength ?? MAX_LINE;
    if (typeof maxLength !== "number" || !Number.isInteger(maxLength) || maxLength < 1) {
      try {
        checkSize("maxLength", maxLength);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return receive(this.#io, 0, maxLength, options) as Promise<string>;
  }

  /**
   * Sends some of `data` with one write and resolves with how many bytes were written
   * (possibly fewer than `data.length`). A blocking call; while other sends on this socket
   * are in progress it waits for them first.
   *
   * @param data The bytes to send.
   * @param options `timeout` (default: the socket's) and `signal`.
   * @returns The number of bytes written.
   * @throws {TypeError} (as a rejection) If `data` is not a Uint8Array.
   * @throws {SocketTimeout} (as a rejection) If the write did not finish within the timeout.
   * @throws {SocketError} (as a rejection) If the socket is closed (`EBADF`) or the peer is
   *   gone (`EPIPE`, `ECONNRESET`).
   *
   * @example
   * ```ts
   * import { createConnection, listen } from "./socket.ts";
   * import assert from "node:assert/strict";
   *
   * using server = listen(["127.0.0.1", 0]);
   * using sock = await createConnection(server.getsockname());
   * const [peer] = await server.accept();
   * using _ = peer;
   * const n = await sock.send(new TextEncoder().encode("hi"));
   * assert.equal(n, 2);
   * ```
   */
  send(data: Uint8Array, options?: SocketCallOptions): Promise<number> {
    return transmit(this.#io, data, "send", options) as Promise<number>;
  }

  /**
   * Sends all of `data`, looping over partial writes. A blocking call; as in Python 3.5+,
   * the timeout bounds the whole call (including the wait behind earlier sends). Several
   * greenlets may call it at once: the calls complete in call order and their bytes never
   * interleave. See the class notes on interrupting a send: the bytes after the chunk in
   * flight are then not sent.
   *
   * @param data The bytes to send.
   * @param options `timeout` (default: the socket's) and `signal`.
   * @returns A promise that resolves once every byte was handed to the OS.
   * @throws {TypeError} (as a rejection) If `data` is not a Uint8Array.
   * @throws {SocketTimeout} (as a rejection) If it did not finish within the timeout.
   * @throws {SocketError} (as a rejection) As for {@linkcode Socket.send}.
   *
   * @example Two greenlets sending on one socket
   * ```ts
   * import { createConnection, listen } from "./socket.ts";
   * import { joinAll, spawn } from "./greenlet.ts";
   * import assert from "node:assert/strict";
   *
   * using server = listen(["127.0.0.1", 0]);
   * using sock = await createConnection(server.getsockname());
   * const [peer] = await server.accept();
   * using _ = peer;
   * const enc = new TextEncoder();
   * await joinAll([
   *   spawn(() => sock.sendall(enc.encode("one\n"))),
   *   spawn(() => sock.sendall(enc.encode("two\n"))),
   * ], { raiseError: true });
   * assert.equal(await peer.recvLine(), "one\n");
   * assert.equal(await peer.recvLine(), "two\n");
   * ```
   */
  sendall(data: Uint8Array, options?: SocketCallOptions): Promise<void> {
    return transmit(this.#io, data, "sendall", options) as Promise<void>;
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
      throw socketError(error, "shutdown");
    }
  }

  /**
   * Closes the socket. Synchronous and idempotent; a `recv` or `send` pending (or queued) in
   * another greenlet fails with `EBADF`, and later calls do too.
   */
  close(): void {
    const io = this.#io;
    const conn = io.conn;
    if (conn === undefined) return;
    io.conn = undefined;
    io.closed = conn;
    if (io.reading) io.start = io.end = io.scannedTo = 0; // the read's end drops the buffer
    else dropBuffer(io);
    try {
      conn.close();
    } catch {
      // Already closed underneath (for example by a stream): nothing left to release.
    }
    const r = io.receiver;
    if (r !== undefined) {
      io.receiver = undefined;
      r._fail(new SocketError("recv: File descriptor was closed in another greenlet", "EBADF"));
    }
    const w = io.sender;
    const queued = io.sendQueue;
    io.sender = undefined;
    io.sendData = EMPTY;
    io.sendQueue = undefined;
    const closedMeanwhile = "send: File descriptor was closed in another greenlet";
    w?._fail(new SocketError(closedMeanwhile, "EBADF"));
    if (queued !== undefined) {
      for (const s of queued) s.waiter._fail(new SocketError(closedMeanwhile, "EBADF"));
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

function abortController<T>(w: _Waiter<T, AbortController>): void {
  w._owner.abort();
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
  const w = _begin<Deno.TcpConn, AbortController | undefined>();
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
    connecting = _connectFrom(host, port, source[0], source[1], ctl.signal);
  }
  connecting.then(
    (conn) => {
      if (w._done) conn.close();
      else w._wake(conn);
    },
    (error) => w._fail(socketError(error, `connect to ${show(host, port)}`)),
  );
  w._arm(timeout, connectTimedOut);
  return w.promise;
}

function closeOwner<T>(w: _Waiter<T, Deno.Conn>): void {
  try {
    w._owner.close();
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
    throw socketError(error, `TLS to ${show(host, port)}`);
  }
  const w = _begin<Deno.TlsConn, Deno.TlsConn>();
  if (w instanceof Promise) {
    conn.close();
    return w;
  }
  w._owner = conn;
  w._onCancel = closeOwner;
  conn.handshake().then(
    () => w._wake(conn),
    (error) => w._fail(socketError(error, `TLS handshake with ${show(host, port)}`)),
  );
  w._arm(timeout, connectTimedOut);
  return await w.promise;
}

function show(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The peer of a socket, for run-info (`127.0.0.1:5432`). */
function peerOf(io: SocketIO): string {
  const addr = (io.conn ?? io.closed)?.remoteAddr as Deno.NetAddr | undefined;
  return addr?.hostname === undefined ? "(unknown peer)" : show(addr.hostname, addr.port);
}

_labelWaits(
  forgetReceiver,
  (w) => `socket.${w._owner.receiveLineMax > 0 ? "recvLine" : "recv"} ${peerOf(w._owner)}`,
);
_labelWaits(forgetSender, (w) => `socket.send ${peerOf(w._owner)}`);
_labelWaits(forgetAcceptor, (w) => {
  const addr = w._owner.listener?.addr as Deno.NetAddr | undefined;
  return `socket.accept ${addr?.hostname === undefined ? "" : show(addr.hostname, addr.port)}`;
});
_labelWaits(connectTimedOut, () => "socket.connect");
_labelWaits(abortController, () => "socket.connect");
_labelWaits(closeOwner, () => "TLS handshake");

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
  options?: CreateConnectionOptions,
): Promise<Socket> {
  if (options === undefined) options = {};
  const [host, port] = checkAddress(address);
  const { timeout, sourceAddress, tls } = options;
  checkTimeout(timeout);
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
  waiter: _Waiter<Deno.Conn, ListenerIO> | undefined = undefined;
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
    const err = socketError(error, "accept");
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

function forgetAcceptor(w: _Waiter<Deno.Conn, ListenerIO>): void {
  const io = w._owner;
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
  constructor(listener: Deno.Listener, options?: SocketOptions) {
    if (options === undefined) options = {};
    if (
      listener === null || typeof listener !== "object" || typeof listener.accept !== "function"
    ) {
      throw new TypeError(`'listener' must be a Deno.Listener: current value is ${listener}`);
    }
    checkTimeout(options.timeout);
    this.#io = new ListenerIO(listener, options.timeout);
  }

  /** Milliseconds `accept` may wait before {@linkcode SocketTimeout}; `undefined` forever. */
  get timeout(): number | undefined {
    return this.#io.timeout;
  }
  set timeout(value: number | undefined) {
    checkTimeout(value);
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
    if (io.waiter !== undefined) {
      return Promise.reject(
        busyError("accept", "accept in one greenlet at a time (a StreamServer does)"),
      );
    }
    const w = _begin<Deno.Conn, ListenerIO>();
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
export function listen(address: Address, options?: ListenOptions): ListeningSocket {
  if (options === undefined) options = {};
  const [host, port] = checkAddress(address);
  const { backlog, timeout, tls } = options;
  if (backlog !== undefined && (!Number.isInteger(backlog) || backlog < 1)) {
    throw new RangeError(`'backlog' must be a positive integer: current value is ${backlog}`);
  }
  checkTimeout(timeout);
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
    throw socketError(error, `listen on ${show(hostname, port)}`);
  }
  return new ListeningSocket(listener, { timeout });
}

// Monkey patching: `_conn.ts` and `_net.ts` implement the patched `Deno.connect` and friends
// and `node:net` (`monkey.patchSocket()` installs them); importing this module does not load
// them. The code above calls the saved originals (`_deno`), so a patched `Deno.connect`
// never reaches it.
