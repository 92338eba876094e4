/*
 * typed-ss-client/typed: the runtime of the clients that `typed-ss gen-client` generates.
 *
 * A generated client (ss.client.ts, or ss.client.js with ss.client.d.ts) holds only what is particular
 * to one server: the payload types, the contract fingerprint and how each event (and each reply the
 * client gives) is framed. Everything else lives here, once: listener lists over the plain client's one
 * callback per event, calls both ways (call.<event>, handle.<event>), framing by wire kind, Blob
 * ordering, the contract check and close code 4010, and the presence API (onPresence listeners, members).
 * ss-typed.d.ts has the types, generic over the contract's event and reply maps (and the presence payload
 * type); the generated module instantiates them.
 *
 * Plain ES2017 like ss.js, and loaded the same ways:
 *   - CommonJS: `const { connect } = require("typed-ss-client/typed")` (requires ./ss.js itself);
 *   - an ES module through ss-typed.mjs, which imports ss.mjs first and re-exports what this file leaves
 *     in a well-known global slot (a browser runs this file as a module, where it cannot export).
 * It defines no global of its own: a classic script has no use for it, as generated clients are modules.
 */
(function (root, factory) {
  "use strict";
  var SLOT = Symbol.for("typed-ss-client/typed");
  var api;
  if (typeof module === "object" && module !== null && typeof module.exports === "object") {
    api = factory(require("./ss.js"));
    module.exports = api;
  } else {
    // Run as a module (through ss-typed.mjs, which imported ss.mjs, and so ss.js, before this file):
    // ss.js left its constructor in its own slot.
    var SS = root ? /** @type {Record<symbol, unknown>} */ (/** @type {unknown} */ (root))[Symbol.for("typed-ss-client")] : undefined;
    if (typeof SS !== "function") {
      throw new TypeError("typed-ss-client: ss-typed.js needs ss.js; import ss-typed.mjs, which loads both");
    }
    api = factory(/** @type {typeof import("./ss.js")} */ (SS));
  }
  // ss-typed.mjs reads the API from this slot, so ESM and CommonJS share one copy (as ss.mjs does).
  if (root) {
    try {
      Object.defineProperty(root, SLOT, { value: api, configurable: true });
    } catch (e) {
      // A frozen global: ss-typed.mjs will not work there, require still does.
    }
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
   * The checked contract between this file and ss-typed.d.ts (npm run typecheck): what the factory returns
   * must be what ss-typed.d.ts declares.
   * @param {typeof import("./ss.js")} SS the plain client's constructor
   * @returns {typeof import("./ss-typed.js")}
   */
  function (SS) {
    "use strict";

    /** The WebSocket close code with which the server refuses an out-of-date client. */
    var RELOAD_NEEDED_CODE = /** @type {const} */ (4010);
    var CONTRACT_PARAMETER = "ss_contract";
    var MEMBERS_EVENT = "__members"; // the call that lists a room's members (a server with presence on)

    /**
     * @template T
     * @typedef {(value: T) => void} Listener
     */
    /** @typedef {import("./ss.js").Options} Options */
    /** @typedef {import("./ss.js").CloseEventLike} CloseEventLike */
    /** @typedef {import("./ss.js").Reconnect} Reconnect */
    /** @typedef {import("./ss.js").Gap} Gap */
    /** @typedef {import("./ss.js").Presence} Presence */
    /** @typedef {import("./ss.js").SSError} SSError */
    /** @typedef {import("./ss-typed.js").Kind} Kind */
    /** @typedef {import("./ss-typed.js").BlobLike} BlobLike */
    /** @typedef {import("./ss-typed.js").ServerError<string>} ServerError */
    /** @typedef {import("./ss-typed.js").ContractMismatch} ContractMismatch */
    /** @typedef {import("./ss-typed.js").ReloadNeeded} ReloadNeeded */
    /** @typedef {import("./ss-typed.js").ContractStatus} ContractStatus */
    /** @typedef {import("./ss-typed.js").Unsubscribe} Unsubscribe */
    /** @typedef {import("./ss.js").CallOptions} CallOptions */

    /**
     * Connects to a typed-ss server through the plain client, sending the contract fingerprint in the
     * `ss_contract` query parameter, and returns the typed client over it. `contract.kinds` frames the
     * payloads of the events the client sends and calls, `contract.replyKinds` (optional: older generated
     * clients have none) the replies it gives to the events the server calls.
     *
     * @template C, S, CR, SR, P
     * @param {string} url
     * @param {import("./ss-typed.js").Contract<C, SR>} contract
     * @param {Options} [options]
     * @returns {import("./ss-typed.js").TypedClient<C, S, CR, SR> & import("./ss-typed.js").PresenceClient<P>}
     */
    function connect(url, contract, options) {
      var fingerprint = contract.fingerprint;
      /** @type {Readonly<Record<string, Kind>>} */
      var kinds = contract.kinds;
      /** @type {Readonly<Record<string, Kind>>} */
      var replyKinds = contract.replyKinds || {};
      var raw = new SS(withContract(url, fingerprint), options);
      /** @type {Map<string, Listener<unknown>[]>} */
      var listeners = new Map();
      /** @type {Map<string, (payload: unknown) => unknown>} */
      var handlers = new Map(); // the current handler of each event the server calls, as given to raw.onCall
      /** @type {Listener<void>[]} */
      var connectListeners = [];
      /** @type {Listener<CloseEventLike>[]} */
      var disconnectListeners = [];
      /** @type {Listener<SSError>[]} */
      var errorListeners = [];
      /** @type {Listener<ServerError>[]} */
      var serverErrorListeners = [];
      /** @type {Listener<ContractMismatch>[]} */
      var mismatchListeners = [];
      /** @type {Listener<ReloadNeeded>[]} */
      var reloadListeners = [];
      /** @type {Listener<Reconnect>[]} */
      var reconnectListeners = [];
      /** @type {Listener<Gap>[]} */
      var gapListeners = [];
      /** @type {Listener<Presence>[]} */
      var presenceListeners = [];
      /** @type {string | null} */
      var serverContract = null;
      /** @type {ReloadNeeded | null} */
      var reloadNeeded = null; // reported after the onDisconnect listeners
      // Blobs are read asynchronously; while one is being read, later emits wait behind it to keep their order.
      /** @type {Promise<void>} */
      var tail = Promise.resolve();
      var waiting = 0;

      /** @param {SSError} error */
      function report(error) {
        if (errorListeners.length === 0) {
          logError("typed-ss client:", error);
          return;
        }
        for (var listener of errorListeners.slice()) {
          try {
            listener(error);
          } catch (inner) {
            logError("typed-ss client:", error);
            logError("typed-ss client: an onError listener threw:", inner);
          }
        }
      }

      /**
       * @template T
       * @param {readonly Listener<T>[]} list
       * @param {T} value
       * @param {string} what
       */
      function call(list, value, what) {
        for (var listener of list.slice()) {
          try {
            listener(value);
          } catch (err) {
            var message = err instanceof Error ? err.message : String(err);
            report(new SS.SSError("callback_error", what + " listener threw: " + message, { event: what, cause: err }));
          }
        }
      }

      /**
       * @template T
       * @param {Listener<T>[]} list
       * @param {Listener<T>} listener
       * @returns {Unsubscribe}
       */
      function add(list, listener) {
        list.push(listener);
        var active = true;
        return function () {
          if (!active) return;
          active = false;
          var index = list.indexOf(listener);
          if (index >= 0) list.splice(index, 1);
        };
      }

      /**
       * @param {string} event
       * @param {unknown} payload
       * @param {string} why
       * @param {unknown} [cause]
       * @returns {false}
       */
      function refuse(event, payload, why, cause) {
        var fields = cause === undefined ? { event: event, data: payload } : { event: event, data: payload, cause: cause };
        report(new SS.SSError("bad_data", "not sent: " + why + " for " + JSON.stringify(event), fields));
        return false;
      }

      /**
       * @param {string} event
       * @param {unknown} data
       * @returns {boolean}
       */
      function sendInOrder(event, data) {
        if (waiting === 0 && !isBlobLike(data)) return raw.emit(event, data);
        waiting++;
        tail = tail
          .then(function () {
            return isBlobLike(data) ? data.arrayBuffer() : data;
          })
          .then(
            /** @param {unknown} ready */
            function (ready) {
              raw.emit(event, ready);
            },
            /** @param {unknown} err */
            function (err) {
              refuse(event, data, "the Blob could not be read", err);
            }
          )
          .then(function () {
            waiting--;
          });
        return true;
      }

      /**
       * The payload of `event` framed for the plain client by the event's wire kind (a JSON event's payload as
       * JSON text, which the plain client sends as it is), or an error saying why it cannot be sent.
       * @param {string} event
       * @param {unknown} payload
       * @returns {{ data: unknown } | { why: string, cause?: unknown }}
       */
      function framed(event, payload) {
        if (!Object.prototype.hasOwnProperty.call(kinds, event)) {
          return { data: payload }; // not in the contract: the plain client's rules
        }
        return frameAs(kinds[event], payload, PAYLOAD_RULES);
      }

      /**
       * Sends a call after the emits and calls that wait for a Blob before it, and resolves with its reply.
       * @param {string} event
       * @param {unknown} data
       * @param {CallOptions | undefined} options
       * @returns {Promise<unknown>}
       */
      function callInOrder(event, data, options) {
        if (waiting === 0 && !isBlobLike(data)) return raw.call(event, data, options);
        waiting++;
        var done = tail.then(function () {
          return isBlobLike(data) ? data.arrayBuffer() : data;
        });
        tail = done.then(
          function () {
            waiting--;
          },
          function () {
            waiting--;
          }
        );
        return done.then(
          function (ready) {
            return raw.call(event, ready, options);
          },
          /** @param {unknown} err */
          function (err) {
            var message = err instanceof Error ? err.message : String(err);
            var why = "not sent: the Blob could not be read for " + JSON.stringify(event) + ": " + message;
            throw new SS.SSError("bad_data", why, { event: event, data: data, cause: err });
          }
        );
      }

      /**
       * @param {string} event
       * @param {unknown} [payload]
       * @param {CallOptions} [options]
       * @returns {Promise<unknown>}
       */
      function callEvent(event, payload, options) {
        var out = framed(event, payload);
        if ("why" in out) {
          var fields = out.cause === undefined ? { event: event, data: payload } : { event: event, data: payload, cause: out.cause };
          return Promise.reject(new SS.SSError("bad_data", "not sent: " + out.why + " for " + JSON.stringify(event), fields));
        }
        return callInOrder(event, out.data, options);
      }

      /**
       * Answers the server's calls of `event` with `handler`, its reply framed by the event's reply kind.
       * @param {string} event
       * @param {(payload: unknown) => unknown} handler
       * @returns {Unsubscribe}
       */
      function handle(event, handler) {
        var kind = Object.prototype.hasOwnProperty.call(replyKinds, event) ? replyKinds[event] : undefined;
        /** @param {unknown} payload */
        var answer = function (payload) {
          return Promise.resolve(handler(payload)).then(function (reply) {
            if (isBlobLike(reply) && (kind === "binary" || kind === undefined)) {
              return reply.arrayBuffer();
            }
            var out = frameAs(kind, reply, REPLY_RULES);
            // No `code`: the plain client sends it as a handler_error and reports it to onError.
            if ("why" in out) throw new Error("the reply to " + JSON.stringify(event) + " was not sent: " + out.why);
            return out.data;
          });
        };
        handlers.set(event, answer);
        raw.onCall(event, answer);
        var active = true;
        return function () {
          if (!active) return;
          active = false;
          if (handlers.get(event) === answer) {
            handlers.delete(event);
            raw.offCall(event);
          }
        };
      }

      /**
       * @param {string} event
       * @param {unknown} [payload]
       * @returns {boolean}
       */
      function emit(event, payload) {
        var out = framed(event, payload);
        if ("why" in out) return refuse(event, payload, out.why, out.cause);
        return sendInOrder(event, out.data);
      }

      /**
       * @param {string} event
       * @param {Listener<unknown>} listener
       * @returns {Unsubscribe}
       */
      function on(event, listener) {
        var existing = listeners.get(event);
        if (existing === undefined) {
          existing = [];
          listeners.set(event, existing);
          raw.on(event, function (payload) {
            var current = listeners.get(event);
            if (current !== undefined) call(current, payload, event);
          });
        }
        var list = existing;
        var remove = add(list, listener);
        return function () {
          remove();
          if (list.length === 0 && listeners.get(event) === list) {
            listeners.delete(event);
            raw.off(event);
          }
        };
      }

      raw.onConnect(function () {
        call(connectListeners, undefined, "onConnect");
      });
      raw.onDisconnect(function (event) {
        // Never reconnect after 4010, even when reconnectOpts.reconnectCodes lists it: only a reload helps.
        if (event.code === RELOAD_NEEDED_CODE) raw.close();
        call(disconnectListeners, event, "onDisconnect");
        var info = reloadNeeded;
        reloadNeeded = null;
        if (info !== null) call(reloadListeners, info, "onReloadNeeded");
      });
      raw.onReconnect(function (event) {
        call(reconnectListeners, event, "onReconnect");
      });
      raw.onGap(function (gap) {
        call(gapListeners, gap, "onGap");
      });
      raw.onPresence(function (event) {
        call(presenceListeners, event, "onPresence");
      });
      raw.onHello(function (hello) {
        var theirs = typeof hello.contract === "string" ? hello.contract : null;
        serverContract = theirs;
        if (theirs !== null && theirs !== fingerprint) {
          call(mismatchListeners, { clientContract: fingerprint, serverContract: theirs }, "onContractMismatch");
        }
      });
      raw.onError(function (error) {
        report(error);
        if (error.code === "server_error" && error.payload !== undefined) {
          var payload = error.payload;
          // The server sends one of the two codes; the declared type says so, the wire cannot.
          var typed = /** @type {ServerError} */ ({ event: payload.event, code: payload.code, detail: payload.detail });
          call(serverErrorListeners, typed, "onServerError");
        } else if (error.code === "reload_needed") {
          reloadNeeded = {
            code: "reload_needed",
            closeCode: error.closeCode !== undefined && error.closeCode !== null ? error.closeCode : RELOAD_NEEDED_CODE,
            clientContract: fingerprint,
            serverContract: serverContract,
          };
        }
      });

      /** @type {Record<string, (payload?: unknown) => boolean>} */
      var send = Object.create(null);
      Object.keys(kinds).forEach(function (event) {
        send[event] = function (payload) {
          return emit(event, payload);
        };
      });
      Object.freeze(send);

      /** @type {Record<string, (payload?: unknown, options?: CallOptions) => Promise<unknown>>} */
      var calls = Object.create(null);
      Object.keys(kinds).forEach(function (event) {
        calls[event] = function (payload, options) {
          return callEvent(event, payload, options);
        };
      });
      Object.freeze(calls);

      /** @type {Record<string, (handler: (payload: unknown) => unknown) => Unsubscribe>} */
      var handles = Object.create(null);
      Object.keys(replyKinds).forEach(function (event) {
        handles[event] = function (handler) {
          return handle(event, handler);
        };
      });
      Object.freeze(handles);

      /** @typedef {import("./ss-typed.js").TypedClient<C, S, CR, SR> & import("./ss-typed.js").PresenceClient<P>} Client */
      /** @type {Client} */
      var client = {
        raw: raw,
        contract: fingerprint,
        get serverContract() {
          return serverContract;
        },
        get contractStatus() {
          /** @type {ContractStatus} */
          var status = serverContract === null ? "unknown" : serverContract === fingerprint ? "current" : "stale";
          return status;
        },
        get connected() {
          return raw.connected;
        },
        get id() {
          return raw.id;
        },
        // Typed per event by the declarations; one untyped implementation serves every event.
        emit: /** @type {Client["emit"]} */ (/** @type {unknown} */ (emit)),
        send: /** @type {Client["send"]} */ (/** @type {unknown} */ (send)),
        on: /** @type {Client["on"]} */ (/** @type {unknown} */ (on)),
        call: /** @type {Client["call"]} */ (/** @type {unknown} */ (calls)),
        handle: /** @type {Client["handle"]} */ (/** @type {unknown} */ (handles)),
        onConnect: function (listener) {
          return add(connectListeners, listener);
        },
        onDisconnect: function (listener) {
          return add(disconnectListeners, listener);
        },
        onError: function (listener) {
          return add(errorListeners, listener);
        },
        onServerError: function (listener) {
          return add(serverErrorListeners, /** @type {Listener<ServerError>} */ (listener));
        },
        onContractMismatch: function (listener) {
          return add(mismatchListeners, listener);
        },
        onReloadNeeded: function (listener) {
          return add(reloadListeners, listener);
        },
        onReconnect: function (listener) {
          return add(reconnectListeners, listener);
        },
        onGap: function (listener) {
          return add(gapListeners, listener);
        },
        // The presence payload's type is the server's, which the wire cannot check: declared, not proven.
        onPresence: function (listener) {
          return add(presenceListeners, /** @type {Listener<Presence>} */ (listener));
        },
        members: function (room, options) {
          if (typeof room !== "string" || room === "") {
            var why = "not sent: the room of a members call must be a non-empty string";
            return Promise.reject(new SS.SSError("bad_data", why, { event: MEMBERS_EVENT, data: room }));
          }
          // After the emits and calls that wait for a Blob before it, as every call.
          return /** @type {Promise<import("./ss-typed.js").Members<P>>} */ (callInOrder(MEMBERS_EVENT, { room: room }, options));
        },
        close: function () {
          raw.close();
        },
      };
      return client;
    }

    /** @typedef {{ json: string, text: string, binary: string }} Rules */

    /** Why a payload cannot be sent, by its event's kind. @type {Rules} */
    var PAYLOAD_RULES = {
      json: "the payload has no JSON form",
      text: "a text event needs a string payload",
      binary: "a binary event needs an ArrayBuffer, a typed array, a DataView or a Blob",
    };
    /** Why a reply cannot be sent, by its kind. @type {Rules} */
    var REPLY_RULES = {
      json: "the reply has no JSON form",
      text: "a text reply must be a string",
      binary: "a binary reply must be an ArrayBuffer, a typed array, a DataView or a Blob",
    };

    /**
     * A value framed for the plain client by its wire kind: JSON as JSON text (the plain client sends strings
     * as they are, so a JSON string arrives quoted; undefined as null), text and binary as they are once
     * checked. A kind of undefined (an event outside the contract) leaves the value to the plain client.
     * @param {Kind | undefined} kind
     * @param {unknown} value
     * @param {Rules} rules
     * @returns {{ data: unknown } | { why: string, cause?: unknown }}
     */
    function frameAs(kind, value, rules) {
      if (kind === "json") {
        var text;
        try {
          text = JSON.stringify(value === undefined ? null : value);
        } catch (err) {
          return { why: rules.json, cause: err };
        }
        return text === undefined ? { why: rules.json } : { data: text };
      }
      if (kind === "text" && typeof value !== "string") return { why: rules.text };
      if (kind === "binary" && !isBinary(value)) return { why: rules.binary };
      return { data: value };
    }

    /**
     * The URL with the contract fingerprint added to its query string, keeping any parameters already
     * there and the fragment.
     *
     * @param {string} url
     * @param {string} fingerprint
     * @returns {string}
     */
    function withContract(url, fingerprint) {
      var hash = url.indexOf("#");
      var base = hash >= 0 ? url.slice(0, hash) : url;
      var fragment = hash >= 0 ? url.slice(hash) : "";
      var separator = base.indexOf("?") < 0 ? "?" : /[?&]$/.test(base) ? "" : "&";
      return base + separator + CONTRACT_PARAMETER + "=" + encodeURIComponent(fingerprint) + fragment;
    }

    /**
     * @param {unknown} value
     * @returns {value is BlobLike}
     */
    function isBlobLike(value) {
      return (
        typeof value === "object" &&
        value !== null &&
        !ArrayBuffer.isView(value) &&
        typeof (/** @type {{ arrayBuffer?: unknown }} */ (value).arrayBuffer) === "function"
      );
    }

    /**
     * @param {unknown} value
     * @returns {boolean}
     */
    function isBinary(value) {
      return Object.prototype.toString.call(value) === "[object ArrayBuffer]" || ArrayBuffer.isView(value) || isBlobLike(value);
    }

    /** @param {...unknown} args */
    function logError(...args) {
      if (typeof console !== "undefined" && typeof console.error === "function") console.error(...args);
    }

    return {
      connect: connect,
      withContract: withContract,
      RELOAD_NEEDED_CODE: RELOAD_NEEDED_CODE,
    };
  }
);
