/**
 * Start-up cost (issue 10): what importing the package costs a program that does nothing
 * else, against an empty program and one that imports only the core (`core.ts` +
 * `greenlet.ts`).
 *
 * ```sh
 * deno task bench:startup [--runs=10] [--baseline=DIR]
 * ```
 *
 * The programs, each a file in a temporary directory that imports entry points by their file
 * URLs: the empty program, the core, `mod.ts`, each networking entry alone, and `mod.ts`'s
 * other modules without the networking ones (which tells the networking modules' share of
 * `mod.ts` apart). Each is measured two ways, in fresh processes run with the same Deno
 * binary as this script (`deno run --no-config --no-lock -A`):
 *
 * - whole process: the program imports its modules statically; bash's `time` gives the wall
 *   time of the process and its CPU time (user + system, all threads);
 * - in process: the program imports its modules with `await import()` and prints how long
 *   that took (after one warm-up `import()` of an empty module, whose first-use cost every
 *   program would pay). Without the ~70 ms of process start and exit around it, this is
 *   the steadiest figure on a busy machine.
 *
 * Every program runs once first (so every module is transpiled and cached); then the runs of
 * all programs are interleaved, round after round, so that background noise spreads over all
 * of them. The table shows medians in milliseconds, differences from the empty program and
 * the core, and the ratio to the core. Target (issue 10): `mod.ts` costs at most ~5 ms more
 * than the core.
 *
 * `--baseline=DIR` adds the same programs for another copy of the library (for example
 * `git archive HEAD | tar -x -C DIR`) to the same interleaved rounds, so that a change is
 * measured before and after in one run.
 *
 * @module
 */

/** The networking entry points, each measured alone. */
const ENTRIES = ["socket.ts", "resolver.ts", "server.ts", "http.ts", "monkey.ts"];

function option(name: string): string | undefined {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg?.slice(name.length + 3);
}

/** The modules `mod.ts` re-exports from, other than core.ts, greenlet.ts and ENTRIES. */
function otherModules(libDir: string): string[] {
  const source = Deno.readTextFileSync(`${libDir}/mod.ts`);
  const names = [...source.matchAll(/from "\.\/([\w.]+\.ts)"/g)].map((m) => m[1]);
  const skip = new Set(["core.ts", "greenlet.ts", ...ENTRIES]);
  return [...new Set(names)].filter((name) => !skip.has(name));
}

interface Program {
  label: string;
  /** Imports its modules statically. */
  file: string;
  /** Imports them with `import()` and prints how long that took. */
  timed: string;
  wall: number[];
  cpu: number[];
  importMs: number[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const DENO_ARGS = ["run", "--no-config", "--no-lock", "-A"];

/** Runs the static program under bash's `time`: its wall and CPU time, in ms. */
async function timeRun(p: Program): Promise<void> {
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      `TIMEFORMAT='%3R %3U %3S'; time "$0" ${DENO_ARGS.join(" ")} "$1" >/dev/null 2>&1`,
      Deno.execPath(),
      p.file,
    ],
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stderr).trim();
  const [real, user, sys] = text.split("\n").at(-1)!.split(" ").map(Number);
  if (!out.success || !(real >= 0)) throw new Error(`${p.file} failed: ${text}`);
  p.wall.push(real * 1000);
  p.cpu.push((user + sys) * 1000);
}

/** Runs the timed program: how long its imports took inside the process, in ms. */
async function importRun(p: Program): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...DENO_ARGS, p.timed],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const ms = Number(new TextDecoder().decode(out.stdout).trim());
  if (!out.success || !(ms >= 0)) {
    throw new Error(`${p.timed} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  p.importMs.push(ms);
}

let made = 0;

function program(dir: string, label: string, urls: string[]): Program {
  const n = made++;
  const file = `${dir}/p${n}.ts`;
  const timed = `${dir}/p${n}_timed.ts`;
  Deno.writeTextFileSync(file, urls.map((u) => `import "${u}";\n`).join("") || "\n");
  Deno.writeTextFileSync(
    timed,
    `await import("./warm_up.ts");\n` +
      `const t0 = performance.now();\n` +
      urls.map((u) => `await import("${u}");\n`).join("") +
      `console.log(performance.now() - t0);\n`,
  );
  return { label, file, timed, wall: [], cpu: [], importMs: [] };
}

function programs(dir: string, libDir: string, prefix: string): Program[] {
  const url = (name: string) => new URL(name, `file://${libDir}/`).href;
  const others = otherModules(libDir);
  return [
    program(dir, `${prefix}core (core.ts + greenlet.ts)`, [url("core.ts"), url("greenlet.ts")]),
    program(dir, `${prefix}mod.ts`, [url("mod.ts")]),
    ...ENTRIES.map((entry) => program(dir, `${prefix}${entry}`, [url(entry)])),
    // What mod.ts loads besides the networking modules: tells their share of its cost apart.
    program(
      dir,
      `${prefix}mod.ts without networking (core + ${others.join(", ")})`,
      ["core.ts", "greenlet.ts", ...others].map(url),
    ),
  ];
}

const runs = Number(option("runs") ?? 10);
const here = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const baseline = option("baseline");
const dir = Deno.makeTempDirSync({ prefix: "gevent_startup_" });
try {
  Deno.writeTextFileSync(`${dir}/warm_up.ts`, "export {};\n");
  const empty = program(dir, "empty program", []);
  const current = programs(dir, here, "");
  const base = baseline === undefined
    ? []
    : programs(dir, baseline.replace(/\/$/, ""), "baseline ");
  const all = [empty, ...current, ...base];
  for (const p of all) { // warm-up: transpile and cache
    await timeRun(p);
    await importRun(p);
    p.wall.length = p.cpu.length = p.importMs.length = 0;
  }
  const loadBefore = Deno.loadavg().join(" ");
  for (let round = 0; round < runs; round++) {
    // rotate the order each round so no program always runs first
    for (let i = 0; i < all.length; i++) {
      const p = all[(i + round) % all.length];
      await timeRun(p);
      await importRun(p);
    }
  }
  const f = (n: number) => n.toFixed(1);
  const row = (p: Program, core: Program | undefined) => {
    const w = median(p.wall);
    const range = `${Math.min(...p.wall).toFixed(0)}-${Math.max(...p.wall).toFixed(0)}`;
    const vsCore = (pick: (q: Program) => number[]) =>
      core === undefined ? "" : f(median(pick(p)) - median(pick(core)));
    const ratio = core === undefined ? "" : (w / median(core.wall)).toFixed(3);
    console.log(
      `| ${p.label} | ${f(w)} (${range}) | ${f(w - median(empty.wall))} | ` +
        `${vsCore((q) => q.wall)} | ${ratio} | ${f(median(p.cpu))} | ${vsCore((q) => q.cpu)} | ` +
        `${f(median(p.importMs))} | ${vsCore((q) => q.importMs)} |`,
    );
  };
  console.log(
    `Deno ${Deno.version.deno}, ${runs} interleaved rounds; medians in ms; load average ` +
      `before: ${loadBefore}, after: ${Deno.loadavg().join(" ")}`,
  );
  console.log(
    "| program | wall (range) | - empty | - core | / core | CPU | CPU - core | " +
      "import in process | - core |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  row(empty, undefined);
  for (const p of current) row(p, current[0]);
  for (const p of base) row(p, base[0]);
  const gap = (rows: Program[]) => {
    const d = (pick: (q: Program) => number[]) => f(median(pick(rows[1])) - median(pick(rows[0])));
    return `${d((q) => q.wall)} ms wall, ${d((q) => q.cpu)} ms CPU, ${
      d((q) => q.importMs)
    } ms in process`;
  };
  const share = (rows: Program[]) => f(median(rows[1].importMs) - median(rows.at(-1)!.importMs));
  console.log(`mod.ts - core: ${gap(current)} (target: at most ~5 ms)`);
  console.log(`networking's share of mod.ts (in process): ${share(current)} ms`);
  if (base.length) {
    console.log(`baseline mod.ts - core: ${gap(base)} (same run)`);
    console.log(`baseline networking's share of mod.ts (in process): ${share(base)} ms`);
  }
} finally {
  Deno.removeSync(dir, { recursive: true });
}
