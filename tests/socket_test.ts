import assert from "node:assert/strict";
import { getCurrent, GreenletExit, joinAll, spawn } from "../greenlet.ts";
import { sleep } from "../hub.ts";
import { Event } from "../event.ts";
import { Timeout, withTimeout } from "../timeout.ts";
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

Deno.test("a second greenlet receiving on the same socket is rejected with EBUSY", async () => {
  const [client, peer] = await pair();
  using _c = client;
  using _p = peer;
  const first = spawn(() => client.recv());
  await sleep(0);
  await assert.rejects(client.recv(), (e: SocketError) => e.code === "EBUSY");
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

Deno.test("mod.ts exports this module as the namespace socket", async () => {
  const mod = await import("../mod.ts");
  assert.equal(mod.socket.gethostbyname, (await import("../socket.ts")).gethostbyname);
  assert.equal(mod.socket.createConnection, createConnection);
  assert.equal(mod.socket.SocketTimeout, SocketTimeout);
});
