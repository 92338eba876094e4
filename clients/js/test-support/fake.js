"use strict";
// Test doubles: a WebSocket class the test drives by hand, and a fake clock for the reconnect timers.
// Nothing here waits for real time, so every test is deterministic and fast.

const SS = require("../ss.js");

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** A fresh FakeWebSocket class per test, so that `instances` never mixes tests. */
function makeFakeWebSocket() {
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = CONNECTING;
      this.binaryType = "blob";
      this.sent = [];
      this.closeCalls = [];
      FakeWebSocket.instances.push(this);
    }

    // Like a browser: sending while connecting throws; after close it is silently discarded.
    send(data) {
      if (this.readyState === CONNECTING) {
        throw new Error("InvalidStateError: still connecting");
      }
      if (this.readyState === OPEN) {
        this.sent.push(data);
      }
    }

    close(code, reason) {
      this.closeCalls.push(code === undefined ? null : code);
      if (this.readyState < CLOSING) {
        this.readyState = CLOSING;
      }
    }

    // --- driven by the test, as if the network or server did it ---

    open() {
      this.readyState = OPEN;
      this.onopen({ type: "open" });
    }

    receive(data) {
      this.onmessage({ type: "message", data });
    }

    /** The connection ends; 1006 (abnormal) like a dropped TCP connection unless told otherwise. */
    serverClose(code = 1006, reason = "") {
      this.readyState = CLOSED;
      this.onerror({ type: "error" });
      this.onclose({ type: "close", code, reason, wasClean: code !== 1006 });
    }

    /** The close event that follows a close() the client asked for. */
    finishClose() {
      this.serverClose(this.closeCalls.length ? this.closeCalls[0] : 1005);
    }
  }
  FakeWebSocket.instances = [];
  FakeWebSocket.last = () => FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  return FakeWebSocket;
}

/** setTimeout/clearTimeout that only run when the test says so, and a clock that only moves by advance(). */
function makeClock() {
  let nextId = 1;
  const timers = new Map();
  const clock = {
    delays: [],
    time: 0,
    /** The injected `now`: the fake current time in ms. */
    now() {
      return clock.time;
    },
    /** Moves the fake time forward; fires no timer (fire() does that). */
    advance(ms) {
      clock.time += ms;
    },
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { fn, ms });
      clock.delays.push(ms);
      return id;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    get pending() {
      return timers.size;
    },
    /** Runs every pending timer once (the client sets at most one). */
    fire() {
      const due = [...timers.entries()];
      timers.clear();
      for (const [, t] of due) t.fn();
      return due.length;
    },
  };
  return clock;
}

/** A client on a FakeWebSocket and a fake clock; errors go to `errors` instead of the console. */
function makeClient(opts = {}) {
  const FakeWebSocket = makeFakeWebSocket();
  const clock = makeClock();
  const errors = [];
  const ss = new SS(
    "ws://test/socket",
    Object.assign(
      {
        WebSocket: FakeWebSocket,
        setTimeout: clock.setTimeout,
        clearTimeout: clock.clearTimeout,
        now: clock.now,
        random: () => 0.5,
      },
      opts,
    ),
  );
  ss.onError((err) => errors.push(err));
  return { ss, FakeWebSocket, clock, errors, ws: () => FakeWebSocket.last() };
}

/** The bytes of an ArrayBuffer as a plain array, for deepEqual. */
function bytes(buffer) {
  return Array.from(new Uint8Array(buffer));
}

/** A binary server frame: the UTF-8 event name, 0x01, flags, 0x02, payload bytes. */
function binaryFrame(event, flags, payload) {
  const head = Buffer.from(`${event}\x01${flags}\x02`, "utf8");
  const all = Buffer.concat([head, Buffer.from(payload)]);
  return all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
}

module.exports = { SS, makeFakeWebSocket, makeClock, makeClient, bytes, binaryFrame, CONNECTING, OPEN, CLOSING, CLOSED };
