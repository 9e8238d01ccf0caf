import "./_deadline.ts";
import assert from "node:assert/strict";
import { getCurrent, GreenletExit, joinAll, spawn } from "../greenlet.ts";
import { sleep } from "../hub.ts";
import { Event } from "../event.ts";
import { Timeout, withTimeout } from "../timeout.ts";
import { StreamServer } from "../server.ts";
import {
  createConnection,
  GaiError,
  listen,
  ListeningSocket,
  Socket,
  SocketError,
  SocketTimeout,
} from "../socket.ts";
import { _deno } from "../_platform.ts";
import { assertTimeoutContract, captureReports } from "./_helpers.ts";
import { hasOpenssl, selfSignedCert } from "./_tls.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const text = (b: Uint8Array): string => dec.decode(b);

/** A connected pair on loopback: [client, peer]. */
async function pair(): Promise<[Socket, Socket]> {
  using server = listen(["127.0.0.1", 0]);
  const client = await createConnection(server.getsockname());
  const [peer] = await server.accept();
  return [client, peer];
}

/** The outcome of an elapsed socket, accept or connect timeout: a SocketTimeout. */
const elapsedIsSocketTimeout = ({ error }: { error?: unknown }): void =>
  assert.ok(error instanceof SocketTimeout, String(error));

/**
 * The timeout contract of a call bounded by the `timeout` of `sock` (a Socket or a
 * ListeningSocket): each timeout under test is set on it first, and a bad one rejects.
 */
function assertSocketTimeoutContract(
  t: Deno.TestContext,
  sock: { timeout: number | undefined },
  call: () => Promise<unknown>,
): Promise<void> {
  return assertTimeoutContract(t, {
    call: (ms) => {
      try {
        sock.timeout = ms;
      } catch (error) {
        return Promise.reject(error);
      }
      return call();
    },
    elapsed: elapsedIsSocketTimeout,
  });
}

/** Runs `call` in a greenlet, kills the greenlet once `call` waits, and checks it exited. */
async function killWhileWaiting(call: () => Promise<unknown>): Promise<void> {
  const waiting = new Event();
  const g = spawn(async () => {
    waiting.set();
    return await call();
  });
  await waiting.wait();
  await sleep(0);
  await g.kill();
  assert.ok(g.value instanceof GreenletExit);
}

/** Reads exactly `n` bytes. */
async function recvExactly(sock: Socket, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const k = await sock.recvInto(out.subarray(got));
    if (k === 0) throw new Error(`end of stream after ${got} of ${n} bytes`);
    got += k;
  }
  return out;
}

Deno.test("recv() returns what arrived, and an empty array at end of stream", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  await peer.sendall(enc.encode("hello"));
  assert.equal(text(await client.recv(3)), "hel");
  assert.equal(text(await client.recv(10)), "lo");
  await peer.shutdown();
  assert.equal((await client.recv()).length, 0);
  assert.equal((await client.recv()).length, 0);
  assert.equal(await client.recvInto(new Uint8Array(4)), 0);
});

Deno.test("recv() interrupted by a Timeout loses no bytes", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  let caught: unknown;
  {
    using timeout = Timeout.start(20);
    try {
      await client.recv(100);
    } catch (error) {
      caught = error;
      assert.equal(error, timeout);
    }
  }
  assert.ok(caught instanceof Timeout);
  await peer.sendall(enc.encode("after the timeout"));
  assert.equal(text(await client.recv(100)), "after the timeout");
});

Deno.test("bytes that land after an interrupted recv(), while nobody reads, wait for the next recv()", async () => {
  using server = listen(["127.0.0.1", 0]);
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: server.getsockname()[1] });
  // The socket's reads go through this wrapper, which says when one has completed: so the
  // test knows the bytes are in the socket's buffer before it asks for them.
  let landed = Promise.withResolvers<void>();
  const conn = new Proxy(raw, {
    get(target, key) {
      if (key === "read") {
        return (buf: Uint8Array) => {
          const read = target.read(buf);
          read.then(() => landed.resolve(), () => landed.resolve());
          return read;
        };
      }
      const value = Reflect.get(target, key);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  using client = new Socket(conn);
  const [peer] = await server.accept();
  using _p = peer;
  const ctl = new AbortController();
  const pending = client.recv(100, { signal: ctl.signal }); // starts a read
  ctl.abort(new Error("stop waiting"));
  await assert.rejects(pending, /stop waiting/);
  landed = Promise.withResolvers<void>();
  await peer.sendall(enc.encode("landed meanwhile"));
  await landed.promise; // the read that recv() started has the bytes; nobody is reading
  await Promise.resolve(); // the socket's own callback on that read runs after ours
  // `timeout: 0` does not wait: the bytes must already be buffered.
  assert.equal(text(await client.recv(100, { timeout: 0 })), "landed meanwhile");
});

Deno.test("recv() interrupted by the socket timeout throws SocketTimeout and loses no bytes", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  client.timeout = 20;
  const err = await client.recv().catch((e) => e);
  assert.ok(err instanceof SocketTimeout);
  assert.equal(err.name, "SocketTimeout");
  assert.equal(err.code, "ETIMEDOUT");
  assert.ok(err instanceof SocketError);
  await peer.sendall(enc.encode("late"));
  const buf = new Uint8Array(10);
  assert.equal(await client.recvInto(buf), 4);
  assert.equal(text(buf.subarray(0, 4)), "late");
});

Deno.test("recv() interrupted by kill() loses no bytes; the socket stays usable", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  await killWhileWaiting(() => client.recv());
  await peer.sendall(enc.encode("kept"));
  assert.equal(text(await client.recv()), "kept");
  await client.sendall(enc.encode("still writable"));
  assert.equal(text(await peer.recv()), "still writable");
});

Deno.test("recv() honours the timeout contract (the socket timeout)", async (t) => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  await assertSocketTimeoutContract(t, client, () => client.recv());
});

Deno.test("accept() honours the timeout contract", async (t) => {
  using server = listen(["127.0.0.1", 0]);
  await assertSocketTimeoutContract(t, server, () => server.accept());
});

Deno.test("accept() interrupted by kill() keeps the connection for the next accept()", async () => {
  using server = listen(["127.0.0.1", 0]);
  await killWhileWaiting(() => server.accept());
  using client = await createConnection(server.getsockname());
  const [conn, address] = await server.accept();
  using _ = conn;
  assert.deepEqual(address, client.getsockname());
  assert.deepEqual(conn.getpeername(), client.getsockname());
});

Deno.test("close() of a listening socket fails a pending accept() with EBADF", async () => {
  const server = listen(["127.0.0.1", 0]);
  const g = spawn(() => server.accept());
  await sleep(0);
  server.close();
  server.close();
  const report = await captureReports(() => g.join());
  assert.match(report, /failed with SocketError/);
  assert.ok(g.exception instanceof SocketError);
  assert.equal((g.exception as SocketError).code, "EBADF");
  await assert.rejects(server.accept(), (e: SocketError) => e.code === "EBADF");
});

Deno.test("createConnection() honours the timeout contract (a TLS peer that never answers)", async (t) => {
  using server = listen(["127.0.0.1", 0]);
  const accepted: Socket[] = [];
  const acceptor = spawn(async () => {
    for (;;) accepted.push((await server.accept())[0]);
  });
  await assertTimeoutContract(t, {
    call: (ms) => createConnection(server.getsockname(), { timeout: ms, tls: true }),
    elapsed: elapsedIsSocketTimeout,
  });
  await acceptor.kill();
  for (const s of accepted) s.close();
});

Deno.test("kill() during connect leaves no half-open connection", async () => {
  using server = listen(["127.0.0.1", 0]);
  const real = _deno.connect;
  const entered = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const closed = Promise.withResolvers<void>();
  // A connect that completes even though it was aborted, and only after the kill.
  _deno.connect = (async (options: Deno.ConnectOptions) => {
    const conn = await real({ ...options, signal: undefined });
    entered.resolve();
    await release.promise;
    const close = conn.close.bind(conn);
    conn.close = () => {
      close();
      closed.resolve();
    };
    return conn;
  }) as typeof Deno.connect;
  try {
    const g = spawn(() => createConnection(server.getsockname()));
    await entered.promise;
    await g.kill();
    assert.ok(g.value instanceof GreenletExit);
    release.resolve();
    await closed.promise; // the connection that completed late was closed
  } finally {
    _deno.connect = real;
  }
  const [peer] = await server.accept();
  using _ = peer;
  assert.equal((await peer.recv()).length, 0, "the late connection was not closed");
});

/** Reads `conn` to its end; resolves whether the peer closed it (end of stream or a reset). */
async function peerCloses(conn: Deno.Conn): Promise<boolean> {
  const buf = new Uint8Array(1024);
  try {
    while ((await conn.read(buf)) !== null) {
      // Discard.
    }
    return true;
  } catch (error) {
    return error instanceof Deno.errors.ConnectionReset;
  }
}

Deno.test("createConnection() interrupted at random points leaves no connection open", async () => {
  // The server accepts everything, and every connection must end: the client closed it. (A
  // socket Deno itself leaks is not in its resource table: the sanitizer cannot see it.)
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address: [string, number] = ["127.0.0.1", listener.addr.port];
  const accepted: Deno.Conn[] = [];
  const ends: Promise<void>[] = [];
  let closedByClient = 0;
  let lastPort = -1;
  const lastAccepted = Promise.withResolvers<void>();
  const acceptor = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // the listener was closed
      }
      accepted.push(conn);
      ends.push(
        peerCloses(conn).then((closed) => {
          if (closed) closedByClient++;
        }),
      );
      if ((conn.remoteAddr as Deno.NetAddr).port === lastPort) lastAccepted.resolve();
    }
  })();
  // Every connect is watched: for a signal, to wait for the ones that complete late, and to
  // kill some greenlets the moment their connection is made.
  const real = _deno.connect;
  let signals = 0;
  let connecting = 0;
  let settled = Promise.withResolvers<void>();
  const killOnConnect = new Set<unknown>();
  _deno.connect = ((options: Deno.ConnectOptions) => {
    if (options.signal !== undefined) signals++;
    if (connecting++ === 0) settled = Promise.withResolvers();
    const g = getCurrent();
    const done = (): void => {
      if (--connecting === 0) settled.resolve();
    };
    const p = real(options);
    p.then(() => {
      if (g !== undefined && killOnConnect.has(g)) g.kill({ block: false });
      done();
    }, done);
    return p;
  }) as typeof Deno.connect;
  let connected = 0;
  let interrupted = 0;
  try {
    // 4 rounds of 50 concurrent attempts: killed after 0-20 ms, under a Timeout of 0-20 ms,
    // or killed right after the connection is made.
    for (let round = 0; round < 4; round++) {
      const timers: ReturnType<typeof setTimeout>[] = [];
      const connect = async (): Promise<boolean> => {
        using _ = await createConnection(address);
        return true;
      };
      const jobs = Array.from({ length: 50 }, (_, i) => {
        const ms = Math.random() * 20;
        if (i % 3 === 1) return spawn(() => withTimeout(ms, connect, { timeoutValue: false }));
        const g = spawn(connect);
        if (i % 3 === 0) timers.push(setTimeout(() => g.kill({ block: false }), ms));
        else killOnConnect.add(g);
        return g;
      });
      await joinAll(jobs);
      for (const t of timers) clearTimeout(t);
      for (const g of jobs) g.value === true ? connected++ : interrupted++;
    }
    if (connecting > 0) await settled.promise; // connections made after their interruption
  } finally {
    _deno.connect = real;
  }
  // A last connection: once it is accepted, every earlier one has been (the queue is FIFO).
  const last = await real({ hostname: address[0], port: address[1] });
  lastPort = last.localAddr.port;
  if (accepted.some((c) => (c.remoteAddr as Deno.NetAddr).port === lastPort)) {
    lastAccepted.resolve();
  }
  await lastAccepted.promise;
  last.close();
  // Each connection ends as soon as its client closes it; a leaked one never does (2 s bound).
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(ends),
    new Promise((resolve) => timer = setTimeout(resolve, 2000)),
  ]);
  clearTimeout(timer);
  const open = accepted.length - closedByClient;
  for (const conn of accepted) conn.close();
  listener.close();
  await acceptor;
  await Promise.all(ends);
  assert.equal(
    open,
    0,
    `${open} of ${accepted.length} connections left open ` +
      `(${connected} attempts connected, ${interrupted} interrupted)`,
  );
  assert.equal(signals, 0, "an AbortSignal was passed to Deno.connect");
  assert.ok(interrupted > 0 && connected > 0, `${connected} connected, ${interrupted} interrupted`);
});

Deno.test("kill() during a TLS handshake closes the connection's resource", async () => {
  // The resource sanitizer proves the TLS connection is closed. (Deno itself keeps the OS
  // socket until the peer answers or closes: here the peer closes it.)
  using server = listen(["127.0.0.1", 0]);
  const g = spawn(() => createConnection(server.getsockname(), { tls: true }));
  const [peer] = await server.accept();
  using _ = peer;
  assert.ok((await peer.recv()).length > 0, "no ClientHello"); // the handshake started
  await g.kill();
  assert.ok(g.value instanceof GreenletExit);
});

Deno.test("a refused connection is SocketError ECONNREFUSED with Deno's error as cause", async () => {
  const server = listen(["127.0.0.1", 0]);
  const address = server.getsockname();
  server.close();
  const err = await createConnection(address).catch((e) => e);
  assert.ok(err instanceof SocketError);
  assert.equal(err.name, "SocketError");
  assert.equal(err.code, "ECONNREFUSED");
  assert.ok(err.cause instanceof Deno.errors.ConnectionRefused);
});

Deno.test("createConnection() connects from sourceAddress; timeouts and end of stream work as usual", async () => {
  using server = listen(["127.0.0.1", 0]);
  using sock = await createConnection(server.getsockname(), {
    sourceAddress: ["127.0.0.1", 0],
    timeout: 2000,
  });
  const [peer, address] = await server.accept();
  using _ = peer;
  assert.deepEqual(address, sock.getsockname());
  assert.equal(sock.getsockname()[0], "127.0.0.1");
  await sock.sendall(enc.encode("bound"));
  assert.equal(text(await peer.recv()), "bound");
  await peer.sendall(enc.encode("back"));
  assert.equal(text(await sock.recv()), "back");
  sock.timeout = 10;
  await assert.rejects(sock.recv(), SocketTimeout);
  await peer.sendall(enc.encode("kept"));
  sock.timeout = 2000;
  assert.equal(text(await sock.recv()), "kept");
  await peer.shutdown();
  assert.equal((await sock.recv()).length, 0);
  const port = server.getsockname()[1];
  server.close();
  const err = await createConnection(["127.0.0.1", port], { sourceAddress: ["127.0.0.1", 0] })
    .catch((e) => e);
  assert.ok(err instanceof SocketError);
  assert.equal(err.code, "ECONNREFUSED");
});

Deno.test("createConnection() tries each address until one accepts", async () => {
  // localhost is 127.0.0.1 then ::1; only ::1 listens.
  using server = listen(["::1", 0]);
  const port = server.getsockname()[1];
  using sock = await createConnection(["localhost", port]);
  assert.deepEqual(sock.getpeername(), ["::1", port]);
  const [peer] = await server.accept();
  peer.close();
});

Deno.test("bad input is rejected with TypeError, RangeError or GaiError, never thrown", async () => {
  const cases: [() => Promise<unknown>, (e: Error) => boolean][] = [
    [
      () => createConnection(["127.0.0.1", 70000]),
      (e) =>
        e instanceof RangeError &&
        e.message === "'port' must be an integer from 0 to 65535: current value is 70000",
    ],
    [() => createConnection(["127.0.0.1", -1]), (e) => e instanceof RangeError],
    [() => createConnection(["127.0.0.1", 80], { timeout: -5 }), (e) => e instanceof RangeError],
    [() => createConnection([42 as unknown as string, 80]), (e) => e instanceof TypeError],
    [
      () => createConnection(["", 80]),
      (e) => e instanceof GaiError && (e as GaiError).code === "EAI_NONAME",
    ],
    [
      () => createConnection(["127.0.0.1", 80], { sourceAddress: ["127.0.0.2", 5], tls: true }),
      (e) => e instanceof SocketError && (e as SocketError).code === "EOPNOTSUPP",
    ],
    [
      () => createConnection(["127.0.0.1", 80], { sourceAddress: ["127.0.0.1", 70000] }),
      (e) => e instanceof RangeError,
    ],
  ];
  for (const [call, check] of cases) {
    let p: Promise<unknown> | undefined;
    assert.doesNotThrow(() => p = call());
    await assert.rejects(p!, check);
  }
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  await assert.rejects(client.recv(0), RangeError);
  await assert.rejects(client.send("text" as unknown as Uint8Array), TypeError);
  assert.throws(() => client.timeout = -1, RangeError);
  assert.throws(() => listen(["127.0.0.1", 65536]), RangeError);
  assert.throws(() => listen(["127.0.0.1", 0], { backlog: 0 }), RangeError);
});

Deno.test("close() is synchronous and idempotent; pending calls fail with EBADF", async () => {
  const [client, peer] = await pair();
  using _p = peer;
  const g = spawn(() => client.recv());
  await sleep(0);
  client.close();
  client.close();
  assert.equal(client.closed, true);
  await captureReports(() => g.join());
  assert.equal((g.exception as SocketError).code, "EBADF");
  await assert.rejects(client.recv(), (e: SocketError) => e.code === "EBADF");
  await assert.rejects(client.sendall(enc.encode("x")), (e: SocketError) => e.code === "EBADF");
  assert.throws(() => client.getpeername(), SocketError);
  assert.equal((await peer.recv()).length, 0);
});

Deno.test("writing to a connection the peer closed fails with a SocketError", async () => {
  const [client, peer] = await pair();
  using _c = client;
  peer.close();
  const chunk = new Uint8Array(65536);
  let err: unknown;
  for (let i = 0; i < 1000 && err === undefined; i++) {
    err = await client.sendall(chunk).then(() => undefined, (e) => e);
  }
  assert.ok(err instanceof SocketError, String(err));
  assert.ok(["EPIPE", "ECONNRESET"].includes(err.code), err.code);
  assert.ok(err.cause instanceof Error);
});

Deno.test("a second greenlet receiving on the same socket is rejected with EBUSY, which says what to do", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  const first = spawn(() => client.recv());
  await sleep(0);
  const busy = (e: SocketError) =>
    e instanceof SocketError && e.code === "EBUSY" && /\(EBUSY\)/.test(e.message) &&
    /receive in one greenlet at a time/.test(e.message);
  await assert.rejects(client.recv(), busy);
  await assert.rejects(client.recvInto(new Uint8Array(4)), busy);
  await assert.rejects(client.recvLine(), busy);
  await peer.sendall(enc.encode("one"));
  await first.join();
  assert.equal(text(first.value as Uint8Array), "one");
});

Deno.test("sendall() sends everything across partial writes", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  const data = new Uint8Array(8 * 1024 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = i % 251;
  const reader = spawn(() => recvExactly(peer, data.length));
  await client.sendall(data);
  await reader.join();
  assert.ok(reader.successful(), String(reader.exception));
  assert.deepEqual(reader.value, data);
});

Deno.test("sendall() to a peer that does not read times out; kill() interrupts it too", async () => {
  const [client, peer] = await pair();
  using _p = peer;
  const data = new Uint8Array(64 * 1024 * 1024);
  client.timeout = 50;
  const err = await client.sendall(data).catch((e) => e);
  assert.ok(err instanceof SocketTimeout, String(err));
  client.timeout = undefined;
  const g = spawn(() => client.sendall(data));
  await sleep(20);
  await g.kill();
  assert.ok(g.value instanceof GreenletExit);
  client.close(); // what was being written is abandoned
});

Deno.test("send() honours the timeout contract (a peer that does not read)", async (t) => {
  const [client, peer] = await pair();
  using _p = peer;
  const big = new Uint8Array(64 * 1024 * 1024);
  // Fill the socket buffers first so that the next write has to wait.
  client.timeout = 50;
  await client.sendall(big).catch(() => {});
  await assertSocketTimeoutContract(t, client, () => client.send(big));
  client.close();
});

Deno.test("getpeername(), getsockname(), setNoDelay() and toString()", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  assert.deepEqual(client.getpeername(), peer.getsockname());
  assert.deepEqual(client.getsockname(), peer.getpeername());
  client.setNoDelay();
  client.setNoDelay(false);
  assert.match(String(client), /^<Socket 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+>$/);
  assert.ok(client.conn !== undefined);
});

Deno.test("readable and writable web streams carry the bytes", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  const writer = client.writable.getWriter();
  await writer.write(enc.encode("streamed "));
  await writer.write(enc.encode("bytes"));
  await writer.close(); // shuts down the write half
  let received = "";
  for await (const chunk of peer.readable) received += text(chunk);
  assert.equal(received, "streamed bytes");
});

Deno.test("a Socket wraps any Deno.Conn and a ListeningSocket any Deno.Listener", async () => {
  using server = new ListeningSocket(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.getsockname()[1] });
  using client = new Socket(conn, { timeout: 1000 });
  const [peer] = await server.accept();
  using _ = peer;
  await client.sendall(enc.encode("wrapped"));
  assert.equal(text(await peer.recv()), "wrapped");
  assert.throws(() => new Socket({} as Deno.Conn), TypeError);
});

Deno.test({
  name: "TLS: createConnection() with caCerts talks to a local Deno.listenTls",
  ignore: !await hasOpenssl(),
  async fn() {
    const { cert, key } = await selfSignedCert();
    using server = new ListeningSocket(
      Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }),
    );
    const echo = spawn(async () => {
      const [conn] = await server.accept();
      using _ = conn;
      for (let data; (data = await conn.recv()).length > 0;) await conn.sendall(data);
    });
    using client = await createConnection(server.getsockname(), {
      tls: { caCerts: [cert] },
      timeout: 5000,
    });
    client.setNoDelay();
    await client.sendall(enc.encode("over TLS"));
    assert.equal(text(await recvExactly(client, 8)), "over TLS");
    client.close();
    await echo.join();
    assert.ok(echo.successful(), String(echo.exception));
    // Without the CA the certificate is rejected.
    const other = spawn(async () => {
      const [conn] = await server.accept();
      using _ = conn;
      return await conn.recv().catch((e) => e); // drives the server side of the handshake
    });
    const err = await createConnection(server.getsockname(), { tls: true }).catch((e) => e);
    assert.ok(err instanceof SocketError, String(err));
    assert.ok(err.cause instanceof Error);
    await other.join();
    assert.ok(other.value instanceof SocketError, String(other.value));
  },
});

Deno.test("a blocking call inside a greenlet lets the others run", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  const order: string[] = [];
  const reader = spawn(async () => {
    order.push("reading");
    const data = await client.recv();
    order.push(`read ${text(data)}`);
  });
  const writer = spawn(async () => {
    order.push("writing");
    await peer.sendall(enc.encode("x"));
    order.push(`wrote from ${getCurrent() === writer ? "writer" : "?"}`);
  });
  await reader.join();
  await writer.join();
  assert.deepEqual(order.slice(0, 2), ["reading", "writing"]);
  assert.ok(order.includes("read x"));
});

// ---------------------------------------------------------------------------------------
// Read buffers: sized to the call, handed back once consumed

/**
 * A connected pair whose first socket records the buffer of every read it starts (and calls
 * `onRead` then): [client, reads, peer].
 */
async function recordedPair(onRead?: () => void): Promise<[Socket, Uint8Array[], Socket]> {
  using server = listen(["127.0.0.1", 0]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.getsockname()[1] });
  const reads: Uint8Array[] = [];
  const read = conn.read.bind(conn);
  conn.read = (p: Uint8Array) => {
    reads.push(p);
    onRead?.();
    return read(p);
  };
  const [peer] = await server.accept();
  return [new Socket(conn), reads, peer];
}

Deno.test("recv() and recvInto() read into a buffer sized to the call, not a fixed 64 KiB", async () => {
  const [client, reads, peer] = await recordedPair();
  using _c = client;
  using _p = peer;
  await peer.sendall(enc.encode("hello"));
  assert.equal(text(await client.recv(16)), "hello");
  await peer.sendall(enc.encode("world"));
  assert.equal(await client.recvInto(new Uint8Array(8)), 5);
  assert.equal(reads.length, 2);
  for (const r of reads) {
    assert.ok(r.buffer.byteLength <= 1024, `a small read used a ${r.buffer.byteLength} B buffer`);
  }
});

Deno.test("a socket hands its read buffer back once the bytes are taken; an interrupted read keeps it", async () => {
  const [a, readsA, peerA] = await recordedPair();
  const [b, readsB, peerB] = await recordedPair();
  using _a = a;
  using _pa = peerA;
  using _b = b;
  using _pb = peerB;
  await peerA.sendall(enc.encode("to a"));
  assert.equal(text(await a.recv(100)), "to a");
  await peerB.sendall(enc.encode("to b"));
  assert.equal(text(await b.recv(100)), "to b");
  // a held no buffer once its recv returned: b's read reused the one a gave back.
  assert.equal(readsB[0].buffer, readsA[0].buffer, "the idle socket kept its read buffer");
  // An interrupted recv leaves its read outstanding: that buffer is not handed to anyone.
  await assert.rejects(a.recv(100, { timeout: 10 }), SocketTimeout);
  const pending = readsA[1].buffer;
  await peerB.sendall(enc.encode("b again"));
  assert.equal(text(await b.recv(100)), "b again");
  assert.notEqual(readsB[1].buffer, pending, "a buffer in use by a pending read was reused");
  await peerA.sendall(enc.encode("late"));
  assert.equal(text(await a.recv(100)), "late"); // the bytes of the interrupted read
  await peerB.sendall(enc.encode("b last"));
  assert.equal(text(await b.recv(100)), "b last");
  assert.equal(readsB[2].buffer, pending, "the buffer was not handed back after its bytes");
});

Deno.test("reads grow for a bulk transfer, up to bufsize, and every byte arrives", async () => {
  const [client, reads, peer] = await recordedPair();
  using _c = client;
  using _p = peer;
  const data = new Uint8Array(4 * 1024 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = i % 253;
  const sender = spawn(() => peer.sendall(data));
  const got = new Uint8Array(data.length);
  for (let n = 0; n < data.length;) {
    const chunk = await client.recv(65536);
    assert.ok(chunk.length > 0 && chunk.length <= 65536);
    got.set(chunk, n);
    n += chunk.length;
  }
  await sender.join();
  assert.deepEqual(got, data);
  const largest = Math.max(...reads.map((r) => r.length));
  assert.ok(largest >= 32768, `the largest read asked for ${largest} bytes`);
  assert.ok(largest <= 65536, `a read asked for more than bufsize: ${largest}`);
});

// ---------------------------------------------------------------------------------------
// Several greenlets sending on one socket

/** Resolves with every byte `sock` receives until end of stream. */
async function recvAll(sock: Socket): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (let c; (c = await sock.recv()).length > 0;) {
    chunks.push(c);
    total += c.length;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Asserts `data` is runs of `fill[i]` repeated `lengths[i]` times, in that order. */
function assertRuns(data: Uint8Array, runs: [fill: number, length: number][]): void {
  let at = 0;
  for (const [fill, length] of runs) {
    const run = data.subarray(at, at + length);
    const bad = run.findIndex((b) => b !== fill);
    assert.ok(run.length === length && bad < 0, `run of ${fill} x ${length} broken at ${at + bad}`);
    at += length;
  }
  assert.equal(data.length, at, "extra bytes after the expected runs");
}

Deno.test("sendall() from several greenlets at once: calls queue, complete in call order, never interleave", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  // Each is larger than the socket buffers, so every sendall has to wait for the peer.
  const size = 4 * 1024 * 1024;
  const done: number[] = [];
  const senders = [1, 2, 3].map((fill, i) =>
    spawn(async () => {
      await client.sendall(new Uint8Array(size).fill(fill));
      done.push(i);
    })
  );
  const small = spawn(async () => {
    const n = await client.send(new Uint8Array(10).fill(4)); // send() queues as well
    done.push(3);
    return n;
  });
  const reader = spawn(() => recvExactly(peer, 3 * size + 10));
  await joinAll([...senders, small, reader], { raiseError: true });
  assert.deepEqual(done, [0, 1, 2, 3]);
  assert.equal(small.value, 10);
  assertRuns(reader.value as Uint8Array, [[1, size], [2, size], [3, size], [4, 10]]);
});

/** Reads one chat message (`[id, seq, length u32]` then `length` bytes); undefined at the end. */
async function recvMessage(sock: Socket): Promise<Uint8Array | undefined> {
  const first = await sock.recv(1);
  if (first.length === 0) return undefined;
  const head = new Uint8Array(6);
  head[0] = first[0];
  head.set(await recvExactly(sock, 5), 1);
  const length = new DataView(head.buffer).getUint32(2);
  const message = new Uint8Array(6 + length);
  message.set(head);
  message.set(await recvExactly(sock, length), 6);
  return message;
}

Deno.test("a chat server that broadcasts with sendall() to every client delivers every message whole", async () => {
  const clientCount = 4;
  const perClient = 4;
  const members = new Set<Socket>();
  const everyoneJoined = new Event();
  await using server = new StreamServer(["127.0.0.1", 0], async (sock) => {
    members.add(sock);
    if (members.size === clientCount) everyoneJoined.set();
    try {
      for (let m; (m = await recvMessage(sock)) !== undefined;) {
        for (const member of [...members]) await member.sendall(m);
      }
    } finally {
      members.delete(sock);
    }
  });
  server.start();
  /** Message `seq` of client `id`: large enough that a broadcast has to wait for readers. */
  const message = (id: number, seq: number): Uint8Array => {
    const length = 100_000 + seq * 60_000;
    const m = new Uint8Array(6 + length).fill(id * 16 + seq);
    m[0] = id;
    m[1] = seq;
    new DataView(m.buffer).setUint32(2, length);
    return m;
  };
  const total = clientCount * perClient;
  const client = async (id: number): Promise<void> => {
    using sock = await createConnection(server.address);
    const reader = spawn(async () => {
      const next = new Array(clientCount).fill(0);
      for (let i = 0; i < total; i++) {
        const m = await recvMessage(sock);
        assert.ok(m !== undefined, "the server closed the connection");
        const [from, seq] = m;
        assert.ok(from < clientCount, `a message from client ${from}: interleaved bytes`);
        assert.equal(seq, next[from]++, `messages of client ${from} out of order`);
        assert.deepEqual(m, message(from, seq), `message ${from}/${seq} arrived broken`);
      }
    });
    await everyoneJoined.wait();
    for (let seq = 0; seq < perClient; seq++) await sock.sendall(message(id, seq));
    await reader.join();
    if (!reader.successful()) throw reader.exception;
  };
  const report = await captureReports(async () => {
    const clients = Array.from({ length: clientCount }, (_, id) => spawn(client, id));
    await joinAll(clients, { raiseError: true });
  });
  assert.equal(report, "", "the server reported a failure");
});

Deno.test("a queued sendall() interrupted by kill() or its timeout sends nothing; the queue goes on", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  const size = 32 * 1024 * 1024; // far more than the socket buffers: it waits for the reader
  const first = spawn(() => client.sendall(new Uint8Array(size).fill(1)));
  const killed = spawn(() => client.sendall(new Uint8Array(1000).fill(2)));
  const timed = spawn(() =>
    client.sendall(new Uint8Array(1000).fill(3), { timeout: 10 }).catch((e) => e)
  );
  const last = spawn(() => client.sendall(new Uint8Array(1000).fill(4)));
  await sleep(0); // all four have called sendall, in this order
  await killed.kill();
  assert.ok(killed.value instanceof GreenletExit);
  await timed.join();
  assert.ok(timed.value instanceof SocketTimeout, String(timed.value));
  assert.equal(first.dead, false);
  const reader = spawn(() => recvAll(peer));
  await joinAll([first, last], { raiseError: true });
  await client.shutdown();
  await reader.join();
  assertRuns(reader.value as Uint8Array, [[1, size], [4, 1000]]);
});

Deno.test("close() fails the sends queued in other greenlets with EBADF", async () => {
  const [client, peer] = await pair();
  using _p = peer;
  const big = new Uint8Array(32 * 1024 * 1024);
  const senders = [big, new Uint8Array(10), new Uint8Array(10)].map((data) =>
    spawn(() => client.sendall(data).catch((e) => e))
  );
  await sleep(0);
  client.close();
  await joinAll(senders);
  for (const g of senders) {
    assert.ok(g.value instanceof SocketError && g.value.code === "EBADF", String(g.value));
  }
});

// ---------------------------------------------------------------------------------------
// recvLine()

Deno.test("recvLine() returns each line with its newline, the rest at end of stream, then an empty string", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  await peer.sendall(enc.encode("one\ntwo\r\n\nthree"));
  await peer.shutdown();
  assert.equal(await client.recvLine(), "one\n");
  assert.equal(await client.recvLine(), "two\r\n");
  assert.equal(await client.recvLine(), "\n");
  assert.equal(await client.recvLine(), "three");
  assert.equal(await client.recvLine(), "");
  assert.equal(await client.recvLine(), "");
  assert.equal((await client.recv()).length, 0);
});

Deno.test("recvLine() waits across reads, and decodes UTF-8 split between them", async () => {
  let reading = Promise.withResolvers<void>();
  const [client, reads, peer] = await recordedPair(() => reading.resolve());
  using _c = client;
  using _p = peer;
  const line = spawn(() => client.recvLine());
  const failed = line.join().then(() => { // ends the wait below if recvLine fails
    if (!line.successful()) throw line.exception;
  });
  const bytes = enc.encode("héllo wörld ✓\n");
  for (let i = 0; i < bytes.length; i++) {
    await Promise.race([reading.promise, failed]); // recvLine started another read
    reading = Promise.withResolvers();
    await peer.sendall(bytes.subarray(i, i + 1)); // one byte per read
  }
  await failed;
  assert.equal(line.value, "héllo wörld ✓\n");
  assert.equal(reads.length, bytes.length);
});

Deno.test("recvLine() rejects a line longer than maxLength with EMSGSIZE and loses no bytes", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  await peer.sendall(enc.encode("0123456789abcdef\nshort\n"));
  const err = await client.recvLine({ maxLength: 8 }).catch((e) => e);
  assert.ok(err instanceof SocketError, String(err));
  assert.equal(err.code, "EMSGSIZE");
  assert.match(err.message, /maxLength \(8 bytes\) \(EMSGSIZE\)/);
  assert.equal(text(await client.recv(4)), "0123"); // nothing was lost
  assert.equal(await client.recvLine(), "456789abcdef\n");
  assert.equal(await client.recvLine({ maxLength: 6 }), "short\n"); // maxLength counts "\n"
  // A line that outgrows maxLength while it arrives, without a newline yet.
  const long = spawn(() => client.recvLine({ maxLength: 100 }).catch((e) => e));
  await peer.sendall(enc.encode("x".repeat(60)));
  await sleep(0);
  await peer.sendall(enc.encode("y".repeat(60)));
  await long.join();
  assert.equal((long.value as SocketError).code, "EMSGSIZE");
  await peer.sendall(enc.encode("\n"));
  assert.equal(await client.recvLine({ maxLength: 1000 }), "x".repeat(60) + "y".repeat(60) + "\n");
  await assert.rejects(client.recvLine({ maxLength: 0 }), RangeError);
  await assert.rejects(client.recvLine({ maxLength: "8" as unknown as number }), TypeError);
  await assert.rejects(client.recvLine(5 as never), TypeError);
});

Deno.test("recvLine() interrupted by its timeout, a Timeout, a signal or kill() loses no bytes", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  await peer.sendall(enc.encode("par"));
  await assert.rejects(client.recvLine({ timeout: 20 }), SocketTimeout);
  await peer.sendall(enc.encode("ti"));
  {
    using timeout = Timeout.start(20);
    await assert.rejects(client.recvLine(), (e) => e === timeout);
  }
  await peer.sendall(enc.encode("al"));
  const ctl = new AbortController();
  const aborted = client.recvLine({ signal: ctl.signal });
  ctl.abort(new Error("stop"));
  await assert.rejects(aborted, /stop/);
  await assert.rejects(client.recvLine({ signal: ctl.signal }), /stop/); // already aborted
  await killWhileWaiting(() => client.recvLine());
  await peer.sendall(enc.encode(" line\nnext\n"));
  assert.equal(await client.recvLine(), "partial line\n");
  assert.equal(await client.recvLine(), "next\n");
});

Deno.test("recvLine() honours the timeout contract (its timeout option)", async (t) => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  await assertTimeoutContract(t, {
    call: (ms) => client.recvLine({ timeout: ms }),
    elapsed: elapsedIsSocketTimeout,
  });
});

Deno.test("recvLine() and recv() share one buffer: a header line, then raw bytes", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  await peer.sendall(enc.encode("LENGTH 5\r\nhelloNEXT\n"));
  assert.equal(await client.recvLine(), "LENGTH 5\r\n");
  assert.equal(text(await recvExactly(client, 5)), "hello");
  assert.equal(await client.recvLine(), "NEXT\n");
});

// ---------------------------------------------------------------------------------------
// Per-call options and long timeouts

/** Races `call()` against a 20 ms timer: which settled first. */
async function racesTimer(call: () => Promise<unknown>): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    call().then(() => "settled", (e) => e instanceof SocketTimeout ? "timed out" : String(e)),
    new Promise<string>((resolve) => timer = setTimeout(resolve, 20, "timer")),
  ]);
  clearTimeout(timer);
  return outcome;
}

Deno.test("a timeout of 2 ** 31 ms or more does not fire at once", async (t) => {
  const [client, peer] = await pair();
  using _p = peer;
  const pending: Promise<unknown>[] = [];
  const keep = <T>(p: Promise<T>): Promise<T> => {
    pending.push(p.catch(() => {}));
    return p;
  };
  await t.step("recv({ timeout: 2 ** 31 })", async () => {
    assert.equal(await racesTimer(() => keep(client.recv(1024, { timeout: 2 ** 31 }))), "timer");
  });
  client.close(); // ends that recv (EBADF), and with it its timer
  const [client2, peer2] = await pair();
  using _p2 = peer2;
  await t.step("the socket's timeout of 2 ** 31", async () => {
    client2.timeout = 2 ** 31;
    assert.equal(await racesTimer(() => keep(client2.recv())), "timer");
  });
  client2.close();
  const [client3, peer3] = await pair();
  using _p3 = peer3;
  await t.step("recvLine({ timeout: 2 ** 32 })", async () => {
    assert.equal(await racesTimer(() => keep(client3.recvLine({ timeout: 2 ** 32 }))), "timer");
  });
  client3.close();
  await t.step("accept() with a timeout of 2 ** 31", async () => {
    const server = listen(["127.0.0.1", 0], { timeout: 2 ** 31 });
    assert.equal(await racesTimer(() => keep(server.accept())), "timer");
    server.close();
  });
  await Promise.all(pending);
});

Deno.test("a call's timeout option overrides the socket's timeout", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  client.timeout = 5;
  const late = client.recv(100, { timeout: 60_000 });
  assert.equal(await racesTimer(() => late), "timer", "the socket's timeout applied");
  await peer.sendall(enc.encode("in time"));
  assert.equal(text(await late), "in time");
  client.timeout = undefined;
  await assert.rejects(client.recv(100, { timeout: 10 }), SocketTimeout);
  await assert.rejects(client.recv(100, { timeout: -1 }), RangeError);
  await assert.rejects(client.sendall(enc.encode("x"), { timeout: NaN }), RangeError);
  await assert.rejects(client.recv(100, 7 as never), TypeError);
});

Deno.test("an aborted signal interrupts recv() and sendall(); received bytes are kept", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  const ctl = new AbortController();
  const recv = client.recv(100, { signal: ctl.signal });
  ctl.abort(new Error("stop reading"));
  assert.equal(await racesTimer(() => recv), "Error: stop reading");
  await assert.rejects(client.recv(100, { signal: ctl.signal }), /stop reading/);
  await peer.sendall(enc.encode("kept"));
  assert.equal(text(await client.recv(100)), "kept");
  const ctl2 = new AbortController();
  const big = new Uint8Array(32 * 1024 * 1024);
  const send = client.sendall(big, { signal: ctl2.signal });
  await sleep(0);
  ctl2.abort(new Error("stop writing"));
  await assert.rejects(send, /stop writing/);
});

Deno.test("mod.ts exports this module as the namespace socket", async () => {
  const mod = await import("../mod.ts");
  assert.equal(mod.socket.gethostbyname, (await import("../socket.ts")).gethostbyname);
  assert.equal(mod.socket.createConnection, createConnection);
  assert.equal(mod.socket.SocketTimeout, SocketTimeout);
});
