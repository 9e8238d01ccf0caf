/**
 * Gives every `Deno.test` of a file that imports this module a deadline, so that a test that
 * hangs fails with its name instead of stalling the whole run (a mutation audit found bugs
 * that only showed as a hang). The limit is far above any test's normal duration.
 */

/** Milliseconds a test may take before it fails as hung. */
export const TEST_DEADLINE_MS: number = (() => {
  try {
    return Number(Deno.env.get("TEST_DEADLINE_MS") ?? 120_000);
  } catch {
    return 120_000; // no --allow-env
  }
})();

type Fn = (t: Deno.TestContext) => void | Promise<void>;

function withDeadline(name: string, fn: Fn): Fn {
  return async (t) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`"${name}" did not finish within ${TEST_DEADLINE_MS} ms: it hangs`)),
        TEST_DEADLINE_MS,
      );
    });
    try {
      await Promise.race([fn(t), hung]);
    } finally {
      clearTimeout(timer);
    }
  };
}

const original = Deno.test;
if (!(original as { _deadline?: boolean })._deadline) {
  const test = function (this: unknown, ...args: unknown[]): void {
    let def: Deno.TestDefinition;
    if (typeof args[0] === "string") {
      def = typeof args[1] === "function"
        ? { name: args[0], fn: args[1] as Fn }
        : { ...(args[1] as object), name: args[0], fn: args[2] as Fn };
    } else if (typeof args[0] === "function") {
      def = { name: (args[0] as Fn).name, fn: args[0] as Fn };
    } else {
      def = typeof args[1] === "function"
        ? { ...(args[0] as object), fn: args[1] as Fn } as Deno.TestDefinition
        : args[0] as Deno.TestDefinition;
      if (def.name === undefined) def = { ...def, name: def.fn.name };
    }
    original({ ...def, fn: withDeadline(def.name, def.fn) });
  };
  Object.assign(test, original, { _deadline: true });
  (Deno as { test: unknown }).test = test;
}
