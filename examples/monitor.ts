/**
 * The blocked-loop monitor on a small job service: three worker greenlets take jobs from a
 * queue, and `worker-2` sometimes runs a CPU-bound job without yielding. The monitor thread
 * names it while it holds the loop, the end-of-block report gives the total time, and
 * `SIGUSR1` prints the run-info tree (gevent's `print_run_info`). `SIGTERM` or `SIGINT` stops
 * the service.
 *
 * Usage:
 *   deno run examples/monitor.ts                       # then: kill -USR1 <pid>
 *   deno run --allow-run --allow-read examples/monitor.ts --self-test
 *
 * `--self-test` runs the service as a child process, waits for the monitor to name
 * `worker-2`, sends `SIGUSR1` and checks the run info, then stops it with `SIGTERM`.
 */
import { Greenlet, killAll, Queue, signalHandler, sleep, startMonitor } from "../mod.ts";
import { printRunInfo } from "../util.ts";

interface Job {
  id: number;
  heavy: boolean;
}

/** A CPU-bound step written without a blocking call: it holds the loop while it runs. */
function resizeImage(ms: number): number {
  const end = performance.now() + ms;
  let n = 0;
  while (performance.now() < end) n++;
  return n;
}

async function serve(): Promise<void> {
  const monitor = startMonitor({ maxBlockingTime: 100 });
  const jobs = new Queue<Job>();
  const greenlets: Greenlet<unknown>[] = [];

  const producer = new Greenlet(async () => {
    for (let id = 1;; id++) {
      await jobs.put({ id, heavy: id % 10 === 0 });
      await sleep(20);
    }
  });
  producer.name = "producer";
  greenlets.push(producer);
  for (const name of ["worker-1", "worker-2", "worker-3"]) {
    const worker = new Greenlet(async () => {
      for (;;) {
        const job = await jobs.get();
        if (job.heavy && name === "worker-2") resizeImage(250);
        else await sleep(5); // stands for I/O
      }
    });
    worker.name = name;
    greenlets.push(worker);
  }
  for (const g of greenlets) g.start();

  const info = signalHandler("SIGUSR1", () => printRunInfo());
  const stopped = Promise.withResolvers<void>();
  const term = signalHandler("SIGTERM", stopped.resolve);
  const int = signalHandler("SIGINT", stopped.resolve);
  console.error(`serving (pid ${Deno.pid}); kill -USR1 ${Deno.pid} prints the run info`);
  await stopped.promise;
  info.cancel();
  term.cancel();
  int.cancel();
  await killAll(greenlets);
  await monitor.stop();
  console.error("stopped");
}

async function selfTest(): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", new URL(import.meta.url).pathname],
    stdout: "inherit",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const waitFor = async (pattern: RegExp): Promise<void> => {
    while (!pattern.test(seen)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the service ended before printing ${pattern}:\n${seen}`);
      seen += value;
      Deno.stderr.writeSync(new TextEncoder().encode(value)); // show what the service prints
    }
  };
  try {
    await waitFor(/serving/);
    await waitFor(/Greenlet "worker-2" \(Greenlet-\d+\) appears to be blocked/);
    await waitFor(/The event loop was blocked for \d+ ms .* by greenlet "worker-2"/);
    const before = seen.length;
    child.kill("SIGUSR1");
    await waitFor(/Run info: [\s\S]*worker-1/);
    if (seen.indexOf("worker-1", before) < 0) throw new Error("no run info after SIGUSR1");
    child.kill("SIGTERM");
    await waitFor(/stopped/);
  } finally {
    await reader.cancel();
  }
  const status = await child.status;
  if (status.code !== 0) throw new Error(`the service exited with ${status.code}`);
  console.log("self-test passed: the monitor named worker-2 and SIGUSR1 printed the run info");
}

if (Deno.args.includes("--self-test")) await selfTest();
else await serve();
