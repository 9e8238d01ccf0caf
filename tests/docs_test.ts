import "./_deadline.ts";
import assert from "node:assert/strict";
import * as root from "@x/gevent";
import * as socket from "@x/gevent/socket";

// Keeps docs/gevent.md's tables honest: every name of the TypeScript column must be exported
// by the entry point its row cites, classes must be written with `new` and functions without,
// and members of the table's instance variables must exist on their class.

type Namespace = Record<string, unknown>;

const config = JSON.parse(
  await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
) as { name: string; exports: Record<string, string> };

/** Every entry point of the package (from deno.json), by the name users import it with. */
const ENTRY_POINTS: Record<string, Namespace> = {};
for (const [key, path] of Object.entries(config.exports)) {
  const name = key === "." ? config.name : `${config.name}${key.slice(1)}`;
  ENTRY_POINTS[name] = await import(new URL(`../${path}`, import.meta.url).href);
}

/** The instance variables of the tables (as the page's legend says) and what they are. */
const INSTANCES: Record<string, () => object> = {
  g: () => root.Greenlet.prototype,
  hub: () => root.getHub(),
  t: () => root.Timeout.prototype,
  event: () => root.Event.prototype,
  result: () => root.AsyncResult.prototype,
  q: () => root.Queue.prototype,
  sem: () => root.Semaphore.prototype,
  pool: () => root.Pool.prototype,
  group: () => root.Group.prototype,
  loc: () => root.Local.prototype,
  s: () => socket.Socket.prototype,
  server: () => root.StreamServer.prototype,
  httpServer: () => root.HttpServer.prototype,
};

/** The page's stand-ins for the reader's own values (the legend's "other lower-case names"). */
const PLACEHOLDERS = new Set([
  "E",
  "app",
  "args",
  "buf",
  "cb",
  "data",
  "e",
  "err",
  "f",
  "h",
  "handle",
  "ip",
  "ipAddr",
  "item",
  "items",
  "jobs",
  "n",
  "objs",
  "p",
  "port",
  "x",
]);

/** Globals the tables may name. */
const GLOBALS = new Set(["Deno", "Uint8Array"]);

const KEYWORDS = new Set([
  "async",
  "await",
  "catch",
  "const",
  "false",
  "for",
  "if",
  "let",
  "new",
  "null",
  "of",
  "return",
  "throw",
  "true",
  "undefined",
  "using",
]);

interface Row {
  line: number;
  ts: string;
  from: string[];
}

/** The code spans of a markdown table cell or line. */
function codeSpans(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
}

/** Splits a table row on `|` outside code spans. */
function cells(line: string): string[] {
  const out: string[] = [];
  let cell = "";
  let inCode = false;
  for (const ch of line.trim().replace(/^\||\|$/g, "")) {
    if (ch === "`") inCode = !inCode;
    if (ch === "|" && !inCode) {
      out.push(cell.trim());
      cell = "";
    } else {
      cell += ch;
    }
  }
  out.push(cell.trim());
  return out;
}

/** The rows of every table whose header is `gevent | @x/gevent | from`. */
function tableRows(markdown: string): Row[] {
  const rows: Row[] = [];
  const lines = markdown.split("\n");
  let inTable = false;
  for (const [i, line] of lines.entries()) {
    if (!line.startsWith("|")) {
      inTable = false;
      continue;
    }
    const cs = cells(line);
    if (cs[0] === "gevent" && cs[1] === "@x/gevent") {
      assert.equal(cs[2], "from", `line ${i + 1}: the table's third column must be "from"`);
      inTable = true;
      continue;
    }
    if (!inTable || /^[-\s|]+$/.test(line)) continue;
    assert.equal(cs.length, 3, `line ${i + 1}: a row needs 3 cells: ${line}`);
    rows.push({ line: i + 1, ts: cs[1], from: codeSpans(cs[2]) });
  }
  return rows;
}

function isClass(value: unknown): boolean {
  return typeof value === "function" &&
    /^class[\s{]/.test(Function.prototype.toString.call(value));
}

/** What is wrong with one row: names not exported, `new` missing or misplaced, unknown members. */
function problems(row: Row): string[] {
  const out: string[] = [];
  const where = `line ${row.line}`;
  if (row.from.length === 0) return [`${where}: no entry point in the "from" column`];
  const modules: Namespace[] = [];
  for (const spec of row.from) {
    const mod = ENTRY_POINTS[spec];
    if (mod === undefined) out.push(`${where}: ${spec} is not an entry point of the package`);
    else modules.push(mod);
  }
  for (const span of codeSpans(row.ts)) {
    const code = span.replace(/"[^"]*"/g, '""').replace(/<[\w\s,|[\]]*>/g, ""); // strings, type args
    const declared = new Set(
      [...code.matchAll(/\b(?:const|let|using)\s+([A-Za-z_$][\w$]*)/g)].map((m) => m[1]),
    );
    for (const m of code.matchAll(/[A-Za-z_$][\w$]*/g)) {
      const name = m[0];
      const start = m.index!;
      const before = code.slice(0, start);
      const after = code.slice(start + name.length);
      if (/\.\s*$/.test(before) || /^\s*:/.test(after)) continue; // a member or an option key
      if (KEYWORDS.has(name) || PLACEHOLDERS.has(name) || GLOBALS.has(name)) continue;
      const member = /^\s*\.\s*([A-Za-z_$][\w$]*)/.exec(after)?.[1];
      if (name in INSTANCES) {
        if (member !== undefined && !(member in INSTANCES[name]())) {
          out.push(`${where}: \`${name}.${member}\`: ${name} has no member ${member}`);
        }
        continue;
      }
      if (declared.has(name)) continue;
      const mod = modules.find((ns) => name in ns);
      if (mod === undefined) {
        out.push(`${where}: \`${name}\` is not exported by ${row.from.join(" or ")}`);
        continue;
      }
      const value = mod[name];
      const withNew = /\bnew\s+$/.test(before);
      const called = /^\s*\(/.test(after);
      if (withNew && !isClass(value)) out.push(`${where}: \`new ${name}\`: ${name} is no class`);
      if (!withNew && called && isClass(value)) {
        out.push(`${where}: \`${name}(...)\` omits \`new\` (${name} is a class)`);
      }
      if (member !== undefined && !(member in (value as object))) {
        out.push(`${where}: \`${name}.${member}\`: ${name} has no member ${member}`);
      }
    }
  }
  return out;
}

const page = await Deno.readTextFile(new URL("../docs/gevent.md", import.meta.url));

Deno.test("docs/gevent.md names only what the entry points it cites export", () => {
  const rows = tableRows(page);
  assert.ok(rows.length >= 60, `expected the page's tables, found ${rows.length} rows`);
  assert.deepEqual(rows.flatMap(problems), []);
});

Deno.test("the docs/gevent.md check finds a wrong entry point, a missing new, a wrong member", async (t) => {
  const check = (ts: string, from = "`@x/gevent`") =>
    problems({ line: 1, ts, from: codeSpans(from) });
  await t.step("a name the cited entry point does not export", () => {
    assert.match(
      check("`getaddrinfo(h, p)`").join(),
      /`getaddrinfo` is not exported by @x\/gevent/,
    );
    assert.deepEqual(check("`getaddrinfo(h, p)`", "`@x/gevent/socket`"), []);
  });
  await t.step("a class called without new, a function called with it", () => {
    assert.match(check("`Queue(2)`").join(), /omits `new`/);
    assert.match(check("`new spawn(f)`").join(), /is no class/);
    assert.deepEqual(check("`new Queue(2)`; `spawn(f)`; `new Local<number>()`"), []);
  });
  await t.step("a member its class or namespace lacks", () => {
    assert.match(check("`g.linkvalue(cb)`").join(), /g has no member linkvalue/);
    assert.match(check("`socket.gethostbyname_ex(h)`").join(), /socket has no member/);
    assert.match(check("`Timeout.begin(5)`").join(), /Timeout has no member begin/);
    assert.deepEqual(check("`hub.notError`, `socket.gethostbynameEx(h)`"), []);
  });
  await t.step("an entry point the package does not have", () => {
    assert.match(check("`spawn(f)`", "`@x/gevent/nope`").join(), /not an entry point/);
  });
});

Deno.test("mod.ts's module doc is a map of every entry point", async () => {
  const source = await Deno.readTextFile(new URL("../mod.ts", import.meta.url));
  const doc = source.slice(0, source.indexOf("@module"));
  for (const name of Object.keys(ENTRY_POINTS)) {
    if (name === config.name) continue;
    const page = `https://jsr.io/${config.name}/doc/${name.slice(config.name.length + 1)}`;
    assert.ok(doc.includes(`[\`${name}\`](${page})`), `mod.ts's module doc does not link ${name}`);
  }
});

/** Fences `deno test --doc` runs, and fences for what is not code to run (never `ts ignore`). */
const RUN = new Set(["ts", "typescript", "js", "javascript", "tsx", "jsx", "mts", "mjs"]);
const NOT_RUN = new Set([
  "sh",
  "bash",
  "console",
  "text",
  "json",
  "jsonc",
  "yaml",
  "toml",
  "sql",
  "python",
  "diff",
  "nginx",
]);

Deno.test("README.md and docs/ run their TypeScript and import the package by its name", async () => {
  const files = [new URL("../README.md", import.meta.url)];
  for await (const entry of Deno.readDir(new URL("../docs/", import.meta.url))) {
    if (entry.name.endsWith(".md")) files.push(new URL(`../docs/${entry.name}`, import.meta.url));
  }
  let blocks = 0;
  for (const file of files) {
    const text = await Deno.readTextFile(file);
    for (const m of text.matchAll(/^```([^\n]*)\n([\s\S]*?)^```[ \t]*$/gm)) {
      const [, info, body] = m;
      const lang = info.trim();
      const at = `${file.pathname.split("/").slice(-2).join("/")}: a block`;
      assert.ok(
        RUN.has(lang) || NOT_RUN.has(lang),
        `${at} fenced as "${info}": use ts (run by deno task test), or sh, text, ... for the rest`,
      );
      if (!RUN.has(lang)) continue;
      blocks++;
      for (const [, spec] of body.matchAll(/from\s+"([^"]+)"/g)) {
        assert.ok(
          /^(@x\/gevent(\/[a-z]+)?|node:[a-z/_]+|npm:.+)$/.test(spec),
          `${at} imports "${spec}": import the package as @x/gevent or @x/gevent/<module>`,
        );
      }
      assert.match(body, /from "@x\/gevent/, `${at} does not import the package`);
    }
  }
  assert.ok(blocks >= 20, `expected the pages' TypeScript blocks, found ${blocks}`);
});
