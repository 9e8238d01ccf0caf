/**
 * A web API served with a greenlet per request: gevent's `WSGIServer` model on `Deno.serve`.
 *
 * A Hono app runs unchanged inside `HttpServer`. Every request is a greenlet with a 500 ms
 * deadline; after `monkey.patchAll()` the plain `fetch` calls it makes to downstream services
 * are cancelled when it is killed, so a slow service is never left working for nobody.
 *
 *     deno run --allow-net examples/webapp.ts [--port=8000]
 *     deno run --allow-net examples/webapp.ts --self-test
 *
 * Routes (the three downstream services are local fakes; "recommendations" is slow):
 * - `GET /api/dashboard`: fans out to users, orders and recommendations in a `Group`;
 *   recommendations get a 150 ms budget of their own and the page is served without them.
 * - `GET /api/report`: waits for recommendations with no budget of its own: the request's
 *   deadline kills the greenlet and its `Group`, the slow call is aborted, the answer is 503.
 * - `GET /events`: a server-sent event clock; the producer greenlet dies with the connection.
 * - `GET /ws`: a WebSocket echo with a blocking `receive()`.
 *
 * The access log (gevent.pywsgi's format) goes to standard error. `--self-test` starts it all
 * on free ports, exercises every route, checks that the slow downstream calls were cancelled,
 * and stops.
 */

import { Hono } from "hono";
import { type AccessLog, eventStream, HttpServer, upgradeWebSocket } from "../http.ts";
import { Event, getCurrent, Group, isKill, monkey, sleep, withTimeout } from "../mod.ts";

const DEADLINE_MS = 500;
const RECOMMENDATIONS_BUDGET_MS = 150;

monkey.patchAll();

// ---- Three downstream services (plain Deno.serve, outside any greenlet) ----------------------

/** The fake downstream services, with a count of the slow calls their callers cancelled. */
interface Downstream {
  users: string;
  orders: string;
  recommendations: string;
  cancelled: number;
  /** Resolves once `n` slow calls have been cancelled by their callers. */
  cancelledAtLeast(n: number): Promise<void>;
  close(): Promise<void>;
}

function startDownstream(): Downstream {
  const waiters: [number, () => void][] = [];
  const service = (handler: (req: Request) => Response | Promise<Response>) =>
    Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const users = service(() => Response.json([{ id: 1, name: "Ada" }, { id: 2, name: "Linus" }]));
  const orders = service(() => Response.json([{ id: 7, user: 1, total: 42 }]));
  const recommendations = service(async (req) => {
    // Slow: answers after 5 s, unless the caller goes away first.
    const gone = new Promise<boolean>((resolve) => {
      req.signal.addEventListener("abort", () => resolve(true), { once: true });
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((resolve) => timer = setTimeout(resolve, 5000, false));
    if (await Promise.race([gone, late])) {
      downstream.cancelled++;
      for (const [n, resolve] of waiters) if (downstream.cancelled >= n) resolve();
    }
    clearTimeout(timer);
    return Response.json([{ id: 99, title: "gevent for Deno" }]);
  });
  const url = (s: Deno.HttpServer<Deno.NetAddr>) => `http://127.0.0.1:${s.addr.port}`;
  const downstream: Downstream = {
    users: url(users),
    orders: url(orders),
    recommendations: url(recommendations),
    cancelled: 0,
    cancelledAtLeast(n) {
      if (downstream.cancelled >= n) return Promise.resolve();
      return new Promise((resolve) => waiters.push([n, resolve]));
    },
    async close() {
      await Promise.all([users, orders, recommendations].map((s) => s.shutdown()));
    },
  };
  return downstream;
}

// ---- The application: plain Hono, plain fetch ----------------------------------------------

/** Code that knows nothing of greenlets: `fetch` and JSON. */
async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return await res.json();
}

/** Set each time an event-stream producer ends. */
const producerGone = new Event();

function makeApp(downstream: Downstream, producers: Set<string>): Hono {
  const app = new Hono();
  // Hono catches every error; a kill or a deadline is not the app's failure: let it through
  // (the server answers 503 after a deadline whatever the handler returns, but this keeps
  // Hono from logging it).
  app.onError((error, c) => {
    if (isKill(error)) throw error;
    console.error(error);
    return c.text("Internal Server Error", 500);
  });

  app.get("/api/dashboard", async (c) => {
    // The children die with the request: the Group is killed when this scope ends.
    await using group = new Group();
    const users = group.spawn(getJson, downstream.users);
    const orders = group.spawn(getJson, downstream.orders);
    const recommendations = group.spawn(() =>
      withTimeout(RECOMMENDATIONS_BUDGET_MS, () => getJson(downstream.recommendations), {
        timeoutValue: [], // degrade: serve the page without them
      })
    );
    await group.join({ raiseError: true });
    return c.json({
      served_by: getCurrent()!.name,
      users: users.value,
      orders: orders.value,
      recommendations: recommendations.value,
    });
  });

  app.get("/api/report", async (c) => {
    await using group = new Group();
    const recommendations = group.spawn(getJson, downstream.recommendations);
    await group.join({ raiseError: true }); // the request's deadline cuts this short
    return c.json({ recommendations: recommendations.value });
  });

  app.get("/events", () =>
    eventStream(async (stream) => {
      const id = getCurrent()!.name;
      producers.add(id);
      try {
        for (let n = 1;; n++) {
          await stream.send({ event: "tick", id: String(n), data: { n, at: new Date() } });
          await sleep(100);
        }
      } finally {
        producers.delete(id); // runs when the client leaves or the server stops
        producerGone.set();
      }
    }));

  app.get("/ws", (c) =>
    upgradeWebSocket(c.req.raw, async (ws) => {
      for (let message; (message = await ws.receive({ timeout: 60_000 })) !== null;) {
        ws.send(message);
      }
    }));

  return app;
}

// ---- Running it -----------------------------------------------------------------------------

/** An access log that writes to standard error and keeps the lines (for the self-test). */
class TeeLog implements AccessLog {
  lines: string[] = [];
  #stderr = new TextEncoder();
  async write(text: string): Promise<void> {
    this.lines.push(...text.trimEnd().split("\n"));
    let bytes = this.#stderr.encode(text);
    while (bytes.length > 0) bytes = bytes.subarray(await Deno.stderr.write(bytes));
  }
}

async function selfTest(): Promise<void> {
  const downstream = startDownstream();
  const producers = new Set<string>();
  const log = new TeeLog();
  const server = new HttpServer(["127.0.0.1", 0], makeApp(downstream, producers), {
    timeout: DEADLINE_MS,
    log,
  });
  server.start();
  const base = `http://127.0.0.1:${server.address[1]}`;
  const check = (ok: boolean, what: string) => {
    if (!ok) throw new Error(`self-test failed: ${what}`);
    console.log(`ok - ${what}`);
  };
  try {
    // 1. Fan-out with a budget: served without the slow part, whose call is cancelled.
    let t0 = performance.now();
    let res = await fetch(`${base}/api/dashboard`);
    const page = await res.json();
    check(
      res.status === 200,
      `/api/dashboard answers 200 (${Math.round(performance.now() - t0)} ms)`,
    );
    check(page.users.length === 2 && page.orders.length === 1, "users and orders are there");
    check(page.recommendations.length === 0, "recommendations were left out after 150 ms");
    await downstream.cancelledAtLeast(1);
    check(true, "the slow recommendations call was cancelled");

    // 2. No budget: the request's deadline kills the request and its downstream call.
    t0 = performance.now();
    res = await fetch(`${base}/api/report`);
    await res.body?.cancel();
    check(
      res.status === 503,
      `/api/report answers 503 at its deadline (${Math.round(performance.now() - t0)} ms)`,
    );
    await downstream.cancelledAtLeast(2);
    check(true, "its slow call was cancelled too");

    // 3. An event stream whose producer dies with the connection.
    res = await fetch(`${base}/events`);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while ((text.match(/\n\n/g) ?? []).length < 3) text += (await reader.read()).value;
    check(text.startsWith("event: tick\nid: 1\n"), "/events streams ticks");
    check(producers.size === 1, "one producer greenlet is running");
    await reader.cancel();
    await producerGone.wait();
    check(producers.size === 0, "the producer greenlet ended when the client left");

    // 4. A WebSocket echo.
    const ws = new WebSocket(`${base.replace("http", "ws")}/ws`);
    const echoed = new Promise<string>((resolve) => ws.onmessage = (e) => resolve(e.data));
    const closed = new Promise((resolve) => ws.onclose = resolve);
    ws.onopen = () => ws.send("hello");
    check(await echoed === "hello", "/ws echoes");
    ws.close();
    await closed;
  } finally {
    await server.stop();
    await downstream.close();
  }
  // 5. The access log: one pywsgi line per request.
  const statuses = log.lines.map((line) => line.match(/" (\d{3}) /)?.[1]);
  check(
    JSON.stringify(statuses) === JSON.stringify(["200", "503", "200", "101"]),
    `the access log has one line per request (${statuses.join(", ")})`,
  );
  check(
    /^127\.0\.0\.1 - - \[\d\d\/\w{3}\/\d{4} \d\d:\d\d:\d\d\] "GET \/api\/dashboard HTTP\/1\.1" 200 \d+ \d\.\d{6}$/
      .test(log.lines[0]),
    "in gevent.pywsgi's format",
  );
  console.log("self-test passed");
}

if (import.meta.main) {
  if (Deno.args.includes("--self-test")) {
    await selfTest();
  } else {
    const port = Number(Deno.args.find((a) => a.startsWith("--port="))?.slice(7) ?? 8000);
    const downstream = startDownstream();
    const server = new HttpServer(["127.0.0.1", port], makeApp(downstream, new Set()), {
      timeout: DEADLINE_MS,
    });
    server.start();
    console.log(`Serving on http://127.0.0.1:${server.address[1]}/ (Ctrl-C to stop)`);
    console.log("Try /api/dashboard, /api/report, /events and /ws");
    Deno.addSignalListener("SIGINT", () => {
      server.stop().then(() => downstream.close()).then(() => Deno.exit(0));
    });
    await server.serveForever();
  }
}
