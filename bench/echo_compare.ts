/**
 * TCP echo, side by side: 50 client greenlets x 2,000 round trips of 64 bytes, server and
 * clients in one process, on (1) StreamServer + Socket, (2) a hand-written raw
 * `Deno.listen` / `Deno.connect` echo, and (3) gevent's StreamServer
 * (`/usr/bin/python3 ../shared/anchors/gevent/bench.py echo`).
 *
 * ```sh
 * deno run -A bench/echo_compare.ts [--runs=5] [--clients=50] [--rounds=2000] [--no-gevent]
 *   [--baseline=DIR] [--json]
 * ```
 *
 * Every measurement runs in a fresh process (`--child lib|raw`), after a warm-up of a tenth
 * of the size in that process; the runs of the implementations are interleaved so
 * background noise spreads over all of them, and the table shows the median (lowest,
 * highest). Targets (issue 3): lib >= 90% of raw Deno, lib >= 1.5x gevent. When gevent
 * cannot run, the reference median in `../shared/anchors/gevent/results.json` is used and
 * marked as such.
 *
 * `--baseline=DIR` adds another copy of the library (a checkout of an earlier commit, say
 * `git archive HEAD | tar -x -C DIR`) to the same interleaved runs, so a change is measured
 * before and after in one run: its row and its ratio to raw Deno are printed as well.
 *
 * `--json` prints one JSON object instead of the table (what `bench/report.ts` reads): the
 * samples and medians in round trips per second of `lib`, `raw`, `gevent` (and `baseline`),
 * `gevent.source` (`measured`, `results.json` or absent) and the ratios `vsRaw` (lib / raw)
 * and `vsGevent` (lib / gevent).
 *
 * @module
 */

type Lib = typeof import("../mod.ts");

const SIZE = 64;

function stringOption(name: string): string | undefined {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg?.slice(name.length + 3);
}

function option(name: string, fallback: number): number {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? fallback : Number(arg.slice(name.length + 3));
}

// ---------------------------------------------------------------------------------------
// The two JavaScript implementations (run in a child process)

async function libEcho(lib: Lib, clients: number, rounds: number): Promise<number> {
  const { joinAll, socket, spawn, StreamServer } = lib;
  const server = new StreamServer(["127.0.0.1", 0], async (sock) => {
    sock.setNoDelay();
    for (;;) {
      const data = await sock.recv(65536);
      if (data.length === 0) break;
      await sock.sendall(data);
    }
  });
  server.start();
  const payload = new Uint8Array(SIZE).fill(120);
  const client = async (): Promise<void> => {
    using sock = await socket.createConnection(server.address);
    sock.setNoDelay();
    const buf = new Uint8Array(SIZE);
    for (let i = 0; i < rounds; i++) {
      await sock.sendall(payload);
      let got = 0;
      while (got < SIZE) {
        const n = await sock.recvInto(got === 0 ? buf : buf.subarray(got));
        if (n === 0) throw new Error("server closed");
        got += n;
      }
    }
  };
  const t0 = performance.now();
  await joinAll(Array.from({ length: clients }, () => spawn(client)), { raiseError: true });
  const seconds = (performance.now() - t0) / 1000;
  await server.stop();
  return (clients * rounds) / seconds;
}

async function rawEcho(clients: number, rounds: number): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const handle = async (conn: Deno.TcpConn): Promise<void> => {
    conn.setNoDelay(true);
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        let off = 0;
        while (off < n) off += await conn.write(buf.subarray(off, n));
      }
    } catch {
      // The benchmark is over.
    } finally {
      if (open.delete(conn)) conn.close();
    }
  };
  const accepting = (async () => {
    try {
      for (;;) {
        const conn = await listener.accept();
        open.add(conn);
        handle(conn);
      }
    } catch {
      // Closed.
    }
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  const payload = new Uint8Array(SIZE).fill(120);
  const client = async (): Promise<void> => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const buf = new Uint8Array(SIZE);
    try {
      for (let i = 0; i < rounds; i++) {
        let off = 0;
        while (off < SIZE) off += await conn.write(off === 0 ? payload : payload.subarray(off));
        let got = 0;
        while (got < SIZE) {
          const n = await conn.read(got === 0 ? buf : buf.subarray(got));
          if (n === null) throw new Error("server closed");
          got += n;
        }
      }
    } finally {
      conn.close();
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, client));
  const seconds = (performance.now() - t0) / 1000;
  listener.close();
  await accepting;
  for (const c of [...open]) {
    open.delete(c);
    c.close();
  }
  return (clients * rounds) / seconds;
}

// ---------------------------------------------------------------------------------------
// The parent: interleaved runs, gevent, the table

interface Figures {
  values: number[];
  note?: string;
}

/** One measurement in a fresh process: the library (from `libDir` if given) or raw Deno. */
async function child(
  kind: "lib" | "raw",
  clients: number,
  rounds: number,
  libDir?: string,
): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      import.meta.filename!,
      "--child",
      kind,
      `--clients=${clients}`,
      `--rounds=${rounds}`,
      ...(libDir === undefined ? [] : [`--lib=${libDir}`]),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`child ${kind} failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout)).roundTripsPerSec;
}

function anchorsDir(): string {
  const here = new URL("../..", import.meta.url).pathname; // the directory above the repo
  return `${here}shared/anchors/gevent`;
}

async function gevent(): Promise<number | string> {
  try {
    const out = await new Deno.Command("/usr/bin/python3", {
      args: [`${anchorsDir()}/bench.py`, "echo"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) return new TextDecoder().decode(out.stderr).trim().split("\n").at(-1)!;
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
    return JSON.parse(line).round_trips_per_sec;
  } catch (error) {
    return String(error);
  }
}

async function geventReference(): Promise<number | undefined> {
  try {
    const text = await Deno.readTextFile(`${anchorsDir()}/results.json`);
    return JSON.parse(text).echo.median;
  } catch {
    return undefined;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function fmt(f: Figures): string {
  if (f.values.length === 0) return `n/a${f.note ? ` (${f.note})` : ""}`;
  const m = Math.round(median(f.values)).toLocaleString("en-US");
  const lo = Math.round(Math.min(...f.values)).toLocaleString("en-US");
  const hi = Math.round(Math.max(...f.values)).toLocaleString("en-US");
  return `${m} (${lo}-${hi})${f.note ? ` ${f.note}` : ""}`;
}

async function main(): Promise<void> {
  const clients = option("clients", 50);
  const rounds = option("rounds", 2000);
  const at = Deno.args.indexOf("--child");
  if (at >= 0) {
    const kind = Deno.args[at + 1] as "lib" | "raw";
    let run = rawEcho;
    if (kind === "lib") {
      // Only the library under test is loaded (a second copy would bring a second hub).
      const dir = stringOption("lib");
      const lib: Lib = await import(
        dir === undefined ? "../mod.ts" : new URL(`file://${Deno.realPathSync(dir)}/mod.ts`).href
      );
      run = (c, r) => libEcho(lib, c, r);
    }
    await run(clients, Math.max(1, Math.round(rounds / 10))); // warm-up
    const roundTripsPerSec = await run(clients, rounds);
    console.log(JSON.stringify({ kind, roundTripsPerSec }));
    return;
  }
  const runs = option("runs", 5);
  const withGevent = !Deno.args.includes("--no-gevent");
  const baselineDir = stringOption("baseline");
  const lib: Figures = { values: [] };
  const base: Figures = { values: [] };
  const raw: Figures = { values: [] };
  const gev: Figures = { values: [] };
  for (let i = 0; i < runs; i++) {
    raw.values.push(await child("raw", clients, rounds));
    lib.values.push(await child("lib", clients, rounds));
    if (baselineDir !== undefined) {
      base.values.push(await child("lib", clients, rounds, baselineDir));
    }
    if (withGevent && gev.note === undefined) {
      const g = await gevent();
      if (typeof g === "number") gev.values.push(g);
      else gev.note = `gevent did not run: ${g}`;
    }
  }
  if (gev.values.length === 0) {
    const ref = await geventReference();
    if (ref !== undefined) {
      gev.values.push(ref);
      gev.note = "(reference median from results.json, not this run)";
    }
  }
  const l = median(lib.values);
  const r = median(raw.values);
  if (Deno.args.includes("--json")) {
    const measured = gev.values.length > 0 && gev.note === undefined;
    const cell = (f: Figures) =>
      f.values.length === 0 ? undefined : { median: median(f.values), values: f.values };
    const g = gev.values.length > 0 ? median(gev.values) : undefined;
    console.log(JSON.stringify({
      clients,
      rounds,
      size: SIZE,
      runs,
      unit: "round trips/s",
      lib: cell(lib),
      raw: cell(raw),
      baseline: baselineDir === undefined ? undefined : { dir: baselineDir, ...cell(base) },
      gevent: {
        ...cell(gev),
        source: gev.values.length === 0 ? undefined : measured ? "measured" : "results.json",
        note: gev.note,
      },
      vsRaw: l / r,
      vsGevent: g === undefined ? undefined : l / g,
    }));
    return;
  }
  console.log(`TCP echo: ${clients} clients x ${rounds} round trips of ${SIZE} bytes, one process`);
  console.log(`median of ${runs} runs (lowest-highest), round trips per second\n`);
  console.log(`| implementation | round trips/s |`);
  console.log(`| --- | --- |`);
  console.log(`| @x/gevent StreamServer + Socket | ${fmt(lib)} |`);
  if (baselineDir !== undefined) {
    console.log(`| the same, baseline ${baselineDir} | ${fmt(base)} |`);
  }
  console.log(`| raw Deno.listen / Deno.connect | ${fmt(raw)} |`);
  console.log(`| gevent 22.10 StreamServer | ${fmt(gev)} |`);
  console.log();
  const vsRaw = l / r;
  console.log(
    `lib / raw Deno = ${vsRaw.toFixed(2)} (target >= 0.90: ${vsRaw >= 0.9 ? "met" : "MISSED"})`,
  );
  if (baselineDir !== undefined) {
    console.log(`baseline / raw = ${(median(base.values) / r).toFixed(2)} (same run)`);
  }
  if (gev.values.length > 0) {
    const g = median(gev.values);
    const vsGevent = l / g;
    console.log(
      `lib / gevent   = ${vsGevent.toFixed(2)} (target >= 1.5: ${
        vsGevent >= 1.5 ? "met" : "MISSED"
      })`,
    );
    console.log(`raw / gevent   = ${(r / g).toFixed(2)}`);
  }
}

if (import.meta.main) await main();
