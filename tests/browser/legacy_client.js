/*
 * A stand-in for the ORIGINAL Sacrificial-Socket browser client (client/sacrificial-socket.js in
 * raz-varren/sacrificial-socket), for tests only. It is not typed-ss's client (that is clients/js/ss.js).
 *
 * Why: typed-ss promises that a page written for the original client, loading the original client file,
 * works against a typed-ss server unchanged. The project ships only its own code, so the browser tests
 * cannot load the original file; they load this one instead. It was written for typed-ss from the
 * specification (shared reference sacrificial-socket.md §2-3) and behaves like the original on purpose,
 * quirks included:
 *   - same API: new SS(url, {reconnectOpts: {enabled, replayOnConnect, intervalMS}}), noop, onConnect,
 *     onDisconnect, on, off, emit, close; window.SS (and module.exports under CommonJS);
 *   - byte-for-byte the same frames: text `name 0x02 payload`, the payload being JSON.stringify(data) for
 *     any object (null, arrays and typed arrays included) and String(data) otherwise, so a missing
 *     argument sends the text "undefined"; only an ArrayBuffer goes as a binary frame, its event name one
 *     byte per UTF-16 code unit (truncated to 8 bits, i.e. Latin-1);
 *   - server frames parsed one character (text) or byte (binary) at a time; a binary event name is read as
 *     Latin-1; a J payload goes through JSON.parse uncaught; __hello is just an event nobody listens to;
 *   - emits while not open are dropped with a console message, never queued;
 *   - reconnect after every close, at a fixed interval (5000 ms), forever; close() only disables the
 *     next reconnect (a pending one still happens) and calls ws.close() with no code.
 * Setting LEGACY_CLIENT to the path of the original file runs tests/browser/test_legacy_client.py with it.
 */
(function (global) {
  "use strict";

  var SOH = 1;
  var STX = 2;

  function SS(url, opts) {
    var self = this;
    var handlers = {};
    var settings = { enabled: true, replayOnConnect: true, intervalMS: 5000 };
    var reconnecting = false;
    var connectedOnce = false;
    var ws = new WebSocket(url, "sac-sock");

    opts = opts || {};
    if (typeof opts.reconnectOpts == "object") {
      for (var key in opts.reconnectOpts) {
        if (Object.prototype.hasOwnProperty.call(opts.reconnectOpts, key)) {
          settings[key] = opts.reconnectOpts[key];
        }
      }
    }

    self.noop = function () {};
    ws.binaryType = "arraybuffer";

    function parseText(text) {
      var frame = { name: "", flags: {}, payload: "" };
      var inHeader = false;
      var inPayload = false;
      for (var i = 0; i < text.length; i++) {
        var c = text[i];
        var code = c.charCodeAt(0);
        if (!inPayload && !inHeader && code !== STX && code !== SOH) {
          frame.name += c;
        } else if (!inHeader && code === SOH) {
          inHeader = true; // even inside the payload: a frame with no header loses its first SOH there
        } else if (inHeader && !inPayload && code !== STX) {
          frame.flags[c] = true;
        } else if (!inPayload && code === STX) {
          inPayload = true;
        } else {
          frame.payload += c;
        }
      }
      return frame;
    }

    function parseBinary(buffer) {
      var frame = { name: "", flags: {}, payload: "" }; // no STX: the payload stays the empty string
      var bytes = new DataView(buffer);
      var inHeader = false;
      for (var i = 0; i < bytes.byteLength; i++) {
        var b = bytes.getUint8(i);
        if (b !== STX && b !== SOH && !inHeader) {
          frame.name += String.fromCharCode(b); // Latin-1, not UTF-8
        } else if (b === SOH && !inHeader) {
          inHeader = true;
        } else if (inHeader && b !== STX) {
          frame.flags[String.fromCharCode(b)] = true;
        } else if (b === STX) {
          frame.payload = buffer.slice(i + 1);
          break;
        }
      }
      return frame;
    }

    ws.onmessage = function (e) {
      var frame = { name: "", flags: {}, payload: "" };
      if (typeof e.data === "string") {
        frame = parseText(e.data);
      } else if (e.data && e.data instanceof ArrayBuffer && e.data.byteLength !== undefined) {
        frame = parseBinary(e.data);
      }
      if (frame.name.length === 0 || typeof handlers[frame.name] === "undefined") {
        return;
      }
      handlers[frame.name].call(self, frame.flags.J ? JSON.parse(frame.payload) : frame.payload);
    };

    function scheduleReconnect() {
      // Never cancelled, not even by close(): the original's behaviour.
      setTimeout(function () {
        console.log("attempting reconnect");
        var next = new WebSocket(url, "sac-sock");
        next.onmessage = ws.onmessage;
        next.onclose = ws.onclose;
        next.binaryType = ws.binaryType;
        if (settings.replayOnConnect || !connectedOnce) {
          next.onopen = ws.onopen;
        }
        ws = next;
        if (!settings.replayOnConnect && connectedOnce) {
          self.onConnect(self.noop);
        }
      }, settings.intervalMS);
    }

    // onConnect and onDisconnect set handlers on the current WebSocket only, as the original does.
    self.onConnect = function (callback) {
      ws.onopen = function () {
        connectedOnce = true;
        callback.apply(self, arguments);
        reconnecting = false;
      };
    };
    self.onConnect(self.noop);

    self.onDisconnect = function (callback) {
      ws.onclose = function () {
        if (!reconnecting && connectedOnce) {
          callback.apply(self, arguments);
        }
        if (settings.enabled) {
          reconnecting = true;
          scheduleReconnect();
        }
      };
    };
    self.onDisconnect(self.noop);

    self.on = function (name, callback) {
      handlers[name] = callback;
    };

    self.off = function (name) {
      if (handlers[name]) {
        delete handlers[name];
      }
    };

    self.emit = function (name, data) {
      var state = ws.readyState;
      if (state === 0) {
        console.warn("websocket is not open yet");
        return;
      }
      if (state === 2 || state === 3) {
        console.error("websocket is closed");
        return;
      }
      var frame;
      if (data instanceof ArrayBuffer) {
        var out = new Uint8Array(name.length + 1 + data.byteLength);
        for (var i = 0; i < name.length; i++) {
          out[i] = name.charCodeAt(i) & 0xff;
        }
        out[name.length] = STX;
        out.set(new Uint8Array(data), name.length + 1);
        frame = out.buffer;
      } else if (typeof data === "object") {
        frame = name + String.fromCharCode(STX) + JSON.stringify(data);
      } else {
        frame = name + String.fromCharCode(STX) + data;
      }
      ws.send(frame);
    };

    self.close = function () {
      settings.enabled = false;
      return ws.close();
    };
  }

  global.SS = SS;
  if (typeof module === "object" && module && module.exports) {
    module.exports = SS;
  }
})(typeof window !== "undefined" ? window : this);
