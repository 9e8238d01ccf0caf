/**
 * Code that has never heard of greenlets: it uses only `fetch`, `Deno.connect` and
 * `Deno.resolveDns`, looked up at call time as any library does. The monkey tests run it
 * inside greenlets and `withTimeout`, patched and unpatched.
 */

/** How many times each function's `finally` block has run. */
export const finallyRan = { getText: 0, exchange: 0, resolveMany: 0 };

/** GETs `url` and returns the body as text. */
export async function getText(url: string, init?: RequestInit): Promise<string> {
  try {
    const res = await fetch(url, init);
    return await res.text();
  } finally {
    finallyRan.getText++;
  }
}

/** Connects, sends `message`, and returns everything the server sends until it closes. */
export async function exchange(port: number, message: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(message));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(1024);
    for (let n; (n = await conn.read(buf)) !== null;) chunks.push(buf.slice(0, n));
    return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  } finally {
    conn.close();
    finallyRan.exchange++;
  }
}

/** Resolves `name` (type A) `times` times, one after the other. */
export async function resolveMany(name: string, times: number): Promise<string[][]> {
  const answers: string[][] = [];
  try {
    for (let i = 0; i < times; i++) answers.push(await Deno.resolveDns(name, "A"));
    return answers;
  } finally {
    finallyRan.resolveMany++;
  }
}
