"use strict";
// Connection state recovery with ss.js and the generated client's base (ss-typed.js) against a real
// typed-ss server with recovery on (tests/js_recovery_app.py), through a proxy that cuts the connection the
// way a failing network does. Never skipped: without the server these tests fail.

const test = require("node:test");
const assert = require("node:assert/strict");
const { WebSocket } = require("ws");
const SS = require("../ss.js");
const { startServer } = require("../test-support/server.js");
const { startProxy } = require("../test-support/proxy.js");

const LIMIT = { timeout: 15000 };

let server = null;
let proxy = null;
test.before(async () => {
  server = await startServer(0, "tests.js_recovery_app:app");
  proxy = await startProxy(server.port);
});
test.after(async () => {
  if (proxy) await proxy.stop();
  if (server) await server.stop();
});

function client(t, url) {
  const ss = new SS(url, { WebSocket, reconnectOpts: { base: 20, cap: 50 } });
  ss.onError(() => {});
  t.after(() => ss.close());
  return ss;
}

async function until(check, what) {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test("a cut connection comes back as the same socket, in its room, missing nothing", LIMIT, async (t) => {
  const viaProxy = `ws://127.0.0.1:${proxy.port}/socket`;
  const away = client(t, viaProxy);
  const other = client(t, server.url);
  const said = [];
  const reconnects = [];
  let joined = false;
  away.on("said", (text) => said.push(text));
  away.on("joined", () => (joined = true));
  away.onReconnect((event) => reconnects.push(event));
  let sent = 0;
  other.on("sent", () => sent++);
  away.emit("join", "r");
  await until(() => joined, "the join");
  const id = away.id;
  other.emit("say", "before");
  await until(() => said.length === 1, "the first message");

  assert.equal(proxy.cut(), 1);
  for (const text of ["while", "away", "and", "back"]) other.emit("say", text);
  await until(() => sent === 5 && said.length >= 5, "the messages sent while away");
  await new Promise((resolve) => setTimeout(resolve, 100)); // a duplicate would arrive now

  assert.deepEqual(said, ["before", "while", "away", "and", "back"]);
  assert.deepEqual(reconnects, [{ recovered: true, rooms: ["r"] }]);
  assert.equal(away.id, id);
});

test("a client reconnecting to a server that no longer has its session starts afresh", LIMIT, async (t) => {
  const restarted = await startServer(0, "tests.js_recovery_app:app");
  t.after(() => restarted.stop());
  const cutter = await startProxy(restarted.port);
  t.after(() => cutter.stop());
  const ss = client(t, `ws://127.0.0.1:${cutter.port}/socket`);
  const reconnects = [];
  ss.onReconnect((event) => reconnects.push(event));
  await until(() => ss.id !== null, "the first __hello");
  const first = ss.id;
  await restarted.stop(); // the sessions were in its memory
  const again = await startServer(restarted.port, "tests.js_recovery_app:app");
  t.after(() => again.stop());
  cutter.cut();
  await until(() => reconnects.length === 1, "the reconnect");
  assert.deepEqual(reconnects, [{ recovered: false, rooms: [] }]);
  assert.notEqual(ss.id, first);
});
