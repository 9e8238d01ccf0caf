/**
 * The pure half of `bench/report.ts`: SVG bar charts and the Markdown page, made from numbers
 * only (no I/O, no clock), so that `tests/bench_report_test.ts` can check them on fixed input.
 *
 * Bars are horizontal and linear: every bar of a chart is `value * scale` pixels long, with
 * one `scale` per chart (the longest bar, or the reference line if it lies further, takes the
 * whole width), and every bar carries its value as text, so a bar too short to see is still
 * read. Every text is XML-escaped in the SVG and escaped for tables in the Markdown.
 *
 * @module
 */

/** One bar: a label, its value (a ratio) and the text shown beside it. */
export interface Bar {
  /** Bars with the same group are drawn under one heading, in order. */
  group?: string;
  /** The name of the bar, left of it. */
  label: string;
  /** The ratio; `undefined` draws no bar, only `note` (or "n/a"). */
  value: number | undefined;
  /** Shown after the value (e.g. "(gevent from results.json)"), or instead of a missing one. */
  note?: string;
}

/** A chart of ratios. */
export interface Chart {
  /** File name under `docs/benchmarks/`, e.g. `lib-vs-raw.svg`. */
  file: string;
  title: string;
  /** What the ratio is, in words (printed under the title). */
  ratio: string;
  /** Which direction is better: drawn as an arrow under the title. */
  better: "lower" | "higher";
  /** A dashed line at this value (1 for parity), labelled. */
  reference?: number;
  bars: Bar[];
}

/** A table of raw figures. */
export interface Table {
  title: string;
  head: string[];
  rows: string[][];
  /** Lines printed under the table. */
  notes?: string[];
}

/** One part of the run: one script, its tables, or why it was skipped. */
export interface Section {
  title: string;
  /** The command that produced it. */
  command?: string;
  /** What the workloads are. */
  intro?: string;
  tables: Table[];
  /** Set when the part was not run: why (printed instead of silence). */
  skipped?: string;
  /** Set when the part ran but gave no result: what went wrong. */
  failed?: string;
}

/** The facts of the machine and the run. */
export interface Machine {
  /** ISO date and time of the start of the run (UTC). */
  date: string;
  deno: string;
  v8: string;
  typescript: string;
  /** e.g. "3.11.2 / gevent 22.10.2", or why not known. */
  python: string;
  cpus: number;
  cpuModel: string;
  /** Load averages (1, 5, 15 min) at the start and the end of the run. */
  loadStart: number[];
  loadEnd: number[];
  revision: string;
  /** The command line of the run. */
  command: string;
  /** Wall-clock seconds the run took. */
  seconds: number;
  quick: boolean;
}

/** Everything the page shows. */
export interface Report {
  machine: Machine;
  charts: Chart[];
  sections: Section[];
  /** Lines for the "Notes" list at the end. */
  notes: string[];
}

/** Escapes text for SVG/XML content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

/**
 * Escapes text for a Markdown table cell: backslashes, pipes, line breaks, and a `<` that
 * could open an HTML tag (`<=` stays as it is, readable in the source).
 */
export function escapeCell(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/<(?=[A-Za-z/!?])/g, "&lt;")
    .replace(/\r?\n/g, " ");
}

/** A ratio as text: `0.93x`, `12.4x`, `140x`. */
export function formatRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return "n/a";
  if (r >= 100) return `${r.toFixed(0)}x`;
  if (r >= 10) return `${r.toFixed(1)}x`;
  return `${r.toFixed(2)}x`;
}

/** Geometry of {@linkcode barChart}, exported for the test. */
export const CHART = {
  width: 760,
  /** Pixels reserved right of the longest bar for its value text. */
  valueSpace: 150,
  rowHeight: 22,
  barHeight: 14,
  top: 58,
  charWidth: 7.2,
} as const;

/** A white outline under text, so that the reference line does not cross it. */
const HALO = 'stroke="#ffffff" stroke-width="4" paint-order="stroke"';

const FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', sans-serif\"";

/** Rounds a coordinate to 0.01 px for the SVG text. */
function px(v: number): string {
  return String(Math.round(v * 100) / 100);
}

/**
 * Draws `chart` as an SVG document: one horizontal bar per entry, `value * scale` pixels long
 * (the `rect` of class `bar`, its value also in `data-value`), its label left of it and its
 * value (and note) right of it; group headings; a dashed reference line; the title and an
 * arrow saying which direction is better.
 */
export function barChart(chart: Chart): string {
  const labelChars = Math.max(8, ...chart.bars.map((b) => b.label.length));
  const labelWidth = Math.min(340, Math.ceil(labelChars * CHART.charWidth) + 24);
  const x0 = labelWidth;
  const span = CHART.width - x0 - CHART.valueSpace;
  const values = chart.bars.map((b) => b.value).filter((v): v is number =>
    v !== undefined && Number.isFinite(v) && v > 0
  );
  const max = Math.max(chart.reference ?? 0, ...values, Number.MIN_VALUE);
  const scale = span / max;

  const body: string[] = [];
  let y = CHART.top;
  let group: string | undefined;
  for (const bar of chart.bars) {
    if (bar.group !== undefined && bar.group !== group) {
      group = bar.group;
      y += 4;
      body.push(
        `<text class="group" x="8" y="${px(y + 13)}" font-weight="600" ${HALO}>${
          escapeXml(bar.group)
        }</text>`,
      );
      y += CHART.rowHeight;
    }
    const mid = y + CHART.rowHeight / 2;
    body.push(
      `<text class="label" x="${px(x0 - 8)}" y="${px(mid + 4)}" text-anchor="end">${
        escapeXml(bar.label)
      }</text>`,
    );
    const ok = bar.value !== undefined && Number.isFinite(bar.value) && bar.value >= 0;
    const w = ok ? bar.value! * scale : 0;
    if (ok) {
      body.push(
        `<rect class="bar" x="${px(x0)}" y="${px(mid - CHART.barHeight / 2)}" width="${px(w)}" ` +
          `height="${CHART.barHeight}" fill="#3b6ea8" data-value="${bar.value}"/>`,
      );
    }
    const text = ok ? formatRatio(bar.value) + (bar.note ? ` ${bar.note}` : "") : bar.note ?? "n/a";
    body.push(
      `<text class="value" x="${px(x0 + w + 6)}" y="${px(mid + 4)}" ${HALO}>${
        escapeXml(text)
      }</text>`,
    );
    y += CHART.rowHeight;
  }
  const bottom = y + 8;
  const behind: string[] = [];
  if (chart.reference !== undefined) {
    const rx = x0 + chart.reference * scale;
    behind.push(
      `<line class="reference" x1="${px(rx)}" y1="${CHART.top - 4}" x2="${px(rx)}" ` +
        `y2="${px(bottom - 4)}" stroke="#c0392b" stroke-dasharray="4 3"/>`,
      `<text class="reference-label" x="${px(rx)}" y="${px(bottom + 8)}" text-anchor="middle" ` +
        `fill="#c0392b">${escapeXml(formatRatio(chart.reference))}</text>`,
    );
  }
  const height = bottom + 18;
  const arrow = chart.better === "lower" ? "\u2190 lower is better" : "higher is better \u2192";
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${CHART.width}" height="${px(height)}" ` +
    `viewBox="0 0 ${CHART.width} ${px(height)}" ${FONT} font-size="12" role="img" ` +
    `aria-label="${escapeXml(`${chart.title}: ${chart.ratio}, ${arrow}`)}">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...behind,
    `<text class="title" x="8" y="20" font-size="15" font-weight="700">${
      escapeXml(chart.title)
    }</text>`,
    `<text class="ratio" x="8" y="38" fill="#444444">${escapeXml(chart.ratio)}</text>`,
    `<text class="better" x="${CHART.width - 8}" y="38" text-anchor="end" font-weight="700" ` +
    `fill="#1e7a34">${escapeXml(arrow)}</text>`,
    ...body,
    `</svg>`,
    "",
  ].join("\n");
}

function table(t: Table): string {
  const lines = [
    `#### ${t.title}`,
    "",
    `| ${t.head.map(escapeCell).join(" | ")} |`,
    `|${t.head.map(() => " --- ").join("|")}|`,
    ...t.rows.map((r) => `| ${r.map(escapeCell).join(" | ")} |`),
  ];
  if (t.notes && t.notes.length > 0) lines.push("", ...t.notes);
  return lines.join("\n");
}

function load(xs: number[]): string {
  return xs.length === 0 ? "n/a" : xs.map((x) => x.toFixed(2)).join(" / ");
}

/**
 * The Markdown page: machine facts, the charts (as images under `benchmarks/`, with the
 * direction that is better in the alt text), then every section's tables (or why it is
 * missing), then the notes.
 */
export function renderMarkdown(report: Report): string {
  const m = report.machine;
  const out: string[] = [
    "# Benchmarks",
    "",
    "<!-- Generated by `deno task bench:report` (bench/report.ts) from one run; do not edit. -->",
    "",
    `Generated by \`deno task bench:report\` on ${m.date}, from one run that took ` +
    `${Math.round(m.seconds)} s. Every figure and chart on this page comes from that run ` +
    "(except where a cell says *results.json*: gevent's reference figures, used when gevent " +
    "could not run). Ratios compare implementations measured in the same run; the absolute " +
    "figures depend on the machine and its load.",
    "",
  ];
  if (m.quick) {
    out.push(
      "> **Quick run** (`--quick`): fewer runs and smaller sizes, to check the pipeline. " +
        "These figures are not representative.",
      "",
    );
  }
  out.push(
    "## Machine",
    "",
    "| | |",
    "| --- | --- |",
    `| date (UTC) | ${escapeCell(m.date)} |`,
    `| Deno | ${escapeCell(`${m.deno} (V8 ${m.v8}, TypeScript ${m.typescript})`)} |`,
    `| Python / gevent | ${escapeCell(m.python)} |`,
    `| CPUs | ${m.cpus} x ${escapeCell(m.cpuModel)} |`,
    `| load average (1 / 5 / 15 min) at start | ${load(m.loadStart)} |`,
    `| load average at end | ${load(m.loadEnd)} |`,
    `| library revision | ${escapeCell(m.revision)} |`,
    `| command | \`${escapeCell(m.command)}\` |`,
    "",
    "## Charts",
    "",
  );
  for (const c of report.charts) {
    const better = c.better === "lower" ? "lower is better" : "higher is better";
    out.push(
      `### ${c.title}`,
      "",
      `${c.ratio}; **${better}**${
        c.reference === undefined ? "" : ` (dashed line: ${formatRatio(c.reference)})`
      }.`,
      "",
      `![${escapeCell(`${c.title}: ${c.ratio}, ${better}`)}](benchmarks/${c.file})`,
      "",
    );
  }
  out.push("## Figures", "");
  for (const s of report.sections) {
    out.push(`### ${s.title}`, "");
    if (s.command) out.push(`\`${s.command}\``, "");
    if (s.skipped !== undefined) {
      out.push(`**Not run:** ${s.skipped}`, "");
      continue;
    }
    if (s.failed !== undefined) {
      out.push(`**Failed, no figures:** ${s.failed}`, "");
      continue;
    }
    if (s.intro) out.push(s.intro, "");
    for (const t of s.tables) out.push(table(t), "");
  }
  if (report.notes.length > 0) {
    out.push("## Notes", "", ...report.notes.map((n) => `- ${n}`), "");
  }
  return out.join("\n");
}
