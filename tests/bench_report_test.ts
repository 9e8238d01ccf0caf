import "./_deadline.ts";
import assert from "node:assert/strict";
import {
  barChart,
  type Chart,
  escapeCell,
  escapeXml,
  formatRatio,
  type Machine,
  renderMarkdown,
} from "../bench/_report_render.ts";
import { buildReport, parseArgs } from "../bench/report.ts";

/** The bars of an SVG: value (data-value), width and the text drawn right of each. */
function bars(svg: string): { value: number; width: number; x: number; y: number }[] {
  return [
    ...svg.matchAll(
      /<rect class="bar" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"[^>]*data-value="([^"]+)"/g,
    ),
  ]
    .map((m) => ({ x: Number(m[1]), y: Number(m[2]), width: Number(m[3]), value: Number(m[4]) }));
}

/** Every `<text class="CLASS">` content, unescaped only as far as the test needs. */
function texts(svg: string, cls: string): string[] {
  return [...svg.matchAll(new RegExp(`<text class="${cls}"[^>]*>([^<]*)</text>`, "g"))].map((m) =>
    m[1]
  );
}

const chart: Chart = {
  file: "t.svg",
  title: "Test chart",
  ratio: "lib / raw",
  better: "lower",
  reference: 1,
  bars: [
    { group: "core", label: "a", value: 0.5 },
    { group: "core", label: "b", value: 2 },
    { group: "io", label: "c", value: 8 },
    { group: "io", label: "d", value: 3.25, note: "(results.json)" },
    { group: "io", label: "e", value: undefined, note: "not measured" },
  ],
};

Deno.test("barChart() draws bars whose lengths are proportional to the ratios", () => {
  const svg = barChart(chart);
  const drawn = bars(svg);
  // The values 0.5, 2, 8, 3.25 (four bars; the missing one has none).
  assert.deepEqual(drawn.map((b) => b.value), [0.5, 2, 8, 3.25]);
  const perUnit = drawn[2].width / 8;
  assert.ok(perUnit > 10, `the longest bar has a real length (${drawn[2].width} px)`);
  for (const b of drawn) {
    assert.ok(
      Math.abs(b.width - b.value * perUnit) <= 0.02,
      `bar ${b.value}: width ${b.width}, expected ${b.value * perUnit}`,
    );
  }
  // One baseline for every bar, rows top to bottom in input order.
  assert.equal(new Set(drawn.map((b) => b.x)).size, 1);
  for (let i = 1; i < drawn.length; i++) assert.ok(drawn[i].y > drawn[i - 1].y);
  // The reference line stands at 1x on the same scale.
  const line = /<line class="reference" x1="([\d.]+)"/.exec(svg);
  assert.ok(line !== null, "a reference line is drawn");
  assert.ok(Math.abs(Number(line[1]) - (drawn[0].x + perUnit)) <= 0.02);
});

Deno.test("barChart() gives the longest bar the full width whatever the scale", () => {
  const small = bars(barChart({ ...chart, bars: [{ label: "x", value: 0.02 }], reference: 0.01 }));
  const big = bars(barChart({ ...chart, bars: [{ label: "x", value: 5000 }] }));
  assert.equal(small.length, 1);
  assert.equal(big.length, 1);
  assert.ok(
    Math.abs(small[0].width - big[0].width) <= 0.02,
    `${small[0].width} vs ${big[0].width}`,
  );
  // A reference beyond every bar takes the width instead: the bar is then shorter.
  const beyond = bars(barChart({ ...chart, bars: [{ label: "x", value: 0.5 }], reference: 1 }));
  assert.ok(Math.abs(beyond[0].width - small[0].width / 2) <= 0.02);
});

Deno.test("barChart() labels every bar, with its value and note, and says which way is better", () => {
  const svg = barChart(chart);
  assert.deepEqual(texts(svg, "label"), ["a", "b", "c", "d", "e"]);
  assert.deepEqual(texts(svg, "value"), [
    "0.50x",
    "2.00x",
    "8.00x",
    "3.25x (results.json)",
    "not measured",
  ]);
  assert.deepEqual(texts(svg, "group"), ["core", "io"]);
  assert.deepEqual(texts(svg, "better"), ["\u2190 lower is better"]);
  assert.deepEqual(texts(barChart({ ...chart, better: "higher" }), "better"), [
    "higher is better \u2192",
  ]);
  assert.deepEqual(texts(svg, "title"), ["Test chart"]);
});

Deno.test("barChart() escapes every text", () => {
  const svg = barChart({
    file: "x.svg",
    title: `<script>alert("t")</script>`,
    ratio: "a & b",
    better: "higher",
    bars: [{ group: "g<1>", label: `"quoted" & 'single' <tag>`, value: 2, note: "<n>" }],
  });
  assert.ok(!svg.includes("<script>"), "no raw markup from the title");
  assert.ok(!svg.includes("<tag>") && !svg.includes("<n>") && !svg.includes("g<1>"));
  assert.deepEqual(texts(svg, "title"), ["&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;"]);
  assert.deepEqual(texts(svg, "label"), [
    "&quot;quoted&quot; &amp; &#39;single&#39; &lt;tag&gt;",
  ]);
  assert.deepEqual(texts(svg, "value"), ["2.00x &lt;n&gt;"]);
  assert.deepEqual(texts(svg, "ratio"), ["a &amp; b"]);
  // The document is well formed: every element opened is closed.
  const opened = (svg.match(/<text\b/g) ?? []).length;
  assert.equal((svg.match(/<\/text>/g) ?? []).length, opened);
  assert.equal(escapeXml(`&<>"'`), "&amp;&lt;&gt;&quot;&#39;");
  assert.equal(escapeCell("a|b\nc<d> <= 2"), "a\\|b c&lt;d> <= 2");
});

Deno.test("formatRatio() keeps three significant digits or so", () => {
  assert.equal(formatRatio(0.934), "0.93x");
  assert.equal(formatRatio(12.44), "12.4x");
  assert.equal(formatRatio(140.4), "140x");
  assert.equal(formatRatio(undefined), "n/a");
  assert.equal(formatRatio(Infinity), "n/a");
});

const machine: Machine = {
  date: "2026-01-02T03:04:05Z",
  deno: "2.9.6",
  v8: "15.0",
  typescript: "6.0",
  python: "3.11.2 / gevent 22.10.2",
  cpus: 2,
  cpuModel: "Test CPU",
  loadStart: [1.5, 1.25, 1],
  loadEnd: [2, 1.5, 1.125],
  revision: "abc1234",
  command: "deno task bench:report",
  seconds: 300,
  quick: false,
};

/** Fixed JSON as the scripts print it (shapes of compare.ts, compare_toolbox.ts, peers). */
const compareJson = {
  runs: 3,
  warmup: 0.1,
  results: [{
    workload: "spawn_join",
    title: "spawn | join",
    unit: "s",
    lib: { median: 0.05, values: [0.04, 0.05, 0.06], source: "measured" },
    raw: { median: 0.02, values: [0.02, 0.02, 0.03], source: "measured" },
    gevent: { median: 1.5, values: [1.5], source: "results.json" },
    vsGevent: 30,
    vsRaw: 2.5,
    target: ">=20x gevent",
    met: true,
    errors: [],
  }],
};
const toolboxJson = [{
  workload: "pool_imap",
  title: "Pool(100).imap",
  medians: { lib: 0.1, raw: 0.01, "p-map": 0.4 },
  samples: { lib: [0.1], raw: [0.01], "p-map": [0.4] },
  gevent: 1.2,
  geventSource: "measured",
  vsGevent: 12,
  vsRaw: 10,
  vsPMap: 4,
  target: ">=10x gevent",
  met: true,
}];
const peersJson = {
  runs: 1,
  results: [
    {
      workload: "spawn_join",
      peer: "Effect",
      version: "4.1.0",
      how: "forkChild",
      unit: "s",
      values: [0.2],
      median: 0.2,
    },
    {
      workload: "pool_imap",
      peer: "Effect",
      version: "4.1.0",
      how: "forEach",
      unit: "s",
      values: [],
      error: "boom <x>",
    },
  ],
};

Deno.test("buildReport() turns the scripts' JSON into ratios, tables and a page", () => {
  const report = buildReport(machine, {
    compare: { command: "compare", json: compareJson },
    toolbox: { command: "toolbox", json: toolboxJson },
    peers: { command: "peers", json: peersJson },
    echo: { command: "", skipped: "skipped on the command line (--skip=echo)" },
    drivers: { command: "drivers", error: "exited with code 1" },
  });
  const byFile = Object.fromEntries(report.charts.map((c) => [c.file, c]));
  // Charts without any bar (no monkey, drivers failed, no http) are left out.
  assert.deepEqual(Object.keys(byFile).sort(), [
    "lib-vs-gevent.svg",
    "lib-vs-peers.svg",
    "lib-vs-raw.svg",
  ]);
  assert.deepEqual(byFile["lib-vs-raw.svg"].bars.map((b) => [b.label, b.value]), [
    ["spawn_join", 2.5],
    ["pool_imap", 10],
  ]);
  assert.equal(byFile["lib-vs-raw.svg"].better, "lower");
  assert.deepEqual(byFile["lib-vs-gevent.svg"].bars.map((b) => [b.label, b.value, b.note]), [
    ["spawn_join", 30, "(gevent: results.json)"],
    ["pool_imap", 12, undefined],
  ]);
  assert.equal(byFile["lib-vs-gevent.svg"].better, "higher");
  // Peer / lib of the same workload: Effect 0.2 s / lib 0.05 s; p-map from the toolbox.
  const peers = byFile["lib-vs-peers.svg"].bars.map((b) => [b.label, b.value]);
  assert.deepEqual(peers, [
    ["Effect 4.1.0", 0.2 / 0.05],
    ["p-map (same process)", 4],
    ["Effect 4.1.0", undefined],
  ]);

  const md = renderMarkdown(report);
  assert.match(md, /\| load average \(1 \/ 5 \/ 15 min\) at start \| 1\.50 \/ 1\.25 \/ 1\.00 \|/);
  assert.match(md, /\| CPUs \| 2 x Test CPU \|/);
  assert.match(md, /!\[[^\]]*lower is better\]\(benchmarks\/lib-vs-raw\.svg\)/);
  assert.match(md, /!\[[^\]]*higher is better\]\(benchmarks\/lib-vs-peers\.svg\)/);
  // Raw figures, with the reference figure marked as not from this run.
  assert.match(
    md,
    /\| spawn_join \| 50\.0 ms \(40\.0 ms-60\.0 ms\) \| 20\.0 ms \(20\.0 ms-30\.0 ms\) \| 1\.500 s \(results\.json\) \| 30\.0x \| 2\.50x \|/,
  );
  // A title with a pipe does not break its table; a failure's text is escaped.
  assert.match(md, /`spawn_join`: spawn \| join/);
  assert.match(md, /failed: boom &lt;x>/);
  // Parts that did not run say so.
  assert.match(
    md,
    /### TCP echo[^\n]*\n\n\*\*Not run:\*\* skipped on the command line \(--skip=echo\)/,
  );
  assert.match(
    md,
    /### Database drivers[^\n]*\n\n`drivers`\n\n\*\*Failed, no figures:\*\* exited with code 1/,
  );
  assert.match(md, /### HTTP[^\n]*\n\n\*\*Not run:\*\* not run/);
});

Deno.test("parseArgs() reads --quick, --skip in both forms, and rejects the unknown", () => {
  const opts = parseArgs(["--quick", "--skip=gevent,http", "--skip", "drivers", "--out=/tmp/x/"]);
  assert.equal(opts.quick, true);
  assert.deepEqual([...opts.skip].sort(), ["drivers", "gevent", "http"]);
  assert.equal(opts.out, "/tmp/x");
  assert.throws(
    () => parseArgs(["--skip=nope"]),
    (e) => e instanceof TypeError && /nope/.test(e.message),
  );
  assert.throws(() => parseArgs(["--skip"]), TypeError);
  assert.throws(
    () => parseArgs(["--fast"]),
    (e) => e instanceof TypeError && /--fast/.test(e.message),
  );
});
