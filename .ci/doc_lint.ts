/**
 * Runs `deno doc --lint` on each entry point of deno.json alone: a combined run hides the
 * private-type references of an entry point whose types another entry point exports.
 */
const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
const entries = Object.values(config.exports as Record<string, string>);
let failed = 0;
for (const entry of entries) {
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--lint", entry],
    cwd: new URL("..", import.meta.url),
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) {
    console.error(`deno doc --lint ${entry}: failed`);
    failed++;
  }
}
console.log(`doc lint: ${entries.length - failed} of ${entries.length} entry points clean`);
if (failed > 0) Deno.exit(1);
