/**
 * Real database servers for tests of npm database drivers: a PostgreSQL server and a Redis
 * server, each on a free port of 127.0.0.1 with its own temporary directory.
 *
 * The servers run as daemons (`pg_ctl start`, `redis-server --daemonize yes`), not as child
 * processes of the test: the only subprocesses this module spawns are short-lived commands
 * (`initdb`, `pg_ctl`, `psql`, `pg_isready`, `redis-server`, `redis-cli`) whose output and exit
 * status are awaited before the function that started them returns. So nothing stays pending
 * between calls, and Deno's op and resource sanitizers accept both ways of using a server:
 * started with top-level `await` and stopped in a later test, or started and stopped inside
 * one test. `stop()` waits until the server process has exited and then removes its directory.
 * A server that was never stopped is killed when the module unloads.
 *
 * Needs `--allow-net=127.0.0.1` (to pick free ports), `--allow-read`, `--allow-write` (the
 * temporary directories), `--allow-run` (the commands above, `setpriv`, signals),
 * `--allow-env` (`PATH`) and `--allow-sys` (`Deno.uid()`). Linux only (`/proc`, `setpriv`).
 *
 * PostgreSQL refuses to run as root: when the tests run as root, `initdb` and the server run
 * as the Debian `postgres` user (through `setpriv`). The Debian package's own cluster (and
 * `pg_ctlcluster`, systemd) is never used. If the binaries are missing and the tests run as
 * root on a machine with `apt-get`, the packages `postgresql` and `redis-server` are installed
 * once; otherwise starting a server throws an error naming those packages.
 */

const HOST = "127.0.0.1";
const PACKAGES = "postgresql redis-server";
/** The same command `.ci/run` uses. */
const INSTALL_COMMAND =
  "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server";
/** How many free ports to try when another process takes the one picked first. */
const PORT_ATTEMPTS = 5;
/** How long a server may take to accept connections, and to exit after a signal. */
const START_TIMEOUT = 20_000;
const STOP_TIMEOUT = 10_000;

/** Options of {@linkcode waitFor}. */
export interface WaitForOptions {
  /** Milliseconds after which `waitFor` rejects. */
  timeout: number;
  /** Milliseconds between two checks (default 20). */
  interval?: number;
  /** What is being waited for, for the error message (default: the check's source). */
  message?: string;
}

/**
 * Calls `check` until it resolves to `true`, every `interval` (20) ms. Rejects with an
 * `Error` saying what was awaited when `timeout` ms pass first, and with the error of
 * `check` if it throws.
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  { timeout, interval = 20, message }: WaitForOptions,
): Promise<void> {
  if (!Number.isFinite(timeout) || timeout < 0) {
    throw new RangeError(`waitFor: timeout must be a finite number >= 0, got ${timeout}`);
  }
  const start = performance.now();
  while (true) {
    if (await check()) return;
    const left = start + timeout - performance.now();
    if (left <= 0) {
      const what = message ?? `condition ${compact(String(check))}`;
      throw new Error(`waitFor: ${what} still not met after ${timeout} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, left)));
  }
}

/** A running PostgreSQL server started by {@linkcode startPostgres}. */
export interface PgServer {
  /** Always `"127.0.0.1"`. */
  readonly host: string;
  /** The TCP port it listens on. */
  readonly port: number;
  /** The superuser, `"postgres"` (trust authentication: no password). */
  readonly user: string;
  /** The database, `"postgres"`. */
  readonly database: string;
  /** `postgres://postgres@127.0.0.1:PORT/postgres`. */
  readonly url: string;
  /** The postmaster's process id. */
  readonly pid: number;
  /** The temporary directory holding the data directory, socket and `postgres.log`. */
  readonly dir: string;
  /**
   * Runs `query` with `psql -XAtqc` (unaligned, tuples only) on a new connection and
   * resolves with its trimmed output; rejects with psql's stderr if psql fails.
   */
  sql(query: string): Promise<string>;
  /** The number of client backends, not counting the one asking. */
  connections(): Promise<number>;
  /**
   * The number of client backends whose state is `active` and whose query contains
   * `pattern`, not counting the one asking.
   */
  active(pattern: string): Promise<number>;
  /** {@linkcode waitFor}, for convenience. */
  waitFor(check: () => boolean | Promise<boolean>, options: WaitForOptions): Promise<void>;
  /**
   * Stops the server at once (immediate shutdown, `SIGQUIT`), waits until it has exited and
   * removes its directory. Later calls return the same promise.
   */
  stop(): Promise<void>;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** A running Redis server started by {@linkcode startRedis}. */
export interface RedisServer {
  /** Always `"127.0.0.1"`. */
  readonly host: string;
  /** The TCP port it listens on. */
  readonly port: number;
  /** `redis://127.0.0.1:PORT`. */
  readonly url: string;
  /** The server's process id. */
  readonly pid: number;
  /** The temporary directory holding its pid file and log. */
  readonly dir: string;
  /**
   * Runs one command with `redis-cli` on a new connection and resolves with its trimmed
   * output (raw format: one line per element); rejects on an error reply.
   */
  command(...args: string[]): Promise<string>;
  /** The number of connected clients, not counting the one asking. */
  clients(): Promise<number>;
  /** `blocked_clients` from `INFO clients` (clients waiting in `BLPOP` and the like). */
  blocked(): Promise<number>;
  /** {@linkcode waitFor}, for convenience. */
  waitFor(check: () => boolean | Promise<boolean>, options: WaitForOptions): Promise<void>;
  /**
   * Stops the server (`SHUTDOWN NOSAVE`, else `SIGTERM`; nothing is saved), waits until it
   * has exited and removes its directory. Later calls return the same promise.
   */
  stop(): Promise<void>;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a PostgreSQL server: `initdb` into a new temporary directory (trust
 * authentication, superuser `postgres`, no fsync), then `postgres` on a free port of
 * 127.0.0.1 (through `pg_ctl start`), and resolves once `pg_isready` reports that it accepts
 * connections. Takes about a second, most of it `initdb`.
 */
export async function startPostgres(): Promise<PgServer> {
  const { pgBin } = await binaries();
  const asRoot = Deno.uid() === 0;
  const dir = await Deno.makeTempDir({ dir: asRoot ? "/tmp" : undefined, prefix: "gevent-pg-" });
  const data = `${dir}/data`;
  const log = `${dir}/postgres.log`;
  const entry: LiveServer = { name: "postgres", signal: "SIGQUIT", dir };
  live.add(entry);
  let pid: number | undefined;
  // As root, run the PostgreSQL programs as the `postgres` user (they refuse to run as root).
  const pg = async (program: string, args: string[]) => {
    const path = `${pgBin}/${program}`;
    return asRoot
      ? await run("setpriv", [
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
        path,
        ...args,
      ], { cwd: dir })
      : await run(path, args, { cwd: dir });
  };
  try {
    if (asRoot) {
      const { uid, gid } = await lookupUser("postgres");
      await Deno.chown(dir, uid, gid);
    }
    const init = await pg("initdb", [
      "-D",
      data,
      "--auth=trust",
      "-U",
      "postgres",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
      "--no-instructions",
    ]);
    if (init.code !== 0) throw new Error(`initdb failed (exit ${init.code}):\n${init.output}`);

    let port = 0;
    for (let attempt = 1;; attempt++) {
      port = freePort();
      const logStart = await sizeOf(log);
      // pg_ctl runs `exec postgres -D DATA <these options>` through /bin/sh: quote them.
      const options = [
        "-p",
        String(port),
        "-c",
        `listen_addresses=${HOST}`,
        "-k",
        dir,
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
      ].map(shellQuote).join(" ");
      // `-w` returns once the postmaster reports "ready" in postmaster.pid (or has died);
      // `-t` bounds that wait.
      const started = await pg("pg_ctl", [
        "-D",
        data,
        "-l",
        log,
        "-o",
        options,
        "-w",
        "-t",
        String(START_TIMEOUT / 1000),
        "-s",
        "start",
      ]);
      if (started.code === 0) break;
      const text = (await readTail(log, logStart)).trim();
      if (attempt < PORT_ATTEMPTS && /Address already in use|could not bind/.test(text)) continue;
      throw new Error(
        `postgres did not start on port ${port} (pg_ctl exit ${started.code}):\n` +
          `${started.output}\n${log}:\n${text}`,
      );
    }
    pid = await readPid(`${data}/postmaster.pid`);
    if (pid === undefined) {
      throw new Error(`pg_ctl started postgres but ${data}/postmaster.pid is missing`);
    }
    Object.assign(entry, { pid, name: `postgres on port ${port}` });
    const pgIsReady = [
      `${pgBin}/pg_isready`,
      ["-h", HOST, "-p", String(port), "-U", "postgres", "-d", "postgres", "-q", "-t", "2"],
    ] as const;
    await waitFor(async () => (await run(...pgIsReady)).code === 0, {
      timeout: START_TIMEOUT,
      message: `postgres on port ${port} accepting connections (see ${log})`,
    });

    const serverPid = pid;
    const sql = async (query: string): Promise<string> => {
      const args = ["-h", HOST, "-p", String(port), "-U", "postgres", "-d", "postgres"];
      const r = await run(`${pgBin}/psql`, [...args, "-v", "ON_ERROR_STOP=1", "-XAtqc", query]);
      if (r.code !== 0) {
        throw new Error(`psql failed (exit ${r.code}) on ${compact(query)}:\n${r.stderr.trim()}`);
      }
      return r.stdout.trim();
    };
    const others = "backend_type = 'client backend' and pid <> pg_backend_pid()";
    let stopping: Promise<void> | undefined;
    const stop = () =>
      stopping ??= (async () => {
        await terminate(serverPid, "SIGQUIT", `postgres on port ${port}`);
        await Deno.remove(dir, { recursive: true });
        live.delete(entry);
      })();
    return {
      host: HOST,
      port,
      user: "postgres",
      database: "postgres",
      url: `postgres://postgres@${HOST}:${port}/postgres`,
      pid: serverPid,
      dir,
      sql,
      connections: async () =>
        Number(await sql(`select count(*) from pg_stat_activity where ${others}`)),
      active: async (pattern: string) =>
        Number(
          await sql(
            `select count(*) from pg_stat_activity where ${others} and state = 'active' ` +
              `and strpos(query, ${sqlString(pattern)}) > 0`,
          ),
        ),
      waitFor,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    // A postmaster that pg_ctl gave up waiting for may still be running.
    pid ??= await readPid(`${data}/postmaster.pid`).catch(() => undefined);
    if (pid !== undefined) await terminate(pid, "SIGQUIT", "postgres").catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    live.delete(entry);
    throw error;
  }
}

/**
 * Starts a Redis server on a free port of 127.0.0.1 with persistence off
 * (`--save "" --appendonly no`), daemonized with its pid file and log in a new temporary
 * directory, and resolves once it answers `PING`. Takes a few tens of milliseconds.
 */
export async function startRedis(): Promise<RedisServer> {
  const { redisServer, redisCli } = await binaries();
  const dir = await Deno.makeTempDir({ prefix: "gevent-redis-" });
  const entry: LiveServer = { name: "redis-server", signal: "SIGTERM", dir };
  live.add(entry);
  let pid: number | undefined;
  try {
    let port = 0;
    for (let attempt = 1;; attempt++) {
      port = freePort();
      const pidFile = `${dir}/redis-${port}.pid`;
      const log = `${dir}/redis-${port}.log`;
      const started = await run(redisServer, [
        "--port",
        String(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir,
        "--daemonize",
        "yes",
        "--pidfile",
        pidFile,
        "--logfile",
        log,
      ]);
      if (started.code !== 0) {
        throw new Error(`redis-server failed (exit ${started.code}):\n${started.output}`);
      }
      // The daemon writes its pid file once it has bound the port; if it cannot bind, it
      // logs why and exits without one.
      let outcome: "ready" | "port taken" | "died" | undefined;
      await waitFor(async () => {
        pid ??= await readPid(pidFile);
        Object.assign(entry, { pid, name: `redis-server on port ${port}` });
        if (pid === undefined) {
          const text = await readTail(log, 0);
          if (/Address already in use/.test(text)) outcome = "port taken";
          else if (/aborting|Fatal/i.test(text)) outcome = "died";
          return outcome !== undefined;
        }
        if (await exited(pid)) outcome = "died";
        else {
          const ping = await run(redisCli, ["-h", HOST, "-p", String(port), "PING"]);
          if (ping.code === 0 && ping.stdout.trim() === "PONG") outcome = "ready";
        }
        return outcome !== undefined;
      }, {
        timeout: START_TIMEOUT,
        message: `redis-server on port ${port} answering PING (see ${log})`,
      }).catch(async (error) => {
        throw new Error(`${error.message}:\n${(await readTail(log, 0)).trim()}`);
      });
      if (outcome === "ready") break;
      if (outcome === "port taken" && attempt < PORT_ATTEMPTS) continue;
      throw new Error(
        `redis-server did not start on port ${port}:\n${(await readTail(log, 0)).trim()}`,
      );
    }
    const serverPid = pid!;

    const cli = async (args: string[], input?: string): Promise<string> => {
      const r = await run(redisCli, ["-e", "-h", HOST, "-p", String(port), ...args], { input });
      if (r.code !== 0) {
        const what = input === undefined ? args.join(" ") : input.trim().replaceAll("\n", "; ");
        throw new Error(`redis-cli failed (exit ${r.code}) on ${compact(what)}:\n${r.output}`);
      }
      return r.stdout.trim();
    };
    let stopping: Promise<void> | undefined;
    const stop = () =>
      stopping ??= (async () => {
        // SHUTDOWN takes effect at once; SIGTERM waits for the next server tick (100 ms).
        const shutdown = await run(redisCli, [
          "-h",
          HOST,
          "-p",
          String(port),
          "SHUTDOWN",
          "NOSAVE",
        ]);
        const name = `redis-server on port ${port}`;
        if (shutdown.code === 0) await waitForExit(serverPid, name);
        else await terminate(serverPid, "SIGTERM", name);
        await Deno.remove(dir, { recursive: true });
        live.delete(entry);
      })();
    return {
      host: HOST,
      port,
      url: `redis://${HOST}:${port}`,
      pid: serverPid,
      dir,
      command: (...args: string[]) => cli(args),
      clients: async () => {
        // Both commands on one connection, so the asking client can be left out by id.
        const [id, ...list] = (await cli([], "CLIENT ID\nCLIENT LIST\n")).split("\n");
        return list.filter((line) => line.startsWith("id=") && !line.startsWith(`id=${id} `))
          .length;
      },
      blocked: async () => {
        const info = await cli(["INFO", "clients"]);
        const match = /^blocked_clients:(\d+)/m.exec(info);
        if (!match) throw new Error(`no blocked_clients in INFO clients:\n${info}`);
        return Number(match[1]);
      },
      waitFor,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    if (pid !== undefined) await terminate(pid, "SIGTERM", "redis-server").catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    live.delete(entry);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Servers not stopped by their test module are killed when it unloads (best effort).

/** A server being started or running: its directory, and its process once known. */
interface LiveServer {
  name: string;
  signal: Deno.Signal;
  dir: string;
  pid?: number;
}

const live = new Set<LiveServer>();

globalThis.addEventListener("unload", () => {
  for (const { name, signal, dir, pid } of live) {
    try {
      if (pid !== undefined) {
        console.error(`_db_servers.ts: ${name} (pid ${pid}) was never stopped; stopping it now`);
        Deno.kill(pid, signal);
        const deadline = performance.now() + 2000;
        while (!exitedSync(pid) && performance.now() < deadline) {
          // A synchronous wait: nothing asynchronous runs any more during `unload`.
        }
      }
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Best effort.
    }
  }
  live.clear();
});

// ---------------------------------------------------------------------------------------------
// Binaries and their installation.

interface Binaries {
  /** The `bin` directory of the newest PostgreSQL under /usr/lib/postgresql. */
  pgBin: string;
  redisServer: string;
  redisCli: string;
}

let installation: Promise<void> | undefined;

async function binaries(): Promise<Binaries> {
  let found = await locateBinaries();
  if (found.missing.length > 0) {
    installation ??= install(found.missing);
    await installation;
    found = await locateBinaries();
    if (found.missing.length > 0) {
      throw new Error(
        `still missing after installing ${PACKAGES}: ${found.missing.join(", ")}`,
      );
    }
  }
  return found as Binaries;
}

async function locateBinaries(): Promise<Partial<Binaries> & { missing: string[] }> {
  const missing: string[] = [];
  const pgBin = await newestPgBin();
  const redisServer = await which("redis-server");
  const redisCli = await which("redis-cli");
  if (!pgBin) missing.push("/usr/lib/postgresql/*/bin/postgres");
  if (!redisServer) missing.push("redis-server");
  if (!redisCli) missing.push("redis-cli");
  return { pgBin, redisServer, redisCli, missing };
}

async function newestPgBin(): Promise<string | undefined> {
  const root = "/usr/lib/postgresql";
  const versions: number[] = [];
  try {
    for await (const entry of Deno.readDir(root)) {
      if (
        /^\d+(\.\d+)?$/.test(entry.name) && await isExecutable(`${root}/${entry.name}/bin/postgres`)
      ) {
        versions.push(Number(entry.name));
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (versions.length === 0) return undefined;
  return `${root}/${Math.max(...versions)}/bin`;
}

async function which(name: string): Promise<string | undefined> {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter(Boolean);
  for (const dir of [...dirs, "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
    if (await isExecutable(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const info = await Deno.stat(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

async function install(missing: string[]): Promise<void> {
  const aptGet = await which("apt-get");
  if (Deno.uid() !== 0 || !aptGet) {
    throw new Error(
      `PostgreSQL and Redis are needed by these tests but ${missing.join(", ")} ` +
        `${missing.length > 1 ? "are" : "is"} missing: install the packages ${PACKAGES} ` +
        `(Debian/Ubuntu: sudo apt-get install -y ${PACKAGES}).`,
    );
  }
  console.log(
    `_db_servers.ts: ${missing.join(", ")} missing; installing ${PACKAGES} as root: ` +
      INSTALL_COMMAND,
  );
  const child = new Deno.Command("sh", {
    args: ["-c", INSTALL_COMMAND],
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const { code } = await child.status;
  // Another test module may have installed them meanwhile (the dpkg lock was taken).
  if (code !== 0 && (await locateBinaries()).missing.length > 0) {
    throw new Error(`installing ${PACKAGES} failed (exit ${code}): ${INSTALL_COMMAND}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Processes.

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stderr and stdout, for error messages. */
  output: string;
}

/**
 * Runs a command to completion: stdout and stderr are read and the exit status awaited
 * before this resolves, so nothing is left pending for the test sanitizers.
 */
async function run(
  command: string,
  args: readonly string[],
  { cwd, input }: { cwd?: string; input?: string } = {},
): Promise<RunResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args: [...args],
      cwd,
      env: { PGCONNECT_TIMEOUT: "10", PGAPPNAME: "gevent-test-fixture" },
      stdin: input === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`cannot run ${command}: not found`, { cause: error });
    }
    throw error;
  }
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input)).catch(() => {});
    await writer.close().catch(() => {});
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  const out = decoder.decode(stdout);
  const err = decoder.decode(stderr);
  return { code, stdout: out, stderr: err, output: `${err}${out}`.trim() };
}

/**
 * Whether process `pid` has exited: it is gone, or a zombie nobody has reaped yet (the
 * daemons' parent is init). Deno allows reading `/proc` only with `--allow-all`, so `cat`
 * reads it.
 */
async function exited(pid: number): Promise<boolean> {
  const stat = await run("cat", [`/proc/${pid}/stat`]);
  return stat.code !== 0 || isDead(stat.stdout);
}

function exitedSync(pid: number): boolean {
  const stat = new Deno.Command("cat", {
    args: [`/proc/${pid}/stat`],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  return !stat.success || isDead(new TextDecoder().decode(stat.stdout));
}

function isDead(stat: string): boolean {
  // "pid (comm) S ...": comm may contain spaces and parentheses.
  const state = stat.slice(stat.lastIndexOf(")") + 2)[0];
  return state === "Z" || state === "X";
}

/** Signals `pid` and waits for it to exit (see {@linkcode waitForExit}). */
async function terminate(pid: number, signal: Deno.Signal, name: string): Promise<void> {
  if (await exited(pid)) return;
  try {
    Deno.kill(pid, signal);
  } catch (error) {
    if (await exited(pid)) return;
    throw error;
  }
  await waitForExit(pid, name);
}

/** Waits for `pid` to exit; `SIGKILL` if it takes longer than STOP_TIMEOUT. */
async function waitForExit(pid: number, name: string): Promise<void> {
  try {
    await waitFor(() => exited(pid), {
      timeout: STOP_TIMEOUT,
      interval: 10,
      message: `${name} exiting`,
    });
  } catch (error) {
    Deno.kill(pid, "SIGKILL");
    await waitFor(() => exited(pid), { timeout: STOP_TIMEOUT, interval: 10 });
    throw new Error(`${(error as Error).message}; killed it with SIGKILL`);
  }
}

/** A port of 127.0.0.1 that was free a moment ago. */
function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

async function lookupUser(name: string): Promise<{ uid: number; gid: number }> {
  for (const line of (await Deno.readTextFile("/etc/passwd")).split("\n")) {
    const fields = line.split(":");
    if (fields[0] === name && fields.length >= 4) {
      return { uid: Number(fields[2]), gid: Number(fields[3]) };
    }
  }
  throw new Error(
    `no user ${name} in /etc/passwd (the ${PACKAGES.split(" ")[0]} package creates it)`,
  );
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt(await Deno.readTextFile(path));
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

/** The text of `path` from byte `from` on ("" if it does not exist). */
async function readTail(path: string, from: number): Promise<string> {
  try {
    return new TextDecoder().decode((await Deno.readFile(path)).subarray(from));
  } catch {
    return "";
  }
}

function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function sqlString(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

function compact(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 120 ? `${line.slice(0, 117)}...` : line;
}
