// Drives Tinfoil's npm `ehbp` client against a base URL and prints one JSON line per event.
//
// usage: node ehbp_client.mjs <dir holding node_modules/ehbp> <base url> <count> <pause at>
//        <rediscover at>
// Before request number <pause at> it prints {"paused": <n>} and waits for a line on stdin
// (the test rotates a key meanwhile); before request <rediscover at> it fetches the key again
// with a new transport. Each request prints {"i", "status", "ok", "content"} or {"i", "error"}.
import { createInterface } from "node:readline";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [dir, baseUrl, countArg, pauseArg, rediscoverArg] = process.argv.slice(2);
const { createTransport } = await import(
  pathToFileURL(join(dir, "node_modules", "ehbp", "dist", "esm", "index.js")).href
);
const count = Number(countArg);
const pauseAt = Number(pauseArg);
const rediscoverAt = Number(rediscoverArg);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");

let transport = await createTransport(baseUrl);
for (let i = 0; i < count; i++) {
  if (i === pauseAt) {
    print({ paused: i });
    await lines.next();
  }
  if (i === rediscoverAt) {
    transport = await createTransport(baseUrl);
  }
  const body = JSON.stringify({
    model: "sealgate-demo-echo",
    messages: [{ role: "user", content: `request ${i}` }],
  });
  try {
    const response = await transport.post(new URL("/v1/chat/completions", baseUrl).href, body, {
      headers: { "Content-Type": "application/json" },
    });
    const text = await response.text();
    let content = null;
    if (response.ok) {
      content = JSON.parse(text).choices[0].message.content;
    }
    print({ i, status: response.status, ok: response.ok, content });
  } catch (error) {
    print({ i, error: `${error.name}: ${error.message}` });
  }
}
process.exit(0);
