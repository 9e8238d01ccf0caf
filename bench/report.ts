/**
 * `deno task bench:report`: runs the side-by-side benchmarks, each in its `--json` mode, and
 * writes `docs/benchmarks.md` with the machine's facts, each workload's figures in tables and
 * SVG bar charts of the ratios (`docs/benchmarks/*.svg`), all from this one run. The run's
 * raw output is kept beside them (`docs/benchmarks/results.json`).
 *
 * ```sh
 * deno task bench:report [--quick] [--runs=N] [--skip=gevent,drivers,http,...] [--out=DIR]
 * deno task bench:report --from=docs/benchmarks/results.json   # redraw a saved run, run nothing
 * ```
 *
 * The parts, in order (each a fresh process; a part that fails or is skipped is said so on
 * the page, and the rest goes on):
 *
 * | part | script | what |
 * | --- | --- | --- |
 * | `compare` | `bench/compare.ts` | spawn+joinAll, sleep(0), Event ping-pong, heap per blocked greenlet vs raw promises vs gevent |
 * | `toolbox` | `bench/compare_toolbox.ts` | Queue, Pool.imap, Semaphore vs raw vs p-map vs gevent |
 * | `echo` | `bench/echo_compare.ts` | TCP echo vs raw Deno vs gevent |
 * | `peers` | `bench/peers_compare.ts` | the `compare` workloads on Effection and Effect |
 * | `monkey` | `bench/monkey_compare.ts` | what `patchAll()` costs fetch, Deno.connect, resolveDns |
 * | `drivers` | `bench/drivers_compare.ts` | npm database drivers patched vs not (starts PostgreSQL and Redis) |
 * | `http` | `bench/http_compare.sh` | HttpServer vs raw Deno.serve vs gevent.pywsgi under wrk |
 *
 * `--skip=` takes part names and `gevent` (every part then uses gevent's reference figures of
 * `../shared/anchors/gevent/results.json`, marked as such); it can be repeated or given as
 * `--skip NAME`. gevent, wrk and the database servers are probed first: what is missing is
 * skipped with the reason on the page. `--quick` runs one round of fewer workloads at smaller
 * sizes (a smoke test of the pipeline; the page says its figures are not representative).
 * `http` always runs its anchor script, which measures gevent.pywsgi too (`--skip=gevent`
 * does not apply to it; without gevent its rows say n/a).
 * `--runs=N` sets the fresh processes per cell of `compare` and `echo` and the rounds of
 * `toolbox` (default 3; the peers run once per case: Effection's spawn+join alone takes
 * several seconds). `--from=FILE` redraws the page and charts from the `results.json` of an
 * earlier run without running anything.
 *
 * @module
 */

import {
  type Bar,
  barChart,
  type Chart,
  formatRatio,
  type Machine,
  renderMarkdown,
  type Report,
  type Section,
} from "./_report_render.ts";
import type { Cell, ResultRow as CompareRow } from "./compare.ts";

/** The parts of the run, in order. */
export const PARTS = ["compare", "toolbox", "echo", "peers", "monkey", "drivers", "http"] as const;
/** A part of the run. */
export type Part = typeof PARTS[number];
/** The charts' files under `docs/benchmarks/` (each written only when it has bars). */
const CHART_FILES = [
  "lib-vs-raw.svg",
  "lib-vs-gevent.svg",
  "lib-vs-peers.svg",
  "patching-overhead.svg",
] as const;

/** Options of the command line. */
export interface Options {
  quick: boolean;
  /** Parts (and `gevent`) not to run. */
  skip: Set<Part | "gevent">;
  /** Directory of `benchmarks.md` (default: `docs/` of the repository). */
  out: string;
  /** Runs per cell of compare/echo, rounds of toolbox (default 3, 1 with `--quick`). */
  runs?: number;
  /** Redraw from this `results.json` instead of running. */
  from?: string;
}

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");

/** Parses the command line. */
export function parseArgs(args: string[]): Options {
  const opts: Options = { quick: false, skip: new Set(), out: `${ROOT}/docs` };
  const skippable = [...PARTS, "gevent"];
  const addSkip = (list: string) => {
    for (const name of list.split(",").filter((x) => x !== "")) {
      if (!skippable.includes(name)) {
        throw new TypeError(
          `Unknown part in '--skip': ${name} (parts: ${skippable.join(", ")})`,
        );
      }
      opts.skip.add(name as Part | "gevent");
    }
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--quick") opts.quick = true;
    else if (arg.startsWith("--skip=")) addSkip(arg.slice("--skip=".length));
    else if (arg === "--skip") {
      if (i + 1 >= args.length) {
        throw new TypeError("'--skip' needs a value: current value is none");
      }
      addSkip(args[++i]);
    } else if (arg.startsWith("--out=")) opts.out = arg.slice("--out=".length).replace(/\/$/, "");
    else if (arg.startsWith("--from=")) opts.from = arg.slice("--from=".length);
    else if (arg.startsWith("--runs=")) {
      const runs = Number(arg.slice("--runs=".length));
      if (!Number.isInteger(runs) || runs < 1) {
        throw new RangeError(`'--runs' must be a positive integer: current value is ${arg}`);
      }
      opts.runs = runs;
    } else {
      throw new TypeError(
        `Unknown option: ${arg} (options: --quick, --runs=N, --skip=${
          skippable.join("|")
        }, --out=DIR, --from=FILE)`,
      );
    }
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------
// Running the parts

const decoder = new TextDecoder();

/** What one part printed: its JSON, or why there is none. */
export interface PartResult {
  json?: unknown;
  error?: string;
  skipped?: string;
  command: string;
  seconds?: number;
}

/** Runs a command, streaming its stderr, and parses the last JSON line of its stdout. */
async function runPart(
  cmd: string,
  args: string[],
  options: { timeoutMs: number; env?: Record<string, string>; shown: string },
): Promise<PartResult> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeoutMs);
  const t0 = performance.now();
  console.error(`\n=== ${options.shown}`);
  try {
    const out = await new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
      env: { NO_COLOR: "1", RUST_BACKTRACE: "0", ...options.env },
      signal: controller.signal,
    }).output();
    const seconds = (performance.now() - t0) / 1000;
    const text = decoder.decode(out.stdout).trim();
    const lines = text.split("\n");
    // The JSON is the whole output (some scripts indent it) or its last line.
    const last = /^[[{]/.test(text) ? text : lines.at(-1)?.startsWith("{") ? lines.at(-1)! : "";
    if (controller.signal.aborted) {
      return {
        command: options.shown,
        seconds,
        error: `stopped after ${options.timeoutMs / 1000} s`,
      };
    }
    if (!out.success || last === "") {
      return {
        command: options.shown,
        seconds,
        error: `exited with code ${out.code}${last === "" ? " without a JSON result" : ""}: ` +
          lines.slice(-3).join(" / ").slice(0, 400),
      };
    }
    return { command: options.shown, seconds, json: JSON.parse(last) };
  } catch (error) {
    return { command: options.shown, error: String((error as Error).message ?? error) };
  } finally {
    clearTimeout(timer);
  }
}

async function commandOutput(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    return out.success ? decoder.decode(out.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

function loadavg(): number[] {
  try {
    return Deno.loadavg();
  } catch {
    return [];
  }
}

async function machineFacts(quick: boolean, start: Date): Promise<Machine> {
  // Deno asks for --allow-all to read /proc/cpuinfo; cat needs only --allow-run.
  const info = await commandOutput("cat", ["/proc/cpuinfo"]) ?? "";
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(info)?.[1] ?? "unknown";
  const py = await commandOutput("/usr/bin/python3", [
    "-c",
    "import sys\ntry:\n import gevent; g = 'gevent ' + gevent.__version__\n" +
    "except Exception as e:\n g = 'no gevent (' + type(e).__name__ + ')'\n" +
    "print(sys.version.split()[0] + ' / ' + g)",
  ]);
  return {
    date: start.toISOString().replace(/\.\d+Z$/, "Z"),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    python: py ?? "/usr/bin/python3 not available",
    cpus: navigator.hardwareConcurrency,
    cpuModel,
    loadStart: loadavg(),
    loadEnd: [],
    revision: (await commandOutput("git", ["-C", ROOT, "describe", "--always", "--dirty"])) ??
      "unknown",
    command: `deno task bench:report ${Deno.args.join(" ")}`.trim(),
    seconds: 0,
    quick,
  };
}

/** Why gevent cannot run here, or undefined. */
async function geventProblem(): Promise<string | undefined> {
  const ok = await commandOutput("/usr/bin/python3", ["-c", "import gevent; print('ok')"]);
  if (ok !== "ok") {
    return "/usr/bin/python3 cannot import gevent (apt-get install -y python3-gevent)";
  }
  try {
    await Deno.stat(`${ROOT}/../shared/anchors/gevent/bench.py`);
  } catch {
    return "../shared/anchors/gevent/bench.py not found";
  }
  return undefined;
}

async function which(name: string): Promise<boolean> {
  return (await commandOutput("bash", ["-c", `command -v ${name}`])) !== undefined;
}

/** Runs every part that is not skipped; returns their results by part. */
async function runAll(opts: Options): Promise<Record<Part, PartResult>> {
  const deno = Deno.execPath();
  const q = opts.quick;
  const runs = opts.runs ?? (q ? 1 : 3);
  const gevent = opts.skip.has("gevent") ? "--skip=gevent" : await geventProblem();
  const noGevent = gevent === undefined ? [] : ["--no-gevent"];
  const minutes = (m: number) => m * 60_000;
  const results = {} as Record<Part, PartResult>;
  const plan: Record<Part, () => Promise<PartResult>> = {
    compare: () => {
      const args = [
        "bench/compare.ts",
        "--json",
        `--runs=${runs}`,
        ...noGevent,
        ...(q ? ["spawn_join", "event_pingpong", "rss_blocked"] : []),
      ];
      return runPart(deno, ["run", "-A", "--v8-flags=--expose-gc", ...args], {
        timeoutMs: minutes(q ? 3 : 8),
        shown: `deno run -A --v8-flags=--expose-gc ${args.join(" ")}`,
      });
    },
    toolbox: () => {
      const args = [
        "bench/compare_toolbox.ts",
        "--json",
        `--rounds=${runs}`,
        ...noGevent,
        ...(q ? ["queue_unbounded", "pool_imap"] : []),
      ];
      return runPart(deno, ["run", "-A", "--v8-flags=--expose-gc", ...args], {
        timeoutMs: minutes(q ? 3 : 6),
        shown: `deno run -A --v8-flags=--expose-gc ${args.join(" ")}`,
      });
    },
    echo: () => {
      const args = [
        "bench/echo_compare.ts",
        "--json",
        `--runs=${runs}`,
        ...(q ? ["--rounds=200"] : []),
        ...noGevent,
      ];
      return runPart(deno, ["run", "-A", ...args], {
        timeoutMs: minutes(q ? 2 : 5),
        shown: `deno run -A ${args.join(" ")}`,
      });
    },
    peers: () => {
      const args = [
        "bench/peers_compare.ts",
        "--json",
        "--runs=1",
        ...(q ? ["spawn_join/effect", "rss_blocked/effect", "pool_imap/effect"] : []),
      ];
      return runPart(deno, ["run", "-A", "--no-lock", "--v8-flags=--expose-gc", ...args], {
        timeoutMs: minutes(q ? 3 : 8),
        shown: `deno run -A --no-lock --v8-flags=--expose-gc ${args.join(" ")}`,
      });
    },
    monkey: () => {
      const args = [
        "bench/monkey_compare.ts",
        "--json",
        ...(q ? ["--rounds=5", "--http=20", "--echo=200", "--dns=10"] : ["--rounds=40"]),
      ];
      return runPart(deno, ["run", "-A", ...args], {
        timeoutMs: minutes(q ? 2 : 5),
        shown: `deno run -A ${args.join(" ")}`,
      });
    },
    drivers: () => {
      const args = [
        "bench/drivers_compare.ts",
        "--json",
        ...(q ? ["--rounds=2", "--ops=200", "--reps=2"] : ["--rounds=7", "--ops=1000", "--reps=5"]),
      ];
      return runPart(deno, ["run", "-A", ...args], {
        timeoutMs: minutes(q ? 3 : 6),
        shown: `deno run -A ${args.join(" ")}`,
      });
    },
    http: () =>
      runPart("bash", ["bench/http_compare.sh", "--json"], {
        timeoutMs: minutes(q ? 2 : 4),
        env: { WRK_S: q ? "1" : "5" },
        shown: `WRK_S=${q ? 1 : 5} bash bench/http_compare.sh --json`,
      }),
  };
  for (const part of PARTS) {
    if (opts.skip.has(part)) {
      results[part] = { command: "", skipped: `skipped on the command line (--skip=${part})` };
      continue;
    }
    if (part === "http" && !(await which("wrk"))) {
      results[part] = { command: "", skipped: "wrk is not installed (apt-get install -y wrk)" };
      continue;
    }
    if (part === "drivers" && !(await which("redis-server") && await which("psql"))) {
      results[part] = {
        command: "",
        skipped: "PostgreSQL or Redis is not installed (apt-get install -y postgresql redis)",
      };
      continue;
    }
    results[part] = await plan[part]();
    if (results[part].error) console.error(`${part} failed: ${results[part].error}`);
  }
  if (gevent !== undefined) {
    (results as Record<string, unknown>).geventNote = gevent;
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// From the scripts' JSON to tables and charts (pure)

interface ToolboxRow {
  workload: string;
  title: string;
  medians: Record<string, number>;
  samples: Record<string, number[]>;
  gevent?: number;
  geventSource: string;
  vsGevent?: number;
  vsRaw: number;
  vsPMap?: number;
  target: string;
  met?: boolean;
}

interface EchoResult {
  clients: number;
  rounds: number;
  size: number;
  runs: number;
  lib?: Cell;
  raw?: Cell;
  gevent: Partial<Cell> & { note?: string };
  vsRaw: number;
  vsGevent?: number;
}

interface PeerRow {
  workload: string;
  peer: string;
  version: string;
  how: string;
  unit: "s" | "B";
  values: number[];
  median?: number;
  error?: string;
}

interface MonkeyRow {
  name: string;
  ops: number;
  control: boolean;
  wall: { original: number; patched: number; ratio: number };
  cpu: { original: number; patched: number; ratio: number };
}

interface Stats {
  median: number | null;
  min: number | null;
  max: number | null;
}

interface DriversResult {
  rounds: number;
  ops: number;
  reps: number;
  deadline: number;
  overhead: {
    driver: string;
    call: string;
    unpatched: Stats;
    patched: Stats;
    ratio: number | null;
    paired: number | null;
    cpuRatio: number | null;
  }[];
  kill: {
    driver: string;
    slowCall: string;
    killDead: Stats;
    killFree: Stats;
    timeoutValue: Stats;
    timeoutFree: Stats;
  }[];
  anomalies: { what: string; count: number }[];
}

interface HttpRow {
  server: string;
  route: string;
  rps: number | null;
  p99Ms: number | null;
}

/** The JSON of every part (or why it is missing), as `report.ts` collected it. */
export interface RunResults {
  compare?: PartResult;
  toolbox?: PartResult;
  echo?: PartResult;
  peers?: PartResult;
  monkey?: PartResult;
  drivers?: PartResult;
  http?: PartResult;
  /** Why gevent was not run, if it was not. */
  geventNote?: string;
}

function fmtSeconds(s: number): string {
  if (s < 0.001) return `${(s * 1e6).toFixed(1)} us`;
  if (s < 1) return `${(s * 1000).toFixed(1)} ms`;
  return `${s.toFixed(3)} s`;
}

function fmtValue(unit: string, v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return "n/a";
  if (unit === "B") return `${Math.round(v).toLocaleString("en-US")} B`;
  if (unit === "s") return fmtSeconds(v);
  return Math.round(v).toLocaleString("en-US");
}

/** "median (lowest-highest)" of a cell, with its source when it is not this run. */
function fmtCell(unit: string, c: Partial<Cell> | undefined): string {
  if (c === undefined || c.median === undefined) return "n/a";
  const m = fmtValue(unit, c.median);
  if (c.source === "results.json") return `${m} (results.json)`;
  const vs = c.values ?? [];
  if (vs.length < 2) return m;
  return `${m} (${fmtValue(unit, Math.min(...vs))}-${fmtValue(unit, Math.max(...vs))})`;
}

const metText = (ok: boolean): string => ok ? "met" : "missed";

const fmtNum = (x: number | null | undefined, digits: number): string =>
  x === null || x === undefined || !Number.isFinite(x) ? "n/a" : x.toFixed(digits);

function failed(title: string, r: PartResult | undefined): Section | undefined {
  if (r === undefined) return { title, tables: [], skipped: "not run" };
  if (r.skipped !== undefined) return { title, tables: [], skipped: r.skipped, command: undefined };
  if (r.error !== undefined) {
    return { title, tables: [], failed: r.error, command: r.command };
  }
  return undefined;
}

const fromRef = (source: string | undefined) =>
  source === "results.json" ? "(gevent: results.json)" : undefined;

/**
 * Turns the parts' JSON into the page: tables of raw figures per part and the four charts.
 * Pure: the same results give the same page.
 */
export function buildReport(machine: Machine, run: RunResults): Report {
  const sections: Section[] = [];
  const notes: string[] = [];
  const vsRaw: Bar[] = [];
  const vsGevent: Bar[] = [];
  const vsPeers: Bar[] = [];
  const patching: Bar[] = [];
  /** The library's figure per workload (from compare/toolbox), for the peers' ratios. */
  const libFigure = new Map<string, { value: number; unit: string; from: string }>();
  if (run.geventNote !== undefined) {
    notes.push(
      `gevent was not run (${run.geventNote}): its figures are the reference medians of ` +
        "`../shared/anchors/gevent/results.json` (another run on the same kind of machine), " +
        "marked *results.json*.",
    );
  }

  // compare.ts
  {
    const title = "Core: spawn, switch, wait, memory (bench/compare.ts)";
    const bad = failed(title, run.compare);
    if (bad) sections.push(bad);
    else {
      const json = run.compare!.json as { runs: number; warmup: number; results: CompareRow[] };
      const rows = json.results;
      for (const r of rows) {
        if (r.lib) {
          libFigure.set(r.workload, { value: r.lib.median, unit: r.unit, from: "compare" });
        }
        vsRaw.push({ group: "core (bench/compare.ts)", label: r.workload, value: r.vsRaw });
        if (r.workload !== "rss_blocked_async") {
          vsGevent.push({
            group: "core (bench/compare.ts)",
            label: r.workload,
            value: r.vsGevent,
            note: fromRef(r.gevent?.source),
          });
        }
      }
      sections.push({
        title,
        command: run.compare!.command,
        intro: `${json.runs} fresh process(es) per cell, implementations interleaved; ` +
          `warm-up at ${json.warmup} of the size. Cells: median (lowest-highest). Lower is ` +
          "better for every figure; gevent's memory figure is RSS, the JavaScript ones are V8 " +
          "heap after a full collection.",
        tables: [{
          title: "Figures",
          head: [
            "workload",
            "@x/gevent",
            "raw promises",
            "gevent",
            "gevent / lib",
            "lib / raw",
            "target",
            "met",
          ],
          rows: rows.map((r) => [
            r.workload,
            fmtCell(r.unit, r.lib),
            fmtCell(r.unit, r.raw),
            fmtCell(r.unit, r.gevent),
            formatRatio(r.vsGevent),
            formatRatio(r.vsRaw),
            r.target ?? "",
            r.met === undefined ? (r.target ? "?" : "") : metText(r.met),
          ]),
          notes: [
            ...rows.map((r) => `- \`${r.workload}\`: ${r.title}`),
            ...rows.flatMap((r) => r.errors.map((e) => `- **error** in \`${r.workload}\`: ${e}`)),
          ],
        }],
      });
    }
  }

  // compare_toolbox.ts
  {
    const title = "Toolbox: Queue, Pool, Semaphore (bench/compare_toolbox.ts)";
    const bad = failed(title, run.toolbox);
    if (bad) sections.push(bad);
    else {
      const rows = run.toolbox!.json as ToolboxRow[];
      const rounds = rows[0] ? rows[0].samples.lib.length : 0;
      for (const r of rows) {
        libFigure.set(r.workload, { value: r.medians.lib, unit: "s", from: "toolbox" });
        vsRaw.push({
          group: "toolbox (bench/compare_toolbox.ts)",
          label: r.workload,
          value: r.vsRaw,
        });
        if (r.gevent !== undefined) {
          vsGevent.push({
            group: "toolbox (bench/compare_toolbox.ts)",
            label: r.workload,
            value: r.vsGevent,
            note: fromRef(r.geventSource),
          });
        }
        if (r.vsPMap !== undefined) {
          vsPeers.push({
            group: "pool_imap: map 100,000 items at concurrency 100",
            label: "p-map (same process)",
            value: r.vsPMap,
          });
        }
      }
      const cell = (r: ToolboxRow, impl: string) =>
        r.samples[impl] === undefined
          ? "n/a"
          : fmtCell("s", { median: r.medians[impl], values: r.samples[impl] });
      sections.push({
        title,
        command: run.toolbox!.command,
        intro: `One process for the JavaScript implementations: a warm-up at a tenth of the ` +
          `size, then ${rounds} round(s) with the implementations interleaved; gevent in its ` +
          "own process. Cells: median (lowest-highest) in time; lower is better.",
        tables: [{
          title: "Figures",
          head: [
            "workload",
            "@x/gevent",
            "raw promises",
            "p-map",
            "gevent",
            "gevent / lib",
            "lib / raw",
            "p-map / lib",
            "target",
            "met",
          ],
          rows: rows.map((r) => [
            r.workload,
            cell(r, "lib"),
            cell(r, "raw"),
            cell(r, "p-map"),
            r.gevent === undefined
              ? "n/a"
              : `${fmtSeconds(r.gevent)}${
                r.geventSource === "results.json" ? " (results.json)" : ""
              }`,
            formatRatio(r.vsGevent),
            formatRatio(r.vsRaw),
            formatRatio(r.vsPMap),
            r.target,
            r.met === undefined ? "?" : metText(r.met),
          ]),
          notes: rows.map((r) => `- \`${r.workload}\`: ${r.title}`),
        }],
      });
    }
  }

  // echo_compare.ts
  {
    const title = "TCP echo (bench/echo_compare.ts)";
    const bad = failed(title, run.echo);
    if (bad) sections.push(bad);
    else {
      const e = run.echo!.json as EchoResult;
      const label = "TCP echo";
      // Round trips per second: time per round trip is its inverse, so lib/raw in time is
      // raw/lib in throughput.
      vsRaw.push({ group: "I/O", label, value: e.vsRaw > 0 ? 1 / e.vsRaw : undefined });
      vsGevent.push({ group: "I/O", label, value: e.vsGevent, note: fromRef(e.gevent.source) });
      const unit = "rt/s";
      sections.push({
        title,
        command: run.echo!.command,
        intro: `${e.clients} client greenlets x ${e.rounds} round trips of ${e.size} bytes, ` +
          `server and clients in one process; ${e.runs} fresh process(es) per implementation. ` +
          "Round trips per second, median (lowest-highest); higher is better.",
        tables: [{
          title: "Figures",
          head: ["implementation", "round trips/s", "vs @x/gevent"],
          rows: [
            ["@x/gevent StreamServer + Socket", fmtCell(unit, e.lib), "1.00x"],
            [
              "raw Deno.listen / Deno.connect",
              fmtCell(unit, e.raw),
              e.lib && e.raw ? formatRatio(e.raw.median / e.lib.median) : "n/a",
            ],
            [
              "gevent StreamServer",
              fmtCell(unit, e.gevent as Partial<Cell>),
              e.lib && e.gevent.median ? formatRatio(e.gevent.median / e.lib.median) : "n/a",
            ],
          ],
          notes: [
            `Targets (issue 3): @x/gevent at least 0.90x raw Deno's round trips/s: ` +
            `${metText(e.vsRaw >= 0.9)} (${formatRatio(e.vsRaw)}); at least 1.5x gevent's: ` +
            `${e.vsGevent === undefined ? "?" : metText(e.vsGevent >= 1.5)} ` +
            `(${formatRatio(e.vsGevent)}).`,
            ...(e.gevent.note ? [`gevent: ${e.gevent.note}`] : []),
          ],
        }],
      });
    }
  }

  // peers_compare.ts
  {
    const title = "JavaScript peers: Effection, Effect (bench/peers_compare.ts)";
    const bad = failed(title, run.peers);
    if (bad) sections.push(bad);
    else {
      const json = run.peers!.json as { runs: number; results: PeerRow[] };
      const groups: Record<string, string> = {
        spawn_join: "spawn_join: spawn + join 100,000 tasks",
        sleep0: "sleep0: 1,000,000 yields over 100 tasks",
        rss_blocked: "rss_blocked: heap per blocked task",
        pool_imap: "pool_imap: map 100,000 items at concurrency 100",
      };
      const rows = json.results.map((p) => {
        const lib = libFigure.get(p.workload);
        const ratio = lib !== undefined && p.median !== undefined
          ? p.median / lib.value
          : undefined;
        return { p, lib, ratio };
      });
      for (const { p, ratio } of rows) {
        vsPeers.push({
          group: groups[p.workload] ?? p.workload,
          label: `${p.peer} ${p.version}`,
          value: ratio,
          note: p.error ? "failed" : undefined,
        });
      }
      // Group the peers' bars by workload (p-map's bar came from the toolbox).
      const order = Object.values(groups);
      vsPeers.sort((a, b) => order.indexOf(a.group!) - order.indexOf(b.group!));
      sections.push({
        title,
        command: run.peers!.command,
        intro: `${json.runs} fresh process(es) per case, measured as \`compare.ts\` measures the ` +
          "library (a warm-up at a tenth of the size, a full collection, then the timed run; " +
          "memory: V8 heap growth per blocked task). The library's figure is the median of the " +
          "same workload measured by `compare.ts` (or `compare_toolbox.ts` for `pool_imap`) in " +
          "this run. Lower figures are better; peer / lib above 1 means the library is faster " +
          "or smaller.",
        tables: [{
          title: "Figures",
          head: ["workload", "peer", "peer's figure", "@x/gevent", "peer / lib", "how"],
          rows: rows.map(({ p, lib, ratio }) => [
            p.workload,
            `${p.peer} ${p.version}`,
            p.error ? `failed: ${p.error}` : fmtCell(p.unit, {
              median: p.median,
              values: p.values,
            }),
            lib === undefined ? "n/a (not measured)" : fmtValue(lib.unit, lib.value),
            formatRatio(ratio),
            p.how,
          ]),
          notes: [
            "Effection's own `sleep(0)` is a `setTimeout` (about 2 ms a hop on Deno, over 20 s " +
            "for this workload): the `sleep0` row uses `until()` of a resolved promise instead.",
          ],
        }],
      });
    }
  }

  // monkey_compare.ts
  {
    const title = "Monkey patching: unaware code in a greenlet (bench/monkey_compare.ts)";
    const bad = failed(title, run.monkey);
    if (bad) sections.push(bad);
    else {
      const json = run.monkey!.json as { rounds: number; rows: MonkeyRow[] };
      for (const r of json.rows) {
        patching.push({
          group: "monkey.patchAll() (bench/monkey_compare.ts)",
          label: r.name,
          value: r.wall.ratio,
        });
      }
      sections.push({
        title,
        command: run.monkey!.command,
        intro: `${json.rounds} rounds of alternating batches (original, patched), one greenlet ` +
          "per batch; medians in microseconds per operation, wall clock and CPU time of the " +
          "whole process. The control row runs the original against itself: its distance " +
          "from 1.000 is the noise.",
        tables: [{
          title: "Figures",
          head: [
            "workload",
            "ops per batch",
            "wall us/op original",
            "patched",
            "ratio",
            "CPU us/op original",
            "patched",
            "ratio",
            "wall ratio <= 1.10",
          ],
          rows: json.rows.map((r) => [
            r.name,
            String(r.ops),
            fmtNum(r.wall.original, 1),
            fmtNum(r.wall.patched, 1),
            fmtNum(r.wall.ratio, 3),
            fmtNum(r.cpu.original, 1),
            fmtNum(r.cpu.patched, 1),
            fmtNum(r.cpu.ratio, 3),
            r.control ? "(control)" : metText(r.wall.ratio <= 1.1),
          ]),
        }],
      });
    }
  }

  // drivers_compare.ts
  {
    const title = "Database drivers, patched vs not (bench/drivers_compare.ts)";
    const bad = failed(title, run.drivers);
    if (bad) sections.push(bad);
    else {
      const d = run.drivers!.json as DriversResult;
      const stats = (s: Stats, digits: number) =>
        `${fmtNum(s.median, digits)} (${fmtNum(s.min, digits)}-${fmtNum(s.max, digits)})`;
      const upTo = (s: Stats) => `${fmtNum(s.median, 1)} (${fmtNum(s.max, 1)})`;
      for (const r of d.overhead) {
        patching.push({
          group: "npm database drivers (bench/drivers_compare.ts)",
          label: `${r.driver}: ${r.call}`,
          value: r.ratio ?? undefined,
        });
      }
      sections.push({
        title,
        command: run.drivers!.command,
        intro: `PostgreSQL and Redis on loopback, started by the script. ${d.rounds} rounds ` +
          `of ${d.ops} sequential calls in one greenlet, patched and unpatched batches ` +
          "alternating; ms per batch, median (lowest-highest). *paired* is the median of the " +
          "rounds' own ratios.",
        tables: [
          {
            title: "What the patches cost",
            head: [
              "driver",
              "call",
              "unpatched ms",
              "patched ms",
              "ratio",
              "paired",
              "CPU ratio",
              "ratio <= 1.05",
            ],
            rows: d.overhead.map((r) => [
              r.driver,
              r.call,
              stats(r.unpatched, 0),
              stats(r.patched, 0),
              fmtNum(r.ratio, 3),
              fmtNum(r.paired, 3),
              fmtNum(r.cpuRatio, 3),
              r.ratio === null ? "?" : metText(r.ratio <= 1.05),
            ]),
          },
          {
            title: `Kill and timeout of a slow call, patched: ms, median (max) of ${d.reps}`,
            head: [
              "driver",
              "slow call",
              "kill → dead",
              "kill → server free",
              `withTimeout(${d.deadline}) → value`,
              "withTimeout → server free",
            ],
            rows: d.kill.map((r) => [
              r.driver,
              r.slowCall,
              upTo(r.killDead),
              upTo(r.killFree),
              upTo(r.timeoutValue),
              upTo(r.timeoutFree),
            ]),
            notes: d.anomalies.length === 0
              ? ["No anomalies."]
              : d.anomalies.map((a) => `- anomaly: ${a.what} (x${a.count})`),
          },
        ],
      });
    }
  }

  // http_compare.sh
  {
    const title = "HTTP: HttpServer vs raw Deno.serve vs gevent.pywsgi (bench/http_compare.sh)";
    const bad = failed(title, run.http);
    if (bad) sections.push(bad);
    else {
      const rows = (run.http!.json as { results: HttpRow[] }).results;
      const names: Record<string, string> = {
        lib: "@x/gevent HttpServer",
        "deno-raw": "raw Deno.serve",
        gevent: "gevent WSGIServer",
      };
      const rps = (server: string, route: string) =>
        rows.find((r) => r.server === server && r.route === route)?.rps ?? undefined;
      const routes = [...new Set(rows.map((r) => r.route))];
      for (const route of routes) {
        const lib = rps("lib", route);
        const raw = rps("deno-raw", route);
        const gev = rps("gevent", route);
        vsRaw.push({
          group: "I/O",
          label: `HTTP ${route}`,
          value: lib && raw ? raw / lib : undefined,
        });
        vsGevent.push({
          group: "I/O",
          label: `HTTP ${route}`,
          value: lib && gev ? lib / gev : undefined,
        });
      }
      sections.push({
        title,
        command: run.http!.command,
        intro: "`wrk -t1 -c100 --latency` on loopback against each server in turn " +
          "(`../shared/anchors/http/run.sh`); requests per second (higher is better) and p99 " +
          "latency (lower is better).",
        tables: [{
          title: "Figures",
          head: ["server", "route", "requests/s", "p99 ms", "rps vs @x/gevent"],
          rows: rows.map((r) => {
            const lib = rps("lib", r.route);
            return [
              names[r.server] ?? r.server,
              r.route,
              r.rps === null ? "n/a" : Math.round(r.rps).toLocaleString("en-US"),
              fmtNum(r.p99Ms, 2),
              r.rps !== null && lib ? formatRatio(r.rps / lib) : "n/a",
            ];
          }),
        }],
      });
    }
  }

  const charts: Chart[] = [
    {
      file: "lib-vs-raw.svg",
      title: "@x/gevent vs raw promises / raw Deno",
      ratio: "@x/gevent's time (or heap) per operation / raw's (I/O: raw throughput / ours)",
      better: "lower",
      reference: 1,
      bars: vsRaw,
    },
    {
      file: "lib-vs-gevent.svg",
      title: "@x/gevent vs gevent 22.10",
      ratio:
        "gevent's time (or memory) per operation / @x/gevent's (I/O: our throughput / gevent's)",
      better: "higher",
      reference: 1,
      bars: vsGevent,
    },
    {
      file: "lib-vs-peers.svg",
      title: "@x/gevent vs JavaScript peers",
      ratio: "the peer's time (or heap) / @x/gevent's, same workload, same run",
      better: "higher",
      reference: 1,
      bars: vsPeers,
    },
    {
      file: "patching-overhead.svg",
      title: "What monkey patching costs",
      ratio: "patched / unpatched time per call (wall clock, medians)",
      better: "lower",
      reference: 1,
      bars: patching,
    },
  ].filter((c) => c.bars.length > 0) as Chart[];

  notes.push(
    `Load average (1 / 5 / 15 min) was ${machine.loadStart.map((x) => x.toFixed(2)).join(" / ")} ` +
      `at the start and ${machine.loadEnd.map((x) => x.toFixed(2)).join(" / ")} at the end, ` +
      `on ${machine.cpus} CPUs: other work on the machine slows every implementation; the ` +
      "ratios (measured side by side, interleaved) are steadier than the absolute figures.",
    "Every bar is drawn to scale (linear, one scale per chart) and labelled with its value; a " +
      "bar whose value is missing says why.",
    "The raw output of every script in this run is in [benchmarks/results.json](benchmarks/results.json).",
  );
  return { machine, charts, sections, notes };
}

// ---------------------------------------------------------------------------------------------
// Main

/** Runs every part and collects the machine's facts around the run. */
async function run(opts: Options): Promise<{ machine: Machine; results: RunResults }> {
  const start = new Date();
  const t0 = performance.now();
  const machine = await machineFacts(opts.quick, start);
  console.error(
    `bench:report ${opts.quick ? "(quick) " : ""}on ${machine.cpus} CPUs, load ` +
      `${machine.loadStart.map((x) => x.toFixed(2)).join(" ")}; skipping: ` +
      `${[...opts.skip].join(", ") || "nothing"}`,
  );
  const results = await runAll(opts) as RunResults;
  machine.loadEnd = loadavg();
  machine.seconds = (performance.now() - t0) / 1000;
  return { machine, results };
}

async function main(): Promise<void> {
  const opts = parseArgs(Deno.args);
  let machine: Machine;
  let results: RunResults;
  if (opts.from !== undefined) {
    ({ machine, results } = JSON.parse(await Deno.readTextFile(opts.from)));
  } else {
    ({ machine, results } = await run(opts));
  }
  const report = buildReport(machine, results);

  const dir = `${opts.out}/benchmarks`;
  await Deno.mkdir(dir, { recursive: true });
  for (const name of CHART_FILES) await Deno.remove(`${dir}/${name}`).catch(() => {});
  for (const chart of report.charts) {
    await Deno.writeTextFile(`${dir}/${chart.file}`, barChart(chart));
  }
  if (opts.from === undefined) {
    await Deno.writeTextFile(
      `${dir}/results.json`,
      JSON.stringify({ machine, results }, null, 2) + "\n",
    );
  }
  await Deno.writeTextFile(`${opts.out}/benchmarks.md`, renderMarkdown(report));
  // The page and the JSON are checked by the repository's `deno fmt --check`: format them the
  // way deno.json does (line width 100), these two files only.
  const fmt = await new Deno.Command(Deno.execPath(), {
    args: [
      "fmt",
      "--no-config",
      "--line-width=100",
      `${opts.out}/benchmarks.md`,
      `${dir}/results.json`,
    ],
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  if (!fmt.success) console.error(`deno fmt failed: ${decoder.decode(fmt.stderr).trim()}`);
  console.error(
    `\nwrote ${opts.out}/benchmarks.md and ${report.charts.length} chart(s) in ${dir} ` +
      `(the run took ${machine.seconds.toFixed(0)} s)`,
  );
  for (const [part, r] of Object.entries(results)) {
    if (typeof r === "object" && r !== null && r.error) console.error(`${part}: ${r.error}`);
  }
}

if (import.meta.main) await main();
