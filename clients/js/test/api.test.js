"use strict";
// The public API kept from the original client: constructor, callbacks, on/off/emit/close, noop.

const test = require("node:test");
const assert = require("node:assert/strict");
const { SS, makeClient, makeFakeWebSocket, CLOSING } = require("../test-support/fake.js");

test("the constructor opens at once with sac-sock and arraybuffer", () => {
  const { ws, FakeWebSocket } = makeClient();
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(ws().url, "ws://test/socket");
  assert.equal(ws().protocols, "sac-sock");
  assert.equal(ws().binaryType, "arraybuffer");
});

test("reconnect defaults: enabled, replayOnConnect, intervalMS is the backoff base", () => {
  const { ss } = makeClient();
  assert.equal(ss.reconnectOpts.enabled, true);
  assert.equal(ss.reconnectOpts.replayOnConnect, true);
  assert.equal(ss.reconnectOpts.intervalMS, 1000);
  assert.equal(ss.reconnectOpts.base, 1000);
  assert.equal(ss.reconnectOpts.cap, 30000);
  assert.equal(ss.reconnectOpts.factor, 2);
  assert.equal(ss.reconnectOpts.resetAfterMS, 5000);
});

test("reconnect options merge over the defaults; base wins over intervalMS", () => {
  let { ss } = makeClient({ reconnectOpts: { intervalMS: 250, replayOnConnect: false } });
  assert.equal(ss.reconnectOpts.base, 250);
  assert.equal(ss.reconnectOpts.intervalMS, 250);
  assert.equal(ss.reconnectOpts.replayOnConnect, false);
  assert.equal(ss.reconnectOpts.enabled, true);
  ({ ss } = makeClient({ reconnectOpts: { intervalMS: 250, base: 100 } }));
  assert.equal(ss.reconnectOpts.base, 100);
});

test("the global WebSocket is the default; a missing one is a clear error", () => {
  const FakeWebSocket = makeFakeWebSocket();
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = FakeWebSocket;
  try {
    new SS("ws://x/socket");
    assert.equal(FakeWebSocket.instances.length, 1);
    delete globalThis.WebSocket;
    assert.throws(() => new SS("ws://x/socket"), TypeError);
  } finally {
    if (saved === undefined) delete globalThis.WebSocket;
    else globalThis.WebSocket = saved;
  }
});

test("a WebSocket constructor that throws at first is the caller's error", () => {
  class Broken {
    constructor() {
      throw new SyntaxError("bad url");
    }
  }
  assert.throws(() => new SS("nope", { WebSocket: Broken }), SyntaxError);
});

test("onConnect gets the open event with this = the client", () => {
  const { ss, ws } = makeClient();
  const seen = [];
  ss.onConnect(function (ev) {
    seen.push([this, ev.type, this.connected]);
  });
  assert.equal(ss.connected, false);
  ws().open();
  assert.deepEqual(seen, [[ss, "open", true]]);
  assert.equal(ss.connected, true);
});

test("onDisconnect gets the close event with this = the client", () => {
  const { ss, ws } = makeClient();
  const seen = [];
  ss.onDisconnect(function (ev) {
    seen.push([this, ev.code, this.connected]);
  });
  ws().open();
  ws().serverClose(1001);
  assert.deepEqual(seen, [[ss, 1001, false]]);
});

test("on registers one handler per event, this = the client; off removes it", () => {
  const { ss, ws } = makeClient();
  ws().open();
  const seen = [];
  ss.on("echo", () => seen.push("first"));
  ss.on("echo", function (data) {
    seen.push([this === ss, data]);
  });
  ws().receive("echo\x01S\x02hi");
  ss.off("echo");
  ws().receive("echo\x01S\x02again");
  assert.deepEqual(seen, [[true, "hi"]]);
});

test("registration methods chain", () => {
  const { ss } = makeClient();
  assert.equal(ss.on("a", () => {}).off("a").onConnect(() => {}).onDisconnect(() => {}).onError(() => {}), ss);
});

test("emit sends when connected and returns true", () => {
  const { ss, ws } = makeClient();
  ws().open();
  assert.equal(ss.emit("join", "global"), true);
  assert.deepEqual(ws().sent, ["join\x02global"]);
});

test("noop is a function that does nothing", () => {
  const { ss } = makeClient();
  assert.equal(typeof ss.noop, "function");
  assert.equal(ss.noop(), undefined);
  ss.onConnect(ss.noop).onDisconnect(ss.noop);
});

test("close() sends 1000, fires onDisconnect once, and never reconnects", () => {
  const { ss, ws, clock, FakeWebSocket } = makeClient();
  let disconnects = 0;
  ss.onDisconnect(() => disconnects++);
  ws().open();
  ss.close();
  assert.deepEqual(ws().closeCalls, [1000]);
  assert.equal(ws().readyState, CLOSING);
  assert.equal(ss.connected, false);
  ws().finishClose();
  assert.equal(disconnects, 1);
  assert.equal(clock.pending, 0);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(ss.reconnectOpts.enabled, false);
});

test("close() is idempotent and emits after it fail with 'closed'", () => {
  const { ss, ws, errors } = makeClient();
  ws().open();
  ss.close();
  ss.close();
  assert.deepEqual(ws().closeCalls, [1000]);
  assert.equal(ss.emit("late", "x"), false);
  ws().finishClose();
  assert.equal(ss.emit("later", "x"), false);
  assert.deepEqual(
    errors.map((e) => [e.code, e.event]),
    [
      ["closed", "late"],
      ["closed", "later"],
    ],
  );
});

test("close() while connecting closes the attempt without onDisconnect", () => {
  const { ss, ws, clock, errors } = makeClient();
  let disconnects = 0;
  ss.onDisconnect(() => disconnects++);
  ss.close();
  assert.deepEqual(ws().closeCalls, [1000]);
  ws().finishClose();
  assert.equal(disconnects, 0);
  assert.equal(clock.pending, 0);
  assert.deepEqual(errors, []);
});

test("an open event that arrives after close() does not connect", () => {
  const { ss, ws } = makeClient();
  let connects = 0;
  ss.onConnect(() => connects++);
  ss.close();
  ws().readyState = 1;
  ws().onopen({ type: "open" });
  assert.equal(connects, 0);
  assert.equal(ss.connected, false);
});

test("the default onError logs to the console instead of throwing", () => {
  const FakeWebSocket = makeFakeWebSocket();
  const ss = new SS("ws://x/socket", { WebSocket: FakeWebSocket });
  const logged = [];
  const saved = console.error;
  console.error = (...args) => logged.push(args);
  try {
    FakeWebSocket.last().open();
    FakeWebSocket.last().receive("no delimiter");
  } finally {
    console.error = saved;
  }
  assert.equal(logged.length, 1);
  assert.equal(logged[0][1].code, "bad_frame");
  ss.close();
});

test("an onError that throws is logged, not thrown", () => {
  const { ss, ws } = makeClient();
  ss.onError(() => {
    throw new Error("bad onError");
  });
  const saved = console.error;
  const logged = [];
  console.error = (...args) => logged.push(args);
  try {
    ws().open();
    assert.doesNotThrow(() => ws().receive("no delimiter"));
  } finally {
    console.error = saved;
  }
  assert.equal(logged.length, 2);
});

test("SSError is exported and carries a code", () => {
  const { ws, errors } = makeClient();
  ws().open();
  ws().receive("junk");
  assert.ok(errors[0] instanceof SS.SSError);
  assert.ok(errors[0] instanceof Error);
  assert.equal(errors[0].name, "SSError");
  assert.equal(SS.SUBPROTOCOL, "sac-sock");
});
