// --client-cmd adapter: Tinfoil's npm `ehbp` client (node). Needs SEALGATE_REDTEAM_EHBP_DIR,
// a directory whose node_modules holds ehbp. Reads SEALGATE_REDTEAM_URL / _PROMPT / _STREAM /
// _MODEL; prints one JSON line {"status", "content", "headers"}; exit 1 when the client refuses.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const env = process.env;
const { createTransport } = await import(
  pathToFileURL(join(env.SEALGATE_REDTEAM_EHBP_DIR, "node_modules", "ehbp", "dist", "esm", "index.js")).href
);
const stream = env.SEALGATE_REDTEAM_STREAM === "1";
const body = JSON.stringify({
  model: env.SEALGATE_REDTEAM_MODEL || "sealgate-demo-echo",
  messages: [{ role: "user", content: env.SEALGATE_REDTEAM_PROMPT }],
  stream,
});
try {
  const transport = await createTransport(env.SEALGATE_REDTEAM_URL);
  const response = await transport.post(
    new URL("/v1/chat/completions", env.SEALGATE_REDTEAM_URL).href,
    body,
    { headers: { "Content-Type": "application/json" } },
  );
  const text = await response.text();
  let content = "";
  if (response.ok && stream) {
    for (const line of text.split("\n")) {
      if (line.startsWith("data: ") && line !== "data: [DONE]") {
        const choices = JSON.parse(line.slice(6)).choices || [];
        if (choices.length) content += choices[0].delta?.content || "";
      }
    }
  } else if (response.ok) {
    content = JSON.parse(text).choices[0].message.content;
  }
  const headers = Object.fromEntries(response.headers.entries());
  process.stdout.write(JSON.stringify({ status: response.status, content, headers }) + "\n");
  process.exit(0);
} catch (error) {
  process.stderr.write(`${error.name}: ${error.message}\n`);
  process.exit(1);
}
