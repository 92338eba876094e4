// Parse AsyncAPI documents with the official parser (@asyncapi/parser, installed in tools/asyncapi by
// `make setup`) and report every diagnostic it gives.
//
//     node tests/asyncapi/validate.mjs DOCUMENT.json...
//
// Prints one JSON object on stdout: each document's path mapped to its diagnostics, each
// {severity, code, message, path}, severity being "error", "warning", "information" or "hint". Exits
// 1 if any document has a diagnostic of severity error (or does not parse at all), 2 on a usage or
// set-up error, 0 otherwise: the warnings are for the caller to check.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

// The parser lives in tools/asyncapi's node_modules, not next to this script: resolve it from there.
const require = createRequire(new URL("../../tools/asyncapi/package.json", import.meta.url));
let Parser;
try {
  ({ Parser } = require("@asyncapi/parser"));
} catch (error) {
  console.error(`@asyncapi/parser is missing (${error.message}); run \`make setup\``);
  process.exit(2);
}

const SEVERITIES = ["error", "warning", "information", "hint"];
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node tests/asyncapi/validate.mjs DOCUMENT.json...");
  process.exit(2);
}

const parser = new Parser();
const report = {};
let failed = false;
for (const file of files) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
  report[file] = diagnostics.map((d) => ({
    severity: SEVERITIES[d.severity] ?? String(d.severity),
    code: String(d.code),
    message: d.message,
    path: d.path.map(String),
  }));
  // No document means it did not parse, whatever the diagnostics say.
  if (document === undefined || diagnostics.some((d) => d.severity === 0)) {
    failed = true;
  }
}
process.stdout.write(JSON.stringify(report, null, 2) + "\n");
process.exit(failed ? 1 : 0);
