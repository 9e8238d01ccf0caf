import assert from "node:assert/strict";
import { GreenletExit, joinAll, spawn } from "../greenlet.ts";
import { sleep } from "../hub.ts";
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
