import "./_deadline.ts";
import assert from "node:assert/strict";
import net from "node:net";
import dns from "node:dns";
import ky from "ky";
import { currentSignal, GreenletExit, spawn } from "../greenlet.ts";
import { getHub, sleep } from "../hub.ts";
import { Timeout, withTimeout } from "../timeout.ts";
import { Resolver } from "../resolver.ts";
import { Socket, SocketError } from "../socket.ts";
import { Event } from "../event.ts";
import {
  getOriginal,
  isPatched,
  patchAll,
  patchDns,
  patchFetch,
  patchSocket,
  patchSubprocess,
  unpatchAll,
} from "../monkey.ts";
import * as unaware from "./_unaware.ts";
import { startHttpServer } from "./_http_server.ts";
import { startDnsServer } from "./_dns_server.ts";
import { captureReports } from "./_helpers.ts";
import { hasOpenssl, selfSignedCert } from "./_tls.ts";

/** Patches everything for the duration of one test; `using` restores the globals. */
function patched(options?: Parameters<typeof patchAll>[0]): Disposable {
  patchAll(options);
  return { [Symbol.dispose]: unpatchAll };
}

/** A TCP server that accepts connections and never writes; reports when they close. */
function silentTcpServer(): {
  port: number;
  accepted: () => Promise<Deno.Conn>;
  closed: (conn: Deno.Conn) => Promise<void>;
  close: () => void;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  return {
    port: listener.addr.port,
    accepted: async () => {
      const conn = await listener.accept();
      conns.push(conn);
      return conn;
    },
    // Reads until end of stream: the client closed its side.
    closed: async (conn) => {
      const buf = new Uint8Array(1024);
      try {
        while (await conn.read(buf) !== null) { /* discard */ }
      } catch {
        // Reset: closed too.
      }
    },
    close: () => {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Already closed.
        }
      }
    },
  };
}

const GLOBALS: [object, string][] = [
  [globalThis, "fetch"],
  [Deno, "connect"],
  [Deno, "connectTls"],
  [Deno, "listen"],
  [Deno, "listenTls"],
  [Deno, "startTls"],
  [Deno, "resolveDns"],
  [Deno, "Command"],
  [net.Socket.prototype, "connect"],
  [net.Socket.prototype, "write"],
  [net.Socket.prototype, "push"],
  [dns, "lookup"],
  [Response.prototype, "text"],
  [Response.prototype, "json"],
  [Response.prototype, "clone"],
];

Deno.test("unpatchAll() restores identity of every patched global", () => {
  const before = GLOBALS.map(([t, n]) => (t as Record<string, unknown>)[n]);
  for (const [t, n] of GLOBALS) {
    assert.equal(getOriginal(t as Record<string, unknown>, n), (t as Record<string, unknown>)[n]);
  }
  assert.equal(Deno.connect, getOriginal(Deno, "connect"));
  patchAll();
  try {
    GLOBALS.forEach(([t, n], i) => {
      assert.ok(isPatched(t, n), n);
      assert.notEqual((t as Record<string, unknown>)[n], before[i], n);
      assert.equal(getOriginal(t as Record<string, unknown>, n), before[i], n);
    });
  } finally {
    unpatchAll();
  }
  GLOBALS.forEach(([t, n], i) => {
    assert.ok(!isPatched(t, n), n);
    assert.equal((t as Record<string, unknown>)[n], before[i], n);
  });
  assert.equal(Deno.connect, getOriginal(Deno, "connect"));
});

Deno.test("unpatchAll() restores the Response.prototype.body accessor", () => {
  const before = Object.getOwnPropertyDescriptor(Response.prototype, "body")!;
  patchFetch();
  try {
    assert.ok(isPatched(Response.prototype, "body"));
    const now = Object.getOwnPropertyDescriptor(Response.prototype, "body")!;
    assert.notEqual(now.get, before.get);
    assert.equal(now.enumerable, before.enumerable);
    assert.equal(getOriginal(Response.prototype, "body"), before.get);
  } finally {
    unpatchAll();
  }
  assert.deepEqual(Object.getOwnPropertyDescriptor(Response.prototype, "body"), before);
});

Deno.test("patching twice is harmless; different options warn once", () => {
  const warnings: unknown[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
  try {
    patchAll();
    const fetch1 = globalThis.fetch;
    patchAll();
    patchFetch();
    assert.equal(globalThis.fetch, fetch1);
    assert.deepEqual(warnings, []);
    patchAll({ fetch: false });
    patchSubprocess({ killGrace: 5 });
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]), /different options/);
    unpatchAll();
    assert.equal(globalThis.fetch, getOriginal(globalThis, "fetch"));
    assert.ok(!isPatched(globalThis));
  } finally {
    console.warn = warn;
    unpatchAll();
  }
});

Deno.test("patchAll() and patchSubprocess() reject bad options with TypeError/RangeError", () => {
  assert.throws(() => patchAll(null as never), TypeError);
  assert.throws(() => patchAll({ fetch: "yes" as never }), /'fetch' must be a boolean/);
  assert.throws(() => patchSubprocess({ killGrace: -1 }), RangeError);
  assert.throws(() => patchSubprocess({ killGrace: "1" as never }), TypeError);
  assert.throws(() => isPatched(null as never), /'target' must be an object/);
  assert.throws(() => getOriginal(Deno, 7 as never), /'name' must be a string/);
  assert.ok(!isPatched(Deno));
});

Deno.test("outside any greenlet the patched functions behave like the originals", async (t) => {
  const server = startHttpServer();
  const refused = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refusedPort = refused.addr.port;
  refused.close();
  try {
    await t.step("fetch: same Response, same text", async () => {
      using _ = patched();
      const res = await fetch(`${server.origin}/fast`);
      assert.ok(res instanceof Response);
      assert.equal(await res.text(), "fast");
      assert.equal(await unaware.getText(`${server.origin}/fast`), "fast");
    });
    await t.step("fetch: same error class for a refused connection", async () => {
      const original = await fetch(`http://127.0.0.1:${refusedPort}/`).catch((e) => e);
      using _ = patched();
      const now = await fetch(`http://127.0.0.1:${refusedPort}/`).catch((e) => e);
      assert.equal(now.constructor, original.constructor);
      assert.equal(now.name, original.name);
    });
    await t.step("Deno.connect: same error class, same conn class", async () => {
      using _ = patched();
      await assert.rejects(
        Deno.connect({ hostname: "127.0.0.1", port: refusedPort }),
        Deno.errors.ConnectionRefused,
      );
      const port = Number(new URL(server.origin).port);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const original = await getOriginal(Deno, "connect")({ hostname: "127.0.0.1", port });
      assert.equal(Object.getPrototypeOf(conn), Object.getPrototypeOf(original));
      assert.deepEqual(Object.keys(conn), Object.keys(original));
      conn.close();
      assert.throws(() => conn.close(), Deno.errors.BadResource);
      original.close();
    });
    await t.step("Deno.resolveDns: same answer, same NotFound", async () => {
      await using dnsServer = await startDnsServer({
        records: { "svc.test": { A: ["10.0.0.7"] } },
        nxdomain: ["gone.test"],
      });
      const nameServer = dnsServer.nameserver;
      using _ = patched();
      assert.deepEqual(await Deno.resolveDns("svc.test", "A", { nameServer }), ["10.0.0.7"]);
      await assert.rejects(
        Deno.resolveDns("gone.test", "A", { nameServer }),
        Deno.errors.NotFound,
      );
    });
    await t.step("Deno.Command: same output, instanceof the original class", async () => {
      const Original = getOriginal(Deno, "Command");
      using _ = patched();
      const cmd = new Deno.Command("echo", { args: ["hi"] });
      assert.ok(cmd instanceof Original);
      const out = await cmd.output();
      assert.equal(out.code, 0);
      assert.equal(new TextDecoder().decode(out.stdout), "hi\n");
    });
  } finally {
    await server.close();
  }
});

Deno.test("inside a greenlet the patched functions keep the originals' results and errors", async () => {
  const server = startHttpServer();
  const refused = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refusedPort = refused.addr.port;
  refused.close();
  try {
    using _ = patched();
    const g = spawn(async () => {
      const res = await fetch(`${server.origin}/fast`);
      assert.ok(res instanceof Response);
      assert.equal(Object.getPrototypeOf(res), Response.prototype);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.clone().json().catch((e) => e.name), "SyntaxError");
      assert.equal(await res.text(), "fast");
      await assert.rejects(
        Deno.connect({ hostname: "127.0.0.1", port: refusedPort }),
        Deno.errors.ConnectionRefused,
      );
      await assert.rejects(fetch(`http://127.0.0.1:${refusedPort}/`), TypeError);
      const out = await new Deno.Command("echo", { args: ["hi"] }).output();
      assert.equal(new TextDecoder().decode(out.stdout), "hi\n");
    });
    await g.get();
  } finally {
    await server.close();
  }
});

Deno.test("mod.ts exports the monkey namespace", async () => {
  const mod = await import("../mod.ts");
  assert.equal(mod.monkey.patchAll, patchAll);
  assert.equal(mod.monkey.unpatchAll, unpatchAll);
});

Deno.test("withTimeout(100) cuts off an unaware fetch and its connection", async (t) => {
  const server = startHttpServer();
  try {
    await t.step("patched: rejects with that Timeout; the server sees the close", async () => {
      using _ = patched();
      const ran = unaware.finallyRan.getText;
      const closed = server.nextClose();
      let timeout: unknown;
      const outcome = await withTimeout(100, () => {
        const sig = currentSignal();
        sig.addEventListener("abort", () => timeout = sig.reason);
        return unaware.getText(`${server.origin}/silent`);
      }).catch((e) => e);
      assert.ok(outcome instanceof Timeout);
      assert.equal(outcome, timeout);
      assert.equal(unaware.finallyRan.getText, ran + 1);
      await closed;
      assert.equal(server.open, 0);
    });
    await t.step("patched, with npm:ky (calls fetch internally)", async () => {
      using _ = patched();
      const closed = server.nextClose();
      // ky retries failed requests (a Timeout is an Error to it): with retries on, the retry
      // would be a new request after the deadline. See the kill test below for retries on.
      const outcome = await withTimeout(
        100,
        () => ky.get(`${server.origin}/silent`, { retry: 0 }).text(),
      ).catch((e) => e);
      assert.ok(outcome instanceof Timeout, String(outcome));
      await closed;
      assert.equal(server.open, 0);
    });
    await t.step("patched: a read of the body is cut off too", async () => {
      using _ = patched();
      const closed = server.nextClose();
      const outcome = await withTimeout(100, () => unaware.getText(`${server.origin}/stall`))
        .catch((e) => e);
      assert.ok(outcome instanceof Timeout, String(outcome));
      await closed;
    });
    await t.step("unpatched: settles at the deadline; the request runs on unobserved", async () => {
      const arrived = server.nextRequest("/silent");
      let inner: Promise<string> | undefined;
      const result = withTimeout(100, () => inner = unaware.getText(`${server.origin}/silent`));
      await arrived;
      const outcome = await result.catch((e) => e); // never the late answer
      assert.ok(outcome instanceof Timeout, String(outcome));
      assert.equal(server.open, 1); // nothing could cut the request off
      server.release(); // it gets its late answer, which nobody sees
      assert.equal(await inner, "late");
    });
  } finally {
    await server.close();
  }
});

Deno.test("withTimeout(100) cuts off an unaware Deno.connect read", async (t) => {
  await t.step("patched: rejects with that Timeout; the server sees the close", async () => {
    const server = silentTcpServer();
    try {
      using _ = patched();
      const ran = unaware.finallyRan.exchange;
      const result = withTimeout(100, () => unaware.exchange(server.port, "hello"));
      const peer = await server.accepted();
      const outcome = await result.catch((e) => e);
      assert.ok(outcome instanceof Timeout, String(outcome));
      assert.equal(unaware.finallyRan.exchange, ran + 1);
      await server.closed(peer);
    } finally {
      server.close();
    }
  });
  await t.step("unpatched: settles at the deadline; the read goes on unobserved", async () => {
    const server = silentTcpServer();
    try {
      let inner: Promise<string> | undefined;
      const result = withTimeout(100, () => inner = unaware.exchange(server.port, "hello"));
      const peer = await server.accepted();
      const outcome = await result.catch((e) => e);
      assert.ok(outcome instanceof Timeout, String(outcome));
      await peer.write(new TextEncoder().encode("late")); // still connected, still reading
      peer.close();
      assert.equal(await inner, "late");
    } finally {
      server.close();
    }
  });
});

Deno.test("kill() of a greenlet blocked in unaware code returns after its finally ran", async (t) => {
  await t.step("Deno.connect read: the conn is closed, close() stays harmless", async () => {
    const server = silentTcpServer();
    try {
      using _ = patched();
      const ran = unaware.finallyRan.exchange;
      const g = spawn(unaware.exchange, server.port, "hello");
      const peer = await server.accepted();
      await g.kill();
      assert.ok(g.dead);
      assert.equal(g.value?.constructor.name, "GreenletExit");
      assert.equal(unaware.finallyRan.exchange, ran + 1);
      await server.closed(peer);
    } finally {
      server.close();
    }
  });
  await t.step("Deno.connect read: an abandoned conn is closed for the unaware code", async () => {
    const server = silentTcpServer();
    try {
      using _ = patched();
      let conn: Deno.Conn | undefined;
      const g = spawn(async () => {
        conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        await conn.read(new Uint8Array(16)); // no finally: the conn is simply abandoned
      });
      const peer = await server.accepted();
      await g.kill();
      await server.closed(peer); // closed by the interruption, not by the code
      await assert.rejects(conn!.read(new Uint8Array(16)), Deno.errors.BadResource);
      conn!.close(); // harmless
    } finally {
      server.close();
    }
  });
  await t.step("socket.Socket over a patched conn: an interrupted recv closes it", async () => {
    const server = silentTcpServer();
    try {
      using _ = patched();
      let sock: Socket | undefined;
      const receiving = new Event();
      const g = spawn(async () => {
        sock = new Socket(await Deno.connect({ hostname: "127.0.0.1", port: server.port }));
        receiving.set(); // wakes the test after this greenlet is blocked in recv()
        await sock.recv();
      });
      const peer = await server.accepted();
      await receiving.wait();
      await g.kill();
      assert.equal(g.value?.constructor.name, "GreenletExit");
      await server.closed(peer);
      await assert.rejects(sock!.recv(), SocketError);
      sock!.close();
    } finally {
      server.close();
    }
  });
  await t.step("fetch: a read of res.body's reader is interrupted once", async () => {
    const server = startHttpServer();
    try {
      using _ = patched();
      const closed = server.nextClose();
      const reading = new Event();
      let caught: unknown;
      let after = false;
      const g = spawn(async () => {
        const res = await fetch(`${server.origin}/stall`);
        const reader = res.body!.getReader();
        try {
          await reader.read(); // "part"
          reading.set();
          await reader.read(); // the rest never comes
        } catch (error) {
          caught = error;
          await sleep(1); // not interrupted again
          after = true;
          throw error;
        }
      });
      await reading.wait();
      await g.kill();
      assert.equal((caught as Error)?.name, "GreenletExit");
      assert.equal(after, true);
      await closed;
    } finally {
      await server.close();
    }
  });
  await t.step("killing one greenlet leaves another's fetch alone", async () => {
    const server = startHttpServer();
    try {
      using _ = patched();
      const arrived = server.nextRequest("/silent");
      const victim = spawn(unaware.getText, `${server.origin}/silent`);
      const bystander = spawn(async () => {
        await server.nextRequest("/silent"); // the victim's request is in
        return await unaware.getText(`${server.origin}/fast`);
      });
      await arrived;
      await victim.kill();
      assert.equal(await bystander.get(), "fast");
    } finally {
      await server.close();
    }
  });
  await t.step("fetch: aborted, connection released", async () => {
    const server = startHttpServer();
    try {
      using _ = patched();
      const ran = unaware.finallyRan.getText;
      const arrived = server.nextRequest("/silent");
      const closed = server.nextClose();
      const g = spawn(unaware.getText, `${server.origin}/silent`);
      await arrived;
      await g.kill();
      assert.ok(g.dead);
      assert.equal(unaware.finallyRan.getText, ran + 1);
      await closed;
      assert.equal(server.open, 0);
    } finally {
      await server.close();
    }
  });
  await t.step("npm:ky with its default retries: every retry fails at once", async () => {
    const server = startHttpServer();
    try {
      using _ = patched();
      const arrived = server.nextRequest("/silent");
      const closed = server.nextClose();
      const g = spawn(() => ky.get(`${server.origin}/silent`).text());
      await arrived;
      await g.kill(); // the greenlet's signal stays aborted, so ky's retries cannot start
      assert.ok(g.dead);
      assert.equal(g.value?.constructor.name, "GreenletExit");
      await closed;
      assert.equal(server.accepted, 1);
    } finally {
      await server.close();
    }
  });
  await t.step("fetch whose body is never read: the kill still releases it", async () => {
    const server = startHttpServer();
    try {
      using _ = patched();
      const closed = server.nextClose();
      const fetched = new Event();
      const g = spawn(async () => {
        const res = await fetch(`${server.origin}/stall`); // headers and part of the body
        fetched.set();
        await new Event().wait(); // the body is never read
        return res;
      });
      await fetched.wait();
      await g.kill();
      await closed;
      assert.equal(server.open, 0);
    } finally {
      await server.close();
    }
  });
  await t.step("the kill is delivered once: a blocking call in finally runs", async () => {
    const server = startHttpServer();
    try {
      using _ = patched();
      const arrived = server.nextRequest("/silent");
      let cleanedUp = false;
      const g = spawn(async () => {
        try {
          await fetch(`${server.origin}/silent`);
        } finally {
          await sleep(1); // would throw GreenletExit again if it were still pending
          cleanedUp = true;
        }
      });
      await arrived;
      await g.kill();
      assert.equal(cleanedUp, true);
      assert.equal(g.exception, undefined);
    } finally {
      await server.close();
    }
  });
  await t.step("a caught Timeout is not thrown again", async () => {
    const server = startHttpServer();
    try {
      using _ = patched();
      const value = await withTimeout(100, async () => {
        const caught = await fetch(`${server.origin}/silent`).catch((e) => e);
        assert.ok(caught instanceof Timeout);
        await sleep(1);
        return "went on";
      });
      assert.equal(value, "went on");
    } finally {
      await server.close();
    }
  });
});

Deno.test("patched conn streams and listener accept are blocking calls", async (t) => {
  await t.step("conn.readable read is cut off by a Timeout; the conn is closed", async () => {
    const server = silentTcpServer();
    try {
      using _ = patched();
      const outcome = await withTimeout(100, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        for await (const _chunk of conn.readable) { /* never arrives */ }
      }).catch((e) => e);
      assert.ok(outcome instanceof Timeout, String(outcome));
      await server.closed(await server.accepted());
    } finally {
      server.close();
    }
  });
  await t.step("conn.writable and readable round trip inside a greenlet", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      using _ = patched();
      const g = spawn(async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
        const writer = conn.writable.getWriter();
        await writer.write(new TextEncoder().encode("ping"));
        const reader = conn.readable.getReader();
        const { value } = await reader.read();
        await reader.cancel(); // closes the conn, as Deno's stream does
        return new TextDecoder().decode(value);
      });
      const peer = await listener.accept();
      const buf = new Uint8Array(4);
      assert.equal(await peer.read(buf), 4);
      await peer.write(buf);
      await g.join();
      assert.equal(g.value, "ping");
      peer.close();
    } finally {
      listener.close();
    }
  });
  await t.step("listener.accept() is interrupted by kill; the listener is closed", async () => {
    using _ = patched();
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const g = spawn(async () => {
      for await (const conn of listener) conn.close();
    });
    await sleep(0); // let the greenlet start and block in accept
    await g.kill();
    assert.ok(g.dead);
    listener.close(); // harmless
    await assert.rejects(listener.accept(), Deno.errors.BadResource);
  });
});

Deno.test("unaware lookups go through the hub's resolver: 100 lookups, one query", async () => {
  await using dnsServer = await startDnsServer({
    records: { "svc.test": { A: ["10.0.0.7"] } },
    nxdomain: ["gone.test"],
  });
  const hub = getHub();
  const saved = hub.resolver;
  hub.resolver = new Resolver({ nameservers: [dnsServer.nameserver], cache: true });
  try {
    using _ = patched();
    const g = spawn(unaware.resolveMany, "svc.test", 100);
    const answers = await g.get() as string[][];
    assert.equal(answers.length, 100);
    assert.ok(answers.every((a) => a.length === 1 && a[0] === "10.0.0.7"));
    assert.equal(dnsServer.queries, 1); // the other 99 came from the hub resolver's cache
    const missing = spawn(() => Deno.resolveDns("gone.test", "A"));
    await captureReports(() => missing.join());
    assert.ok(missing.exception instanceof Deno.errors.NotFound, String(missing.exception));
    const viaNode = spawn(() =>
      new Promise<unknown>((resolve, reject) =>
        dns.lookup(
          "svc.test",
          { family: 4 },
          (err, address) => err ? reject(err) : resolve(address),
        )
      )
    );
    await viaNode.join();
    assert.equal(viaNode.value, "10.0.0.7");
    assert.equal(dnsServer.queries, 2); // svc.test once (cached since), gone.test once
  } finally {
    hub.resolver = saved;
  }
});

Deno.test("a lookup blocked on a silent name server is cut off by withTimeout", async () => {
  await using dnsServer = await startDnsServer({ silent: true });
  const hub = getHub();
  const saved = hub.resolver;
  hub.resolver = new Resolver({ nameservers: [dnsServer.nameserver], timeout: 5000 });
  try {
    using _ = patched();
    const outcome = await withTimeout(100, () => unaware.resolveMany("svc.test", 1))
      .catch((e) => e);
    assert.ok(outcome instanceof Timeout, String(outcome));
  } finally {
    hub.resolver = saved;
  }
});

/** Whether process `pid` exists (SIGCONT is harmless to a sleeping child). */
function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test("a child process started in a killed greenlet is gone afterwards", async (t) => {
  await t.step("spawn() + status: SIGTERM", async () => {
    using _ = patched();
    const started = Promise.withResolvers<number>();
    const g = spawn(async () => {
      const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
      started.resolve(child.pid);
      return await child.status;
    });
    const pid = await started.promise;
    assert.ok(alive(pid));
    await g.kill();
    assert.ok(g.dead);
    assert.equal(alive(pid), false);
  });
  await t.step("output() under withTimeout; a child ignoring SIGTERM gets SIGKILL", async () => {
    using _ = patched({ subprocess: { killGrace: 50 } });
    let child: Deno.ChildProcess | undefined;
    const outcome = await withTimeout(100, () => {
      child = new Deno.Command("sh", {
        args: ["-c", "trap '' TERM; exec sleep 30"],
        stdout: "piped",
      }).spawn();
      return child.output();
    }).catch((e) => e);
    assert.ok(outcome instanceof Timeout, String(outcome));
    assert.equal(alive(child!.pid), false);
    // Ended by the escalation, not by its own exit 30 s later.
    assert.equal((await child!.status).signal, "SIGKILL");
  });
  await t.step("unpatched: the child outlives the killed greenlet", async () => {
    const started = Promise.withResolvers<Deno.ChildProcess>();
    const g = spawn(async () => {
      const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
      started.resolve(child);
      return await child.status;
    });
    const child = await started.promise;
    await g.kill({ block: false });
    await sleep(0);
    assert.ok(alive(child.pid)); // nothing told it to stop
    child.kill("SIGKILL");
    await child.status;
    await g.join();
  });
});

/** Sends one line on `sock` and waits (an event-emitter wait, no blocking call) for a reply. */
function ask(sock: net.Socket, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    sock.once("data", (data) => resolve(String(data)));
    sock.once("error", reject);
    sock.write(line);
  });
}

Deno.test("node:net: kill() cuts off the request a greenlet awaits on a shared socket", async () => {
  const server = silentTcpServer();
  try {
    using _ = patched();
    // Opened outside every greenlet, as a driver's pool is: the greenlet that is waiting on
    // it now is the one that wrote the request.
    const shared = net.connect(server.port, "127.0.0.1");
    const other = net.connect(server.port, "127.0.0.1");
    shared.on("error", () => {});
    const [peer, otherPeer] = [await server.accepted(), await server.accepted()];
    let after = false;
    const g = spawn(async () => {
      await ask(shared, "ping\n");
      after = true;
    });
    const bystander = spawn(() => ask(other, "ping\n"));
    await peer.read(new Uint8Array(16)); // the request is on the wire
    await otherPeer.read(new Uint8Array(16));
    const reports = await captureReports(() => g.kill());
    assert.ok(g.dead && g.value instanceof GreenletExit, String(g.exception ?? g.value));
    assert.equal(after, false);
    assert.equal(reports, "");
    assert.equal((shared.errored as Error)?.name, "GreenletExit");
    await server.closed(peer); // the server sees the connection closed
    assert.equal(other.destroyed, false); // another greenlet's socket is left alone
    await otherPeer.write(new TextEncoder().encode("pong"));
    assert.equal(await bystander.get(), "pong");
    other.destroy();
    await server.closed(otherPeer);
  } finally {
    server.close();
  }
});

Deno.test("a TLS handshake with a silent peer is cut off by withTimeout", async () => {
  const server = silentTcpServer();
  try {
    using _ = patched();
    const outcome = await withTimeout(100, async () => {
      const conn = await Deno.connectTls({ hostname: "127.0.0.1", port: server.port });
      try {
        await conn.handshake();
      } finally {
        conn.close(); // harmless after the interruption closed it
      }
    }).catch((e) => e);
    assert.ok(outcome instanceof Timeout, String(outcome));
    // Deno limitation: closing a TlsConn during its handshake rejects the handshake
    // (Interrupted) but leaves the TCP connection open, so the server sees no close here.
    await server.accepted();
  } finally {
    server.close();
  }
});

Deno.test({
  name: "patched listenTls/connectTls/startTls talk TLS inside greenlets",
  ignore: !await hasOpenssl(),
  async fn() {
    const { cert, key } = await selfSignedCert();
    using _ = patched();
    const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
    try {
      const echo = spawn(async () => {
        for (let i = 0; i < 2; i++) {
          const conn = await listener.accept();
          const buf = new Uint8Array(64);
          const n = await conn.read(buf);
          await conn.write(buf.subarray(0, n ?? 0));
          conn.close();
        }
      });
      const client = spawn(async () => {
        const port = listener.addr.port;
        const enc = new TextEncoder();
        const out: string[] = [];
        const a = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [cert] });
        await a.handshake();
        await a.write(enc.encode("direct"));
        const buf = new Uint8Array(64);
        out.push(new TextDecoder().decode(buf.subarray(0, await a.read(buf) ?? 0)));
        a.close();
        const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
        const b = await Deno.startTls(tcp, { hostname: "127.0.0.1", caCerts: [cert] });
        await b.write(enc.encode("upgraded"));
        out.push(new TextDecoder().decode(buf.subarray(0, await b.read(buf) ?? 0)));
        b.close();
        return out;
      });
      assert.deepEqual(await client.get(), ["direct", "upgraded"]);
      await echo.get();
    } finally {
      listener.close();
    }
  },
});

Deno.test("patchDns(), patchSocket() patch only their own area", () => {
  try {
    patchDns();
    assert.ok(isPatched(Deno, "resolveDns"));
    assert.ok(!isPatched(Deno, "connect"));
    patchSocket();
    assert.ok(isPatched(Deno, "connect"));
    assert.ok(!isPatched(globalThis, "fetch"));
  } finally {
    unpatchAll();
  }
});

Deno.test("importing the core and the networking modules reads none of Deno's lazily loaded globals", async () => {
  // Deno sets these up on first read: `process` (its Node layer) ~20 ms, `Response` ~10 ms,
  // `Deno.Command` ~7 ms... A program that only imports the package must not pay for them,
  // so the patch tables and caches read them when first used. The child process spies on
  // their getters, then imports the core and the networking entry points.
  const root = new URL("../", import.meta.url).href;
  const lazy = [
    "process",
    "Response",
    "Request",
    "ReadableStream",
    "WebSocket",
    "Deno.Command",
    "Deno.serve",
    "Deno.upgradeWebSocket",
  ];
  const script = `
    const read = [];
    const observed = [];
    for (const name of ${JSON.stringify(lazy)}) {
      const [holder, key] = name.startsWith("Deno.") ? [Deno, name.slice(5)] : [globalThis, name];
      const d = Object.getOwnPropertyDescriptor(holder, key);
      if (d?.get === undefined || !d.configurable) continue;
      observed.push(name);
      Object.defineProperty(holder, key, {
        ...d,
        get() {
          read.push(name);
          return d.get.call(this);
        },
      });
    }
    const modules = ["core.ts", "greenlet.ts", "socket.ts", "resolver.ts", "server.ts", "http.ts"];
    for (const m of [...modules, "monkey.ts"]) {
      await import("${root}" + m);
    }
    console.log(JSON.stringify({ observed, read: [...new Set(read)] }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const { observed, read } = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.deepEqual(observed, lazy, "a global is no longer a lazy getter: update the test");
  assert.deepEqual(read, []);
});
