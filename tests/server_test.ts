import "./_deadline.ts";
import assert from "node:assert/strict";
import { Greenlet, GreenletExit, joinAll, spawn } from "../greenlet.ts";
import { getHub, idle, sleep } from "../hub.ts";
import { Event } from "../event.ts";
import { Pool } from "../pool.ts";
import { StreamServer } from "../server.ts";
import { createConnection, listen, type Socket, SocketError } from "../socket.ts";
import { StreamServer as FromMod } from "../mod.ts";
import { captureReports } from "./_helpers.ts";
import { hasOpenssl, selfSignedCert } from "./_tls.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function echo(sock: Socket): Promise<void> {
  for (let data; (data = await sock.recv()).length > 0;) await sock.sendall(data);
}

async function roundTrip(address: [string, number], message: string): Promise<string> {
  using sock = await createConnection(address);
  await sock.sendall(enc.encode(message));
  return dec.decode(await sock.recv());
}

Deno.test("StreamServer handles each connection in its own greenlet", async () => {
  assert.equal(FromMod, StreamServer);
  const gate = new Event();
  const allIn = new Event();
  let running = 0;
  let most = 0;
  await using server = new StreamServer(["127.0.0.1", 0], async (sock, address) => {
    assert.deepEqual(address, sock.getpeername());
    running++;
    most = Math.max(most, running);
    if (running === 3) allIn.set();
    await gate.wait();
    await echo(sock);
    running--;
  });
  server.start();
  assert.equal(server.started, true);
  const clients = ["a", "b", "c"].map((m) => spawn(roundTrip, server.address, m));
  await allIn.wait();
  gate.set();
  await joinAll(clients, { raiseError: true });
  assert.deepEqual(clients.map((c) => c.value), ["a", "b", "c"]);
  assert.equal(most, 3);
});

Deno.test("the connection is closed when the handler returns", async () => {
  await using server = new StreamServer(["127.0.0.1", 0], async (sock) => {
    await sock.sendall(enc.encode("bye"));
  });
  server.start();
  using sock = await createConnection(server.address);
  assert.equal(dec.decode(await sock.recv()), "bye");
  assert.equal((await sock.recv()).length, 0);
});

Deno.test("a handler that throws is reported by the hub and the server keeps serving", async () => {
  let calls = 0;
  await using server = new StreamServer(["127.0.0.1", 0], async (sock) => {
    if (++calls === 1) throw new RangeError("handler bug");
    await echo(sock);
  });
  server.start();
  const report = await captureReports(async () => {
    using first = await createConnection(server.address);
    assert.equal((await first.recv()).length, 0, "the failed handler's connection was not closed");
  });
  assert.match(report, /RangeError: handler bug/);
  assert.match(report, /failed with RangeError/);
  assert.match(report, /handle\(<Socket 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ closed>, \[/);
  assert.equal(await roundTrip(server.address, "still here"), "still here");
});

Deno.test("spawn: a number caps how many handlers run at once", async () => {
  const gate = new Event();
  const twoIn = new Event();
  let running = 0;
  let most = 0;
  await using server = new StreamServer(["127.0.0.1", 0], async (sock) => {
    running++;
    most = Math.max(most, running);
    if (running === 2) twoIn.set();
    await gate.wait();
    await echo(sock);
    running--;
  }, { spawn: 2 });
  server.start();
  const clients = ["a", "b", "c", "d"].map((m) => spawn(roundTrip, server.address, m));
  await twoIn.wait();
  await sleep(20); // give a third handler every chance to start: it must not
  assert.equal(running, 2);
  gate.set();
  await joinAll(clients, { raiseError: true });
  assert.deepEqual(clients.map((c) => c.value), ["a", "b", "c", "d"]);
  assert.equal(most, 2);
});

Deno.test("spawn: a pool runs the handlers", async () => {
  const pool = new Pool(2);
  let spawned = 0;
  const counting = {
    spawn: (
      fn: (s: Socket, a: [string, number]) => Promise<unknown>,
      s: Socket,
      a: [string, number],
    ) => {
      spawned++;
      return pool.spawn(fn, s, a);
    },
  };
  await using server = new StreamServer(["127.0.0.1", 0], echo, { spawn: counting });
  server.start();
  const clients = ["x", "y", "z"].map((m) => spawn(roundTrip, server.address, m));
  await joinAll(clients, { raiseError: true });
  assert.deepEqual(clients.map((c) => c.value), ["x", "y", "z"]);
  assert.equal(spawned, 3);
});

Deno.test("stop() lets handlers finish for its timeout, then kills the rest and closes sockets", async () => {
  const finished: string[] = [];
  const started = new Event();
  let handlers = 0;
  const server = new StreamServer(["127.0.0.1", 0], async (sock) => {
    const kind = dec.decode(await sock.recv());
    if (++handlers === 2) started.set();
    try {
      if (kind === "quick") await sleep(10);
      else await sock.recv(); // never gets anything
      finished.push(kind);
    } catch (error) {
      finished.push(`${kind} ${(error as Error).name}`);
      throw error;
    }
  });
  server.start();
  using quick = await createConnection(server.address);
  using stuck = await createConnection(server.address);
  await quick.sendall(enc.encode("quick"));
  await stuck.sendall(enc.encode("stuck"));
  await started.wait();
  await server.stop({ timeout: 50 });
  assert.deepEqual(finished.sort(), ["quick", "stuck GreenletExit"]);
  assert.equal(server.closed, true);
  assert.equal(server.connectionCount, 0);
  assert.equal((await quick.recv()).length, 0);
  assert.equal((await stuck.recv()).length, 0);
  await assert.rejects(createConnection(server.address), SocketError); // no longer listening
  await server.stop(); // harmless
});

Deno.test("serveForever() returns once stop() is called; killing it stops the server", async () => {
  const server = new StreamServer(["127.0.0.1", 0], echo);
  const serving = spawn(() => server.serveForever());
  await sleep(0);
  assert.equal(await roundTrip(server.address, "hi"), "hi");
  await server.stop();
  await serving.join();
  assert.equal(serving.successful(), true);

  const other = new StreamServer(["127.0.0.1", 0], echo);
  const g = spawn(() => other.serveForever());
  await sleep(0);
  await g.kill();
  assert.ok(g.value instanceof GreenletExit);
  assert.equal(other.closed, true);
});

Deno.test("address gives the bound port; binding a used port throws EADDRINUSE", async () => {
  await using server = new StreamServer(["127.0.0.1", 0], echo);
  assert.deepEqual(server.address, ["127.0.0.1", 0]);
  server.start();
  const [host, port] = server.address;
  assert.equal(host, "127.0.0.1");
  assert.ok(port > 0);
  assert.equal(String(server), `<StreamServer 127.0.0.1:${port}>`);
  const clash = new StreamServer(["127.0.0.1", port], echo);
  assert.throws(() => clash.start(), (e: SocketError) => e.code === "EADDRINUSE");
  await clash.stop();
});

Deno.test("StreamServer accepts a listening socket or a Deno.Listener", async () => {
  const listening = listen(["127.0.0.1", 0]);
  await using a = new StreamServer(listening, echo);
  a.start();
  assert.equal(await roundTrip(a.address, "from listen()"), "from listen()");
  await using b = new StreamServer(Deno.listen({ hostname: "127.0.0.1", port: 0 }), echo);
  b.start();
  assert.equal(await roundTrip(b.address, "from Deno.listen"), "from Deno.listen");
});

Deno.test("await using stops the server", async () => {
  let address: [string, number];
  {
    await using server = new StreamServer(["127.0.0.1", 0], echo);
    server.start();
    address = server.address;
  }
  await assert.rejects(createConnection(address), (e: SocketError) => e.code === "ECONNREFUSED");
});

Deno.test("StreamServer rejects bad arguments", () => {
  assert.throws(() => new StreamServer(["127.0.0.1", 0], "echo" as never), TypeError);
  assert.throws(() => new StreamServer(["127.0.0.1", 70000], echo), {
    name: "RangeError",
    message: "'port' must be an integer from 0 to 65535: current value is 70000",
  });
  assert.throws(() => new StreamServer([1 as unknown as string, 0], echo), TypeError);
  assert.throws(() => new StreamServer(["127.0.0.1", 0], echo, { spawn: 0 }), RangeError);
  assert.throws(() => new StreamServer(["127.0.0.1", 0], echo, { spawn: {} as never }), TypeError);
  assert.throws(() => new StreamServer("127.0.0.1:80" as never, echo), TypeError);
});

Deno.test({
  name: "StreamServer serves TLS",
  ignore: !await hasOpenssl(),
  async fn() {
    const { cert, key } = await selfSignedCert();
    await using server = new StreamServer(["127.0.0.1", 0], echo, { tls: { cert, key } });
    server.start();
    using sock = await createConnection(server.address, { tls: { caCerts: [cert] } });
    await sock.sendall(enc.encode("secret"));
    assert.equal(dec.decode(await sock.recv()), "secret");
  },
});

/**
 * A `Deno.Listener` on 127.0.0.1 that tells when it hands a connection to the server:
 * `nextTaken()` resolves once the next connection has been accepted from the kernel.
 */
function watchedListener(
  failFirst?: Error,
): { listener: Deno.Listener; nextTaken(): Promise<void> } {
  const inner = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let waiting: (() => void)[] = [];
  let failure = failFirst;
  const listener = {
    get addr() {
      return inner.addr;
    },
    async accept() {
      if (failure !== undefined) {
        const error = failure;
        failure = undefined;
        throw error;
      }
      const conn = await inner.accept();
      const ws = waiting;
      waiting = [];
      for (const w of ws) w();
      return conn;
    },
    close: () => inner.close(),
  } as unknown as Deno.Listener;
  return { listener, nextTaken: () => new Promise<void>((resolve) => waiting.push(resolve)) };
}

/** A handler that reads one message, records it, and sends it back. */
function recorder(served: string[]) {
  return async (sock: Socket): Promise<void> => {
    const message = dec.decode(await sock.recv());
    served.push(message);
    await sock.sendall(enc.encode(message));
  };
}

Deno.test("stopAccepting() pauses without closing the listener; a connection made meanwhile is handled after startAccepting()", async () => {
  const { listener, nextTaken } = watchedListener();
  const served: string[] = [];
  await using server = new StreamServer(listener, recorder(served));
  server.startAccepting(); // not started: nothing to resume
  assert.equal(server.accepting, false);
  server.start();
  assert.equal(server.accepting, true);
  assert.equal(await roundTrip(server.address, "before"), "before");

  server.stopAccepting();
  server.stopAccepting(); // harmless
  assert.equal(server.accepting, false);
  assert.equal(server.started, true);
  const taken = nextTaken();
  using paused = await createConnection(server.address); // the listener is still open
  await paused.sendall(enc.encode("while paused"));
  await taken; // the connection has reached the server process...
  await idle(); // ...and every greenlet that could have been started has run
  assert.deepEqual(served, ["before"], "a connection was handled while paused");
  assert.equal(server.connectionCount, 0);

  server.startAccepting();
  assert.equal(server.accepting, true);
  assert.equal(dec.decode(await paused.recv()), "while paused");
  assert.deepEqual(served, ["before", "while paused"]);
  assert.equal(await roundTrip(server.address, "after"), "after");
});

Deno.test("stopAccepting() while the spawn limit is reached; startAccepting() on a stopped server is EBADF", async () => {
  const gate = new Event();
  const inHandler = new Event();
  const served: string[] = [];
  const handle = recorder(served);
  const server = new StreamServer(["127.0.0.1", 0], async (sock) => {
    inHandler.set();
    await gate.wait();
    await handle(sock);
  }, { spawn: 1 });
  server.start();
  const first = spawn(roundTrip, server.address, "first");
  await inHandler.wait(); // the acceptor now waits for a free slot
  server.stopAccepting();
  gate.set();
  await first.join();
  assert.equal(first.value, "first");
  server.startAccepting();
  assert.equal(await roundTrip(server.address, "second"), "second");
  assert.deepEqual(served, ["first", "second"]);
  await server.stop();
  assert.equal(server.accepting, false);
  assert.throws(() => server.startAccepting(), (e: SocketError) => e.code === "EBADF");
  server.stopAccepting(); // harmless
});

Deno.test("backlog and tls only apply to an address: with a listening socket they are TypeErrors", async () => {
  using listening = listen(["127.0.0.1", 0]);
  assert.throws(() => new StreamServer(listening, echo, { backlog: 5 }), {
    name: "TypeError",
    message: "'backlog' must be undefined when 'listener' is a listening socket (it only " +
      "applies when the server binds an address): current value is 5",
  });
  assert.throws(
    () => new StreamServer(listening, echo, { tls: { cert: "c", key: "k" } }),
    (e: Error) => e instanceof TypeError && e.message.startsWith("'tls' must be undefined"),
  );
  const raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    assert.throws(() => new StreamServer(raw, echo, { backlog: 5 }), TypeError);
  } finally {
    raw.close(); // not taken over by a server that failed to construct
  }
  assert.throws(() => new StreamServer(["127.0.0.1", 0], echo, { backlog: 0 }), {
    name: "RangeError",
    message: "'backlog' must be a positive integer: current value is 0",
  });
  await using server = new StreamServer(["127.0.0.1", 0], echo, { backlog: 5 });
  server.start();
  assert.equal(await roundTrip(server.address, "backlog"), "backlog");
});

type Fn = (s: Socket, a: [string, number]) => Promise<unknown>;

Deno.test("a handler that cannot be started is reported, its connection closed, and the server pauses briefly and goes on", async (t) => {
  const cases: [string, (fn: Fn, s: Socket, a: [string, number]) => unknown, RegExp][] = [
    ["a spawner that throws", () => {
      throw new RangeError("spawner broke");
    }, /RangeError: spawner broke/],
    ["a spawner that rejects", () => Promise.reject(new RangeError("no room")), /no room/],
    [
      "a spawner that returns something that is not a greenlet",
      () => "nope",
      /'spawn' must return a Greenlet or a promise of one: current value is "nope"/,
    ],
  ];
  for (const [name, failing, pattern] of cases) {
    await t.step(name, async () => {
      let calls = 0;
      const spawner = {
        spawn: (fn: Fn, s: Socket, a: [string, number]) =>
          ++calls === 1 ? failing(fn, s, a) as Greenlet<unknown> : spawn(fn, s, a),
      };
      await using server = new StreamServer(["127.0.0.1", 0], echo, { spawn: spawner });
      server.start();
      const pausedWhenReported: boolean[] = [];
      const hub = getHub();
      const saved = hub.exceptionStream;
      let report = "";
      hub.exceptionStream = {
        write: (text: string) => {
          report += text;
          pausedWhenReported.push(server.accepting === false);
        },
      };
      try {
        using first = await createConnection(server.address);
        assert.equal((await first.recv()).length, 0, "the connection was not closed");
      } finally {
        hub.exceptionStream = saved;
      }
      assert.match(report, pattern);
      assert.match(
        report,
        /<StreamServer 127\.0\.0\.1:\d+> \(starting the handler for 127\.0\.0\.1:\d+\) failed with/,
      );
      assert.deepEqual(pausedWhenReported, [true]);
      assert.equal(server.started, true);
      // It resumes by itself (no startAccepting()) and serves the next connection.
      assert.equal(await roundTrip(server.address, "still here"), "still here");
      assert.equal(server.accepting, true);
    });
  }
  await t.step("a full pool that rejects with PoolFull", async () => {
    const pool = new Pool(1);
    const gate = new Event();
    const inHandler = new Event();
    const spawner = {
      spawn: async (fn: Fn, s: Socket, a: [string, number]) => {
        const g = new Greenlet(fn, s, a);
        await pool.start(g, { blocking: false });
        return g;
      },
    };
    await using server = new StreamServer(["127.0.0.1", 0], async (sock) => {
      inHandler.set();
      await gate.wait();
      await echo(sock);
    }, { spawn: spawner });
    server.start();
    const held = spawn(roundTrip, server.address, "held");
    await inHandler.wait(); // the pool is full
    const report = await captureReports(async () => {
      using second = await createConnection(server.address);
      assert.equal((await second.recv()).length, 0, "the connection was not closed");
    });
    assert.match(report, /PoolFull: The pool is full/);
    assert.match(report, /starting the handler for 127\.0\.0\.1:\d+\) failed with PoolFull/);
    gate.set();
    await held.join();
    assert.equal(held.value, "held");
    await pool.join();
    assert.equal(await roundTrip(server.address, "third"), "third");
  });
});

Deno.test("a failing accept() (EMFILE and the like) is reported; the server pauses briefly and goes on", async () => {
  const emfile = Object.assign(new Error("Too many open files"), { code: "EMFILE" });
  const { listener } = watchedListener(emfile);
  await using server = new StreamServer(listener, echo);
  const pausedWhenReported: boolean[] = [];
  const report = await captureReports(async () => {
    const hub = getHub();
    const capture = hub.exceptionStream!;
    hub.exceptionStream = {
      write: (text: string) => {
        pausedWhenReported.push(server.accepting === false);
        capture.write(text);
      },
    };
    server.start();
    assert.equal(await roundTrip(server.address, "served"), "served");
  });
  assert.match(report, /accept: Too many open files/);
  assert.match(report, /<StreamServer 127\.0\.0\.1:\d+> failed with SocketError/);
  assert.deepEqual(pausedWhenReported, [true]);
  assert.equal(server.accepting, true);
});

Deno.test("after stop() resolves the port is free: the same address serves again at once", async () => {
  for (let i = 0; i < 5; i++) {
    const server = new StreamServer(["127.0.0.1", 0], (sock) => sock.close());
    await server.start();
    const [host, port] = server.address;
    const conn = await Deno.connect({ hostname: host, port }); // one connection served
    await conn.read(new Uint8Array(1));
    conn.close();
    await server.stop();
    const again = new StreamServer([host, port], (sock) => sock.close());
    await again.start(); // EADDRINUSE if the port were still held
    await again.stop();
  }
});
