import "./_deadline.ts";
import assert from "node:assert/strict";
import { Hono } from "hono";
import { Event } from "../event.ts";
import { getCurrent, Greenlet, GreenletExit } from "../greenlet.ts";
import { sleep } from "../hub.ts";
import { patchFetch, unpatchAll } from "../monkey.ts";
import { Group, Pool } from "../pool.ts";
import { Timeout } from "../timeout.ts";
import {
  type AccessLog,
  eventStream,
  httpHandler,
  HttpServer,
  type HttpServerOptions,
  upgradeWebSocket,
} from "../http.ts";
import { captureReports } from "./_helpers.ts";
import { startHttpServer } from "./_http_server.ts";

/** An access log that keeps its lines and lets a test wait for the next ones. */
class Lines implements AccessLog {
  lines: string[] = [];
  #waiters: [number, () => void][] = [];
  writes = 0;
  write(text: string): void {
    this.writes++;
    this.lines.push(...text.split("\n").filter((l) => l !== ""));
    this.#waiters = this.#waiters.filter(([n, resolve]) => {
      if (this.lines.length < n) return true;
      resolve();
      return false;
    });
  }
  /** Resolves once `n` lines have been written. */
  until(n: number): Promise<void> {
    if (this.lines.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push([n, resolve]));
  }
}

function serve(
  handler: ConstructorParameters<typeof HttpServer>[1],
  options: HttpServerOptions = {},
): { server: HttpServer; url: (path: string) => string } {
  const server = new HttpServer(["127.0.0.1", 0], handler, { log: null, ...options });
  server.start();
  return { server, url: (path) => `http://127.0.0.1:${server.address[1]}${path}` };
}

async function get(url: string, init?: RequestInit): Promise<[number, string]> {
  const res = await fetch(url, init);
  return [res.status, await res.text()];
}

Deno.test("HttpServer runs each request in a greenlet of its own", async () => {
  const seen: Greenlet<unknown>[] = [];
  const allIn = new Event();
  const gate = new Event();
  const names: string[] = [];
  const { server, url } = serve(async () => {
    const me = getCurrent()!;
    seen.push(me);
    names.push(String(me));
    if (seen.length === 3) allIn.set();
    await gate.wait();
    return new Response(me.name);
  });
  await using _ = server;
  assert.equal(server.started, true);
  assert.equal(server.address[0], "127.0.0.1");
  assert.notEqual(server.address[1], 0);
  const replies = Promise.all([1, 2, 3].map(() => get(url("/"))));
  await allIn.wait();
  assert.equal(new Set(seen).size, 3);
  assert.ok(seen.every((g) => g instanceof Greenlet && !g.dead));
  gate.set();
  const bodies = (await replies).map(([status, body]) => (assert.equal(status, 200), body));
  assert.deepEqual(bodies.sort(), seen.map((g) => g.name).sort());
  assert.ok(seen.every((g) => g.dead));
  assert.match(
    names[0],
    /^<HttpServer 127\.0\.0\.1:\d+> "GET \/ HTTP\/1\.1" from 127\.0\.0\.1:\d+ \(Greenlet-\d+\)$/,
  );
});

Deno.test("a handler that returns at once is answered without waiting", async () => {
  const { server, url } = serve((req) => new Response(`sync ${new URL(req.url).pathname}`));
  await using _ = server;
  assert.deepEqual(await get(url("/a?b=c")), [200, "sync /a"]);
});

Deno.test("a client that goes away kills the request's greenlet and its downstream fetch", async () => {
  const downstream = startHttpServer();
  const started = new Event();
  const finallyRan = new Event();
  let caught: unknown;
  const log = new Lines();
  const { server, url } = serve(async () => {
    started.set();
    try {
      const res = await fetch(`${downstream.origin}/silent`); // never answers
      return new Response(await res.text());
    } catch (error) {
      caught = error;
      throw error;
    } finally {
      finallyRan.set();
    }
  }, { log });
  patchFetch();
  try {
    await using _ = server;
    const reports = await captureReports(async () => {
      const client = new AbortController();
      const reply = fetch(url("/wait"), { signal: client.signal });
      await started.wait();
      const closed = downstream.nextClose();
      client.abort();
      await assert.rejects(reply, { name: "AbortError" });
      await finallyRan.wait();
      await closed; // the patched fetch was aborted: its connection is gone
      await log.until(1);
    });
    assert.ok(caught instanceof GreenletExit, `caught ${caught}`);
    assert.equal(reports, "", "nothing is reported as a failure");
    assert.match(log.lines[0], /"GET \/wait HTTP\/1\.1" 499 /);
  } finally {
    unpatchAll();
    await downstream.close();
  }
});

Deno.test("a finished request is never killed, even after Deno aborts its signal", async () => {
  const outcomes: string[] = [];
  const done = new Event();
  const { server, url } = serve(async () => {
    try {
      await sleep(60); // lives through the watch period: its request.signal is watched
      return new Response("done");
    } catch (error) {
      outcomes.push(`caught ${error}`);
      throw error;
    } finally {
      outcomes.push("finally");
      done.set();
    }
  });
  await using _ = server;
  const reports = await captureReports(async () => {
    assert.deepEqual(await get(url("/")), [200, "done"]);
    await done.wait();
    await sleep(0);
  });
  assert.deepEqual(outcomes, ["finally"]);
  assert.equal(reports, "");
});

Deno.test("the deadline kills the greenlet and its Group with a Timeout and answers 503", async () => {
  let caught: unknown;
  let child: Greenlet<unknown> | undefined;
  const childDone = new Event();
  const log = new Lines();
  const { server, url } = serve(async () => {
    await using group = new Group();
    child = group.spawn(async () => {
      try {
        await sleep(60_000);
      } finally {
        childDone.set();
      }
    });
    try {
      await sleep(60_000);
    } catch (error) {
      caught = error;
      throw error;
    }
    return new Response("late");
  }, { timeout: 50, log });
  await using _ = server;
  const reports = await captureReports(async () => {
    assert.deepEqual(await get(url("/slow")), [503, "Service Unavailable"]);
    await childDone.wait();
    await log.until(1);
  });
  assert.ok(caught instanceof Timeout, `caught ${caught}`);
  assert.equal((caught as Timeout).ms, 50);
  assert.ok(child!.dead);
  assert.equal(reports, "");
  assert.match(log.lines[0], /"GET \/slow HTTP\/1\.1" 503 19 \d\.\d{6}$/);
  assert.ok(Number(log.lines[0].split(" ").at(-1)) >= 0.045, "the duration covers the deadline");
});

Deno.test("once the deadline fired the answer is 503, whatever a catch-all returned", async () => {
  const { server, url } = serve(async () => {
    try {
      await sleep(60_000);
    } catch {
      return new Response("recovered", { status: 500 }); // what frameworks do
    }
    return new Response("late");
  }, { timeout: 30 });
  await using _ = server;
  assert.deepEqual(await get(url("/")), [503, "Service Unavailable"]);
});

Deno.test("a handler that throws answers 500, is reported with its request line, and the server goes on", async () => {
  const log = new Lines();
  const { server, url } = serve((req) => {
    if (req.url.endsWith("/boom")) throw new RangeError("handler bug");
    return new Response("fine");
  }, { log });
  await using _ = server;
  const reports = await captureReports(async () => {
    assert.deepEqual(await get(url("/boom")), [500, "Internal Server Error"]);
  });
  assert.match(reports, /RangeError: handler bug/);
  assert.match(
    reports,
    /<HttpServer 127\.0\.0\.1:\d+> "GET \/boom HTTP\/1\.1" from 127\.0\.0\.1:\d+ \(Greenlet-\d+\) failed with RangeError/,
  );
  assert.deepEqual(await get(url("/next")), [200, "fine"]);
  await log.until(2);
  assert.match(log.lines[0], /"GET \/boom HTTP\/1\.1" 500 21 /);
  assert.match(log.lines[1], /"GET \/next HTTP\/1\.1" 200 4 /);
});

Deno.test("an async handler that rejects answers 500 and is reported", async () => {
  const { server, url } = serve(async () => {
    await sleep(1);
    throw new TypeError("async bug");
  });
  await using _ = server;
  const reports = await captureReports(async () => {
    assert.deepEqual(await get(url("/x")), [500, "Internal Server Error"]);
  });
  assert.match(reports, /"GET \/x HTTP\/1\.1" .* failed with TypeError/);
});

Deno.test("a handler that returns something else than a Response answers 500 saying so", async () => {
  const { server, url } = serve(
    ((req: Request) => req.url.endsWith("/str") ? "text" : undefined) as never,
  );
  await using _ = server;
  const reports = await captureReports(async () => {
    const [status, body] = await get(url("/nothing"));
    assert.equal(status, 500);
    assert.equal(
      body,
      "Internal Server Error: The handler must return a Response: it returned undefined",
    );
    const [, text] = await get(url("/str"));
    assert.match(text, /it returned a string \("text"\)/);
  });
  assert.match(reports, /TypeError: The handler must return a Response: it returned undefined/);
});

Deno.test("spawn: n limits the requests in flight; the next one waits for a slot", async () => {
  const gate = new Event();
  const twoIn = new Event();
  let running = 0;
  let most = 0;
  let calls = 0;
  const pool = new Pool(2);
  const { server, url } = serve(async () => {
    calls++;
    running++;
    most = Math.max(most, running);
    if (running === 2) twoIn.set();
    await gate.wait();
    running--;
    return new Response("ok");
  }, { spawn: pool });
  await using _ = server;
  const replies = Promise.all([1, 2, 3].map(() => get(url("/"))));
  await twoIn.wait();
  assert.equal(calls, 2);
  assert.equal(pool.size, 2); // the request greenlets are the pool's members
  gate.set();
  assert.deepEqual((await replies).map(([s]) => s), [200, 200, 200]);
  assert.equal(most, 2);
  assert.equal(calls, 3);
});

Deno.test("spawn: a waiting request's deadline counts from its arrival", async () => {
  const gate = new Event();
  const firstIn = new Event();
  let calls = 0;
  const { server, url } = serve(async () => {
    calls++;
    firstIn.set();
    try {
      await gate.wait();
    } catch {
      await gate.wait(); // ignores its deadline once: keeps its slot
    }
    return new Response("ok");
  }, { spawn: 1, timeout: 50 });
  await using _ = server;
  const first = get(url("/first"));
  await firstIn.wait();
  // The slot stays taken past the second request's deadline: it is answered without running.
  assert.deepEqual(await get(url("/second")), [503, "Service Unavailable"]);
  assert.equal(calls, 1, "the waiting request never ran");
  gate.set();
  assert.deepEqual(await first, [503, "Service Unavailable"]);
});

Deno.test("stop() lets requests in flight finish within its timeout", async () => {
  const started = new Event();
  const gate = new Event();
  const { server, url } = serve(async () => {
    started.set();
    await gate.wait();
    return new Response("finished");
  });
  const reply = get(url("/"));
  await started.wait();
  const stopping = server.stop({ timeout: 10_000 });
  assert.equal(server.started, false);
  gate.set();
  assert.deepEqual(await reply, [200, "finished"]);
  await stopping;
  using client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 }); // a new connection
  await assert.rejects(fetch(url("/"), { client }), TypeError); // no longer accepting
});

Deno.test("stop() kills what is left after its timeout and closes streams and WebSockets", async () => {
  const inFlight = new Event();
  const streaming = new Event();
  const socketOpen = new Event();
  const ended: string[] = [];
  const { server, url } = serve((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/events") {
      return eventStream(async (stream) => {
        try {
          await stream.send("first");
          streaming.set();
          await sleep(60_000);
        } catch (error) {
          ended.push(`stream ${(error as Error).name}`);
          throw error;
        }
      });
    }
    if (path === "/ws") {
      return upgradeWebSocket(req, async (_ws) => {
        socketOpen.set();
        try {
          await sleep(60_000);
        } catch (error) {
          ended.push(`socket ${(error as Error).name}`);
          throw error;
        }
      });
    }
    return (async () => {
      inFlight.set();
      try {
        await sleep(60_000);
      } catch (error) {
        ended.push(`request ${(error as Error).name}`);
        throw error;
      }
      return new Response("late");
    })();
  });
  const reply = get(url("/slow"));
  const events = await fetch(url("/events"));
  const reader = events.body!.getReader();
  assert.equal(new TextDecoder().decode((await reader.read()).value), "data: first\n\n");
  const client = new WebSocket(url("/ws").replace("http", "ws"));
  const clientClosed = new Promise<CloseEvent>((resolve) => client.onclose = resolve);
  await Promise.all([inFlight.wait(), streaming.wait(), socketOpen.wait()]);
  const reports = await captureReports(() => server.stop({ timeout: 20 }));
  assert.equal(reports, "");
  assert.deepEqual(await reply, [503, "Service Unavailable"]);
  assert.equal((await reader.read()).done, true, "the event stream ended");
  reader.releaseLock();
  const close = await clientClosed;
  assert.equal(close.code, 1001); // going away
  assert.deepEqual(ended.sort(), [
    "request GreenletExit",
    "socket GreenletExit",
    "stream GreenletExit",
  ]);
});

Deno.test("serveForever() waits until stop(); the signal option stops the server", async () => {
  const controller = new AbortController();
  const server = new HttpServer(["127.0.0.1", 0], () => new Response("hi"), {
    log: null,
    signal: controller.signal,
  });
  const serving = server.serveForever();
  assert.equal(server.started, true);
  assert.deepEqual(await get(`http://127.0.0.1:${server.address[1]}/`), [200, "hi"]);
  controller.abort();
  await serving;
  assert.equal(server.closed, true);
  await server.stop(); // stopping twice is harmless
});

Deno.test("the access log writes pywsgi's lines, in batches, without blocking", async () => {
  let release: (() => void) | undefined;
  const lines: string[] = [];
  let writes = 0;
  const firstWrite = new Event();
  const log: AccessLog = {
    write(text) {
      writes++;
      lines.push(...text.trimEnd().split("\n"));
      firstWrite.set();
      if (writes > 1) return undefined;
      return new Promise<void>((resolve) => release = resolve); // a slow first write
    },
  };
  const { server, url } = serve((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/missing") return new Response("nope", { status: 404 });
    return new Response("hello world");
  }, { log });
  await using _ = server;
  assert.deepEqual(await get(url("/hello?x=1")), [200, "hello world"]);
  await firstWrite.wait();
  // The log's write has not finished: the server goes on serving, and the lines wait.
  assert.deepEqual(await get(url("/hello")), [200, "hello world"]);
  assert.deepEqual(await get(url("/missing")), [404, "nope"]);
  assert.equal(writes, 1);
  release!();
  await server.stop(); // flushes the log
  assert.equal(writes, 2, "the waiting lines went out in one batch");
  const date = String
    .raw`\[\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4} \d{2}:\d{2}:\d{2}\]`;
  assert.match(
    lines[0],
    new RegExp(`^127\\.0\\.0\\.1 - - ${date} "GET /hello\\?x=1 HTTP/1\\.1" 200 11 \\d\\.\\d{6}$`),
  );
  assert.match(lines[1], /"GET \/hello HTTP\/1\.1" 200 11 /);
  assert.match(lines[2], /"GET \/missing HTTP\/1\.1" 404 4 /);
  assert.equal(lines.length, 3);
});

Deno.test("an event stream's producer runs in a greenlet and is killed when the client goes away", async () => {
  const producing = new Event();
  const stopped = new Event();
  let caught: unknown;
  let producer: Greenlet<unknown> | undefined;
  const { server, url } = serve(() =>
    eventStream(async (stream) => {
      producer = getCurrent();
      await stream.send({ event: "greeting", id: "1", data: "hello\nworld" });
      await stream.send({ data: { n: 2 }, retry: 1000 });
      try {
        for (let n = 3;; n++) {
          await stream.send({ comment: "keep-alive" });
          producing.set();
          await sleep(5);
        }
      } catch (error) {
        caught = error;
        throw error;
      } finally {
        stopped.set();
      }
    }, { headers: { "x-stream": "yes" } })
  );
  await using _ = server;
  const res = await fetch(url("/events"));
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  assert.equal(res.headers.get("cache-control"), "no-cache");
  assert.equal(res.headers.get("x-stream"), "yes");
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes(": keep-alive\n\n")) text += (await reader.read()).value;
  assert.ok(text.startsWith(
    'event: greeting\nid: 1\ndata: hello\ndata: world\n\nretry: 1000\ndata: {"n":2}\n\n',
  ));
  await producing.wait();
  await reader.cancel();
  await stopped.wait();
  assert.ok(caught instanceof GreenletExit, `caught ${caught}`);
  await producer!.join();
  assert.equal(producer!.successful(), true);
});

Deno.test("EventStream.send() checks its event", async () => {
  const checked = new Event();
  const errors: unknown[] = [];
  const res = eventStream(async (stream) => {
    for (const bad of [{ event: "a\nb" }, { id: "x\ry" }, { retry: -1 }, { retry: 1.5 }]) {
      await stream.send(bad).catch((error) => errors.push(error));
    }
    checked.set();
  });
  await checked.wait();
  assert.deepEqual(errors.map((e) => (e as Error).name), [
    "TypeError",
    "TypeError",
    "RangeError",
    "RangeError",
  ]);
  assert.match(
    String(errors[0]),
    /'event' must not contain a line break: current value is "a\\nb"/,
  );
  assert.match(
    String(errors[2]),
    /'retry' must be a non-negative integer of milliseconds: current value is -1/,
  );
  assert.equal(await res.text(), "");
});

Deno.test("a WebSocket handler runs in a greenlet with blocking receive()", async () => {
  const results: unknown[] = [];
  const done = new Event();
  const { server, url } = serve((req) =>
    upgradeWebSocket(req, async (ws) => {
      try {
        results.push(getCurrent() !== undefined);
        await assert.rejects(ws.receive({ timeout: 0 }), Timeout);
        await assert.rejects(ws.receive({ timeout: 10 }), Timeout);
        ws.send("ready");
        results.push(await ws.receive({ timeout: 10_000 }));
        const bytes = await ws.receive();
        results.push(bytes instanceof Uint8Array ? [...bytes] : bytes);
        for await (const message of ws) results.push(`iter ${message}`);
        results.push(await ws.receive()); // closed: null
      } finally {
        done.set();
      }
    })
  );
  await using _ = server;
  const client = new WebSocket(url("/").replace("http", "ws"));
  const closed = new Promise<CloseEvent>((resolve) => client.onclose = resolve);
  client.onmessage = (e) => {
    assert.equal(e.data, "ready");
    client.send("text");
    client.send(new Uint8Array([1, 2, 3]));
    client.send("last");
    client.close(1000, "done");
  };
  await done.wait();
  assert.equal((await closed).code, 1000);
  assert.deepEqual(results, [true, "text", [1, 2, 3], "iter last", null]);
});

Deno.test("a WebSocket handler busy elsewhere is killed when the client disconnects", async () => {
  const busy = new Event();
  const finished = new Event();
  let caught: unknown;
  const { server, url } = serve((req) =>
    upgradeWebSocket(req, async (ws) => {
      ws.send("hello");
      busy.set();
      try {
        await sleep(60_000);
      } catch (error) {
        caught = error;
        throw error;
      } finally {
        finished.set();
      }
    })
  );
  await using _ = server;
  const reports = await captureReports(async () => {
    const client = new WebSocket(url("/").replace("http", "ws"));
    const closed = new Promise((resolve) => client.onclose = resolve);
    await busy.wait();
    client.close();
    await closed;
    await finished.wait();
  });
  assert.ok(caught instanceof GreenletExit, `caught ${caught}`);
  assert.equal(reports, "");
});

Deno.test("a Hono app served by HttpServer gets per-request greenlets and deadlines", async () => {
  const app = new Hono();
  app.onError((error, c) => c.text(`caught ${error}`, 500)); // frameworks catch everything
  app.get("/who", (c) => c.text(getCurrent()?.name ?? "none"));
  app.get("/slow", async (c) => {
    await sleep(60_000);
    return c.text("late");
  });
  const log = new Lines();
  const { server, url } = serve(app, { timeout: 50, log });
  await using _ = server;
  const [a, b] = await Promise.all([get(url("/who")), get(url("/who"))]);
  assert.equal(a[0], 200);
  assert.match(a[1], /^Greenlet-\d+$/);
  assert.notEqual(a[1], b[1]);
  const reports = await captureReports(async () => {
    // Hono turns the Timeout into its own 500; the deadline makes it a 503.
    assert.deepEqual(await get(url("/slow")), [503, "Service Unavailable"]);
  });
  assert.equal(reports, "");
  await log.until(3);
  assert.match(log.lines[2], /"GET \/slow HTTP\/1\.1" 503 19 /);
});

Deno.test("httpHandler() gives Deno.serve the same per-request greenlets", async () => {
  const handler = httpHandler(async (req) => {
    if (req.url.endsWith("/slow")) await sleep(60_000);
    return new Response(String(getCurrent() !== undefined));
  }, { timeout: 50, log: null });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const base = `http://127.0.0.1:${server.addr.port}`;
  assert.deepEqual(await get(`${base}/`), [200, "true"]);
  assert.deepEqual(await get(`${base}/slow`), [503, "Service Unavailable"]);
  const shutdown = server.shutdown();
  await handler.stop();
  await shutdown;
});

Deno.test("httpHandler().stop() answers new requests 503 and lets those in flight finish", async () => {
  const started = new Event();
  const gate = new Event();
  const handler = httpHandler(async () => {
    started.set();
    await gate.wait();
    return new Response("finished");
  }, { log: null });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const base = `http://127.0.0.1:${server.addr.port}`;
  const first = get(`${base}/`);
  await started.wait();
  const stopping = handler.stop({ timeout: 10_000 });
  const res = await fetch(`${base}/late`);
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("connection"), "close");
  await res.body?.cancel();
  gate.set();
  assert.deepEqual(await first, [200, "finished"]);
  await stopping;
  await server.shutdown();
});

Deno.test({
  name: "deno serve --parallel with httpHandler() serves from more than one isolate",
  // Starts `deno serve` in a subprocess: give it time on a busy machine.
  sanitizeOps: true,
  async fn() {
    const dir = await Deno.makeTempDir();
    const module = `${dir}/app.ts`;
    const http = new URL("../http.ts", import.meta.url).href;
    await Deno.writeTextFile(
      module,
      `import { httpHandler } from "${http}";
import { getCurrent } from "${new URL("../greenlet.ts", import.meta.url).href}";
const isolate = crypto.randomUUID();
const app = { fetch: () => new Response(\`\${isolate} \${getCurrent() !== undefined}\`) };
export default { fetch: httpHandler(app, { log: null }) } satisfies Deno.ServeDefaultExport;
`,
    );
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "serve",
        "--parallel",
        "--quiet",
        "--allow-net",
        "--allow-read",
        "--no-lock",
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        module,
      ],
      cwd: new URL("..", import.meta.url).pathname,
      env: { DENO_JOBS: "2", NO_COLOR: "1" },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let errors = "";
    const reading = (async () => {
      for (let r; !(r = await stderr.read()).done;) errors += r.value;
    })();
    const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 }); // a new connection each time
    try {
      const isolates = new Set<string>();
      // Each new connection goes to one of the workers: ask until two have answered.
      for (let i = 0; i < 2000 && isolates.size < 2; i++) {
        let body: string;
        try {
          const res = await fetch(`http://127.0.0.1:${port}/`, { client });
          body = await res.text();
        } catch {
          await sleep(50); // not listening yet
          continue;
        }
        const [id, inGreenlet] = body.split(" ");
        assert.equal(inGreenlet, "true");
        isolates.add(id);
      }
      assert.equal(isolates.size, 2, `answers came from ${isolates.size} isolate(s): ${errors}`);
    } finally {
      client.close();
      child.kill("SIGTERM");
      await child.status;
      await reading;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("bad arguments are TypeErrors and RangeErrors that name the argument", async (t) => {
  const ok = () => new Response();
  const cases: [() => unknown, ErrorConstructor, RegExp][] = [
    [
      () => new HttpServer(["127.0.0.1", 0], 42 as never),
      TypeError,
      /'handler' must be a function or have a fetch\(\) method: current value is 42/,
    ],
    [
      () => new HttpServer(["127.0.0.1", 70000], ok),
      RangeError,
      /'port' must be an integer from 0 to 65535: current value is 70000/,
    ],
    [
      () => new HttpServer(["127.0.0.1", "80" as never], ok),
      TypeError,
      /'port' must be a number: current value is "80"/,
    ],
    [
      () => new HttpServer([8080 as never, 0], ok),
      TypeError,
      /'host' must be a string: current value is 8080/,
    ],
    [
      () => new HttpServer("localhost:80" as never, ok),
      TypeError,
      /'address' must be \[host, port\] or an options object: current value is "localhost:80"/,
    ],
    [
      () => new HttpServer(["127.0.0.1", 0], ok, { timeout: -1 }),
      RangeError,
      /'timeout' must be a finite, non-negative number of milliseconds: current value is -1/,
    ],
    [
      () => new HttpServer(["127.0.0.1", 0], ok, { timeout: "5" as never }),
      TypeError,
      /'timeout' must be a number of milliseconds: current value is "5"/,
    ],
    [
      () => new HttpServer(["127.0.0.1", 0], ok, { spawn: 0 }),
      RangeError,
      /'spawn' must be a positive integer or a Pool: current value is 0/,
    ],
    [
      () => new HttpServer(["127.0.0.1", 0], ok, { spawn: {} as never }),
      TypeError,
      /'spawn' must be a positive integer or a Pool: current value is \[object Object\]/,
    ],
    [
      () => new HttpServer(["127.0.0.1", 0], ok, { log: "stderr" as never }),
      TypeError,
      /'log' must have a write\(\) method or be null: current value is "stderr"/,
    ],
    [
      () => new HttpServer(["127.0.0.1", 0], ok, { signal: {} as never }),
      TypeError,
      /'signal' must be an AbortSignal/,
    ],
    [
      () => new HttpServer({ hostname: "127.0.0.1", cert: "x" }, ok),
      TypeError,
      /'key' must be a PEM string/,
    ],
    [
      () => httpHandler(null as never),
      TypeError,
      /Cannot create httpHandler as 'handler' must be a function or have a fetch\(\) method: current value is null/,
    ],
    [
      () => httpHandler(ok, { timeout: NaN }),
      RangeError,
      /'timeout' must be a finite, non-negative number of milliseconds: current value is NaN/,
    ],
    [
      () => eventStream("nope" as never),
      TypeError,
      /'produce' must be a function: current value is "nope"/,
    ],
    [
      () => upgradeWebSocket(new Request("http://x/"), 1 as never),
      TypeError,
      /'handle' must be a function: current value is 1/,
    ],
  ];
  for (const [fn, type, message] of cases) {
    await t.step(message.source.slice(0, 60), () => {
      assert.throws(fn, (error: unknown) => {
        assert.ok(error instanceof type, `${error} is not a ${type.name}`);
        assert.match((error as Error).message, message);
        return true;
      });
    });
  }
  await t.step("stop() rejects a bad timeout", async () => {
    const server = new HttpServer(["127.0.0.1", 0], ok, { log: null });
    await assert.rejects(server.stop({ timeout: -5 }), RangeError);
    await server.stop();
  });
});
