"use strict";
// The one implementation file loads three ways: CommonJS, ES module (ss.mjs), and a classic <script>; the
// typed runtime (ss-typed.js) two ways, CommonJS and ES module (ss-typed.mjs), on the same constructor.

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");
const { makeFakeWebSocket } = require("../test-support/fake.js");

const ROOT = path.join(__dirname, "..");

test("require gives the constructor, and does not define a global SS", () => {
  const SS = require("../ss.js");
  assert.equal(typeof SS, "function");
  assert.equal(typeof SS.SSError, "function");
  assert.equal(globalThis.SS, undefined);
});

test("require by package name resolves to the same constructor", () => {
  assert.equal(require("typed-ss-client"), require("../ss.js"));
});

test("the ESM entry gives the same constructor as require (no second copy)", async () => {
  const mod = await import("../ss.mjs");
  assert.equal(mod.default, require("../ss.js"));
  assert.equal(mod.SS, mod.default);
  const byName = await import("typed-ss-client");
  assert.equal(byName.default, mod.default);
});

test("the ESM entry works: a client built through it connects", async () => {
  const { default: SS } = await import("../ss.mjs");
  const FakeWebSocket = makeFakeWebSocket();
  const ss = new SS("ws://x/socket", { WebSocket: FakeWebSocket });
  FakeWebSocket.last().open();
  assert.equal(ss.connected, true);
});

test("the typed runtime: require, ss-typed.mjs and the package name give one API", async () => {
  const typed = require("../ss-typed.js");
  assert.deepEqual(Object.keys(typed).sort(), ["RELOAD_NEEDED_CODE", "connect", "withContract"]);
  assert.equal(require("typed-ss-client/typed"), typed);
  const mod = await import("../ss-typed.mjs");
  assert.equal(mod.connect, typed.connect);
  assert.equal(mod.withContract, typed.withContract);
  assert.equal(mod.RELOAD_NEEDED_CODE, 4010);
  assert.equal((await import("typed-ss-client/typed")).connect, typed.connect);
  assert.equal(globalThis.SSTyped, undefined, "no global of its own");
});

test("the typed runtime builds its clients on the plain client's constructor", () => {
  const SS = require("../ss.js");
  const { connect } = require("../ss-typed.js");
  const FakeWebSocket = makeFakeWebSocket();
  const client = connect("ws://x/socket", { fingerprint: "f", kinds: {} }, { WebSocket: FakeWebSocket });
  assert.ok(client.raw instanceof SS);
  client.close();
});

function loadAsClassicScript(extraGlobals) {
  const FakeWebSocket = makeFakeWebSocket();
  // A browser-like global: window is the global object itself, WebSocket and TextEncoder are globals,
  // and there is no `module`.
  const sandbox = Object.assign({ WebSocket: FakeWebSocket, TextEncoder, TextDecoder, console }, extraGlobals);
  sandbox.window = sandbox;
  vm.createContext(sandbox);
  const source = fs.readFileSync(path.join(ROOT, "ss.js"), "utf8");
  vm.runInContext(source, sandbox, { filename: "ss.js" });
  return { sandbox, FakeWebSocket };
}

test("as a classic script the global SS appears and works", () => {
  const { sandbox, FakeWebSocket } = loadAsClassicScript();
  assert.equal(typeof sandbox.SS, "function");
  assert.equal(vm.runInContext("typeof SS", sandbox), "function");
  // Used the way an old page does, with the page's own global WebSocket.
  vm.runInContext(
    `var got = [];
     var ss = new SS("ws://x/socket");
     ss.onConnect(function () { this.emit("join", "global"); });
     ss.on("bin", function (data) { got.push(new Uint8Array(data)[0]); });`,
    sandbox,
  );
  const ws = FakeWebSocket.last();
  ws.open();
  assert.deepEqual(ws.sent, ["join\x02global"]);
  const frame = Uint8Array.of(0x62, 0x69, 0x6e, 1, 0x42, 2, 7);
  ws.receive(frame.buffer);
  assert.equal(vm.runInContext("got[0]", sandbox), 7);
  // Binary emits from inside the page's realm are still recognised as binary.
  vm.runInContext('ss.emit("café", new Uint8Array([1, 2]).buffer)', sandbox);
  assert.deepEqual(Array.from(new Uint8Array(ws.sent[1])), [0x63, 0x61, 0x66, 0xc3, 0xa9, 2, 1, 2]);
});

test("as a classic script with vm.runInNewContext and a plain fake window", () => {
  const fakeWindow = {};
  const source = fs.readFileSync(path.join(ROOT, "ss.js"), "utf8");
  vm.runInNewContext(source, { window: fakeWindow });
  assert.equal(typeof fakeWindow.SS, "function");
});

test("the classic script loads without TextEncoder (needed only for binary frames)", () => {
  const source = fs.readFileSync(path.join(ROOT, "ss.js"), "utf8");
  const sandbox = { window: {} };
  assert.doesNotThrow(() => vm.runInNewContext(source, sandbox));
  assert.equal(typeof sandbox.window.SS, "function");
});

test("package.json points every entry at a file that exists", () => {
  const pkg = require("../package.json");
  for (const entry of [pkg.exports["."], pkg.exports["./typed"]]) {
    for (const file of [entry.import, entry.require, entry.types, entry.default]) {
      assert.ok(fs.existsSync(path.join(ROOT, file)), file);
    }
  }
  for (const file of [pkg.main, pkg.types]) {
    assert.ok(fs.existsSync(path.join(ROOT, file)), file);
  }
  for (const file of pkg.files) {
    assert.ok(fs.existsSync(path.join(ROOT, file)), file);
  }
  assert.equal(pkg.name, "typed-ss-client");
  // One version for both packages: the Python suite checks it equals typed_ss.__version__.
  assert.match(pkg.version, /^\d+\.\d+\.\d+/);
  assert.match(pkg.devDependencies.ws, /^\d+\.\d+\.\d+$/, "ws is pinned exactly");
});
