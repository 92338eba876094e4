/*
 * typed-ss-client: the browser client for typed-ss, wire-compatible with the original
 * Sacrificial-Socket "sac-sock" protocol.
 *
 * Plain ES2017, no dependencies, no build step. One file works as:
 *   - a classic <script>: defines the global `SS` (window.SS, or self.SS in a worker);
 *   - CommonJS: `const SS = require("typed-ss-client")`;
 *   - an ES module through ss.mjs, which imports this file and re-exports the constructor.
 *
 * Frames (0x01 = SOH, 0x02 = STX):
 *   client -> server   <event> 0x02 <payload>                      text or binary
 *                      <event> 0x01 c<id>|r<id>|e<id> 0x02 <payload>   a call, or the answer to one
 *   server -> client   <event> 0x01 <flags> 0x02 <payload>          flag J: payload is JSON
 *                                                                   then c<id>, r<id>, e<id>: calls,
 *                                                                   or o<tag>.<offset>: recovery
 * Presence (a typed-ss server with presence on): the reserved __presence event (onPresence) and the
 * __members call (members).
 * README.md lists every difference from the original client.
 */
(function (root, factory) {
  "use strict";
  var SS = factory();
  // ss.mjs reads the constructor from this well-known slot, so the ES module entry needs no copy of the
  // implementation whether this file was loaded by a browser (as a module) or by Node's CommonJS loader.
  if (root) {
    try {
      Object.defineProperty(root, Symbol.for("typed-ss-client"), { value: SS, configurable: true });
    } catch (e) {
      // A frozen global: ss.mjs will not work there, the other two ways still do.
    }
  }
  if (typeof module === "object" && module !== null && typeof module.exports === "object") {
    module.exports = SS;
  } else if (root) {
    /** @type {{ SS?: unknown }} */ (root).SS = SS;
  }
})(
  typeof window !== "undefined"
    ? window
    : typeof self !== "undefined"
      ? self
      : typeof globalThis !== "undefined"
        ? globalThis
        : undefined,
  /**
   * The checked contract between this file and ss.d.ts (npm run typecheck): what the factory returns must
   * be the class ss.d.ts declares, statics included.
   * @returns {typeof import("./ss.js")}
   */
  function () {
    "use strict";

    // Types for tsc, from ss.d.ts. Inside this function `SS` is the class below; `Client` is the declared one.
    /** @typedef {import("./ss.js")} Client */
    /** @typedef {import("./ss.js").Options} Options */
    /** @typedef {import("./ss.js").ReconnectOptions} ReconnectOptions */
    /** @typedef {import("./ss.js").ResolvedReconnectOptions} ResolvedReconnectOptions */
    /** @typedef {import("./ss.js").EmitOptions} EmitOptions */
    /** @typedef {import("./ss.js").ErrorCode} ErrorCode */
    /** @typedef {import("./ss.js").CallOptions} CallOptions */
    /** @typedef {import("./ss.js").CallErrorName} CallErrorName */
    /** @typedef {import("./ss.js").OpenEvent} OpenEvent */
    /** @typedef {import("./ss.js").CloseEventLike} CloseEventLike */
    /** @typedef {import("./ss.js").Hello} Hello */
    /** @typedef {import("./ss.js").ServerErrorPayload} ServerErrorPayload */
    /** @typedef {import("./ss.js").Reconnect} Reconnect */
    /** @typedef {import("./ss.js").Gap} Gap */
    /** @typedef {import("./ss.js").Presence} Presence */
    /** @typedef {import("./ss.js").Members} Members */
    /** @typedef {import("./ss.js").WebSocketLike} WebSocketLike */
    /** @typedef {import("./ss.js").WebSocketConstructor} WebSocketConstructor */
    /** An encoded emit: a text frame (size -1 until measured) or a binary one. @typedef {{ frame: string | ArrayBuffer, size: number }} Encoded */
    /** A parsed server frame. @typedef {{ event: string, flags: string, payload: string | ArrayBuffer }} Frame */
    /** An emit, as queued. @typedef {{ event: string, data: unknown, encoded: Encoded }} Message */
    /**
     * A call of ours that waits for its answer.
     * @typedef {{ event: string, resolve: (value: any) => void, reject: (error: SSError<string>) => void, timer: unknown }} Pending
     */
    /** The call marker of a frame: c (a call), r (a reply), e (an error reply), and the call's id. @typedef {{ kind: string, id: number }} Marker */

    /** @type {"sac-sock"} */
    var SUBPROTOCOL = "sac-sock";
    var SOH = "\x01";
    var STX = "\x02";
    var HELLO_EVENT = "__hello";
    var ERROR_EVENT = "__error";
    var GAP_EVENT = "__gap";
    // Presence (a server with presence= on): a member of a tracked room joined or left; a room's members.
    var PRESENCE_EVENT = "__presence";
    var MEMBERS_EVENT = "__members";
    // A frame kept for connection state recovery: o<stream tag>.<offset>, both decimal (protocol.md §10).
    var OFFSET_FLAG = /o(\d+)\.(\d+)/;
    // The most offsets a reconnect sends (protocol.md §10); a client with more starts afresh.
    var MAX_OFFSETS = 256;
    var WS_OPEN = 1; // WebSocket.OPEN; a constant, so injected WebSocket classes need not define it
    var MAX_CALL_ID = 2147483647; // 2^31-1: call ids run from 1 to this, then wrap (protocol.md §5)
    var DEFAULT_CALL_TIMEOUT = 5000; // ms
    var MAX_TIMER_MS = 2147483647; // longer timeouts overflow setTimeout (it would fire at once): no timer
    var CALL_MARKER = /^([cre])([1-9][0-9]{0,9})$/;

    var DEFAULT_RECONNECT = {
      enabled: true,
      replayOnConnect: true,
      intervalMS: 1000, // the backoff base; kept under its original name for old pages
      cap: 30000,
      factor: 2,
      // The backoff starts over only after a connection that stayed open this long (ms). A server that
      // accepts and then closes at once (an on_connect hook failing: 1011) is not retried at the base rate.
      resetAfterMS: 5000,
      reconnectCodes: [],
    };
    var DEFAULT_MAX_QUEUE = 1000;

    // Close codes after which reconnecting is pointless or unwanted (protocol.md §6).
    var NO_RECONNECT_CODES = [1000, 1008];
    // Application-range codes (4000-4999) that still mean "come back later".
    var RECONNECT_APP_CODES = [4008];

    function noop() {}

    // Returned by SS#_decode when the payload could not be decoded (undefined and null are valid values).
    var DECODE_FAILED = {};
    // Returned by callMarker for flags that hold a malformed call marker.
    var BAD_MARKER = { kind: "", id: 0 };

    // --- errors ----------------------------------------------------------------------------------

    /**
     * Everything that goes wrong without being the caller's immediate fault reaches onError as an SSError.
     * `code` says what happened; the other fields are set when they apply (see ss.d.ts).
     * @template {string} [Code=ErrorCode]
     */
    class SSError extends Error {
      /**
       * @param {Code} code
       * @param {string} message
       * @param {object} [fields]
       */
      constructor(code, message, fields) {
        super(message);
        /** @type {string} */
        this.name = "SSError";
        /** @type {Code} */
        this.code = code;
        if (fields) {
          Object.assign(this, fields);
        }
      }
    }

    /**
     * How a call failed: an SSError whose `name` says what happened (CallTimeout, ServerError,
     * Disconnected, TooManyCalls) and whose `code` is the server's code for a ServerError.
     * @extends {SSError<string>}
     */
    class CallError extends SSError {
      /**
       * @param {CallErrorName} name
       * @param {string} code
       * @param {string} message
       * @param {string} event
       * @param {unknown} [data]
       */
      constructor(name, code, message, event, data) {
        super(code, message);
        /** @type {CallErrorName} */
        this.name = name;
        /** @type {string} */
        this.event = event;
        /** @type {unknown} */
        this.data = data === undefined ? null : data;
      }
    }

    // --- UTF-8 -----------------------------------------------------------------------------------

    // TextEncoder/TextDecoder are looked up when first needed, not at load time, so that loading the file
    // never fails in an environment that lacks them and never uses them (text frames do not need them).
    /** @type {TextEncoder | null} */
    var encoder = null;
    /** @type {TextDecoder | null} */
    var decoder = null;

    /** @param {string} text */
    function utf8Encode(text) {
      if (encoder === null) {
        encoder = new TextEncoder();
      }
      return encoder.encode(text);
    }

    /** @param {Uint8Array} bytes */
    function utf8Decode(bytes) {
      if (decoder === null) {
        decoder = new TextDecoder("utf-8");
      }
      return decoder.decode(bytes);
    }

    /**
     * The UTF-8 byte length of a string, counted without encoding it (lone surrogates count as U+FFFD).
     * @param {string} text
     */
    function utf8Length(text) {
      var n = text.length;
      for (var i = 0; i < text.length; i++) {
        var c = text.charCodeAt(i);
        if (c < 0x80) {
          continue;
        }
        if (c < 0x800) {
          n += 1;
        } else if (c >= 0xd800 && c <= 0xdbff && isLowSurrogate(text.charCodeAt(i + 1))) {
          n += 2; // two code units, four bytes
          i++;
        } else {
          n += 2;
        }
      }
      return n;
    }

    /** @param {number} c */
    function isLowSurrogate(c) {
      return c >= 0xdc00 && c <= 0xdfff;
    }

    // --- frame encoding (client -> server) -------------------------------------------------------

    /**
     * @param {unknown} value
     * @returns {value is ArrayBuffer}
     */
    function isArrayBuffer(value) {
      // toString instead of instanceof: a buffer from another realm (an iframe, a vm context) is one too.
      return Object.prototype.toString.call(value) === "[object ArrayBuffer]";
    }

    /**
     * @param {unknown} value
     * @returns {value is ArrayBuffer | ArrayBufferView}
     */
    function isBinary(value) {
      return isArrayBuffer(value) || ArrayBuffer.isView(value);
    }

    /**
     * @param {ArrayBuffer | ArrayBufferView} value
     * @returns {Uint8Array}
     */
    function bytesOf(value) {
      if (isArrayBuffer(value)) {
        return new Uint8Array(value);
      }
      return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    }

    /**
     * Encodes one emit. Returns {frame, size}: frame is a string (text frame) or an ArrayBuffer (binary
     * frame); size is its length in bytes on the wire. Throws SSError("bad_data") for a value JSON cannot
     * represent. `flags` (ASCII: a call marker, "c7") go between 0x01 and 0x02; none for a plain emit.
     * @param {string} event
     * @param {unknown} data
     * @param {string} [flags]
     * @returns {Encoded}
     */
    function encodeFrame(event, data, flags) {
      var head = flags ? event + SOH + flags : event;
      if (isBinary(data)) {
        return encodeBinaryFrame(head, bytesOf(data));
      }
      var text = head + STX + payloadText(event, data);
      return { frame: text, size: -1 }; // measured only when needed: see fitsIn
    }

    /**
     * @param {string} event
     * @param {unknown} data
     * @returns {string}
     */
    function payloadText(event, data) {
      if (data === undefined) {
        return ""; // the original sent the text "undefined"
      }
      if (typeof data === "string") {
        return data;
      }
      var json;
      try {
        json = JSON.stringify(data);
      } catch (err) {
        var why = "cannot encode the data for " + JSON.stringify(event) + " as JSON: " + /** @type {Error} */ (err).message;
        throw new SSError("bad_data", why, { event: event, data: data, cause: err });
      }
      if (json === undefined) {
        var what = "cannot encode a " + typeof data + " as JSON for " + JSON.stringify(event);
        throw new SSError("bad_data", what, { event: event, data: data });
      }
      return json;
    }

    /**
     * @param {string} head the event name, and its flags after 0x01 when it has some
     * @param {Uint8Array} body
     * @returns {Encoded}
     */
    function encodeBinaryFrame(head, body) {
      var name = utf8Encode(head);
      var out = new Uint8Array(name.length + 1 + body.length);
      out.set(name, 0);
      out[name.length] = 2;
      out.set(body, name.length + 1);
      return { frame: out.buffer, size: out.length };
    }

    /**
     * Whether the frame fits in `limit` bytes. A text frame's UTF-8 length is counted (once) only when it could
     * matter: a UTF-16 code unit is at most 3 UTF-8 bytes, so a short enough string fits without counting.
     * @param {Encoded} encoded
     * @param {number} limit
     */
    function fitsIn(encoded, limit) {
      // A negative size marks a text frame (see encodeFrame).
      if (encoded.size < 0 && /** @type {string} */ (encoded.frame).length * 3 <= limit) {
        return true;
      }
      return frameSize(encoded) <= limit;
    }

    /**
     * The frame's exact size in bytes on the wire.
     * @param {Encoded} encoded
     */
    function frameSize(encoded) {
      if (encoded.size < 0) {
        encoded.size = utf8Length(/** @type {string} */ (encoded.frame));
      }
      return encoded.size;
    }

    /**
     * @param {unknown} event
     * @returns {string | null}
     */
    function checkEventName(event) {
      if (typeof event !== "string" || event === "") {
        return "the event name must be a non-empty string";
      }
      if (event.indexOf(SOH) >= 0 || event.indexOf(STX) >= 0) {
        return "the event name must not contain 0x01 or 0x02";
      }
      return null;
    }

    // --- frame parsing (server -> client) --------------------------------------------------------

    /**
     * @param {unknown} value
     * @returns {value is string}
     */
    function isString(value) {
      return typeof value === "string";
    }

    /**
     * Splits a server frame into {event, flags, payload}. payload is a string for a text frame and an
     * ArrayBuffer for a binary one; flags is the string between 0x01 and 0x02 (each character one flag).
     * Returns null when the frame has no 0x02 or an empty event name.
     * @param {unknown} data
     * @returns {Frame | null}
     */
    function parseFrame(data) {
      if (typeof data === "string") {
        return parseTextFrame(data);
      }
      if (isArrayBuffer(data)) {
        return parseBinaryFrame(new Uint8Array(data));
      }
      if (ArrayBuffer.isView(data)) {
        return parseBinaryFrame(bytesOf(data)); // e.g. a Node Buffer when binaryType was not honoured
      }
      return null; // a Blob: binaryType is "arraybuffer", so only a misbehaving WebSocket gives one
    }

    /**
     * @param {string} text
     * @returns {Frame | null}
     */
    function parseTextFrame(text) {
      var stx = text.indexOf(STX);
      if (stx < 0) {
        return null;
      }
      // The event name ends at the first 0x01 before the 0x02; a 0x01 after it belongs to the payload.
      var head = text.slice(0, stx);
      var soh = head.indexOf(SOH);
      var event = soh >= 0 ? head.slice(0, soh) : head;
      if (event === "") {
        return null;
      }
      return {
        event: event,
        flags: soh >= 0 ? head.slice(soh + 1) : "",
        payload: text.slice(stx + 1),
      };
    }

    /**
     * @param {Uint8Array} bytes
     * @returns {Frame | null}
     */
    function parseBinaryFrame(bytes) {
      var stx = bytes.indexOf(2);
      if (stx < 0) {
        return null;
      }
      var soh = bytes.subarray(0, stx).indexOf(1);
      var nameEnd = soh >= 0 ? soh : stx;
      if (nameEnd === 0) {
        return null;
      }
      var flagBytes = soh >= 0 ? bytes.subarray(soh + 1, stx) : new Uint8Array(0);
      var body = bytes.subarray(stx + 1);
      return {
        event: utf8Decode(bytes.subarray(0, nameEnd)),
        flags: String.fromCharCode.apply(null, /** @type {number[]} */ (/** @type {unknown} */ (flagBytes))),
        // A copy that holds exactly the payload, so handlers get a plain ArrayBuffer of the right length.
        // (Not a SharedArrayBuffer: frames come from a WebSocket, as ArrayBuffers or Node Buffers.)
        payload: /** @type {ArrayBuffer} */ (body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)),
      };
    }

    /**
     * The value handed to a handler: JSON-parsed for the J flag, else the payload itself. Throws on bad JSON.
     * @param {Frame} frame
     * @returns {unknown}
     */
    function decodePayload(frame) {
      if (frame.flags.indexOf("J") < 0) {
        return frame.payload;
      }
      var text = typeof frame.payload === "string" ? frame.payload : utf8Decode(new Uint8Array(frame.payload));
      return JSON.parse(text);
    }

    /**
     * The call marker in a server frame's flags (after its type letter): null when there is none, as in
     * every frame that is not part of a call; BAD_MARKER when the flags from the first c, r or e on are
     * not a letter and an id from 1 to 2^31-1 without leading zeros (protocol.md §5).
     * @param {string} flags
     * @returns {Marker | null}
     */
    function callMarker(flags) {
      if (flags === "" || flags === "J") {
        return null; // the common case, and every frame an original server sends
      }
      var at = flags.search(/[cre]/);
      if (at < 0) {
        return null;
      }
      var match = CALL_MARKER.exec(flags.slice(at));
      var id = match ? Number(match[2]) : 0;
      if (match === null || id > MAX_CALL_ID) {
        return BAD_MARKER;
      }
      return { kind: match[1], id: id };
    }

    /**
     * The timeout of a call in ms from its options: DEFAULT_CALL_TIMEOUT when not given; null (no timer)
     * for Infinity and anything setTimeout cannot hold; NaN for a value that is not a number >= 0.
     * @param {CallOptions | undefined} opts
     * @returns {number | null}
     */
    function callTimeout(opts) {
      var timeout = opts && opts.timeout !== undefined ? opts.timeout : DEFAULT_CALL_TIMEOUT;
      if (typeof timeout !== "number" || !(timeout >= 0)) {
        return NaN;
      }
      return timeout > MAX_TIMER_MS ? null : timeout;
    }

    /**
     * The payload of an error reply: {code, message, data}, from what an onCall handler threw.
     * @param {unknown} err
     * @returns {{ code: string, message: string, data: unknown }}
     */
    function errorReply(err) {
      var fields = /** @type {{ code?: unknown, message?: unknown, data?: unknown }} */ (
        err !== null && (typeof err === "object" || typeof err === "function") ? err : {}
      );
      var code = typeof fields.code === "string" && fields.code !== "" ? fields.code : "handler_error";
      var message = typeof fields.message === "string" ? fields.message : err === undefined ? "" : String(err);
      return { code: code, message: message, data: fields.data === undefined ? null : fields.data };
    }

    // --- options ---------------------------------------------------------------------------------

    /**
     * @param {ReconnectOptions | undefined} given
     * @returns {ResolvedReconnectOptions}
     */
    function reconnectOptions(given) {
      // Resolved once base and reconnectCodes are set below.
      var opts = /** @type {ResolvedReconnectOptions} */ (Object.assign({}, DEFAULT_RECONNECT, given || {}));
      // `base` and the original `intervalMS` name the same thing; `base` wins if both are given.
      if (given && given.base !== undefined) {
        opts.intervalMS = given.base;
      }
      opts.base = opts.intervalMS;
      opts.reconnectCodes = (opts.reconnectCodes || []).slice(); // never share the defaults' array
      return opts;
    }

    /**
     * @param {() => void} fn
     * @param {number} ms
     */
    function defaultSetTimeout(fn, ms) {
      return setTimeout(fn, ms);
    }

    /** @param {any} handle what defaultSetTimeout returned */
    function defaultClearTimeout(handle) {
      clearTimeout(handle);
    }

    /** Milliseconds from a monotonic clock when there is one (a wall clock can jump), else Date.now. */
    function defaultNow() {
      if (typeof performance !== "undefined" && performance && typeof performance.now === "function") {
        return performance.now();
      }
      return Date.now();
    }

    /** @param {unknown} err */
    function defaultOnError(err) {
      if (typeof console !== "undefined") {
        console.error("typed-ss-client:", err);
      }
    }

    // --- the client ------------------------------------------------------------------------------

    // Connection states. "waiting" is the backoff pause between two attempts; "closed" is final.
    var CONNECTING = "connecting";
    var OPEN = "open";
    var WAITING = "waiting";
    var CLOSED = "closed";

    class SS {
      /**
       * Opens the WebSocket at once. opts: {reconnectOpts: {enabled, replayOnConnect, intervalMS, base, cap,
       * factor, resetAfterMS, reconnectCodes}, maxQueue, WebSocket, random, setTimeout, clearTimeout, now}.
       * @param {string} url
       * @param {Options} [opts]
       */
      constructor(url, opts) {
        opts = opts || {};
        this.url = url;
        this.reconnectOpts = reconnectOptions(opts.reconnectOpts);
        /**
         * The socket id from the server's __hello; null until it arrives and while disconnected.
         * @type {string | null}
         */
        this.id = null;
        /**
         * The server's max_message_size from __hello; null when unknown (no check is made then).
         * @type {number | null}
         */
        this.maxMessageSize = null;
        /**
         * The server's contract fingerprint from __hello (typed-ss gen-client); null when it sent none.
         * @type {string | null}
         */
        this.contract = null;
        /**
         * The server's max_calls from __hello: the most calls of ours that may wait for a reply at once; null
         * until it arrives (no check is made then).
         * @type {number | null}
         */
        this.maxCalls = null;
        this.noop = noop;

        /** @type {WebSocketConstructor | null} */
        this._WebSocket = opts.WebSocket || (typeof WebSocket !== "undefined" ? WebSocket : null);
        this._random = opts.random || Math.random; // the options' functions are called unbound
        this._setTimeout = opts.setTimeout || defaultSetTimeout;
        this._clearTimeout = opts.clearTimeout || defaultClearTimeout;
        this._now = opts.now || defaultNow;
        this._maxQueue = opts.maxQueue === undefined ? DEFAULT_MAX_QUEUE : opts.maxQueue;

        /** @type {Record<string, unknown>} */
        this._events = Object.create(null);
        /** @type {Record<string, unknown>} */
        this._callHandlers = Object.create(null);
        /** @type {Map<number, Pending>} */
        this._calls = new Map(); // our calls that wait for an answer, by id
        this._lastCallId = 0;
        /** @type {(this: Client, event: OpenEvent) => void} */
        this._onConnect = noop;
        /** @type {(this: Client, event: CloseEventLike) => void} */
        this._onDisconnect = noop;
        /** @type {(this: Client, error: SSError) => void} */
        this._onError = defaultOnError;
        /** @type {(this: Client, hello: Hello) => void} */
        this._onHello = noop;
        /** @type {(this: Client, event: Reconnect) => void} */
        this._onReconnect = noop;
        /** @type {(this: Client, gap: Gap) => void} */
        this._onGap = noop;
        /** @type {(this: Client, event: Presence) => void} */
        this._onPresence = noop;
        // Connection state recovery: the session token from __hello, and the last offset received of each
        // stream, sent back when reconnecting (protocol.md §10).
        /** @type {string | null} */
        this._session = null;
        /** @type {Record<string, string>} */
        this._positions = Object.create(null);
        this._hadHello = false; // a __hello arrived on an earlier connection: the next one is a reconnect
        /** @type {Message[]} */
        this._queue = [];
        /** @type {WebSocketLike | null} */
        this._ws = null;
        this._state = CONNECTING;
        this._closedByUser = false;
        this._connectedOnce = false;
        // Attempts since the last connection that stayed open resetAfterMS; drives the backoff.
        this._attempt = 0;
        /** @type {number | null} */
        this._openedAt = null; // when the current connection opened, by this._now
        /** @type {unknown} */
        this._timer = null;

        if (!this._WebSocket) {
          throw new TypeError("typed-ss-client: no WebSocket class; pass one as the WebSocket option");
        }
        this._open(true);
      }

      /** True while the WebSocket is open and frames go out at once. */
      get connected() {
        return this._state === OPEN && this._ws !== null && this._ws.readyState === WS_OPEN;
      }

      /**
       * @param {(this: Client, event: OpenEvent) => void} cb
       * @returns {this}
       */
      onConnect(cb) {
        this._onConnect = cb;
        return this;
      }

      /**
       * @param {(this: Client, event: CloseEventLike) => void} cb
       * @returns {this}
       */
      onDisconnect(cb) {
        this._onDisconnect = cb;
        return this;
      }

      /**
       * @param {(this: Client, error: SSError) => void} cb
       * @returns {this}
       */
      onError(cb) {
        this._onError = cb;
        return this;
      }

      /**
       * Called with each `__hello` payload, after id, maxMessageSize and contract are set.
       * @param {(this: Client, hello: Hello) => void} cb
       * @returns {this}
       */
      onHello(cb) {
        this._onHello = cb;
        return this;
      }

      /**
       * Called after each reconnect (not the first connection), once the server's __hello has arrived:
       * {recovered: true, rooms} when the server took this client's session up (same id, same rooms, and
       * every frame missed meanwhile is delivered before any newer one); {recovered: false, rooms: []} when
       * it starts afresh, as always with a server that has connection state recovery off.
       * @param {(this: Client, event: Reconnect) => void} cb
       * @returns {this}
       */
      onReconnect(cb) {
        this._onReconnect = cb;
        return this;
      }

      /**
       * Called with {room, lost} when the server tells this client that messages of a room it is in (room
       * null: of the broadcasts) were lost between the server's instances: the moment to fetch that room's
       * state again.
       * @param {(this: Client, gap: Gap) => void} cb
       * @returns {this}
       */
      onGap(cb) {
        this._onGap = cb;
        return this;
      }

      /**
       * Called with {room, change, socket, presence} when a member of a tracked room this client is in joined
       * or left ("joined", "left"), on any of the server's instances (`__presence`, from a server with
       * presence on). `presence` is that member's presence payload, or null.
       * @template [P=unknown]
       * @param {(this: Client, event: import("./ss.js").Presence<P>) => void} cb
       * @returns {this}
       */
      onPresence(cb) {
        this._onPresence = /** @type {(this: Client, event: Presence) => void} */ (cb);
        return this;
      }

      /**
       * @param {string} event
       * @param {(this: Client, data: any) => void} cb
       * @returns {this}
       */
      on(event, cb) {
        this._events[event] = cb;
        return this;
      }

      /**
       * @param {string} event
       * @returns {this}
       */
      off(event) {
        delete this._events[event];
        return this;
      }

      /**
       * Sends an event. Returns true when the frame was sent or queued, false when it was not (the reason
       * goes to onError). opts.volatile: never queue; drop the emit when not connected.
       * @param {string} event
       * @param {unknown} [data]
       * @param {EmitOptions} [opts]
       * @returns {boolean}
       */
      emit(event, data, opts) {
        var volatile = Boolean(opts && opts.volatile);
        var encoded = this._encode(event, data);
        if (encoded === null) {
          return false;
        }
        var message = { event: event, data: data, encoded: encoded };
        if (!this._fitsLimit(message)) {
          return false;
        }
        if (this.connected) {
          return this._send(message);
        }
        if (this._state === CLOSED || this._closedByUser) {
          this._report("closed", "not sent: the client is closed", { event: event, data: data });
          return false;
        }
        if (volatile || this._maxQueue <= 0) {
          this._report("not_connected", "volatile emit dropped: not connected", { event: event, data: data });
          return false;
        }
        this._enqueue(message);
        return true;
      }

      // --- calls ------------------------------------------------------------------------------------

      /**
       * Calls the server: sends `data` as emit would, marked as a call, and resolves with the handler's
       * return value, decoded as `on` handlers receive data. Rejects with a CallError (CallTimeout,
       * ServerError, Disconnected, TooManyCalls) or, when nothing was sent, an SSError (bad_event, bad_data,
       * too_big, send_failed). Never queued: a call while not connected fails at once.
       * @param {string} event
       * @param {unknown} [data]
       * @param {CallOptions} [opts]
       * @returns {Promise<any>}
       */
      call(event, data, opts) {
        var self = this;
        return new Promise(function (resolve, reject) {
          self._startCall(event, data, opts, resolve, reject);
        });
      }

      /**
       * @param {string} event
       * @param {unknown} data
       * @param {CallOptions | undefined} opts
       * @param {(value: any) => void} resolve
       * @param {(error: SSError<string>) => void} reject
       */
      _startCall(event, data, opts, resolve, reject) {
        var problem = checkEventName(event);
        if (problem !== null) {
          reject(new SSError("bad_event", problem, { event: event, data: data }));
          return;
        }
        var timeout = callTimeout(opts);
        if (Number.isNaN(timeout)) {
          reject(new SSError("bad_data", "the call's timeout must be a number of ms >= 0", { event: event, data: data }));
          return;
        }
        if (!this.connected) {
          reject(new CallError("Disconnected", "disconnected", "not connected: the call was not sent", event));
          return;
        }
        if (this.maxCalls !== null && this._calls.size >= this.maxCalls) {
          var why = this.maxCalls + " calls already wait for a reply (the server's max_calls)";
          reject(new CallError("TooManyCalls", "too_many_calls", why, event));
          return;
        }
        var id = this._nextCallId();
        /** @type {Encoded} */
        var encoded;
        try {
          encoded = encodeFrame(event, data, "c" + id);
        } catch (err) {
          reject(/** @type {SSError} */ (err)); // bad_data: encodeFrame throws nothing else
          return;
        }
        var limit = this.maxMessageSize;
        if (limit !== null && !fitsIn(encoded, limit)) {
          var size = frameSize(encoded);
          var tooBig = "not sent: the frame is " + size + " bytes, the server accepts at most " + limit;
          reject(new SSError("too_big", tooBig, { event: event, data: data, size: size, limit: limit }));
          return;
        }
        try {
          /** @type {WebSocketLike} */ (this._ws).send(encoded.frame);
        } catch (err) {
          var refused = "the WebSocket refused the frame: " + /** @type {Error} */ (err).message;
          reject(new SSError("send_failed", refused, { event: event, data: data, cause: err }));
          return;
        }
        var self = this;
        /** @type {Pending} */
        var pending = { event: event, resolve: resolve, reject: reject, timer: null };
        if (timeout !== null) {
          var schedule = this._setTimeout; // unbound, as in _scheduleReconnect
          pending.timer = schedule(function () {
            if (self._calls.get(id) === pending) {
              self._calls.delete(id);
              var late = "no reply to " + JSON.stringify(event) + " within " + timeout + " ms";
              reject(new CallError("CallTimeout", "timeout", late, event));
            }
          }, timeout);
        }
        this._calls.set(id, pending);
      }

      /** The next free call id: 1 to 2^31-1, then 1 again, skipping ids that still wait. */
      _nextCallId() {
        var id = this._lastCallId;
        do {
          id = id >= MAX_CALL_ID ? 1 : id + 1;
        } while (this._calls.has(id));
        this._lastCallId = id;
        return id;
      }

      /**
       * Takes the call out of the waiting ones and cancels its timer; null when it waits no more.
       * @param {number} id
       * @returns {Pending | null}
       */
      _takeCall(id) {
        var pending = this._calls.get(id);
        if (pending === undefined) {
          return null;
        }
        this._calls.delete(id);
        if (pending.timer !== null) {
          var cancel = this._clearTimeout;
          cancel(pending.timer);
        }
        return pending;
      }

      /**
       * The connection is gone: every call that waits fails with Disconnected.
       * @param {string} why
       */
      _failCalls(why) {
        var ids = Array.from(this._calls.keys());
        for (var i = 0; i < ids.length; i++) {
          var pending = this._takeCall(ids[i]);
          if (pending !== null) {
            pending.reject(new CallError("Disconnected", "disconnected", why, pending.event));
          }
        }
      }

      /**
       * Answers the server's calls of `event`: `handler(data)` (data decoded as for `on`) returns the reply, or
       * a promise of it. A string is sent as text, an ArrayBuffer or typed array as binary, anything else as
       * JSON (undefined as null). A throw or a rejection is sent as an error reply {code, message, data}: the
       * error's `code` (default "handler_error"), `message` and `data`. One handler per event.
       * @param {string} event
       * @param {(this: Client, data: any) => unknown} handler
       * @returns {this}
       */
      onCall(event, handler) {
        this._callHandlers[event] = handler;
        return this;
      }

      /**
       * @param {string} event
       * @returns {this}
       */
      offCall(event) {
        delete this._callHandlers[event];
        return this;
      }

      /**
       * Lists the members of `room` on every instance of the server: a call of `__members` (a server with
       * presence on), resolving with {members: [{socket, instance, presence}], missing, truncated}. Rejects as
       * `call` does (a ServerError with code "forbidden" when the server does not let this client list the
       * room), or with an SSError "bad_data" when `room` is not a non-empty string.
       * @template [P=unknown]
       * @param {string} room
       * @param {CallOptions} [opts]
       * @returns {Promise<import("./ss.js").Members<P>>}
       */
      members(room, opts) {
        if (typeof room !== "string" || room === "") {
          var why = "not sent: the room of a members call must be a non-empty string";
          return Promise.reject(new SSError("bad_data", why, { event: MEMBERS_EVENT, data: room }));
        }
        return this.call(MEMBERS_EVENT, { room: room }, opts);
      }

      /** Closes for good: cancels a pending reconnect and drops queued emits. */
      close() {
        this._closedByUser = true;
        this.reconnectOpts.enabled = false;
        this._cancelTimer();
        this._failCalls("the client was closed");
        var ws = this._ws;
        if (this._state !== OPEN) {
          // No connection to lose, so no onDisconnect: only a connected client gets one.
          this._finish();
        }
        if (ws !== null && ws.readyState <= WS_OPEN) {
          ws.close(1000);
        }
      }

      // --- connection lifecycle ------------------------------------------------------------------

      /** @param {boolean} first */
      _open(first) {
        this._state = CONNECTING;
        /** @type {WebSocketLike} */
        var ws;
        try {
          // Not null: the constructor refused to go on without a WebSocket class.
          ws = new /** @type {WebSocketConstructor} */ (this._WebSocket)(first ? this.url : this._reconnectURL(), SUBPROTOCOL);
        } catch (err) {
          if (first) {
            throw err; // a malformed URL is the caller's mistake: fail where they can see it
          }
          this._report("connect_failed", "could not create the WebSocket: " + /** @type {Error} */ (err).message, {
            cause: err,
          });
          this._afterClose(1006);
          return;
        }
        ws.binaryType = "arraybuffer";
        var self = this;
        ws.onopen = function (ev) {
          if (ws === self._ws) self._handleOpen(ev);
        };
        ws.onclose = function (ev) {
          if (ws === self._ws) self._handleClose(ev);
        };
        ws.onmessage = function (ev) {
          if (ws === self._ws) self._handleMessage(ev);
        };
        // Needed even though it does nothing: the close event that follows carries what we act on, and the
        // npm ws package throws an error event that has no listener.
        ws.onerror = noop;
        this._ws = ws;
      }

      /** The URL to reconnect to: with the session token and offsets when the server gave a token. */
      _reconnectURL() {
        if (this._session === null) {
          return this.url;
        }
        var offsets = [];
        for (var tag in this._positions) {
          offsets.push(tag + "." + this._positions[tag]);
        }
        if (offsets.length > MAX_OFFSETS) {
          return this.url; // more than a server takes: a fresh start
        }
        var query = "ss_session=" + encodeURIComponent(this._session) + "&ss_offsets=" + offsets.join(",");
        return this.url + (this.url.indexOf("?") >= 0 ? "&" : "?") + query;
      }

      /** @param {OpenEvent} ev */
      _handleOpen(ev) {
        if (this._state === CLOSED) {
          return; // close() was called while connecting; its ws.close() is under way
        }
        this._state = OPEN;
        var now = this._now; // unbound, like the other injected functions
        this._openedAt = now();
        var replay = this.reconnectOpts.replayOnConnect || !this._connectedOnce;
        this._connectedOnce = true;
        if (replay) {
          this._call(this._onConnect, ev, "onConnect");
        }
        // After onConnect, so that what it sends (re-joining rooms, say) goes before what was queued.
        this._flushQueue();
      }

      /** @param {CloseEventLike} ev */
      _handleClose(ev) {
        var wasOpen = this._state === OPEN;
        this._ws = null;
        this._failCalls("the connection closed (" + (ev && ev.code) + ") before the reply came");
        if (wasOpen) {
          this._resetBackoffIfStable();
        }
        if (ev && ev.code === 1009) {
          this._report("message_too_big", "the server closed the connection: a message was too big (1009)", {
            closeCode: 1009,
          });
        }
        if (ev && ev.code === 4010) {
          // typed-ss refuses a client generated from another version of its contract (protocol.md §6).
          this._report("reload_needed", "the server closed the connection: this client is out of date, reload it (4010)", {
            closeCode: 4010,
          });
        }
        if (wasOpen) {
          this._state = WAITING; // not OPEN any more, so emits from onDisconnect are queued, not lost
          this._call(this._onDisconnect, ev, "onDisconnect");
          this.id = null;
        } else if (!this._closedByUser && this._state !== CLOSED) {
          this._report("connect_failed", "could not connect (close code " + (ev && ev.code) + ")", {
            closeCode: ev && ev.code,
          });
        }
        this._afterClose(ev && ev.code);
      }

      /** @param {number} code */
      _afterClose(code) {
        if (this._closedByUser || this._state === CLOSED || !this._shouldReconnect(code)) {
          this._finish();
          return;
        }
        this._scheduleReconnect();
      }

      /** @param {number} code */
      _shouldReconnect(code) {
        var opts = this.reconnectOpts;
        if (!opts.enabled) {
          return false;
        }
        if (opts.reconnectCodes.indexOf(code) >= 0) {
          return true;
        }
        if (NO_RECONNECT_CODES.indexOf(code) >= 0) {
          return false;
        }
        if (code >= 3000 && code <= 4999) {
          // Registered (3xxx) and application (4xxx) codes: we cannot know what they mean, so only the
          // listed ones come back. 4008 (slow consumer) is typed-ss's own "reconnect later".
          return RECONNECT_APP_CODES.indexOf(code) >= 0;
        }
        return true; // 1001, 1006, 1011, 1012 and every other abnormal close
      }

      /**
       * An open alone is not a success: a server that accepts and closes at once would otherwise reset the
       * backoff on every attempt. The count starts over only after a connection that lasted resetAfterMS.
       */
      _resetBackoffIfStable() {
        var now = this._now;
        var lasted = now() - /** @type {number} */ (this._openedAt); // set by _handleOpen
        this._openedAt = null;
        if (!(lasted < this.reconnectOpts.resetAfterMS)) {
          this._attempt = 0; // also when resetAfterMS is 0 or not a number: reset after any connection
        }
      }

      /** Full jitter: a uniform delay in [0, min(cap, base * factor^attempt)). */
      _nextDelay() {
        var opts = this.reconnectOpts;
        var ceiling = Math.min(opts.cap, opts.base * Math.pow(opts.factor, this._attempt));
        this._attempt++;
        var random = this._random;
        return Math.floor(random() * ceiling);
      }

      _scheduleReconnect() {
        var self = this;
        // Called unbound: a browser's setTimeout, if injected, throws when called as another object's method.
        var schedule = this._setTimeout;
        this._state = WAITING;
        this._timer = schedule(function () {
          self._timer = null;
          if (self._state === WAITING) {
            self._open(false);
          }
        }, this._nextDelay());
      }

      _cancelTimer() {
        if (this._timer !== null) {
          var cancel = this._clearTimeout; // unbound, as in _scheduleReconnect
          cancel(this._timer);
          this._timer = null;
        }
      }

      /** The final state: nothing will reconnect, so queued emits can never be sent. */
      _finish() {
        this._state = CLOSED;
        this._cancelTimer();
        if (this._queue.length > 0) {
          var dropped = this._queue.map(function (m) {
            return { event: m.event, data: m.data };
          });
          this._queue = [];
          this._report("closed", dropped.length + " queued emit(s) dropped: the client is closed", {
            dropped: dropped,
          });
        }
      }

      // --- incoming ------------------------------------------------------------------------------

      /** @param {{ data: unknown }} ev */
      _handleMessage(ev) {
        // Nothing may throw out of here: a throw in a WebSocket event handler is lost or kills the page's
        // error reporting, and with ws in Node it becomes an uncaught exception.
        try {
          this._dispatch(ev.data);
        } catch (err) {
          this._report("internal_error", "unexpected error handling a frame: " + (err && /** @type {Error} */ (err).message), {
            cause: err,
          });
        }
      }

      /** @param {unknown} data */
      _dispatch(data) {
        var frame = parseFrame(data);
        if (frame === null) {
          this._report("bad_frame", "malformed frame from the server: no 0x02 delimiter or no event name", {
            data: data,
          });
          return;
        }
        var marker = callMarker(frame.flags);
        if (marker !== null) {
          this._handleCallFrame(frame, marker);
          return;
        }
        var offset = OFFSET_FLAG.exec(frame.flags);
        if (offset !== null) {
          this._positions[offset[1]] = offset[2]; // received: a reconnect will not ask for it again
        }
        var event = frame.event;
        if (event === HELLO_EVENT || event === ERROR_EVENT || event === GAP_EVENT || event === PRESENCE_EVENT) {
          this._handleReserved(frame);
          return;
        }
        var handler = this._events[frame.event];
        if (typeof handler !== "function") {
          return; // like the original: an event nobody listens to is ignored
        }
        var value = this._decode(frame);
        if (value !== DECODE_FAILED) {
          this._call(handler, value, frame.event);
        }
      }

      /**
       * @param {Frame} frame
       * @returns {unknown} the payload, or DECODE_FAILED
       */
      _decode(frame) {
        try {
          return decodePayload(frame);
        } catch (err) {
          var why = "invalid JSON from the server for " + JSON.stringify(frame.event) + ": " + /** @type {Error} */ (err).message;
          this._report("bad_json", why, { event: frame.event, data: frame.payload, cause: err });
          return DECODE_FAILED;
        }
      }

      /**
       * @param {Frame} frame
       * @param {Marker} marker
       */
      _handleCallFrame(frame, marker) {
        if (marker === BAD_MARKER) {
          this._report("bad_frame", "malformed call marker from the server: " + JSON.stringify(frame.flags), {
            event: frame.event,
            data: frame.payload,
          });
          return;
        }
        if (marker.kind === "c") {
          this._answerCall(frame, marker.id);
          return;
        }
        var waiting = this._calls.get(marker.id);
        if (waiting === undefined) {
          return; // a late answer, after the call timed out: dropped, as the server drops them
        }
        if (waiting.event !== frame.event) {
          var why = "an answer to call " + marker.id + " of " + JSON.stringify(waiting.event) + " names " + JSON.stringify(frame.event);
          this._report("bad_frame", why, { event: frame.event, data: frame.payload });
          return;
        }
        var pending = /** @type {Pending} */ (this._takeCall(marker.id));
        var value;
        try {
          value = decodePayload(frame);
        } catch (err) {
          var bad = "invalid JSON from the server in the reply to " + JSON.stringify(frame.event) + ": " + /** @type {Error} */ (err).message;
          pending.reject(new SSError("bad_json", bad, { event: frame.event, data: frame.payload, cause: err }));
          return;
        }
        if (marker.kind === "r") {
          pending.resolve(value);
          return;
        }
        var failure = /** @type {{ code?: unknown, message?: unknown, data?: unknown } | null} */ (value);
        if (failure === null || typeof failure !== "object" || typeof failure.code !== "string") {
          var unreadable = "an unreadable error reply to " + JSON.stringify(frame.event);
          pending.reject(new CallError("ServerError", "invalid_reply", unreadable, frame.event, value));
          return;
        }
        var message = typeof failure.message === "string" ? failure.message : "";
        pending.reject(new CallError("ServerError", failure.code, message, frame.event, failure.data));
      }

      /**
       * The server calls us: run the onCall handler and send its answer on the connection the call came on.
       * @param {Frame} frame
       * @param {number} id
       */
      _answerCall(frame, id) {
        var self = this;
        var ws = this._ws;
        var event = frame.event;
        var handler = this._callHandlers[event];
        if (typeof handler !== "function") {
          this._sendAnswer(ws, event, "e" + id, { code: "unknown_event", message: "no handler for event " + JSON.stringify(event), data: null });
          return;
        }
        var value = this._decode(frame); // reports bad_json
        if (value === DECODE_FAILED) {
          this._sendAnswer(ws, event, "e" + id, { code: "invalid_payload", message: "the payload is not valid JSON", data: null });
          return;
        }
        /** @type {unknown} */
        var result;
        try {
          result = handler.call(this, value);
        } catch (err) {
          this._sendError(ws, event, id, err);
          return;
        }
        Promise.resolve(result).then(
          function (reply) {
            self._sendAnswer(ws, event, "r" + id, reply === undefined ? null : reply);
          },
          function (err) {
            self._sendError(ws, event, id, err);
          }
        );
      }

      /**
       * @param {WebSocketLike | null} ws
       * @param {string} event
       * @param {number} id
       * @param {unknown} err what the handler threw
       */
      _sendError(ws, event, id, err) {
        var reply = errorReply(err);
        if (reply.code === "handler_error") {
          // Not an answer the handler chose to give (those carry a code): a bug the page should hear of.
          this._report("callback_error", "the onCall handler for " + JSON.stringify(event) + " failed: " + reply.message, {
            event: event,
            cause: err,
          });
        }
        this._sendAnswer(ws, event, "e" + id, reply);
      }

      /**
       * Sends an answer (`r<id>` or `e<id>`) on `ws` if that is still the open connection; on another one the
       * server has already failed the call. A reply that cannot be sent is answered with an error instead.
       * @param {WebSocketLike | null} ws
       * @param {string} event
       * @param {string} marker
       * @param {unknown} data
       */
      _sendAnswer(ws, event, marker, data) {
        if (ws === null || ws !== this._ws || !this.connected) {
          return;
        }
        var encoded;
        try {
          encoded = encodeFrame(event, data, marker);
        } catch (err) {
          if (marker.charAt(0) === "e") {
            // The error's data has no JSON form: send the error without it.
            var reply = /** @type {{ code: string, message: string }} */ (data);
            encoded = encodeFrame(event, { code: reply.code, message: reply.message, data: null }, marker);
          } else {
            this._reportError(/** @type {SSError} */ (err));
            var noJson = { code: "handler_error", message: "the reply has no JSON form", data: null };
            encoded = encodeFrame(event, noJson, "e" + marker.slice(1));
          }
        }
        var limit = this.maxMessageSize;
        if (limit !== null && !fitsIn(encoded, limit)) {
          var size = frameSize(encoded);
          var why = "the reply is " + size + " bytes, the server accepts at most " + limit;
          this._report("too_big", "not sent: " + why, { event: event, data: data, size: size, limit: limit });
          var tooBig = { code: "handler_error", message: why, data: null };
          encoded = encodeFrame(event, tooBig, "e" + marker.slice(1));
        }
        this._send({ event: event, data: data, encoded: encoded });
      }

      /** @param {Frame} frame */
      _handleReserved(frame) {
        var payload = this._decode(frame);
        if (payload === DECODE_FAILED) {
          return;
        }
        if (payload === null || typeof payload !== "object") {
          this._report("bad_frame", "malformed " + frame.event + " payload from the server", {
            event: frame.event,
            data: payload,
          });
          return;
        }
        // An object; its fields are checked where they are read (__hello, __gap, __presence) or passed on as
        // they came (__error).
        if (frame.event === HELLO_EVENT) {
          this._handleHello(/** @type {Hello} */ (payload));
        } else if (frame.event === GAP_EVENT) {
          var gap = /** @type {Gap} */ (payload);
          var room = typeof gap.room === "string" ? gap.room : null;
          this._call(this._onGap, { room: room, lost: Number(gap.lost) || 0 }, "onGap");
        } else if (frame.event === PRESENCE_EVENT) {
          this._handlePresence(/** @type {Record<string, unknown>} */ (payload));
        } else {
          var what =
            "server error for " +
            JSON.stringify(/** @type {ServerErrorPayload} */ (payload).event) +
            ": " +
            /** @type {ServerErrorPayload} */ (payload).code;
          this._report("server_error", what + ": " + /** @type {ServerErrorPayload} */ (payload).detail, {
            event: /** @type {ServerErrorPayload} */ (payload).event,
            serverCode: /** @type {ServerErrorPayload} */ (payload).code,
            detail: /** @type {ServerErrorPayload} */ (payload).detail,
            payload: payload,
          });
        }
      }

      /** @param {Record<string, unknown>} notice */
      _handlePresence(notice) {
        var change = notice.change;
        if (typeof notice.room !== "string" || typeof notice.socket !== "string" || (change !== "joined" && change !== "left")) {
          this._report("bad_frame", "malformed " + PRESENCE_EVENT + " payload from the server", {
            event: PRESENCE_EVENT,
            data: notice,
          });
          return;
        }
        var presence = notice.presence === undefined ? null : notice.presence;
        /** @type {Presence} */
        var event = { room: notice.room, change: change, socket: notice.socket, presence: presence };
        this._call(this._onPresence, event, "onPresence");
      }

      /** @param {Hello} hello */
      _handleHello(hello) {
        // Unknown fields are ignored: the server may add more (protocol.md §4).
        this.id = typeof hello.id === "string" ? hello.id : null;
        var max = hello.max_message_size;
        this.maxMessageSize = typeof max === "number" && max > 0 ? max : null;
        this.contract = typeof hello.contract === "string" ? hello.contract : null;
        var calls = hello.max_calls;
        this.maxCalls = typeof calls === "number" && calls >= 0 ? calls : null;
        var recovered = hello.recovered === true;
        if (!recovered) {
          this._positions = Object.create(null); // a fresh socket: the offsets of another session mean nothing
        } else if (Array.isArray(hello.streams)) {
          // The session's streams: the offsets of rooms left since are of no use.
          /** @type {Record<string, string>} */
          var kept = Object.create(null);
          for (var i = 0; i < hello.streams.length; i++) {
            var tag = hello.streams[i];
            if (typeof tag === "string" && tag in this._positions) kept[tag] = this._positions[tag];
          }
          this._positions = kept;
        }
        this._session = typeof hello.session === "string" ? hello.session : null;
        var reconnect = this._hadHello;
        this._hadHello = true;
        this._call(this._onHello, hello, "onHello");
        if (reconnect) {
          var rooms = recovered && Array.isArray(hello.rooms) ? hello.rooms.filter(isString) : [];
          this._call(this._onReconnect, { recovered: recovered, rooms: rooms }, "onReconnect");
        }
      }

      // --- outgoing ------------------------------------------------------------------------------

      /**
       * @param {string} event
       * @param {unknown} data
       * @returns {Encoded | null}
       */
      _encode(event, data) {
        var problem = checkEventName(event);
        if (problem !== null) {
          this._report("bad_event", problem, { event: event, data: data });
          return null;
        }
        try {
          return encodeFrame(event, data);
        } catch (err) {
          if (err instanceof SSError) {
            this._reportError(err);
            return null;
          }
          throw err;
        }
      }

      /**
       * False (and an error) when the frame is larger than the server accepts: sending it costs a 1009.
       * @param {Message} message
       */
      _fitsLimit(message) {
        var limit = this.maxMessageSize;
        if (limit === null) {
          return true;
        }
        if (fitsIn(message.encoded, limit)) {
          return true;
        }
        var size = frameSize(message.encoded);
        var why = "not sent: the frame is " + size + " bytes, the server accepts at most " + limit;
        this._report("too_big", why, {
          event: message.event,
          data: message.data,
          size: size,
          limit: limit,
        });
        return false;
      }

      /**
       * Sends on the open WebSocket (callers check `connected`).
       * @param {Message} message
       */
      _send(message) {
        try {
          /** @type {WebSocketLike} */ (this._ws).send(message.encoded.frame);
          return true;
        } catch (err) {
          this._report("send_failed", "the WebSocket refused the frame: " + /** @type {Error} */ (err).message, {
            event: message.event,
            data: message.data,
            cause: err,
          });
          return false;
        }
      }

      /** @param {Message} message */
      _enqueue(message) {
        this._queue.push(message);
        if (this._queue.length > this._maxQueue) {
          var oldest = /** @type {Message} */ (this._queue.shift());
          this._report("queue_overflow", "queue full (" + this._maxQueue + "): dropped the oldest emit", {
            event: oldest.event,
            data: oldest.data,
          });
        }
      }

      _flushQueue() {
        // Take the whole queue first: a send can fail and callbacks can emit; neither may reorder or loop.
        var pending = this._queue;
        this._queue = [];
        for (var i = 0; i < pending.length; i++) {
          if (!this.connected) {
            // The connection went away mid-flush (or close() was called): keep the rest for the next one.
            this._queue = pending.slice(i).concat(this._queue);
            if (this._state === CLOSED) this._finish();
            return;
          }
          if (this._fitsLimit(pending[i])) {
            this._send(pending[i]);
          }
        }
      }

      // --- callbacks and errors ------------------------------------------------------------------

      /**
       * Calls a user callback with `this` = the client; an exception goes to onError, never further.
       * @param {unknown} fn
       * @param {unknown} arg
       * @param {string} what
       */
      _call(fn, arg, what) {
        if (typeof fn !== "function") {
          return;
        }
        try {
          fn.call(this, arg);
        } catch (err) {
          this._report("callback_error", what + " callback threw: " + (err && /** @type {Error} */ (err).message), {
            event: what,
            cause: err,
          });
        }
      }

      /**
       * @param {ErrorCode} code
       * @param {string} message
       * @param {object} [fields]
       */
      _report(code, message, fields) {
        this._reportError(new SSError(code, message, fields));
      }

      /** @param {SSError} err */
      _reportError(err) {
        try {
          this._onError.call(this, err);
        } catch (inner) {
          // onError itself failed: log both rather than throw into the WebSocket's event dispatch.
          defaultOnError(err);
          defaultOnError(inner);
        }
      }
    }

    SS.SSError = SSError;
    // Cast: ss.d.ts narrows `name` to the CallErrorName set in the constructor, which a JS class cannot declare.
    SS.CallError = /** @type {typeof import("./ss.js").CallError} */ (/** @type {unknown} */ (CallError));
    SS.DEFAULT_CALL_TIMEOUT = DEFAULT_CALL_TIMEOUT;
    SS.SUBPROTOCOL = SUBPROTOCOL;
    return SS;
  }
);
