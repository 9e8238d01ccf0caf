// Memory per in-flight HTTP request blocked on a sleep: HttpServer (a greenlet per request)
// side by side with raw Deno.serve. Each server runs in its own process; N raw TCP clients
// send `GET /sleep/600000` and stay connected; once the server counts N handlers waiting,
// `/mem` (after a full GC) gives its heap and RSS; the difference from the idle figures,
// divided by N, is the cost of one waiting request.
//
//     deno run --allow-net --allow-run --allow-read bench/http_memory.ts [N=5000]
//
// (The server side is this same file run with `--serve=raw|lib PORT`.)
import { HttpServer } from "../http.ts";
import { sleep } from "../hub.ts";

interface Mem {
  waiting: number;
  heapUsed: number;
  rss: number;
}

const serveArg = Deno.args.find((a) => a.startsWith("--serve="));
if (serveArg !== undefined) {
  const impl = serveArg.slice(8);
  const port = Number(Deno.args[Deno.args.length - 1]);
  let waiting = 0;
  const gc = (globalThis as { gc?: () => void }).gc!;
  const mem = (): Response => {
    for (let i = 0; i < 3; i++) gc();
    const { heapUsed, rss } = Deno.memoryUsage();
    return Response.json({ waiting, heapUsed, rss } satisfies Mem);
  };
  if (impl === "raw") {
    Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, async (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/mem") return mem();
      waiting++;
      await new Promise((resolve) => setTimeout(resolve, Number(path.slice(7))));
      waiting--;
      return new Response("hello world");
    });
  } else {
    new HttpServer(["127.0.0.1", port], async (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/mem") return mem();
      waiting++;
      try {
        await sleep(Number(path.slice(7)));
      } finally {
        waiting--;
      }
      return new Response("hello world");
    }, { log: null }).start();
  }
} else {
  const n = Number(Deno.args[0] ?? 5000);
  const results: Record<string, { heap: number; rss: number }> = {};
  for (const impl of ["raw", "lib"]) {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--v8-flags=--expose-gc",
        new URL(import.meta.url).pathname,
        `--serve=${impl}`,
        String(port),
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const base = `http://127.0.0.1:${port}`;
    const getMem = async (): Promise<Mem> => await (await fetch(`${base}/mem`)).json();
    for (;;) {
      try {
        await getMem();
        break;
      } catch {
        await sleep(100);
      }
    }
    // Warm up both paths, then measure idle.
    for (let i = 0; i < 200; i++) await (await fetch(`${base}/sleep/0`)).text();
    const idle = await getMem();
    const request = new TextEncoder().encode(`GET /sleep/600000 HTTP/1.1\r\nHost: x\r\n\r\n`);
    const conns: Deno.Conn[] = [];
    for (let i = 0; i < n; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(request);
      conns.push(conn);
    }
    let loaded = await getMem();
    while (loaded.waiting < n) {
      await sleep(100);
      loaded = await getMem();
    }
    results[impl] = {
      heap: (loaded.heapUsed - idle.heapUsed) / n,
      rss: (loaded.rss - idle.rss) / n,
    };
    for (const conn of conns) conn.close();
    child.kill("SIGTERM");
    await child.status;
  }
  const row = (label: string, key: "heap" | "rss") =>
    `| ${label} | ${Math.round(results.raw[key])} | ${Math.round(results.lib[key])} | ${
      (results.lib[key] / results.raw[key]).toFixed(2)
    }x |`;
  console.log(`Memory per in-flight request blocked on a sleep (${n} requests)\n`);
  console.log("| bytes per request | raw Deno.serve | HttpServer | ratio |");
  console.log("| --- | --- | --- | --- |");
  console.log(row("JS heap (after GC)", "heap"));
  console.log(row("RSS", "rss"));
}
