/**
 * Internal: cooperative `Deno.connect`, `Deno.connectTls`, `Deno.listen`, `Deno.listenTls` and
 * `Deno.startTls`, and `node:net`'s `connect`/`createConnection`, installed by
 * `monkey.patchSocket()`.
 *
 * The patched functions return the very objects Deno returns (same class, same identity), with
 * non-enumerable own `read`, `write`, `handshake`, `accept`, `close`, `readable`, `writable`
 * and async iterator that shadow the prototype's. Called outside any greenlet they pass
 * straight through; inside a greenlet each is a blocking call.
 *
 * An interrupted operation closes its connection (or listener): Deno cannot cancel a pending
 * read, write, accept or handshake except by closing, and code that never heard of greenlets
 * cannot resume a read it did not see finish. After the interruption `close()` is harmless
 * and further calls fail with `Deno.errors.BadResource`, as on any closed connection.
 *
 * @module
 */

import { _blocking, _cooperative, _denoNamespace, type _Patch } from "./_platform.ts";
import { _patches as netPatches } from "./_net.ts";

type AnyConn = Deno.Conn & { handshake?: () => Promise<Deno.TlsHandshakeInfo> };

const wrapped = new WeakSet<object>();
/** Connections and listeners closed by an interruption: their `close()` is then harmless. */
const interruptedSet = new WeakSet<object>();

function closeInterrupted(res: object, close: () => void): void {
  interruptedSet.add(res);
  try {
    close.call(res);
  } catch {
    // Already closed.
  }
}

function closeOrphan(res: { close(): void }): void {
  try {
    res.close();
  } catch {
    // Already closed.
  }
}

function define(obj: object, name: PropertyKey, value: unknown): void {
  Object.defineProperty(obj, name, { value, writable: true, configurable: true });
}

const CHUNK = 65536;

/** Makes a connection's operations blocking calls when made inside a greenlet. */
function wrapConn<C extends Deno.Conn>(conn: C): C {
  if (wrapped.has(conn)) return conn;
  wrapped.add(conn);
  const c = conn as C & AnyConn;
  const read = c.read;
  const write = c.write;
  const close = c.close;
  const handshake = c.handshake;
  const interrupt = (): void => closeInterrupted(c, close);
  define(c, "read", function (p: Uint8Array): Promise<number | null> {
    if (!_cooperative()) return read.call(c, p);
    return _blocking(() => read.call(c, p), interrupt);
  });
  define(c, "write", function (p: Uint8Array): Promise<number> {
    if (!_cooperative()) return write.call(c, p);
    return _blocking(() => write.call(c, p), interrupt);
  });
  define(c, "close", function (): void {
    if (interruptedSet.has(c)) return;
    close.call(c);
  });
  if (typeof handshake === "function") {
    define(c, "handshake", function (): Promise<Deno.TlsHandshakeInfo> {
      if (!_cooperative()) return handshake.call(c);
      return _blocking(() => handshake.call(c), interrupt);
    });
  }
  // The streams are built on the cooperative read and write when first asked for inside a
  // greenlet; asked for outside, they are Deno's own. Either way they close the connection at
  // end of stream, on cancel and on close, as Deno's do.
  let readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;
  let writable: WritableStream<Uint8Array<ArrayBufferLike>> | undefined;
  const proto = Object.getPrototypeOf(c);
  const readableGetter = findGetter(proto, "readable");
  const writableGetter = findGetter(proto, "writable");
  Object.defineProperty(c, "readable", {
    configurable: true,
    get(): ReadableStream<Uint8Array<ArrayBuffer>> {
      return readable ??= _cooperative() ? cooperativeReadable(c) : readableGetter!.call(c);
    },
  });
  Object.defineProperty(c, "writable", {
    configurable: true,
    get(): WritableStream<Uint8Array<ArrayBufferLike>> {
      return writable ??= _cooperative() ? cooperativeWritable(c) : writableGetter!.call(c);
    },
  });
  return conn;
}

function findGetter(proto: object | null, name: string): (() => never) | undefined {
  for (let p = proto; p !== null; p = Object.getPrototypeOf(p)) {
    const d = Object.getOwnPropertyDescriptor(p, name);
    if (d?.get !== undefined) return d.get as () => never;
  }
  return undefined;
}

function cooperativeReadable(c: Deno.Conn): ReadableStream<Uint8Array<ArrayBuffer>> {
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: CHUNK,
    async pull(controller): Promise<void> {
      const req = controller.byobRequest!;
      const view = req.view!;
      const n = await c.read(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
      if (n === null) {
        closeOrphan(c);
        controller.close();
        req.respond(0);
      } else {
        req.respond(n);
      }
    },
    cancel(): void {
      closeOrphan(c);
    },
  });
}

function cooperativeWritable(c: Deno.Conn): WritableStream<Uint8Array<ArrayBufferLike>> {
  return new WritableStream({
    async write(chunk): Promise<void> {
      let n = 0;
      while (n < chunk.length) n += await c.write(chunk.subarray(n));
    },
    close(): void {
      closeOrphan(c);
    },
    abort(): void {
      closeOrphan(c);
    },
  });
}

/** Makes a listener's `accept` (and its async iterator) blocking calls in greenlets. */
function wrapListener<L extends Deno.Listener>(listener: L): L {
  if (wrapped.has(listener)) return listener;
  wrapped.add(listener);
  const l = listener as L;
  const accept = l.accept;
  const close = l.close;
  const interrupt = (): void => closeInterrupted(l, close);
  define(l, "accept", function (): Promise<Deno.Conn> {
    if (!_cooperative()) return accept.call(l).then(wrapConn);
    return _blocking(() => accept.call(l), interrupt, closeOrphan).then(wrapConn);
  });
  define(l, "close", function (): void {
    if (interruptedSet.has(l)) return;
    close.call(l);
  });
  define(l, Symbol.asyncIterator, async function* (): AsyncGenerator<Deno.Conn> {
    for (;;) {
      try {
        yield await l.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
          return;
        }
        throw error;
      }
    }
  });
  return l;
}

function makeConnect(original: typeof Deno.connect): typeof Deno.connect {
  return function connect(options: Deno.ConnectOptions): Promise<Deno.TcpConn> {
    if (!_cooperative()) return original(options).then(wrapConn);
    // No signal of ours: Deno leaks the socket when a connect's signal aborts after the
    // handshake. An interrupted connect rejects at once; a late connection is closed.
    return _blocking(() => original(options), undefined, closeOrphan).then(wrapConn);
  } as typeof Deno.connect;
}

function makeConnectTls(original: typeof Deno.connectTls): typeof Deno.connectTls {
  return function connectTls(options: Deno.ConnectTlsOptions): Promise<Deno.TlsConn> {
    if (!_cooperative()) return original(options).then(wrapConn);
    return _blocking(() => original(options), undefined, closeOrphan).then(wrapConn);
  } as typeof Deno.connectTls;
}

function makeStartTls(original: typeof Deno.startTls): typeof Deno.startTls {
  return function startTls(
    conn: Deno.TcpConn,
    options?: Deno.StartTlsOptions,
  ): Promise<Deno.TlsConn> {
    if (!_cooperative()) return original(conn, options).then(wrapConn);
    return _blocking(() => original(conn, options), undefined, closeOrphan).then(wrapConn);
  } as typeof Deno.startTls;
}

function makeListen(original: typeof Deno.listen): typeof Deno.listen {
  return function listen(options: Deno.TcpListenOptions): Deno.Listener {
    return wrapListener(original(options));
  } as typeof Deno.listen;
}

function makeListenTls(original: typeof Deno.listenTls): typeof Deno.listenTls {
  return function listenTls(
    options: Deno.ListenTlsOptions & Deno.TlsCertifiedKeyPem,
  ): Deno.TlsListener {
    return wrapListener(original(options));
  } as typeof Deno.listenTls;
}

/** @ignore The globals `socket.ts` implements, for `monkey.patchSocket()`. */
export const _patches: readonly _Patch[] = [
  { area: "socket", target: _denoNamespace, name: "connect", make: makeConnect },
  { area: "socket", target: _denoNamespace, name: "connectTls", make: makeConnectTls },
  { area: "socket", target: _denoNamespace, name: "listen", make: makeListen },
  { area: "socket", target: _denoNamespace, name: "listenTls", make: makeListenTls },
  { area: "socket", target: _denoNamespace, name: "startTls", make: makeStartTls },
  ...netPatches,
];
