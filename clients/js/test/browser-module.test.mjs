// ss.js evaluated as an ES module, the way a browser runs it under `import SS from "./ss.mjs"`: strict
// mode, no `module`, top-level `this` undefined. Node does this when the files sit in a "type": "module"
// package, so this test copies them into one. It is its own file, so its global SS stays in its process.

import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);
const { makeFakeWebSocket } = require("../test-support/fake.js");
const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");

test("ss.mjs works when ss.js runs as an ES module (the browser case)", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "typed-ss-client-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, "package.json"), '{"type": "module"}');
  for (const file of ["ss.js", "ss.mjs"]) fs.copyFileSync(path.join(ROOT, file), path.join(dir, file));

  const { default: SS, SS: named } = await import(pathToFileURL(path.join(dir, "ss.mjs")).href);
  assert.equal(typeof SS, "function");
  assert.equal(named, SS);
  assert.equal(globalThis.SS, SS, "like window.SS in a browser");

  const FakeWebSocket = makeFakeWebSocket();
  const ss = new SS("ws://x/socket", { WebSocket: FakeWebSocket });
  FakeWebSocket.last().open();
  ss.emit("join", "global");
  assert.deepEqual(FakeWebSocket.last().sent, ["join\x02global"]);
});
