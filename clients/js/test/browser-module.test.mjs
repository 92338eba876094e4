// ss.js evaluated as an ES module, the way a browser runs it under `import SS from "./ss.mjs"`: strict
// mode, no `module`, top-level `this` undefined. Node does this when the files sit in a "type": "module"
// package, so this test copies them into one. It is its own file, so its global SS stays in its process.
// The typed runtime (ss-typed.js through ss-typed.mjs) is run the same way.

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

test("ss-typed.mjs works when both files run as ES modules (the browser case)", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "typed-ss-client-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, "package.json"), '{"type": "module"}');
  for (const file of ["ss.js", "ss.mjs", "ss-typed.js", "ss-typed.mjs"]) {
    fs.copyFileSync(path.join(ROOT, file), path.join(dir, file));
  }

  const typed = await import(pathToFileURL(path.join(dir, "ss-typed.mjs")).href);
  const { default: SS } = await import(pathToFileURL(path.join(dir, "ss.mjs")).href);
  const FakeWebSocket = makeFakeWebSocket();
  const client = typed.connect("ws://x/socket", { fingerprint: "f", kinds: { say: "text" } }, { WebSocket: FakeWebSocket });
  assert.ok(client.raw instanceof SS);
  assert.equal(FakeWebSocket.last().url, "ws://x/socket?ss_contract=f");
  FakeWebSocket.last().open();
  client.send.say("hi");
  assert.deepEqual(FakeWebSocket.last().sent, ["say\x02hi"]);
});

test("ss-typed.js run as a module without ss.js says what is missing", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "typed-ss-client-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, "package.json"), '{"type": "module"}');
  fs.copyFileSync(path.join(ROOT, "ss-typed.js"), path.join(dir, "alone.js"));
  const slot = Symbol.for("typed-ss-client");
  const saved = Object.getOwnPropertyDescriptor(globalThis, slot);
  delete globalThis[slot];
  try {
    await assert.rejects(import(pathToFileURL(path.join(dir, "alone.js")).href), /ss-typed\.js needs ss\.js/);
  } finally {
    if (saved) Object.defineProperty(globalThis, slot, saved);
  }
});
